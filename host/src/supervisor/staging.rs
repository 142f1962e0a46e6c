//! Staging: every library a worker loads is first copied to a private,
//! content-addressed path. Rebuilding or overwriting the user's file can
//! then never touch a running worker's mapping, and a changed library always
//! gets a new path, so dlopen never hands back cached old code (see the
//! README's "Worker processes"). Only a regular file no larger than the
//! limit, with complete ELF headers, is copied ([`crate::plugin::library_file`]):
//! a FIFO, `/dev/zero` or a truncated build is refused in one line.

use std::fs;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::plugin::library_file::{self, FileProblem};

/// The copy buffer: small, so staging never grows the heap.
const COPY_BUFFER: usize = 64 << 10;

/// Staging folders are named this plus the master's pid.
const PREFIX: &str = "host-stage-";

/// A private folder of staged libraries, removed when dropped.
pub struct Stage {
    dir: PathBuf,
}

/// Why a library could not be staged.
#[derive(Debug)]
pub enum StageError {
    /// The file is not something to load (the user's to fix).
    Refused(FileProblem),
    /// Our own folder could not be written.
    Io(io::Error),
}

impl Stage {
    /// Creates the folder (mode 0700) under the system's temp folder, and
    /// removes those of masters that died without cleaning up.
    pub fn create() -> io::Result<Stage> {
        remove_orphans();
        Stage::at(std::env::temp_dir().join(format!("{PREFIX}{}", std::process::id())))
    }

    /// A stage in `dir` (made afresh, mode 0700).
    fn at(dir: PathBuf) -> io::Result<Stage> {
        let _ = fs::remove_dir_all(&dir);
        fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Stage { dir })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Copies `source` to `<stage>/<sha256 prefix>-<file name>` unless that
    /// content is already staged, and returns the staged path. The file is
    /// checked first and read at most `limit` bytes far; one pass with a
    /// small buffer: what is hashed is what is copied.
    pub fn stage(&self, source: &Path, limit: u64) -> Result<PathBuf, StageError> {
        let (mut original, len) = library_file::open_regular(source, limit).map_err(StageError::Refused)?;
        library_file::check_elf(&original, len).map_err(StageError::Refused)?;
        // The check read the headers; copy from the start.
        original
            .seek(io::SeekFrom::Start(0))
            .map_err(|e| StageError::Refused(FileProblem::Unreadable(e)))?;
        let name = source
            .file_name()
            .map_or_else(|| "lib.so".into(), |n| n.to_string_lossy().into_owned());
        // Write beside, then rename: a staged path is complete or absent.
        let partial = self.dir.join(format!(".{name}.partial"));
        let mut copy = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o500)
            .open(&partial)
            .map_err(StageError::Io)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0; COPY_BUFFER];
        let mut copied = 0u64;
        loop {
            let count = original
                .read(&mut buf)
                .map_err(|e| StageError::Refused(FileProblem::Unreadable(e)))?;
            if count == 0 {
                break;
            }
            copied += count as u64;
            if copied > limit {
                // It grew while being copied.
                let _ = fs::remove_file(&partial);
                return Err(StageError::Refused(FileProblem::TooLarge { len: copied, limit }));
            }
            hasher.update(&buf[..count]);
            copy.write_all(&buf[..count]).map_err(StageError::Io)?;
        }
        copy.sync_all().map_err(StageError::Io)?;
        let hex: String = hasher.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect();
        let staged = self.dir.join(format!("{hex}-{name}"));
        if staged.exists() {
            fs::remove_file(&partial).map_err(StageError::Io)?;
        } else {
            fs::rename(&partial, &staged).map_err(StageError::Io)?;
        }
        Ok(staged)
    }
}

/// Removes the staging folders of processes that no longer exist (a master
/// killed with SIGKILL cannot clean up after itself).
fn remove_orphans() {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|p| p.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        let ours = entry.metadata().is_ok_and(|m| m.uid() == me);
        if ours && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared library this process has mapped (libc's), as test input.
    fn some_library() -> PathBuf {
        let maps = fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines()
            .filter_map(|line| line.split_whitespace().nth(5))
            .find(|path| path.contains("libc.so") || path.contains("libc-"))
            .expect("libc is mapped")
            .into()
    }

    fn test_stage(name: &str) -> Stage {
        Stage::at(std::env::temp_dir().join(format!("stage-test-{name}-{}", std::process::id()))).unwrap()
    }

    #[test]
    fn same_content_same_path_new_content_new_path() {
        let stage = test_stage("content");
        let bytes = fs::read(some_library()).unwrap();
        let source = stage.dir().join("source-libx.so");
        fs::write(&source, &bytes).unwrap();
        let first = stage.stage(&source, u64::MAX).unwrap();
        assert_eq!(stage.stage(&source, u64::MAX).unwrap(), first);
        // Same length, one byte changed in the middle: still a valid ELF file.
        let mut changed = bytes.clone();
        let middle = changed.len() / 2;
        changed[middle] ^= 0xff;
        fs::write(&source, &changed).unwrap();
        let second = stage.stage(&source, u64::MAX).unwrap();
        assert_ne!(first, second);
        assert!(fs::read(&first).unwrap() == bytes, "the first copy is intact");
        assert!(second
            .file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with("-source-libx.so"));
    }

    #[test]
    fn devices_and_oversized_files_are_refused_before_copying() {
        let stage = test_stage("refused");
        assert!(matches!(
            stage.stage(Path::new("/dev/zero"), u64::MAX),
            Err(StageError::Refused(FileProblem::NotRegular(_)))
        ));
        assert!(matches!(
            stage.stage(&some_library(), 1024),
            Err(StageError::Refused(FileProblem::TooLarge { .. }))
        ));
        assert_eq!(fs::read_dir(stage.dir()).unwrap().count(), 0, "nothing was written");
    }
}
