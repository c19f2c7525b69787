//! The floor peer (`bench/peers/floor.bpf.c`): compiled with Debian's clang
//! for the BPF target, then loaded, attached and drained by
//! `xtask bench-worker floor` for as long as a configuration runs.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result};
use aya::{Ebpf, maps::RingBuf, programs::TracePoint};

/// Compiles the floor program into `out_dir`; returns the object's path.
pub fn build(peers: &Path, out_dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(out_dir)?;
    let obj = out_dir.join("floor.bpf.o");
    let mut c = Command::new("clang");
    c.args(["-O2", "-g", "-target", "bpf", "-c"])
        .arg(peers.join("floor.bpf.c"))
        .arg("-o")
        .arg(&obj);
    crate::check(c).context("compiling bench/peers/floor.bpf.c with clang")?;
    Ok(obj)
}

/// Loads and attaches the floor, says so on stderr, then drains its ring
/// every 10 ms until killed (the harness stops it with SIGINT).
pub fn run(obj: &Path) -> Result<()> {
    let mut bpf = Ebpf::load_file(obj).with_context(|| format!("loading {}", obj.display()))?;
    let prog: &mut TracePoint = bpf
        .program_mut("floor_state")
        .context("no program floor_state")?
        .try_into()?;
    prog.load()?;
    prog.attach("sock", "inet_sock_set_state")?;
    let mut ring = RingBuf::try_from(bpf.take_map("FLOOR_EVENTS").context("no ring")?)?;
    eprintln!("floor: attached");
    loop {
        while ring.next().is_some() {}
        std::thread::sleep(Duration::from_millis(10));
    }
}
