//! Files being served: small ones read into memory, large ones kept open
//! and sent either with `sendfile` or read in chunks, never by reading a
//! mapping in user space.
//!
//! A large file is mapped only as a *handle*: on a cleartext HTTP/1
//! connection its bytes travel through hyper as slices of a mapping, and
//! the socket layer (`server::zero_copy`) recognises them through the
//! registry here and has the kernel send them with `sendfile(2)` from the
//! page cache. Nothing reads the mapping: a file cut short under the
//! server would make such a read fault (SIGBUS) and kill the process, so
//! every transport that needs the bytes themselves (TLS, HTTP/2, CGI)
//! gets them with `pread` instead, and a file found shorter than promised
//! ends its response early, with an error.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;

/// Files up to this size are read into memory (a copy costs less than a
/// mapping and a `sendfile` of their own); larger ones are kept open.
pub const READ_UP_TO: u64 = 64 << 10;

/// The most bytes read at once for a transport that needs them.
pub const READ_CHUNK: usize = 64 << 10;

/// Slices shorter than this are written as usual (a registry lookup and a
/// syscall of their own would cost more than the copy the kernel makes).
const MIN_SENDFILE: usize = 16 << 10;

/// Live mappings by start address: their length and the file's descriptor.
static MAPPINGS: RwLock<BTreeMap<usize, (usize, RawFd)>> = RwLock::new(BTreeMap::new());

/// A file's bytes as the server holds them.
#[derive(Clone, Debug)]
pub enum FileContent {
    /// A small file, read whole.
    InMemory(Bytes),
    /// A large file, kept open.
    Open(Arc<OpenFile>),
}

impl FileContent {
    /// `file` (`len` bytes): read whole up to [`READ_UP_TO`], else kept open.
    pub fn of(file: File, len: u64) -> io::Result<FileContent> {
        if len <= READ_UP_TO {
            let mut bytes = vec![0; len as usize];
            file.read_exact_at(&mut bytes, 0)?;
            return Ok(FileContent::InMemory(bytes.into()));
        }
        Ok(FileContent::Open(Arc::new(OpenFile::new(file, len))))
    }

    /// Bytes of memory this holds (an open file's are the page cache's).
    pub fn memory(&self) -> usize {
        match self {
            FileContent::InMemory(bytes) => bytes.len(),
            FileContent::Open(_) => 0,
        }
    }
}

/// A large file being served, and its mapping once a socket asked for one.
#[derive(Debug)]
pub struct OpenFile {
    file: File,
    len: u64,
    /// The whole file mapped: made on the first `sendfile`, then shared.
    mapping: OnceLock<Result<Bytes, String>>,
}

impl OpenFile {
    /// `file`, `len` bytes long when it was opened.
    pub fn new(file: File, len: u64) -> OpenFile {
        OpenFile {
            file,
            len,
            mapping: OnceLock::new(),
        }
    }

    /// The file's length when it was opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file was empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first `max` bytes of `range` (all of it, if shorter), read with
    /// `pread`; an error if the file ends before them (it shrank).
    pub fn read(&self, range: &Range<u64>, max: usize) -> io::Result<Vec<u8>> {
        let count = (range.end.saturating_sub(range.start)).min(max as u64) as usize;
        let mut bytes = vec![0; count];
        let mut filled = 0;
        while filled < count {
            match self.file.read_at(&mut bytes[filled..], range.start + filled as u64) {
                Ok(0) => return Err(shrank()),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(bytes)
    }

    /// `range` as a slice of the file's mapping, which only `sendfile`
    /// may consume (see the module's documentation).
    pub fn mapped(&self, range: Range<u64>) -> io::Result<Bytes> {
        let mapping = self
            .mapping
            .get_or_init(|| map_file(&self.file, self.len).map_err(|e| e.to_string()));
        match mapping {
            Ok(mapping) => Ok(mapping.slice(range.start as usize..range.end as usize)),
            Err(e) => Err(io::Error::other(e.clone())),
        }
    }
}

/// The error of a file that ended before the length it had when opened.
pub fn shrank() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while it was being sent")
}

/// A read-only shared mapping of a whole file, and its own descriptor.
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
        // SAFETY: `base` points at `len` mapped bytes until drop. This is
        // only the address range `Bytes` needs to hand out slices; the
        // module's rule is that no one reads through it.
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

/// The whole of `file` (`len` bytes) as [`Bytes`] that `ZeroCopy` (in
/// `server::zero_copy`) sends with `sendfile`.
fn map_file(file: &File, len: u64) -> io::Result<Bytes> {
    let len = usize::try_from(len).map_err(io::Error::other)?;
    if len == 0 {
        return Ok(Bytes::new());
    }
    let file = file.try_clone()?;
    // SAFETY: a new read-only shared mapping of our own open file; the
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

/// The file and offset behind `slice`, if it lies in a live mapping and is
/// worth a `sendfile` of its own.
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
        let path = std::env::temp_dir().join(format!("open-file-{}-{}", std::process::id(), bytes.len()));
        std::fs::File::create(&path).unwrap().write_all(bytes).unwrap();
        let file = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }

    #[test]
    fn slices_of_a_mapping_lead_back_to_the_file() {
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let open = OpenFile::new(temp_file(&content), content.len() as u64);
        let part = open.mapped(50_000..120_000).unwrap();
        let (_, offset) = file_of(&part).expect("a mapped slice");
        assert_eq!(offset, 50_000);
        assert!(
            file_of(&open.mapped(0..100).unwrap()).is_none(),
            "small slices are written as usual"
        );
        assert!(file_of(&content[..]).is_none(), "other memory is not a mapping");
        let base = part.as_ptr() as usize - 50_000;
        drop((open, part));
        assert!(!MAPPINGS.read().unwrap().contains_key(&base), "unregistered on drop");
    }

    #[test]
    fn reads_give_the_bytes_and_a_file_that_shrank_is_an_error() {
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 249) as u8).collect();
        let path = std::env::temp_dir().join(format!("open-file-shrinks-{}", std::process::id()));
        std::fs::write(&path, &content).unwrap();
        let open = OpenFile::new(File::open(&path).unwrap(), content.len() as u64);
        let first = open.read(&(1000..100_000), READ_CHUNK).unwrap();
        assert_eq!(&first[..], &content[1000..1000 + READ_CHUNK]);
        // Cut short in place, as `cp` over it or a log rotation do: the
        // server's read errs where a read of a mapping would kill it.
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(10_000)
            .unwrap();
        let cut = open.read(&(5000..100_000), READ_CHUNK).unwrap_err();
        assert_eq!(cut.kind(), io::ErrorKind::UnexpectedEof);
        std::fs::remove_file(path).unwrap();
        assert!(matches!(FileContent::of(temp_file(b"small"), 5).unwrap(), FileContent::InMemory(b) if b == "small"));
    }
}
