//! The kernel's event rings: how the ring budget (`--ring-size`) is split
//! among the CPUs, and the rings themselves, made here and put in the
//! programs' array of rings (`EVENTS`: slot `n` holds the ring CPU `n`
//! writes to). One ring shared by every CPU made the CPUs' reserves
//! contend for its lock (215 ns per transition for a bare reserve and
//! submit in a two-CPU FIN storm, 93 with a ring each; the kernel's
//! bpf_stats); a ring per CPU costs the same memory, split.

use aya::{
    Ebpf,
    maps::{ArrayOfMaps, Map, MapData, RingBuf},
};
use aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_RINGBUF;

use anyhow::{Context as _, Result, bail};
use tracer_common::{MAX_CPUS, names};

/// The smallest ring a CPU gets of its own: with a smaller budget per CPU,
/// CPUs share rings (CPU `n` writes to ring `n % count`), so that a burst
/// on one CPU still finds room for about 2 700 records (a third of a
/// second of a busy host's transitions) while the reader drains every
/// 10 ms.
pub const MIN_RING_BYTES: u32 = 256 << 10;

/// How the budget is split: `count` rings of `bytes` each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub count: u32,
    pub bytes: u32,
}

impl Plan {
    /// `total` bytes (a power of two, as `--ring-size` checks) for `cpus`
    /// CPUs: a ring per CPU when each gets at least [`MIN_RING_BYTES`],
    /// else fewer; always a power of two rings, so the sizes stay powers
    /// of two (the kernel's rule) and add up to `total`.
    pub fn new(total: u32, cpus: u32) -> Self {
        let most = (total / MIN_RING_BYTES).clamp(1, cpus.max(1));
        let count = if most.is_power_of_two() {
            most
        } else {
            most.next_power_of_two() / 2
        };
        Self {
            count,
            bytes: total / count,
        }
    }

    /// The ring CPU `cpu` writes to.
    pub fn ring_of(&self, cpu: u32) -> u32 {
        cpu % self.count
    }
}

/// The host's possible CPUs (every id a program can run on, online or
/// not): the size of the array of rings.
pub fn possible_cpus() -> Result<u32> {
    let n =
        aya::util::nr_cpus().map_err(|(path, e)| anyhow::anyhow!("reading {path}: {e}"))? as u32;
    if n as usize > MAX_CPUS {
        bail!("this host has {n} possible CPUs; tcptrace handles at most {MAX_CPUS}");
    }
    Ok(n)
}

/// The rings a run reads, in ring order, and how they were sized.
pub struct Rings {
    pub plan: Plan,
    maps: Vec<MapData>,
}

impl Rings {
    /// Maps the rings into this process for reading. Apart from
    /// [`install`]: the kernel maps a ring's every page at once (the whole
    /// budget counts in RSS from then on), so it is done after loading,
    /// once the BTF parsed meanwhile is freed, not on top of it.
    pub fn open(self) -> Result<Vec<RingBuf<MapData>>> {
        self.maps
            .into_iter()
            .map(|m| Ok(RingBuf::try_from(Map::RingBuf(m))?))
            .collect()
    }
}

/// Makes the rings of `plan` and puts them in every CPU's slot of the
/// loaded object's array, before any program is attached (a program that
/// finds its CPU's slot empty counts its record as lost).
pub fn install(bpf: &mut Ebpf, plan: Plan, cpus: u32) -> Result<Rings> {
    let mut made = Vec::with_capacity(plan.count as usize);
    for i in 0..plan.count {
        let obj = aya_obj::Map::new_from_params(BPF_MAP_TYPE_RINGBUF as u32, 0, 0, plan.bytes, 0);
        let map = MapData::create(obj, &format!("EVENTS_{i}"), None)
            .with_context(|| format!("making event ring {i} ({} bytes)", plan.bytes))?;
        made.push(map);
    }
    let outer = bpf
        .map_mut(names::EVENTS)
        .context("the object has no EVENTS map")?;
    let mut outer: ArrayOfMaps<&mut MapData, MapData> = ArrayOfMaps::try_from(outer)?;
    for cpu in 0..cpus {
        outer
            .set(cpu, &made[plan.ring_of(cpu) as usize], 0)
            .with_context(|| format!("giving CPU {cpu} its event ring"))?;
    }
    Ok(Rings { plan, maps: made })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_split_into_power_of_two_rings_of_at_least_the_minimum() {
        let m = MIN_RING_BYTES;
        for (total, cpus, count) in [
            (4 << 20, 2, 2),
            (4 << 20, 1, 1),
            (4 << 20, 3, 2),
            (4 << 20, 16, 16),
            (4 << 20, 64, 16),
            (64 << 10, 8, 1),
            (m, 8, 1),
            (2 * m, 8, 2),
            (1 << 30, 4096, 4096),
        ] {
            let p = Plan::new(total, cpus);
            assert_eq!(p.count, count, "{total} bytes, {cpus} CPUs");
            assert!(p.bytes.is_power_of_two());
            assert_eq!(p.bytes * p.count, total);
            assert!(p.bytes >= m || p.count == 1);
            assert_eq!(p.ring_of(cpus - 1), (cpus - 1) % count);
        }
    }
}
