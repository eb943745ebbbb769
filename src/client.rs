//! The client side of the protocol, used by `prime-client` and the tests.
//!
//! [`ask`] is the seed client's way: one connection per number, send the
//! line, read until the server closes. [`ask_pipelined`] sends every number
//! on one keep-alive connection, writing on one thread while reading replies
//! on another, so neither side's buffers can fill up and stall the other.
//!
//! Anything but `T\n`, `F\n` or `E\n` is a protocol violation.

use crate::escape::escape_bytes;
use crate::protocol::Verdict;
use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Longest reply read before calling it a violation: a letter and `\n`.
const MAX_REPLY: usize = 2;

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

/// One number's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The line as sent, without its newline.
    pub input: String,
    /// The server's verdict.
    pub verdict: Verdict,
    /// Time from sending the line to reading the reply.
    pub elapsed: Duration,
}

/// Asks about one line on a fresh connection, as the seed client does:
/// send it with a newline, then read until the server closes.
///
/// # Errors
///
/// [`ClientError`] when the server cannot be reached, the connection fails
/// or times out (`timeout` bounds the connect and each read and write), or
/// the reply is not one the protocol allows.
pub fn ask(addr: SocketAddr, line: &str, timeout: Duration) -> Result<Exchange, ClientError> {
    let started = Instant::now();
    let mut stream = connect(addr, timeout)?;
    let mut request = Vec::with_capacity(line.len() + 1);
    request.extend_from_slice(line.as_bytes());
    request.push(b'\n');
    stream.write_all(&request)?;
    let mut reply = Vec::with_capacity(MAX_REPLY);
    (&mut stream)
        .take(MAX_REPLY as u64 + 1)
        .read_to_end(&mut reply)?;
    Ok(Exchange {
        input: line.to_owned(),
        verdict: parse_reply(&reply)?,
        elapsed: started.elapsed(),
    })
}

/// Sends every line on one keep-alive connection, pipelined, calling
/// `on_reply` for each answer in order as it arrives.
///
/// # Errors
///
/// As [`ask`]; also [`ClientError::NoReply`] when the server closes before
/// answering every line (a `--max-requests-per-conn` limit, for instance).
pub fn ask_pipelined<I>(
    addr: SocketAddr,
    lines: I,
    timeout: Duration,
    mut on_reply: impl FnMut(Exchange),
) -> Result<u64, ClientError>
where
    I: Iterator<Item = String> + Send,
{
    let stream = connect(addr, timeout)?;
    let reader_stream = stream.try_clone()?;
    let sent = Arc::new(InFlight::default());
    std::thread::scope(|scope| {
        let writer_sent = Arc::clone(&sent);
        let writer = scope.spawn(move || write_all_lines(stream, lines, &writer_sent));
        let answered = read_replies(reader_stream, &sent, &mut on_reply);
        let written = writer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        // A failed write matters only if it cost us replies.
        let answered = answered?;
        match written {
            Err(e) if answered < sent.total() => Err(ClientError::Io(e)),
            _ => Ok(answered),
        }
    })
}

/// Lines sent and not yet answered, shared by the writer and reader.
#[derive(Debug, Default)]
struct InFlight {
    /// The queue and the writer's progress.
    state: Mutex<Queue>,
    /// Signalled when a line is queued or the writer finishes.
    changed: Condvar,
}

impl InFlight {
    /// Records a line as sent.
    fn push(&self, line: String) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.pending.push_back((line, Instant::now()));
        state.sent += 1;
        self.changed.notify_one();
    }

    /// Marks the writer as finished.
    fn finish(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .writer_done = true;
        self.changed.notify_one();
    }

    /// The oldest unanswered line, waiting for one if the writer is still
    /// going; `None` once every sent line is answered.
    fn pop(&self) -> Option<(String, Instant)> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(item) = state.pending.pop_front() {
                return Some(item);
            }
            if state.writer_done {
                return None;
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Lines sent in all.
    fn total(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sent
    }
}

/// The state behind [`InFlight`]'s lock.
#[derive(Debug, Default)]
struct Queue {
    /// Lines sent and unanswered, with when they were sent, oldest first.
    pending: VecDeque<(String, Instant)>,
    /// The writer has sent everything it will send.
    writer_done: bool,
    /// Lines sent in all.
    sent: u64,
}

/// The writer half: sends each line, then half-closes.
fn write_all_lines(
    stream: TcpStream,
    lines: impl Iterator<Item = String>,
    sent: &InFlight,
) -> io::Result<()> {
    let result = (|| {
        let mut out = BufWriter::new(&stream);
        for line in lines {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
            sent.push(line);
        }
        out.flush()?;
        stream.shutdown(Shutdown::Write)
    })();
    sent.finish();
    result
}

/// The reader half: matches replies to sent lines in order.
fn read_replies(
    stream: TcpStream,
    sent: &InFlight,
    on_reply: &mut impl FnMut(Exchange),
) -> Result<u64, ClientError> {
    let mut reader = BufReader::new(stream);
    let mut answered = 0;
    let mut reply = Vec::with_capacity(MAX_REPLY);
    while let Some((input, at)) = sent.pop() {
        reply.clear();
        (&mut reader)
            .take(MAX_REPLY as u64)
            .read_until(b'\n', &mut reply)?;
        let verdict = parse_reply(&reply)?;
        on_reply(Exchange {
            input,
            verdict,
            elapsed: at.elapsed(),
        });
        answered += 1;
    }
    Ok(answered)
}

/// Connects with `timeout` on the connect and on every read and write.
fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ClientError> {
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| ClientError::Connect { addr, source })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
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
}
