//! The tables for what prime-server does beyond answering a line fast: it
//! keeps serving while clients stall or idle (the waiting room), while big
//! numbers queue (the heavy lane), behind HAProxy, with its audit log
//! synced or sealed. Each table runs line-17 load (connection per request,
//! from the event-driven generator) against the same server run several
//! ways, beside the cheapest floor, with the columns of every other table
//! (server CPU and context switches per request, RSS) plus the ones that
//! show the mechanism at work (crowd still held, `fdatasync`s and seals
//! per request, heavy answers against the lane's capacity, HAProxy's own
//! CPU). The rows of a table alternate within each round, as elsewhere.
//! The scaling section splits prime-server's CPU per request by thread
//! role and counts system calls per request, beside the floor's. The
//! primality section measures prime-server's CPU per request by size of
//! prime, beside gmpy2's tests timed in-process.

use crate::crowd::{self, Behaviour, Crowd};
use crate::haproxy::{self, Haproxy};
use crate::load::{self, Generator, LoadResult, LoadSpec, Mode, Stop};
use crate::report::{self, Measured, Row, Table, Target};
use crate::servers::{Kind, Launch, Server, Toolbox};
use crate::workload::{self, Request, Workload};
use anyhow::{bail, Context};
use std::cell::Cell;
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

/// The honest latency the issue asks for under each adversity.
const P99_TARGET: Duration = Duration::from_millis(50);
/// The honest load's per-request timeout: far above any target, so a slow
/// answer is measured, not turned into an error.
const HONEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the bench waits for a server to hold a crowd or fill its lane.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a server's `/metrics` is read while waiting for a state.
const POLL: Duration = Duration::from_millis(10);
/// Connections the server holds (a crowd is in once it counts them all).
const OPEN: &str = "prime_server_connections_open";
/// Big-number tests running in the lane now.
const BIG_RUNNING: &str = "prime_server_big_tests_running";
/// Big-number tests waiting for a lane thread now.
const BIG_QUEUED: &str = "prime_server_big_tests_queued";
/// `fdatasync` calls on the audit log so far.
const SYNCS: &str = "prime_server_audit_sync_duration_seconds_count";
/// Seal records written so far.
const SEALS: &str = "prime_server_audit_seals_total";

/// Sizes and durations of the behaviour tables.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Rounds per row (rows alternate within a round).
    pub rounds: u32,
    /// Length of one row's round.
    pub round: Duration,
    /// Length of one round of the heavy mix (big numbers take seconds).
    pub heavy_round: Duration,
    /// Honest connections in flight (stalled, idle and heavy-mix tables).
    pub honest_concurrency: usize,
    /// Connections in flight where the table compares with the classic
    /// line-17 table (HAProxy, audit sync, sealing).
    pub concurrency: usize,
    /// Stalled clients.
    pub stalled: usize,
    /// Distinct source addresses they come from.
    pub stalled_sources: usize,
    /// Idle keep-alive connections.
    pub idle: usize,
    /// Distinct source addresses they come from.
    pub idle_sources: usize,
    /// Clients looping on big numbers in the heavy mix.
    pub heavy_clients: usize,
    /// The big number they send.
    pub heavy_workload: Workload,
    /// Big-number tests at once (`--big-tests`, passed explicitly so the
    /// lane's capacity is known).
    pub big_tests: usize,
    /// prime-server instances behind HAProxy in the larger setup.
    pub instances: usize,
    /// `--seal-interval` of the sealing table.
    pub seal_interval: Duration,
    /// The floor every table compares with (the cheapest of the classic
    /// line-17 table when it ran).
    pub floor: Kind,
    /// The big-number workload of the scaling section's heavy-lane row.
    pub lane_workload: Workload,
    /// Audit lines appended one at a time to time the audit lock.
    pub lock_lines: usize,
    /// How long each in-process timing loop of the primality section
    /// (gmpy2's tests, the library's) must last.
    pub test_timing: Duration,
    /// The best of this many such loops is taken.
    pub test_repeats: u32,
}

