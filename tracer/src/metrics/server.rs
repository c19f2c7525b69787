//! `/metrics` over HTTP: a minimal tokio listener on a thread of its own
//! (so a scrape never waits for the ring reader, nor the reader for a
//! scrape) that answers `GET /metrics` with the registry in the Prometheus
//! text format, as `prometheus-client` encodes it. One request per
//! connection; anything else gets 404, a malformed or slow request is
//! dropped.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use prometheus_client::{encoding::prometheus_text, metrics::gauge::Gauge, registry::Registry};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The longest request head read.
const HEAD_MAX: usize = 8 << 10;
/// A client has this long to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` now (so a busy port is an error at start-up) and serves
/// `registry` from a thread until the process ends; sets `rss` to the
/// resident set size before each scrape.
pub fn start(addr: SocketAddr, registry: Registry, rss: Gauge) -> Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr} for /metrics (--listen)"))?;
    std_listener.set_nonblocking(true)?;
    let bound = std_listener.local_addr()?;
    let registry = Arc::new(registry);
    std::thread::Builder::new()
        .name("tcptrace-metrics".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("a bound listener");
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (registry, rss) = (registry.clone(), rss.clone());
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(READ_TIMEOUT, serve(stream, &registry, &rss))
                            .await;
                    });
                }
            });
        })
        .context("starting the metrics thread")?;
    Ok(bound)
}

/// Answers one request.
async fn serve(mut s: TcpStream, registry: &Registry, rss: &Gauge) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await?;
        if n == 0 || head.len() + n > HEAD_MAX {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&c| c == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&c| c == b' ');
    let (method, path) = (parts.next(), parts.next());
    let path = path.map(|p| p.split(|&c| c == b'?').next().unwrap_or_default());
    let (status, ctype, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => {
            rss.set(resident_bytes());
            let mut body = String::with_capacity(16 << 10);
            match prometheus_text::encode(&mut body, registry) {
                Ok(()) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body),
                Err(_) => ("500 Internal Server Error", "text/plain", String::new()),
            }
        }
        (Some(b"GET"), Some(b"/")) => (
            "200 OK",
            "text/plain; charset=utf-8",
            "tcptrace agent: metrics at /metrics\n".to_string(),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(reply.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    s.shutdown().await
}

/// Our resident set size, from `/proc/self/statm`.
fn resident_bytes() -> i64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<i64>().ok())
        .unwrap_or(0);
    // SAFETY: no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) }
}
