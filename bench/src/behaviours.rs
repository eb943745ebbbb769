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

/// What the RSS columns of the crowd tables mean.
const RSS_NOTE: &str = "RSS now: the server's resident memory after the last round, its crowd still open; per crowd connection: the excess over the same server without a crowd, divided by the crowd's size (the kernel's socket buffers are not in it)";

/// The rows of a crowd table: the crowd's row first, the same server
/// without a crowd second, the floor last; extra cells answered/sent,
/// crowd held, RSS now and RSS per crowd connection.
/// Whether the crowd's server still held every crowd connection after the
/// last round (`false` when it was not measured).
fn crowd_held(totals: &Result<Totals, String>) -> bool {
    totals
        .as_ref()
        .ok()
        .and_then(|t| t.held)
        .is_some_and(|(open, all)| open == all)
}

fn crowd_rows(variants: &[Variant], totals: &[Result<Totals, String>], crowd: usize) -> Vec<Row> {
    let alone_rss = totals
        .get(1)
        .and_then(|t| t.as_ref().ok())
        .and_then(|t| t.rss_kib);
    variants
        .iter()
        .zip(totals)
        .enumerate()
        .map(|(i, (v, t))| {
            let ok = t.as_ref().ok();
            let held = ok
                .and_then(|t| t.held)
                .map_or("-".to_owned(), |(open, all)| format!("{open}/{all}"));
            let rss = ok
                .and_then(|t| t.rss_kib)
                .map_or("-".to_owned(), report::mib);
            let per_connection = match (i, ok.and_then(|t| t.rss_kib), alone_rss) {
                (0, Some(with), Some(alone)) if crowd > 0 => format!(
                    "{:.1} KiB",
                    with.saturating_sub(alone) as f64 / crowd as f64
                ),
                _ => "-".to_owned(),
            };
            let sent = ok.map_or("-".to_owned(), |t| answered(&t.load));
            row(v, t, vec![sent, held, rss, per_connection])
        })
        .collect()
}

/// Stalled clients: honest load beside clients that sent one byte each.
///
/// # Errors
///
/// The source addresses or the workload could not be made.
pub fn stalled(bench: &Bench) -> anyhow::Result<(Table, Vec<Target>)> {
    let s = bench.settings;
    let timeout = longer_than(s.planned(3, s.round));
    let flags = ["--request-timeout".to_owned(), timeout.clone()];
    let sources = crowd::source_addresses(Ipv4Addr::new(127, 0, 1, 1), s.stalled_sources)?;
    let with = format!("prime-server, {} stalled clients", s.stalled);
    let variants = [
        Variant {
            crowd: Some(CrowdSpec {
                behaviour: Behaviour::Stalled,
                count: s.stalled,
                sources,
            }),
            ..Variant::prime(&with, with_admin(&flags))
        },
        Variant::prime("prime-server, no stalled clients", with_admin(&flags)),
        Variant::floor(s.floor),
    ];
    let totals = run_variants(bench, &variants, s.honest_concurrency, false, &[])?;
    let rows = crowd_rows(&variants, &totals, s.stalled);
    let table = Table {
        title: format!(
            "Stalled clients: line 17, {} connections, connection per request, beside {} stalled clients from {} addresses",
            s.honest_concurrency, s.stalled, s.stalled_sources
        ),
        notes: vec![
            format!("each stalled client connects from its own address in 127.0.1.0/24 and up ({} addresses), sends `1` without a newline and stops; the server held all of them (its `/metrics` connections_open) before the first round, and \"stalled clients held\" counts those still open, unanswered, after the last", s.stalled_sources),
            format!("both prime-server rows run with `--request-timeout {timeout}` (longer than the table, so no stalled client times out during it) and `--admin-listen` (for that check); otherwise default flags"),
            "answered/sent: honest requests answered rightly out of those sent (an error or a wrong reply is not answered)".to_owned(),
            RSS_NOTE.to_owned(),
        ],
        rows,
        extra_columns: vec![
            "answered/sent".to_owned(),
            "stalled clients held".to_owned(),
            "RSS now".to_owned(),
            "RSS per stalled client".to_owned(),
        ],
    };
    let target = table.measured_row(&with).map(|m| {
        let held_all = crowd_held(&totals[0]);
        Target {
            name: format!(
                "{} stalled clients: every honest request answered, p99 < 50 ms (issue: 20 s before)",
                s.stalled
            ),
            measured: format!(
                "{} answered, p99 {}",
                answered(&m.load),
                report::micros(m.load.percentile(99.0))
            ),
            met: Some(honest_target_met(m) && held_all),
        }
    });
    Ok((table, target.into_iter().collect()))
}