impl Settings {
    /// A table's planned measuring time: its rows times the rounds.
    fn planned(&self, rows: u32, round: Duration) -> Duration {
        round * rows * self.rounds.max(1)
    }
}

/// What every table needs: where things are, the settings, and a counter
/// for unique scratch file names.
pub struct Bench<'a> {
    /// Binaries and the scratch directory.
    pub tools: &'a Toolbox,
    /// Sizes and durations.
    pub settings: &'a Settings,
    /// The next unique number for scratch files.
    next: Cell<usize>,
}

impl<'a> Bench<'a> {
    /// A bench over `tools` with `settings`.
    pub fn new(tools: &'a Toolbox, settings: &'a Settings) -> Bench<'a> {
        Bench {
            tools,
            settings,
            next: Cell::new(0),
        }
    }

    fn unique(&self) -> usize {
        let n = self.next.get();
        self.next.set(n + 1);
        n
    }
}

/// A crowd to open in front of a server before its rounds.
#[derive(Debug, Clone)]
struct CrowdSpec {
    /// What its clients do.
    behaviour: Behaviour,
    /// How many connections.
    count: usize,
    /// The source addresses they are spread over.
    sources: Vec<Ipv4Addr>,
}

/// One row: a server run one way.
#[derive(Debug, Clone)]
struct Variant {
    /// The row's name.
    label: Option<String>,
    /// Floor or prime-server.
    kind: Kind,
    /// Flags and options for each instance.
    launch: Launch,
    /// prime-server instances (more than one only behind HAProxy).
    instances: usize,
    /// Put HAProxy in front (instances get `--proxy-protocol`).
    haproxy: bool,
    /// Seal the audit log at this interval (a fresh sealing state each).
    seal: Option<Duration>,
    /// Clients to hold open through the rounds.
    crowd: Option<CrowdSpec>,
}

impl Variant {
    fn floor(kind: Kind) -> Variant {
        Variant {
            label: None,
            kind,
            launch: Launch::default(),
            instances: 1,
            haproxy: false,
            seal: None,
            crowd: None,
        }
    }

    fn prime(label: &str, launch: Launch) -> Variant {
        Variant {
            label: Some(label.to_owned()),
            kind: Kind::PrimeServer,
            launch,
            ..Variant::floor(Kind::PrimeServer)
        }
    }
}

/// A prime-server (or floor) launch with the admin endpoint and `args`.
fn with_admin(args: &[String]) -> Launch {
    Launch {
        admin: true,
        args: args.iter().map(OsString::from).collect(),
        ..Launch::default()
    }
}

/// A variant started: its processes and crowd, alive until dropped.
struct Deployment {
    /// The server instances.
    servers: Vec<Server>,
    /// HAProxy, when in front.
    proxy: Option<Haproxy>,
    /// The crowd held open.
    crowd: Option<Crowd>,
    /// Where the honest load goes.
    addr: SocketAddr,
}

/// Counters read from a deployment before and after a round.
struct Reading {
    /// CPU time of every instance, summed.
    cpu: Option<Duration>,
    /// Context switches of every instance, summed.
    context_switches: Option<u64>,
    /// HAProxy's CPU time, when it is in front.
    proxy_cpu: Option<Duration>,
    /// The table's `/metrics` counters, each summed over the instances.
    counters: Vec<Option<f64>>,
}

