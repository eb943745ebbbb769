//! Seals off the host (`--seal-syslog HOST:PORT`): every seal record, as
//! written, becomes the body of an RFC 5424 syslog message sent over TCP
//! with octet-counting framing (RFC 6587), so a collector keeps a copy the
//! machine's own root cannot take back. `prime-audit verify --seals-from`
//! compares the local chain with that copy.
//!
//! The sealing thread hands records to a bounded queue and never waits: a
//! full queue drops the record (counted). One shipping thread connects,
//! sends, and on any error reconnects with exponential back-off; a record
//! whose write failed is sent again on the new connection (the collector
//! may then hold it twice, which the verifier accepts).
//!
//! The message is hand-written (it is one line of text): `<109>1 TIME HOST
//! prime-server PID seal - RECORD`, facility 13 ("log audit") and severity
//! 5 (notice), well under rsyslog's default 8 KiB message size (a record is
//! at most about 1.6 KiB).

use prometheus_client::metrics::counter::Counter;
use slog::{info, warn, Logger};
use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Records waiting to be shipped, at most.
pub const QUEUE: usize = 4096;
/// Syslog priority: facility 13 (log audit) * 8 + severity 5 (notice).
const PRI: u32 = 13 * 8 + 5;
/// First and longest wait before reconnecting.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(10));
/// How long a connection attempt or a write may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Least time between two warnings about a failing collector.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What shipping counts (shared with `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct ShipMetrics {
    /// Records written to the collector's connection.
    pub shipped: Counter,
    /// Records dropped: the queue was full, or the server stopped before
    /// the collector could be reached.
    pub dropped: Counter,
    /// Failed connection attempts and writes.
    pub failures: Counter,
}

/// The shipping queue and thread.
#[derive(Debug)]
pub struct Shipper {
    /// The queue's sending end (dropped to stop the thread).
    queue: Option<SyncSender<String>>,
    /// When the thread must give up on records it cannot send.
    give_up: Arc<parking_lot::Mutex<Option<Instant>>>,
    /// The thread.
    thread: Option<JoinHandle<()>>,
    /// For counting what the queue refuses.
    metrics: ShipMetrics,
}

impl Shipper {
    /// Starts shipping to `target` (`HOST:PORT`, resolved at each connect).
    ///
    /// # Errors
    ///
    /// The thread cannot be started.
    pub fn start(target: &str, metrics: ShipMetrics, log: &Logger) -> io::Result<Shipper> {
        let (queue, records) = sync_channel(QUEUE);
        let give_up = Arc::new(parking_lot::Mutex::new(None));
        let mut link = Link {
            target: target.to_owned(),
            host: hostname(),
            pid: std::process::id(),
            conn: None,
            give_up: Arc::clone(&give_up),
            metrics: metrics.clone(),
            log: log.clone(),
            last_warning: None,
        };
        let thread = std::thread::Builder::new()
            .name("audit-ship".into())
            .spawn(move || link.run(&records))?;
        Ok(Shipper {
            queue: Some(queue),
            give_up,
            thread: Some(thread),
            metrics,
        })
    }

    /// Queues `record` (a seal line) without waiting; drops it, counted,
    /// when the queue is full.
    pub fn send(&self, record: &str) {
        let Some(queue) = &self.queue else { return };
        match queue.try_send(record.to_owned()) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics.dropped.inc();
            }
        }
    }

    /// Sends what is queued, giving up (dropping, counted) on what cannot
    /// be sent within `within`, and stops the thread.
    pub fn close(&mut self, within: Duration) {
        *self.give_up.lock() = Some(Instant::now() + within);
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        self.close(Duration::from_secs(2));
    }
}

/// The shipping thread's side.
struct Link {
    /// `HOST:PORT`.
    target: String,
    /// This machine's name, as syslog's HOSTNAME field.
    host: String,
    /// Our process id, as PROCID.
    pid: u32,
    /// The connection, when there is one.
    conn: Option<TcpStream>,
    /// Set when the server stops.
    give_up: Arc<parking_lot::Mutex<Option<Instant>>>,
    /// Counters.
    metrics: ShipMetrics,
    /// For warnings.
    log: Logger,
    /// When the last warning was logged.
    last_warning: Option<Instant>,
}

impl Link {
    fn run(&mut self, records: &Receiver<String>) {
        let mut backoff = BACKOFF.0;
        let mut pending: Option<String> = None;
        loop {
            let record = match pending.take() {
                Some(r) => r,
                None => match records.recv() {
                    Ok(r) => r,
                    Err(_) => return,
                },
            };
            if self.given_up() {
                self.metrics.dropped.inc();
                continue;
            }
            match self.ship(&record) {
                Ok(()) => {
                    self.metrics.shipped.inc();
                    if backoff > BACKOFF.0 {
                        info!(self.log, "shipping seals to the collector again"; "collector" => %self.target);
                    }
                    backoff = BACKOFF.0;
                }
                Err(e) => {
                    self.metrics.failures.inc();
                    self.conn = None;
                    self.warn(&e);
                    pending = Some(record);
                    self.pause(backoff);
                    backoff = (backoff * 2).min(BACKOFF.1);
                }
            }
        }
    }