/// Idle keep-alive connections: honest load beside thousands of pooled
/// connections that answered one line and idle.
///
/// # Errors
///
/// The open-files limit is too low for the crowd, or the source addresses
/// or the workload could not be made.
pub fn idle(bench: &Bench, open_files: u64) -> anyhow::Result<(Table, Vec<Target>)> {
    let s = bench.settings;
    let needed = (s.idle + 2 * s.honest_concurrency + 64) as u64;
    if open_files < needed {
        bail!(
            "{} idle connections need an open-files limit of about {needed}; this process has {open_files}",
            s.idle
        );
    }
    let idle_timeout = longer_than(s.planned(3, s.round) + Duration::from_secs(30));
    let max_connections = s.idle + s.honest_concurrency;
    let flags = [
        "--idle-timeout".to_owned(),
        idle_timeout.clone(),
        "--max-connections".to_owned(),
        max_connections.to_string(),
    ];
    let launch = Launch {
        keep_alive: true,
        ..with_admin(&flags)
    };
    let sources = crowd::source_addresses(Ipv4Addr::new(127, 0, 5, 1), s.idle_sources)?;
    let with = format!("prime-server --keep-alive, {} idle connections", s.idle);
    let variants = [
        Variant {
            crowd: Some(CrowdSpec {
                behaviour: Behaviour::Idle,
                count: s.idle,
                sources,
            }),
            ..Variant::prime(&with, launch.clone())
        },
        Variant::prime("prime-server --keep-alive, none idle", launch),
        Variant::floor(s.floor),
    ];
    let totals = run_variants(bench, &variants, s.honest_concurrency, true, &[])?;
    let rows = crowd_rows(&variants, &totals, s.idle);
    let table = Table {
        title: format!(
            "Idle keep-alive: line 17, {} connections, connection per request, beside {} idle keep-alive connections",
            s.honest_concurrency, s.idle
        ),
        notes: vec![
            format!("each idle connection comes from one of {} addresses in 127.0.5.0/24 and up, sent `17`, read `T` and idles; all were held (connections_open on `/metrics`) before the first round, and \"idle held\" counts those still open after the last", s.idle_sources),
            format!("both prime-server rows: `--keep-alive --idle-timeout {idle_timeout} --max-connections {max_connections}` (the idle ones plus the honest load) and `--admin-listen`, default workers; honest clients half-close after their line, as a keep-alive server answers until EOF (the floor is not keep-alive and does not care)"),
            RSS_NOTE.to_owned(),
        ],
        rows,
        extra_columns: vec![
            "answered/sent".to_owned(),
            "idle held".to_owned(),
            "RSS now".to_owned(),
            "RSS per idle connection".to_owned(),
        ],
    };
    let target = table.measured_row(&with).map(|m| {
        let held_all = crowd_held(&totals[0]);
        Target {
            name: format!("{} idle keep-alive connections: honest p99 < 50 ms", s.idle),
            measured: format!(
                "p99 {}, {} answered, RSS {}",
                report::micros(m.load.percentile(99.0)),
                answered(&m.load),
                totals[0]
                    .as_ref()
                    .ok()
                    .and_then(|t| t.rss_kib)
                    .map_or("?".to_owned(), report::mib)
            ),
            met: Some(honest_target_met(m) && held_all),
        }
    });
    Ok((table, target.into_iter().collect()))
}

/// How long one primality test of `line` takes here, the least of `runs`
/// tries: the library's own parse and test, in this process, so the
/// lane's capacity is measured on the same machine at the same time.
fn time_one_test(line: &str, runs: usize) -> anyhow::Result<Duration> {
    let n = prime_server::prime::parse_int(line.as_bytes())
        .map_err(|e| anyhow::anyhow!("the heavy number does not parse: {e}"))?;
    let mut best = Duration::MAX;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let prime = prime_server::prime::is_prime(std::hint::black_box(&n));
        best = best.min(started.elapsed());
        if !prime {
            bail!("the heavy number is not prime");
        }
    }
    Ok(best)
}