impl Deployment {
    fn start(bench: &Bench, variant: &Variant) -> anyhow::Result<Deployment> {
        let tools = bench.tools;
        let mut servers = Vec::new();
        for _ in 0..variant.instances.max(1) {
            let n = bench.unique();
            let mut launch = variant.launch.clone();
            if variant.kind == Kind::PrimeServer {
                launch.audit_log = Some(tools.scratch.join(format!("audit-{n}.log")));
                if let Some(interval) = variant.seal {
                    let state = tools.scratch.join(format!("seal-{n}.state"));
                    keygen(&tools.prime_audit, &state, interval)?;
                    // The heartbeat may not be shorter than the interval.
                    let heartbeat = interval.max(Duration::from_secs(60));
                    launch.args.extend([
                        OsString::from("--audit-seal"),
                        state.into_os_string(),
                        OsString::from("--seal-interval"),
                        OsString::from(flag_duration(interval)),
                        OsString::from("--seal-heartbeat"),
                        OsString::from(flag_duration(heartbeat)),
                    ]);
                }
                if variant.haproxy {
                    launch.admin = true;
                    launch.args.push(OsString::from("--proxy-protocol"));
                }
            }
            servers.push(Server::launch(variant.kind, tools, &launch)?);
        }
        let proxy = if variant.haproxy {
            let binary = haproxy::find().context("haproxy is not installed")?;
            let instances: Vec<(SocketAddr, SocketAddr)> = servers
                .iter()
                .map(|s| Ok((s.addr, s.admin.context("an instance has no admin port")?)))
                .collect::<anyhow::Result<_>>()?;
            let dir = tools.scratch.join(format!("haproxy-{}", bench.unique()));
            Some(Haproxy::start(&binary, &dir, &instances)?)
        } else {
            None
        };
        let addr = proxy.as_ref().map_or(servers[0].addr, |p| p.addr);
        let crowd = match &variant.crowd {
            Some(spec) => {
                let crowd = Crowd::open(addr, spec.behaviour, spec.count, &spec.sources)?;
                wait_for(&servers[0], SETTLE_TIMEOUT, |get| {
                    Ok(get(OPEN)? >= spec.count as f64)
                })
                .with_context(|| {
                    format!(
                        "the server did not hold all {} {}",
                        spec.count,
                        spec.behaviour.name()
                    )
                })?;
                Some(crowd)
            }
            None => None,
        };
        Ok(Deployment {
            servers,
            proxy,
            crowd,
            addr,
        })
    }

    fn read(&self, counters: &[&str]) -> Reading {
        Reading {
            cpu: sum(self.servers.iter().map(Server::cpu)),
            context_switches: sum(self.servers.iter().map(Server::context_switches)),
            proxy_cpu: self.proxy.as_ref().and_then(Haproxy::cpu),
            counters: counters
                .iter()
                .map(|name| sum(self.servers.iter().map(|s| s.metric(name).ok())))
                .collect(),
        }
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        sum(self.servers.iter().map(Server::peak_rss_kib))
    }

    fn rss_kib(&self) -> Option<u64> {
        sum(self.servers.iter().map(Server::rss_kib))
    }
}

/// The sum of every value, or `None` if any is missing.
fn sum<T: std::iter::Sum<T>>(values: impl Iterator<Item = Option<T>>) -> Option<T> {
    values.sum()
}

