//! Checks on a library file before anything copies it or hands it to the
//! dynamic loader: a FIFO would block `open`, `/dev/zero` would never end,
//! and a truncated ELF file makes `dlopen` die of SIGBUS. Only a regular
//! file, opened without blocking, no larger than a limit, whose ELF headers
//! say it is a shared library for this machine and whose segments all lie
//! inside the file, gets through. Only the headers are read.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use object::elf::{FileHeader64, ET_DYN, PT_DYNAMIC, PT_LOAD};
use object::read::elf::{FileHeader, ProgramHeader};
use object::{Endianness, ReadCache};

/// The ELF machine this host runs on (0: not checked).
const HOST_MACHINE: u16 = if cfg!(target_arch = "x86_64") {
    object::elf::EM_X86_64
} else if cfg!(target_arch = "aarch64") {
    object::elf::EM_AARCH64
} else {
    0
};

/// What is wrong with a would-be library file.
#[derive(Debug)]
pub enum FileProblem {
    /// It cannot be opened or read.
    Unreadable(io::Error),
    /// It is not a regular file (a FIFO, a device, a folder, …).
    NotRegular(&'static str),
    /// It is larger than the limit.
    TooLarge {
        /// Its size.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// It has no ELF header.
    NotElf,
    /// Its ELF header says it is no shared library for this machine.
    WrongKind(String),
    /// Its headers point past its end.
    Truncated {
        /// How long its headers say it is, at least.
        needed: u64,
        /// How long it is.
        len: u64,
    },
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::Unreadable(e) => write!(f, "cannot read it: {e}"),
            FileProblem::NotRegular(kind) => write!(f, "it is {kind}, not a library file; name the .so file itself"),
            FileProblem::TooLarge { len, limit } => write!(
                f,
                "it is {len} bytes, over the {limit}-byte limit; raise --max-library-size if it is really a library"
            ),
            FileProblem::NotElf => write!(f, "it is not a shared library (no ELF header); build the plugin with crate-type = [\"cdylib\"]"),
            FileProblem::WrongKind(what) => write!(f, "{what}"),
            FileProblem::Truncated { needed, len } => write!(
                f,
                "the file is truncated or damaged: its headers need at least {needed} bytes, it has {len}; build or copy it again"
            ),
        }
    }
}

/// Opens `path` for reading without blocking (a FIFO or a device would
/// otherwise hang `open`) and checks it is a regular file of at most
/// `limit` bytes.
pub fn open_regular(path: &Path, limit: u64) -> Result<(File, u64), FileProblem> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(FileProblem::Unreadable)?;
    let meta = file.metadata().map_err(FileProblem::Unreadable)?;
    let kind = meta.file_type();
    let not_regular = if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_dir() {
        Some("a folder")
    } else if kind.is_socket() {
        Some("a socket")
    } else if !kind.is_file() {
        Some("not a regular file")
    } else {
        None
    };
    if let Some(kind) = not_regular {
        return Err(FileProblem::NotRegular(kind));
    }
    if meta.len() > limit {
        return Err(FileProblem::TooLarge { len: meta.len(), limit });
    }
    Ok((file, meta.len()))
}

/// Checks that `file` (`len` bytes) is a complete ELF shared library for
/// this machine, reading only its headers.
pub fn check_elf(file: &File, len: u64) -> Result<(), FileProblem> {
    let cache = ReadCache::new(file);
    let mut magic = [0u8; 4];
    let start = object::ReadRef::read_bytes_at(&cache, 0, 4).map_err(|()| FileProblem::NotElf)?;
    magic.copy_from_slice(start);
    if &magic != b"\x7fELF" {
        return Err(FileProblem::NotElf);
    }
    let header = FileHeader64::<Endianness>::parse(&cache)
        .map_err(|e| FileProblem::WrongKind(format!("it is not a 64-bit ELF library ({e})")))?;
    let endian = header
        .endian()
        .map_err(|e| FileProblem::WrongKind(format!("its ELF header is invalid ({e})")))?;
    if header.e_type(endian) != ET_DYN {
        return Err(FileProblem::WrongKind(
            "it is an ELF file but not a shared library (an executable or object file?); build the plugin with crate-type = [\"cdylib\"]"
                .to_owned(),
        ));
    }
    let machine = header.e_machine(endian);
    if HOST_MACHINE != 0 && machine != HOST_MACHINE {
        return Err(FileProblem::WrongKind(format!(
            "it is built for another CPU (ELF machine {machine}); build it for this machine"
        )));
    }
    let truncated = |needed: u64| FileProblem::Truncated { needed, len };
    let phdrs_end = header.e_phoff(endian) + u64::from(header.e_phnum(endian)) * u64::from(header.e_phentsize(endian));
    if phdrs_end > len {
        return Err(truncated(phdrs_end));
    }
    let segments = header
        .program_headers(endian, &cache)
        .map_err(|_| truncated(phdrs_end))?;
    for segment in segments {
        if matches!(segment.p_type(endian), PT_LOAD | PT_DYNAMIC) {
            let end = segment.p_offset(endian).saturating_add(segment.p_filesz(endian));
            if end > len {
                return Err(truncated(end));
            }
        }
    }
    let sections_end =
        header.e_shoff(endian) + u64::from(header.e_shnum(endian)) * u64::from(header.e_shentsize(endian));
    if sections_end > len {
        return Err(truncated(sections_end));
    }
    Ok(())
}

/// [`open_regular`] then [`check_elf`].
pub fn inspect(path: &Path, limit: u64) -> Result<File, FileProblem> {
    let (file, len) = open_regular(path, limit)?;
    check_elf(&file, len)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn our_own_library() -> std::path::PathBuf {
        // Any shared library this process has mapped will do: libc's.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let path = maps
            .lines()
            .filter_map(|line| line.split_whitespace().nth(5))
            .find(|path| path.contains("libc.so") || path.contains("libc-"))
            .expect("libc is mapped");
        path.into()
    }

    #[test]
    fn a_real_library_passes_and_truncated_copies_do_not() {
        let library = our_own_library();
        inspect(&library, u64::MAX).unwrap();
        let bytes = std::fs::read(&library).unwrap();
        let dir = std::env::temp_dir().join(format!("library-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for cut in [4usize, 64, 4096, 16 << 10, 64 << 10, bytes.len() - 1] {
            let copy = dir.join(format!("cut-{cut}.so"));
            std::fs::write(&copy, &bytes[..cut.min(bytes.len())]).unwrap();
            let problem = inspect(&copy, u64::MAX).unwrap_err();
            assert!(
                matches!(problem, FileProblem::Truncated { .. } | FileProblem::WrongKind(_)),
                "{cut}: {problem}"
            );
        }
        let small = dir.join("small.so");
        std::fs::write(&small, &bytes).unwrap();
        assert!(matches!(inspect(&small, 100), Err(FileProblem::TooLarge { .. })));
        std::fs::write(&small, b"#!/bin/sh\n").unwrap();
        assert!(matches!(inspect(&small, u64::MAX), Err(FileProblem::NotElf)));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn fifos_devices_and_folders_are_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("library-file-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("lib.so");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            inspect(&fifo, u64::MAX),
            Err(FileProblem::NotRegular("a FIFO"))
        ));
        assert!(matches!(
            inspect(Path::new("/dev/zero"), u64::MAX),
            Err(FileProblem::NotRegular("a character device"))
        ));
        assert!(matches!(
            inspect(&dir, u64::MAX),
            Err(FileProblem::NotRegular("a folder"))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
