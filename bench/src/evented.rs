//! The event-driven generator for connection-per-request load: one thread
//! keeps `concurrency` connections in flight on non-blocking sockets (mio,
//! that is epoll on Linux). Each connection sends its line, reads to EOF and
//! closes; a new connection takes its slot at once. It spends a fraction of
//! the CPU a thread-per-connection client spends per request and causes no
//! context switches of its own between requests, so on a small machine the
//! server under test keeps most of the CPU and the scheduler's attention,
//! as it would against remote clients. It has the shape of the independent
//! C epoll generator the bench's figures were checked against.

use crate::run::{record, Claims, LoadResult, LoadSpec};
use crate::workload::Request;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use prime_server::client::parse_reply;
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

/// How often in-flight requests are checked against the timeout.
const TIMEOUT_SCAN: Duration = Duration::from_millis(50);

/// Longest reply kept: a valid one is two bytes, so more than this is a
/// protocol violation whatever follows.
const MAX_REPLY: usize = 8;

/// One connection in flight.
struct Slot {
    /// The connection, non-blocking, registered under the slot's index.
    stream: TcpStream,
    /// Which request it carries.
    request: usize,
    /// The line with its newline.
    line: Vec<u8>,
    /// Bytes of `line` written so far.
    sent: usize,
    /// Reply bytes read so far.
    reply: Vec<u8>,
    /// When the connection was opened: latency runs from here to EOF.
    started: Instant,
}

/// What became of a slot after an event.
enum Progress {
    /// Still waiting for the socket.
    Pending,
    /// The server closed after replying: the bytes it sent.
    Done,
    /// The connection failed.
    Failed,
}

/// Runs connection-per-request load on one thread.
pub fn run(spec: &LoadSpec, requests: &[Request], claims: &Claims) -> LoadResult {
    let mut part = LoadResult::empty();
    let Ok(mut poll) = Poll::new() else {
        part.errors += 1;
        return part;
    };
    let mut events = Events::with_capacity(spec.concurrency.max(1));
    let mut slots: Vec<Option<Slot>> = (0..spec.concurrency.max(1)).map(|_| None).collect();
    for (index, slot) in slots.iter_mut().enumerate() {
        *slot = open(&poll, index, spec, requests, claims, &mut part);
    }
    let mut next_scan = Instant::now() + TIMEOUT_SCAN;
    while slots.iter().any(Option::is_some) {
        if spec.abandon_at_stop && claims.expired() {
            // Dropping a slot closes its connection.
            for slot in &mut slots {
                if slot.take().is_some() {
                    part.abandoned += 1;
                }
            }
            break;
        }
        if let Err(e) = poll.poll(&mut events, Some(TIMEOUT_SCAN)) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            part.errors += slots.iter().flatten().count() as u64;
            return part;
        }
        for event in &events {
            let index = event.token().0;
            let Some(slot) = slots.get_mut(index).and_then(Option::as_mut) else {
                continue;
            };
            let progress = if event.is_error() {
                Progress::Failed
            } else {
                advance(slot, &poll, Token(index), spec.half_close)
            };
            if !matches!(progress, Progress::Pending) {
                finish(&mut slots[index], progress, spec, requests, &mut part);
                slots[index] = open(&poll, index, spec, requests, claims, &mut part);
            }
        }
        let now = Instant::now();
        if now >= next_scan {
            next_scan = now + TIMEOUT_SCAN;
            for (index, slot) in slots.iter_mut().enumerate() {
                let late = slot
                    .as_ref()
                    .is_some_and(|s| now.duration_since(s.started) > spec.timeout);
                if late {
                    finish(slot, Progress::Failed, spec, requests, &mut part);
                    *slot = open(&poll, index, spec, requests, claims, &mut part);
                }
            }
        }
    }
    part
}

/// Opens the next claimed request's connection in slot `index`, or leaves
/// the slot empty when the run is over. A connect that fails at once is
/// an error and the next claim is tried.
fn open(
    poll: &Poll,
    index: usize,
    spec: &LoadSpec,
    requests: &[Request],
    claims: &Claims,
    part: &mut LoadResult,
) -> Option<Slot> {
    loop {
        let claimed = claims.claim(1)?;
        let request = (claimed % requests.len() as u64) as usize;
        let started = Instant::now();
        let Ok(mut stream) = TcpStream::connect(spec.addr) else {
            part.errors += 1;
            continue;
        };
        if poll
            .registry()
            .register(&mut stream, Token(index), Interest::WRITABLE)
            .is_err()
        {
            part.errors += 1;
            continue;
        }
        let mut line = Vec::with_capacity(requests[request].line.len() + 1);
        line.extend_from_slice(requests[request].line.as_bytes());
        line.push(b'\n');
        // The line goes out when the socket reports writable, as in the
        // C generator: writing at once, before the poll, sends bursts of
        // lines right behind the handshakes and was measured to change how
        // often the server's threads sleep (more context switches).
        return Some(Slot {
            stream,
            request,
            line,
            sent: 0,
            reply: Vec::with_capacity(MAX_REPLY),
            started,
        });
    }
}

/// Writes what is left of the line (then half-closes, with `half_close`),
/// then watches for the reply instead of writability and reads what the
/// server sent, each until the socket would block (mio's readiness is
/// edge-triggered).
fn advance(slot: &mut Slot, poll: &Poll, token: Token, half_close: bool) -> Progress {
    if slot.sent < slot.line.len() {
        while slot.sent < slot.line.len() {
            match slot.stream.write(&slot.line[slot.sent..]) {
                Ok(0) => return Progress::Failed,
                Ok(n) => slot.sent += n,
                // Not connected yet: writability will be signalled.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::NotConnected) => {
                    return Progress::Pending
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Progress::Failed,
            }
        }
        if half_close && slot.stream.shutdown(std::net::Shutdown::Write).is_err() {
            return Progress::Failed;
        }
        if poll
            .registry()
            .reregister(&mut slot.stream, token, Interest::READABLE)
            .is_err()
        {
            return Progress::Failed;
        }
    }
    let mut buf = [0u8; MAX_REPLY];
    loop {
        match slot.stream.read(&mut buf) {
            Ok(0) => return Progress::Done,
            Ok(n) => {
                let room = MAX_REPLY.saturating_sub(slot.reply.len());
                slot.reply.extend_from_slice(&buf[..n.min(room)]);
                if n > room {
                    // Longer than any reply: a violation, no need for EOF.
                    return Progress::Done;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::Pending,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Progress::Failed,
        }
    }
}

/// Records a finished slot and closes its connection (closing the only
/// descriptor also removes it from the epoll set).
fn finish(
    slot: &mut Option<Slot>,
    progress: Progress,
    spec: &LoadSpec,
    requests: &[Request],
    part: &mut LoadResult,
) {
    let Some(slot) = slot.take() else { return };
    let verdict = match progress {
        Progress::Done => parse_reply(&slot.reply).ok(),
        Progress::Failed | Progress::Pending => None,
    };
    record(
        spec,
        &requests[slot.request],
        verdict,
        slot.started.elapsed(),
        part,
    );
}
