//! Files mapped into memory as [`Bytes`], and the registry that leads a
//! slice of such bytes back to its file and offset, so a socket can send
//! it with `sendfile` instead of copying it (see `server::zero_copy`).
//!
//! The mapping is what makes this safe rather than clever: were a slice
//! ever written some other way (copied into a buffer, sent over TLS, to a
//! CGI pipe), it still holds the file's real bytes. A mapping leaves the
//! registry when its last `Bytes` is dropped, which is never while a
//! writer holds a slice of it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::sync::RwLock;

use bytes::Bytes;

/// Slices shorter than this are written as usual (a registry lookup and a
/// syscall of their own would cost more than the copy).
const MIN_SENDFILE: usize = 16 << 10;

/// Live mappings by start address: their length and the file's descriptor.
static MAPPINGS: RwLock<BTreeMap<usize, (usize, RawFd)>> = RwLock::new(BTreeMap::new());

/// A read-only shared mapping of a whole file, and the open file.
struct Mapping {
    base: *const u8,
    len: usize,
    file: File,
}

// SAFETY: the mapping is read-only memory valid until `drop`; nothing
// writes through `base`.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `base` points at `len` mapped, readable bytes until drop.
        unsafe { std::slice::from_raw_parts(self.base, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        MAPPINGS
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(self.base as usize));
        // SAFETY: unmaps exactly the mapping made in `map_file`; no `Bytes`
        // over it is left (this is its owner's drop).
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.len);
        }
    }
}

/// Ranges up to this size are read into memory (a copy costs less than a
/// mapping and a `sendfile` of their own); larger ones are mapped.
pub const READ_UP_TO: u64 = 64 << 10;

/// The bytes `range` of `file` (whose length is `file_len`): read when the
/// range is at most [`READ_UP_TO`], else a slice of a mapping of the file.
pub fn file_range(file: File, range: Range<u64>, file_len: u64) -> io::Result<Bytes> {
    let count = range.end.saturating_sub(range.start);
    if count <= READ_UP_TO {
        let mut bytes = vec![0; count as usize];
        file.read_exact_at(&mut bytes, range.start)?;
        return Ok(bytes.into());
    }
    Ok(map_file(file, file_len)?.slice(range.start as usize..range.end as usize))
}

/// The whole of `file` (`len` bytes) as [`Bytes`] that `ZeroCopy` (in
/// `server::zero_copy`) sends with `sendfile`.
fn map_file(file: File, len: u64) -> io::Result<Bytes> {
    let len = usize::try_from(len).map_err(io::Error::other)?;
    if len == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: a new private read-only mapping of our own open file; the
    // result is checked for failure below.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let mapping = Mapping {
        base: base as *const u8,
        len,
        file,
    };
    MAPPINGS
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(base as usize, (len, mapping.file.as_raw_fd()));
    Ok(Bytes::from_owner(mapping))
}

/// The file and offset behind `slice`, if it lies in a live mapping.
pub fn file_of(slice: &[u8]) -> Option<(RawFd, u64)> {
    if slice.len() < MIN_SENDFILE {
        return None;
    }
    let start = slice.as_ptr() as usize;
    let mappings = MAPPINGS.read().unwrap_or_else(|e| e.into_inner());
    let (&base, &(len, fd)) = mappings.range(..=start).next_back()?;
    (start + slice.len() <= base + len).then_some((fd, (start - base) as u64))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// An unlinked file holding `bytes`.
    pub(crate) fn temp_file(bytes: &[u8]) -> File {
        let path = std::env::temp_dir().join(format!("zero-copy-{}-{}", std::process::id(), bytes.len()));
        std::fs::File::create(&path).unwrap().write_all(bytes).unwrap();
        let file = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }

    #[test]
    fn slices_of_a_mapping_lead_back_to_the_file() {
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mapped = map_file(temp_file(&content), content.len() as u64).unwrap();
        assert_eq!(&mapped[..], &content[..], "the mapping holds the file's bytes");
        let part = mapped.slice(50_000..120_000);
        let (_, offset) = file_of(&part).expect("a mapped slice");
        assert_eq!(offset, 50_000);
        assert!(
            file_of(&mapped.slice(0..100)).is_none(),
            "small slices are written as usual"
        );
        assert!(file_of(&content[..]).is_none(), "other memory is not a mapping");
        let base = mapped.as_ptr() as usize;
        drop((mapped, part));
        assert!(!MAPPINGS.read().unwrap().contains_key(&base), "unregistered on drop");
    }
}
