//! `make bench` is measurement, not a test; this runs it with tiny counts
//! so it cannot rot: every reference starts, every table and the chart are
//! written, and no server answers wrongly.

mod support;

use std::process::Command;

#[test]
fn bench_compare_smoke_run_writes_tables_and_chart() {
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
        "### line 17, 32 connections, connection per request",
        "keep-alive, 64 lines pipelined",
    ] {
        assert!(report.contains(heading), "missing {heading}: {report}");
    }
    for server in ["| floor |", "| prime-server |"] {
        assert!(report.contains(server), "missing row {server}: {report}");
    }
    // Every measured row checked its replies; none may be wrong or failed.
    for row in report.lines().filter(|l| l.starts_with("| prime-server |")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        if cells.len() > 9 {
            assert_eq!((cells[8], cells[9]), ("0", "0"), "errors/wrong in {row}");
        }
    }
    let svg = std::fs::read_to_string(out.path().join("latency.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("prime-server"),
        "chart lacks a series"
    );
    assert!(stdout.contains("wrote "));
}

#[test]
fn bench_load_checks_replies_against_a_running_server() {
    let server = support::TestServer::start();
    let run = Command::new(env!("CARGO_BIN_EXE_prime-bench"))
        .args([
            "load",
            "--workload",
            "mix",
            "--count",
            "300",
            "--concurrency",
            "4",
            "--addr",
        ])
        .arg(server.addr.to_string())
        .output()
        .unwrap();
    let summary = server.stop();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.starts_with("300 requests in "), "{stdout}");
    assert!(stdout.contains("errors 0, wrong 0"), "{stdout}");
    assert_eq!(summary.answered(), 300);
}
