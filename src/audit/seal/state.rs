//! The state file: the current key and where the chain stands; `keygen`.

use super::chain::Segment;
use super::error::{io_err, SealError};
use super::fields::{number, Fields};
use super::files::{sync_dir, wipe, FileId};
use super::key::{Hash32, Key, Schedule, VerifyKey, ZERO};
use super::ratchet::Ratchet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use zeroize::Zeroizing;

/// First line of a state file.
const STATE_MAGIC: &str = "prime-audit state v2";

/// The persisted sealing state: everything needed to continue the chain.
pub(super) struct State {
    /// The key epochs (fixed at keygen).
    pub(super) schedule: Schedule,
    /// The key position after the last seal, and its keys.
    pub(super) ratchet: Ratchet,
    /// Number of the next seal.
    pub(super) next_seq: u64,
    /// SHA-256 of the last seal line (zeros before the first).
    pub(super) prev: Hash32,
    /// Running hash at the last seal.
    pub(super) hash: Hash32,
    /// The file of the last seal, if any.
    pub(super) seg: Option<Segment>,
    /// Bytes of that file sealed.
    pub(super) len: u64,
    /// Lines of that file sealed.
    pub(super) lines: u64,
    /// Identity of the sidecar holding (or about to hold) the last seal.
    pub(super) sidecar: Option<FileId>,
    /// The last seal line, so a crash before it reached the sidecar loses
    /// nothing (it is already MACed; it reveals no key).
    pub(super) last: Option<String>,
}

impl State {
    pub(super) fn fresh(seed: &Key, schedule: Schedule) -> State {
        State {
            schedule,
            ratchet: Ratchet::from_seed(seed),
            next_seq: 0,
            prev: ZERO,
            hash: ZERO,
            seg: None,
            len: 0,
            lines: 0,
            sidecar: None,
            last: None,
        }
    }

    pub(super) fn render(&self) -> Zeroizing<String> {
        // Sized up front: a growing String reallocates and frees its old
        // buffer, keys included, without zeroizing it.
        let room = 2048 + self.last.as_ref().map_or(0, String::len);
        let mut s = Zeroizing::new(String::with_capacity(room));
        let dash = || "-".to_owned();
        s.push_str(STATE_MAGIC);
        s.push('\n');
        s.push_str(&format!("start={}\n", self.schedule.start_ms));
        s.push_str(&format!("epoch={}\n", self.schedule.epoch_ms));
        s.push_str(&format!(
            "position={} {}\n",
            self.ratchet.epoch(),
            self.ratchet.sub()
        ));
        let (seal, next, outer) = self.ratchet.keys();
        for (name, key) in [
            ("seal_key=", seal),
            ("next_key=", next),
            ("outer_key=", outer),
        ] {
            s.push_str(name);
            Key::push_hex(key, &mut s);
            s.push('\n');
        }
        s.push_str(&format!("next={}\n", self.next_seq));
        s.push_str(&format!("prev={}\n", hex::encode(self.prev)));
        s.push_str(&format!("hash={}\n", hex::encode(self.hash)));
        match &self.seg {
            None => s.push_str("file=-\n"),
            Some(seg) => s.push_str(&format!(
                "file={} {} {} {} {}\n",
                seg.fileno,
                seg.id.dev,
                seg.id.ino,
                seg.skip,
                hex::encode(seg.path.as_os_str().as_bytes())
            )),
        }
        s.push_str(&format!("len={}\n", self.len));
        s.push_str(&format!("lines={}\n", self.lines));
        s.push_str(&format!(
            "sidecar={}\n",
            self.sidecar
                .map_or_else(dash, |id| format!("{} {}", id.dev, id.ino))
        ));
        s.push_str(&format!(
            "last={}\n",
            self.last.clone().unwrap_or_else(dash)
        ));
        s
    }