/// The heavy mix: light line-17 load while clients loop on big primes,
/// beside the light load alone; heavy answers/s beside the lane's capacity.
///
/// # Errors
///
/// The workloads could not be made or the heavy number did not test prime.
pub fn heavy_mix(bench: &Bench) -> anyhow::Result<(Table, Vec<Target>)> {
    let s = bench.settings;
    let light_requests = workload::requests(Workload::Seventeen)?;
    let heavy_requests = workload::requests(s.heavy_workload)?;
    let one_test = time_one_test(
        &heavy_requests[0].line,
        if s.heavy_round < Duration::from_secs(2) {
            1
        } else {
            2
        },
    )?;
    let capacity = s.big_tests as f64 / one_test.as_secs_f64().max(1e-9);
    // Long enough for each lane thread to finish a few tests.
    let window = s.heavy_round.max(one_test * 3);
    let flags = ["--big-tests".to_owned(), s.big_tests.to_string()];
    let mixed = format!("prime-server, light + {} heavy clients", s.heavy_clients);
    let variants = [
        Variant::prime(&mixed, with_admin(&flags)),
        Variant::prime("prime-server, light alone", with_admin(&flags)),
        Variant::floor(s.floor),
    ];
    // Each round starts every row afresh: heavy requests abandoned at the
    // end of a round would otherwise keep the lane (and the machine) busy
    // into the next row's round.
    let mut light: Vec<Result<Totals, String>> =
        variants.iter().map(|_| Ok(Totals::new(0))).collect();
    let mut heavy = LoadResult::empty();
    let mut walls = vec![Duration::ZERO; variants.len()];
    let n = variants.len();
    for round in 0..s.rounds.max(1) as usize {
        for offset in 0..n {
            let index = (round + offset) % n;
            let Ok(totals) = &mut light[index] else {
                continue;
            };
            let outcome = mix_round(
                bench,
                &variants[index],
                (index == 0).then_some(window),
                &light_requests,
                &heavy_requests,
            );
            match outcome {
                Ok(r) => {
                    totals.add(&r.light, &r.before, &r.after);
                    totals.peak_rss_kib = totals.peak_rss_kib.max(r.peak_rss_kib);
                    walls[index] += r.wall;
                    if let Some(h) = r.heavy {
                        heavy.merge(&h);
                    }
                }
                Err(e) => light[index] = Err(format!("{e:#}")),
            }
        }
    }
    // The mixed row's CPU is mostly the big tests': not the light
    // requests' own, so it is shown as cores busy instead.
    let cores_busy = |i: usize| {
        light[i]
            .as_ref()
            .ok()
            .and_then(|t| t.cpu)
            .filter(|_| !walls[i].is_zero())
            .map_or("-".to_owned(), |cpu| {
                format!("{:.2}", cpu.as_secs_f64() / walls[i].as_secs_f64())
            })
    };
    let heavy_cells = [
        report::rate(heavy.answer_pace()),
        format!("{capacity:.2}"),
        format!("{}/{}", heavy.requests, heavy.abandoned),
        format!("{}/{}", heavy.errors, heavy.wrong),
    ];
    let rows = variants
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut cells: Vec<String> = if i == 0 {
                heavy_cells.to_vec()
            } else {
                vec!["-".to_owned(); heavy_cells.len()]
            };
            cells.push(cores_busy(i));
            let mut r = row(v, &light[i], cells);
            if i == 0 {
                if let Ok(m) = &mut r.outcome {
                    m.server_cpu = None;
                    m.server_context_switches = None;
                }
            }
            r
        })
        .collect();
    let table = Table {
        title: format!(
            "Heavy mix: line 17, {} connections, connection per request, while {} clients loop on a {}",
            s.honest_concurrency,
            s.heavy_clients,
            s.heavy_workload.name()
        ),
        notes: vec![
            format!("prime-server runs with `--big-tests {}` (the lane's threads) and `--admin-listen`; the light load starts once every heavy client's request is in the lane (running or queued, from `/metrics`) and ends with the heavy loop, {:.1} s after it began (the larger of `--heavy-round` and three tests); heavy requests still queued then are abandoned and the server is stopped, so each round starts afresh", s.big_tests, window.as_secs_f64()),
            format!("one test of the {} takes {:.3} s here (the library's parse and test in the bench process, in this run), so the lane's capacity is {} / {:.3} s = {capacity:.2} answers/s", s.heavy_workload.name(), one_test.as_secs_f64(), s.big_tests, one_test.as_secs_f64()),
            "heavy answers/s: big-number answers over the time from the start of the heavy loop to its last answer; every lane thread starts its first test at once, so this is the lane's pace, without the tests the end of the round cut off".to_owned(),
            "the mixed row's server CPU and context switches are mostly the big tests', not the light requests' own, so they are left out; \"cores busy\" is server CPU time over wall time".to_owned(),
            "heavy answered/abandoned: big-number replies received in the rounds / requests cut off at their end; heavy errors/wrong must be 0/0".to_owned(),
        ],
        rows,
        extra_columns: vec![
            "heavy answers/s".to_owned(),
            "lane capacity/s".to_owned(),
            "heavy answered/abandoned".to_owned(),
            "heavy errors/wrong".to_owned(),
            "server cores busy".to_owned(),
        ],
    };
    let target = table.measured_row(&mixed).map(|m| Target {
        name: format!(
            "light p99 < 50 ms while {} clients loop on a {}",
            s.heavy_clients,
            s.heavy_workload.name()
        ),
        measured: format!(
            "p99 {} (alone {}), heavy {}/s of {capacity:.2}/s",
            report::micros(m.load.percentile(99.0)),
            table
                .measured_row("prime-server, light alone")
                .map_or("?".to_owned(), |a| report::micros(a.load.percentile(99.0))),
            report::rate(heavy.answer_pace())
        ),
        met: Some(honest_target_met(m) && heavy.errors == 0 && heavy.wrong == 0),
    });
    Ok((table, target.into_iter().collect()))
}

