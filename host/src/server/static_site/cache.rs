//! [`SiteCache`]: what the static site's request paths resolved to (files
//! with their headers and small files' bytes, redirects, misses), so that a
//! hot path costs a hash lookup instead of a dozen syscalls. An entry is
//! trusted for [`FRESH_FOR`]; after that the next request checks the disk
//! again, and a file found unchanged (same inode, size and mtime) keeps its
//! bytes without a re-read. Bounded in entries and in bytes: when either
//! bound would be passed, the cache starts over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use super::{Lookup, StaticFile};

/// How long a lookup is trusted without looking at the disk: a changed
/// file is served at most this late.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// Most paths remembered (misses included).
const MAX_ENTRIES: usize = 16 * 1024;

/// Most file bytes held.
const MAX_BYTES: usize = 64 << 20;

/// Request path → lookup, with when it was checked.
#[derive(Default)]
pub struct SiteCache {
    inner: RwLock<Entries>,
    /// Lookups answered from the cache, and ones that went to the disk.
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct Entries {
    by_path: HashMap<Box<str>, (Instant, Lookup)>,
    bytes: usize,
}

impl SiteCache {
    /// The lookup for `path`: the cached one while fresh, else what
    /// `resolve` finds (given the stale file, if there was one).
    pub fn get_or_resolve(
        &self,
        path: &str,
        now: Instant,
        resolve: impl FnOnce(Option<&StaticFile>) -> Lookup,
    ) -> Lookup {
        let stale = {
            let entries = self.inner.read().unwrap_or_else(|e| e.into_inner());
            match entries.by_path.get(path) {
                Some((checked, lookup)) if now.duration_since(*checked) < FRESH_FOR => {
                    self.hits.fetch_add(1, Relaxed);
                    return lookup.clone();
                }
                Some((_, Lookup::File(file))) => Some(file.clone()),
                _ => None,
            }
        };
        self.misses.fetch_add(1, Relaxed);
        let lookup = resolve(stale.as_deref());
        self.insert(path, now, lookup.clone());
        lookup
    }

    /// Forgets every lookup (the site's folder now leads elsewhere).
    pub fn clear(&self) {
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = Entries::default();
    }

    /// Lookups answered from the cache, and ones that went to the disk.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }

    fn insert(&self, path: &str, checked: Instant, lookup: Lookup) {
        let added = file_bytes(&lookup);
        let mut entries = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if entries.by_path.len() >= MAX_ENTRIES || entries.bytes + added > MAX_BYTES {
            log::debug!(
                "static cache full ({} paths, {} bytes): starting over",
                entries.by_path.len(),
                entries.bytes
            );
            *entries = Entries::default();
        }
        entries.bytes += added;
        if let Some((_, old)) = entries.by_path.insert(path.into(), (checked, lookup)) {
            entries.bytes -= file_bytes(&old);
        }
    }
}

fn file_bytes(lookup: &Lookup) -> usize {
    match lookup {
        Lookup::File(file) => file.cached_bytes(),
        _ => 0,
    }
}
