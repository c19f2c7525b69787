//! The configurations under test, one line each: no tracer, tcptrace views,
//! the bpftrace peer scripts under `bench/peers/` and libbpf-tools
//! `tcpstates`. Benchmarking another view (`hist`, `resets`, ...) is one
//! more line in [`CONFIGS`].

/// Workload families a configuration runs under (bit flags).
pub const STORM: u8 = 1;
pub const LOSS: u8 = 2;
pub const STEADY: u8 = 4;
pub const IDLE: u8 = 8;

/// What runs.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// Nothing: the baseline.
    None,
    /// tcptrace with these arguments; the workload's `--port` is added.
    Tcptrace(&'static [&'static str]),
    /// bpftrace with this script under `bench/peers` (the port is `$1`).
    Bpftrace(&'static str),
    /// libbpf-tools `tcpstates` (it has no either-side port filter: its
    /// `-L`/`-D` must both match, so it runs unfiltered and only lines with
    /// the workload's port are counted).
    Tcpstates,
    /// The floor: `bench/peers/floor.bpf.c` (reserve and submit a
    /// fixed-size record per state transition, no field read, no filter),
    /// loaded by `xtask bench-worker floor`.
    Floor,
}

/// What a configuration's output lines are, which says what they are
/// compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    /// No output: the baseline.
    Nothing,
    /// One line (or one in-kernel count) per TCP state transition on the
    /// workload's port; expected from the calibrated storm.
    States,
    /// One line per retransmission; expected from the namespaces'
    /// `RetransSegs`.
    Retrans,
    /// Summaries or one line per connection (`top`, `connect`, `hist`):
    /// nothing to count but lost-event reports.
    Summary,
}

#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub name: &'static str,
    pub kind: Kind,
    pub watch: Watch,
    /// Workload families (`STORM | LOSS | ...`).
    pub under: u8,
}

const fn c(name: &'static str, kind: Kind, watch: Watch, under: u8) -> Config {
    Config {
        name,
        kind,
        watch,
        under,
    }
}

use Kind::{Bpftrace, Floor, Tcpstates, Tcptrace};
use Watch::{Retrans, States, Summary};

/// Every configuration, in report order.
#[rustfmt::skip]
pub const CONFIGS: &[Config] = &[
    c("none",                    Kind::None,                           Watch::Nothing, STORM | LOSS | STEADY),
    c("tcptrace states",         Tcptrace(&["states"]),                States,  STORM | IDLE),
    c("tcptrace states --json",  Tcptrace(&["states", "--json"]),      States,  STORM | STEADY),
    c("tcptrace retrans",        Tcptrace(&["retrans"]),               Retrans, STORM | LOSS | IDLE),
    c("tcptrace retrans --json", Tcptrace(&["retrans", "--json"]),     Retrans, STORM | LOSS | STEADY),
    c("tcptrace connect --json", Tcptrace(&["connect", "--json"]),     Summary, STORM),
    c("tcptrace top --json",     Tcptrace(&["top", "--json"]),         Summary, STORM | LOSS | STEADY | IDLE),
    c("bpftrace states count",   Bpftrace("states-count.bt"),          States,  STORM | STEADY),
    c("bpftrace states printf",  Bpftrace("states-printf.bt"),         States,  STORM | IDLE),
    c("bpftrace retrans count",  Bpftrace("retrans-count.bt"),         Retrans, LOSS),
    c("bpftrace retrans printf", Bpftrace("retrans-printf.bt"),        Retrans, LOSS),
    c("bpftrace empty program",  Bpftrace("states-empty.bt"),          Summary, STORM),
    c("bpftrace clock read",     Bpftrace("states-clock.bt"),          Summary, STORM),
    c("libbpf-tools tcpstates",  Tcpstates,                            States,  STORM | STEADY | IDLE),
    c("floor reserve+submit",    Floor,                                Summary, STORM),
];

/// The configuration called `name`.
pub fn config(name: &str) -> &'static Config {
    CONFIGS
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no configuration {name:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_tcptrace_names_match_their_arguments() {
        for (i, a) in CONFIGS.iter().enumerate() {
            assert!(
                CONFIGS[i + 1..].iter().all(|b| b.name != a.name),
                "{}",
                a.name
            );
            if let Kind::Tcptrace(args) = a.kind {
                assert_eq!(a.name, format!("tcptrace {}", args.join(" ")));
            }
        }
    }
}
