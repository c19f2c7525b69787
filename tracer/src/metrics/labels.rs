//! Label values with bounded cardinality. The endpoint of a flow is named
//! by its port only when that port is one the operator cares about (the
//! listening ports of this host at start-up, the well-known ports, or
//! `--metrics-ports`), never by the client's ephemeral port, the tuple or
//! the pid; every other port is `other`. Per-peer, per-process and
//! per-cgroup labels are opt-in, and every family holds at most `--max-series` label sets:
//! past it, the variable labels fold into `other` and
//! `tcptrace_series_dropped_total` counts the fold.

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
};

use prometheus_client::metrics::{
    counter::Counter,
    family::{Family, MetricConstructor},
};

use crate::event::{Owner, Tuple};

/// A label set: names and values.
pub type Labels = Vec<(&'static str, Cow<'static, str>)>;

/// The value of folded labels.
pub const OTHER: &str = "other";

/// Labels that are not there unless asked for (`--metrics-labels`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Extra {
    /// The remote address (no port).
    Peer,
    /// The owning process's name (never its pid).
    Process,
    /// The owning process's cgroup path (unified hierarchy).
    Cgroup,
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct Labeller {
    ports: HashSet<u16>,
    peer: bool,
    process: bool,
    /// Cgroup paths by id, when `cgroup` is asked for.
    cgroups: Option<HashMap<u64, String>>,
    max_series: usize,
    dropped: Counter,
}

impl Labeller {
    pub fn new(ports: HashSet<u16>, extra: &[Extra], max_series: usize, dropped: Counter) -> Self {
        Self {
            ports,
            peer: extra.contains(&Extra::Peer),
            process: extra.contains(&Extra::Process),
            cgroups: extra.contains(&Extra::Cgroup).then(HashMap::new),
            max_series: max_series.max(1),
            dropped,
        }
    }

    /// Cgroup `id` is at `path` (kept only when the label is asked for).
    pub fn cgroup(&mut self, id: u64, path: &str) {
        if let Some(c) = &mut self.cgroups {
            c.insert(id, path.to_owned());
        }
    }

    /// Cgroup `id` is gone (series already made with its path stay).
    pub fn cgroup_gone(&mut self, id: u64) {
        if let Some(c) = &mut self.cgroups {
            c.remove(&id);
        }
    }

    /// The endpoint port of a flow: its local port if that is one of
    /// ours (a listener), else its remote port if that is one, else
    /// `other`.
    pub fn port(&self, t: &Tuple) -> Cow<'static, str> {
        [t.lport, t.rport]
            .into_iter()
            .find(|p| self.ports.contains(p))
            .map_or(Cow::Borrowed(OTHER), |p| Cow::Owned(p.to_string()))
    }

    /// `fixed` labels plus the flow's endpoint port and the opt-in
    /// labels.
    pub fn flow(&self, mut fixed: Labels, t: &Tuple, owner: Option<&Owner>) -> Labels {
        fixed.push(("port", self.port(t)));
        if self.peer {
            fixed.push(("peer", Cow::Owned(t.raddr.to_string())));
        }
        if self.process {
            let comm = owner.map_or(Cow::Borrowed("unknown"), |o| {
                Cow::Owned(o.comm.as_str().into_owned())
            });
            fixed.push(("process", comm));
        }
        if let Some(c) = &self.cgroups {
            let path = owner
                .and_then(|o| c.get(&o.cgroup.get()))
                .map_or(Cow::Borrowed("unknown"), |p| Cow::Owned(p.clone()));
            fixed.push(("cgroup", path));
        }
        fixed
    }
}

/// A family and the number of label sets it holds, for the cap.
pub struct Capped<M, C = fn() -> M> {
    pub fam: Family<Labels, M, C>,
    series: usize,
}

impl<M, C: MetricConstructor<M>> Capped<M, C> {
    pub fn new(fam: Family<Labels, M, C>) -> Self {
        Self { fam, series: 0 }
    }

