//! Helpers shared by the integration tests: servers on `127.0.0.1:0`
//! (in-process or the real binary), raw exchanges, and audit-log reading.
//! Every wait here is bounded, so a broken server fails a test instead of
//! hanging it.

#![allow(dead_code)] // each test file uses a different subset

pub mod haproxy;

use prime_server::net::{CoreMetrics, Shutdown};
use prime_server::ops::{discard, Admin, AdminView, Health, Server, Summary};
use prime_server::prime::{Config, PrimeService, PrimeSummary};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown as Half, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest any single test exchange may take before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

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
    /// Its health, live.
    pub health: Arc<Health>,
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
        let health = server.health();
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
            health,
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

/// `GET path` over HTTP/1.1 at `addr`: (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = connect(addr);
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .expect("send request");
    let response = String::from_utf8(read_to_close(&mut stream)).expect("UTF-8 response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// The value of the sample `name` (exact series, labels included) in a
/// Prometheus text exposition.
pub fn metric(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        (series == name).then(|| value.parse().ok()).flatten()
    })
}

/// Where this run is: on CI every test must run, so a missing tool or
/// facility fails the test instead of skipping it.
pub fn on_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Skips the calling test loudly, or fails it on CI. Returns so the test
/// can `return` right after.
pub fn skip(reason: &str) {
    assert!(!on_ci(), "cannot run on CI: {reason}");
    eprintln!("SKIPPED (not on CI): {reason}");
}

/// Whether `tool` is on the PATH (or in /usr/sbin, /sbin).
pub fn have_tool(tool: &str) -> bool {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    on_path
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|dir| Path::new(dir).join(tool).is_file())
}

/// The lines of a text file, or none if it does not exist yet.
pub fn read_lines(path: &Path) -> Vec<String> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .expect("audit log is UTF-8 (it should be pure ASCII)")
            .lines()
            .map(str::to_owned)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Sends `request` as is, half-closes, and returns everything the server
/// sends until it closes.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    stream.write_all(request).expect("write request");
    let _ = stream.shutdown(Half::Write);
    read_to_close(&mut stream)
}

/// Sends one line (a newline is added) the way the seed client does, without
/// half-closing, and returns the whole reply.
pub fn ask_line(addr: SocketAddr, line: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    let mut request = line.to_vec();
    request.push(b'\n');
    stream.write_all(&request).expect("write request");
    read_to_close(&mut stream)
}

/// The reply to one line, as a string such as `"T\n"`.
pub fn ask(addr: SocketAddr, line: &str) -> String {
    String::from_utf8_lossy(&ask_line(addr, line.as_bytes())).into_owned()
}

/// A client socket with bounded reads and writes.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to test server");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

/// A client socket that has sent `bytes` and stays open, e.g. `b"1"` for a
/// client stalled mid-line or `b"17\n"` for a request awaiting its reply.
pub fn connect_sending(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = connect(addr);
    stream.write_all(bytes).expect("write");
    stream
}

/// Reads until the server closes (or resets) the connection.
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut reply = Vec::new();
    match stream.read_to_end(&mut reply) {
        Ok(_) => reply,
        Err(e) if closed_by_server(&e) => reply,
        Err(e) => panic!("reading the reply failed: {e}"),
    }
}

/// Polls `condition` every 10 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}

/// Whether `e` means the server refused, reset or closed the connection:
/// what a client may see from a stopping, killed or failing server. Any
/// other error (a timeout, above all) is a fault the test must not hide.
pub fn closed_by_server(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{
        BrokenPipe, ConnectionAborted, ConnectionRefused, ConnectionReset, UnexpectedEof,
    };
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

/// Sends `n` on a fresh connection and returns the reply letter if a
/// complete `T` or `F` arrived; `None` if the server refused the
/// connection or closed (or reset) it without a reply, as it may while it
/// stops or when it cannot log. Anything else fails the test: a torn or
/// wrong reply, and an error that is not the server closing (a timeout
/// means the server hung, not that it declined).
pub fn try_ask(addr: SocketAddr, n: &str) -> Option<String> {
    let fail = |step: &str, e: std::io::Error| -> Option<String> {
        assert!(closed_by_server(&e), "asking {n}: {step} failed: {e}");
        None
    };
    let mut stream = match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
        Ok(stream) => stream,
        Err(e) => return fail("connect", e),
    };
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set a read timeout");
    if let Err(e) = stream.write_all(format!("{n}\n").as_bytes()) {
        return fail("write", e);
    }
    let mut reply = Vec::new();
    if let Err(e) = stream.read_to_end(&mut reply) {
        fail("read", e)?;
    }
    match reply.as_slice() {
        b"T\n" => Some("T".to_owned()),
        b"F\n" => Some("F".to_owned()),
        b"" => None,
        other => panic!("torn or wrong reply {other:?}"),
    }
}

