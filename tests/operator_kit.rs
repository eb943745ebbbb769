//! The operator's kit (docs/operations.md#alerts-and-dashboards): the alert
//! rules in `deploy/prometheus/` pass `promtool check rules` and their own
//! `promtool test rules` unit tests, and every alert has a test that fires
//! it and one that keeps it quiet; the Grafana dashboard in `deploy/grafana/`
//! imports anywhere; every `prime_server_*` series the rules, their tests
//! and the dashboard name is exposed by a server started with no flags;
//! and a real Prometheus scraping a server's admin endpoint reads back
//! exactly the requests sent, evaluates every rule without error, runs
//! every dashboard query to a non-empty answer, and sees the not-ready and
//! down alerts go pending when the server stops; and, scraping a sealing
//! server whose syslog collector is down, sees the two shipping alerts go
//! pending and no other.
//!
//! promtool and prometheus come from Debian's `prometheus` package
//! (`scripts/ensure-tools.sh` installs it); without them the tests that
//! need them skip, loudly, except on CI where they fail.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use test_support::io::{ask, wait_until};
use test_support::process::ServerProcess;
use test_support::server::TestServer;
use test_support::tools::{have_tool, skip};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Longest any single wait on Prometheus may take.
const WAIT: Duration = Duration::from_secs(20);

/// The rule files and the promtool test files in `deploy/prometheus/`.
fn rule_and_test_files() -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut files: Vec<PathBuf> = fs::read_dir(Path::new(ROOT).join("deploy/prometheus"))
        .expect("deploy/prometheus exists")
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    files.sort();
    let (tests, rules): (Vec<PathBuf>, Vec<PathBuf>) = files.into_iter().partition(|f| {
        f.file_name()
            .is_some_and(|n| n.to_string_lossy().contains("test"))
    });
    (rules, tests)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn dashboard() -> Value {
    let path = Path::new(ROOT).join("deploy/grafana/prime-server.json");
    serde_json::from_str(&read(&path)).expect("the dashboard is JSON")
}

/// One `- alert:` rule of a rule file, as text: its name and its lines.
fn alerts(rules: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    for line in rules.lines() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            found.push((name.trim().to_owned(), String::new()));
        } else if trimmed.starts_with("- record:") || trimmed.starts_with("- name:") {
            found.push((String::new(), String::new()));
        } else if let Some((_, body)) = found.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    found.retain(|(name, _)| !name.is_empty());
    found
}

/// The `alert_rule_test` expectations of a promtool test file: (alert
/// name, whether it expects the alert to fire).
fn expectations(tests: &str) -> Vec<(String, bool)> {
    let lines: Vec<&str> = tests
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    lines
        .windows(2)
        .filter_map(|pair| {
            let name = pair[0].strip_prefix("alertname:")?.trim().to_owned();
            let quiet = pair[1] == "exp_alerts: []";
            assert!(
                quiet || pair[1] == "exp_alerts:",
                "alertname {name} must be followed by exp_alerts, not {:?}",
                pair[1]
            );
            Some((name, !quiet))
        })
        .collect()
}