    pub(super) fn parse(text: &str) -> Result<State, String> {
        let mut f = Fields::lines(text);
        match f.raw() {
            Some(STATE_MAGIC) => {}
            Some("prime-audit state v1") => {
                return Err("it was made by an older prime-audit, before keys were bound to time: \
                     start a new chain (prime-audit keygen) and keep the old files to verify with the old prime-audit"
                    .into())
            }
            _ => return Err(format!("the first line is not `{STATE_MAGIC}`")),
        }
        let schedule = Schedule {
            start_ms: f.number("start")?,
            epoch_ms: f.number("epoch")?,
        };
        if schedule.epoch_ms == 0 {
            return Err("the epoch is 0".into());
        }
        let position = f.text("position")?;
        let (epoch, sub) = position.split_once(' ').ok_or("bad `position` line")?;
        let (epoch, sub) = (number(epoch, "position")?, number(sub, "position")?);
        let (seal, next, outer) = (
            f.text("seal_key")?,
            f.text("next_key")?,
            f.text("outer_key")?,
        );
        let ratchet = Ratchet::restore(epoch, sub, |s, n, o| {
            [(seal, s), (next, n), (outer, o)]
                .into_iter()
                .all(|(text, key)| hex::decode_to_slice(text, key).is_ok())
        })
        .ok_or("a key is not 64 hex digits")?;
        let next_seq = f.number("next")?;
        let prev = f.hash("prev")?;
        let hash = f.hash("hash")?;
        let seg = match f.text("file")? {
            "-" => None,
            text => Some(parse_segment(text)?),
        };
        let len = f.number("len")?;
        let lines = f.number("lines")?;
        let sidecar = match f.text("sidecar")? {
            "-" => None,
            text => {
                let (dev, ino) = text.split_once(' ').ok_or("bad `sidecar` line")?;
                Some(FileId {
                    dev: number(dev, "sidecar")?,
                    ino: number(ino, "sidecar")?,
                })
            }
        };
        let last = match f.text("last")? {
            "-" => None,
            line => Some(line.to_owned()),
        };
        if next_seq > 0 && (seg.is_none() || last.is_none() || sidecar.is_none()) {
            return Err("seals were made but the file, sidecar or last seal is missing".into());
        }
        Ok(State {
            schedule,
            ratchet,
            next_seq,
            prev,
            hash,
            seg,
            len,
            lines,
            sidecar,
            last,
        })
    }

    pub(super) fn load(path: &Path) -> Result<State, SealError> {
        let mut file = File::open(path).map_err(io_err("open the sealing state", path))?;
        let meta = file
            .metadata()
            .map_err(io_err("stat the sealing state", path))?;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(SealError::StatePermissions {
                path: path.to_path_buf(),
                mode: mode & 0o7777,
            });
        }
        // Sized up front so no reallocation leaves a copy of the key behind.
        let room = usize::try_from(meta.len()).unwrap_or(0) + 1;
        let mut text = Zeroizing::new(String::with_capacity(room));
        file.read_to_string(&mut text)
            .map_err(io_err("read the sealing state", path))?;
        State::parse(&text).map_err(|why| SealError::StateCorrupt {
            path: path.to_path_buf(),
            why,
        })
    }

    /// Replaces the state file atomically: temp file (0600) + fsync +
    /// rename + fsync of the directory; then overwrites the old file's bytes
    /// with zeros, so the old key does not linger in its blocks (best
    /// effort: copy-on-write file systems and SSDs may keep old blocks).
    pub(super) fn save(&self, path: &Path) -> Result<(), SealError> {
        let text = self.render();
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove the stale temporary state", &tmp)(e)),
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create the temporary state", &tmp))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io_err("write the temporary state", &tmp))?;
        drop(file);
        // Held open across the rename so its bytes can be wiped afterwards.
        let old = OpenOptions::new().write(true).open(path).ok();
        std::fs::rename(&tmp, path).map_err(io_err("replace the sealing state", path))?;
        sync_dir(path).map_err(io_err("sync the directory of", path))?;
        if let Some(mut old) = old {
            wipe(&mut old).map_err(io_err("wipe the previous sealing state", path))?;
        }
        Ok(())
    }
}

