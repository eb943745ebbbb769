//! `make bench` is measurement, not a test; this runs it with tiny counts
//! so it cannot rot: every reference starts, every table and the chart are
//! written, and no server answers wrongly. The tables are read by their
//! header, so a change of their shape fails here instead of passing
//! unchecked.
//!
//! `compare` starts the `prime-server` binary found beside `prime-bench`;
//! `cargo test --workspace` (what `make test` runs) builds both.

use prime_server::shutdown::Shutdown;
use prime_server::{logging, Config, Summary};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::thread::JoinHandle;

/// A prime-server inside the test process on `127.0.0.1:0`, stopped (and
/// joined) when dropped so a failing test cannot leave it running.
struct InProcessServer {
    addr: SocketAddr,
    shutdown: Shutdown,
    thread: Option<JoinHandle<Summary>>,
    _dir: tempfile::TempDir,
}

impl InProcessServer {
    fn start() -> InProcessServer {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Config {
            audit_log: dir.path().join("prime_server.log"),
            ..Config::default()
        };
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let thread = std::thread::spawn(move || {
            prime_server::run(listener, stop, &config, &logging::discard()).unwrap()
        });
        InProcessServer {
            addr,
            shutdown,
            thread: Some(thread),
            _dir: dir,
        }
    }

    fn stop(mut self) -> Summary {
        self.shutdown.request();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shutdown.request();
            let _ = thread.join();
        }
    }
}

/// The markdown tables of a report: each is a header line of cells and its
/// rows, split on `|` and trimmed.
fn tables(report: &str) -> Vec<(Vec<String>, Vec<Vec<String>>)> {
    let cells = |line: &str| -> Vec<String> {
        let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
        inner.split('|').map(|c| c.trim().to_owned()).collect()
    };
    let mut out = Vec::new();
    let lines: Vec<&str> = report.lines().collect();
    let mut i = 0;
    while i + 1 < lines.len() {
        if lines[i].starts_with('|') && lines[i + 1].starts_with("| ---") {
            let header = cells(lines[i]);
            let mut rows = Vec::new();
            i += 2;
            while i < lines.len() && lines[i].starts_with('|') {
                rows.push(cells(lines[i]));
                i += 1;
            }
            out.push((header, rows));
        } else {
            i += 1;
        }
    }
    out
}

/// The index of the column named `name`, failing the test if it is gone.
fn column(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name:?} in {header:?}"))
}

fn prime_server_beside_bench() -> bool {
    Path::new(env!("CARGO_BIN_EXE_prime-bench"))
        .with_file_name(format!("prime-server{}", std::env::consts::EXE_SUFFIX))
        .exists()
}

#[test]
fn bench_compare_smoke_run_writes_tables_and_chart() {
    assert!(
        prime_server_beside_bench(),
        "the prime-server binary is not beside prime-bench: run `cargo test --workspace` (or `cargo build -p prime-server` first)"
    );
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_prime-bench"))
        .args(["compare", "--smoke", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "prime-bench failed: {stderr}");
    let report = std::fs::read_to_string(out.path().join("latest.md")).unwrap();
    assert!(report.contains("SMOKE RUN"));
    assert!(report.contains("## Targets"));
    for heading in [
        "### line 17, 32 connections, connection per request\n",
        "### line 17, 32 connections, connection per request, thread-per-connection generator\n",
        "keep-alive, 64 lines pipelined",
    ] {
        assert!(report.contains(heading), "missing {heading}: {report}");
    }

    // Every server table: the columns the bench promises, every row
    // complete, and no measured row with errors or wrong replies.
    let server_tables: Vec<_> = tables(&report)
        .into_iter()
        .filter(|(header, _)| header.first().is_some_and(|h| h == "server"))
        .filter(|(header, _)| header.iter().any(|h| h == "errors"))
        .collect();
    assert!(
        server_tables.len() >= 3,
        "expected the per-workload tables, found {}: {report}",
        server_tables.len()
    );
    let mut prime_server_rows = 0;
    for (header, rows) in &server_tables {
        let errors = column(header, "errors");
        let wrong = column(header, "wrong");
        column(header, "server CPU us/req");
        column(header, "server cs/req");
        column(header, "CPU/req vs floor");
        column(header, "load gen CPU us/req");
        assert!(!rows.is_empty(), "a table without rows: {report}");
        for row in rows {
            assert_eq!(row.len(), header.len(), "row {row:?} against {header:?}");
            if row[1].starts_with("n/a") {
                continue;
            }
            assert_eq!(
                (row[errors].as_str(), row[wrong].as_str()),
                ("0", "0"),
                "errors/wrong in {row:?}"
            );
            if row[0] == "prime-server" {
                prime_server_rows += 1;
            }
        }
        assert!(
            rows.iter().any(|r| r[0].starts_with("floor")),
            "no floor row: {rows:?}"
        );
        // The cheapest floor is the reference: some floor row reads 1.00x.
        let vs_floor = column(header, "CPU/req vs floor");
        assert!(
            rows.iter()
                .any(|r| r[0].starts_with("floor") && r[vs_floor] == "1.00x"),
            "no floor is the reference: {rows:?}"
        );
    }
    assert_eq!(
        prime_server_rows,
        server_tables.len(),
        "prime-server must be measured in every table: {report}"
    );
    let svg = std::fs::read_to_string(out.path().join("latency.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("prime-server"),
        "chart lacks a series"
    );
    assert!(stdout.contains("wrote "));
}

#[test]
fn bench_load_checks_replies_against_a_running_server() {
    for generator in ["evented", "threads"] {
        let server = InProcessServer::start();
        let run = Command::new(env!("CARGO_BIN_EXE_prime-bench"))
            .args([
                "load",
                "--workload",
                "mix",
                "--count",
                "300",
                "--concurrency",
                "4",
                "--generator",
                generator,
                "--addr",
            ])
            .arg(server.addr.to_string())
            .output()
            .unwrap();
        let summary = server.stop();
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{generator}: {stdout}{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(
            stdout.starts_with("300 requests in "),
            "{generator}: {stdout}"
        );
        assert!(
            stdout.contains("errors 0, wrong 0"),
            "{generator}: {stdout}"
        );
        assert_eq!(summary.answered(), 300, "{generator}");
    }
}
