//! The running hash over the log's lines, and the writer-side [`Tracker`]
//! that feeds it and takes [`Cut`]s.

use super::files::FileId;
use super::key::Hash32;
use super::record::{Why, MAX_FP_LINES};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// One step of the running hash: `SHA-256(hash || line)`, `line` with its
/// `\n`. Public so tools and tests can recompute a chain.
pub fn next_hash(hash: &Hash32, line: &[u8]) -> Hash32 {
    let mut h = Sha256::new();
    h.update(hash);
    h.update(line);
    h.finalize().into()
}

/// A line's fingerprint in the `fp` field: its CRC-32.
pub fn fingerprint(line: &[u8]) -> u32 {
    crc32fast::hash(line)
}

/// The running hash chain and the current line's fingerprint.
#[derive(Clone)]
pub(super) struct Chain {
    /// The hash after the last complete line.
    pub(super) hash: Hash32,
    /// SHA-256 seeded with `hash`, fed the current line so far.
    line: Sha256,
    /// CRC-32 of the current line so far.
    crc: crc32fast::Hasher,
}

impl Chain {
    pub(super) fn new(hash: Hash32) -> Chain {
        let mut line = Sha256::new();
        line.update(hash);
        Chain {
            hash,
            line,
            crc: crc32fast::Hasher::new(),
        }
    }

    /// Feeds part of the current line (no `\n` inside except at the end).
    fn update(&mut self, bytes: &[u8]) {
        self.line.update(bytes);
        self.crc.update(bytes);
    }

    /// Ends the current line; returns its fingerprint.
    fn end_line(&mut self) -> u32 {
        self.hash = self.line.finalize_reset().into();
        self.line.update(self.hash);
        std::mem::take(&mut self.crc).finalize()
    }

    /// Hashes one whole line and returns its fingerprint.
    pub(super) fn line(&mut self, line: &[u8]) -> u32 {
        self.update(line);
        self.end_line()
    }
}

/// One file of the chain, as the writer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Segment {
    /// Position in the chain: 0 for the first file, +1 at each rotation.
    pub fileno: u64,
    /// The log path it was opened at.
    pub path: PathBuf,
    /// Its identity, to recognise it after a rename.
    pub id: FileId,
    /// Bytes it already held when opened, which no seal covers.
    pub skip: u64,
}

/// A snapshot taken under the writer's mutex, to be sealed outside it.
#[derive(Debug, Clone)]
pub struct Cut {
    /// Cut number, so the sealer can insist on order.
    pub(super) n: u64,
    /// The file it covers.
    pub(super) seg: Arc<Segment>,
    /// Why it is being sealed.
    pub(super) why: Why,
    /// Bytes of the file covered (complete lines only).
    pub(super) len: u64,
    /// Lines of the file covered.
    pub(super) lines: u64,
    /// Running hash after them.
    pub(super) hash: Hash32,
    /// Fingerprints of the lines since the previous cut (None if too many).
    pub(super) fps: Option<Vec<u32>>,
}

/// The writer-side half: hashes appended bytes and takes cuts. Cheap, no
/// I/O; meant to live inside the audit writer's mutex.
pub struct Tracker {
    /// The file being written.
    pub(super) seg: Arc<Segment>,
    /// Bytes of complete lines, from the file's start (including `skip`).
    pub(super) len: u64,
    /// Complete lines in the file (after `skip`).
    pub(super) lines: u64,
    /// Bytes of the current, unfinished line.
    pub(super) partial: u64,
    /// The hash chain.
    pub(super) chain: Chain,
    /// Lines in the file at the last cut.
    pub(super) cut_lines: u64,
    /// Fingerprints of lines since the last cut, up to [`MAX_FP_LINES`].
    pub(super) fps: Vec<u32>,
    /// More lines than [`MAX_FP_LINES`] since the last cut.
    pub(super) fps_overflow: bool,
    /// Number of the next cut.
    pub(super) next_cut: u64,
    /// Cuts taken by [`Tracker::reopened`], waiting for the next `cut`.
    pub(super) boundary: Vec<Cut>,
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("seg", &self.seg)
            .field("len", &self.len)
            .field("lines", &self.lines)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    pub(super) fn new(
        seg: Arc<Segment>,
        len: u64,
        lines: u64,
        hash: Hash32,
        next_cut: u64,
    ) -> Tracker {
        Tracker {
            seg,
            len,
            lines,
            partial: 0,
            chain: Chain::new(hash),
            cut_lines: lines,
            fps: Vec::new(),
            fps_overflow: false,
            next_cut,
            boundary: Vec::new(),
        }
    }