    /// The metric of `labels` if the family has room for them (or has
    /// them already); else of the labels with the port and the opt-in
    /// labels folded into `other`, counted; handed to `f`.
    pub fn with(&mut self, lb: &Labeller, mut labels: Labels, f: impl FnOnce(&M)) {
        if self.fam.get(&labels).is_none() {
            if self.series < lb.max_series {
                self.series += 1;
            } else {
                for (name, value) in &mut labels {
                    if matches!(*name, "port" | "peer" | "process" | "cgroup") {
                        *value = Cow::Borrowed(OTHER);
                    }
                }
                lb.dropped.inc();
                if self.fam.get(&labels).is_none() {
                    self.series += 1;
                }
            }
        }
        f(&self.fam.get_or_create(&labels));
    }
}

/// Ports that stay labels by default: the well-known ones (below 1024)
/// and those this host listens on at start-up.
pub fn default_ports() -> HashSet<u16> {
    let mut ports: HashSet<u16> = (1..1024).collect();
    let listening = procfs::net::tcp()
        .into_iter()
        .chain(procfs::net::tcp6())
        .flatten()
        .filter(|e| e.state == procfs::net::TcpState::Listen)
        .map(|e| e.local_address.port());
    ports.extend(listening);
    ports
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Family as IpFamily;
    use prometheus_client::metrics::counter::Counter as C;

    fn tuple(lport: u16, rport: u16) -> Tuple {
        Tuple {
            family: IpFamily::V4,
            laddr: "10.0.0.1".parse().unwrap(),
            lport,
            raddr: "10.0.0.2".parse().unwrap(),
            rport,
            netns: 0,
        }
    }

    #[test]
    fn client_ports_never_become_labels() {
        let l = Labeller::new([80, 7000].into(), &[], 10, C::default());
        assert_eq!(l.port(&tuple(7000, 51234)), "7000");
        assert_eq!(l.port(&tuple(51234, 80)), "80");
        assert_eq!(l.port(&tuple(51234, 51235)), OTHER);
        let ls = l.flow(vec![], &tuple(40000, 9), None);
        assert_eq!(ls, vec![("port", Cow::Borrowed(OTHER))]);
    }

    #[test]
    fn the_cap_folds_and_counts() {
        let dropped = C::default();
        let l = Labeller::new(HashSet::new(), &[Extra::Peer], 3, dropped.clone());
        let mut fam = Capped::new(Family::<Labels, C>::default());
        for last in 0..10u8 {
            let mut t = tuple(40000, 40001);
            t.raddr = format!("10.0.1.{last}").parse().unwrap();
            fam.with(&l, l.flow(vec![], &t, None), |c| {
                c.inc();
            });
        }
        // Three peers, then one folded set for the other seven.
        assert_eq!(fam.series, 4);
        assert_eq!(dropped.get(), 7);
        let folded = vec![("port", OTHER.into()), ("peer", OTHER.into())];
        assert_eq!(fam.fam.get_or_create(&folded).get(), 7);
    }

    #[test]
    fn cgroup_label_only_when_asked() {
        let mut o = crate::engine::tests::owner(7, "nginx");
        o.cgroup = crate::event::CgroupId::new(42);
        let mut plain = Labeller::new(HashSet::new(), &[], 10, C::default());
        plain.cgroup(42, "/system.slice/nginx.service");
        assert_eq!(plain.flow(vec![], &tuple(1, 2), Some(&o)).len(), 1);
        let mut l = Labeller::new(HashSet::new(), &[Extra::Cgroup], 10, C::default());
        l.cgroup(42, "/system.slice/nginx.service");
        let ls = l.flow(vec![], &tuple(1, 2), Some(&o));
        assert_eq!(ls[1], ("cgroup", "/system.slice/nginx.service".into()));
        let ls = l.flow(vec![], &tuple(1, 2), None);
        assert_eq!(ls[1], ("cgroup", "unknown".into()));
    }
}
