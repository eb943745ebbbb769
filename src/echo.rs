//! The echo service: for each line received, reply `GOT:` plus the line.
//!
//! It exists to show that the core is generic, the way Python's
//! `socketserver` separates the server from the request handler: this is
//! only a [`Handler`]; the accept loop, the waiting room, the pool,
//! admission, deadlines, the line limit, logging and graceful shutdown are
//! the same code the prime service runs on.
//!
//! A connection carries any number of lines and ends at EOF, after the idle
//! timeout without a new line, or when a line passes the line limit (it is
//! then closed without a reply). Like every connection of the core, it
//! holds a worker only while it has complete lines to answer: thousands of
//! idle echo clients cost no thread.

use crate::escape::escape_bytes;
use crate::net::{Connection, Flow, Handler, Line};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use slog::{debug, warn, Drain, Logger, Record, Serializer, KV};
use std::convert::Infallible;

/// The prefix of every echo reply.
pub const PREFIX: &[u8] = b"GOT:";
/// How many bytes of a line a debug record quotes at most.
const LOGGED_LINE_LIMIT: usize = 64;

/// The echo handler, counting what it did.
#[derive(Debug, Default)]
pub struct EchoService {
    /// Lines echoed.
    lines: Counter,
    /// Connections closed for an over-long line.
    too_long: Counter,
}

impl EchoService {
    /// What the service did so far.
    pub fn summary(&self) -> EchoSummary {
        EchoSummary {
            lines: self.lines.get(),
            too_long: self.too_long.get(),
        }
    }

    /// Registers the echo service's counters.
    pub fn register(&self, registry: &mut Registry) {
        registry.register("lines", "Lines echoed", self.lines.clone());
        registry.register(
            "lines_too_long",
            "Connections closed for a line longer than the limit",
            self.too_long.clone(),
        );
    }
}

impl Handler for EchoService {
    type Heavy = Infallible;

    fn serve(&self, conn: &mut Connection, log: &Logger) -> Flow<Infallible> {
        while let Some(line) = conn.next_line() {
            match line {
                Line::Complete(line) => {
                    if log.is_debug_enabled() {
                        debug!(log, "echo"; "peer" => %conn.peer(),
                            "line" => escape_bytes(&line, LOGGED_LINE_LIMIT).quoted());
                    }
                    conn.queue_reply(PREFIX);
                    conn.queue_reply(&line);
                    conn.queue_reply(b"\n");
                    self.lines.inc();
                }
                Line::TooLong(_) => {
                    self.too_long.inc();
                    warn!(log, "line longer than the limit; closing"; "peer" => %conn.peer());
                    return Flow::Close;
                }
            }
        }
        if conn.at_eof() {
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    fn serve_heavy(&self, job: Infallible, _: &mut Connection, _: &Logger) -> Flow<Infallible> {
        match job {}
    }
}

/// What the echo service did, as reported at shutdown (beside the core's
/// counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoSummary {
    /// Lines echoed.
    pub lines: u64,
    /// Connections closed for an over-long line.
    pub too_long: u64,
}

impl KV for EchoSummary {
    fn serialize(&self, _: &Record<'_>, serializer: &mut dyn Serializer) -> slog::Result {
        serializer.emit_u64("lines", self.lines)?;
        serializer.emit_u64("too_long", self.too_long)
    }
}