/// Runs `threads` clients asking about distinct numbers, one connection
/// each, while `during` runs (it typically signals the server and waits for
/// it); then stops them and returns `during`'s result and every
/// (number, reply) a client received. Each client stops after 20,000
/// requests at most.
pub fn under_load<R>(
    addr: SocketAddr,
    threads: u64,
    during: impl FnOnce() -> R,
) -> (R, Vec<(String, String)>) {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let clients: Vec<_> = (0..threads)
            .map(|t| {
                let stop = &stop;
                scope.spawn(move || {
                    let mut got = Vec::new();
                    for i in 0..20_000u64 {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        let n = (t * 1_000_003 + i).to_string();
                        if let Some(reply) = try_ask(addr, &n) {
                            got.push((n, reply));
                        }
                    }
                    got
                })
            })
            .collect();
        // Stop the clients even if `during` panics, so a failed assertion
        // fails the test instead of waiting for 20,000 requests each.
        struct StopClients<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for StopClients<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let guard = StopClients(&stop);
        let result = during();
        drop(guard);
        let received = clients
            .into_iter()
            .flat_map(|c| c.join().expect("client thread"))
            .collect();
        (result, received)
    })
}

/// The (number, code) pairs an audit log records for `T` and `F` lines.
pub fn audited_answers(lines: &[String]) -> std::collections::HashSet<(String, String)> {
    lines
        .iter()
        .map(|l| {
            let r = parse_audit(l);
            (
                r.phrase.split('\'').nth(1).unwrap_or_default().to_owned(),
                r.code,
            )
        })
        .collect()
}

/// The reply the server owes for the integer `n`: `T\n` or `F\n`.
pub fn reply_for(n: u64) -> &'static str {
    if prime_server::prime::is_prime_u64(n) {
        "T\n"
    } else {
        "F\n"
    }
}

/// An address nothing listens on (bound, then released).
pub fn unused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// Lines a child wrote to stderr, as they arrive.
#[derive(Default)]
struct StderrLines {
    /// The lines so far, and whether the pipe reached EOF.
    state: Mutex<(Vec<String>, bool)>,
    /// Signalled on every new line and at EOF.
    changed: Condvar,
    /// The reader must stop reading (to let the pipe fill up).
    paused: Mutex<bool>,
    /// Signalled when `paused` changes.
    unpaused: Condvar,
}

/// The real `prime-server` binary, started on `127.0.0.1:0`.
pub struct ServerProcess {
    /// The child process.
    pub child: Child,
    /// Where it listens (read from its "listening" record).
    pub addr: SocketAddr,
    /// Its audit log.
    pub audit_path: PathBuf,
    /// Its temporary directory (the audit log's parent's parent).
    pub dir: PathBuf,
    /// Its admin endpoint, when started with `--admin-listen`.
    pub admin: Option<SocketAddr>,
    /// Every stderr line so far, collected by a reader thread.
    stderr: Arc<StderrLines>,
    /// Keeps the audit directory alive.
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts the binary with `args` added after the test's own
    /// `--listen 127.0.0.1:0 --audit-log <tmp>` (unless `args` name an
    /// audit log of their own).
    pub fn start(args: &[&str]) -> ServerProcess {
        ServerProcess::start_with(args, |_| {})
    }

