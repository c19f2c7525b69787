//! BENCHMARKS.md: the report's markdown (tables of every workload and
//! configuration, the goals, the kernel cost, replay and memory) and the
//! number formatting it uses.

use std::fmt::Write as _;

use super::{
    extras::Startup,
    kcost,
    report::{Goal, Results, Summary, lost_text, quiet_ready_ms},
};

/// A count, rounded.
pub(super) fn int(v: f64) -> String {
    if v.is_finite() {
        group(&format!("{:.0}", v.round()))
    } else {
        "-".into()
    }
}

/// Three significant digits or so.
pub(super) fn num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    group(&format!("{v:.digits$}"))
}

pub(super) fn group(s: &str) -> String {
    // Thin spaces between thousands make 6-digit rates readable.
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let (sign, int) = int.strip_prefix('-').map_or(("", int), |i| ("-", i));
    let mut grouped = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push('\u{202f}');
        }
        grouped.push(ch);
    }
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

pub(super) fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

pub fn markdown(r: &Results, goals: &[Goal]) -> String {
    let m = r.machine;
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `cargo xtask bench`{}: every configuration runs the same workloads in the same invocation, interleaved round-robin ({} round{}, the order rotated each round), and ratios are against the no-tracer baseline of that invocation. Raw numbers: `bench/results.json`.\n",
        if r.quick { " --quick" } else { "" },
        r.rounds,
        if r.rounds == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        s,
        "Machine: {} × {}, {:.1} GiB; kernel {}; commit {}{}. Whole run: {:.0} s.\n",
        m.cores,
        m.cpu,
        m.mem_gib,
        m.kernel,
        m.commit,
        if m.dirty {
            " with uncommitted changes under tracer*/"
        } else {
            ""
        },
        r.secs
    );
    let foreign: usize = r.runs.iter().filter(|x| !x.foreign.is_empty()).count();
    if foreign > 0 {
        let _ = writeln!(
            s,
            "**{foreign} of {} runs had other tracers on the host** (tcptrace, bpftrace or tcpstates not started by the harness); their numbers are less reliable.\n",
            r.runs.len()
        );
    }
    let _ = writeln!(
        s,
        "## Goals\n\n| goal | measured | met |\n| --- | --- | --- |"
    );
    for g in goals {
        let met = match g.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        let _ = writeln!(s, "| {} | {} | {met} |", g.what, g.measured);
    }
    let floor: Vec<String> = r
        .summaries
        .iter()
        .filter(|x| x.workload.starts_with("storm") && x.config == "bpftrace states count")
        .filter_map(|x| Some(format!("{} {:+.1} %", x.workload, x.slowdown_pct?)))
        .collect();
    if !floor.is_empty() {
        let _ = writeln!(
            s,
            "\nFor scale: bpftrace counting the same tracepoint in the kernel, with no output at all, slows the storms by {} (the cost of the tracepoint and a program call).",
            floor.join(", ")
        );
    }
    kcost::markdown(r.runs, &mut s);
    let mut workloads: Vec<&str> = Vec::new();
    for x in r.summaries {
        if x.workload != "idle" && !workloads.contains(&x.workload.as_str()) {
            workloads.push(&x.workload);
        }
    }
    for w in workloads {
        let spread = r
            .summaries
            .iter()
            .find(|x| x.workload == w && x.config == "none")
            .filter(|x| x.rate > 0.0 && x.runs > 1)
            .map(|x| {
                format!(
                    "\n\nThe baseline's runs spread over {:.0} % of their median: slowdowns smaller than that are noise.",
                    (x.rate_max - x.rate_min) / x.rate * 100.0
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "\n## {w}{spread}\n\n| configuration | rate, median (min–max) | slowdown | events seen / expected | lost | tracer CPU µs/event | tracer CPU % of a core | RSS MB peak / end |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        for x in r.summaries.iter().filter(|x| x.workload == w) {
            let seen = match (x.seen, x.expected) {
                (Some(a), Some(b)) if b > 0.0 => {
                    format!("{} / {} ({:.1} %)", int(a), int(b), a / b * 100.0)
                }
                (Some(a), Some(b)) => format!("{} / {}", int(a), int(b)),
                (Some(a), None) => int(a),
                _ => "-".into(),
            };
            let _ = writeln!(
                s,
                "| {}{}{} | {} {} ({}–{}) | {} | {} | {} | {} | {} | {} |",
                x.config,
                if x.killed_runs > 0 {
                    " (killed: ignored SIGINT)"
                } else {
                    ""
                },
                if x.foreign_runs > 0 {
                    " (other tracers on the host)"
                } else {
                    ""
                },
                num(x.rate),
                x.unit,
                num(x.rate_min),
                num(x.rate_max),
                opt(x.slowdown_pct, |v| match x.slowdown_ci {
                    Some((lo, hi)) => format!("{v:+.1} % ({lo:+.0} to {hi:+.0})"),
                    None => format!("{v:+.1} %"),
                }),
                seen,
                lost_text(x),
                opt(x.cpu_us_per_event, num),
                opt(x.cpu_pct, num),
                if x.config == "none" {
                    "-".into()
                } else {
                    format!("{:.1} / {:.1}", x.rss_peak_mb, x.rss_mb)
                },
            );
        }
    }
    let idle: Vec<&Summary> = r
        .summaries
        .iter()
        .filter(|x| x.workload == "idle")
        .collect();
    if !idle.is_empty() {
        let _ = writeln!(
            s,
            "\n## idle (no traffic on the watched port)\n\n| configuration | CPU % of a core | wakeups/s | RSS MB peak / end |\n| --- | --- | --- | --- |"
        );
        for x in idle {
            let _ = writeln!(
                s,
                "| {} | {:.3} | {} | {:.1} / {:.1} |",
                x.config,
                x.rate,
                opt(x.wakeups_per_sec, num),
                x.rss_peak_mb,
                x.rss_mb
            );
        }
    }
    if !r.startup.is_empty() {
        let list = |f: &dyn Fn(&Startup) -> f64| {
            r.startup
                .iter()
                .map(|x| format!("{:.0}", f(x)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "\n## Start-up\n\n`tcptrace states --json` started while 2 000 connections/s are being made on its port:\n\n- spawn to attached (\"watching\" on stderr): {} ms\n- spawn to first event on stdout: {} ms",
            list(&|x| x.ready_ms),
            list(&|x| x.first_event_ms)
        );
        if let Some((m, max)) = quiet_ready_ms(r.runs) {
            let _ = writeln!(
                s,
                "- for comparison, spawn to attached in every tcptrace run above, started before its workload: median {m:.0} ms, worst {max:.0} ms"
            );
        }
    }
    if !r.replay.is_empty() {
        let _ = writeln!(
            s,
            "\n## Replay of a recorded FIN storm (`tcptrace replay FILE VIEW --json > /dev/null`)\n\nThe same storm recorded side by side as JSON Lines and with `record --binary`. `states`, `retrans` and `resets` print a line per event; `top`, `hist` and `connect` are the engine path. Instructions per event are counted by callgrind (repeatable whatever else the machine does), net of a replay of the header alone.\n\n| recording | view | events | seconds | events/s | instructions/event |\n| --- | --- | --- | --- | --- | --- |"
        );
        for x in r.replay {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.3} | {} M | {} |",
                x.encoding,
                x.view,
                int(x.events as f64),
                x.secs,
                num(x.events as f64 / x.secs / 1e6),
                x.instr_per_event.map_or("-".into(), |i| format!("{i:.0}"))
            );
        }
    }
    if !r.flows.is_empty() {
        let _ = writeln!(
            s,
            "\n## Memory with many live flows\n\nA namespace holds loopback connections open (both ends: every socket is a flow to tcptrace), with tcptrace started before they open (flows learnt from events) or after (found in /proc at start-up). RSS includes the ring buffer, which is mapped twice (4 MiB ring: 8 MB of RSS), and the binary; anonymous memory is what tcptrace allocated.\n\n| configuration | started | sockets | census | RSS MB | peak MB | anonymous MB |\n| --- | --- | --- | --- | --- | --- | --- |"
        );
        for x in r.flows {
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {} | {:.1} | {:.1} | {:.1} |",
                x.config,
                x.started,
                int(x.sockets as f64),
                x.census.map_or("-".into(), |c| int(c as f64)),
                x.rss_kb as f64 / 1024.0,
                x.peak_kb as f64 / 1024.0,
                x.anon_kb as f64 / 1024.0
            );
        }
    }
    if let Some(c) = r.calibration {
        let _ = writeln!(
            s,
            "\n## Expected events\n\nMeasured at the start of the run with `bpftrace states count` (an in-kernel count on `sock:inet_sock_set_state`, filtered to the port) over storms of 1 000 and 4 000 connections: a FIN-closed loopback connection makes {:.2} transitions (plus {:.0} for the listener), a RST-closed one {:.2} (plus {:.0}). The storm's server waits for the client's FIN or RST before it closes, which makes these numbers exact (otherwise a RST finds the server's socket in one state or another depending on timing). Retransmissions are expected from the namespaces' own `RetransSegs` (`/proc/net/snmp`).",
            c.fin.per_conn, c.fin.fixed, c.rst.per_conn, c.rst.fixed
        );
    }
    let _ = writeln!(
        s,
        "\n## How to read this\n\n\
- **rate**: connections/s of one client thread (storms), or MB/s of the bulk flows (retransmit, steady). **slowdown** = median baseline rate / median rate − 1; in brackets the 95 % confidence interval (Student's t) of the mean of the rounds' own slowdowns, each run against the baseline run of its round: with three rounds on a noisy VM it is wide, and a goal of ≤ 5 % is met only when its top is.\n\
- **events seen**: lines the tool printed for the workload's port (the in-kernel count for `bpftrace ... count`); for retransmissions the segments they held (tcptrace's `segs`, the bpftrace peers' `tcp_gso_segs`), the unit of `RetransSegs`. Summary views (`top`, `connect`) print no line per event.\n\
- **lost**: what the tool itself reported: tcptrace `lost` records or warnings by source (`kernel`: ring buffer full; `kernel-nested`: the kernel skipped our program because it was already running on that CPU; `output`: our output fell behind), bpftrace's and libbpf-tools' perf-buffer `lost` lines.\n\
- **tracer CPU**: user + system time of all the tracer's threads (`/proc/<pid>/task/*/schedstat`) from attached until its output has been still for 200 ms, so start-up and exit are left out; per event it is divided by the events the workload made in the kernel (the expected transitions, or `RetransSegs`), the same denominator for every configuration. In-kernel BPF time is not in it: it shows up as slowdown.\n\
- **RSS**: `VmHWM` (peak) and `VmRSS` (end) of the tracer from `/proc/<pid>/status`, read before it is stopped.\n\
- Output goes to a file on tmpfs, which like /dev/null never blocks the writer.\n\
- Workloads run in private network namespaces made for each run; retransmit runs use a veth pair with offloads off and nftables random drops in the input hook of both ends."
    );
    s
}
