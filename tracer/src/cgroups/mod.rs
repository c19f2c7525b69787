//! Which cgroup owns a socket, by name: the kernel gives the owner's
//! cgroup v2 id (`bpf_get_current_cgroup_id()`, the inode number of the
//! cgroup's directory in the unified hierarchy); here it becomes the
//! cgroup's path (as `/proc/PID/cgroup`'s `0::` line writes it), the
//! container id parsed from the container runtimes' naming, and the
//! systemd unit. The live source resolves each id once ([`Resolver`]) and
//! pushes the name into the pipeline, so a recording carries it and replay
//! needs no access to the recording host's cgroups.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::pipeline::{Input, Pipeline};

/// A cgroup v2 id (0: unknown), kept as two 4-byte halves so that an
/// owner ([`crate::event::Owner`]), which every flow holds, stays 4-byte
/// aligned: a flow is 8 bytes smaller than with a `u64`. Serialized as
/// the number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CgroupId([u32; 2]);

impl CgroupId {
    pub fn new(id: u64) -> Self {
        Self([id as u32, (id >> 32) as u32])
    }

    pub fn get(self) -> u64 {
        u64::from(self.0[0]) | u64::from(self.0[1]) << 32
    }

    pub fn is_unknown(&self) -> bool {
        self.get() == 0
    }
}

impl Serialize for CgroupId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.get())
    }
}

impl<'de> Deserialize<'de> for CgroupId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64::deserialize(d).map(Self::new)
    }
}

/// A cgroup's name and what its path says about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupInfo {
    /// The path below the unified hierarchy's root, `/` first.
    pub path: String,
    /// The container's id, when the path is named the way a container
    /// runtime names it (docker, containerd, cri-o, podman, kubepods).
    pub container: Option<String>,
    /// The innermost systemd unit (`*.service`, `*.scope`, `*.slice`).
    pub unit: Option<String>,
}

impl CgroupInfo {
    pub fn new(path: &str) -> Self {
        Self {
            path: path.to_owned(),
            container: container_id(path).map(str::to_owned),
            unit: systemd_unit(path).map(str::to_owned),
        }
    }
}

/// Names of cgroups by id, as the pipeline learned them.
pub type Names = HashMap<u64, CgroupInfo>;

/// `--cgroup PATH`: the cgroup at `PATH` and every one below it, by the
/// ids whose names the pipeline learned so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    path: String,
    ids: std::collections::BTreeSet<u64>,
}

impl Wanted {
    /// `path` as `/proc/PID/cgroup` writes it (`/system.slice/x.service`),
    /// or as a directory under the unified hierarchy's mount
    /// (`/sys/fs/cgroup/unified/system.slice/x.service`, given `root`).
    pub fn new(path: &str, root: Option<&Path>) -> Self {
        let under = root
            .and_then(|r| Path::new(path).strip_prefix(r).ok())
            .and_then(|p| p.to_str())
            .map(|p| format!("/{p}"));
        let path = under.as_deref().unwrap_or(path).trim_end_matches('/');
        Self {
            path: format!("/{}", path.trim_start_matches('/')),
            ids: Default::default(),
        }
    }

