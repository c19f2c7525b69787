//! `ss` run in a test's network namespace, read as the tests need it: one
//! line per socket as words, and the timer `ss -o` prints. The oracle the
//! socket tables of `tracer::sockdiag` are checked against.

use crate::NetNs;

/// `ss -Htna<flags> FILTER` in the namespace: one line per socket, as
/// words (`State Recv-Q Send-Q Local Peer [details...]`; with `i`, the
/// details line is a line of its own).
pub fn lines(ns: &NetNs, flags: &str, filter: &str) -> Vec<Vec<String>> {
    let out = ns.sh(&["ss", &format!("-Htna{flags}"), filter]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// A timer time as `ss -o` prints it (`misc/ss.c`, `print_ms_timer`):
/// `200ms`, `4.987ms` (4.987 s), `59sec`, `119min`, `1min5sec`, in ms.
pub fn ms(text: &str) -> u64 {
    let (mins, rest) = match text.split_once("min") {
        Some((m, r)) => (m.parse::<u64>().unwrap(), r),
        None => (0, text),
    };
    let rest_ms = if let Some(s) = rest.strip_suffix("sec") {
        s.parse::<u64>().unwrap() * 1000
    } else if let Some(ms) = rest.strip_suffix("ms") {
        match ms.split_once('.') {
            Some((s, m)) => s.parse::<u64>().unwrap() * 1000 + m.parse::<u64>().unwrap(),
            None => ms.parse().unwrap(),
        }
    } else {
        assert!(rest.is_empty(), "ss timer {text:?}");
        0
    };
    mins * 60_000 + rest_ms
}

/// The `timer:(KIND,TIME,COUNT)` of an `ss -o` line (`keepalive`, `on`,
/// `persist`, `timewait`), with its time in ms and its count.
pub fn timer(line: &[String]) -> Option<(String, u64, u8)> {
    let t = line.iter().find_map(|w| w.strip_prefix("timer:("))?;
    let parts: Vec<&str> = t.trim_end_matches(')').split(',').collect();
    Some((
        parts.first()?.to_string(),
        ms(parts.get(1)?),
        parts.get(2)?.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ss_times() {
        assert_eq!(super::ms("200ms"), 200);
        assert_eq!(super::ms("4.987ms"), 4_987);
        assert_eq!(super::ms("59sec"), 59_000);
        assert_eq!(super::ms("119min"), 7_140_000);
        assert_eq!(super::ms("1min5sec"), 65_000);
        let line: Vec<String> = ["ESTAB", "0", "0", "timer:(on,1.204ms,3)"]
            .map(String::from)
            .into();
        assert_eq!(super::timer(&line), Some(("on".into(), 1_204, 3)));
    }
}
