//! Workload generators, run as `xtask bench-worker ...` so that their own
//! CPU and timing are apart from the harness. Each prints one JSON object:
//! `{"ops": N, "secs": S, ...}`. Threads enter network namespaces with
//! setns, so one worker can be client in one namespace and server in
//! another.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use clap::Subcommand;
use socket2::Socket;

#[derive(Debug, Subcommand)]
pub enum Work {
    /// Connect/accept/close `count` times on loopback, spread over 8
    /// loopback addresses so tuples do not run out; the client closes.
    Storm {
        #[arg(long)]
        ns: String,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        count: u64,
        /// Close with a RST (SO_LINGER 0) instead of a FIN.
        #[arg(long)]
        rst: bool,
    },
    /// `flows` flows sending for `secs` seconds from namespace `client_ns`
    /// to 10.201.0.2 in `server_ns`, then closing.
    Bulk {
        #[arg(long)]
        client_ns: String,
        #[arg(long)]
        server_ns: String,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        flows: u64,
        #[arg(long)]
        secs: f64,
    },
    /// For `secs` seconds: `rate` connections per second plus `bulk` bulk
    /// flows, on loopback.
    Steady {
        #[arg(long)]
        ns: String,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        rate: u64,
        #[arg(long)]
        secs: f64,
        #[arg(long, default_value_t = 2)]
        bulk: u64,
    },
    /// Opens `conns` loopback connections to 127.<net>.0.1-8 (both ends in
    /// this process: 2 x `conns` sockets), prints `{"open": N, "secs": S}`
    /// once they are all open, holds them for `secs` seconds (or until
    /// killed), then closes them.
    Hold {
        #[arg(long)]
        ns: String,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        conns: u64,
        #[arg(long)]
        net: u8,
        #[arg(long)]
        secs: f64,
    },
    /// Loads and attaches the floor program (`bench/peers/floor.bpf.c`,
    /// compiled), drains its ring until killed.
    Floor {
        #[arg(long)]
        obj: std::path::PathBuf,
    },
}

fn enter(ns: &str) -> Result<()> {
    harness::netns::enter(ns).with_context(|| format!("entering the namespace {ns}"))
}

pub fn run(w: Work) -> Result<()> {
    let v = match w {
        Work::Storm {
            ns,
            port,
            count,
            rst,
        } => storm(&ns, port, count, rst)?,
        Work::Bulk {
            client_ns,
            server_ns,
            port,
            flows,
            secs,
        } => bulk(&client_ns, &server_ns, port, flows, secs)?,
        Work::Steady {
            ns,
            port,
            rate,
            secs,
            bulk,
        } => steady(&ns, port, rate, secs, bulk)?,
        Work::Hold {
            ns,
            port,
            conns,
            net,
            secs,
        } => hold(&ns, port, conns, net, secs)?,
        Work::Floor { obj } => return super::floor::run(&obj),
    };
    println!("{v}");
    Ok(())
}

/// A listener with a deep accept queue, so a storm measures the stack and
/// the tracer rather than SYNs dropped on a full backlog. `accept` gives up
/// after `timeout` (SO_RCVTIMEO), so no loop waits forever for a connection
/// that never comes.
fn listen(addr: SocketAddr, timeout: Duration) -> Result<TcpListener> {
    let s = Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    s.set_reuse_address(true)?;
    s.set_read_timeout(Some(timeout))?;
    s.bind(&addr.into())?;
    s.listen(65_535)?;
    Ok(s.into())
}

/// No workload runs longer than this, whatever its count.
const LIMIT: Duration = Duration::from_secs(120);

