//! The client side of the protocol, used by `prime-client` and the tests.
//!
//! [`ask`] is the seed client's way: one connection per number, send the
//! line, read until the server closes.
//!
//! [`ask_pipelined`] sends every number on one keep-alive connection. Three
//! threads share the work, so neither the caller's input nor either side's
//! socket buffers can stall the others:
//!
//! * a *feeder* pulls lines from the caller's iterator (stdin, say) into a
//!   short queue, so the writer can tell "another line is ready" from "the
//!   next line has not been typed yet";
//! * the *writer* packs ready lines into one write, and sends what it has the
//!   moment no further line is ready: a person typing numbers gets each
//!   answer before typing the next, while `seq 1 100000` still goes out in
//!   large writes;
//! * the *reader* (the calling thread) matches replies to lines in order and
//!   hands them to a [`ReplySink`], telling it when it has caught up so it
//!   can flush its output.
//!
//! A line counts as in flight, and the timeout for its reply runs, only once
//! it is being written: waiting for the caller's next line is never a
//! timeout. A timeout is reported as [`ClientError::Timeout`], naming what
//! the client was waiting for. Anything but `T\n`, `F\n` or `E\n` is a
//! protocol violation.

use crate::escape::escape_bytes;
use crate::prime::Verdict;
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Longest reply read before calling it a violation: a letter and `\n`.
const MAX_REPLY: usize = 2;

/// Lines the feeder may read ahead of the writer: enough to fill a batch,
/// few enough that a fast source does not pile up in memory.
const READ_AHEAD: usize = 4096;

/// Bytes the writer gathers before sending even though more lines are
/// ready: large writes for bulk input, a bounded wait for the first replies.
const BATCH_BYTES: usize = 16 * 1024;

/// What went wrong talking to a server.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The server could not be reached.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where we tried.
        addr: SocketAddr,
        /// Why it failed.
        source: io::Error,
    },
    /// The server did not respond within the timeout.
    #[error("timed out after {} waiting {waiting}", humantime::format_duration(*after))]
    Timeout {
        /// What the client was waiting for.
        waiting: Waiting,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The connection failed after it was made.
    #[error("connection to the server failed: {0}")]
    Io(#[from] io::Error),
    /// The server closed the connection without a reply.
    #[error("the server closed the connection without replying")]
    NoReply,
    /// The server replied something the protocol does not allow.
    #[error("the server broke the protocol: it replied {0}")]
    Protocol(String),
}

/// What the client was waiting for when its timeout ran out, so the message
/// tells a slow network from a slow server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// The connection to be accepted.
    Connect,
    /// The server to take a line (its receive buffer was full).
    Send,
    /// The server's reply to a line already sent.
    Reply,
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Waiting::Connect => "to connect to the server",
            Waiting::Send => "for the server to read a line",
            Waiting::Reply => "for the server's reply",
        })
    }
}

/// One number's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The line as sent, byte for byte, without its newline.
    pub input: Vec<u8>,
    /// The server's verdict.
    pub verdict: Verdict,
    /// Time from sending the line to reading the reply.
    pub elapsed: Duration,
}

/// Where [`ask_pipelined`] hands the answers, as they arrive.
///
/// Any `FnMut(Exchange)` closure is a sink that ignores
/// [`caught_up`](ReplySink::caught_up).
pub trait ReplySink {
    /// One line's answer, in the order the lines were sent.
    fn reply(&mut self, exchange: Exchange);

    /// Every answer that has arrived was handed over; the client is about to
    /// wait for the server or for more lines. A sink that buffers its output
    /// flushes it here, so a person sees each answer as soon as it arrives,
    /// while bulk runs still print in large writes.
    fn caught_up(&mut self) {}
}

impl<F: FnMut(Exchange)> ReplySink for F {
    fn reply(&mut self, exchange: Exchange) {
        self(exchange);
    }
}

/// Asks about one line on a fresh connection, as the seed client does:
/// send it with a newline, then read until the server closes.
///
/// # Errors
///
/// [`ClientError`] when the server cannot be reached, the connection fails
/// or times out (`timeout` bounds the connect and each read and write), or
/// the reply is not one the protocol allows.
pub fn ask(addr: SocketAddr, line: &[u8], timeout: Duration) -> Result<Exchange, ClientError> {
    let started = Instant::now();
    let mut stream = connect(addr, timeout)?;
    let mut request = Vec::with_capacity(line.len() + 1);
    request.extend_from_slice(line);
    request.push(b'\n');
    stream
        .write_all(&request)
        .map_err(|e| failed(e, Waiting::Send, timeout))?;
    let mut reply = Vec::with_capacity(MAX_REPLY);
    (&mut stream)
        .take(MAX_REPLY as u64 + 1)
        .read_to_end(&mut reply)
        .map_err(|e| failed(e, Waiting::Reply, timeout))?;
    Ok(Exchange {
        input: line.to_vec(),
        verdict: parse_reply(&reply)?,
        elapsed: started.elapsed(),
    })
}

