//! One client connection: line framing under deadlines, buffered replies, and
//! a close that does not destroy the last reply.
//!
//! * **Deadlines.** The first line must arrive whole within the request
//!   timeout, counted from accept. The remaining time is recomputed before
//!   every `read`, so a client trickling a byte at a time cannot hold a
//!   worker past the deadline. In keep-alive mode each further line may wait
//!   up to the idle timeout for its first byte, and then has the request
//!   timeout to complete. Writes have their own timeout.
//! * **Line limit.** At most `max_line_bytes` are buffered for one line; a
//!   longer line is reported as [`Line::TooLong`] and reading stops, so memory
//!   per connection is bounded whatever the client sends.
//! * **Closing.** If the client sent more than we read (pipelined junk),
//!   closing at once would make the kernel answer with a reset that can
//!   destroy our reply in flight. [`Connection::close`] half-closes, drains
//!   briefly, then closes.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use thiserror::Error;

/// How long [`Connection::close`] keeps reading to let a client's extra
/// input drain before closing.
const LINGER: Duration = Duration::from_millis(500);
/// How many bytes [`Connection::close`] is willing to drain.
const LINGER_BYTES: usize = 256 * 1024;
/// Bytes asked of the kernel per `read`.
const READ_CHUNK: usize = 4096;
/// A first write this small always fits the socket send buffer (Linux's
/// minimum is 4608 bytes), so it cannot block.
const UNBLOCKABLE_WRITE: usize = 2048;

/// The per-connection bounds, the same for every connection of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time from accept to the end of the first line; in keep-alive mode,
    /// from a line's first byte to its end.
    pub request_timeout: Duration,
    /// Longest a keep-alive connection may sit without starting a line.
    pub idle_timeout: Duration,
    /// Longest a single write of replies may block.
    pub write_timeout: Duration,
    /// Longest line accepted, newline not counted.
    pub max_line_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(5),
            max_line_bytes: 64 * 1024,
        }
    }
}

/// What reading a line produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A line, without its `\n`; the client may have ended it with EOF
    /// instead, which the protocol treats the same.
    Complete(Vec<u8>),
    /// The line passed the limit; these are its first `max_line_bytes + 1`
    /// bytes. The rest was not read.
    TooLong(Vec<u8>),
    /// The client closed without sending another byte.
    Closed,
}

/// Why no line could be read.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The client did not start a line within the idle timeout.
    #[error("no request within {0:?}")]
    Idle(Duration),
    /// The client started a line but did not finish it within the deadline.
    #[error("request not complete within {0:?}")]
    Deadline(Duration),
    /// The socket failed (reset, for instance).
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

/// An accepted client connection.
#[derive(Debug)]
pub struct Connection {
    /// The socket.
    stream: TcpStream,
    /// The client's address, for audit and log lines.
    peer: SocketAddr,
    /// When the connection was accepted: the first line's deadline counts
    /// from here.
    accepted: Instant,
    /// Bytes received and not yet returned as a line (pipelined input).
    input: Vec<u8>,
    /// Where in `input` the newline search resumes.
    scanned: usize,
    /// Replies not yet written.
    output: Vec<u8>,
    /// The client has half-closed; no more input will come.
    peer_eof: bool,
    /// No further line will be returned (an over-long line ended reading).
    stopped: bool,
    /// Some reply has been written, so a reset on close could destroy it.
    replied: bool,
    /// The write timeout and `TCP_NODELAY` are set (only once a write
    /// could block or be delayed, to spare the syscalls otherwise).
    write_options_set: bool,
    /// Lines returned so far, to tell the first from the rest.
    lines_read: u64,
    /// The server's bounds.
    limits: Limits,
}

