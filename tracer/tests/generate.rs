//! `tcptrace generate`: man pages for every subcommand and completion
//! scripts that a real bash completes with.

use std::{path::Path, process::Command};

fn tcptrace() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tcptrace"))
}

#[test]
fn man_pages_cover_every_subcommand_in_section_8() {
    let dir = std::env::temp_dir().join(format!("tcptrace-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let st = tcptrace()
        .args(["generate", "man"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    for sub in [
        "retrans", "states", "connect", "resets", "hist", "top", "record", "replay", "check",
    ] {
        let page = dir.join(format!("tcptrace-{sub}.8"));
        let text =
            std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        assert!(
            text.contains(&format!(".TH tcptrace-{sub} 8")),
            "{sub}: {}",
            &text[..200.min(text.len())]
        );
    }
    let main = std::fs::read_to_string(dir.join("tcptrace.8")).unwrap();
    assert!(main.contains("watch the Linux TCP stack"), "{main}");
    assert!(
        main.contains("sudo tcptrace retrans"),
        "the examples are in the page"
    );
    // The hidden `generate` subcommand gets no page.
    assert!(!dir.join("tcptrace-generate.8").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What bash's completion offers for the words of a command line.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let prog = format!(
        "source {}; COMP_WORDS=({line}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; \
         _tcptrace tcptrace '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words.len() - 1,
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &prog])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_subcommands_and_options() {
    let out = tcptrace()
        .args(["generate", "completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = std::env::temp_dir().join(format!("tcptrace-bash-{}", std::process::id()));
    std::fs::write(&script, &out.stdout).unwrap();
    assert_eq!(bash_complete(&script, &["tcptrace", "to"]), ["top"]);
    assert_eq!(
        bash_complete(&script, &["tcptrace", "top", "--so"]),
        ["--sort"]
    );
    for shell in ["zsh", "fish"] {
        let out = tcptrace()
            .args(["generate", "completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success() && out.stdout.len() > 1000, "{shell}");
    }
    std::fs::remove_file(&script).unwrap();
}