/// Sends every line on one keep-alive connection, pipelined, handing each
/// answer to `sink` in order as it arrives; returns how many were answered.
///
/// Lines are sent as soon as no further line is ready, so `lines` may block
/// (a person typing); `timeout` bounds the connect, each write, and the wait
/// for each reply, never the wait for the next line. The iterator runs on a
/// thread of its own that is not waited for when the exchange fails (it may
/// be blocked reading a terminal), hence `'static`.
///
/// # Errors
///
/// As [`ask`]; also [`ClientError::NoReply`] when the server closes before
/// answering every line (a `--max-requests-per-conn` limit, or its idle
/// timeout while the input paused).
pub fn ask_pipelined<I>(
    addr: SocketAddr,
    lines: I,
    timeout: Duration,
    sink: &mut impl ReplySink,
) -> Result<u64, ClientError>
where
    I: IntoIterator<Item = Vec<u8>>,
    I::IntoIter: Send + 'static,
{
    let stream = connect(addr, timeout)?;
    let writer_stream = stream.try_clone()?;
    let (feed, ready) = mpsc::sync_channel(READ_AHEAD);
    let lines = lines.into_iter();
    let feeder = thread::Builder::new()
        .name("prime-client-feed".into())
        .spawn(move || {
            for line in lines {
                if feed.send(line).is_err() {
                    return; // the writer gave up
                }
            }
        })?;
    let in_flight = Arc::new(InFlight::default());
    let writer_in_flight = Arc::clone(&in_flight);
    let writer = thread::Builder::new()
        .name("prime-client-write".into())
        .spawn(move || {
            let written = write_lines(&writer_stream, &ready, &writer_in_flight);
            writer_in_flight.finish();
            written
        })?;
    let answered = match read_replies(&stream, &in_flight, sink, timeout) {
        Ok(answered) => answered,
        Err(e) => {
            // Wake a writer blocked on a full socket; it and the feeder end
            // at their next step, and nobody waits for them.
            let _ = stream.shutdown(Shutdown::Both);
            return Err(e);
        }
    };
    // Every line the writer sent was answered and it has finished.
    let written = writer
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    if let Err(e) = written {
        // Lines the writer never sent are numbers left unanswered.
        return Err(failed(e, Waiting::Send, timeout));
    }
    // The writer only finishes cleanly once the feeder is done.
    feeder
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    Ok(answered)
}

/// Lines sent and not yet answered, shared by the writer and reader.
#[derive(Debug, Default)]
struct InFlight {
    /// The queue and the writer's progress.
    state: Mutex<Queue>,
    /// Signalled when lines are queued or the writer finishes.
    changed: Condvar,
}

impl InFlight {
    /// Records `lines` as being sent now.
    fn push_all(&self, lines: impl Iterator<Item = Vec<u8>>) {
        let now = Instant::now();
        let mut state = self.state.lock();
        state.pending.extend(lines.map(|line| (line, now)));
        self.changed.notify_one();
    }

    /// Marks the writer as finished.
    fn finish(&self) {
        self.state.lock().writer_done = true;
        self.changed.notify_one();
    }

    /// The oldest unanswered line, waiting for one if the writer is still
    /// going; `None` once every sent line is answered.
    fn pop(&self) -> Option<(Vec<u8>, Instant)> {
        let mut state = self.state.lock();
        loop {
            if let Some(item) = state.pending.pop_front() {
                return Some(item);
            }
            if state.writer_done {
                return None;
            }
            self.changed.wait(&mut state);
        }
    }
}

/// The state behind [`InFlight`]'s lock.
#[derive(Debug, Default)]
struct Queue {
    /// Lines sent and unanswered, with when they were sent, oldest first.
    pending: VecDeque<(Vec<u8>, Instant)>,
    /// The writer has sent everything it will send.
    writer_done: bool,
}