impl Connection {
    /// Wraps an accepted socket. No system call is made here: socket
    /// options are set when they first matter.
    pub fn new(
        stream: TcpStream,
        peer: SocketAddr,
        accepted: Instant,
        limits: Limits,
    ) -> Connection {
        Connection {
            stream,
            peer,
            accepted,
            input: Vec::new(),
            scanned: 0,
            output: Vec::new(),
            peer_eof: false,
            stopped: false,
            replied: false,
            write_options_set: false,
            lines_read: 0,
            limits,
        }
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the client has half-closed and every buffered line is used.
    pub fn at_eof(&self) -> bool {
        self.stopped || (self.peer_eof && self.input.is_empty())
    }

    /// Reads the next line under the deadlines described in the module docs.
    ///
    /// # Errors
    ///
    /// [`ReadError::Idle`] or [`ReadError::Deadline`] when the client is too
    /// slow, [`ReadError::Io`] when the socket fails.
    pub fn read_line(&mut self) -> Result<Line, ReadError> {
        let first = self.lines_read == 0;
        self.lines_read += 1;
        // The first line's clock started at accept. A later line waits for
        // its first byte under the idle timeout, then gets a full deadline.
        let mut wait = if first {
            Wait::Line(self.accepted + self.limits.request_timeout)
        } else {
            Wait::Idle(Instant::now() + self.limits.idle_timeout)
        };
        loop {
            if self.stopped {
                return Ok(Line::Closed);
            }
            if let Some(line) = self.take_line() {
                return Ok(line);
            }
            if self.peer_eof {
                if self.input.is_empty() {
                    return Ok(Line::Closed);
                }
                self.scanned = 0;
                return Ok(Line::Complete(std::mem::take(&mut self.input)));
            }
            // The line has started: from its first byte it gets the
            // request timeout.
            if matches!(wait, Wait::Idle(_)) && !self.input.is_empty() {
                wait = Wait::Line(Instant::now() + self.limits.request_timeout);
            }
            self.flush()?;
            self.fill(wait)?;
        }
    }

    /// Splits the next complete (or over-long) line off the input buffer.
    fn take_line(&mut self) -> Option<Line> {
        let limit = self.limits.max_line_bytes;
        // Search only bytes not searched before, and never past the limit.
        let search_end = self.input.len().min(limit + 1);
        if let Some(offset) = self.input[self.scanned.min(search_end)..search_end]
            .iter()
            .position(|&b| b == b'\n')
        {
            let end = self.scanned.min(search_end) + offset;
            let mut line: Vec<u8> = self.input.drain(..=end).collect();
            line.pop();
            self.scanned = 0;
            return Some(Line::Complete(line));
        }
        self.scanned = search_end;
        if self.input.len() > limit {
            self.input.truncate(limit + 1);
            let prefix = std::mem::take(&mut self.input);
            self.scanned = 0;
            // The rest of the line is never read: stop here for good.
            self.stopped = true;
            return Some(Line::TooLong(prefix));
        }
        None
    }

    /// One `read` into the input buffer, bounded by `wait`'s deadline.
    ///
    /// Bytes that already arrived are taken without waiting (and without
    /// setting a timeout: with `TCP_DEFER_ACCEPT` the first line is nearly
    /// always there). Only when nothing is there does the read block, with
    /// the time left as its timeout. Once the deadline has passed, only
    /// bytes already there are taken: a connection that waited in the queue
    /// for a worker is not blamed for the server's delay, but a slow client
    /// gets no more time.
    fn fill(&mut self, wait: Wait) -> Result<(), ReadError> {
        let room = (self.limits.max_line_bytes + 1)
            .saturating_sub(self.input.len())
            .clamp(1, READ_CHUNK);
        let start = self.input.len();
        self.input.resize(start + room, 0);
        let result = self.read_bounded(start, wait);
        let n = *result.as_ref().unwrap_or(&0);
        self.input.truncate(start + n);
        if result? == 0 {
            self.peer_eof = true;
        }
        Ok(())
    }

    /// Reads into `self.input[start..]`, returning the byte count (0 at EOF).
    fn read_bounded(&mut self, start: usize, wait: Wait) -> Result<usize, ReadError> {
        loop {
            match recv_now(&self.stream, &mut self.input[start..], 0) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
        let remaining = wait.deadline().saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(wait.error(&self.limits));
        }
        self.stream.set_read_timeout(Some(remaining))?;
        loop {
            match self.stream.read(&mut self.input[start..]) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(wait.error(&self.limits));
                }
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// Queues a reply; it is sent by [`Connection::flush`], which
    /// [`Connection::read_line`] calls before it has to wait for input.
    pub fn queue_reply(&mut self, reply: &[u8]) {
        self.output.extend_from_slice(reply);
    }

    /// Writes every queued reply.
    ///
    /// # Errors
    ///
    /// The write failed or timed out.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        // A first write that fits the smallest socket send buffer cannot
        // block, and Nagle never delays a first segment. Anything else gets
        // the write timeout, and TCP_NODELAY so a small reply is not held
        // back waiting for the ACK of the previous one.
        if !self.write_options_set && (self.replied || self.output.len() > UNBLOCKABLE_WRITE) {
            self.stream
                .set_write_timeout(Some(self.limits.write_timeout))?;
            self.stream.set_nodelay(true)?;
            self.write_options_set = true;
        }
        self.replied = true;
        self.stream.write_all(&self.output)?;
        self.output.clear();
        Ok(())
    }

    /// Sends queued replies and closes without risking a reset: when the
    /// client sent more than was read, half-close first and drain its input
    /// for a moment, so the kernel does not answer unread data with an RST
    /// that would discard the reply still in flight. Without a reply there
    /// is nothing to protect, and the connection closes at once.
    ///
    /// # Errors
    ///
    /// Writing the queued replies failed.
    pub fn close(mut self) -> io::Result<()> {
        self.flush()?;
        if !self.replied || (self.peer_eof && self.input.is_empty()) {
            return Ok(());
        }
        if self.stopped || !self.input.is_empty() || self.input_pending() {
            let _ = self.stream.shutdown(Shutdown::Write);
            self.drain();
        }
        Ok(())
    }

    /// Whether the kernel holds unread input, without blocking.
    fn input_pending(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(recv_now(&self.stream, &mut probe, libc::MSG_PEEK), Ok(n) if n > 0)
    }

    /// Reads and discards input until EOF, [`LINGER`] or [`LINGER_BYTES`].
    fn drain(&mut self) {
        let until = Instant::now() + LINGER;
        let mut sink = [0u8; READ_CHUNK];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            let remaining = until.saturating_duration_since(Instant::now());
            if remaining.is_zero() || self.stream.set_read_timeout(Some(remaining)).is_err() {
                return;
            }
            match self.stream.read(&mut sink) {
                Ok(0) => return,
                Ok(n) => drained += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

/// `recv(2)` with `MSG_DONTWAIT` (plus `flags`): whatever has arrived,
/// without blocking and without touching the socket's timeout or mode.
fn recv_now(stream: &TcpStream, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole
    // call, and the descriptor stays open while `stream` is borrowed.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags | libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// What a read is waiting for, and until when.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// The first byte of a keep-alive line.
    Idle(Instant),
    /// The rest of a line.
    Line(Instant),
}

impl Wait {
    /// When the wait ends.
    fn deadline(self) -> Instant {
        match self {
            Wait::Idle(at) | Wait::Line(at) => at,
        }
    }

    /// The error for a wait that ran out.
    fn error(self, limits: &Limits) -> ReadError {
        match self {
            Wait::Idle(_) => ReadError::Idle(limits.idle_timeout),
            Wait::Line(_) => ReadError::Deadline(limits.request_timeout),
        }
    }
}
