//! One client connection: line framing over non-blocking reads, buffered
//! replies with non-blocking writes, and a close that does not destroy the
//! last reply.
//!
//! Nothing here ever waits on the client. Reads take what the kernel
//! already holds (`recv` with `MSG_DONTWAIT`), writes give the kernel what
//! fits (`send` with `MSG_DONTWAIT`); whether a connection is worth a
//! worker, and how long it may take, is decided by the caller from
//! [`Connection::readiness`]: the accept loop (fast path), the waiting room
//! ([`crate::net::room`]) and the workers ([`crate::net::worker`]) share that one
//! rule.
//!
//! * **Framing** is [`LineBuffer`]'s ([`super::framing`], pure and
//!   fuzzed): a connection owns one and feeds it from `recv`, so its input
//!   never exceeds one line plus one read whatever the client sends.
//! * **Batches.** A worker takes at most its budget of lines per turn
//!   ([`Connection::grant`]), then the connection goes back behind the
//!   others: one pipelining client cannot keep a worker.
//! * **PROXY protocol.** With `--proxy-protocol` the connection starts in
//!   [`Connection::expect_proxy_header`] mode: the header is parsed from the
//!   same buffer under the same deadline, and its client address replaces
//!   the socket peer.
//! * **Closing.** If the client sent more than the lines answered
//!   (pipelined junk), closing at once would make the kernel answer with a
//!   reset that can destroy the reply in flight, so
//!   [`Connection::needs_linger`] tells the caller to half-close and drain
//!   first (the room does that, bounded by [`LINGER`] and
//!   [`LINGER_BYTES`]). It decides from what the connection has read,
//!   without asking the kernel: junk sent with the line is in the buffer
//!   (every read takes up to [`READ_CHUNK`] bytes). Input that arrives only
//!   after the line was read races with the close, as input arriving just
//!   after any close does; a second `recv` per request to narrow that
//!   window by microseconds is not worth a system call on every request.

use crate::net::framing::{Fill, Line, LineBuffer, Readiness, READ_CHUNK};
use crate::net::per_address::AddressSlot;
use crate::net::proxy::{self, ProxyError};
use socket2::SockRef;
use std::any::Any;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// How long a closing connection may drain a client's extra input.
pub const LINGER: Duration = Duration::from_millis(500);
/// How many bytes a closing connection is willing to drain.
pub const LINGER_BYTES: usize = 256 * 1024;

/// The per-connection bounds, the same for every connection of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time from accept to the end of the first line; in keep-alive mode,
    /// from a line's first byte to its end.
    pub request_timeout: Duration,
    /// Longest a keep-alive connection may sit without starting a line.
    pub idle_timeout: Duration,
    /// Longest a reply may wait for the client to read it.
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

/// An accepted client connection and its buffers.
pub struct Connection {
    /// The socket (left in blocking mode; every call here is non-blocking
    /// by its flags).
    stream: TcpStream,
    /// The client: the socket peer, or the address a PROXY header gave.
    peer: SocketAddr,
    /// The TCP peer (a load balancer, with the PROXY protocol).
    socket_peer: SocketAddr,
    /// When the connection was accepted: the first line's deadline counts
    /// from here.
    accepted: Instant,
    /// When the first byte of the line now being received arrived, if one
    /// has: a keep-alive line's deadline counts from here.
    line_started: Option<Instant>,
    /// When the buffered lines became complete (for the request-duration
    /// histogram).
    ready_since: Instant,
    /// Bytes received and not yet returned as lines, and the framing.
    input: LineBuffer,
    /// Replies not yet handed to the kernel.
    output: Vec<u8>,
    /// Bytes of `output` already sent.
    sent: usize,
    /// Some reply has been sent, so a reset on close could destroy it.
    replied: bool,
    /// `TCP_NODELAY` is set (only once a second reply could be delayed by
    /// Nagle's algorithm, to spare the syscall otherwise).
    nodelay: bool,
    /// A PROXY header must be read before any line.
    expects_proxy_header: bool,
    /// Lines taken so far over the connection's life.
    lines_taken: u64,
    /// Lines that may still be taken in this turn on a worker.
    budget: usize,
    /// The server's bounds.
    limits: Limits,
    /// The connection's claim on its address's connection count, once the
    /// address is known (with a per-address cap or rate limit on).
    per_ip: Option<AddressSlot>,
    /// The connection's admission under `--max-connections`: released
    /// when the connection is dropped, wherever that happens.
    admission: Option<Box<dyn Any + Send>>,
}

