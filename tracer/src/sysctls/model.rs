//! What the TCP sysctls mean in seconds and ports, computed the way the
//! kernel's timers do (`net/ipv4/tcp_timer.c`, Linux 6.6 and later; the
//! same figures as older kernels whenever `tcp_syn_linear_timeouts` is
//! absent or 0). Pure functions of the settings, in milliseconds.
//!
//! The kernel's constants, for `HZ` of 100, 250, 300 or 1000 alike:
//! `TCP_TIMEOUT_INIT` (the first SYN's RTO) 1 s, `TCP_RTO_MIN` 200 ms,
//! `TCP_RTO_MAX` 120 s (the `tcp_rto_max_ms` sysctl since 6.15).

/// The first SYN's retransmission timeout (`TCP_TIMEOUT_INIT`).
pub const SYN_RTO_MS: u64 = 1_000;
/// The smallest retransmission timeout (`TCP_RTO_MIN`).
pub const RTO_MIN_MS: u64 = 200;
/// The largest retransmission timeout (`TCP_RTO_MAX`), the default of
/// `net.ipv4.tcp_rto_max_ms` where the kernel has it.
pub const RTO_MAX_MS: u64 = 120_000;

/// `tcp_model_timeout()`: how long `boundary` retransmissions take when the
/// RTO starts at `rto_base_ms` and doubles up to `rto_max_ms`. The kernel
/// gives up on a connection once this long has passed since its first
/// unacknowledged retransmission (`retransmits_timed_out()`).
pub fn model_timeout_ms(boundary: u32, rto_base_ms: u64, rto_max_ms: u64) -> u64 {
    let rto_base_ms = rto_base_ms.max(1);
    let thresh = (rto_max_ms / rto_base_ms).max(1).ilog2();
    if boundary <= thresh {
        ((2u64 << boundary) - 1) * rto_base_ms
    } else {
        ((2u64 << thresh) - 1) * rto_base_ms + u64::from(boundary - thresh) * rto_max_ms
    }
}

/// When a SYN is sent and when `connect()` fails with `ETIMEDOUT` if no
/// answer ever comes: the send times of the first SYN (0) and of every
/// retransmission, and the time the kernel gives up, in ms from the first
/// SYN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynTimeline {
    pub sends_ms: Vec<u64>,
    pub gives_up_ms: u64,
}

/// The SYN timeline for `tcp_syn_retries` = `syn_retries` (or a socket's
/// `TCP_SYNCNT`) and `tcp_syn_linear_timeouts` = `linear` (0 where the
/// kernel lacks it), as `tcp_retransmit_timer()` and `tcp_write_timeout()`
/// run it in SYN_SENT:
///
/// - the RTO starts at 1 s; after each retransmission it doubles (up to
///   `rto_max_ms`) once more than `linear` retransmissions have been
///   sent (`tp->total_rto > tcp_syn_linear_timeouts`), and stays as it is
///   before that;
/// - when the timer fires, the kernel gives up if `syn_retries + linear`
///   retransmissions were sent already, or if at least one was and
///   `model_timeout_ms(syn_retries, 1 s)` has passed since the first SYN.
pub fn syn_timeline(syn_retries: u32, linear: u32, rto_max_ms: u64) -> SynTimeline {
    let max = syn_retries.saturating_add(linear);
    let budget = model_timeout_ms(syn_retries, SYN_RTO_MS, rto_max_ms);
    let (mut now, mut rto, mut sent) = (0u64, SYN_RTO_MS, 0u32);
    let mut sends_ms = vec![0];
    loop {
        now += rto;
        if sent >= max || (sent > 0 && now >= budget) {
            return SynTimeline {
                sends_ms,
                gives_up_ms: now,
            };
        }
        sent += 1;
        sends_ms.push(now);
        if sent > linear {
            rto = (rto * 2).min(rto_max_ms);
        }
    }
}

/// How long `connect()` to a peer that never answers waits before
/// `ETIMEDOUT`, in ms (see [`syn_timeline`]).
pub fn connect_timeout_ms(syn_retries: u32, linear: u32, rto_max_ms: u64) -> u64 {
    syn_timeline(syn_retries, linear, rto_max_ms).gives_up_ms
}

/// How long an established connection keeps retransmitting to a peer that
/// went silent before it is dropped (`ETIMEDOUT`), in ms: the time budget
/// `tcp_retries2` buys with the smallest RTO (`retransmits_timed_out()`),
/// so about this long after the first unanswered retransmission; the
/// timer that notices fires at the first RTO after it, and a socket with
/// `TCP_USER_TIMEOUT` uses that instead.
pub fn dead_peer_timeout_ms(retries2: u32, rto_max_ms: u64) -> u64 {
    model_timeout_ms(retries2, RTO_MIN_MS, rto_max_ms)
}

/// How long after the last segment from the peer an idle connection with
/// `SO_KEEPALIVE` notices the peer is gone: `tcp_keepalive_time` seconds
/// of silence, then `tcp_keepalive_probes` probes `tcp_keepalive_intvl`
/// seconds apart, in ms (sockets may set their own with `TCP_KEEPIDLE`,
/// `TCP_KEEPINTVL`, `TCP_KEEPCNT`).
pub fn keepalive_detection_ms(time_s: u32, intvl_s: u32, probes: u32) -> u64 {
    (u64::from(time_s) + u64::from(intvl_s) * u64::from(probes)) * 1_000
}

