//! Traffic for the retransmit tests: bulk transfers over loopback inside
//! a namespace (the loss comes from the namespace's nftables rules), and
//! the wait for their sockets to finish.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use crate::NetNs;

/// `conns` connections, one after another, each sending `bytes` from a
/// thread named `tt-client` to a listener on `addr` served by a thread
/// named `tt-server`; returns the clients' local ports once the server
/// has read everything (checked).
pub fn bulk_transfers(ns: &NetNs, addr: SocketAddr, conns: usize, bytes: usize) -> Vec<u16> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = ns.spawn("tt-server", move || {
        let l = TcpListener::bind(addr).unwrap();
        ready_tx.send(()).unwrap();
        let mut total = 0;
        for _ in 0..conns {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).unwrap();
            total += buf.len();
        }
        total
    });
    ready_rx.recv().unwrap();
    let client_ports = ns.run("tt-client", move || {
        let mut ports = Vec::new();
        for _ in 0..conns {
            let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(30)).unwrap();
            ports.push(c.local_addr().unwrap().port());
            c.write_all(&vec![7u8; bytes]).unwrap();
        }
        ports
    });
    assert_eq!(server.join().unwrap(), conns * bytes);
    client_ports
}

/// Whether sockets on `port` in the namespace are all gone or in
/// TIME_WAIT (which retransmits nothing).
pub fn quiet(ns: &NetNs, port: u16) -> bool {
    let out = ns.sh(&[
        "ss",
        "-Htan",
        &format!("( sport = :{port} or dport = :{port} )"),
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .all(|l| l.starts_with("TIME-WAIT"))
}