impl Connection {
    /// Wraps an accepted socket. No system call is made here.
    pub fn new(
        stream: TcpStream,
        peer: SocketAddr,
        accepted: Instant,
        limits: Limits,
    ) -> Connection {
        Connection {
            stream,
            peer,
            socket_peer: peer,
            accepted,
            line_started: None,
            ready_since: accepted,
            input: LineBuffer::new(limits.max_line_bytes),
            output: Vec::new(),
            sent: 0,
            replied: false,
            nodelay: false,
            expects_proxy_header: false,
            lines_taken: 0,
            budget: 0,
            limits,
            per_ip: None,
            admission: None,
        }
    }

    /// Keeps `admission` until the connection is dropped.
    pub fn hold_admission(&mut self, admission: Box<dyn Any + Send>) {
        self.admission = Some(admission);
    }

    /// Keeps the per-address claim until the connection is dropped.
    pub fn hold_per_ip(&mut self, slot: AddressSlot) {
        self.per_ip = Some(slot);
    }

    /// Whether the connection counts against its address already.
    pub fn counted_per_ip(&self) -> bool {
        self.per_ip.is_some()
    }

    /// Requires a PROXY protocol header before the first line.
    pub fn expect_proxy_header(&mut self) {
        self.expects_proxy_header = true;
    }

    /// The client's address (from the PROXY header when there is one).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The address the TCP connection comes from.
    pub fn socket_peer(&self) -> SocketAddr {
        self.socket_peer
    }

    /// Whether the PROXY header (if one is required) has been read, so
    /// [`Connection::peer`] is the real client.
    pub fn peer_known(&self) -> bool {
        !self.expects_proxy_header
    }

    /// The socket's descriptor, for readiness polling.
    pub fn raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// When the connection was accepted.
    pub fn accepted(&self) -> Instant {
        self.accepted
    }

    /// When the first byte of the line being received arrived, if it came
    /// by a read after a line was taken (the first line's clock is
    /// [`Connection::accepted`]). Part of a line can be buffered with no time
    /// known (it came with the lines a worker just took): see
    /// [`Connection::has_partial_line`].
    pub fn line_started(&self) -> Option<Instant> {
        self.line_started
    }

    /// Whether part of a line is buffered (its first byte has come).
    pub fn has_partial_line(&self) -> bool {
        !self.input.is_empty()
    }

    /// When the buffered lines became complete.
    pub fn ready_since(&self) -> Instant {
        self.ready_since
    }

    /// Notes that the buffered input became a complete line now.
    pub fn mark_ready(&mut self, at: Instant) {
        self.ready_since = at;
    }

    /// Lines taken over the connection's life.
    pub fn lines_taken(&self) -> u64 {
        self.lines_taken
    }

    /// The server's bounds.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether the connection will never yield another line: the client
    /// closed and every buffered line is taken, or a line was too long.
    pub fn at_eof(&self) -> bool {
        self.input.at_eof()
    }

