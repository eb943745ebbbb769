//! The real binaries (`prime-server`, `echo-server`) as child processes
//! on `127.0.0.1:0` ([`ServerProcess`]): the address and admin endpoint
//! read from the "listening" records on stderr, every stderr line kept,
//! signals, bounded waits for exit or for a message.

use crate::audit::read_lines;
use crate::io::{http_get, metric, IO_TIMEOUT};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

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
            &binary("prime-server"),
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
        ServerProcess::spawn(&binary("echo-server"), &args, dir, unused, |_| {})
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

/// The workspace binary `name` that cargo built for the integration
/// tests: `CARGO_BIN_EXE_<name>` where cargo sets it at run time (newer
/// cargo does; older cargo only at compile time, for `env!`, which a
/// library cannot use), else `name` beside the test executable's `deps/`
/// directory (`target/<profile>/`), where cargo puts a package's binaries
/// before it runs its integration tests.
fn binary(name: &str) -> String {
    if let Some(path) = std::env::var_os(format!("CARGO_BIN_EXE_{name}")) {
        return path.to_string_lossy().into_owned();
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join(name))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| panic!("no {name} binary beside {}", exe.display()));
    path.to_string_lossy().into_owned()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_read_from_a_listening_record_in_either_format() {
        let term = "May 01 12:00:00.000 INFO listening, address: 127.0.0.1:4100, workers: 4";
        let json = r#"{"msg":"listening","level":"INFO","address":"[::1]:4100"}"#;
        assert_eq!(
            parse_listening(term),
            Some("127.0.0.1:4100".parse().unwrap())
        );
        assert_eq!(parse_listening(json), Some("[::1]:4100".parse().unwrap()));
        // The admin endpoint's record names an address too, but not the service's.
        let admin = "May 01 12:00:00.000 INFO admin endpoint listening, address: 127.0.0.1:4200";
        assert_eq!(parse_listening(admin), None);
        assert_eq!(
            record_address(admin),
            Some("127.0.0.1:4200".parse().unwrap())
        );
    }
}
