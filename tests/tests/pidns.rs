//! Inside a PID namespace (a container that does not share the host's),
//! the owners tcptrace reports live and the owners it seeds from `/proc`
//! carry the same pids: the ones that namespace sees.

use serde_json::Value;
use tests::{NetNs, require_root, tracer::binary, unique_port};

#[test]
fn pids_are_the_namespace_pids_live_and_seeded() {
    require_root();
    let ns = NetNs::new("pidns");
    let port = unique_port();
    let dir = std::env::temp_dir().join(format!("tt-pidns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    let bin = binary();
    let bin = bin.display();
    // A listener from before tcptrace starts (seeded from /proc), then a
    // client after it is attached (seen live); each writes its pid as its
    // namespace sees it.
    let script = format!(
        r#"
python3 -c 'import os,socket,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind(("127.0.0.1",{port})); s.listen(); open("{d}/server","w").write(str(os.getpid()))
a,_=s.accept(); time.sleep(2)' &
while [ ! -s {d}/server ]; do sleep 0.05; done
{bin} states --json --port {port} > {d}/out 2> {d}/err &
tracer=$!
until grep -q watching {d}/err; do sleep 0.05; done
python3 -c 'import os,socket,time
c=socket.create_connection(("127.0.0.1",{port})); open("{d}/client","w").write(str(os.getpid())); time.sleep(0.5)'
kill -INT $tracer
wait
"#
    );
    let out = ns.sh(&[
        "unshare",
        "--pid",
        "--fork",
        "--mount-proc",
        "sh",
        "-c",
        &script,
    ]);
    assert!(out.status.success(), "{out:?}");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let server: u64 = read("server").trim().parse().unwrap();
    let client: u64 = read("client").trim().parse().unwrap();
    let recs: Vec<Value> = read("out")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &Value| r["type"] == "state")
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    let port = u64::from(port);
    // The client's own socket: owned by the client, from the live connect.
    let client_side: Vec<&Value> = recs.iter().filter(|r| r["rport"] == port).collect();
    assert!(!client_side.is_empty(), "{recs:#?}");
    assert!(
        client_side.iter().all(|r| r["pid"] == client),
        "client {client}: {client_side:#?}"
    );
    // The accepted socket: owned by the seeded listener.
    let server_side: Vec<&Value> = recs
        .iter()
        .filter(|r| r["lport"] == port && r["rport"] != 0)
        .collect();
    assert!(!server_side.is_empty(), "{recs:#?}");
    assert!(
        server_side.iter().all(|r| r["pid"] == server),
        "server {server}: {server_side:#?}"
    );
    // Both are small namespace pids, not the host's.
    assert!(server < 100 && client < 1000, "{server} {client}");
}
