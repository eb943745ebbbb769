//! Line framing, pure: the bytes a connection has received and not yet
//! answered, and the arithmetic that splits them into lines. No socket
//! here, so it is unit-tested against a model and fuzzed
//! (`fuzz/fuzz_targets/conn_framing.rs`) with any read sizes and limits;
//! [`Connection`](super::connection::Connection) owns one and feeds it
//! from `recv`.
//!
//! A line ends at `\n`; if the client half-closes, the bytes it sent are
//! the last line. At most `max_line_bytes` are kept for one line: a longer
//! line is reported as [`Line::TooLong`] and the connection reads nothing
//! more, so the input buffer, bytes and allocation alike, never exceeds
//! `max_line_bytes` plus one read ([`READ_CHUNK`]) whatever the client
//! sends.

use crate::net::proxy::ProxyError;
#[cfg(doc)]
use crate::net::Connection;

/// Bytes asked of the kernel per `recv`.
pub const READ_CHUNK: usize = 4096;

thread_local! {
    /// Where each thread's reads land before the bytes that arrived are
    /// copied into the connection's buffer.
    static SCRATCH: std::cell::RefCell<[u8; READ_CHUNK]> =
        const { std::cell::RefCell::new([0; READ_CHUNK]) };
}

/// One line taken from a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A line, without its `\n`; the client may have ended it with EOF
    /// instead, which the protocol treats the same.
    Complete(Vec<u8>),
    /// The line passed the limit; these are its first `max_line_bytes + 1`
    /// bytes. The rest is never read.
    TooLong(Vec<u8>),
}

/// Where a connection stands, as far as its input goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// A line (or an over-long one) is buffered: worth a worker.
    Line,
    /// Part of a line is buffered; the rest has not arrived.
    Partial,
    /// Nothing is buffered and the client is still connected.
    Empty,
    /// The client closed and nothing is left to answer.
    Closed,
    /// The PROXY header is missing or malformed: close without a reply.
    Rejected(ProxyError),
}

/// What one non-blocking read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// This many bytes were added to the buffer.
    Data(usize),
    /// Nothing has arrived.
    WouldBlock,
    /// The client half-closed (or the buffer is full: no more reading).
    Eof,
}

/// The input side of one connection's line framing, without the socket:
/// the bytes received and not yet taken as lines, and the arithmetic that
/// splits them. [`Connection`] owns one and feeds it from `recv`; being
/// pure, it is unit-tested here and fuzzed against a simple model
/// (`fuzz/fuzz_targets/conn_framing.rs`) with any read sizes and limits.
///
/// The caller reads (with [`LineBuffer::read_with`]) only while
/// [`LineBuffer::readiness`] is [`Readiness::Partial`] or
/// [`Readiness::Empty`], as [`Connection::fill_until_ready`] does; then
/// the buffer never holds, nor allocates, more than `max_line_bytes` plus
/// [`READ_CHUNK`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineBuffer {
    /// Bytes received and not yet returned as lines.
    input: Vec<u8>,
    /// Where in `input` the newline search resumes (everything before it
    /// is known to hold no `\n`).
    scanned: usize,
    /// Longest line accepted, newline not counted.
    max_line_bytes: usize,
    /// The client has half-closed; no more input will come.
    eof: bool,
    /// No further line will be returned (an over-long line ended reading).
    stopped: bool,
}

impl LineBuffer {
    /// An empty buffer for lines of at most `max_line_bytes`.
    pub fn new(max_line_bytes: usize) -> LineBuffer {
        LineBuffer {
            input: Vec::new(),
            scanned: 0,
            max_line_bytes,
            eof: false,
            stopped: false,
        }
    }