    /// As [`ServerProcess::start`], letting `customize` adjust the command
    /// (environment, resource limits) before it is spawned.
    pub fn start_with(args: &[&str], customize: impl FnOnce(&mut Command)) -> ServerProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let own = args
            .iter()
            .position(|a| *a == "--audit-log")
            .and_then(|i| args.get(i + 1));
        let (audit_path, mut full_args) = match own {
            Some(path) => (PathBuf::from(path), Vec::new()),
            None => {
                let path = dir.path().join("logs/prime_server.log");
                let args = vec!["--audit-log".to_owned(), path.display().to_string()];
                (path, args)
            }
        };
        full_args.extend(args.iter().map(|a| (*a).to_owned()));
        ServerProcess::spawn(
            env!("CARGO_BIN_EXE_prime-server"),
            &full_args,
            dir,
            audit_path,
            customize,
        )
    }

    /// Starts the `echo-server` binary on 127.0.0.1:0 with `args` added.
    pub fn start_echo(args: &[&str]) -> ServerProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let unused = dir.path().join("no-audit-log");
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        ServerProcess::spawn(
            env!("CARGO_BIN_EXE_echo-server"),
            &args,
            dir,
            unused,
            |_| {},
        )
    }

    /// Spawns `program --listen 127.0.0.1:0 ARGS` (`ARGS` may name
    /// another `--listen`) and waits for its "listening" record.
    fn spawn(
        program: &str,
        args: &[String],
        dir: tempfile::TempDir,
        audit_path: PathBuf,
        customize: impl FnOnce(&mut Command),
    ) -> ServerProcess {
        let mut command = Command::new(program);
        if !args.iter().any(|a| a == "--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        customize(&mut command);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        let stderr = collect_lines(child.stderr.take().expect("stderr piped"));
        let mut server = ServerProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            audit_path,
            dir: dir.path().to_path_buf(),
            admin: None,
            stderr,
            _dir: dir,
        };
        // The "listening" record comes once the socket is fully set up.
        let found = server.wait_for_stderr(IO_TIMEOUT, |text| {
            text.lines().find_map(parse_listening).is_some()
        });
        let Some(addr) = found
            .then(|| server.stderr().lines().find_map(parse_listening))
            .flatten()
        else {
            let _ = server.child.kill();
            panic!("{program} did not report its address: {}", server.stderr());
        };
        server.addr = addr;
        server.admin = server
            .stderr()
            .lines()
            .filter(|line| line.contains("admin endpoint listening"))
            .find_map(record_address);
        server
    }

    /// `GET path` on the admin endpoint (started with `--admin-listen
    /// 127.0.0.1:0`): (status code, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin.expect("started with --admin-listen"), path)
    }

    /// The value of a metric on `/metrics` (0 if absent).
    pub fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.admin_get("/metrics");
        metric(&text, name).unwrap_or(0.0)
    }

    /// Sends `signal` (e.g. `libc::SIGINT`) to the server.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) with a pid we spawned and still own; no memory involved.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// Waits (bounded) for the process to exit, and for its stderr to reach
    /// EOF, so [`ServerProcess::stderr`] then holds everything it wrote.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let until = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!(
                    "the server did not exit within {limit:?}: {}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let _ = self.wait_for_eof(limit);
        status
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        let state = self.stderr.state.lock().expect("stderr lock");
        state.0.join("\n")
    }

    /// Waits until `condition` holds for the stderr text so far (checked on
    /// every new line), or `limit` passes; returns whether it held.
    pub fn wait_for_stderr(
        &self,
        limit: Duration,
        mut condition: impl FnMut(&str) -> bool,
    ) -> bool {
        let until = Instant::now() + limit;
        let mut state = self.stderr.state.lock().expect("stderr lock");
        loop {
            if condition(&state.0.join("\n")) {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || state.1 {
                return false;
            }
            state = self
                .stderr
                .changed
                .wait_timeout(state, left)
                .expect("stderr lock")
                .0;
        }
    }

    /// Waits until stderr contains `needle`; panics with the text if it
    /// does not within `limit`.
    pub fn expect_stderr(&self, needle: &str, limit: Duration) {
        assert!(
            self.wait_for_stderr(limit, |text| text.contains(needle)),
            "no {needle:?} on stderr within {limit:?}: {}",
            self.stderr()
        );
    }

    /// Waits until the stderr pipe reaches EOF (the process exited).
    fn wait_for_eof(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        let mut state = self.stderr.state.lock().expect("stderr lock");
        while !state.1 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .stderr
                .changed
                .wait_timeout(state, left)
                .expect("stderr lock")
                .0;
        }
        true
    }

    /// The audit log's lines so far.
    pub fn audit_lines(&self) -> Vec<String> {
        read_lines(&self.audit_path)
    }

    /// Stops reading the server's stderr, so the pipe fills up and its
    /// writes block, as with a stalled journald.
    pub fn stop_reading_stderr(&self) {
        *self.stderr.paused.lock().expect("pause lock") = true;
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self.stderr.paused.lock().expect("pause lock") = false;
        self.stderr.unpaused.notify_all();
    }
}

