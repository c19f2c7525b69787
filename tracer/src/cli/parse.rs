//! The parsers of the command line's values (durations, sizes, ports,
//! pids, kinds, plans): each says in one sentence what it expected.

use std::time::Duration;

use crate::{
    event::RetransKind,
    hooks::{connect::ConnectPlan, forms::Form},
};

/// Durations and intervals at most this long (a year): past it a run is
/// a mistake, and `Duration` arithmetic would overflow.
pub(crate) const MAX_SECS: f64 = 366.0 * 86_400.0;

pub(crate) fn parse_retrans_kind(s: &str) -> Result<RetransKind, String> {
    RetransKind::from_name(s).ok_or_else(|| {
        format!("'{s}' is not a retransmit kind; give rto, fast, tlp, syn, synack or data")
    })
}

pub(crate) fn parse_ms(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=MAX_SECS * 1e3).contains(&v) => Ok(v),
        _ => Err(format!(
            "'{s}' is not a number of milliseconds; give 0 or more, e.g. 100"
        )),
    }
}

/// The largest process id this kernel hands out.
pub(crate) fn pid_max() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        // The kernel's own ceiling (PID_MAX_LIMIT on 64-bit).
        .unwrap_or(4_194_304)
}

pub(crate) fn parse_pid(s: &str) -> Result<u32, String> {
    let max = pid_max();
    match s.parse::<i64>() {
        Ok(p) if p > 0 && p <= i64::from(max) => Ok(p as u32),
        Ok(p) if p > 0 => Err(format!(
            "'{s}' is not a process id: this kernel's largest is {max} (/proc/sys/kernel/pid_max)"
        )),
        _ => Err(format!(
            "'{s}' is not a process id; give a positive number such as 1234 (see `pgrep`)"
        )),
    }
}

pub(crate) fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<i64>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(format!(
            "'{s}' is not a port; give a number from 1 to 65535"
        )),
    }
}

pub(crate) fn parse_secs(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= MAX_SECS => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!(
            "'{s}' is not a duration; give a positive number of seconds, at most a year (31622400)"
        )),
    }
}

/// A size in bytes with an optional unit (`K`, `M`, `G`, binary).
pub(crate) fn bytes(s: &str) -> Option<u64> {
    let t = s.trim();
    let (num, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return None,
    };
    Some(num.parse::<u64>().ok()?.saturating_mul(mult))
}

pub(crate) fn parse_hook_type(s: &str) -> Result<Form, String> {
    Form::from_short(s).ok_or_else(|| {
        let names: Vec<&str> = Form::ORDER.iter().map(|h| h.short()).collect();
        format!("not a hook type: use one of {}", names.join(", "))
    })
}

pub(crate) fn parse_connect_plan(s: &str) -> Result<ConnectPlan, String> {
    ConnectPlan::from_short(s).ok_or_else(|| {
        let names: Vec<&str> = ConnectPlan::ORDER.iter().map(|p| p.short()).collect();
        format!("not a connect plan: use one of {}", names.join(", "))
    })
}

pub(crate) fn parse_ring_size(s: &str) -> Result<u32, String> {
    match bytes(s) {
        Some(n) if n.is_power_of_two() && (64 << 10..=1 << 30).contains(&n) => Ok(n as u32),
        _ => Err(format!(
            "'{s}' is not a buffer size; give a power of two from 64K to 1G, e.g. 512K, 8M"
        )),
    }
}

pub(crate) fn parse_queue_size(s: &str) -> Result<usize, String> {
    match bytes(s) {
        Some(n) if (64 << 10..=1 << 30).contains(&n) => Ok(n as usize),
        _ => Err(format!(
            "'{s}' is not an output queue size; give 64K to 1G, e.g. 512K, 16M"
        )),
    }
}

pub(crate) fn parse_count(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "'{s}' is not a count; give a positive whole number"
        )),
    }
}
