//! Private network namespaces, created with `ip netns add` and removed on
//! drop, with helpers to run commands and Rust code inside them, nftables
//! loss, the namespace's own counters, and a veth pair between two of them.
//! Shared by the privileged tests and `cargo xtask bench`: both run as
//! root, and a namespace that cannot be made is fatal to either, so
//! failures panic with the command and what it printed.

use std::{
    collections::BTreeMap,
    fs::File,
    process::{Command, Output},
    sync::{
        Once,
        atomic::{AtomicU32, Ordering},
    },
};

use nix::sched::{CloneFlags, setns};

/// Every namespace made here is called `tt-<tag>-<pid>-<n>`.
const PREFIX: &str = "tt-";

/// See the module documentation.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    /// Creates `tt-<tag>-<pid>-<n>` with `lo` up (and first removes the
    /// namespaces of processes that died without removing theirs).
    pub fn new(tag: &str) -> Self {
        static STALE: Once = Once::new();
        STALE.call_once(remove_stale);
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{PREFIX}{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self { name };
        ns.sh(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's file, `/run/netns/NAME` (what `--netns` and
    /// `setns` take).
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Loopback with 1500-byte MTU and no segmentation offloads, so one skb
    /// is one segment and the kernel's RetransSegs counts what the
    /// `tcp_retransmit_skb` tracepoint sees.
    pub fn small_segments(&self) -> &Self {
        self.sh(&["ip", "link", "set", "lo", "mtu", "1500"]);
        self.sh(&[
            "ethtool", "-K", "lo", "tso", "off", "gso", "off", "gro", "off",
        ]);
        self
    }

    /// Many short connections: every port, TIME_WAIT sockets reused, deep
    /// accept queues.
    pub fn many_connections(&self) -> &Self {
        for setting in [
            "net.ipv4.ip_local_port_range=1024 65000",
            "net.ipv4.tcp_tw_reuse=1",
            "net.core.somaxconn=65535",
            "net.ipv4.tcp_max_syn_backlog=65535",
        ] {
            self.sh(&["sysctl", "-q", "-w", setting]);
        }
        self
    }

    /// Runs a command inside the namespace; panics unless it succeeds.
    pub fn sh(&self, args: &[&str]) -> Output {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        run(&mut c)
    }

    /// `ss -tan` in the namespace: sockets per state on `port`, with tcptrace's
    /// state names.
    pub fn ss_census(&self, port: u16) -> BTreeMap<String, u64> {
        let out = self.sh(&[
            "ss",
            "-Htan",
            &format!("( sport = :{port} or dport = :{port} )"),
        ]);
        let mut c = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let state = match line.split_whitespace().next().unwrap() {
                "ESTAB" => "ESTABLISHED",
                "LISTEN" => "LISTEN",
                "TIME-WAIT" => "TIME_WAIT",
                "CLOSE-WAIT" => "CLOSE_WAIT",
                "FIN-WAIT-1" => "FIN_WAIT1",
                "FIN-WAIT-2" => "FIN_WAIT2",
                "SYN-SENT" => "SYN_SENT",
                "SYN-RECV" => "SYN_RECV",
                "LAST-ACK" => "LAST_ACK",
                "CLOSING" => "CLOSING",
                other => panic!("unexpected ss state {other}"),
            };
            *c.entry(state.to_string()).or_default() += 1;
        }
        c
    }

    /// Loads an nftables ruleset inside the namespace.
    pub fn nft(&self, ruleset: &str) {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawning nft (is the nftables package installed? `cargo xtask setup`)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ruleset.as_bytes())
            .unwrap();
        let st = child.wait().unwrap();
        assert!(st.success(), "nft rejected:\n{ruleset}");
    }

    /// Drops, in the input hook (a drop in the output hook is a local
    /// error, not a retransmission), the segments each rule matches, in a
    /// table of its own called `table`.
    fn drop_in_input(&self, table: &str, rules: &[String]) {
        let rules: String = rules.iter().map(|r| format!("{r} drop\n")).collect();
        self.nft(&format!(
            "table inet {table} {{
               chain input {{
                 type filter hook input priority 0; policy accept;
                 {rules}
               }}
             }}"
        ));
    }

    /// Drops `percent` % of segments to and from `port`.
    pub fn random_drop(&self, port: u16, percent: u32) {
        let rule = |dir| format!("tcp {dir} {port} numgen random mod 100 < {percent}");
        self.drop_in_input("loss", &[rule("dport"), rule("sport")]);
    }

    /// Drops every segment to or from `port` from now on (a black hole:
    /// the peer or path goes silent after the handshake).
    pub fn black_hole(&self, port: u16) {
        self.drop_in_input(
            "hole",
            &[format!("tcp dport {port}"), format!("tcp sport {port}")],
        );
    }

    /// Drops every SYN to `port` (the listener exists; its handshakes never
    /// start): the client retransmits its SYN until it gives up.
    pub fn drop_syns(&self, port: u16) {
        self.drop_in_input(
            "nosyn",
            &[format!("tcp dport {port} tcp flags & (syn | ack) == syn")],
        );
    }

    /// A counter from the namespace's `/proc/net/snmp` or `/proc/net/netstat`
    /// (e.g. `("Tcp", "RetransSegs")`, `("TcpExt", "TCPSynRetrans")`).
    pub fn counter(&self, group: &str, name: &str) -> u64 {
        *self
            .counters()
            .get(&format!("{group}:{name}"))
            .unwrap_or_else(|| {
                panic!("no counter {group}:{name} in the namespace's /proc/net/snmp or netstat")
            })
    }

    /// Every counter of the namespace's `/proc/net/snmp` and
    /// `/proc/net/netstat`, read at once, as `Group:Name` (`Tcp:OutSegs`,
    /// `TcpExt:TCPTimeouts`); what `nstat` reads, parsed here on its own.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let out = self.sh(&["cat", "/proc/net/snmp", "/proc/net/netstat"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut all = BTreeMap::new();
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.chunks(2) {
            let [names, values] = pair else { continue };
            let mut n = names.split_whitespace();
            let mut v = values.split_whitespace();
            let (Some(group), Some(_)) = (n.next(), v.next()) else {
                continue;
            };
            for (name, value) in n.zip(v) {
                if let Ok(value) = value.parse() {
                    all.insert(format!("{group}{name}"), value);
                }
            }
        }
        all
    }

    /// `nstat -asz` in the namespace: every counter, absolute, by nstat's
    /// name (`TcpRetransSegs`, `TcpExtTCPFastRetrans`), without touching
    /// nstat's history.
    pub fn nstat(&self) -> BTreeMap<String, u64> {
        let out = self.sh(&["nstat", "-asz"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let name = w.next()?;
                let value = w.next()?.parse().ok()?;
                Some((name.to_string(), value))
            })
            .collect()
    }

    /// Runs `f` on a new thread named `thread` (its comm, as tcptrace will
    /// report it) that has entered this namespace.
    pub fn spawn<R: Send + 'static>(
        &self,
        thread: &str,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> std::thread::JoinHandle<R> {
        let name = self.name.clone();
        std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                enter(&name).expect("entering the namespace");
                f()
            })
            .expect("spawning a thread")
    }

    /// `cycles` connect/accept/close cycles on a listener at
    /// 127.0.0.1:`port`, as fast as they go, on a thread called `thread`
    /// (the client closes first: ten state transitions a cycle, and the
    /// listener's two); the thread returns how long they took. Bounded:
    /// panics if they take more than 60 s.
    pub fn storm(
        &self,
        thread: &str,
        port: u16,
        cycles: u64,
    ) -> std::thread::JoinHandle<std::time::Duration> {
        use std::{
            net::{TcpListener, TcpStream},
            time::{Duration, Instant},
        };
        self.spawn(thread, move || {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let l = TcpListener::bind(addr).unwrap();
            let start = Instant::now();
            for i in 0..cycles {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "the storm made only {i} connections in 60 s"
                );
                let c = TcpStream::connect(addr).unwrap();
                let (s, _) = l.accept().unwrap();
                drop(c);
                drop(s);
            }
            start.elapsed()
        })
    }

    /// [`NetNs::spawn`] and wait for the result.
    pub fn run<R: Send + 'static>(
        &self,
        thread: &str,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> R {
        self.spawn(thread, f)
            .join()
            .expect("thread in namespace panicked")
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Moves the calling thread into the namespace called `name`.
pub fn enter(name: &str) -> std::io::Result<()> {
    let fd = File::open(format!("/run/netns/{name}"))?;
    setns(&fd, CloneFlags::CLONE_NEWNET)?;
    Ok(())
}

/// Two namespaces joined by a veth pair with offloads off: 10.201.0.1 (the
/// first) and 10.201.0.2 (the second).
pub fn veth_pair(tag: &str) -> (NetNs, NetNs) {
    static N: AtomicU32 = AtomicU32::new(0);
    let a = NetNs::new(&format!("{tag}a"));
    let b = NetNs::new(&format!("{tag}b"));
    // Interface names have at most 15 bytes.
    let id = format!(
        "{}x{}",
        N.fetch_add(1, Ordering::Relaxed) % 1000,
        std::process::id() % 100_000
    );
    let (va, vb) = (format!("tta{id}"), format!("ttb{id}"));
    run(Command::new("ip").args([
        "link", "add", &va, "netns", &a.name, "type", "veth", "peer", "name", &vb, "netns", &b.name,
    ]));
    for (ns, dev, addr) in [(&a, &va, "10.201.0.1/24"), (&b, &vb, "10.201.0.2/24")] {
        ns.sh(&["ip", "addr", "add", addr, "dev", dev]);
        ns.sh(&["ip", "link", "set", dev, "up"]);
        ns.sh(&[
            "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off",
        ]);
    }
    (a, b)
}

/// Removes the namespaces left by processes that were killed before their
/// guards ran (named after a process id that no longer exists).
pub fn remove_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in dir.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.rsplit('-').nth(1))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

fn run(c: &mut Command) -> Output {
    let out = c.output().unwrap_or_else(|e| panic!("running {c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