    /// Bytes buffered.
    pub fn len(&self) -> usize {
        self.input.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    /// Bytes allocated for the buffer (for the memory bound).
    pub fn capacity(&self) -> usize {
        self.input.capacity()
    }

    /// The buffered bytes (a PROXY header is parsed from them).
    pub fn bytes(&self) -> &[u8] {
        &self.input
    }

    /// Whether the client has half-closed.
    pub fn eof(&self) -> bool {
        self.eof
    }

    /// Whether an over-long line ended reading for good.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Whether reading more could change anything: the client has not
    /// closed and no over-long line ended reading.
    pub fn wants_input(&self) -> bool {
        !self.eof && !self.stopped
    }

    /// Whether no further line will ever come out: reading ended on an
    /// over-long line, or the client closed and every line is taken.
    pub fn at_eof(&self) -> bool {
        self.stopped || (self.eof && self.input.is_empty())
    }

    /// Lets `read` write up to [`READ_CHUNK`] bytes after the buffered
    /// ones (as `recv` does) and keeps the `n` it reports; `Ok(0)` means
    /// the client closed. Returns what `read` returned.
    ///
    /// # Errors
    ///
    /// Whatever `read` returns; nothing is added then.
    pub fn read_with<E>(
        &mut self,
        read: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        // Read into a per-thread scratch buffer and keep only what arrived:
        // a connection that sends `17\n` costs a few bytes, not a zeroed
        // 4 KiB buffer (waiting connections are many, reads are per request).
        SCRATCH.with_borrow_mut(|scratch| {
            let result = read(&mut scratch[..]);
            let n = match &result {
                Ok(n) => (*n).min(READ_CHUNK),
                Err(_) => 0,
            };
            if n > 0 {
                let start = self.input.len();
                if self.input.capacity() - start < n {
                    // Grow geometrically, as Vec does, but never past one
                    // line plus one read: `Vec::reserve` alone could double
                    // a buffer of `max_line_bytes` to twice the bound.
                    let bound = self.max_line_bytes.saturating_add(READ_CHUNK);
                    let target = self
                        .input
                        .capacity()
                        .saturating_mul(2)
                        .min(bound)
                        .max(start + n);
                    self.input.reserve_exact(target - start);
                }
                self.input.extend_from_slice(&scratch[..n]);
            }
            if matches!(result, Ok(0)) {
                self.eof = true;
            }
            result
        })
    }

    /// Drops the first `n` buffered bytes (a PROXY header).
    pub fn consume(&mut self, n: usize) {
        self.input.drain(..n.min(self.input.len()));
        self.scanned = 0;
    }

    /// Where the input stands (never [`Readiness::Rejected`]: that is
    /// the PROXY header's, decided by [`Connection::readiness`]).
    pub fn readiness(&mut self) -> Readiness {
        if self.stopped {
            return Readiness::Closed;
        }
        if self.has_line() {
            return Readiness::Line;
        }
        match (self.input.is_empty(), self.eof) {
            (true, true) => Readiness::Closed,
            (true, false) => Readiness::Empty,
            (false, true) => Readiness::Line,
            (false, false) => Readiness::Partial,
        }
    }

    /// Whether a complete (or over-long) line is buffered; remembers how
    /// far it searched.
    fn has_line(&mut self) -> bool {
        let limit = self.max_line_bytes;
        let search_end = self.input.len().min(limit + 1);
        let from = self.scanned.min(search_end);
        if self.input[from..search_end].contains(&b'\n') {
            return true;
        }
        self.scanned = search_end;
        self.input.len() > limit
    }

    /// How many lines [`LineBuffer::split_line`] would return now, counting
    /// at most `at_most`: a rate-limited turn takes no more tokens than it
    /// can use.
    pub fn lines_ready(&self, at_most: usize) -> usize {
        if self.stopped {
            return 0;
        }
        let limit = self.max_line_bytes;
        let mut rest = &self.input[..];
        let mut count = 0;
        while count < at_most {
            let window = &rest[..rest.len().min(limit.saturating_add(1))];
            if let Some(at) = window.iter().position(|&b| b == b'\n') {
                count += 1;
                rest = &rest[at + 1..];
            } else {
                if rest.len() > limit || (self.eof && !rest.is_empty()) {
                    count += 1;
                }
                break;
            }
        }
        count
    }

    /// Splits the next complete, final or over-long line off the buffer.
    pub fn split_line(&mut self) -> Option<Line> {
        if self.stopped {
            return None;
        }
        let limit = self.max_line_bytes;
        let search_end = self.input.len().min(limit + 1);
        let from = self.scanned.min(search_end);
        let line = if let Some(offset) = self.input[from..search_end]
            .iter()
            .position(|&b| b == b'\n')
        {
            let mut line: Vec<u8> = self.input.drain(..=from + offset).collect();
            line.pop();
            Line::Complete(line)
        } else if self.input.len() > limit {
            self.input.truncate(limit + 1);
            // The rest of the line is never read: stop here for good.
            self.stopped = true;
            Line::TooLong(std::mem::take(&mut self.input))
        } else if self.eof && !self.input.is_empty() {
            Line::Complete(std::mem::take(&mut self.input))
        } else {
            self.scanned = search_end;
            return None;
        };
        self.scanned = 0;
        Some(line)
    }

    /// Gives back the buffer's memory when nothing is buffered.
    pub fn shrink(&mut self) {
        if self.input.is_empty() {
            self.input = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lets `buf` read up to one chunk of `pending`, as `recv` would from
    /// a kernel holding those bytes; returns how many it took.
    fn feed(buf: &mut LineBuffer, pending: &mut &[u8]) -> usize {
        let n = buf
            .read_with(|spare| -> Result<usize, ()> {
                let n = spare.len().min(pending.len());
                spare[..n].copy_from_slice(&pending[..n]);
                Ok(n)
            })
            .unwrap();
        *pending = &pending[n..];
        n
    }

    /// The lines `stream` holds under `limit`, by the rules of
    /// docs/protocol.md#one-request, said as simply as possible: split at each
    /// `\n`; a line longer than the limit is cut to `limit + 1` bytes and ends
    /// everything; at EOF the unterminated rest is a line.
    fn model(stream: &[u8], limit: usize, eof: bool) -> Vec<Line> {
        let mut lines = Vec::new();
        let mut rest = stream;
        loop {
            let window = &rest[..rest.len().min(limit + 1)];
            if let Some(at) = window.iter().position(|&b| b == b'\n') {
                lines.push(Line::Complete(rest[..at].to_vec()));
                rest = &rest[at + 1..];
            } else if rest.len() > limit {
                lines.push(Line::TooLong(rest[..=limit].to_vec()));
                return lines;
            } else {
                if eof && !rest.is_empty() {
                    lines.push(Line::Complete(rest.to_vec()));
                }
                return lines;
            }
        }
    }

    /// Delivers `stream` to a buffer in reads of at most `sizes` (cycled),
    /// reading only while no line is ready and taking every line that is,
    /// as the waiting room and the workers do; then EOF if `eof`.
    fn frame(stream: &[u8], limit: usize, sizes: &[usize], eof: bool) -> Vec<Line> {
        let mut buf = LineBuffer::new(limit);
        let mut lines = Vec::new();
        let mut pending = stream;
        let mut sizes = sizes.iter().cycle();
        loop {
            while let Some(line) = buf.split_line() {
                lines.push(line);
            }
            if !buf.wants_input() {
                return lines;
            }
            assert!(matches!(
                buf.readiness(),
                Readiness::Partial | Readiness::Empty
            ));
            if pending.is_empty() && !eof {
                return lines;
            }
            let size = *sizes.next().unwrap();
            let mut chunk = &pending[..pending.len().min(size)];
            let before = chunk.len();
            feed(&mut buf, &mut chunk);
            pending = &pending[before - chunk.len()..];
            assert!(buf.len() <= limit + READ_CHUNK, "{} buffered", buf.len());
            assert!(
                buf.capacity() <= limit + READ_CHUNK,
                "{} allocated",
                buf.capacity()
            );
        }
    }

    #[test]
    fn framing_matches_the_model_for_every_read_size() {
        let stream = b"17\n\n  4j \r\n123456789\n12345678\n1234567890\n5\n+7";
        for limit in [1, 2, 8, 9, 10, 64] {
            for size in 1..=stream.len() {
                for eof in [false, true] {
                    assert_eq!(
                        frame(stream, limit, &[size, 1, 3], eof),
                        model(stream, limit, eof),
                        "limit {limit}, reads of {size}, eof {eof}"
                    );
                }
            }
        }
    }

    #[test]
    fn lines_ready_counts_what_split_line_returns() {
        let stream = b"17\n\n  4j \r\n123456789\n12345678\n1234567890\n5\n+7";
        for limit in [1, 2, 8, 9, 10, 64] {
            for end in 0..=stream.len() {
                for eof in [false, true] {
                    let mut buf = LineBuffer::new(limit);
                    let mut pending = &stream[..end];
                    while !pending.is_empty() {
                        feed(&mut buf, &mut pending);
                    }
                    if eof {
                        feed(&mut buf, &mut pending);
                    }
                    let ready = buf.lines_ready(usize::MAX);
                    for at_most in 0..=ready + 1 {
                        assert_eq!(buf.lines_ready(at_most), ready.min(at_most));
                    }
                    let mut split = 0;
                    while buf.split_line().is_some() {
                        split += 1;
                    }
                    assert_eq!(ready, split, "limit {limit}, {end} bytes, eof {eof}");
                }
            }
        }
    }

    #[test]
    fn an_endless_line_is_bounded_by_the_limit_plus_one_read() {
        // The per-connection memory bound of
        // docs/operations.md#limits-and-failure-behaviour: max-line-bytes
        // + 4 KiB, allocation included, whatever the client sends.
        for limit in [1, 100, READ_CHUNK - 1, READ_CHUNK, 10_000, 65_536] {
            let flood = vec![b'7'; 1 << 20];
            let lines = frame(&flood, limit, &[usize::MAX], false);
            assert_eq!(
                lines,
                [Line::TooLong(vec![b'7'; limit + 1])],
                "limit {limit}"
            );
        }
    }

    #[test]
    fn a_line_of_the_limit_is_complete_and_one_more_byte_is_too_long() {
        // Ready as soon as the newline is in, wherever it falls within
        // the limit.
        for line in [&b"\n"[..], b"1\n", b"123\n", b"1234\n"] {
            let mut buf = LineBuffer::new(4);
            feed(&mut buf, &mut &line[..]);
            assert_eq!(buf.readiness(), Readiness::Line, "{line:?}");
        }
        let mut buf = LineBuffer::new(4);
        let mut pending: &[u8] = b"1234\n12345\n";
        feed(&mut buf, &mut pending);
        assert_eq!(buf.readiness(), Readiness::Line);
        assert_eq!(buf.split_line(), Some(Line::Complete(b"1234".to_vec())));
        assert_eq!(buf.readiness(), Readiness::Line);
        assert_eq!(buf.split_line(), Some(Line::TooLong(b"12345".to_vec())));
        assert!(buf.stopped() && buf.at_eof() && !buf.wants_input());
        assert_eq!(buf.readiness(), Readiness::Closed);
        assert_eq!(buf.split_line(), None);
        assert!(buf.is_empty());
    }

    #[test]
    fn readiness_says_where_the_input_stands() {
        let mut buf = LineBuffer::new(8);
        assert_eq!(buf.readiness(), Readiness::Empty);
        assert!(!buf.at_eof() && buf.wants_input());
        assert!(!buf.eof() && !buf.stopped() && buf.is_empty());
        let mut pending: &[u8] = b"12";
        feed(&mut buf, &mut pending);
        assert_eq!((buf.len(), buf.is_empty()), (2, false));
        assert_eq!(buf.readiness(), Readiness::Partial);
        assert_eq!(buf.split_line(), None);
        let mut pending: &[u8] = b"3\n4";
        feed(&mut buf, &mut pending);
        assert_eq!(buf.readiness(), Readiness::Line);
        assert_eq!(buf.split_line(), Some(Line::Complete(b"123".to_vec())));
        assert_eq!(buf.readiness(), Readiness::Partial);
        // EOF: the rest is the last line, then nothing.
        assert_eq!(feed(&mut buf, &mut &b""[..]), 0);
        assert!(buf.eof() && !buf.wants_input() && !buf.at_eof());
        assert_eq!(buf.readiness(), Readiness::Line);
        assert_eq!(buf.split_line(), Some(Line::Complete(b"4".to_vec())));
        assert!(buf.at_eof());
        assert_eq!(buf.readiness(), Readiness::Closed);
        assert_eq!(buf.split_line(), None);
    }

    #[test]
    fn the_newline_search_resumes_where_it_stopped() {
        // One byte at a time: the search must still find a newline that
        // arrives after many scans, and not miss one at the limit.
        let limit = 5;
        let mut buf = LineBuffer::new(limit);
        for &b in b"12345" {
            feed(&mut buf, &mut &[b][..]);
            assert_eq!(buf.readiness(), Readiness::Partial);
            assert_eq!(buf.split_line(), None);
        }
        feed(&mut buf, &mut &b"\n"[..]);
        assert_eq!(buf.readiness(), Readiness::Line);
        assert_eq!(buf.split_line(), Some(Line::Complete(b"12345".to_vec())));
        // After a PROXY header is consumed the search starts over.
        feed(&mut buf, &mut &b"ab\ncd\n"[..]);
        assert_eq!(buf.readiness(), Readiness::Line);
        buf.consume(3);
        assert_eq!(buf.bytes(), b"cd\n");
        assert_eq!(buf.split_line(), Some(Line::Complete(b"cd".to_vec())));
    }

    #[test]
    fn a_failed_read_adds_nothing() {
        let mut buf = LineBuffer::new(8);
        feed(&mut buf, &mut &b"12"[..]);
        let err = buf.read_with(|spare| {
            spare.fill(b'\n');
            Err::<usize, _>("reset")
        });
        assert_eq!(err, Err("reset"));
        assert_eq!(buf.bytes(), b"12");
        assert!(buf.wants_input());
        assert_eq!(buf.readiness(), Readiness::Partial);
    }

    #[test]
    fn shrink_gives_back_only_an_empty_buffer() {
        let mut buf = LineBuffer::new(8);
        feed(&mut buf, &mut &b"1\n2"[..]);
        buf.shrink();
        assert!(buf.capacity() >= 3);
        assert_eq!(buf.split_line(), Some(Line::Complete(b"1".to_vec())));
        buf.consume(1);
        assert!(buf.is_empty());
        buf.shrink();
        assert_eq!(buf.capacity(), 0);
    }
}