    /// Hashes bytes just appended to the log, in file order. Call it with
    /// exactly what was written, under the same lock as the write.
    pub fn observe(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            let (line, rest) = bytes.split_at(end + 1);
            self.chain.update(line);
            let fp = self.chain.end_line();
            if self.fps.len() < MAX_FP_LINES {
                self.fps.push(fp);
            } else {
                self.fps_overflow = true;
            }
            self.len += self.partial + line.len() as u64;
            self.lines += 1;
            self.partial = 0;
            bytes = rest;
        }
        if !bytes.is_empty() {
            self.chain.update(bytes);
            self.partial += bytes.len() as u64;
        }
    }

    /// Whether lines were written since the last cut.
    pub(super) fn has_new_lines(&self) -> bool {
        self.lines > self.cut_lines
    }

    pub(super) fn take_cut(&mut self, why: Why) -> Cut {
        let fps = std::mem::take(&mut self.fps);
        let cut = Cut {
            n: self.next_cut,
            seg: Arc::clone(&self.seg),
            why,
            len: self.len,
            lines: self.lines,
            hash: self.chain.hash,
            fps: (!self.fps_overflow).then_some(fps),
        };
        self.fps_overflow = false;
        self.next_cut += 1;
        self.cut_lines = self.lines;
        cut
    }

    /// The periodic cut: any boundary cuts from [`Tracker::reopened`], then
    /// one for the lines written since the last cut, if there are any.
    pub fn cut(&mut self) -> Vec<Cut> {
        let mut cuts = std::mem::take(&mut self.boundary);
        if self.has_new_lines() {
            cuts.push(self.take_cut(Why::Interval));
        }
        cuts
    }

    /// The heartbeat cut: like [`Tracker::cut`], but always one cut, a
    /// heartbeat when nothing new was written since the last cut.
    pub fn beat(&mut self) -> Vec<Cut> {
        let mut cuts = std::mem::take(&mut self.boundary);
        let why = if self.has_new_lines() {
            Why::Interval
        } else {
            Why::Beat
        };
        cuts.push(self.take_cut(why));
        cuts
    }

    /// The final cut at shutdown: always one seal, even with no new lines,
    /// so the chain records a clean stop.
    pub fn shutdown(&mut self) -> Vec<Cut> {
        let mut cuts = std::mem::take(&mut self.boundary);
        cuts.push(self.take_cut(Why::Shutdown));
        cuts
    }

    /// The writer reopened the log path (SIGHUP) and now writes to the file
    /// `id`, which held `size` bytes when opened. The same file (nothing was
    /// rotated) gets a `reopen` seal; another file ends this one with a
    /// `rotate` seal and becomes the next file of the chain, its first
    /// `size` bytes not sealed (normally 0). The cuts are handed out by the
    /// next [`Tracker::cut`].
    pub fn reopened(&mut self, id: FileId, size: u64) {
        if id == self.seg.id && size == self.len + self.partial {
            let cut = self.take_cut(Why::Reopen);
            self.boundary.push(cut);
            return;
        }
        let cut = self.take_cut(Why::Rotate);
        self.boundary.push(cut);
        self.seg = Arc::new(Segment {
            fileno: self.seg.fileno + 1,
            path: self.seg.path.clone(),
            id,
            skip: size,
        });
        self.len = size;
        self.lines = 0;
        self.cut_lines = 0;
        self.partial = 0;
        // An unfinished line of the old file stays there, unsealed.
        self.chain = Chain::new(self.chain.hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::seal::key::ZERO;

    #[test]
    fn the_running_hash_is_the_documented_line_chain_whatever_the_chunks() {
        let text = b"one\ntwo two\n\nthree\n";
        let mut expected = ZERO;
        for line in [&b"one\n"[..], b"two two\n", b"\n", b"three\n"] {
            let mut h = Sha256::new();
            h.update(expected);
            h.update(line);
            expected = h.finalize().into();
        }
        let seg = Arc::new(Segment {
            fileno: 0,
            path: "x".into(),
            id: FileId { dev: 1, ino: 1 },
            skip: 0,
        });
        let mut whole = Tracker::new(Arc::clone(&seg), 0, 0, ZERO, 0);
        whole.observe(text);
        let mut bytewise = Tracker::new(seg, 0, 0, ZERO, 0);
        for b in text {
            bytewise.observe(std::slice::from_ref(b));
        }
        let a = whole.cut().pop().unwrap();
        let b = bytewise.cut().pop().unwrap();
        assert_eq!(a.hash, expected);
        assert_eq!(b.hash, expected);
        assert_eq!((a.len, a.lines), (text.len() as u64, 4));
        assert_eq!((b.len, b.lines), (a.len, a.lines));
        assert_eq!(a.fps, b.fps);
        assert_eq!(a.fps.unwrap()[0], crc32fast::hash(b"one\n"));
    }

    #[test]
    fn a_partial_line_is_not_sealed_until_it_ends_and_cuts_only_come_with_new_lines() {
        let seg = Arc::new(Segment {
            fileno: 0,
            path: "x".into(),
            id: FileId { dev: 1, ino: 1 },
            skip: 0,
        });
        let mut t = Tracker::new(seg, 0, 0, ZERO, 0);
        assert!(t.cut().is_empty());
        t.observe(b"half");
        assert!(t.cut().is_empty());
        t.observe(b" line\nnext");
        let cut = t.cut().pop().unwrap();
        assert_eq!((cut.len, cut.lines, cut.n), (10, 1, 0));
        assert!(t.cut().is_empty());
        let last = t.shutdown();
        assert_eq!(last.len(), 1);
        assert_eq!(
            (last[0].why, last[0].lines, last[0].n),
            (Why::Shutdown, 1, 1)
        );
        // A heartbeat cut comes even with nothing new; with new lines it is
        // an interval cut.
        assert_eq!(t.beat()[0].why, Why::Beat);
        t.observe(b"x\n");
        assert_eq!(t.beat()[0].why, Why::Interval);
    }

    #[test]
    fn reopening_the_same_file_continues_and_a_new_file_starts_the_next_fileno() {
        let id = FileId { dev: 1, ino: 1 };
        let seg = Arc::new(Segment {
            fileno: 0,
            path: "x".into(),
            id,
            skip: 0,
        });
        let mut t = Tracker::new(seg, 0, 0, ZERO, 0);
        t.observe(b"a\n");
        t.reopened(id, 2);
        t.observe(b"b\n");
        let cuts = t.cut();
        assert_eq!(cuts.len(), 2);
        assert_eq!((cuts[0].why, cuts[0].lines), (Why::Reopen, 1));
        assert_eq!(
            (cuts[1].why, cuts[1].lines, cuts[1].seg.fileno),
            (Why::Interval, 2, 0)
        );
        let h = cuts[1].hash;
        t.reopened(FileId { dev: 1, ino: 2 }, 5);
        t.observe(b"c\n");
        let cuts = t.cut();
        assert_eq!(
            (cuts[0].why, cuts[0].lines, cuts[0].seg.fileno),
            (Why::Rotate, 2, 0)
        );
        assert_eq!(cuts[1].seg.fileno, 1);
        assert_eq!(cuts[1].seg.skip, 5);
        assert_eq!((cuts[1].len, cuts[1].lines), (7, 1));
        // The running hash carries on across files.
        let mut chain = Chain::new(h);
        chain.line(b"c\n");
        assert_eq!(cuts[1].hash, chain.hash);
    }
}
