//! `cargo xtask install`: the release binary, its man pages and shell
//! completions under a prefix (default /usr/local), the layout Debian's
//! man, bash-completion, zsh and fish look in. `--destdir` stages the tree
//! elsewhere (for packaging) without changing the paths inside it.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct Opts {
    /// Where the files go: PREFIX/bin, PREFIX/share/man/man8,
    /// PREFIX/share/{bash-completion,zsh,fish}.
    #[arg(long, default_value = "/usr/local")]
    pub prefix: PathBuf,
    /// Stage the installation under this directory (as `make DESTDIR=`).
    #[arg(long)]
    pub destdir: Option<PathBuf>,
}

/// One completion script: the shell's name for `tcptrace generate
/// completions` and where that shell looks, relative to the prefix.
const COMPLETIONS: [(&str, &str); 3] = [
    ("bash", "share/bash-completion/completions/tcptrace"),
    ("zsh", "share/zsh/site-functions/_tcptrace"),
    ("fish", "share/fish/vendor_completions.d/tcptrace.fish"),
];

/// The directory files are written to: PREFIX, under DESTDIR when given.
pub fn root(opts: &Opts) -> PathBuf {
    match &opts.destdir {
        // PREFIX is absolute; joining it would replace DESTDIR.
        Some(d) => d.join(opts.prefix.strip_prefix("/").unwrap_or(&opts.prefix)),
        None => opts.prefix.clone(),
    }
}

/// Installs `bin` (a built release tcptrace) and what it generates.
pub fn run(opts: &Opts, bin: &Path) -> Result<()> {
    let root = root(opts);
    let dest = root.join("bin/tcptrace");
    std::fs::create_dir_all(root.join("bin"))?;
    // Copy to a temporary name and rename, so a running tcptrace keeps its
    // inode and the new one appears whole.
    let tmp = root.join("bin/.tcptrace.new");
    std::fs::copy(bin, &tmp).with_context(|| format!("copying {}", bin.display()))?;
    std::fs::rename(&tmp, &dest)?;
    println!("installed {}", dest.display());

    let man = root.join("share/man/man8");
    crate::check({
        let mut c = Command::new(&dest);
        c.args(["generate", "man"]).arg(&man);
        c
    })?;
    println!("installed {}/tcptrace*.8", man.display());

    for (shell, rel) in COMPLETIONS {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("a file under the prefix"))?;
        let out = Command::new(&dest)
            .args(["generate", "completions", shell])
            .output()
            .with_context(|| format!("running {} generate", dest.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "tcptrace generate completions {shell} failed"
        );
        std::fs::write(&path, out.stdout).with_context(|| format!("writing {}", path.display()))?;
        println!("installed {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destdir_stages_the_prefix() {
        let o = Opts {
            prefix: "/usr/local".into(),
            destdir: Some("/tmp/stage".into()),
        };
        assert_eq!(root(&o), Path::new("/tmp/stage/usr/local"));
        let o = Opts {
            prefix: "/opt/tcptrace".into(),
            destdir: None,
        };
        assert_eq!(root(&o), Path::new("/opt/tcptrace"));
    }
}