    /// The path asked for.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Cgroup `id` is named `path`: kept if it is ours or below it.
    pub fn learn(&mut self, id: u64, path: &str) {
        let below = |p: &str| {
            self.path == "/"
                || p.strip_prefix(self.path.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if below(path) {
            self.ids.insert(id);
        } else {
            self.ids.remove(&id);
        }
    }

    pub fn has(&self, id: u64) -> bool {
        self.ids.contains(&id)
    }

    /// Cgroup `id` is gone.
    pub fn forget(&mut self, id: u64) {
        self.ids.remove(&id);
    }
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container id in a cgroup path: the innermost component that is a
/// 64-hex id bare (docker's and kubelet's cgroupfs driver:
/// `/docker/<id>`, `/kubepods/burstable/pod<uid>/<id>`), a systemd scope
/// of a runtime (`docker-<id>.scope`, `cri-containerd-<id>.scope`,
/// `crio-<id>.scope`, `libpod-<id>.scope`) or containerd's systemd
/// naming (`...slice:cri-containerd:<id>`). Conmon's scopes
/// (`crio-conmon-<id>.scope`, `libpod-conmon-<id>.scope`) are the
/// monitor, not the container.
pub fn container_id(path: &str) -> Option<&str> {
    const PREFIXES: [&str; 4] = ["docker-", "cri-containerd-", "crio-", "libpod-"];
    path.rsplit('/').find_map(|c| {
        if is_id(c) {
            return Some(c);
        }
        if let Some(stem) = c.strip_suffix(".scope")
            && let Some(id) = PREFIXES.iter().find_map(|p| stem.strip_prefix(p))
            && is_id(id)
        {
            return Some(id);
        }
        let (_, id) = c.rsplit_once(':')?;
        is_id(id).then_some(id)
    })
}

/// The innermost systemd unit a cgroup path names.
pub fn systemd_unit(path: &str) -> Option<&str> {
    path.rsplit('/').find(|c| {
        [".service", ".scope", ".slice"]
            .iter()
            .any(|s| c.len() > s.len() && c.ends_with(s))
    })
}

/// Where the unified (v2) hierarchy is mounted: `/sys/fs/cgroup` on a
/// v2-only host, `/sys/fs/cgroup/unified` on a hybrid one; the first
/// `cgroup2` mount of `/proc/self/mountinfo`.
pub fn unified_root() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE ...
        let (left, right) = l.split_once(" - ")?;
        let point = left.split(' ').nth(4)?;
        (right.split(' ').next()? == "cgroup2").then(|| PathBuf::from(point))
    })
}

/// The cgroup path of a process (its `0::` line), and the cgroup's id.
pub fn of_pid(root: &Path, pid: u32) -> Option<(u64, String)> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let id = fs::metadata(root.join(path.trim_start_matches('/')))
        .ok()?
        .ino();
    Some((id, path.to_owned()))
}

/// The path of `dir` below `root`, `/` first.
fn rel(root: &Path, dir: &Path) -> Option<String> {
    let r = dir.strip_prefix(root).ok()?.to_str()?;
    Some(format!("/{r}"))
}

/// Directories one walk visits at most.
const WALK_MAX: usize = 100_000;
/// The hierarchy is walked again at most this often.
const REWALK_EVERY: Duration = Duration::from_secs(1);
/// Walks that look for an id not found yet (a cgroup made after the last
/// walk) before it is given up as unnamed.
const TRIES: u8 = 3;
/// Ids waiting for a name at most.
const PENDING_MAX: usize = 4096;
/// How often the names handed out are checked against the hierarchy: a
/// cgroup gone at two checks in a row (a container that ended minutes
/// ago, whose last sockets are closed by now) is forgotten everywhere,
/// so a host that starts containers all day keeps only the living ones.
const PRUNE_EVERY: Duration = Duration::from_secs(300);

/// Cgroup ids to paths, from walks of the unified hierarchy (the id is
/// the directory's inode number). Bounded: a walk visits at most
/// 100 000 directories and keeps the names of the cgroups that exist;
/// the hierarchy is walked at most once a second, on a miss or to look
/// again for the ids still missing (three times each).
#[derive(Debug)]
pub struct Resolver {
    root: Option<PathBuf>,
    /// The last walk's names.
    paths: HashMap<u64, String>,
    walked: Option<Instant>,
    /// Ids whose name was handed out already, or that have none.
    said: foldhash::HashSet<u64>,
    /// Ids not found yet, and the walks left to look for them.
    pending: foldhash::HashMap<u64, u8>,
    /// When the names handed out were last checked, and the ids that were
    /// gone then.
    pruned: Instant,
    gone: foldhash::HashSet<u64>,
}