    /// Sends one record, connecting first if needed.
    fn ship(&mut self, record: &str) -> io::Result<()> {
        if self.conn.is_none() {
            self.conn = Some(connect(&self.target)?);
        }
        let frame = frame(&self.host, self.pid, record, SystemTime::now());
        match self.conn.as_mut() {
            Some(conn) => conn.write_all(frame.as_bytes()),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Whether the server stopped and the time to send is over.
    fn given_up(&self) -> bool {
        self.give_up.lock().is_some_and(|at| Instant::now() >= at)
    }

    /// Waits `how_long`, or less if the server stops meanwhile.
    fn pause(&self, how_long: Duration) {
        let until = Instant::now() + how_long;
        while Instant::now() < until && !self.given_up() {
            std::thread::sleep(Duration::from_millis(20).min(how_long));
        }
    }

    fn warn(&mut self, e: &io::Error) {
        let due = self
            .last_warning
            .is_none_or(|at| at.elapsed() >= WARN_EVERY);
        if due {
            warn!(self.log, "cannot ship seals to the collector; retrying";
                "collector" => %self.target, "error" => %e);
            self.last_warning = Some(Instant::now());
        }
    }
}

/// A connection to the first address of `target` that answers.
fn connect(target: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the address resolves to nothing");
    for addr in target.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
            Ok(conn) => {
                conn.set_write_timeout(Some(IO_TIMEOUT))?;
                conn.set_nodelay(true)?;
                return Ok(conn);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// One octet-counted frame (RFC 6587 3.4.1) holding an RFC 5424 message
/// whose body is `record`.
pub(super) fn frame(host: &str, pid: u32, record: &str, at: SystemTime) -> String {
    let message = format!(
        "<{PRI}>1 {} {host} prime-server {pid} seal - {record}",
        humantime::format_rfc3339_micros(at)
    );
    format!("{} {message}", message.len())
}

/// This machine's name as RFC 5424 allows it (printable ASCII, no spaces,
/// at most 255 characters), or `-`.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname(2) writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name: String = if rc == 0 {
        buf.iter()
            .take_while(|&&b| b != 0)
            .filter(|b| (33..=126).contains(*b))
            .take(255)
            .map(|&b| char::from(b))
            .collect()
    } else {
        String::new()
    };
    if name.is_empty() {
        "-".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    #[test]
    fn a_frame_is_an_octet_counted_rfc5424_message_with_the_record_as_body() {
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let f = frame("host1", 42, "seal v2 seq=0 x", at);
        let (len, message) = f.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), message.len());
        assert_eq!(
            message,
            "<109>1 2026-09-21T14:13:20.000000Z host1 prime-server 42 seal - seal v2 seq=0 x"
        );
        let host = hostname();
        assert!(!host.is_empty() && !host.contains(' '));
    }

    /// Records reach a collector that starts late (after failed attempts,
    /// counted), in order.
    #[test]
    fn records_get_through_after_the_collector_appears() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let metrics = ShipMetrics::default();
        let log = Logger::root(slog::Discard, slog::o!());
        let mut shipper = Shipper::start(&addr.to_string(), metrics.clone(), &log).unwrap();
        shipper.send("seal v2 seq=0 a");
        let deadline = Instant::now() + Duration::from_secs(20);
        while metrics.failures.get() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(metrics.failures.get() > 0);
        let listener = TcpListener::bind(addr).unwrap();
        shipper.send("seal v2 seq=1 b");
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut got = String::new();
        let mut buf = [0u8; 4096];
        while !got.contains("seq=1 b") {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "closed early: {got}");
            got.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        assert!(got.find("seq=0 a").unwrap() < got.find("seq=1 b").unwrap());
        shipper.close(Duration::from_secs(1));
        assert_eq!(metrics.shipped.get(), 2);
        assert_eq!(metrics.dropped.get(), 0);
    }

    #[test]
    fn what_cannot_be_shipped_is_dropped_and_counted_never_waited_for() {
        // No collector: the queue fills, later records are refused at once
        // (counted), and at the stop whatever is still queued is given up
        // (counted): every record is either shipped or counted as dropped.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let metrics = ShipMetrics::default();
        let log = Logger::root(slog::Discard, slog::o!());
        let mut shipper = Shipper::start(&addr.to_string(), metrics.clone(), &log).unwrap();
        let sent = QUEUE + 10;
        let started = Instant::now();
        for n in 0..sent {
            shipper.send(&format!("seal v2 seq={n} x"));
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "send never waits"
        );
        assert!(
            metrics.dropped.get() >= 9,
            "a full queue refuses: {}",
            metrics.dropped.get()
        );
        shipper.close(Duration::ZERO);
        assert_eq!(metrics.shipped.get(), 0);
        assert_eq!(metrics.dropped.get(), u64::try_from(sent).unwrap());
    }
}
