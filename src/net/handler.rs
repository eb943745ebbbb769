//! The contract between the core and a service: a [`Handler`] serves the
//! lines of one turn and says what it wants next ([`Flow`]). This is the
//! whole of what a service (the prime service, the echo service) sees of
//! the network core, the way Python's `socketserver` separates the server
//! from the request handler.
//!
//! A handler that panics is contained by the core: the panic is counted
//! and logged (with [`panic_message`]), the connection is closed, and the
//! worker lives on.

use crate::net::connection::Connection;
use slog::Logger;

/// Serves the lines of one connection; implemented by each service.
///
/// A handler never reads from or waits on the socket: it takes the lines
/// already buffered with [`Connection::next_line`] (which stops at the
/// turn's budget) and queues replies with [`Connection::queue_reply`]. The
/// core sends them and decides where the connection goes next.
pub trait Handler: Send + Sync + 'static {
    /// Work too slow for the pool, finished on the heavy lane by
    /// [`Handler::serve_heavy`]; `Infallible` for services that have none.
    type Heavy: Send + 'static;

    /// Serves the lines of one turn.
    fn serve(&self, conn: &mut Connection, log: &Logger) -> Flow<Self::Heavy>;

    /// Finishes heavy work on a lane thread, queueing its reply.
    fn serve_heavy(
        &self,
        job: Self::Heavy,
        conn: &mut Connection,
        log: &Logger,
    ) -> Flow<Self::Heavy>;
}

/// What a handler wants after its turn.
#[derive(Debug)]
pub enum Flow<J> {
    /// Keep the connection for more lines.
    Continue,
    /// Close it once the replies are sent.
    Close,
    /// Finish this on the heavy lane first (the replies queued so far go
    /// out before it).
    Heavy(J),
}

/// Longest panic message a log record quotes, in bytes.
const PANIC_MESSAGE_LIMIT: usize = 512;

/// The message of a panic payload, escaped and bounded like client bytes:
/// it may quote them, and a record must stay one printable line.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "(non-string panic payload)"
    };
    let escaped = crate::escape::escape_bytes(text.as_bytes(), PANIC_MESSAGE_LIMIT);
    if escaped.cut_bytes == 0 {
        escaped.text
    } else {
        format!("{}...[+{} bytes]", escaped.text, escaped.cut_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::catch_unwind;

    #[test]
    fn panic_messages_are_recovered() {
        let p = catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "boom 1");
    }
}