fn storm(ns: &str, port: u16, count: u64, rst: bool) -> Result<serde_json::Value> {
    enter(ns)?;
    let l = listen(
        format!("0.0.0.0:{port}").parse().unwrap(),
        Duration::from_secs(2),
    )?;
    // The server waits for the client's FIN or RST before it closes, so
    // every connection makes the same state transitions (were it to close
    // first, a RST would find its socket in FIN_WAIT1 or in ESTABLISHED
    // depending on timing).
    let server = thread::spawn(move || {
        let mut accepted = 0u64;
        let mut byte = [0u8; 1];
        while accepted < count {
            match l.accept() {
                Ok((mut s, _)) => {
                    accepted += 1;
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = s.read(&mut byte);
                }
                Err(_) => break,
            }
        }
        accepted
    });
    // Eight loopback addresses: 8 x 64 000 client ports before a tuple
    // would have to be reused.
    let addrs: Vec<SocketAddr> = (1..=8)
        .map(|i| format!("127.0.0.{i}:{port}").parse().unwrap())
        .collect();
    let start = Instant::now();
    let mut done = 0u64;
    while done < count {
        // Looking at the clock every 1024 connections costs nothing.
        if done.is_multiple_of(1024) && start.elapsed() > LIMIT {
            break;
        }
        let c = TcpStream::connect(addrs[(done % 8) as usize])?;
        if rst {
            Socket::from(c).set_linger(Some(Duration::ZERO))?;
        }
        done += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let accepted = server.join().unwrap_or(0);
    Ok(serde_json::json!({"ops": done, "secs": secs, "conns": done, "accepted": accepted}))
}

fn hold(ns: &str, port: u16, conns: u64, net: u8, secs: f64) -> Result<serde_json::Value> {
    enter(ns)?;
    let addrs: Vec<SocketAddr> = (1..=8)
        .map(|i| format!("127.{net}.0.{i}:{port}").parse().unwrap())
        .collect();
    let listeners = addrs
        .iter()
        .map(|&a| listen(a, Duration::from_secs(5)))
        .collect::<Result<Vec<_>>>()?;
    let start = Instant::now();
    let mut held = Vec::with_capacity(2 * conns as usize);
    for i in 0..conns as usize {
        if start.elapsed() > LIMIT {
            anyhow::bail!("only {i} of {conns} connections opened in {LIMIT:?}");
        }
        let c = TcpStream::connect(addrs[i % 8]).with_context(|| format!("connection {i}"))?;
        let (s, _) = listeners[i % 8]
            .accept()
            .with_context(|| format!("accepting connection {i}"))?;
        held.extend([c, s]);
    }
    let open = start.elapsed().as_secs_f64();
    println!("{}", serde_json::json!({"open": conns, "secs": open}));
    std::io::stdout().flush()?;
    thread::sleep(Duration::from_secs_f64(secs));
    drop(held);
    Ok(serde_json::json!({"ops": conns, "secs": open}))
}

/// Reads until EOF, or until `end`; returns the bytes read.
fn drain(mut s: TcpStream, end: Instant) -> u64 {
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    n
}

fn bulk(
    client_ns: &str,
    server_ns: &str,
    port: u16,
    flows: u64,
    secs: f64,
) -> Result<serde_json::Value> {
    // Every flow sends for `secs`, then closes; what heavy loss leaves
    // unfinished (retransmission timers back off exponentially) is given
    // up CLOSE_GRACE later.
    const CLOSE_GRACE: Duration = Duration::from_secs(3);
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let end = until + CLOSE_GRACE;
    let (tx, rx) = std::sync::mpsc::channel();
    let sns = server_ns.to_string();
    let server = thread::spawn(move || -> Result<u64> {
        enter(&sns)?;
        let l = listen(
            format!("10.201.0.2:{port}").parse().unwrap(),
            Duration::from_millis(200),
        )?;
        tx.send(()).ok();
        let mut readers = Vec::new();
        while (readers.len() as u64) < flows && Instant::now() < until {
            if let Ok((s, _)) = l.accept() {
                readers.push(thread::spawn(move || drain(s, end)));
            }
        }
        Ok(readers.into_iter().map(|r| r.join().unwrap_or(0)).sum())
    });
    rx.recv().ok();
    let cns = client_ns.to_string();
    let writers: Vec<_> = (0..flows)
        .map(|_| {
            let cns = cns.clone();
            thread::spawn(move || -> Result<()> {
                enter(&cns)?;
                // SYNs are dropped too: connecting may take several SYN
                // timeouts (1 s, 2 s, ...); a flow that never connects
                // sends nothing.
                let left = until.saturating_duration_since(Instant::now());
                let Ok(mut c) = TcpStream::connect_timeout(
                    &SocketAddr::from(([10, 201, 0, 2], port)),
                    left.max(Duration::from_millis(1)),
                ) else {
                    return Ok(());
                };
                c.set_write_timeout(Some(Duration::from_millis(200)))?;
                let chunk = vec![7u8; 1 << 16];
                while Instant::now() < until {
                    match c.write(&chunk) {
                        Ok(_) => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                // Close cleanly (FIN, then wait for the server's FIN) so
                // the run's retransmissions are over when it returns.
                let _ = c.shutdown(std::net::Shutdown::Write);
                drain(c, end);
                Ok(())
            })
        })
        .collect();
    for w in writers {
        w.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
    }
    let got = server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))??;
    let secs = start.elapsed().as_secs_f64();
    Ok(serde_json::json!({"ops": got, "secs": secs}))
}

fn steady(ns: &str, port: u16, rate: u64, secs: f64, bulk: u64) -> Result<serde_json::Value> {
    enter(ns)?;
    let l = listen(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(200),
    )?;
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let end = until + Duration::from_secs(2);
    let server = thread::spawn(move || {
        let mut readers = Vec::new();
        while Instant::now() < until {
            if let Ok((s, _)) = l.accept() {
                readers.push(thread::spawn(move || drain(s, end)));
            }
        }
        for r in readers {
            let _ = r.join();
        }
    });
    let bulk: Vec<_> = (0..bulk)
        .map(|_| {
            let ns = ns.to_string();
            thread::spawn(move || -> u64 {
                if enter(&ns).is_err() {
                    return 0;
                }
                let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else {
                    return 0;
                };
                let chunk = vec![1u8; 1 << 16];
                let mut sent = 0;
                while Instant::now() < until && c.write_all(&chunk).is_ok() {
                    sent += chunk.len() as u64;
                }
                sent
            })
        })
        .collect();
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let mut conns = 0u64;
    let mut next = Instant::now();
    while Instant::now() < until {
        if let Ok(c) = TcpStream::connect(("127.0.0.1", port)) {
            conns += 1;
            drop(c);
        }
        next += gap;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            thread::sleep(d);
        }
    }
    let sent: u64 = bulk.into_iter().map(|b| b.join().unwrap_or(0)).sum();
    let _ = server.join();
    let secs = start.elapsed().as_secs_f64().min(secs);
    Ok(serde_json::json!({"ops": sent, "secs": secs, "conns": conns}))
}
