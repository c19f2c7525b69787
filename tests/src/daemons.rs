//! Real components the agent feeds, from their Debian packages, each
//! started by a test on loopback with its own configuration and its own
//! state directory (never the system's), and stopped and cleaned up when
//! dropped, pass or fail: Prometheus (queried over its HTTP API) and
//! rsyslog.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{
    scrape::{http_get, url_encode},
    unique_port, wait_until,
};

/// A temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let t = crate::TempFile::new(tag);
        let p = PathBuf::from(t.path());
        std::fs::create_dir_all(&p).unwrap();
        std::mem::forget(t);
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process stopped (SIGTERM, then SIGKILL) on drop.
struct Daemon {
    what: &'static str,
    child: Child,
}

impl Daemon {
    fn spawn(what: &'static str, cmd: &mut Command) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {what} ({e}): install its Debian package (`cargo xtask setup` does)")
            });
        Self { what, child }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if !wait_until(Duration::from_secs(5), || {
            self.child.try_wait().ok().flatten().is_some()
        }) {
            eprintln!("{} ignored SIGTERM: killing it", self.what);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A Prometheus server scraping one target every second.
pub struct Prometheus {
    pub addr: SocketAddr,
    _daemon: Daemon,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`/metrics`) and waits until it
    /// is ready.
    pub fn start(target: SocketAddr) -> Self {
        let dir = TempDir::new("prometheus");
        let conf = dir.path().join("prometheus.yml");
        std::fs::write(
            &conf,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: tcptrace\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", unique_port()).parse().unwrap();
        let mut daemon = Daemon::spawn(
            "prometheus",
            Command::new("prometheus")
                .arg(format!("--config.file={}", conf.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn"),
        );
        // Seconds on the host; under emulation (the kernel VMs) much longer.
        let ready = wait_until(Duration::from_secs(120), || {
            daemon.alive() && http_get(addr, "/-/ready").is_ok_and(|(s, _)| s == 200)
        });
        assert!(
            ready,
            "prometheus did not become ready on {addr} within 30 s"
        );
        Self {
            addr,
            _daemon: daemon,
            _dir: dir,
        }
    }

    /// The value of an instant PromQL query that gives one number, or
    /// `None` while it gives none.
    pub fn query(&self, promql: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let (status, body) = http_get(self.addr, &path).ok()?;
        assert_eq!(status, 200, "prometheus refused {promql}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let r = v["data"]["result"].as_array()?.first()?;
        r["value"][1].as_str()?.parse().ok()
    }
}

/// An rsyslogd in the foreground with its own configuration, pid file and
/// work directory.
pub struct Rsyslog {
    _daemon: Daemon,
}

impl Rsyslog {
    /// Starts `rsyslogd` with `conf` (which must set `workDirectory` to
    /// `work`) and waits until it is running.
    pub fn start(conf: &str, dir: &Path, name: &str) -> Self {
        let work = dir.join(format!("{name}-work"));
        std::fs::create_dir_all(&work).unwrap();
        let conf_path = dir.join(format!("{name}.conf"));
        let conf = format!("global(workDirectory=\"{}\")\n{conf}", work.display());
        std::fs::write(&conf_path, conf).unwrap();
        let check = Command::new("rsyslogd")
            .args(["-N1", "-f"])
            .arg(&conf_path)
            .output()
            .expect("rsyslogd (Debian package rsyslog; `cargo xtask setup` installs it)");
        assert!(
            check.status.success(),
            "rsyslogd -N1 refused {}: {}",
            conf_path.display(),
            String::from_utf8_lossy(&check.stderr)
        );
        let mut daemon = Daemon::spawn(
            "rsyslogd",
            Command::new("rsyslogd")
                .arg("-n")
                .arg("-f")
                .arg(&conf_path)
                .arg("-i")
                .arg(dir.join(format!("{name}.pid"))),
        );
        std::thread::sleep(Duration::from_millis(500));
        assert!(daemon.alive(), "rsyslogd {name} exited at start-up");
        Self { _daemon: daemon }
    }
}
