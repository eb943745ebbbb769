//! The admin endpoint (`--admin-listen ADDR`): a small HTTP/1.x listener
//! for operators and load balancers.
//!
//! * `GET /metrics`: the Prometheus registry in the OpenMetrics text format
//!   (see [`crate::ops::registry`]).
//! * `GET /livez`: 200 while the process answers.
//! * `GET /readyz`: 200, or 503 with a one-line reason (stopping, not
//!   listening, audit log failing); see [`crate::ops::health`].
//! * `HEAD` of the same paths; anything else is 404 (405 for other methods,
//!   400 for what is not HTTP).
//!
//! It is hand-written on `std::net` (a few dozen lines) rather than a web
//! framework: three fixed paths, one request per connection, no body. It
//! runs on its own threads, apart from the service: at most
//! [`MAX_CLIENTS`] admin connections are served at once, each must send its
//! request head (at most [`MAX_HEAD`] bytes) within [`DEADLINE`], and a
//! slow or hostile admin client can delay only other admin requests, never
//! the service.

use crate::net::Semaphore;
use crate::ops::health::Health;
use crate::ops::registry;
use prometheus_client::registry::Registry;
use slog::{debug, warn, Logger};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Admin connections served at once.
pub const MAX_CLIENTS: usize = 4;
/// Longest request head read, in bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time an admin client has to send its request and read the answer.
pub const DEADLINE: Duration = Duration::from_secs(2);

/// What the admin endpoint serves.
pub struct AdminView {
    /// The metrics to expose.
    pub registry: Arc<Registry>,
    /// Readiness and liveness.
    pub health: Arc<Health>,
}

/// A running admin endpoint; dropping it stops it.
#[derive(Debug)]
pub struct Admin {
    /// Where it listens.
    addr: SocketAddr,
    /// Set to stop the accept loop.
    stop: Arc<AtomicBool>,
    /// The accept loop.
    thread: Option<JoinHandle<()>>,
}