/// One round of one heavy-mix row.
struct MixRound {
    /// The light load.
    light: LoadResult,
    /// The heavy loop, in the mixed row.
    heavy: Option<LoadResult>,
    /// The server's counters before the round.
    before: Reading,
    /// And after.
    after: Reading,
    /// How long the round took, for cores busy.
    wall: Duration,
    /// The server's peak RSS at the end of the round.
    peak_rss_kib: Option<u64>,
}

/// Starts `variant` afresh and runs one round: light load alone, or (with
/// a heavy `window`) light load inside a loop of heavy requests that long.
fn mix_round(
    bench: &Bench,
    variant: &Variant,
    window: Option<Duration>,
    light_requests: &[Request],
    heavy_requests: &[Request],
) -> anyhow::Result<MixRound> {
    let s = bench.settings;
    let d = Deployment::start(bench, variant)?;
    probe(d.addr, light_requests, false, variant.kind)?;
    let started = Instant::now();
    let before = d.read(&[]);
    let (light, heavy) = if let Some(window) = window {
        let heavy_spec = LoadSpec {
            timeout: window + Duration::from_secs(600),
            abandon_at_stop: true,
            ..honest(d.addr, s.heavy_clients, Stop::Duration(window), false)
        };
        let server = &d.servers[0];
        let (light, heavy) = std::thread::scope(|scope| {
            let heavy = scope.spawn(|| load::run(&heavy_spec, heavy_requests));
            let full = wait_for(server, window / 2, |get| {
                Ok(get(BIG_RUNNING)? + get(BIG_QUEUED)? >= s.heavy_clients as f64)
            })
            .context("the heavy clients never filled the lane");
            let light = full.and_then(|()| {
                let left = (started + window).saturating_duration_since(Instant::now());
                if left.is_zero() {
                    bail!("the heavy loop ended before the light load could start");
                }
                let spec = honest(d.addr, s.honest_concurrency, Stop::Duration(left), false);
                Ok(load::run(&spec, light_requests))
            });
            let heavy = heavy
                .join()
                .map_err(|_| anyhow::anyhow!("the heavy load panicked"));
            (light, heavy)
        });
        (light?, Some(heavy?))
    } else {
        let spec = honest(d.addr, s.honest_concurrency, Stop::Duration(s.round), false);
        (load::run(&spec, light_requests), None)
    };
    let after = d.read(&[]);
    Ok(MixRound {
        light,
        heavy,
        before,
        after,
        wall: started.elapsed(),
        peak_rss_kib: d.peak_rss_kib(),
    })
}

