//! The runtime-path parsers, the `--cgroup` match, the resolver, and a
//! cgroup's way through the pipeline (filter, JSON, recording, replay).

use super::*;

const ID: &str = "3f1c2a9b8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170f5e4d3c";

#[test]
fn docker() {
    let systemd = format!("/system.slice/docker-{ID}.scope");
    assert_eq!(container_id(&systemd), Some(ID));
    assert_eq!(systemd_unit(&systemd), Some(&systemd[14..]));
    assert_eq!(container_id(&format!("/docker/{ID}")), Some(ID));
}

#[test]
fn containerd_and_crio() {
    let p = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice/cri-containerd-{ID}.scope"
    );
    assert_eq!(container_id(&p), Some(ID));
    let p = format!("/system.slice/containerd.service/kubepods-pod1.slice:cri-containerd:{ID}");
    assert_eq!(container_id(&p), Some(ID));
    assert_eq!(systemd_unit(&p), Some("containerd.service"));
    let p = format!("/kubepods.slice/kubepods-pod9.slice/crio-{ID}.scope");
    assert_eq!(container_id(&p), Some(ID));
    // The monitor is not the container.
    assert_eq!(
        container_id(&format!("/machine.slice/crio-conmon-{ID}.scope")),
        None
    );
}

#[test]
fn podman_and_kubepods_cgroupfs() {
    let p = format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope");
    assert_eq!(container_id(&p), Some(ID));
    assert_eq!(
        container_id(&format!("/machine.slice/libpod-conmon-{ID}.scope")),
        None
    );
    let p = format!("/kubepods/besteffort/pod0a1b2c3d-1111-2222-3333-444455556666/{ID}");
    assert_eq!(container_id(&p), Some(ID));
    assert_eq!(systemd_unit(&p), None);
}

#[test]
fn systemd_units_and_plain_paths() {
    assert_eq!(
        systemd_unit("/system.slice/nginx.service"),
        Some("nginx.service")
    );
    assert_eq!(
        systemd_unit("/user.slice/user-1000.slice/session-3.scope"),
        Some("session-3.scope")
    );
    assert_eq!(systemd_unit("/system.slice"), Some("system.slice"));
    assert_eq!(systemd_unit("/"), None);
    assert_eq!(systemd_unit("/tcptrace-test/.service"), None);
    assert_eq!(container_id("/system.slice/nginx.service"), None);
    // Short or non-hex ids are not containers.
    assert_eq!(container_id("/docker/abc123"), None);
    assert_eq!(container_id(&format!("/docker-{}.scope", &ID[1..])), None);
    let i = CgroupInfo::new("/system.slice/nginx.service");
    assert_eq!(i.unit.as_deref(), Some("nginx.service"));
    assert_eq!(i.container, None);
}

#[test]
fn wanted_keeps_the_cgroup_and_those_below() {
    let root = Path::new("/sys/fs/cgroup/unified");
    let mut w = Wanted::new("/sys/fs/cgroup/unified/system.slice/", Some(root));
    assert_eq!(w.path(), "/system.slice");
    w.learn(1, "/system.slice");
    w.learn(2, "/system.slice/nginx.service");
    w.learn(3, "/system.slicex/a.service");
    w.learn(4, "/user.slice");
    assert!(w.has(1) && w.has(2));
    assert!(!w.has(3) && !w.has(4) && !w.has(0));
    assert_eq!(Wanted::new("tcptrace-t", Some(root)).path(), "/tcptrace-t");
    let mut all = Wanted::new("/", None);
    all.learn(4, "/user.slice");
    assert!(all.has(4));
}

#[test]
fn resolves_directories_by_inode() {
    let root = std::env::temp_dir().join(format!("tcptrace-cg-{}", std::process::id()));
    fs::create_dir_all(root.join("a.slice/b.service")).unwrap();
    let id = fs::metadata(root.join("a.slice/b.service")).unwrap().ino();
    let mut r = Resolver::at(Some(root.clone()));
    assert_eq!(r.announce(id), Some((id, "/a.slice/b.service".to_owned())));
    assert_eq!(r.announce(id), None, "said once");
    assert_eq!(r.announce(0), None);
    let top = fs::metadata(&root).unwrap().ino();
    assert_eq!(r.path(top), Some("/"));
    // A cgroup made after the walk is missed, then found by a later one
    // (at most a second later), and a walk forgets removed ones.
    fs::create_dir(root.join("late")).unwrap();
    let late = fs::metadata(root.join("late")).unwrap().ino();
    assert_eq!(r.announce(late), None);
    assert_eq!(r.pending.get(&late), Some(&TRIES));
    fs::remove_dir(root.join("a.slice/b.service")).unwrap();
    r.walked = None;
    assert!(r.walk());
    assert_eq!(r.path(late), Some("/late"));
    assert_eq!(r.path(id), None);
    assert_eq!(r.announce(late), Some((late, "/late".to_owned())));
    assert!(r.pending.is_empty());
    fs::remove_dir_all(&root).unwrap();
}

