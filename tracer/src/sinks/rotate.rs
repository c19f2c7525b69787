//! A log file that rotates itself by size and reopens on request (SIGHUP),
//! for the JSON log of `tcptrace agent`. Lines are never cut: a batch is
//! split only after a newline, so every file holds whole records. The
//! file is opened for appending, so logrotate's `copytruncate` (the file
//! shrinks under us: the next write lands at its new end) and `create`
//! (the file is renamed away; SIGHUP makes us open a new one) both work.
//! Rotation renames `FILE` to `FILE.1`, `FILE.1` to `FILE.2`, and so on,
//! keeping `keep` old files.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::{Context as _, Result};

/// When to start a new file.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Past this many bytes (`None`: never by size).
    pub max_bytes: Option<u64>,
    /// Old files kept (0: the file is started over).
    pub keep: usize,
    /// Raised (by SIGHUP) to reopen the file before the next write.
    pub reopen: Arc<AtomicBool>,
}

/// See the module documentation.
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    policy: Policy,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

impl RotatingFile {
    pub fn open(path: &Path, policy: Policy) -> Result<Self> {
        let file = open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            policy,
        })
    }

    /// `FILE.n`.
    fn old(&self, n: usize) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        p.into()
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.policy.keep == 0 {
            self.file.set_len(0)?;
            return Ok(());
        }
        for n in (1..self.policy.keep).rev() {
            let from = self.old(n);
            if from.exists() {
                std::fs::rename(&from, self.old(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.old(1))?;
        self.file = open(&self.path)?;
        Ok(())
    }

    /// How much of `rest` goes into the current file (0: rotate first).
    fn fits(&self, size: u64, rest: &[u8]) -> usize {
        let Some(max) = self.policy.max_bytes else {
            return rest.len();
        };
        if size + rest.len() as u64 <= max {
            return rest.len();
        }
        let room = max.saturating_sub(size).min(rest.len() as u64) as usize;
        match rest[..room].iter().rposition(|&c| c == b'\n') {
            Some(i) => i + 1,
            // A line longer than a whole file goes alone into a new one.
            None if size == 0 => rest
                .iter()
                .position(|&c| c == b'\n')
                .map_or(rest.len(), |i| i + 1),
            None => 0,
        }
    }
}

impl Write for RotatingFile {
    /// Writes all of `buf` (a batch of whole lines), rotating between
    /// lines as needed.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.policy.reopen.swap(false, Ordering::Relaxed) {
            self.file = open(&self.path)?;
        }
        let mut rest = buf;
        while !rest.is_empty() {
            let size = self.file.metadata()?.len();
            let n = self.fits(size, rest);
            if n == 0 {
                self.rotate()?;
                continue;
            }
            self.file.write_all(&rest[..n])?;
            rest = &rest[n..];
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(p: &Path) -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn rotates_between_lines_and_keeps_n() {
        let dir = std::env::temp_dir().join(format!("tcptrace-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.jsonl");
        let reopen = Arc::new(AtomicBool::new(false));
        let mut f = RotatingFile::open(
            &path,
            Policy {
                max_bytes: Some(100),
                keep: 2,
                reopen: reopen.clone(),
            },
        )
        .unwrap();
        // 30 lines of 10 bytes in batches of 7: 10 lines a file.
        let all: Vec<String> = (0..30).map(|i| format!("line {i:04}")).collect();
        for batch in all.chunks(7) {
            let b: String = batch.iter().map(|l| format!("{l}\n")).collect();
            f.write_all(b.as_bytes()).unwrap();
        }
        let (now, one, two) = (lines(&path), lines(&f.old(1)), lines(&f.old(2)));
        assert_eq!([two.len(), one.len(), now.len()], [10, 10, 10]);
        assert_eq!([two, one, now].concat(), all);
        assert!(!f.old(3).exists());
        // logrotate's create mode: moved away, then SIGHUP.
        std::fs::rename(&path, dir.join("moved")).unwrap();
        reopen.store(true, Ordering::Relaxed);
        f.write_all(b"after\n").unwrap();
        assert_eq!(lines(&path), ["after"]);
        // copytruncate: the next line lands at the start.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        f.write_all(b"again\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"again\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