/// How many sockets the process `pid` holds open (Linux `/proc`), or `None`
/// where that cannot be read.
pub fn open_sockets(pid: u32) -> Option<usize> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let sockets = entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count();
    Some(sockets)
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

/// Collects a pipe's lines on a thread, signalling each one and EOF.
fn collect_lines(pipe: impl Read + Send + 'static) -> Arc<StderrLines> {
    let lines = Arc::new(StderrLines::default());
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let mut paused = sink.paused.lock().expect("pause lock");
            while *paused {
                paused = sink.unpaused.wait(paused).expect("pause lock");
            }
            drop(paused);
            let Ok(line) = line else { break };
            sink.state.lock().expect("stderr lock").0.push(line);
            sink.changed.notify_all();
        }
        sink.state.lock().expect("stderr lock").1 = true;
        sink.changed.notify_all();
    });
    lines
}

/// The address in a "listening" record, term or JSON format.
fn parse_listening(line: &str) -> Option<SocketAddr> {
    if !line.contains("listening") || line.contains("admin endpoint") {
        return None;
    }
    record_address(line)
}

/// The `address` field of a record, term or JSON format.
fn record_address(line: &str) -> Option<SocketAddr> {
    if let Ok(record) = serde_json::from_str::<serde_json::Value>(line) {
        return record.get("address")?.as_str()?.parse().ok();
    }
    let start = line.find("address: ")? + "address: ".len();
    let rest = &line[start..];
    let end = rest.find(',').unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// One parsed audit line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// The RFC 3339 timestamp as written.
    pub time: String,
    /// The client address as written.
    pub peer: String,
    /// `T`, `F` or `E`.
    pub code: String,
    /// The rest of the line.
    pub phrase: String,
}

/// Splits an audit line into its four fields, checking the timestamp.
pub fn parse_audit(line: &str) -> AuditRecord {
    let mut parts = line.splitn(4, ' ');
    let mut next = || {
        parts
            .next()
            .unwrap_or_else(|| panic!("short audit line: {line:?}"))
            .to_owned()
    };
    let record = AuditRecord {
        time: next(),
        peer: next(),
        code: next(),
        phrase: next(),
    };
    humantime::parse_rfc3339(&record.time)
        .unwrap_or_else(|e| panic!("bad timestamp in {line:?}: {e}"));
    assert!(record.time.ends_with('Z'), "timestamp not UTC: {line:?}");
    record
}

/// Connects to `addr` from `source` (any address of 127.0.0.0/8 works on
/// loopback), so one test can be several clients, with bounded reads and
/// writes. Fallible, for load generators that count failures.
pub fn try_connect_from(source: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// A PROXY protocol v1 header (`PROXY TCP4|TCP6 ...\r\n`) for a connection
/// from `source` to `destination`, as HAProxy's `send-proxy` writes it.
pub fn proxy_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    ppp::v1::Addresses::from((source, destination))
        .to_string()
        .into_bytes()
}

/// A PROXY protocol v2 `PROXY` header over TCP for a connection from
/// `source` to `destination`, as HAProxy's `send-proxy-v2` writes it.
pub fn proxy_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    use ppp::v2::{Builder, Command, Protocol, Version};
    Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (source, destination),
    )
    .build()
    .expect("a v2 header with two addresses fits")
}

/// A PROXY protocol v2 `LOCAL` header (what a proxy sends for its own
/// health checks): no client address, the socket peer stands.
pub fn proxy_v2_local() -> Vec<u8> {
    use ppp::v2::{Builder, Command, Version};
    Builder::new(Version::Two | Command::Local, 0)
        .build()
        .expect("an empty v2 header fits")
}

/// Bytes the server has read from the TCP connection `server` <- `client`
/// (received by its kernel, less those still queued unread), asked of the
/// kernel through sock_diag for that one socket; `None` while no such
/// socket exists (not accepted yet, or closed). Lets a test wait until the
/// server has consumed exactly the bytes it sent so far, instead of
/// sleeping and hoping. (An exact lookup by address: reading
/// `/proc/net/tcp` instead skips rows while other tests churn through
/// thousands of sockets.)
pub fn server_read(server: SocketAddr, client: SocketAddr) -> Option<u64> {
    let found = sock_diag(server, client)?;
    // 1 is TCP_ESTABLISHED, 8 CLOSE_WAIT (the client half-closed); an
    // exact lookup falls back to the listener (10) before accept.
    if ![1, 8].contains(&found.state) {
        return None;
    }
    Some(found.bytes_received? - u64::from(found.recv_queue))
}

