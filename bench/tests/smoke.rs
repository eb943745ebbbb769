//! `make bench` is measurement, not a test; this runs it with tiny counts
//! so it cannot rot: every reference starts, every table and the chart are
//! written, and no server answers wrongly. The tables are read by their
//! header, so a change of their shape fails here instead of passing
//! unchecked. The tables of the newer behaviours (stalled and idle
//! crowds, the heavy mix, HAProxy, audit sync, sealing) must also show
//! their mechanism at work: the crowd still held, the big numbers answered
//! rightly, fdatasyncs and seals where they belong. The scaling section's
//! tables must split prime-server's CPU by thread role and, where perf can
//! count, show the system calls per request by kind beside the floor's.
//! The primality section must measure every size of prime, answered
//! rightly, with gmpy2's times beside them where gmpy2 can be imported.
//!
//! `compare` starts the `prime-server` and `prime-audit` binaries found
//! beside `prime-bench`; `cargo test --workspace` (what `make test` runs)
//! builds them all.

use std::path::Path;
use std::process::Command;
use test_support::server::TestServer;

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

/// The first table after the heading that starts with `### {title}`.
fn table_titled(report: &str, title: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let heading = format!("### {title}");
    let start = report
        .find(&heading)
        .unwrap_or_else(|| panic!("no table titled {title:?}: {report}"));
    tables(&report[start..])
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no table under {title:?}"))
}

/// The cell of column `name` in the row whose first cell starts with
/// `row`, as a number (a ratio's trailing `x` dropped).
fn number(table: &(Vec<String>, Vec<Vec<String>>), row: &str, name: &str) -> f64 {
    let text = cell(table, row, name);
    text.trim_end_matches('x')
        .parse()
        .unwrap_or_else(|_| panic!("{row}: {name} is not a number: {text:?}"))
}

/// The cell of column `name` in the row whose first cell starts with `row`.
fn cell<'a>(table: &'a (Vec<String>, Vec<Vec<String>>), row: &str, name: &str) -> &'a str {
    let (header, rows) = table;
    let col = column(header, name);
    let found = rows
        .iter()
        .find(|r| r[0].starts_with(row))
        .unwrap_or_else(|| panic!("no row {row:?} in {rows:?}"));
    assert!(
        !found[1].starts_with("n/a"),
        "row {row:?} did not run: {found:?}"
    );
    &found[col]
}

/// `a/b` as two numbers.
fn fraction(text: &str) -> (u64, u64) {
    let (a, b) = text
        .split_once('/')
        .unwrap_or_else(|| panic!("not a/b: {text:?}"));
    (a.parse().unwrap(), b.parse().unwrap())
}

/// The index of the column named `name`, failing the test if it is gone.
fn column(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name:?} in {header:?}"))
}

/// Whether the server binaries `compare` starts (prime-server, and
/// prime-audit for sealing states) were built beside prime-bench.
fn prime_server_beside_bench() -> bool {
    ["prime-server", "prime-audit"].iter().all(|name| {
        Path::new(env!("CARGO_BIN_EXE_prime-bench"))
            .with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX))
            .exists()
    })
}

