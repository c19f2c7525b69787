//! Which rows `top` shows and in what order: the state filter (`--state`,
//! the `s` key) and the sort orders (`--sort`, the sort keys), as plain
//! data operations over the engine's flows.

use std::cmp::Reverse;

use super::{
    SortBy,
    groups::{GroupKey, TopGroup},
};
use crate::{engine::flows::Flow, event::TcpState};

/// Whether a flow is done with by its process: closed (and lingering in
/// the table) or in TIME_WAIT. Such rows, and rows nobody owns (the
/// orphans a process left behind, FIN_WAIT2 after `close()`), go after
/// the rest in every sort order, so that they never hide what a process
/// still holds (its CLOSE_WAIT leak, say).
pub fn done(f: &Flow) -> bool {
    f.end_ns.get().is_some() || f.state == TcpState::TimeWait
}

/// Whether a flow's state is one of `states` (empty: all states).
pub fn in_states(f: &Flow, states: &[TcpState]) -> bool {
    states.is_empty() || states.contains(&f.state)
}

/// Sorts `flows` by `sort`: owned live flows first, then ownerless ones,
/// then those done with (see [`done`]); within each, by the sort key.
/// `Latency` puts flows without a measured handshake after those with
/// one; ties go to the older flow.
pub fn sort(flows: &mut [&Flow], sort: SortBy) {
    let rank = |f: &Flow| (done(f), f.owner.is_none());
    match sort {
        SortBy::Retrans => flows.sort_by_key(|f| {
            (
                rank(f),
                Reverse(f.extra().retrans.total()),
                Reverse(f.extra().resets_sent + f.extra().resets_recv),
                f.start_ns,
            )
        }),
        SortBy::Latency => flows.sort_by_key(|f| {
            let hs = f.handshake_ns.get();
            (rank(f), hs.is_none(), Reverse(hs), f.start_ns)
        }),
        SortBy::Age => flows.sort_by_key(|f| (rank(f), f.start_ns)),
    }
}

/// Sorts groups as [`sort`] sorts flows: by retransmitted segments per
/// second (then in all, then size), slowest handshake, or oldest flow;
/// the group of flows nobody owns last.
pub fn sort_groups(groups: &mut [TopGroup], sort: SortBy) {
    let rank = |g: &TopGroup| g.key == GroupKey::Owner(None);
    match sort {
        SortBy::Retrans => groups.sort_by(|a, b| {
            rank(a)
                .cmp(&rank(b))
                .then(b.retrans_segs_per_s.total_cmp(&a.retrans_segs_per_s))
                .then(b.retrans_segs.cmp(&a.retrans_segs))
                .then(b.resets.cmp(&a.resets))
                .then(b.flows.cmp(&a.flows))
                .then(a.oldest_ns.cmp(&b.oldest_ns))
        }),
        SortBy::Latency => groups.sort_by_key(|g| {
            let hs = g.max_handshake_ns;
            (rank(g), hs.is_none(), Reverse(hs), g.oldest_ns)
        }),
        SortBy::Age => groups.sort_by_key(|g| (rank(g), g.oldest_ns)),
    }
}

/// The state the `s` key moves to from `current`: the next state (in the
/// kernel's order) that has sockets in `census`, after the last one back
/// to all states (`None`).
pub fn next_state(current: Option<TcpState>, census: &[(TcpState, u64)]) -> Option<TcpState> {
    census
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, _)| *s)
        .find(|s| current.is_none_or(|c| *s > c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_key_cycles_through_the_census_and_back_to_all() {
        let census = [
            (TcpState::Established, 3),
            (TcpState::TimeWait, 0),
            (TcpState::CloseWait, 40),
        ];
        let mut seen = vec![];
        let mut s = None;
        for _ in 0..4 {
            s = next_state(s, &census);
            seen.push(s);
        }
        assert_eq!(
            seen,
            [
                Some(TcpState::Established),
                Some(TcpState::CloseWait),
                None,
                Some(TcpState::Established)
            ]
        );
        assert_eq!(next_state(None, &[]), None);
    }
}
