//! Files on disk: identities that survive renames, the sidecar's path and
//! text, durable renames.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A file's identity on this machine, to tell "the same file reopened" from
/// "a new file at the same path" (rotation) without trusting names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    /// The device holding the file.
    pub dev: u64,
    /// Its inode number on that device.
    pub ino: u64,
}

impl FileId {
    /// The identity of an open file.
    ///
    /// # Errors
    ///
    /// The I/O error of `fstat`.
    pub fn of(file: &File) -> io::Result<FileId> {
        Ok(FileId::from_meta(&file.metadata()?))
    }

    pub(super) fn from_meta(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// The identity of the file at `path`, or `None` if there is none.
    pub(super) fn at(path: &Path) -> io::Result<Option<FileId>> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) => Ok(Some(FileId::from_meta(&meta))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The sidecar path of a log: `<log>.seal`.
pub fn seal_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".seal");
    PathBuf::from(name)
}

/// Overwrites a (now unlinked) file's bytes with zeros and syncs them.
pub(super) fn wipe(file: &mut File) -> io::Result<()> {
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(0))?;
    let zeros = [0u8; 4096];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_data()
}

/// fsyncs the directory holding `path`, so a rename or create in it is durable.
pub(super) fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// The first entry of `dir` that is the file `id`, if any.
pub(super) fn find_by_id(dir: &Path, id: FileId) -> io::Result<Option<PathBuf>> {
    use std::os::unix::fs::DirEntryExt;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.ino() != id.ino {
            continue;
        }
        if let Ok(meta) = std::fs::symlink_metadata(entry.path()) {
            if FileId::from_meta(&meta) == id {
                return Ok(Some(entry.path()));
            }
        }
    }
    Ok(None)
}

pub(super) fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Reads a sidecar: its complete lines and any torn tail (bytes after the
/// last newline).
pub(super) fn read_sidecar(path: &Path) -> io::Result<Option<(Vec<String>, Vec<u8>)>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let cut = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let (complete, torn) = bytes.split_at(cut);
    let lines = String::from_utf8_lossy(complete)
        .lines()
        .map(str::to_owned)
        .collect();
    Ok(Some((lines, torn.to_vec())))
}
