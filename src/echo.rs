//! The echo service: for each line received, reply `GOT:` plus the line.
//!
//! It exists to show that the core is generic, the way Python's
//! `socketserver` separates the server from the request handler: this is
//! only a [`Handler`]; the accept loop, the pool, admission, deadlines, the
//! line limit, logging and graceful shutdown are the same code the prime
//! service runs on.
//!
//! A connection carries any number of lines and ends at EOF, after the idle
//! timeout without a new line, or when a line passes the line limit (it is
//! then closed without a reply). Each connection holds a worker while it is
//! open, so at most `workers` clients are served at once; the rest wait
//! their turn in the queue and then the kernel backlog.

use crate::conn::{Connection, Line, ReadError};
use crate::escape::escape_bytes;
use crate::server::{self, Handler, ServerOptions};
use crate::shutdown::Shutdown;
use slog::{debug, info, warn, Drain, Logger};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The prefix of every echo reply.
pub const PREFIX: &[u8] = b"GOT:";
/// How many bytes of a line a debug record quotes at most.
const LOGGED_LINE_LIMIT: usize = 64;

/// The echo handler, counting what it did.
#[derive(Debug, Default)]
pub struct EchoService {
    /// Lines echoed.
    lines: AtomicU64,
    /// Connections closed because the client was too slow mid-line or sent
    /// an over-long line.
    dropped: AtomicU64,
}

impl Handler for EchoService {
    fn handle(&self, mut conn: Connection, log: &Logger) {
        loop {
            match conn.read_line() {
                Ok(Line::Complete(line)) => {
                    if log.is_debug_enabled() {
                        debug!(log, "echo"; "line" => escape_bytes(&line, LOGGED_LINE_LIMIT).quoted());
                    }
                    let mut reply = Vec::with_capacity(PREFIX.len() + line.len() + 1);
                    reply.extend_from_slice(PREFIX);
                    reply.extend_from_slice(&line);
                    reply.push(b'\n');
                    conn.queue_reply(&reply);
                    self.lines.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Line::TooLong(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    warn!(log, "line longer than the limit; closing");
                    break;
                }
                Ok(Line::Closed) => break,
                Err(ReadError::Idle(after)) => {
                    debug!(log, "idle; closing"; "after" => ?after);
                    break;
                }
                Err(e @ ReadError::Deadline(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    warn!(log, "line not complete in time; closing"; "error" => %e);
                    break;
                }
                Err(ReadError::Io(e)) => {
                    debug!(log, "connection failed"; "error" => %e);
                    break;
                }
            }
        }
        if let Err(e) = conn.close() {
            debug!(log, "could not send the last replies"; "error" => %e);
        }
    }
}

/// What the echo server did, as reported at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoSummary {
    /// Lines echoed.
    pub lines: u64,
    /// Connections served.
    pub connections: u64,
    /// Connections closed for a slow or over-long line.
    pub dropped: u64,
    /// Handler panics contained.
    pub panics: u64,
    /// How long the server ran.
    pub uptime: Duration,
}

/// Serves the echo protocol until `shutdown` is requested, then finishes
/// every accepted connection, logs a summary and returns it.
///
/// # Errors
///
/// The listener could not be prepared (see [`server::serve`]).
pub fn run(
    listener: TcpListener,
    shutdown: Shutdown,
    options: &ServerOptions,
    log: &Logger,
) -> std::io::Result<EchoSummary> {
    let started = Instant::now();
    info!(log, "starting echo-server"; "pid" => std::process::id(), "version" => env!("CARGO_PKG_VERSION"));
    let service = Arc::new(EchoService::default());
    let core = server::serve(listener, &shutdown, Arc::clone(&service), options, log)?;
    let summary = EchoSummary {
        lines: service.lines.load(Ordering::Relaxed),
        connections: core.connections.load(Ordering::Relaxed),
        dropped: service.dropped.load(Ordering::Relaxed),
        panics: core.panics.load(Ordering::Relaxed),
        uptime: started.elapsed(),
    };
    info!(log, "shutdown complete";
        "lines" => summary.lines,
        "connections" => summary.connections,
        "dropped" => summary.dropped,
        "panics" => summary.panics,
        "uptime" => %crate::logging::rounded(summary.uptime));
    Ok(summary)
}