/// How many ephemeral ports `ip_local_port_range` = `low high` offers to
/// connections toward one destination address and port (both ends
/// included; none if the range is upside down).
pub fn ephemeral_ports(low: u16, high: u16) -> u32 {
    if high < low {
        0
    } else {
        u32::from(high - low) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_peer_with_the_default_retries2_is_about_924_6_seconds() {
        // Documentation/networking/ip-sysctl.rst, tcp_retries2: "The
        // default value of 15 yields a hypothetical timeout of 924.6
        // seconds": (2^10 - 1) * 0.2 s + (15 - 9) * 120 s.
        assert_eq!(dead_peer_timeout_ms(15, RTO_MAX_MS), 924_600);
        // tcp_orphan_retries' comment in tcp_timer.c: "8 corresponds to
        // >100 seconds with minimal RTO of 200msec": (2^9 - 1) * 0.2 s.
        assert_eq!(dead_peer_timeout_ms(8, RTO_MAX_MS), 102_200);
        // (2^4 - 1) * 0.2 s.
        assert_eq!(dead_peer_timeout_ms(3, RTO_MAX_MS), 3_000);
        // A smaller tcp_rto_max_ms (6.15+) caps every step past the knee:
        // ilog2(1000 / 200) = 2, so (2^3 - 1) * 0.2 s + 13 * 1 s.
        assert_eq!(dead_peer_timeout_ms(15, 1_000), 14_400);
    }

    #[test]
    fn connect_timeout_without_linear_timeouts_is_127_seconds() {
        // ip-sysctl.rst, tcp_syn_retries: "Default value is 6, which
        // corresponds to 63seconds till the last retransmission with the
        // current initial RTO of 1second. With this the final timeout for
        // an active TCP connection attempt will happen after 127seconds."
        let t = syn_timeline(6, 0, RTO_MAX_MS);
        assert_eq!(t.sends_ms, [0, 1_000, 3_000, 7_000, 15_000, 31_000, 63_000]);
        assert_eq!(t.gives_up_ms, 127_000);
        assert_eq!(connect_timeout_ms(6, 0, RTO_MAX_MS), 127_000);
    }

    #[test]
    fn linear_syn_timeouts_come_first() {
        // ip-sysctl.rst, tcp_syn_linear_timeouts: "With an initial RTO of
        // 1 and tcp_syn_linear_timeouts = 4 we would expect SYN RTOs to
        // be: 1, 1, 1, 1, 1, 2, 4, ... (4 linear timeouts, and the first
        // exponential backoff using 2^0 * initial_RTO)."
        let t = syn_timeline(6, 4, RTO_MAX_MS);
        let gaps: Vec<u64> = t
            .sends_ms
            .windows(2)
            .map(|w| (w[1] - w[0]) / 1_000)
            .collect();
        assert_eq!(gaps, [1, 1, 1, 1, 1, 2, 4, 8, 16, 32]);
        // ip-sysctl.rst, tcp_syn_retries, since 6.5: "Default value is 6,
        // which corresponds to 67seconds (with tcp_syn_linear_timeouts =
        // 4) till the last retransmission [...]. With this the final
        // timeout for an active TCP connection attempt will happen after
        // 131seconds." tcp_write_timeout(): 6 + 4 retransmissions.
        assert_eq!(t.sends_ms.len(), 11);
        assert_eq!(t.sends_ms.last(), Some(&67_000));
        assert_eq!(t.gives_up_ms, 131_000);
    }

    #[test]
    fn the_time_budget_can_end_a_connect_before_the_count() {
        // syn_retries 1 buys model_timeout(1, 1 s) = 3 s; linear 3 would
        // allow 4 retransmissions, but at 3 s two are sent and the time
        // is up (retransmits_timed_out()).
        let t = syn_timeline(1, 3, RTO_MAX_MS);
        assert_eq!((t.sends_ms, t.gives_up_ms), (vec![0, 1_000, 2_000], 3_000));
        // Without the linear knob (Linux 6.1): one retransmission at 1 s,
        // RTO 2 s, given up at 3 s.
        assert_eq!(syn_timeline(1, 0, RTO_MAX_MS).gives_up_ms, 3_000);
        // syn_retries 0: the first SYN only, given up when its RTO ends.
        assert_eq!(syn_timeline(0, 0, RTO_MAX_MS).gives_up_ms, 1_000);
    }

    #[test]
    fn keepalive_with_the_defaults_takes_two_hours_and_eleven_minutes() {
        // ip-sysctl.rst: keepalive_time 7200 s, intvl 75 s, probes 9:
        // "the connection will be aborted after ~11 minutes of retries".
        assert_eq!(keepalive_detection_ms(7_200, 75, 9), 7_875_000);
        assert_eq!(keepalive_detection_ms(60, 10, 3), 90_000);
    }

    #[test]
    fn ephemeral_port_counts() {
        // The default range, 32768-60999.
        assert_eq!(ephemeral_ports(32_768, 60_999), 28_232);
        assert_eq!(ephemeral_ports(1_024, 65_535), 64_512);
        assert_eq!(ephemeral_ports(5_000, 5_000), 1);
        assert_eq!(ephemeral_ports(6_000, 5_000), 0);
    }

    #[test]
    fn model_timeout_knee() {
        // ilog2(120 s / 1 s) = 6: up to 6 retries the sum doubles.
        assert_eq!(model_timeout_ms(6, SYN_RTO_MS, RTO_MAX_MS), 127_000);
        assert_eq!(model_timeout_ms(7, SYN_RTO_MS, RTO_MAX_MS), 247_000);
        assert_eq!(model_timeout_ms(0, RTO_MIN_MS, RTO_MAX_MS), 200);
    }
}
