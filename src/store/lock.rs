//! One gateway process per SQLite file. Two processes on one file would each run a batch worker
//! over the same queue and each keep its own view of the caches, so the second is refused at
//! start-up with the first one's process id. The lock is an advisory lock on `<file>.lock`,
//! released by the operating system when the process ends, however it ends.

use anyhow::{Context, bail};
use fs4::TryLockError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Held for the life of the process; dropping it releases the file.
#[derive(Debug)]
pub struct ProcessLock {
    _file: File,
}

fn lock_path(sqlite: &Path) -> PathBuf {
    let mut name = sqlite.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the lock for `sqlite` (the database file), or says which process holds it. `None` on a
/// read-only file system: no process can write the file there, so there is nothing to guard
/// (the gateway then runs degraded, see `store::Unusable`).
pub fn acquire(sqlite: &Path) -> anyhow::Result<Option<ProcessLock>> {
    if let Some(dir) = sqlite.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let path = lock_path(sqlite);
    let opened = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path);
    let mut file = match opened {
        Err(e) if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem => {
            tracing::error!(path = %path.display(), "read-only file system: the SQLite store cannot be written");
            return Ok(None);
        }
        other => other.with_context(|| format!("opening {}", path.display()))?,
    };
    // fs4 rather than std::fs::File::try_lock, which needs Rust 1.89 (the crate supports 1.85).
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() { "unknown".to_string() } else { holder.to_string() };
            bail!(
                "{} is already used by another gemgate process (pid {holder}); a SQLite store serves one \
                 process: give each gateway its own store.sqlite_path, or share store.backend = \"redis\"",
                sqlite.display()
            );
        }
        Err(TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    file.flush()?;
    Ok(Some(ProcessLock { _file: file }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_the_lock_frees_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub/g.sqlite");
        let first = acquire(&db).unwrap();
        // A second open file description conflicts like a second process would.
        let err = acquire(&db).unwrap_err().to_string();
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        acquire(&db).expect("free again");
    }
}