impl Resolver {
    /// A resolver of this host's unified hierarchy (none mounted: every
    /// id stays unnamed).
    pub fn new() -> Self {
        Self::at(unified_root())
    }

    pub fn at(root: Option<PathBuf>) -> Self {
        Self {
            root,
            paths: HashMap::new(),
            walked: None,
            said: Default::default(),
            pending: Default::default(),
            pruned: Instant::now(),
            gone: Default::default(),
        }
    }

    /// Walks the hierarchy if the last walk is a second old.
    fn walk(&mut self) -> bool {
        let Some(root) = self.root.clone() else {
            return false;
        };
        if self.walked.is_some_and(|t| t.elapsed() < REWALK_EVERY) {
            return false;
        }
        self.walked = Some(Instant::now());
        self.paths.clear();
        let mut stack = vec![root.clone()];
        let mut seen = 0;
        while let Some(dir) = stack.pop() {
            seen += 1;
            if seen > WALK_MAX {
                break;
            }
            if let (Ok(m), Some(p)) = (fs::metadata(&dir), rel(&root, &dir)) {
                self.paths.insert(m.ino(), p);
            }
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        true
    }

    /// The path of cgroup `id` as the last walk saw it.
    pub fn path(&self, id: u64) -> Option<&str> {
        self.paths.get(&id).map(String::as_str)
    }

    /// Pushes the name of cgroup `id` into `p` the first time it is
    /// known (before the first event of an owner in it).
    pub fn name(&mut self, p: &mut Pipeline, id: u64) {
        if let Some((id, path)) = self.announce(id) {
            p.push(Input::Cgroup { id, path });
        }
    }

    /// Looks again for the ids still missing (at most once a second) and
    /// pushes the names found: a cgroup made after the last walk; every
    /// [`PRUNE_EVERY`], forgets the cgroups gone (see [`Self::prune`]).
    pub fn retry(&mut self, p: &mut Pipeline) {
        if self.pruned.elapsed() >= PRUNE_EVERY {
            self.pruned = Instant::now();
            for id in self.prune() {
                p.push(Input::CgroupGone(id));
            }
        }
        if self.pending.is_empty() || !self.walk() {
            return;
        }
        let mut found = Vec::new();
        self.pending.retain(|&id, left| {
            if self.paths.contains_key(&id) {
                found.push(id);
                return false;
            }
            *left -= 1;
            if *left == 0 {
                self.said.insert(id);
            }
            *left > 0
        });
        for id in found {
            self.name(p, id);
        }
    }

    /// Walks the hierarchy and returns the ids handed out (or given up)
    /// that were missing from it at this check and the one before: they
    /// are forgotten here, and the caller tells the pipeline. An id that
    /// comes back after all is named again.
    pub fn prune(&mut self) -> Vec<u64> {
        self.walked = None;
        if !self.walk() {
            return Vec::new();
        }
        let missing: foldhash::HashSet<u64> = self
            .said
            .iter()
            .copied()
            .filter(|id| !self.paths.contains_key(id))
            .collect();
        let gone: Vec<u64> = missing
            .iter()
            .copied()
            .filter(|id| self.gone.contains(id))
            .collect();
        for id in &gone {
            self.said.remove(id);
        }
        self.gone = missing;
        for id in &gone {
            self.gone.remove(id);
        }
        gone
    }

    /// The name of `id` if it was not handed out yet and is known (after
    /// a walk, if that is due); a miss waits for [`Self::retry`].
    pub fn announce(&mut self, id: u64) -> Option<(u64, String)> {
        if id == 0 || self.said.contains(&id) {
            return None;
        }
        if !self.paths.contains_key(&id) && !self.pending.contains_key(&id) {
            self.walk();
        }
        let Some(path) = self.paths.get(&id) else {
            if self.pending.len() < PENDING_MAX {
                self.pending.entry(id).or_insert(TRIES);
            }
            return None;
        };
        self.pending.remove(&id);
        self.said.insert(id);
        Some((id, path.clone()))
    }
}

impl Default for Resolver {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests;
