//! The floor peer (`bench/peers/floor.bpf.c`): compiled with Debian's clang
//! for the BPF target, then loaded, attached and drained by
//! `xtask bench-worker floor` for as long as a configuration runs.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::{ArrayOfMaps, Map, MapData, RingBuf},
    programs::TracePoint,
};
use aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_RINGBUF;

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

/// Each CPU's ring: room for 160 000 records, more than a storm's CPU
/// makes between two drains.
const RING_BYTES: u32 = 16 << 20;

/// Loads the floor, gives every CPU a ring and attaches it, says so on
/// stderr, then drains the rings every 10 ms until killed (the harness
/// stops it with SIGINT).
pub fn run(obj: &Path) -> Result<()> {
    let mut bpf = Ebpf::load_file(obj).with_context(|| format!("loading {}", obj.display()))?;
    let cpus = aya::util::nr_cpus().map_err(|(path, e)| anyhow::anyhow!("{path}: {e}"))?;
    let mut rings = Vec::with_capacity(cpus);
    {
        let mut slots: ArrayOfMaps<&mut MapData, MapData> =
            ArrayOfMaps::try_from(bpf.map_mut("FLOOR_RINGS").context("no FLOOR_RINGS")?)?;
        for cpu in 0..cpus as u32 {
            let def =
                aya_obj::Map::new_from_params(BPF_MAP_TYPE_RINGBUF as u32, 0, 0, RING_BYTES, 0);
            let ring = MapData::create(def, &format!("FLOOR_{cpu}"), None)?;
            slots.set(cpu, &ring, 0)?;
            rings.push(RingBuf::try_from(Map::RingBuf(ring))?);
        }
    }
    let prog: &mut TracePoint = bpf
        .program_mut("floor_state")
        .context("no program floor_state")?
        .try_into()?;
    prog.load()?;
    prog.attach("sock", "inet_sock_set_state")?;
    eprintln!("floor: attached");
    loop {
        for ring in &mut rings {
            while ring.next().is_some() {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