/// Makes a sealing state with `prime-audit keygen`, its key epoch the
/// seal interval.
fn keygen(prime_audit: &Path, state: &Path, interval: Duration) -> anyhow::Result<()> {
    let out = std::process::Command::new(prime_audit)
        .args(["keygen", "--state"])
        .arg(state)
        .args(["--seal-interval", &flag_duration(interval)])
        .output()
        .with_context(|| format!("cannot run {}", prime_audit.display()))?;
    if !out.status.success() {
        bail!(
            "prime-audit keygen failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Waits (at most `limit`) until `ready` says yes, reading the server's
/// `/metrics` through the `get` it is given.
fn wait_for(
    server: &Server,
    limit: Duration,
    ready: impl Fn(&dyn Fn(&str) -> anyhow::Result<f64>) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let until = Instant::now() + limit;
    let get = |name: &str| server.metric(name);
    loop {
        if ready(&get)? {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("not within {limit:?}");
        }
        std::thread::sleep(POLL);
    }
}

/// What a row's rounds added up to.
struct Totals {
    /// The honest load's rounds, merged.
    load: LoadResult,
    /// Server CPU over the rounds (`None` once a reading failed).
    cpu: Option<Duration>,
    /// Server context switches over the rounds.
    context_switches: Option<u64>,
    /// HAProxy's CPU over the rounds (`None` without HAProxy).
    proxy_cpu: Option<Duration>,
    /// Each `/metrics` counter's increase over the rounds.
    counters: Vec<Option<f64>>,
    /// Peak RSS of the instances, summed, after the rounds.
    peak_rss_kib: Option<u64>,
    /// RSS of the instances now, summed, after the rounds.
    rss_kib: Option<u64>,
    /// Crowd connections still open after the rounds, and how many there were.
    held: Option<(usize, usize)>,
}

impl Totals {
    fn new(counters: usize) -> Totals {
        Totals {
            load: LoadResult::empty(),
            cpu: Some(Duration::ZERO),
            context_switches: Some(0),
            proxy_cpu: Some(Duration::ZERO),
            counters: vec![Some(0.0); counters],
            peak_rss_kib: None,
            rss_kib: None,
            held: None,
        }
    }

    fn add(&mut self, load: &LoadResult, before: &Reading, after: &Reading) {
        self.load.merge(load);
        let delta = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
        self.cpu = self
            .cpu
            .zip(delta(before.cpu, after.cpu))
            .map(|(t, d)| t + d);
        self.proxy_cpu = self
            .proxy_cpu
            .zip(delta(before.proxy_cpu, after.proxy_cpu))
            .map(|(t, d)| t + d);
        let cs = before
            .context_switches
            .zip(after.context_switches)
            .map(|(b, a)| a.saturating_sub(b));
        self.context_switches = self.context_switches.zip(cs).map(|(t, d)| t + d);
        for (total, (b, a)) in self
            .counters
            .iter_mut()
            .zip(before.counters.iter().zip(&after.counters))
        {
            *total = total.zip(b.zip(*a)).map(|(t, (b, a))| t + (a - b));
        }
    }

    fn measured(&self) -> Measured {
        Measured {
            load: self.load.clone(),
            server_cpu: self.cpu,
            server_context_switches: self.context_switches,
            peak_rss_kib: self.peak_rss_kib,
        }
    }

    /// Counter `index` per answered request.
    fn per_request(&self, index: usize) -> Option<f64> {
        let count = self.counters.get(index).copied().flatten()?;
        (self.load.requests > 0).then(|| count / self.load.requests as f64)
    }
}

/// Line-17 load, connection per request, event-driven.
fn honest(addr: SocketAddr, concurrency: usize, stop: Stop, half_close: bool) -> LoadSpec {
    LoadSpec {
        addr,
        concurrency,
        mode: Mode::PerConnection,
        generator: Generator::Evented,
        stop,
        timeout: HONEST_TIMEOUT,
        check_replies: true,
        half_close,
        abandon_at_stop: false,
    }
}

/// A few requests, one at a time: the row fails early, with a reason,
/// rather than filling a table with errors.
fn probe(
    addr: SocketAddr,
    requests: &[Request],
    half_close: bool,
    kind: Kind,
) -> anyhow::Result<()> {
    let mut spec = honest(addr, 1, Stop::Count(3), half_close);
    spec.timeout = Duration::from_secs(5);
    spec.check_replies = kind.answers_truly();
    let r = load::run(&spec, requests);
    if r.errors > 0 || r.wrong > 0 {
        bail!(
            "probe: {} errors and {} wrong replies in 3 requests",
            r.errors,
            r.wrong
        );
    }
    Ok(())
}

/// Starts every variant (with its crowd), probes it, then runs `rounds`
/// of honest load on each in rotating order, reading `counters` from
/// `/metrics` around each round. Rows that could not start carry why.
fn run_variants(
    bench: &Bench,
    variants: &[Variant],
    concurrency: usize,
    half_close: bool,
    counters: &[&str],
) -> anyhow::Result<Vec<Result<Totals, String>>> {
    let s = bench.settings;
    let requests = workload::requests(Workload::Seventeen)?;
    let deployments: Vec<Result<Deployment, String>> = variants
        .iter()
        .map(|v| {
            let d = Deployment::start(bench, v)?;
            probe(d.addr, &requests, half_close, v.kind)?;
            Ok(d)
        })
        .map(|r: anyhow::Result<Deployment>| r.map_err(|e| format!("{e:#}")))
        .collect();
    let mut totals: Vec<Totals> = variants
        .iter()
        .map(|_| Totals::new(counters.len()))
        .collect();
    let n = deployments.len();
    for round in 0..s.rounds.max(1) as usize {
        for offset in 0..n {
            let index = (round + offset) % n;
            let Ok(d) = &deployments[index] else { continue };
            let mut spec = honest(d.addr, concurrency, Stop::Duration(s.round), half_close);
            spec.check_replies = variants[index].kind.answers_truly();
            let before = d.read(counters);
            let result = load::run(&spec, &requests);
            let after = d.read(counters);
            totals[index].add(&result, &before, &after);
        }
    }
    Ok(deployments
        .into_iter()
        .zip(totals)
        .map(|(d, mut t)| {
            let d = d?;
            t.peak_rss_kib = d.peak_rss_kib();
            t.rss_kib = d.rss_kib();
            t.held = d.crowd.as_ref().map(|c| (c.still_open(), c.len()));
            Ok(t)
        })
        .collect())
}

/// `answered/sent` of a load.
fn answered(load: &LoadResult) -> String {
    format!("{}/{}", load.requests, load.sent())
}

/// A row of `variant` from its totals and extra cells.
fn row(variant: &Variant, totals: &Result<Totals, String>, extra: Vec<String>) -> Row {
    Row {
        kind: variant.kind,
        label: variant.label.clone(),
        outcome: totals.as_ref().map(Totals::measured).map_err(Clone::clone),
        extra,
    }
}

/// Whether every honest request of `m` was answered rightly, with a p99
/// under the target.
fn honest_target_met(m: &Measured) -> bool {
    m.load.requests > 0
        && m.load.errors == 0
        && m.load.wrong == 0
        && m.load.percentile(99.0) < P99_TARGET.as_micros() as u64
}

/// A duration as the server's flags take it: whole seconds when it is
/// some, milliseconds otherwise.
fn flag_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis().max(1))
    }
}