// docs/operations.md#alerts-and-dashboards: deploy/prometheus holds only
// the rule files and their promtool tests; each alert has a for:, a
// severity and a summary, and tests that fire it and keep it quiet.
#[test]
fn every_alert_has_a_for_a_severity_a_summary_and_tests_both_ways() {
    let (rules, tests) = rule_and_test_files();
    assert!(
        !rules.is_empty() && !tests.is_empty(),
        "{rules:?} {tests:?}"
    );
    for file in &rules {
        let text = read(file);
        assert!(
            text.lines().any(|l| l == "groups:"),
            "{} is not a rule file (no groups:); a sample scrape config goes elsewhere",
            file.display()
        );
    }
    for file in &tests {
        assert!(
            read(file).lines().any(|l| l == "rule_files:"),
            "{} is not a promtool test file (no rule_files:)",
            file.display()
        );
    }
    let mut tested: BTreeMap<String, BTreeSet<bool>> = BTreeMap::new();
    for (name, fires) in tests.iter().flat_map(|f| expectations(&read(f))) {
        tested.entry(name).or_default().insert(fires);
    }
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for (name, body) in rules.iter().flat_map(|f| alerts(&read(f))) {
        assert!(names.insert(name.clone()), "alert {name} defined twice");
        for needed in ["expr:", "for:", "summary:"] {
            if !body.lines().any(|l| l.trim_start().starts_with(needed)) {
                problems.push(format!("{name} has no {needed}"));
            }
        }
        if !body
            .lines()
            .any(|l| matches!(l.trim(), "severity: critical" | "severity: warning"))
        {
            problems.push(format!("{name} has no severity: critical or warning"));
        }
        match tested.get(&name) {
            Some(ways) if ways.len() == 2 => {}
            Some(ways) => problems.push(format!("{name} is tested only with fires={ways:?}")),
            None => problems.push(format!("{name} has no promtool test")),
        }
    }
    for name in tested.keys().filter(|n| !names.contains(*n)) {
        problems.push(format!(
            "the tests expect an alert {name} that no rule defines"
        ));
    }
    assert!(
        names.len() >= 10,
        "only {} alerts found: {names:?}",
        names.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Runs `promtool args`; panics with its output unless it succeeds.
fn promtool(args: &[&str], files: &[PathBuf], dir: &Path) {
    let output = Command::new("promtool")
        .args(args)
        .args(files)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
}

// docs/operations.md#alerts-and-dashboards: the rules load, and each alert
// fires and stays quiet as its promtool tests say.
#[test]
fn promtool_checks_the_rules_and_runs_their_unit_tests() {
    if !have_tool("promtool") {
        skip("promtool is not installed (package prometheus; scripts/ensure-tools.sh promtool)");
        return;
    }
    let (rules, tests) = rule_and_test_files();
    let dir = Path::new(ROOT).join("deploy/prometheus");
    promtool(&["check", "rules"], &rules, &dir);
    promtool(&["test", "rules"], &tests, &dir);
}

/// Every `prime_server_...` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("prime_server_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The sample names of an exposition (`name` of `name{labels} value`).
fn sample_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

// docs/operations.md#alerts-and-dashboards: every metric is exposed from
// start, whatever the flags, so rules and panels never point at an absent
// series.
#[test]
fn every_series_the_rules_and_the_dashboard_name_is_exposed_from_start() {
    // No flag but where to listen and log: nothing turned on.
    let server = ServerProcess::start(&["--admin-listen", "127.0.0.1:0"]);
    let (status, exposition) = server.admin_get("/metrics");
    assert_eq!(status, 200);
    let exposed = sample_names(&exposition);
    let (rules, tests) = rule_and_test_files();
    let mut missing = Vec::new();
    let mut named = 0;
    let dashboard = Path::new(ROOT).join("deploy/grafana/prime-server.json");
    for file in rules.iter().chain(&tests).chain([&dashboard]) {
        for name in metric_names(&read(file)) {
            named += 1;
            if !exposed.contains(&name) {
                missing.push(format!("{}: {name}", file.display()));
            }
        }
    }
    assert!(named > 30, "only {named} names found: is the scan broken?");
    assert!(
        missing.is_empty(),
        "named but not exposed:\n{}\n\nexposed:\n{exposition}",
        missing.join("\n")
    );
    // Labelled counters and histograms are there at zero too.
    for verdict in ["prime", "not_prime", "not_integer"] {
        let series = format!("prime_server_requests_total{{verdict=\"{verdict}\"}} 0");
        assert!(exposition.contains(&series), "{series}\n{exposition}");
    }
    for histogram in ["request_duration_seconds", "audit_sync_duration_seconds"] {
        let series = format!("prime_server_{histogram}_bucket{{le=\"+Inf\"}} 0");
        assert!(exposition.contains(&series), "{series}\n{exposition}");
    }
    assert!(
        exposition.contains("\nprime_server_ready 1\n"),
        "{exposition}"
    );
    assert!(
        !exposition.contains("\nprime_server_worker_threads 0\n"),
        "{exposition}"
    );
}

/// Every `datasource` object anywhere in `value`.
fn datasources<'a>(value: &'a Value, found: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "datasource" && v.is_object() {
                    found.push(v);
                }
                datasources(v, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| datasources(v, found)),
        _ => {}
    }
}