#[test]
fn bench_compare_smoke_run_writes_tables_and_chart() {
    assert!(
        prime_server_beside_bench(),
        "the prime-server and prime-audit binaries are not beside prime-bench: run `cargo test --workspace` (or `cargo build -p prime-server --bins` first)"
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
    let mut tables_with_prime_server = 0;
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
        }
        if rows
            .iter()
            .any(|r| r[0].starts_with("prime-server") && !r[1].starts_with("n/a"))
        {
            tables_with_prime_server += 1;
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
        tables_with_prime_server,
        server_tables.len(),
        "prime-server must be measured in every table: {report}"
    );
    behaviour_tables_hold(&report);
    scaling_tables_hold(&report);
    primality_table_holds(&report);
    let svg = std::fs::read_to_string(out.path().join("latency.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("prime-server"),
        "chart lacks a series"
    );
    assert!(stdout.contains("wrote "));
}

/// The tables of the newer behaviours: each ran, and the figure that
/// shows its mechanism at work says it did (the crowd was held, the heavy
/// loop was answered rightly, fdatasyncs and seals happened where they
/// must and not elsewhere), and every honest request was answered.
fn behaviour_tables_hold(report: &str) {
    let stalled = table_titled(report, "Stalled clients: ");
    for row in [
        "prime-server, 50 stalled clients",
        "prime-server, no stalled",
    ] {
        let (answered, sent) = fraction(cell(&stalled, row, "answered/sent"));
        assert!(answered > 0 && answered == sent, "{row}: {answered}/{sent}");
    }
    assert_eq!(
        cell(&stalled, "prime-server, 50 stalled", "stalled clients held"),
        "50/50",
        "every stalled client must still be held, unanswered"
    );

    let idle = table_titled(report, "Idle keep-alive: ");
    let (answered, sent) = fraction(cell(
        &idle,
        "prime-server --keep-alive, 50 idle",
        "answered/sent",
    ));
    assert!(answered > 0 && answered == sent, "{answered}/{sent}");
    assert_eq!(
        cell(&idle, "prime-server --keep-alive, 50 idle", "idle held"),
        "50/50"
    );

    let heavy = table_titled(report, "Heavy mix: ");
    let mixed = "prime-server, light + 4 heavy clients";
    assert_eq!(cell(&heavy, mixed, "heavy errors/wrong"), "0/0");
    let (heavy_answered, _) = fraction(cell(&heavy, mixed, "heavy answered/abandoned"));
    assert!(heavy_answered > 0, "no big number answered");
    let capacity: f64 = cell(&heavy, mixed, "lane capacity/s").parse().unwrap();
    assert!(capacity > 0.0);
    assert_eq!(
        cell(&heavy, mixed, "server CPU us/req"),
        "-",
        "the mixed row's CPU is not the light requests' own"
    );

    if report.contains("haproxy is not installed") {
        test_support::tools::skip("the HAProxy table check: haproxy is not installed");
    } else {
        let proxy = table_titled(report, "Through HAProxy: ");
        for (row, instances) in [("HAProxy -> 1 ", "1"), ("HAProxy -> 3 ", "3")] {
            assert_eq!(cell(&proxy, row, "instances"), instances);
            let cpu: f64 = cell(&proxy, row, "HAProxy CPU us/req").parse().unwrap();
            assert!(cpu > 0.0, "{row}: HAProxy's CPU was not measured");
        }
    }

    let sync = table_titled(report, "Audit sync: ");
    let syncs = |row: &str| -> u64 { cell(&sync, row, "fdatasyncs").parse().unwrap() };
    assert_eq!(syncs("prime-server --audit-sync none"), 0);
    assert!(syncs("prime-server --audit-sync always") > 0);

    let seal = table_titled(report, "Sealing: ");
    let seals = |row: &str| -> u64 { cell(&seal, row, "seals written").parse().unwrap() };
    assert_eq!(seals("prime-server, not sealed"), 0);
    assert!(seals("prime-server --audit-seal") > 0, "no seal written");

    for target in [
        "50 stalled clients: every honest request answered",
        "50 idle keep-alive connections: honest p99",
        "light p99 < 50 ms while 4 clients loop",
        "sealing: server CPU/request within 5%",
    ] {
        assert!(
            report.contains(&format!("| {target}")),
            "no target row {target:?}"
        );
    }
}

/// The scaling section: the system-call table has its columns (counted,
/// or `n/a` when the report says perf cannot count here), and the by-role
/// table has the roles of the path of a connection, the lane's row and the
/// audit lock, each with a CPU figure and where it saturates.
fn scaling_tables_hold(report: &str) {
    let calls = table_titled(report, "Scaling: line 17, ");
    let kinds = [
        "syscalls/req",
        "accept4",
        "recvfrom",
        "write",
        "sendto",
        "close",
        "futex",
        "epoll_wait",
        "epoll_ctl",
        "other",
    ];
    for kind in kinds {
        column(&calls.0, kind);
    }
    let total = cell(&calls, "prime-server", "syscalls/req");
    if report.contains("system calls not counted") {
        test_support::tools::skip("the system-call counts: perf cannot count here");
        assert_eq!(total, "n/a");
    } else {
        let per = |row: &str, kind: &str| -> f64 {
            let text = cell(&calls, row, kind);
            text.split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap_or_else(|_| panic!("{row}: {kind} is not a number: {text:?}"))
        };
        for row in ["floor", "prime-server"] {
            assert!(
                per(row, "syscalls/req") >= 4.0,
                "{row}: too few system calls"
            );
            assert!(per(row, "accept4") > 0.5, "{row}: accept4 not counted");
            assert!(per(row, "close") > 0.5, "{row}: close not counted");
        }
        // The audit line is a write(2) per request.
        assert!(per("prime-server", "write") > 0.5);
    }

    let roles = table_titled(report, "Scaling by role: ");
    let (header, rows) = &roles;
    assert_eq!(
        header,
        &[
            "role",
            "threads",
            "CPU us/req",
            "cs/req",
            "CPU us/req per thread",
            "one core of it saturates at (req/s)",
            "grows with cores",
        ]
    );
    let number = |row: &str, name: &str| number(&roles, row, name);
    assert_eq!(cell(&roles, "accept loop", "threads"), "1");
    assert_eq!(cell(&roles, "waiting room", "threads"), "1");
    assert!(number("workers", "threads") >= 1.0);
    for row in ["accept loop", "workers", "whole server", "audit lock"] {
        assert!(number(row, "CPU us/req") > 0.0, "{row}: no CPU: {rows:?}");
        assert!(number(row, "one core of it saturates at (req/s)") > 0.0);
    }
    assert!(
        number("whole server", "CPU us/req") >= number("accept loop", "CPU us/req"),
        "the whole is less than a part: {rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r[0].starts_with("heavy lane (`heavy-N`), 100-digit")),
        "no lane row: {rows:?}"
    );
    assert!(
        report.contains("| line 17, 8 connections: system calls per request under load"),
        "no system-call target row"
    );
}

/// The primality section: its columns, a row per size answered rightly
/// with its server CPU, gmpy2's times (or `n/a` where the report says
/// gmpy2 cannot be had), the floor's row, and the targets.
fn primality_table_holds(report: &str) {
    let table = table_titled(report, "Primality under load: ");
    assert_eq!(
        table.0,
        [
            "size",
            "req/s",
            "server CPU us/req",
            "vs 64-bit prime",
            "gmpy2 is_strong_prp(n,2) us",
            "server CPU over one base-2 test",
            "gmpy2 is_prime us",
            "library is_prime us",
            "errors/wrong",
        ]
    );
    let number = |row: &str, name: &str| number(&table, row, name);
    let gmpy2 = !report.contains("gmpy2 columns n/a");
    if !gmpy2 {
        // `make test` runs scripts/bench-venv.sh, which installs gmpy2 into
        // bench/.venv: on CI its absence is a failure.
        test_support::tools::skip("the gmpy2 columns: gmpy2 cannot be imported here");
    }
    for size in ["64-bit", "25-digit", "38-digit", "100-digit", "300-digit"] {
        let row = format!("{size} primes");
        assert_eq!(cell(&table, &row, "errors/wrong"), "0/0", "{row}");
        assert!(number(&row, "server CPU us/req") > 0.0, "{row}");
        assert!(number(&row, "library is_prime us") > 0.0, "{row}");
        if gmpy2 {
            assert!(number(&row, "gmpy2 is_strong_prp(n,2) us") > 0.0, "{row}");
            assert!(number(&row, "server CPU over one base-2 test") > 0.0);
        } else {
            assert_eq!(cell(&table, &row, "gmpy2 is_strong_prp(n,2) us"), "n/a");
        }
    }
    assert_eq!(cell(&table, "64-bit primes", "vs 64-bit prime"), "1.00x");
    assert!(number("floor", "server CPU us/req") > 0.0);
    for target in [
        "25-digit prime: server CPU/request vs a 64-bit prime",
        "38-digit prime: server CPU/request vs a 64-bit prime",
        "100-digit prime: server CPU/request over one base-2 strong test",
        "300-digit prime: server CPU/request over one base-2 strong test",
    ] {
        assert!(
            report.contains(&format!("| {target}")),
            "no target row {target:?}"
        );
    }
}

#[test]
fn bench_load_checks_replies_against_a_running_server() {
    for generator in ["evented", "threads"] {
        let server = TestServer::start();
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
        assert_eq!(summary.service.answered(), 300, "{generator}");
    }
}