/// How many connections wait in the accept queue of the listener at
/// `listener` (completed by the kernel, not yet accepted by the server),
/// asked of the kernel through sock_diag; `None` when nothing listens
/// there. Lets a test wait until its connections are queued behind a full
/// server instead of sleeping.
pub fn accept_queue(listener: SocketAddr) -> Option<u64> {
    // No connection has the unspecified peer, so the exact lookup falls
    // back to the listening socket, whose receive queue is its accept queue.
    let nobody = SocketAddr::new(
        if listener.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        },
        0,
    );
    let found = sock_diag(listener, nobody)?;
    // 10 is TCP_LISTEN.
    (found.state == 10).then_some(u64::from(found.recv_queue))
}

/// The TCP state of the server's side of the connection `server` <-
/// `client` (1 established, 3 SYN-received: a handshake the kernel holds
/// back, as with `TCP_DEFER_ACCEPT`, 8 close-wait, ...), or `None` when
/// the kernel has no such connection (not even half-open).
pub fn server_side_state(server: SocketAddr, client: SocketAddr) -> Option<u8> {
    // 10 (listen) is the fallback to the listener: no such connection.
    sock_diag(server, client)
        .map(|found| found.state)
        .filter(|&state| state != 10)
}

/// What sock_diag says about one socket.
struct SockInfo {
    /// The TCP state (1 established, 8 close-wait, 10 listen, ...).
    state: u8,
    /// Bytes queued unread; for a listener, connections not yet accepted.
    recv_queue: u32,
    /// Bytes received in all (from `tcp_info`), when given.
    bytes_received: Option<u64>,
}

/// Looks up the TCP socket `local` <- `peer` through sock_diag (an exact
/// lookup, falling back to the listener on `local` as the kernel does);
/// `None` when there is no such socket.
fn sock_diag(local: SocketAddr, peer: SocketAddr) -> Option<SockInfo> {
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
    use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
    use netlink_packet_sock_diag::inet::{
        nlas::Nla, ExtensionFlags, InetRequest, SocketId, StateFlags,
    };
    use netlink_packet_sock_diag::SockDiagMessage;
    use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket};

    let mut socket = Socket::new(NETLINK_SOCK_DIAG).expect("netlink sock_diag socket");
    socket.bind_auto().expect("bind netlink");
    socket
        .connect(&netlink_sys::SocketAddr::new(0, 0))
        .expect("connect netlink");
    // Without NLM_F_DUMP the kernel looks up the one socket with this
    // address, port, peer address and peer port (cookie: "any").
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let request = InetRequest {
        family: if local.is_ipv4() { AF_INET } else { AF_INET6 },
        protocol: IPPROTO_TCP,
        extensions: ExtensionFlags::INFO,
        states: StateFlags::all(),
        socket_id: SocketId {
            source_port: local.port(),
            destination_port: peer.port(),
            source_address: local.ip(),
            destination_address: peer.ip(),
            interface_id: 0,
            cookie: [0xff; 8],
        },
    };
    let mut packet = NetlinkMessage::new(header, SockDiagMessage::InetRequest(request).into());
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0).expect("send sock_diag request");
    let mut answer = vec![0; 8192];
    let n = socket
        .recv(&mut &mut answer[..], 0)
        .expect("sock_diag answer");
    let reply =
        NetlinkMessage::<SockDiagMessage>::deserialize(&answer[..n]).expect("a sock_diag message");
    match reply.payload {
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => Some(SockInfo {
            state: response.header.state,
            recv_queue: response.header.recv_queue,
            bytes_received: response.nlas.iter().find_map(|nla| match nla {
                Nla::TcpInfo(info) => Some(info.bytes_received),
                _ => None,
            }),
        }),
        // ENOENT: no such socket (yet, or any more).
        NetlinkPayload::Error(_) => None,
        other => panic!("unexpected sock_diag answer {other:?}"),
    }
}