/// Through HAProxy: the line-17 load direct, and through HAProxy to one
/// and to several instances. `Ok(None)` when HAProxy is not installed.
///
/// # Errors
///
/// The workload could not be made.
pub fn through_haproxy(bench: &Bench) -> anyhow::Result<Option<(Table, Vec<Target>)>> {
    if haproxy::find().is_none() {
        return Ok(None);
    }
    let s = bench.settings;
    let via = |instances: usize| Variant {
        instances,
        haproxy: true,
        ..Variant::prime(
            &format!(
                "HAProxy -> {instances} prime-server{}",
                if instances == 1 { "" } else { "s" }
            ),
            with_admin(&[]),
        )
    };
    let mut variants = vec![
        Variant::floor(s.floor),
        Variant::prime("prime-server, direct", with_admin(&[])),
        via(1),
    ];
    if s.instances > 1 {
        variants.push(via(s.instances));
    }
    let totals = run_variants(bench, &variants, s.concurrency, false, &[])?;
    let rows = variants
        .iter()
        .zip(&totals)
        .map(|(v, t)| {
            let ok = t.as_ref().ok();
            let per_request = |cpu: Option<Duration>| {
                ok.zip(cpu)
                    .filter(|(t, _)| t.load.requests > 0)
                    .map_or("-".to_owned(), |(t, cpu)| {
                        format!("{:.1}", cpu.as_secs_f64() * 1e6 / t.load.requests as f64)
                    })
            };
            let proxy = ok.and_then(|t| t.proxy_cpu).filter(|_| v.haproxy);
            let both = ok
                .and_then(|t| t.cpu)
                .map(|c| c + proxy.unwrap_or_default());
            row(
                v,
                t,
                vec![
                    if v.kind.is_floor() {
                        "-".to_owned()
                    } else {
                        v.instances.to_string()
                    },
                    per_request(proxy),
                    per_request(both),
                ],
            )
        })
        .collect();
    let table = Table {
        title: format!(
            "Through HAProxy: line 17, {} connections, connection per request",
            s.concurrency
        ),
        notes: vec![
            "HAProxy runs `deploy/haproxy.cfg` with only the addresses and `maxconn` changed (mode tcp, send-proxy-v2, leastconn, /readyz checks, one log line per connection, here discarded); instances run `--proxy-protocol --admin-listen`, the direct prime-server `--admin-listen`".to_owned(),
            "server CPU, context switches and peak RSS are summed over the instances; HAProxy's CPU is its own column, and the last adds both: the whole cost of a request behind the proxy".to_owned(),
            "on 2 shared cores more instances add no CPU to share: the rows show the proxy's cost, not scaling".to_owned(),
        ],
        rows,
        extra_columns: vec![
            "instances".to_owned(),
            "HAProxy CPU us/req".to_owned(),
            "server + HAProxy CPU us/req".to_owned(),
        ],
    };
    Ok(Some((table, Vec::new())))
}

/// The filesystem type of `path`, for the reader of a table that depends
/// on what `fdatasync` costs there.
fn filesystem(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return "unknown".to_owned();
    };
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: a NUL-terminated path and a pointer to a live statfs the call fills.
    if unsafe { libc::statfs(c_path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return "unknown".to_owned();
    }
    // SAFETY: statfs succeeded, so the struct is initialised.
    let kind = unsafe { stat.assume_init() }.f_type;
    // f_type is an i64 on x86_64 glibc but narrower elsewhere.
    #[allow(clippy::useless_conversion)]
    filesystem_name(i64::from(kind))
}

/// The name of a `statfs` filesystem magic number.
fn filesystem_name(magic: i64) -> String {
    match magic {
        0xEF53 => "ext2/3/4".to_owned(),
        0x5846_5342 => "xfs".to_owned(),
        0x9123_683E => "btrfs".to_owned(),
        0x0102_1994 => "tmpfs (fdatasync costs nothing there)".to_owned(),
        0x794C_7630 => "overlayfs".to_owned(),
        0x2FC1_2FC1 => "zfs".to_owned(),
        other => format!("magic {other:#x}"),
    }
}

