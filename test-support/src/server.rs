//! The server on `127.0.0.1:0`, on a thread of the test process
//! ([`TestServer`]): the same [`Server`] the binary runs, opened on a
//! [`PrimeService`] with a fresh audit log, and its counters, summary and
//! admin endpoint within reach. Also a logger a test can read
//! ([`capture_logger`]).

use crate::audit::read_lines;
use crate::io::http_get;
use prime_server::net::{CoreMetrics, Shutdown};
use prime_server::ops::{discard, Admin, AdminView, Server, Summary};
use prime_server::prime::{Config, PrimeService, PrimeSummary};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A server running inside the test process, on an ephemeral port.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its audit log.
    pub audit_path: PathBuf,
    /// The handle that stops it.
    pub shutdown: Shutdown,
    /// The core's counters, live.
    pub metrics: CoreMetrics,
    /// The prime service (its counts, live, through `summary()`).
    pub service: Arc<PrimeService>,
    /// Its admin endpoint (`/metrics`, `/readyz`), on another ephemeral port.
    pub admin: Admin,
    /// The thread running the server.
    thread: Option<JoinHandle<Summary<PrimeSummary>>>,
    /// Keeps the audit directory alive.
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with the default configuration.
    pub fn start() -> TestServer {
        TestServer::start_with(|_| {})
    }

    /// Starts a server after `tweak` adjusts its configuration; the audit
    /// log goes to a fresh temporary directory.
    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        TestServer::start_on(listener, tweak)
    }

    /// Starts a server on a listener the test bound itself (IPv6, say).
    pub fn start_on(listener: TcpListener, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let audit_path = dir.path().join("logs/prime_server.log");
        let mut config = Config {
            audit_log: audit_path.clone(),
            ..Config::default()
        };
        tweak(&mut config);
        let addr = listener.local_addr().expect("local addr");
        let log = discard();
        let service = PrimeService::open(&config, &log).expect("the audit log opens");
        let server = Server::open(service, &config.server, &log);
        let metrics = server.core_metrics().clone();
        let service = Arc::clone(server.service());
        let admin = Admin::spawn(
            TcpListener::bind("127.0.0.1:0").expect("bind admin"),
            AdminView {
                registry: server.registry(),
                health: server.health(),
            },
            &log,
        )
        .expect("admin starts");
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let thread = std::thread::spawn(move || server.run(listener, stop).expect("server runs"));
        TestServer {
            addr,
            audit_path,
            shutdown,
            metrics,
            service,
            admin,
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// Stops the server gracefully and returns its summary.
    pub fn stop(mut self) -> Summary<PrimeSummary> {
        self.shutdown.request();
        self.thread
            .take()
            .expect("not stopped yet")
            .join()
            .expect("server thread")
    }

    /// The audit log's lines so far.
    pub fn audit_lines(&self) -> Vec<String> {
        read_lines(&self.audit_path)
    }

    /// `GET path` on the admin endpoint: (status code, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin.addr(), path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shutdown.request();
            let _ = thread.join();
        }
    }
}

/// A logger whose records (plain text, one per line) land in a buffer the
/// test can read.
pub fn capture_logger() -> (slog::Logger, Arc<Mutex<Vec<u8>>>) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let decorator = slog_term::PlainSyncDecorator::new(SharedBuffer(Arc::clone(&buffer)));
    let drain = slog_term::FullFormat::new(decorator).build();
    let drain = std::sync::Mutex::new(drain);
    (
        slog::Logger::root(slog::Drain::fuse(drain), slog::o!()),
        buffer,
    )
}

/// A `Write` into a shared buffer.
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer lock").extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