/// A timeout comfortably longer than a table's whole run, in whole
/// seconds for the server's flag (at most its 1 h limit).
fn longer_than(run: Duration) -> String {
    let secs = (run * 2 + Duration::from_secs(60))
        .as_secs()
        .clamp(60, 3600);
    format!("{secs}s")
}

mod behind_haproxy;
mod crowds;
mod durability;
mod heavy;
mod primality;
mod scaling;

pub use behind_haproxy::through_haproxy;
pub use crowds::{idle, stalled};
pub use durability::{audit_sync, sealing};
pub use heavy::heavy_mix;
pub use primality::primality;
pub use scaling::scaling;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_the_flags_read_them() {
        assert_eq!(flag_duration(Duration::from_secs(1)), "1s");
        assert_eq!(flag_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(flag_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(flag_duration(Duration::ZERO), "1ms");
    }

    #[test]
    fn timeouts_outlast_the_run_within_the_server_limits() {
        assert_eq!(longer_than(Duration::from_secs(18)), "96s");
        assert_eq!(longer_than(Duration::ZERO), "60s");
        assert_eq!(longer_than(Duration::from_secs(10_000)), "3600s");
    }

    #[test]
    fn totals_add_deltas_and_lose_what_was_missing() {
        let reading = |cpu: u64, cs: u64, counter: Option<f64>| Reading {
            cpu: Some(Duration::from_millis(cpu)),
            context_switches: Some(cs),
            proxy_cpu: None,
            counters: vec![counter],
        };
        let mut t = Totals::new(1);
        let mut load = LoadResult::empty();
        load.requests = 10;
        t.add(
            &load,
            &reading(100, 5, Some(2.0)),
            &reading(130, 9, Some(7.0)),
        );
        t.add(
            &load,
            &reading(200, 9, Some(7.0)),
            &reading(220, 10, Some(8.0)),
        );
        assert_eq!(t.cpu, Some(Duration::from_millis(50)));
        assert_eq!(t.context_switches, Some(5));
        assert_eq!(t.counters, vec![Some(6.0)]);
        assert_eq!(t.per_request(0), Some(0.3));
        // No HAProxy: its CPU is unknown, not zero.
        assert_eq!(t.proxy_cpu, None);
        t.add(&load, &reading(0, 0, None), &reading(1, 1, Some(1.0)));
        assert_eq!(t.counters, vec![None]);
    }
}
