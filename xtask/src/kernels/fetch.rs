//! What the VMs need on the host: qemu, busybox, virtme-ng (PyPI, in a
//! venv), and Debian's kernel packages, downloaded once into
//! `target/kernels/` and kept there between runs.

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::check;

/// Debian packages the VMs need: qemu (TCG; KVM does not work on these
/// machines), busybox (virtme-ng's initramfs), kmod (depmod for the
/// extracted modules), python3-venv (for virtme-ng).
const PACKAGES: [&str; 4] = ["qemu-system-x86", "busybox-static", "kmod", "python3-venv"];
/// The virtme-ng release these runs were made with.
const VIRTME_NG: &str = "virtme-ng==1.42";
/// The sources entry this task adds for the 6.12 kernel.
const BACKPORTS_LIST: &str = "/etc/apt/sources.list.d/tcptrace-bookworm-backports.sources";

/// A kernel of Debian 12.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Series {
    /// bookworm's own kernel.
    V6_1,
    /// bookworm-backports'.
    V6_12,
}

impl Series {
    pub fn name(self) -> &'static str {
        match self {
            Self::V6_1 => "6.1",
            Self::V6_12 => "6.12",
        }
    }

    /// Whether a binary package name is this series' generic amd64 kernel
    /// image (`linux-image-6.1.0-NN-amd64`, `linux-image-6.12.NN+deb12-amd64`),
    /// and its number NN to pick the newest.
    fn number(self, package: &str) -> Option<u64> {
        let rest = package.strip_prefix("linux-image-")?;
        let n = match self {
            Self::V6_1 => rest.strip_prefix("6.1.0-")?.strip_suffix("-amd64")?,
            Self::V6_12 => rest.strip_prefix("6.12.")?.strip_suffix("+deb12-amd64")?,
        };
        n.parse().ok()
    }

    /// The apt-cache search pattern for [`Series::number`]'s packages.
    fn pattern(self) -> &'static str {
        match self {
            Self::V6_1 => r"^linux-image-6\.1\.0-[0-9]+-amd64$",
            Self::V6_12 => r"^linux-image-6\.12\.[0-9]+\+deb12-amd64$",
        }
    }
}

/// A kernel ready to boot: its image and release string.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub series: Series,
    pub release: String,
    pub vmlinuz: PathBuf,
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn apt_update() -> Result<()> {
    let mut c = Command::new("apt-get");
    c.args(["update", "-q"]);
    check(c)
}

/// Installs the Debian packages and the virtme-ng venv when missing;
/// returns the venv's `bin` directory (vng finds its helpers on PATH).
pub fn tools(cache: &Path) -> Result<PathBuf> {
    let missing: Vec<&str> = PACKAGES.into_iter().filter(|p| !installed(p)).collect();
    if !missing.is_empty() {
        eprintln!("kernels: installing {}", missing.join(" "));
        apt_update()?;
        let mut c = Command::new("apt-get");
        c.args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive");
        check(c)?;
    }
    let venv = cache.join("venv");
    let bin = venv.join("bin");
    if !bin.join("vng").exists() {
        eprintln!("kernels: installing {VIRTME_NG} into {}", venv.display());
        // Debian's own python3, whatever else is first on PATH.
        let mut c = Command::new("/usr/bin/python3");
        c.args(["-m", "venv"]).arg(&venv);
        check(c)?;
        let mut c = Command::new(bin.join("pip"));
        c.args(["install", "-q", VIRTME_NG]);
        check(c)?;
    }
    Ok(bin)
}

/// The archive apt already uses for bookworm: the first `deb` URI of the
/// system's sources (deb822 or one-line format).
fn debian_archive() -> Result<String> {
    let mut texts = Vec::new();
    for dir in ["/etc/apt/sources.list.d"] {
        if let Ok(rd) = fs::read_dir(dir) {
            let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            paths.sort();
            for p in paths {
                if p.extension().is_some_and(|e| e == "sources" || e == "list")
                    && p != Path::new(BACKPORTS_LIST)
                {
                    texts.push(fs::read_to_string(&p).unwrap_or_default());
                }
            }
        }
    }
    texts.push(fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    for text in &texts {
        // deb822: a stanza with `Suites: bookworm ...` and `URIs: ...`.
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
            };
            if let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:"))
                && suites.split_whitespace().any(|s| s == "bookworm")
                && let Some(uri) = uris.split_whitespace().next()
            {
                return Ok(uri.to_string());
            }
        }
        // One-line: `deb [opts] URI bookworm main`.
        for line in text.lines() {
            let words: Vec<&str> = line
                .split_whitespace()
                .filter(|w| !w.starts_with('['))
                .collect();
            if words.first() == Some(&"deb") && words.get(2) == Some(&"bookworm") {
                return Ok(words[1].to_string());
            }
        }
    }
    bail!("found no Debian archive for bookworm in apt's sources")
}