impl Admin {
    /// Serves `view` on `listener` from a thread of its own.
    ///
    /// # Errors
    ///
    /// The thread could not be started, or the listener has no address.
    pub fn spawn(listener: TcpListener, view: AdminView, log: &Logger) -> io::Result<Admin> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let log = log.clone();
        let view = Arc::new(view);
        let thread = std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || accept_loop(&listener, &view, &stopping, &log))?;
        Ok(Admin {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocked accept(); the loop sees the flag and exits.
        let _ = TcpStream::connect_timeout(&crate::net::wake_target(self.addr), DEADLINE);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts admin connections until stopped; each is served on a short-lived
/// thread, at most [`MAX_CLIENTS`] at once.
fn accept_loop(listener: &TcpListener, view: &Arc<AdminView>, stop: &AtomicBool, log: &Logger) {
    let slots = Semaphore::new(MAX_CLIENTS);
    while !stop.load(Ordering::SeqCst) {
        let slot = slots.acquire();
        match listener.accept() {
            Ok((stream, peer)) => {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let view = Arc::clone(view);
                let client_log = log.clone();
                let spawned = std::thread::Builder::new()
                    .name("admin-client".into())
                    .spawn(move || {
                        let _slot = slot;
                        if let Err(e) = serve(stream, &view) {
                            debug!(client_log, "admin request failed"; "peer" => %peer, "error" => %e);
                        }
                    });
                if let Err(e) = spawned {
                    warn!(log, "cannot start an admin thread"; "error" => %e);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                warn!(log, "admin accept failed"; "error" => %e);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Reads one request head and answers it.
fn serve(mut stream: TcpStream, view: &AdminView) -> io::Result<()> {
    let until = Instant::now() + DEADLINE;
    stream.set_write_timeout(Some(DEADLINE))?;
    let head = read_head(&mut stream, until)?;
    let (status, content_type, body, head_only) = respond(&head, view);
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        response.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&response)?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// Reads until the blank line that ends an HTTP head, within the deadline
/// and the size bound.
fn read_head(stream: &mut TcpStream, until: Instant) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(head);
        }
        if head.len() > MAX_HEAD {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                "request head too long",
            ));
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                "request head not complete in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(head),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The status line, content type and body for a request head; `true` when
/// the body must not be sent (HEAD).
fn respond(head: &[u8], view: &AdminView) -> (&'static str, &'static str, String, bool) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return ("400 Bad Request", TEXT, "bad request\n".into(), false);
    };
    if !version.starts_with("HTTP/1.") {
        return ("400 Bad Request", TEXT, "bad request\n".into(), false);
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return (
            "405 Method Not Allowed",
            TEXT,
            "method not allowed\n".into(),
            false,
        );
    }
    let path = target.split('?').next().unwrap_or_default();
    let (status, content_type, body) = match path {
        "/metrics" => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            registry::encode(&view.registry),
        ),
        "/livez" => ("200 OK", TEXT, "alive\n".into()),
        "/readyz" => match view.health.ready() {
            Ok(()) => ("200 OK", TEXT, "ready\n".into()),
            Err(reason) => (
                "503 Service Unavailable",
                TEXT,
                format!("not ready: {reason}\n"),
            ),
        },
        _ => ("404 Not Found", TEXT, "not found\n".into()),
    };
    (status, content_type, body, head_only)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    fn view() -> AdminView {
        let mut registry = Registry::with_prefix("test");
        let counter: Counter = Counter::default();
        counter.inc_by(7);
        registry.register("things", "Things", counter);
        AdminView {
            registry: Arc::new(registry),
            health: Health::new(),
        }
    }

    fn get(admin: &Admin, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(admin.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    }

    fn start(view: AdminView) -> Admin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Admin::spawn(listener, view, &crate::ops::terminal_log::discard()).unwrap()
    }

    #[test]
    fn routes() {
        let view = view();
        let health = Arc::clone(&view.health);
        let admin = start(view);
        let metrics = get(&admin, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(metrics.contains("application/openmetrics-text"));
        assert!(
            metrics.ends_with("test_things_total 7\n# EOF\n"),
            "{metrics}"
        );
        assert!(get(&admin, b"GET /livez HTTP/1.0\r\n\r\n").ends_with("\r\n\r\nalive\n"));
        let not_ready = get(&admin, b"GET /readyz HTTP/1.1\r\n\r\n");
        assert!(not_ready.starts_with("HTTP/1.1 503 "), "{not_ready}");
        assert!(not_ready.ends_with("not ready: not listening\n"));
        health.liveness().set_listening(true);
        assert!(get(&admin, b"GET /readyz?verbose HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 OK"));
        let head = get(&admin, b"HEAD /readyz HTTP/1.1\r\n\r\n");
        assert!(
            head.ends_with(
                "Content-Length: 6\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n"
            ),
            "{head}"
        );
        assert!(get(&admin, b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert!(get(&admin, b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
        assert!(get(&admin, b"hello\r\n\r\n").starts_with("HTTP/1.1 400 "));
    }

    #[test]
    fn slow_admin_clients_do_not_block_the_endpoint_forever() {
        let admin = start(view());
        // Fill every slot with clients that send nothing.
        let idle: Vec<TcpStream> = (0..MAX_CLIENTS)
            .map(|_| TcpStream::connect(admin.addr()).unwrap())
            .collect();
        // Served once the idle ones run out of time (within the client's
        // 10 s read timeout), not never.
        let reply = get(&admin, b"GET /livez HTTP/1.1\r\n\r\n");
        assert!(reply.ends_with("alive\n"), "{reply}");
        drop(idle);
    }

    #[test]
    fn an_endless_head_is_cut_off() {
        let admin = start(view());
        let mut stream = TcpStream::connect(admin.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let garbage = vec![b'a'; MAX_HEAD * 4];
        let _ = stream.write_all(&garbage);
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        assert!(reply.is_empty(), "no answer to a head past the limit");
    }
}
