//! Staging: every library a worker loads is first copied to a private,
//! content-addressed path. Rebuilding or overwriting the user's file can
//! then never touch a running worker's mapping, and a changed library always
//! gets a new path, so dlopen never hands back cached old code (DESIGN-NOTES §3).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The copy buffer: small, so staging never grows the heap.
const COPY_BUFFER: usize = 64 << 10;

/// Staging folders are named this plus the master's pid.
const PREFIX: &str = "host-stage-";

/// A private folder of staged libraries, removed when dropped.
pub struct Stage {
    dir: PathBuf,
}

impl Stage {
    /// Creates the folder (mode 0700) under the system's temp folder, and
    /// removes those of masters that died without cleaning up.
    pub fn create() -> io::Result<Stage> {
        remove_orphans();
        let dir = std::env::temp_dir().join(format!("{PREFIX}{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Stage { dir })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Copies `source` to `<stage>/<sha256 prefix>-<file name>` unless that
    /// content is already staged, and returns the staged path. One pass
    /// with a small buffer: what is hashed is what is copied, and a large
    /// library does not grow the master's heap.
    pub fn stage(&self, source: &Path) -> io::Result<PathBuf> {
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
            .open(&partial)?;
        let mut hasher = Sha256::new();
        let mut original = fs::File::open(source)?;
        let mut buf = vec![0; COPY_BUFFER];
        loop {
            let count = original.read(&mut buf)?;
            if count == 0 {
                break;
            }
            hasher.update(&buf[..count]);
            copy.write_all(&buf[..count])?;
        }
        copy.sync_all()?;
        let hex: String = hasher.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect();
        let staged = self.dir.join(format!("{hex}-{name}"));
        if staged.exists() {
            fs::remove_file(&partial)?;
        } else {
            fs::rename(&partial, &staged)?;
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

    #[test]
    fn same_content_same_path_new_content_new_path() {
        let stage = Stage::create().unwrap();
        let source = stage.dir().join("source-libx.so");
        fs::write(&source, b"one").unwrap();
        let first = stage.stage(&source).unwrap();
        assert_eq!(stage.stage(&source).unwrap(), first);
        fs::write(&source, b"two").unwrap();
        let second = stage.stage(&source).unwrap();
        assert_ne!(first, second);
        assert_eq!(fs::read(&first).unwrap(), b"one");
        assert!(second
            .file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with("-source-libx.so"));
    }
}
