//! Talking to HTTP endpoints on loopback the way a scraper does: a plain
//! `GET`, the body of a `/metrics` page read as series, and the values of
//! one metric summed over its series.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

/// `GET path` from `addr`: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)?;
    let reply = String::from_utf8_lossy(&reply);
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// The body of `http://addr/metrics`; fails the test unless it is a 200.
pub fn metrics(addr: SocketAddr) -> String {
    let (status, body) =
        http_get(addr, "/metrics").unwrap_or_else(|e| panic!("GET http://{addr}/metrics: {e}"));
    assert_eq!(status, 200, "GET http://{addr}/metrics: {body}");
    body
}

/// The series lines (`name{labels} value`) of an exposition.
pub fn series(body: &str) -> Vec<&str> {
    body.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The sum of the series of `name` (exactly that name) whose labels
/// contain every `key="value"` in `with`.
pub fn sum(body: &str, name: &str, with: &[&str]) -> f64 {
    series(body)
        .into_iter()
        .filter(|l| {
            let n = l.split(['{', ' ']).next().unwrap_or_default();
            n == name && with.iter().all(|w| l.contains(w))
        })
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("not a sample: {l}"))
        })
        .sum()
}

/// Percent-encodes a query-string value.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