/// A cgroup gone at two checks in a row is forgotten (and named again
/// should it come back); one still there is kept.
#[test]
fn prunes_cgroups_gone_twice() {
    let root = std::env::temp_dir().join(format!("tcptrace-cgp-{}", std::process::id()));
    fs::create_dir_all(root.join("stays")).unwrap();
    fs::create_dir_all(root.join("ends")).unwrap();
    let stays = fs::metadata(root.join("stays")).unwrap().ino();
    let ends = fs::metadata(root.join("ends")).unwrap().ino();
    let mut r = Resolver::at(Some(root.clone()));
    assert!(r.announce(stays).is_some());
    assert!(r.announce(ends).is_some());
    assert_eq!(r.prune(), Vec::<u64>::new());
    fs::remove_dir(root.join("ends")).unwrap();
    assert_eq!(r.prune(), Vec::<u64>::new(), "gone once: kept");
    assert_eq!(r.prune(), vec![ends], "gone twice: forgotten");
    assert!(r.said.contains(&stays) && !r.said.contains(&ends));
    assert_eq!(r.prune(), Vec::<u64>::new(), "said once");
    fs::remove_dir_all(&root).unwrap();
}

/// Two clients in two cgroups, recorded (both encodings) and replayed
/// with `--cgroup`: only the docker one's records, named by path,
/// container and unit, in JSON.
#[test]
fn through_recording_replay_filter_and_json() {
    use crate::{
        engine::tests::{owner, state, tuple},
        event::{CgroupId, Clock, TcpState::*},
        filter::Filter,
        hooks::Wants,
        pipeline::{Input, Pipeline},
        record::Start,
        replay::replay_into,
        sinks::{Mode, testing::capture},
        views::{record::Record, states::States},
    };
    let docker = format!("/system.slice/docker-{ID}.scope");
    let mut a = owner(10, "app");
    a.cgroup = CgroupId::new(0x1_0000_0007);
    let mut b = owner(20, "other");
    b.cgroup = CgroupId::new(8);
    for binary in [false, true] {
        let (out, rec) = capture(Mode::Recording { binary }, None);
        let view = Record {
            wants: Wants::FLOWS,
        };
        let mut p = Pipeline::with_output(Box::new(view), Filter::default(), out);
        p.push(Input::Start(Start {
            clock: Clock::with_offset(1_795_348_800_000_000_000),
            ts_ns: 1,
            ..Start::default()
        }));
        for (id, path) in [(0x1_0000_0007, docker.clone()), (8, "/user.slice".into())] {
            p.push(Input::Cgroup { id, path });
        }
        p.push(Input::Event(state(
            2,
            1,
            tuple(40000, 80),
            a,
            Close,
            SynSent,
        )));
        p.push(Input::Event(state(
            3,
            2,
            tuple(40001, 80),
            b,
            Close,
            SynSent,
        )));
        p.push(Input::End(4));
        p.finish().unwrap();
        let rec = rec.bytes();

        let filter = Filter {
            cgroup: Some(Wanted::new("/system.slice", None)),
            ..Filter::default()
        };
        let (out, got) = capture(Mode::Json, None);
        let mut p = Pipeline::with_output(Box::new(States), filter, out);
        replay_into(&rec[..], &mut p).unwrap();
        p.finish().unwrap();
        let lines: Vec<serde_json::Value> = got
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "binary {binary}: {lines:?}");
        let l = &lines[0];
        assert_eq!(l["pid"], 10);
        assert_eq!(l["cgroup"], docker.as_str());
        assert_eq!(l["container"], ID);
        assert_eq!(l["unit"], &docker[14..]);
    }
}