/// Adds bookworm-backports (component main) on the same archive, once.
fn ensure_backports() -> Result<bool> {
    if Path::new(BACKPORTS_LIST).exists() {
        return Ok(false);
    }
    let uri = debian_archive()?;
    eprintln!("kernels: adding bookworm-backports (main) to apt's sources, for the 6.12 kernel");
    fs::write(
        BACKPORTS_LIST,
        format!(
            "# Added by `cargo xtask kernels`: Debian 12's 6.12 kernel for the test matrix.\n\
             Types: deb\nURIs: {uri}\nSuites: bookworm-backports\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ),
    )
    .with_context(|| format!("writing {BACKPORTS_LIST}"))?;
    Ok(true)
}

/// The kernel of `series`: from the cache if it was fetched before, else
/// the newest package apt offers, downloaded and extracted. Its modules
/// are linked into /lib/modules (virtme-ng loads 9p and virtio from there).
pub fn kernel(cache: &Path, series: Series) -> Result<Kernel> {
    let dir = cache.join(series.name());
    if !dir.join("boot").is_dir() {
        download(cache, series, &dir)?;
    }
    let boot = fs::read_dir(dir.join("boot"))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("vmlinuz-"))
        .with_context(|| format!("no vmlinuz in {}", dir.join("boot").display()))?;
    let release = boot.trim_start_matches("vmlinuz-").to_string();
    let modules = dir.join("lib/modules").join(&release);
    let link = Path::new("/lib/modules").join(&release);
    if fs::read_link(&link).ok().as_deref() != Some(modules.as_path()) {
        fs::create_dir_all("/lib/modules")?;
        let _ = fs::remove_file(&link);
        symlink(&modules, &link)
            .with_context(|| format!("linking {} to {}", link.display(), modules.display()))?;
    }
    Ok(Kernel {
        series,
        release,
        vmlinuz: dir.join("boot").join(boot),
    })
}

fn download(cache: &Path, series: Series, dir: &Path) -> Result<()> {
    let added = series == Series::V6_12 && ensure_backports()?;
    let search =
        || output(Command::new("apt-cache").args(["search", "--names-only", series.pattern()]));
    let mut found = search()?;
    if found.trim().is_empty() || added {
        apt_update()?;
        found = search()?;
    }
    let package = found
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|p| Some((series.number(p)?, p.to_string())))
        .max()
        .map(|(_, p)| p)
        .with_context(|| {
            format!(
                "apt offers no Debian {} kernel package ({})",
                series.name(),
                series.pattern()
            )
        })?;
    let debs = cache.join("deb");
    fs::create_dir_all(&debs)?;
    eprintln!("kernels: downloading {package}");
    let mut c = Command::new("apt-get");
    c.current_dir(&debs).args(["download", "-q", &package]);
    check(c)?;
    let deb = fs::read_dir(&debs)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{package}_")))
        })
        .with_context(|| format!("apt-get download left no {package}_*.deb"))?;
    let tmp = cache.join(format!("{}.partial", series.name()));
    let _ = fs::remove_dir_all(&tmp);
    let mut c = Command::new("dpkg-deb");
    c.arg("-x").arg(&deb).arg(&tmp);
    check(c)?;
    // Debian's packages leave modules.dep to the postinst: make it here.
    let release = fs::read_dir(tmp.join("lib/modules"))?
        .flatten()
        .next()
        .context("the package has no lib/modules")?
        .file_name();
    let mut c = Command::new("depmod");
    c.arg("-b").arg(&tmp).arg(&release);
    check(c)?;
    fs::rename(&tmp, dir)?;
    let _ = fs::remove_file(&deb);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_numbers() {
        assert_eq!(Series::V6_1.number("linux-image-6.1.0-56-amd64"), Some(56));
        assert_eq!(
            Series::V6_1.number("linux-image-6.1.0-56-cloud-amd64"),
            None
        );
        assert_eq!(
            Series::V6_1.number("linux-image-6.12.117+deb12-amd64"),
            None
        );
        assert_eq!(
            Series::V6_12.number("linux-image-6.12.117+deb12-amd64"),
            Some(117)
        );
        assert_eq!(
            Series::V6_12.number("linux-image-6.12.95+deb12-amd64-unsigned"),
            None
        );
        assert_eq!(Series::V6_12.number("linux-image-6.12-amd64"), None);
    }
}
