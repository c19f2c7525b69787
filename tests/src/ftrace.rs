//! A peer that is not BPF, for the retransmit tests' accounting: a tracefs
//! instance of the test's own with one TCP tracepoint enabled and
//! filtered by port, read at the end.
//!
//! Why: on these hosts no BPF program of any type (ours, bpftrace's, a
//! raw tracepoint) runs for an interrupt taken while a thread of PID 1
//! (the machine's own agent) is current, and nothing counts those skips.
//! Measured over 5 520 SYN retransmits: every short round (1 to 16 events
//! missing, about one in twenty) was a batch of retransmit timers that
//! fired in a softirq on top of such a thread; ftrace and the socket's own
//! `total_retrans` saw them, a raw tracepoint and a classic tracepoint
//! program saw none, and tcptrace recorded exactly what its program ran
//! for. ftrace names the interrupted task on each line, so a test can
//! tell the events no BPF tool could see from events tcptrace lost.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

/// A tracefs instance recording one event.
pub struct Ftrace {
    dir: PathBuf,
    event: String,
}

impl Ftrace {
    /// Records `event` (`tcp/tcp_retransmit_skb`) where `filter` (ftrace's
    /// filter syntax over the event's fields, e.g. `dport == 8080`) holds.
    pub fn start(event: &str, filter: &str) -> Self {
        Self::start_with_buffer(event, filter, 2048)
    }

    /// [`Self::start`] with a ring of `kb` KiB per CPU (2 MiB holds about
    /// 25 000 state changes; older events are overwritten beyond).
    pub fn start_with_buffer(event: &str, filter: &str, kb: u32) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let root = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.join("instances").is_dir())
            .expect("tracefs with instances (tcptrace itself needs tracefs)");
        let dir = root.join("instances").join(format!(
            "tcptrace-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let t = Self {
            dir,
            event: event.to_owned(),
        };
        t.write("buffer_size_kb", &kb.to_string());
        t.write(&format!("events/{event}/filter"), filter);
        t.write(&format!("events/{event}/enable"), "1");
        t
    }

    fn write(&self, file: &str, value: &str) {
        let path = self.dir.join(file);
        fs::write(&path, value).unwrap_or_else(|e| panic!("{} <- {value}: {e}", path.display()));
    }

    /// The events recorded so far, one line each.
    pub fn lines(&self) -> Vec<String> {
        let name = self.event.rsplit('/').next().unwrap_or_default();
        let marker = format!(" {name}: ");
        fs::read_to_string(self.dir.join("trace"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains(&marker))
            .map(str::to_owned)
            .collect()
    }

    /// How many events were recorded.
    pub fn count(&self) -> u64 {
        self.lines().len() as u64
    }

    /// How many fired in an interrupt on top of a thread of PID 1, where
    /// no BPF program runs (see the module documentation).
    pub fn blind(&self) -> u64 {
        self.lines().iter().filter(|l| blind(l)).count() as u64
    }

    /// The events a BPF program could see (all but the [`Self::blind`]
    /// ones), one line each.
    pub fn seen(&self) -> Vec<String> {
        self.lines().into_iter().filter(|l| !blind(l)).collect()
    }

    /// The [`Self::blind`] events, one line each.
    pub fn blind_lines(&self) -> Vec<String> {
        self.lines().into_iter().filter(|l| blind(l)).collect()
    }
}

/// The value of `name` in a trace line (`field(l, "sport")` is `41000` in
/// `... sport=41000 dport=8080 ...`).
pub fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    // After the time stamp (`36573.376050:`) and the event's name.
    let is_time = |w: &str| {
        w.strip_suffix(':')
            .and_then(|t| t.split_once('.'))
            .is_some_and(|(s, us)| {
                [s, us]
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            })
    };
    let mut words = line.split_whitespace();
    words.find(|w| is_time(w))?;
    words
        .skip(1)
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
}

/// How many sockets must change state, appear or go for two censuses
/// (sockets per state) to be equal. A state change that no BPF program
/// saw leaves one socket in its earlier state (2) or unseen (1).
pub fn census_distance(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> u64 {
    a.keys()
        .chain(b.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|k| {
            let (x, y) = (
                a.get(k).copied().unwrap_or(0),
                b.get(k).copied().unwrap_or(0),
            );
            x.abs_diff(y)
        })
        .sum()
}

impl Drop for Ftrace {
    fn drop(&mut self) {
        let _ = fs::write(self.dir.join(format!("events/{}/enable", self.event)), "0");
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Whether a trace line (`comm-TID [CPU] FLAGS TS: event: ...`) fired in
/// an interrupt (FLAGS' third mark `s`, `h` or `H`) while a thread of
/// PID 1 was current.
fn blind(line: &str) -> bool {
    let Some((task, rest)) = line.split_once(" [") else {
        return false;
    };
    let Some(tid) = task.trim().rsplit_once('-').map(|(_, t)| t) else {
        return false;
    };
    let flags = rest.split_whitespace().nth(1).unwrap_or_default();
    let in_irq = matches!(flags.chars().nth(2), Some('s' | 'h' | 'H'));
    in_irq && Path::new(&format!("/proc/1/task/{tid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::{blind, field};

    #[test]
    fn reads_a_field() {
        let l = "python3-4194000 [001] ..s1. 36573.376050: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=41000 dport=8080 saddr=127.0.0.1 oldstate=TCP_FIN_WAIT1 newstate=TCP_FIN_WAIT2";
        assert_eq!(field(l, "sport"), Some("41000"));
        assert_eq!(field(l, "dport"), Some("8080"));
        assert_eq!(field(l, "newstate"), Some("TCP_FIN_WAIT2"));
        assert_eq!(field(l, "port"), None);
    }

    #[test]
    fn tells_interrupts_on_pid_1_threads() {
        let l = "tokio-rt-worker-1 [001] ..s1. 36573.376050: tcp_retransmit_skb: sport=1";
        assert!(blind(l), "thread 1 is PID 1 itself");
        let l = "tokio-rt-worker-1 [001] ..... 36573.376050: tcp_retransmit_skb: sport=1";
        assert!(!blind(l), "process context");
        let l = "python3-4194000 [001] ..s1. 36573.376050: tcp_retransmit_skb: sport=1";
        assert!(!blind(l), "no such thread of PID 1");
    }
}