/// The audit sync modes side by side, with `fdatasync`s per request.
///
/// # Errors
///
/// The workload could not be made.
pub fn audit_sync(bench: &Bench) -> anyhow::Result<(Table, Vec<Target>)> {
    let s = bench.settings;
    let mode = |m: &str| {
        Variant::prime(
            &format!("prime-server --audit-sync {m}"),
            with_admin(&["--audit-sync".to_owned(), m.to_owned()]),
        )
    };
    let variants = [
        Variant::floor(s.floor),
        mode("none"),
        mode("interval:1s"),
        mode("always"),
    ];
    let totals = run_variants(bench, &variants, s.concurrency, false, &[SYNCS])?;
    let rows = variants
        .iter()
        .zip(&totals)
        .map(|(v, t)| {
            let ok = t.as_ref().ok().filter(|_| !v.kind.is_floor());
            let count = ok
                .and_then(|t| t.counters[0])
                .map_or("-".to_owned(), |c| format!("{c:.0}"));
            let per = ok
                .and_then(|t| t.per_request(0))
                .map_or("-".to_owned(), |p| format!("{:.2}", p * 1000.0));
            row(v, t, vec![count, per])
        })
        .collect();
    let table = Table {
        title: format!(
            "Audit sync: line 17, {} connections, connection per request, each --audit-sync mode",
            s.concurrency
        ),
        notes: vec![
            format!("the audit logs are on {} ({}); fdatasyncs are counted by the server (`prime_server_audit_sync_duration_seconds_count` on `/metrics`, `--admin-listen` on every row)", bench.tools.scratch.display(), filesystem(&bench.tools.scratch)),
            "`always` shares one fdatasync among the requests that wait for it together (group commit), so fewer than 1000 per 1000 requests are expected under concurrency; `interval:1s` syncs once a second when there is something new".to_owned(),
        ],
        rows,
        extra_columns: vec![
            "fdatasyncs".to_owned(),
            "fdatasyncs per 1000 req".to_owned(),
        ],
    };
    Ok((table, Vec::new()))
}

/// Sealing on and off.
///
/// # Errors
///
/// The workload could not be made.
pub fn sealing(bench: &Bench) -> anyhow::Result<(Table, Vec<Target>)> {
    let s = bench.settings;
    let interval = flag_duration(s.seal_interval);
    let sealed = format!("prime-server --audit-seal, --seal-interval {interval}");
    let variants = [
        Variant::floor(s.floor),
        Variant::prime("prime-server, not sealed", with_admin(&[])),
        Variant {
            seal: Some(s.seal_interval),
            ..Variant::prime(&sealed, with_admin(&[]))
        },
    ];
    let totals = run_variants(bench, &variants, s.concurrency, false, &[SEALS])?;
    let unsealed_cpu = totals[1]
        .as_ref()
        .ok()
        .map(|t| t.measured())
        .and_then(|m| m.cpu_per_request());
    let rows = variants
        .iter()
        .zip(&totals)
        .map(|(v, t)| {
            let ok = t.as_ref().ok().filter(|_| !v.kind.is_floor());
            let seals = ok
                .and_then(|t| t.counters[0])
                .map_or("-".to_owned(), |c| format!("{c:.0}"));
            let vs = ok
                .and_then(|t| t.measured().cpu_per_request())
                .zip(unsealed_cpu)
                .filter(|(_, u)| *u > 0.0)
                .map_or("-".to_owned(), |(c, u)| format!("{:.3}x", c / u));
            row(v, t, vec![seals, vs])
        })
        .collect();
    let table = Table {
        title: format!(
            "Sealing: line 17, {} connections, connection per request, audit log sealed and not",
            s.concurrency
        ),
        notes: vec![
            "the sealed row starts from a fresh state made by `prime-audit keygen`; seals are counted by the server (`prime_server_audit_seals_total` on `/metrics`; `--admin-listen` on both rows)".to_owned(),
        ],
        rows,
        extra_columns: vec!["seals written".to_owned(), "CPU/req vs not sealed".to_owned()],
    };
    let ratio = table
        .measured_row(&sealed)
        .and_then(Measured::cpu_per_request)
        .zip(unsealed_cpu)
        .filter(|(_, u)| *u > 0.0)
        .map(|(c, u)| c / u);
    let target = Target {
        name: "sealing: server CPU/request within 5% of not sealed (<= 1.05x)".to_owned(),
        measured: ratio.map_or("n/a".to_owned(), |r| format!("{r:.3}x")),
        met: ratio.map(|r| r <= 1.05),
    };
    Ok((table, vec![target]))
}

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
    fn filesystems_are_named() {
        assert_eq!(filesystem_name(0xEF53), "ext2/3/4");
        assert!(filesystem_name(0x0102_1994).starts_with("tmpfs"));
        assert_eq!(filesystem_name(0x1234), "magic 0x1234");
        assert_ne!(filesystem(Path::new("/")), "unknown");
    }

    #[test]
    fn one_test_is_timed_and_must_be_prime() {
        assert!(time_one_test("1000003", 2).unwrap() < Duration::from_secs(1));
        assert!(time_one_test("1000001", 1).is_err());
        assert!(time_one_test("4j", 1).is_err());
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
