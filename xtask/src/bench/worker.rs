//! Workload generators, run as `xtask bench-worker ...` so that their own
//! CPU and timing are apart from the harness. Each prints one JSON object:
//! `{"ops": N, "secs": S, ...}`. Threads enter network namespaces with
//! setns, so one worker can be client in one namespace and server in
//! another.

use std::{
    fs::File,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use clap::Subcommand;
use nix::sched::{CloneFlags, setns};
use socket2::Socket;

#[derive(Debug, Subcommand)]
pub enum Work {
    /// Connect/accept/close `count` times on loopback, spread over 8
    /// loopback addresses so tuples do not run out.
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
    /// `flows` flows of `bytes` each (or for at most `secs` seconds) from
    /// namespace `client_ns` to 10.201.0.2.
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
        bytes: u64,
        #[arg(long, default_value_t = 5)]
        secs: u64,
    },
    /// For `secs` seconds: `rate` connections per second plus two bulk
    /// flows, on loopback.
    Steady {
        #[arg(long)]
        ns: String,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        rate: u64,
        #[arg(long)]
        secs: u64,
    },
}

fn enter(ns: &str) -> Result<()> {
    let f = File::open(format!("/run/netns/{ns}")).with_context(|| format!("namespace {ns}"))?;
    setns(&f, CloneFlags::CLONE_NEWNET).context("setns")?;
    Ok(())
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
            bytes,
            secs,
        } => bulk(&client_ns, &server_ns, port, flows, bytes, secs)?,
        Work::Steady {
            ns,
            port,
            rate,
            secs,
        } => steady(&ns, port, rate, secs)?,
    };
    println!("{v}");
    Ok(())
}

/// A listener with a deep accept queue, so a storm measures the stack and
/// the tracer rather than SYNs dropped on a full backlog.
fn listen(addr: SocketAddr) -> Result<TcpListener> {
    let s = Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(65_535)?;
    Ok(s.into())
}

fn storm(ns: &str, port: u16, count: u64, rst: bool) -> Result<serde_json::Value> {
    enter(ns)?;
    let l = listen(format!("0.0.0.0:{port}").parse().unwrap())?;
    let server = thread::spawn(move || {
        for _ in 0..count {
            if let Ok((s, _)) = l.accept() {
                drop(s);
            }
        }
    });
    let start = Instant::now();
    for i in 0..count {
        let addr: SocketAddr = format!("127.0.0.{}:{port}", 1 + i % 8).parse().unwrap();
        let c = TcpStream::connect(addr)?;
        if rst {
            Socket::from(c).set_linger(Some(Duration::ZERO))?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    server.join().ok();
    Ok(serde_json::json!({"ops": count, "secs": secs}))
}

fn bulk(
    client_ns: &str,
    server_ns: &str,
    port: u16,
    flows: u64,
    bytes: u64,
    secs: u64,
) -> Result<serde_json::Value> {
    // Heavy loss backs retransmission timers off exponentially: bound the
    // run and report what got through.
    let until = Instant::now() + Duration::from_secs(secs);
    let (tx, rx) = std::sync::mpsc::channel();
    let sns = server_ns.to_string();
    let server = thread::spawn(move || -> Result<u64> {
        enter(&sns)?;
        let l = listen(format!("10.201.0.2:{port}").parse().unwrap())?;
        tx.send(()).ok();
        let mut readers = Vec::new();
        for _ in 0..flows {
            let (mut s, _) = l.accept()?;
            s.set_read_timeout(Some(Duration::from_secs(secs + 2)))?;
            readers.push(thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                let mut n = 0u64;
                while let Ok(k) = s.read(&mut buf) {
                    if k == 0 {
                        break;
                    }
                    n += k as u64;
                }
                n
            }));
        }
        Ok(readers.into_iter().map(|r| r.join().unwrap_or(0)).sum())
    });
    rx.recv().ok();
    let start = Instant::now();
    let cns = client_ns.to_string();
    let writers: Vec<_> = (0..flows)
        .map(|_| {
            let cns = cns.clone();
            thread::spawn(move || -> Result<()> {
                enter(&cns)?;
                let mut c = TcpStream::connect(("10.201.0.2", port))?;
                c.set_write_timeout(Some(Duration::from_millis(200)))?;
                let chunk = vec![7u8; 1 << 16];
                let mut left = bytes;
                while left > 0 && Instant::now() < until {
                    let n = left.min(chunk.len() as u64) as usize;
                    match c.write(&chunk[..n]) {
                        Ok(k) => left -= k as u64,
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(e) => return Err(e.into()),
                    }
                }
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

fn steady(ns: &str, port: u16, rate: u64, secs: u64) -> Result<serde_json::Value> {
    enter(ns)?;
    let l = listen(format!("127.0.0.1:{port}").parse().unwrap())?;
    let until = Instant::now() + Duration::from_secs(secs);
    let server = thread::spawn(move || {
        let mut readers = Vec::new();
        while let Ok((mut s, _)) = l.accept() {
            if s.peer_addr().map(|a| a.port()).unwrap_or(0) == 1 {
                break;
            }
            readers.push(thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                let mut n = 0u64;
                while let Ok(k) = s.read(&mut buf) {
                    if k == 0 {
                        break;
                    }
                    n += k as u64;
                }
                n
            }));
            if Instant::now() > until {
                break;
            }
        }
        readers
            .into_iter()
            .map(|r| r.join().unwrap_or(0))
            .sum::<u64>()
    });
    let bulk: Vec<_> = (0..2)
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
    // Wake the accept loop so it can end.
    let _ = TcpStream::connect(("127.0.0.1", port));
    drop(server);
    Ok(serde_json::json!({"ops": sent, "secs": secs as f64, "conns": conns}))
}
