//! A real terminal for `tcptrace top`: a private tmux server (its own
//! socket, killed on drop) with one window of a fixed size running a
//! command; keys sent with `send-keys`, the screen read with
//! `capture-pane`, the command's exit status caught in a file. Fails
//! loudly when tmux cannot run (`cargo xtask` installs Debian's `tmux`).

use std::{
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use crate::{TempFile, wait_until};

/// See the module documentation.
pub struct Tmux {
    socket: String,
    status: TempFile,
    pub width: usize,
    pub height: usize,
}

impl Tmux {
    /// Runs `argv` (no shell quoting needed: each argument is quoted) in a
    /// `width` x `height` window.
    pub fn start(argv: &[&str], width: usize, height: usize) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let socket = format!(
            "tt-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let status = TempFile::new("tmux-status");
        let quoted: Vec<String> = argv
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect();
        // The window stays after the command ends, so the test can read
        // what was left; the exit status goes to a file.
        let script = format!(
            "{}; echo $? > {}; sleep 600",
            quoted.join(" "),
            status.path()
        );
        let t = Self {
            socket,
            status,
            width,
            height,
        };
        let out = t.tmux(&[
            "new-session",
            "-d",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            &script,
        ]);
        assert!(
            out.status.success(),
            "tmux could not start a session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run tmux ({e}): install it (`cargo xtask setup` does, Debian package tmux)")
            })
    }

    /// The screen as it is, one string per line, lines that wrapped joined
    /// back (`-J`), trailing spaces kept.
    pub fn screen(&self) -> Vec<String> {
        let out = self.tmux(&["capture-pane", "-p", "-J", "-N", "-t", "0"]);
        assert!(
            out.status.success(),
            "capture-pane failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Presses `key` (a tmux key name: `q`, `s`, `C-c`).
    pub fn press(&self, key: &str) {
        let out = self.tmux(&["send-keys", "-t", "0", key]);
        assert!(out.status.success(), "send-keys {key} failed");
    }

    /// Waits at most `limit` for the screen to satisfy `done`; returns the
    /// screen as last seen and whether it did.
    pub fn wait_for(
        &self,
        limit: Duration,
        mut done: impl FnMut(&[String]) -> bool,
    ) -> (bool, Vec<String>) {
        let mut last = Vec::new();
        let ok = wait_until(limit, || {
            last = self.screen();
            done(&last)
        });
        (ok, last)
    }

    /// The command's exit status, once it has ended (within `limit`).
    pub fn exit_status(&self, limit: Duration) -> Option<i32> {
        let mut code = None;
        wait_until(limit, || {
            code = std::fs::read_to_string(self.status.path())
                .ok()
                .and_then(|s| s.trim().parse().ok());
            code.is_some()
        });
        code
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}