/// The writer: sends lines in batches, each batch as soon as no further line
/// is ready or it is full, then half-closes once the feeder is done.
fn write_lines(
    stream: &TcpStream,
    ready: &Receiver<Vec<u8>>,
    in_flight: &InFlight,
) -> io::Result<()> {
    let mut batch = Batch::default();
    loop {
        let line = match ready.try_recv() {
            Ok(line) => line,
            Err(TryRecvError::Empty) => {
                // Nothing more is ready: send what we hold before waiting,
                // or its answers would wait for lines not yet typed.
                batch.send(stream, in_flight)?;
                match ready.recv() {
                    Ok(line) => line,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        batch.add(line);
        if batch.bytes.len() >= BATCH_BYTES {
            batch.send(stream, in_flight)?;
        }
    }
    batch.send(stream, in_flight)?;
    // If the half-close fails the connection is gone, and the reader finds
    // out for any line still unanswered.
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

/// Lines gathered for one write.
#[derive(Debug, Default)]
struct Batch {
    /// The lines, newline-terminated, as they go on the wire.
    bytes: Vec<u8>,
    /// The same lines without newlines, for the reader to report.
    lines: Vec<Vec<u8>>,
}

impl Batch {
    /// Adds one line.
    fn add(&mut self, line: Vec<u8>) {
        self.bytes.extend_from_slice(&line);
        self.bytes.push(b'\n');
        self.lines.push(line);
    }

    /// Writes the batch, if any. Its lines count as in flight before the
    /// write, so the reader drains replies while a large batch goes out
    /// (otherwise both sides' buffers could fill and stall each other).
    fn send(&mut self, mut stream: &TcpStream, in_flight: &InFlight) -> io::Result<()> {
        if self.lines.is_empty() {
            return Ok(());
        }
        in_flight.push_all(self.lines.drain(..));
        stream.write_all(&self.bytes)?;
        self.bytes.clear();
        Ok(())
    }
}

/// The reader: matches replies to sent lines in order.
fn read_replies(
    stream: &TcpStream,
    in_flight: &InFlight,
    sink: &mut impl ReplySink,
    timeout: Duration,
) -> Result<u64, ClientError> {
    let mut reader = BufReader::new(stream);
    let mut answered = 0;
    let mut reply = Vec::with_capacity(MAX_REPLY);
    while let Some((input, at)) = in_flight.pop() {
        reply.clear();
        (&mut reader)
            .take(MAX_REPLY as u64)
            .read_until(b'\n', &mut reply)
            .map_err(|e| failed(e, Waiting::Reply, timeout))?;
        let verdict = parse_reply(&reply)?;
        sink.reply(Exchange {
            input,
            verdict,
            elapsed: at.elapsed(),
        });
        answered += 1;
        if reader.buffer().is_empty() {
            // The next reply, if any, is not here yet.
            sink.caught_up();
        }
    }
    Ok(answered)
}

/// Connects with `timeout` on the connect and on every read and write.
fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ClientError> {
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|source| {
        if is_timeout(&source) {
            ClientError::Timeout {
                waiting: Waiting::Connect,
                after: timeout,
            }
        } else {
            ClientError::Connect { addr, source }
        }
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Whether an I/O error is a socket timeout running out. Unix reports an
/// expired `SO_RCVTIMEO`/`SO_SNDTIMEO` as `EAGAIN` (`WouldBlock`), whose
/// text, "Resource temporarily unavailable", would mislead a user.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The error for an I/O failure while `waiting`: a timeout in words, or
/// the I/O error itself.
fn failed(e: io::Error, waiting: Waiting, timeout: Duration) -> ClientError {
    if is_timeout(&e) {
        ClientError::Timeout {
            waiting,
            after: timeout,
        }
    } else {
        ClientError::Io(e)
    }
}

/// The verdict in a complete reply, or why it is not one.
///
/// # Errors
///
/// [`ClientError::NoReply`] for nothing at all, [`ClientError::Protocol`]
/// (with the reply escaped) for anything but `T\n`, `F\n` or `E\n`.
pub fn parse_reply(reply: &[u8]) -> Result<Verdict, ClientError> {
    match reply {
        [] => Err(ClientError::NoReply),
        [code, b'\n'] => Verdict::from_code(*code)
            .ok_or_else(|| ClientError::Protocol(escape_bytes(reply, 16).quoted())),
        _ => Err(ClientError::Protocol(escape_bytes(reply, 16).quoted())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_strict() {
        assert_eq!(parse_reply(b"T\n").unwrap(), Verdict::Prime);
        assert_eq!(parse_reply(b"E\n").unwrap(), Verdict::NotInteger);
        assert!(matches!(parse_reply(b""), Err(ClientError::NoReply)));
        for bad in [&b"T"[..], b"X\n", b"T\nT", b"t\n", b"\x1b\n"] {
            assert!(
                matches!(parse_reply(bad), Err(ClientError::Protocol(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn socket_timeouts_are_reported_as_timeouts_in_words() {
        let after = Duration::from_millis(2500);
        for kind in [io::ErrorKind::WouldBlock, io::ErrorKind::TimedOut] {
            let e = failed(io::Error::from(kind), Waiting::Reply, after);
            assert!(
                matches!(e, ClientError::Timeout { waiting: Waiting::Reply, after: a } if a == after),
                "{e:?}"
            );
            assert_eq!(
                e.to_string(),
                "timed out after 2s 500ms waiting for the server's reply"
            );
        }
        let e = failed(
            io::Error::from(io::ErrorKind::WouldBlock),
            Waiting::Send,
            after,
        );
        assert_eq!(
            e.to_string(),
            "timed out after 2s 500ms waiting for the server to read a line"
        );
        let e = failed(
            io::Error::from(io::ErrorKind::BrokenPipe),
            Waiting::Send,
            after,
        );
        assert!(matches!(e, ClientError::Io(ref io) if io.kind() == io::ErrorKind::BrokenPipe));
        let connect = ClientError::Timeout {
            waiting: Waiting::Connect,
            after: Duration::from_secs(2),
        };
        assert_eq!(
            connect.to_string(),
            "timed out after 2s waiting to connect to the server"
        );
    }
}
