//! One process per data directory: an OS file lock held for the process's life.
//!
//! Two servers on one journal would each admit against their own copy of the ledger and
//! over-admit (and hand one lease id to two calls). `flock` on `callgate.lock` in the
//! data directory is released by the kernel when the process dies, also after `kill -9`,
//! so a crashed server never leaves a stale lock behind; the file holds the owner's pid
//! only so that the refusal can name it.

use crate::StoreError;
use rustix::fs::{flock, FlockOperation};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "callgate.lock";

/// The exclusive hold on a data directory; dropping it releases the directory.
#[derive(Debug)]
pub struct DirLock {
    /// The open lock file: the lock lives as long as this descriptor.
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the data directory `dir` (creating it when missing) for this process, or
    /// says which process holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
        if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() { "another process".to_string() } else { format!("pid {holder}") };
            return Err(StoreError(format!(
                "the data directory {} is in use by another callgate ({who}; lock {}: {e}). One server owns a \
                 data directory: stop that one, or give this one another --data-dir",
                dir.display(),
                path.display()
            )));
        }
        let written = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()));
        if let Err(e) = written {
            // The lock holds without the pid; only the message of a refused second
            // server is poorer.
            tracing::warn!(error = %e, path = %path.display(), "Cannot write the pid into the lock file");
        }
        Ok(DirLock { _file: file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