/// The `file=` line: `fileno dev ino skip hex(path)`.
fn parse_segment(text: &str) -> Result<Segment, String> {
    let parts: Vec<&str> = text.split(' ').collect();
    let [fileno, dev, ino, skip, path] = parts[..] else {
        return Err("the `file` line does not have 5 parts".into());
    };
    let path = hex::decode(path).map_err(|_| "the file path is not hex")?;
    Ok(Segment {
        fileno: number(fileno, "file")?,
        path: PathBuf::from(std::ffi::OsStr::from_bytes(&path)),
        id: FileId {
            dev: number(dev, "file")?,
            ino: number(ino, "file")?,
        },
        skip: number(skip, "file")?,
    })
}

/// The key schedule of the state at `path` (read without locking it).
///
/// # Errors
///
/// The state cannot be read, or is not a sealing state.
pub fn schedule_of(path: &Path) -> Result<Schedule, SealError> {
    Ok(State::load(path)?.schedule)
}

/// Writes the initial state (no seals; keys from a fresh random seed `K_0`,
/// epochs of `epoch` from `start`) to `path`, mode 0600, and returns the
/// verification key to print.
///
/// # Errors
///
/// [`SealError::StateExists`] if `path` exists (never overwritten), an I/O
/// error, or no randomness.
pub fn keygen(path: &Path, epoch: Duration, start: SystemTime) -> Result<VerifyKey, SealError> {
    let seed = Key::generate().map_err(SealError::Random)?;
    let schedule = Schedule::new(start, epoch);
    let state = State::fresh(&seed, schedule);
    let text = state.render();
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(SealError::StateExists(path.to_path_buf()))
        }
        Err(e) => return Err(io_err("create the sealing state", path)(e)),
    };
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err("write the sealing state", path))?;
    sync_dir(path).map_err(io_err("sync the directory of", path))?;
    Ok(VerifyKey { seed, schedule })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::seal::testing::sample_record;

    #[test]
    fn state_files_round_trip_are_0600_and_refuse_loose_permissions_or_junk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let epoch = Duration::from_millis(250);
        let start = std::time::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let key = keygen(&path, epoch, start).unwrap();
        assert_eq!(key.schedule, Schedule::new(start, epoch));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(matches!(
            keygen(&path, epoch, start),
            Err(SealError::StateExists(_))
        ));
        let state = State::load(&path).unwrap();
        let fresh = Ratchet::from_seed(&key.seed);
        assert_eq!(state.ratchet.keys(), fresh.keys());
        assert_eq!((state.next_seq, state.schedule), (0, key.schedule));
        let mut ratchet = fresh.duplicate();
        ratchet.advance_to(5000);
        let mut next = State {
            ratchet,
            next_seq: 3,
            seg: Some(Segment {
                fileno: 1,
                path: "dir with space/log".into(),
                id: FileId { dev: 9, ino: 10 },
                skip: 4,
            }),
            len: 40,
            lines: 2,
            sidecar: Some(FileId { dev: 9, ino: 11 }),
            last: Some(sample_record().to_line()),
            ..State::fresh(&key.seed, key.schedule)
        };
        next.hash = [3; 32];
        next.save(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let back = State::load(&path).unwrap();
        assert_eq!(*back.render(), *next.render());
        assert_eq!((back.ratchet.epoch(), back.ratchet.sub()), (5000, 0));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            State::load(&path),
            Err(SealError::StatePermissions { .. })
        ));
        for junk in [
            "prime-audit state v2\nstart=x\n",
            "prime-audit state v1\nnext=0\n",
        ] {
            std::fs::write(&path, junk).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert!(matches!(
                State::load(&path),
                Err(SealError::StateCorrupt { .. })
            ));
        }
    }
}
