//! `--reload`: notices when an app's library file is rebuilt. Polls the
//! files (no inotify dependency; rename-over and in-place writes both show)
//! and reports a change once the file has stopped changing (debounce).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

/// How often the files are looked at.
const POLL: Duration = Duration::from_millis(300);

/// What identifies one version of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Version {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn version(path: &PathBuf) -> Option<Version> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Version {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// Watches `files`; sends `()` on `changed` after each settled change.
pub async fn watch(files: Vec<PathBuf>, changed: mpsc::Sender<()>) {
    let mut seen: Vec<Option<Version>> = files.iter().map(version).collect();
    loop {
        tokio::time::sleep(POLL).await;
        let now: Vec<Option<Version>> = files.iter().map(version).collect();
        if now == seen {
            continue;
        }
        // Wait until two looks in a row agree: the build is done writing.
        let mut settled = now;
        loop {
            tokio::time::sleep(POLL).await;
            let again: Vec<Option<Version>> = files.iter().map(version).collect();
            if again == settled {
                break;
            }
            settled = again;
        }
        seen = settled;
        if seen.iter().any(Option::is_none) {
            log::warn!("--reload: a watched library is missing; waiting for it to come back");
            continue;
        }
        if changed.send(()).await.is_err() {
            return;
        }
    }
}