    /// One non-blocking `recv` into the input buffer.
    ///
    /// # Errors
    ///
    /// The socket failed (a reset, say).
    pub fn fill(&mut self) -> io::Result<Fill> {
        if !self.input.wants_input() {
            return Ok(Fill::Eof);
        }
        let was_empty = self.input.is_empty();
        let stream = &self.stream;
        match self.input.read_with(|spare| recv_now(stream, spare)) {
            Ok(0) => Ok(Fill::Eof),
            Ok(n) => {
                // The first line's deadline counts from accept: no clock
                // read for it.
                if was_empty && self.lines_taken > 0 {
                    self.line_started = Some(Instant::now());
                }
                Ok(Fill::Data(n))
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(Fill::WouldBlock),
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(Fill::Data(0)),
            Err(e) => Err(e),
        }
    }

    /// Reads what the kernel holds until a line is complete, nothing more
    /// has arrived, or the client closed, and says where that leaves the
    /// connection.
    ///
    /// # Errors
    ///
    /// The socket failed.
    pub fn fill_until_ready(&mut self) -> io::Result<Readiness> {
        loop {
            let readiness = self.readiness();
            if !matches!(readiness, Readiness::Partial | Readiness::Empty) {
                return Ok(readiness);
            }
            match self.fill()? {
                Fill::Data(_) => {}
                Fill::WouldBlock | Fill::Eof => return Ok(self.readiness()),
            }
        }
    }

    /// Where the connection stands with what is buffered, without reading.
    /// Consumes a complete PROXY header when one is expected.
    pub fn readiness(&mut self) -> Readiness {
        if self.expects_proxy_header {
            match proxy::parse_header(self.input.bytes()) {
                Ok(Some(header)) => {
                    self.input.consume(header.len);
                    self.peer = header.client(self.socket_peer);
                    self.expects_proxy_header = false;
                    if self.input.is_empty() {
                        self.line_started = None;
                    }
                }
                Ok(None) if self.input.eof() => {
                    return Readiness::Rejected(ProxyError::Incomplete);
                }
                Ok(None) => return Readiness::Partial,
                Err(e) => return Readiness::Rejected(e),
            }
        }
        self.input.readiness()
    }

    /// How many lines [`Connection::next_line`] could take now, counting at
    /// most `at_most` (see [`LineBuffer::lines_ready`]).
    pub fn lines_ready(&self, at_most: usize) -> usize {
        self.input.lines_ready(at_most)
    }

    /// Allows the next `lines` calls of [`Connection::next_line`] in this
    /// turn.
    pub fn grant(&mut self, lines: usize) {
        self.budget = lines;
    }

    /// Takes the next buffered line, if one is complete and the turn's
    /// budget allows. Never reads.
    pub fn next_line(&mut self) -> Option<Line> {
        if self.budget == 0 || self.expects_proxy_header {
            return None;
        }
        let line = self.input.split_line()?;
        // What is left is the start of the next line; its clock starts when
        // the connection next waits for the rest (see `has_partial_line`),
        // so time spent queued for a worker is not held against it.
        self.line_started = None;
        self.budget -= 1;
        self.lines_taken += 1;
        Some(line)
    }

    /// Gives back the buffers' memory while the connection idles with
    /// nothing buffered, so thousands of idle connections stay cheap.
    pub fn shrink(&mut self) {
        self.input.shrink();
        if self.output.is_empty() {
            self.output = Vec::new();
        }
    }

    /// Queues a reply; [`Connection::flush`] sends it.
    pub fn queue_reply(&mut self, reply: &[u8]) {
        self.output.extend_from_slice(reply);
    }

    /// Whether queued replies are waiting to be sent.
    pub fn has_output(&self) -> bool {
        self.sent < self.output.len()
    }

    /// Hands queued replies to the kernel without waiting. Returns `true`
    /// when everything is sent, `false` when the client is not reading and
    /// the rest must wait for the socket to become writable.
    ///
    /// # Errors
    ///
    /// The socket failed (the client reset the connection, say).
    pub fn flush(&mut self) -> io::Result<bool> {
        if !self.has_output() {
            return Ok(true);
        }
        // Nagle's algorithm never delays a first segment, but would hold a
        // later small reply until the previous one is acknowledged.
        if self.replied && !self.nodelay {
            self.stream.set_nodelay(true)?;
            self.nodelay = true;
        }
        self.replied = true;
        while self.sent < self.output.len() {
            match send_now(&self.stream, &self.output[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.output.clear();
        self.sent = 0;
        Ok(true)
    }

    /// Whether closing now could turn into a reset that destroys a reply
    /// in flight: a reply was sent and the connection read more than it
    /// answered (see the module docs for why the kernel is not asked).
    /// Then the caller half-closes with [`Connection::half_close`] and
    /// drains with [`Connection::drain`] before dropping the connection.
    pub fn needs_linger(&self) -> bool {
        if !self.replied || (self.input.eof() && self.input.is_empty()) {
            return false;
        }
        self.input.stopped() || !self.input.is_empty()
    }

    /// Sends FIN: the replies are complete.
    pub fn half_close(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads and discards what has arrived. Returns `true` once the client
    /// has closed or [`LINGER_BYTES`] were drained: then the connection can
    /// be dropped.
    pub fn drain(&mut self, drained: &mut usize) -> bool {
        let mut sink = [0u8; READ_CHUNK];
        while *drained < LINGER_BYTES {
            match recv_now(&self.stream, &mut sink) {
                Ok(0) => return true,
                Ok(n) => *drained += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(_) => return true,
            }
        }
        true
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("socket_peer", &self.socket_peer)
            .field("buffered", &self.input.len())
            .field("unsent", &(self.output.len() - self.sent))
            .field("lines_taken", &self.lines_taken)
            .finish_non_exhaustive()
    }
}

/// `recv(2)` with `MSG_DONTWAIT`: whatever has arrived, without blocking
/// and without touching the socket's mode.
fn recv_now(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole
    // call, and the descriptor stays open while `stream` is borrowed.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// `send(2)` with `MSG_DONTWAIT | MSG_NOSIGNAL`: what fits in the socket's
/// buffer now, never a `SIGPIPE`.
fn send_now(stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    SockRef::from(stream).send_with_flags(buf, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    /// A connection over loopback and the client's end of it (whose
    /// reads give up after 10 s, so a broken connection fails a test
    /// instead of hanging it).
    fn pair(limits: Limits) -> (Connection, TcpStream) {
        pair_at(limits, Instant::now())
    }

    /// As [`pair`], accepted at `accepted`.
    fn pair_at(limits: Limits, accepted: Instant) -> (Connection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (stream, peer) = listener.accept().unwrap();
        (Connection::new(stream, peer, accepted, limits), client)
    }

    /// Bytes the kernel holds unread for the connection.
    fn unread(conn: &Connection) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int through a valid pointer, on a
        // descriptor the connection keeps open.
        let rc = unsafe { libc::ioctl(conn.raw_fd(), libc::FIONREAD, &raw mut n) };
        assert_eq!(rc, 0);
        usize::try_from(n).unwrap()
    }

    /// Waits (bounded) until `condition` holds.
    fn eventually(mut condition: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < until, "condition never held");
            std::thread::yield_now();
        }
    }

    /// Resets the connection from the client's side (RST, not FIN).
    fn reset(client: TcpStream) {
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(client);
    }

    #[test]
    fn a_connection_counts_the_lines_it_has_buffered() {
        let (mut conn, mut client) = pair(Limits::default());
        client.write_all(b"1\n2\n3\n4").unwrap();
        eventually(|| conn.fill_until_ready().unwrap() == Readiness::Line && conn.input.len() == 7);
        assert_eq!(conn.lines_ready(64), 3);
        assert_eq!(conn.lines_ready(2), 2);
        conn.grant(1);
        assert!(conn.next_line().is_some());
        assert_eq!(conn.lines_ready(64), 2);
    }

    #[test]
    fn default_limits_are_the_documented_ones() {
        // docs/operations.md#running-it: 5 s request, 10 s idle, 5 s write,
        // 65536 bytes.
        let limits = Limits::default();
        assert_eq!(limits.request_timeout, Duration::from_secs(5));
        assert_eq!(limits.idle_timeout, Duration::from_secs(10));
        assert_eq!(limits.write_timeout, Duration::from_secs(5));
        assert_eq!(limits.max_line_bytes, 65_536);
        // docs/operations.md#limits-and-failure-behaviour: a lingering close
        // drains for up to 500 ms (256 KiB); at most max-line-bytes + 4 KiB is
        // buffered.
        assert_eq!(
            (LINGER, LINGER_BYTES),
            (Duration::from_millis(500), 256 << 10)
        );
        assert_eq!(READ_CHUNK, 4 << 10);
    }

    #[test]
    fn a_connection_knows_its_peer_times_and_limits() {
        let limits = Limits {
            request_timeout: Duration::from_millis(1234),
            max_line_bytes: 77,
            ..Limits::default()
        };
        let accepted = Instant::now();
        let (mut conn, mut client) = pair_at(limits, accepted);
        let me = client.local_addr().unwrap();
        assert_eq!((conn.peer(), conn.socket_peer()), (me, me));
        assert!(conn.peer_known());
        assert_eq!(conn.raw_fd(), conn.stream.as_raw_fd());
        assert_eq!(conn.accepted(), accepted);
        assert_eq!(conn.ready_since(), accepted);
        assert_eq!(conn.limits(), &limits);
        assert_eq!(conn.line_started(), None);
        client.write_all(b"1\n2\n3").unwrap();
        assert_eq!(settle(&mut conn), Readiness::Line);
        // The first line's clock is the accept time: no clock is read.
        assert_eq!(conn.line_started(), None);
        let ready = Instant::now();
        conn.mark_ready(ready);
        assert_eq!(conn.ready_since(), ready);
        conn.grant(1);
        assert_eq!(conn.next_line(), Some(Line::Complete(b"1".to_vec())));
        // What is left is the start of the next line; its clock starts when
        // the connection next waits (the room reads "now" then).
        assert!(conn.has_partial_line());
        assert_eq!(conn.line_started(), None);
        conn.grant(5);
        assert_eq!(conn.next_line(), Some(Line::Complete(b"2".to_vec())));
        assert_eq!(conn.next_line(), None);
        assert!(conn.has_partial_line(), "3 is buffered");
        client.write_all(b"\n4").unwrap();
        assert_eq!(settle(&mut conn), Readiness::Line);
        assert_eq!(conn.next_line(), Some(Line::Complete(b"3".to_vec())));
        assert_eq!(conn.next_line(), None);
        assert!(conn.has_partial_line(), "4 is buffered");
        conn.grant(5);
        client.write_all(b"\n").unwrap();
        assert_eq!(settle(&mut conn), Readiness::Line);
        assert_eq!(conn.next_line(), Some(Line::Complete(b"4".to_vec())));
        assert!(!conn.has_partial_line(), "nothing is buffered");
        // A later line read from empty starts its own clock.
        let before = Instant::now();
        client.write_all(b"5").unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while !conn.has_partial_line() && Instant::now() < until {
            conn.fill_until_ready().unwrap();
            std::thread::yield_now();
        }
        assert_eq!(conn.readiness(), Readiness::Partial);
        assert!(conn.line_started().expect("5 started a line") >= before);
        assert_eq!(conn.lines_taken(), 4);
        assert!(!conn.at_eof());
        assert!(format!("{conn:?}").starts_with("Connection {"));
    }

    #[test]
    fn claims_on_admission_and_address_last_as_long_as_the_connection() {
        /// Sets its flag when dropped.
        struct Flag(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        use std::sync::Arc;
        let (mut conn, _client) = pair(Limits::default());
        let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
        conn.hold_admission(Box::new(Flag(Arc::clone(&released))));
        let clients = crate::net::per_address::AddressLimits::new(Some(1), None).expect("a cap");
        let ip = conn.peer().ip();
        assert!(!conn.counted_per_ip());
        conn.hold_per_ip(clients.admit(ip).expect("the first connection"));
        assert!(conn.counted_per_ip());
        assert!(clients.admit(ip).is_err(), "the cap is 1 and held");
        assert!(!released.load(std::sync::atomic::Ordering::SeqCst));
        drop(conn);
        assert!(released.load(std::sync::atomic::Ordering::SeqCst));
        assert!(
            clients.admit(ip).is_ok(),
            "the claim went with the connection"
        );
    }

    #[test]
    fn a_proxy_header_names_the_client_before_any_line() {
        let (mut conn, mut client) = pair(Limits::default());
        let me = client.local_addr().unwrap();
        conn.expect_proxy_header();
        assert!(!conn.peer_known());
        conn.grant(10);
        client
            .write_all(b"PROXY TCP4 192.0.2.1 192.0.2.2 ")
            .unwrap();
        settle_to(&mut conn, &Readiness::Partial);
        assert_eq!(conn.next_line(), None, "no line before the header");
        client.write_all(b"1234 80\r\n").unwrap();
        settle_to(&mut conn, &Readiness::Empty);
        assert!(conn.peer_known());
        assert_eq!(conn.peer(), "192.0.2.1:1234".parse().unwrap());
        assert_eq!(conn.socket_peer(), me);
        assert_eq!(conn.line_started(), None, "the header is not a line");
        client.write_all(b"17\n").unwrap();
        assert_eq!(settle(&mut conn), Readiness::Line);
        assert_eq!(conn.next_line(), Some(Line::Complete(b"17".to_vec())));
    }

    #[test]
    fn a_bad_or_unfinished_proxy_header_is_rejected() {
        let (mut conn, mut client) = pair(Limits::default());
        conn.expect_proxy_header();
        client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        assert!(matches!(settle(&mut conn), Readiness::Rejected(_)));
        let (mut conn, mut client) = pair(Limits::default());
        conn.expect_proxy_header();
        client.write_all(b"PROXY TCP4 192.0.2.1").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(
            settle(&mut conn),
            Readiness::Rejected(ProxyError::Incomplete)
        );
    }

    #[test]
    fn a_reset_is_an_error_not_data_or_a_pause() {
        let (mut conn, mut client) = pair(Limits::default());
        client.write_all(b"1").unwrap();
        settle_to(&mut conn, &Readiness::Partial);
        reset(client);
        let until = Instant::now() + Duration::from_secs(10);
        let error = loop {
            match conn.fill() {
                Err(e) => break e,
                Ok(Fill::WouldBlock) => assert!(Instant::now() < until, "no error"),
                Ok(other) => panic!("a reset read as {other:?}"),
            }
        };
        assert_eq!(error.kind(), ErrorKind::ConnectionReset);
        conn.queue_reply(b"T\n");
        let sent = (0..100).find_map(|_| conn.flush().err());
        assert!(sent.is_some(), "a write to a reset connection must fail");
        let mut drained = 0;
        assert!(conn.drain(&mut drained), "a reset ends the drain");
    }

    #[test]
    fn nagle_is_turned_off_only_for_a_second_reply() {
        let (mut conn, mut client) = pair(Limits::default());
        let nodelay = |conn: &Connection| socket2::SockRef::from(&conn.stream).nodelay().unwrap();
        conn.queue_reply(b"T\n");
        assert!(conn.flush().unwrap());
        assert!(!nodelay(&conn), "a first reply needs no TCP_NODELAY");
        assert!(conn.flush().unwrap(), "nothing to send is done");
        assert!(!nodelay(&conn));
        conn.queue_reply(b"F\n");
        assert!(conn.flush().unwrap());
        assert!(nodelay(&conn), "a second reply could wait for an ACK");
        let mut buf = [0u8; 4];
        std::io::Read::read_exact(&mut client, &mut buf).unwrap();
        assert_eq!(&buf, b"T\nF\n");
    }

    #[test]
    fn shrink_gives_back_both_buffers_when_they_are_empty() {
        let (mut conn, mut client) = pair(Limits::default());
        client.write_all(b"1\n2").unwrap();
        assert_eq!(settle(&mut conn), Readiness::Line);
        conn.queue_reply(b"T\n");
        conn.shrink();
        assert!(conn.input.capacity() > 0 && conn.output.capacity() > 0);
        assert!(conn.flush().unwrap());
        conn.grant(1);
        assert!(conn.next_line().is_some());
        client.write_all(b"\n").unwrap();
        assert_eq!(settle(&mut conn), Readiness::Line);
        conn.grant(1);
        assert!(conn.next_line().is_some());
        conn.shrink();
        assert_eq!((conn.input.capacity(), conn.output.capacity()), (0, 0));
    }

    #[test]
    fn a_close_lingers_only_when_a_reset_could_destroy_a_reply() {
        // Nothing sent yet: never.
        let (mut conn, mut client) = pair(Limits::default());
        client.write_all(b"1\n2\n").unwrap();
        eventually(|| unread(&conn) == 4);
        assert!(!conn.needs_linger(), "no reply to destroy");
        // Nothing sent, input read into the buffer: still never.
        let (mut fresh, mut other) = pair(Limits::default());
        other.write_all(b"1\n2\n").unwrap();
        assert_eq!(settle(&mut fresh), Readiness::Line);
        assert!(!fresh.input.is_empty());
        assert!(!fresh.needs_linger(), "no reply to destroy, input buffered");
        // Replied, with input the server never read: decided from what was
        // read, without a system call, so no.
        conn.queue_reply(b"T\n");
        assert!(conn.flush().unwrap());
        assert!(!conn.needs_linger(), "decided without asking the kernel");
        // Replied, with input read but not taken: yes.
        assert_eq!(settle(&mut conn), Readiness::Line);
        assert_eq!(unread(&conn), 0);
        assert!(conn.needs_linger(), "unread input in the buffer");
        // Replied, everything taken, the client still there: no.
        conn.grant(2);
        assert!(conn.next_line().is_some() && conn.next_line().is_some());
        assert!(!conn.needs_linger());
        // Replied, the client closed and everything taken: no.
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(settle(&mut conn), Readiness::Closed);
        assert!(!conn.needs_linger());
        // Replied after an over-long line: yes, the rest was never read.
        let limits = Limits {
            max_line_bytes: 2,
            ..Limits::default()
        };
        let (mut conn, mut client) = pair(limits);
        client.write_all(b"123").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(settle(&mut conn), Readiness::Line);
        conn.grant(1);
        assert_eq!(conn.next_line(), Some(Line::TooLong(b"123".to_vec())));
        assert!(conn.at_eof() && conn.input.is_empty());
        conn.queue_reply(b"E\n");
        assert!(conn.flush().unwrap());
        assert!(conn.needs_linger(), "the line was cut, not read to its end");
    }

    #[test]
    fn a_lingering_close_half_closes_and_drains_until_the_client_closes() {
        let (mut conn, mut client) = pair(Limits::default());
        conn.queue_reply(b"T\n");
        assert!(conn.flush().unwrap());
        client.write_all(b"junk").unwrap();
        eventually(|| unread(&conn) == 4);
        conn.half_close();
        let mut reply = Vec::new();
        std::io::Read::read_to_end(&mut client, &mut reply).unwrap();
        assert_eq!(reply, b"T\n", "the reply, then FIN");
        let mut drained = 0;
        assert!(!conn.drain(&mut drained), "the client has not closed");
        assert_eq!(drained, 4);
        drop(client);
        eventually(|| conn.drain(&mut drained));
        assert_eq!(drained, 4);
    }

    #[test]
    fn a_reset_during_the_drain_ends_it() {
        let (mut conn, mut client) = pair(Limits::default());
        client.write_all(b"junk").unwrap();
        reset(client);
        // Wait (without reading) until the reset has arrived.
        eventually(|| {
            let mut fd = libc::pollfd {
                fd: conn.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, a zero timeout.
            unsafe { libc::poll(&raw mut fd, 1, 0) == 1 && fd.revents & libc::POLLERR != 0 }
        });
        let mut drained = 0;
        assert!(conn.drain(&mut drained), "the first read fails: done");
    }

    #[test]
    fn a_drain_stops_after_linger_bytes() {
        let (mut conn, mut client) = pair(Limits::default());
        // Exactly LINGER_BYTES, the client still connected: done.
        let flood = vec![b'x'; LINGER_BYTES];
        let writer = std::thread::spawn(move || {
            client.write_all(&flood).unwrap();
            client
        });
        let mut drained = 0;
        eventually(|| conn.drain(&mut drained));
        assert_eq!(drained, LINGER_BYTES);
        let _client = writer.join().unwrap();
    }

    /// Reads until the connection stands as `expected`, bounded (for
    /// states `settle` would keep waiting through).
    fn settle_to(conn: &mut Connection, expected: &Readiness) {
        eventually(|| conn.fill_until_ready().unwrap() == *expected);
    }

    /// Reads until the connection is ready or closed, bounded.
    fn settle(conn: &mut Connection) -> Readiness {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let r = conn.fill_until_ready().unwrap();
            if !matches!(r, Readiness::Partial | Readiness::Empty) || Instant::now() > until {
                return r;
            }
            std::thread::yield_now();
        }
    }

    #[test]
    fn lines_are_split_in_order_and_budgeted() {
        let (mut conn, mut client) = pair(Limits::default());
        client.write_all(b"1\n22\n333").unwrap();
        assert_eq!(settle(&mut conn), Readiness::Line);
        conn.grant(1);
        assert_eq!(conn.next_line(), Some(Line::Complete(b"1".to_vec())));
        assert_eq!(conn.next_line(), None, "budget spent");
        conn.grant(10);
        assert_eq!(conn.next_line(), Some(Line::Complete(b"22".to_vec())));
        assert_eq!(conn.next_line(), None, "333 is not complete");
        assert_eq!(conn.readiness(), Readiness::Partial);
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(settle(&mut conn), Readiness::Line);
        assert_eq!(conn.next_line(), Some(Line::Complete(b"333".to_vec())));
        assert!(conn.at_eof());
        assert_eq!(conn.readiness(), Readiness::Closed);
        assert_eq!(conn.lines_taken(), 3);
    }

    #[test]
    fn an_over_long_line_stops_reading() {
        let limits = Limits {
            max_line_bytes: 8,
            ..Limits::default()
        };
        let (mut conn, mut client) = pair(limits);
        client.write_all(b"123456789012\n4\n").unwrap();
        assert_eq!(settle(&mut conn), Readiness::Line);
        conn.grant(10);
        assert_eq!(conn.next_line(), Some(Line::TooLong(b"123456789".to_vec())));
        assert_eq!(conn.next_line(), None);
        assert!(conn.at_eof());
        assert_eq!(conn.fill().unwrap(), Fill::Eof);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_complete() {
        let limits = Limits {
            max_line_bytes: 4,
            ..Limits::default()
        };
        let (mut conn, mut client) = pair(limits);
        client.write_all(b"1234\n").unwrap();
        assert_eq!(settle(&mut conn), Readiness::Line);
        conn.grant(1);
        assert_eq!(conn.next_line(), Some(Line::Complete(b"1234".to_vec())));
    }

    #[test]
    fn empty_then_closed() {
        let (mut conn, client) = pair(Limits::default());
        assert_eq!(conn.fill_until_ready().unwrap(), Readiness::Empty);
        drop(client);
        assert_eq!(settle(&mut conn), Readiness::Closed);
    }

    #[test]
    fn replies_are_flushed() {
        let (mut conn, mut client) = pair(Limits::default());
        conn.queue_reply(b"T\n");
        assert!(conn.has_output());
        assert!(conn.flush().unwrap());
        assert!(!conn.has_output());
        let mut buf = [0u8; 2];
        std::io::Read::read_exact(&mut client, &mut buf).unwrap();
        assert_eq!(&buf, b"T\n");
    }

    #[test]
    fn a_client_that_does_not_read_makes_flush_pending_not_blocking() {
        let (mut conn, _client) = pair(Limits::default());
        let chunk = vec![b'x'; 1 << 20];
        let mut pending = false;
        for _ in 0..64 {
            conn.queue_reply(&chunk);
            if !conn.flush().unwrap() {
                pending = true;
                break;
            }
        }
        assert!(pending, "64 MiB fitted in loopback buffers?");
        assert!(conn.has_output());
        assert!(conn.sent > 0, "part of it went out");
        let unsent = conn.output.len() - conn.sent;
        assert!(
            format!("{conn:?}").contains(&format!("unsent: {unsent},")),
            "{conn:?}"
        );
    }
}