/// Every `(panel title, expr)` of the dashboard's panels.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut queries = Vec::new();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().expect("a title").to_owned();
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("an expr");
            assert!(!expr.trim().is_empty(), "{title} has an empty query");
            queries.push((title.clone(), expr.to_owned()));
        }
    }
    queries
}

// docs/operations.md#alerts-and-dashboards: the dashboard imports into any
// Grafana: a recent schema, the data source chosen by a variable, no
// hard-coded data source UID, and a panel for each question.
#[test]
fn the_dashboard_imports_anywhere_and_answers_the_operators_questions() {
    let dash = dashboard();
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    assert!(dash["id"].is_null(), "a dashboard id breaks import");
    let variables = dash["templating"]["list"].as_array().expect("variables");
    assert!(
        variables.iter().any(|v| v["type"] == "datasource"
            && v["query"] == "prometheus"
            && v["name"] == "datasource"),
        "no Prometheus data source variable"
    );
    let mut found = Vec::new();
    datasources(&dash, &mut found);
    assert!(found.len() > 20, "{} datasource references", found.len());
    for ds in found {
        let builtin = ds["uid"] == "-- Grafana --" && ds["type"] == "grafana";
        assert!(
            builtin || (ds["type"] == "prometheus" && ds["uid"] == "${datasource}"),
            "a data source not chosen by the variable: {ds}"
        );
    }
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(ids.insert(panel["id"].as_u64().expect("a numeric id")));
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(x + w <= 24 && grid["h"].as_u64().unwrap() > 0, "{grid}");
    }
    let queries = panel_queries(&dash);
    let uses = |needle: &str| queries.iter().any(|(_, q)| q.contains(needle));
    for needle in [
        "prime_server_requests_total",             // how many, by verdict
        "histogram_quantile(0.5,",                 // p50
        "histogram_quantile(0.99,",                // p99
        "prime_server_connections_waiting",        // waiting room
        "prime_server_connections_queued",         // queue
        "prime_server_connections_in_service",     // workers
        "prime_server_big_tests_running",          // lane
        "prime_server_timeouts_total",             // what failed
        "prime_server_audit_write_failures_total", // what failed
        "prime_server_audit_sync_duration_seconds_bucket", // sync timing
        "prime_server_audit_seals_total",          // seals
        "prime_server_audit_heartbeat_seals_total", // heartbeats
        "prime_server_audit_sealing_failing",      // sealing failing now
        "prime_server_audit_seal_duration_seconds_bucket", // seal timing
        "prime_server_audit_seals_shipped_total",  // shipping
        "prime_server_audit_seals_ship_dropped_total", // shipping lost
    ] {
        assert!(uses(needle), "no panel queries {needle}");
    }
    assert!(
        panels.iter().any(|p| p["type"] == "heatmap"
            && p["targets"][0]["format"] == "heatmap"
            && p["targets"][0]["expr"]
                .as_str()
                .is_some_and(|e| e.contains("request_duration_seconds_bucket"))),
        "no request-duration heatmap"
    );
}

/// `GET path` from Prometheus at `addr` over HTTP/1.0 (so the body is
/// neither chunked nor kept alive): (status, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let attempt = || -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        Ok((status, body.to_owned()))
    };
    attempt().unwrap_or((0, String::new()))
}

/// `s` percent-encoded for a query string.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `probe` every 100 ms until it gives `Some`, for at most [`WAIT`];
/// panics with `what` and the last state seen otherwise.
fn wait_for<T>(what: &str, mut probe: impl FnMut(&mut String) -> Option<T>) -> T {
    let until = Instant::now() + WAIT;
    let mut last = String::new();
    loop {
        if let Some(found) = probe(&mut last) {
            return found;
        }
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}; last seen: {last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Prometheus child process, killed and reaped when dropped (also when
/// the test fails).
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus on a free loopback port with `config`, and waits
    /// until `/-/ready` says 200.
    fn start(config: &str) -> Prometheus {
        // A port found free may be taken before Prometheus binds it: retry.
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let config_path = dir.path().join("prometheus.yml");
            fs::write(&config_path, config).expect("write config");
            let addr = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port");
            let log = fs::File::create(dir.path().join("prometheus.log")).expect("log file");
            let child = Command::new("prometheus")
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start prometheus");
            let mut prometheus = Prometheus { child, addr, dir };
            let ready = wait_for("Prometheus /-/ready", |last| {
                if let Ok(Some(status)) = prometheus.child.try_wait() {
                    return Some(Err(status));
                }
                let (code, body) = get(addr, "/-/ready");
                *last = format!("{code} {body}");
                (code == 200).then_some(Ok(()))
            });
            match ready {
                Ok(()) => return prometheus,
                Err(status) if prometheus.log().contains("address already in use") => {
                    eprintln!("prometheus lost the race for {addr} ({status}); retrying");
                }
                Err(status) => panic!("prometheus exited ({status}):\n{}", prometheus.log()),
            }
        }
        panic!("prometheus could not bind a free port three times");
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/path`'s `data`, or `None` with the answer in `last`.
    fn api(&self, path: &str, last: &mut String) -> Option<Value> {
        let (code, body) = get(self.addr, &format!("/api/v1/{path}"));
        *last = format!("{code} {body}");
        let answer: Value = serde_json::from_str(&body).ok()?;
        (code == 200 && answer["status"] == "success").then(|| answer["data"].clone())
    }

    /// The instant vector of `expr`: (labels, value) per series.
    fn query(&self, expr: &str, last: &mut String) -> Option<Vec<(Value, f64)>> {
        let data = self.api(&format!("query?query={}", encode(expr)), last)?;
        let series = data["result"].as_array()?;
        Some(
            series
                .iter()
                .map(|s| {
                    let value = s["value"][1].as_str().and_then(|v| v.parse().ok());
                    (s["metric"].clone(), value.unwrap_or(f64::NAN))
                })
                .collect(),
        )
    }

    /// The single value of `expr`, once it has one.
    fn value(&self, expr: &str, last: &mut String) -> Option<f64> {
        match self.query(expr, last)?.as_slice() {
            [(_, value)] => Some(*value),
            _ => None,
        }
    }

    /// Alerts in `state` (pending or firing) by name.
    fn alerts(&self, last: &mut String) -> Option<Vec<(String, String)>> {
        let data = self.api("alerts", last)?;
        Some(
            data["alerts"]
                .as_array()?
                .iter()
                .map(|a| {
                    let name = a["labels"]["alertname"].as_str().unwrap_or("").to_owned();
                    (name, a["state"].as_str().unwrap_or("").to_owned())
                })
                .collect(),
        )
    }

    /// Rule-group evaluations Prometheus has run (its own metric).
    fn evaluations(&self) -> f64 {
        let (_, text) = get(self.addr, "/metrics");
        text.lines()
            .filter(|l| l.starts_with("prometheus_rule_group_iterations_total"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// Waits until Prometheus has evaluated the rules twice more.
    fn wait_for_evaluations(&self) {
        let start = self.evaluations();
        wait_for("two rule evaluations", |last| {
            let now = self.evaluations();
            *last = format!("{start} -> {now}");
            (now >= start + 2.0).then_some(())
        });
    }
}

/// A Prometheus configuration that loads the alert rules and scrapes
/// `admin` every 250 ms in job `prime-server`.
fn config(admin: SocketAddr) -> String {
    let rules = Path::new(ROOT).join("deploy/prometheus/alerts.yml");
    format!(
        "global:\n  scrape_interval: 250ms\n  scrape_timeout: 200ms\n  evaluation_interval: 250ms\n\
         rule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: prime-server\n    static_configs:\n      - targets: ['{admin}']\n",
        rules.display()
    )
}

// docs/operations.md#alerts-and-dashboards: a real Prometheus scrapes the
// admin endpoint and counts exactly the requests sent; the rules and the
// dashboard's queries run against real data.
#[test]
fn a_real_prometheus_counts_every_request_and_runs_the_rules_and_the_dashboard() {
    if !have_tool("prometheus") {
        skip(
            "prometheus is not installed (package prometheus; scripts/ensure-tools.sh prometheus)",
        );
        return;
    }
    let started = Instant::now();
    let server = TestServer::start();
    let admin = server.admin.addr();
    let prometheus = Prometheus::start(&config(admin));
    let mut last = String::new();
    wait_for("the first scrape", |last| {
        (prometheus.value("up{job=\"prime-server\"}", last)? == 1.0).then_some(())
    });

    // A known number of requests, of each verdict.
    let asked = [("17", "T\n", 7), ("18", "F\n", 5), ("x", "E\n", 4)];
    for (line, reply, times) in asked {
        for _ in 0..times {
            assert_eq!(ask(server.addr, line), reply);
        }
    }
    let want: BTreeMap<String, f64> = [("prime", 7.0), ("not_prime", 5.0), ("not_integer", 4.0)]
        .into_iter()
        .map(|(v, n)| (v.to_owned(), n))
        .collect();
    wait_for("the requests by verdict", |last| {
        let got: BTreeMap<String, f64> = prometheus
            .query("prime_server_requests_total", last)?
            .into_iter()
            .map(|(labels, v)| (labels["verdict"].as_str().unwrap_or("").to_owned(), v))
            .collect();
        *last = format!("{got:?}");
        (got == want).then_some(())
    });
    for (expr, n) in [
        ("sum(prime_server_requests_total)", 16.0),
        ("prime_server_request_duration_seconds_count", 16.0),
        ("prime_server_connections_accepted_total", 16.0),
        ("prime_server_audit_write_failures_total", 0.0),
        ("prime_server_ready", 1.0),
    ] {
        assert_eq!(prometheus.value(expr, &mut last), Some(n), "{expr}: {last}");
    }
    let counted = started.elapsed();

    // Every dashboard query runs and finds series (substituting what
    // Grafana would for its variables).
    let dash = dashboard();
    for (title, expr) in panel_queries(&dash) {
        let expr = expr
            .replace("$__rate_interval", "10s")
            .replace("$job", "prime-server")
            .replace("$instance", ".+");
        let series = prometheus.query(&expr, &mut last);
        assert!(
            series.as_ref().is_some_and(|s| !s.is_empty()),
            "panel {title:?}: {expr} gave no series: {last}"
        );
    }

    // Every rule evaluates without error, and a healthy server raises no
    // alert, not even a pending one.
    prometheus.wait_for_evaluations();
    let groups = prometheus.api("rules", &mut last).expect("rules");
    let evaluated: Vec<&Value> = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .collect();
    assert!(evaluated.len() >= 10, "{last}");
    for rule in &evaluated {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
    let active = prometheus.alerts(&mut last).expect("alerts");
    assert!(active.is_empty(), "alerts on a healthy server: {active:?}");

    // A stopping server is not ready: the gauge says so at the next
    // scrape, and the alert goes pending (it fires after its for:).
    server.shutdown.request();
    wait_for("PrimeServerNotReady pending", |last| {
        let alerts = prometheus.alerts(last)?;
        *last = format!("{alerts:?}");
        alerts
            .iter()
            .any(|(name, state)| name == "PrimeServerNotReady" && state == "pending")
            .then_some(())
    });
    // A server gone (its admin endpoint closed) is down.
    drop(server);
    wait_for("PrimeServerDown pending", |last| {
        let alerts = prometheus.alerts(last)?;
        *last = format!("{alerts:?}");
        alerts
            .iter()
            .any(|(name, state)| name == "PrimeServerDown" && state == "pending")
            .then_some(())
    });
    eprintln!(
        "requests counted through Prometheus after {counted:?}, whole test {:?}",
        started.elapsed()
    );
}

// docs/operations.md#alerts-and-dashboards: the sealing rules tell from
// the metrics alone that sealing is on (the start seal is counted before
// any request) and that seals are shipped (the first send, or its failure,
// follows at once). A server without sealing raises none of them (the
// healthy server above); here a real Prometheus scrapes a sealing server
// whose collector refuses every connection, and sees exactly the two
// shipping alerts go pending: not the drop, not sealing failing, not "no
// seal" (heartbeats keep coming).
#[test]
fn a_real_prometheus_sees_a_sealing_server_whose_collector_is_down() {
    if !have_tool("prometheus") {
        skip(
            "prometheus is not installed (package prometheus; scripts/ensure-tools.sh prometheus)",
        );
        return;
    }
    let keys = tempfile::tempdir().expect("temp dir");
    let state = keys.path().join("seal.state");
    let state = state.to_str().expect("a UTF-8 path");
    let keygen = Command::new(env!("CARGO_BIN_EXE_prime-audit"))
        .args(["keygen", "--state", state, "--seal-interval", "100ms"])
        .output()
        .expect("run prime-audit keygen");
    assert!(keygen.status.success(), "{keygen:?}");
    // A collector address where nothing listens: every connect is refused.
    let collector = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let server = ServerProcess::start(&[
        "--audit-seal",
        state,
        "--seal-heartbeat",
        "200ms",
        "--seal-syslog",
        &collector,
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    // What the rules rest on, before any request: the start seal is
    // counted, and the shipping thread has tried and failed.
    assert!(
        wait_until(WAIT, || server.metric("prime_server_audit_seals_total")
            >= 1.0
            && server.metric("prime_server_audit_seal_ship_failures_total")
                >= 1.0),
        "no start seal or no failed send: {}",
        server.admin_get("/metrics").1
    );
    assert_eq!(server.metric("prime_server_audit_seals_shipped_total"), 0.0);

    let prometheus = Prometheus::start(&config(server.admin.expect("an admin endpoint")));
    let want = ["PrimeServerSealShipFailing", "PrimeServerSealsNotShipped"];
    let active = wait_for("the two shipping alerts pending", |last| {
        let alerts = prometheus.alerts(last)?;
        *last = format!("{alerts:?}");
        let names: BTreeSet<&str> = alerts.iter().map(|(name, _)| name.as_str()).collect();
        want.iter().all(|w| names.contains(w)).then_some(alerts)
    });
    assert!(
        active
            .iter()
            .all(|(name, state)| want.contains(&name.as_str()) && state == "pending"),
        "only the shipping alerts, pending: {active:?}"
    );
    // Heartbeats keep the seal count rising, so "no seal" stays quiet, and
    // the rest of the rules still evaluate without error.
    prometheus.wait_for_evaluations();
    let mut last = String::new();
    let active = prometheus.alerts(&mut last).expect("alerts");
    assert!(
        active.iter().all(|(name, _)| want.contains(&name.as_str())),
        "{active:?}"
    );
    assert!(server.metric("prime_server_audit_heartbeat_seals_total") >= 1.0);
}
