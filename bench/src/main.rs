//! `prime-bench`: measures line servers over loopback.
//!
//! * `prime-bench load --addr A --workload W`: drive any server and print
//!   requests/s, latency percentiles, errors and wrong replies.
//! * `prime-bench compare`: start the floor (at 2 threads, one per core and
//!   one per prime-server worker), the Python references and prime-server,
//!   run the same workloads against each, alternating between them so
//!   machine drift hits all alike, and write one table per workload (ratios
//!   against the cheapest floor) plus a latency-vs-concurrency chart.
//! * `prime-bench floor`: the floor reference server itself.

mod evented;
mod floor;
mod load;
mod report;
mod servers;
mod workload;

use anyhow::Context;
use clap::{Parser, Subcommand};
use load::{Generator, LoadResult, LoadSpec, Mode, Stop};
use prime_server::config::{parse_addr, parse_duration};
use report::{Measured, Row, SweepPoint, Table};
use servers::{Kind, Server, Toolbox};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use workload::{Request, Workload};

/// Measure line servers over loopback.
#[derive(Debug, Parser)]
#[command(name = "prime-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Drive one server and print what it did.
    Load(LoadArgs),
    /// Run every reference and prime-server side by side; write the report.
    Compare(CompareArgs),
    /// Run the floor reference server (prints "listening ADDR").
    Floor {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:0", value_parser = parse_addr)]
        listen: SocketAddr,
        /// Answer every line of a connection.
        #[arg(long)]
        keep_alive: bool,
        /// Accepting threads [default: as many as prime-server's workers]
        #[arg(long)]
        threads: Option<usize>,
        /// Set TCP_DEFER_ACCEPT on the listener (Linux), as prime-server does.
        #[arg(long)]
        defer_accept: bool,
    },
}

#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// The server.
    #[arg(long, default_value = "127.0.0.1:8809", value_parser = parse_addr)]
    addr: SocketAddr,
    /// What to send.
    #[arg(long, value_enum, default_value_t = Workload::Seventeen)]
    workload: Workload,
    /// Send lines from this file instead (replies computed locally).
    #[arg(long, conflicts_with = "workload")]
    file: Option<PathBuf>,
    /// Connections at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Stop after this many requests (instead of --duration).
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Pipeline lines on one connection per client (the server needs --keep-alive).
    #[arg(long)]
    keep_alive: bool,
    /// What drives connection-per-request load.
    #[arg(long, value_enum, default_value_t = Generator::Evented)]
    generator: Generator,
    /// Lines in flight per connection with --keep-alive.
    #[arg(long, default_value_t = 64)]
    depth: usize,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
}

#[derive(Debug, clap::Args)]
struct CompareArgs {
    /// Where to write latest.md and latency.svg.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    out: PathBuf,
    /// Rounds per server and workload (servers alternate within a round).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Length of one round for cheap workloads.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    round: Duration,
    /// Length of one round for big-number workloads.
    #[arg(long, default_value = "6s", value_parser = parse_duration)]
    heavy_round: Duration,
    /// Tiny counts and cheap workloads only: proves the bench runs (used by make test).
    #[arg(long)]
    smoke: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Load(args) => load_command(&args),
        Command::Compare(args) => compare(&args),
        Command::Floor {
            listen,
            keep_alive,
            threads,
            defer_accept,
        } => floor::run(
            listen,
            keep_alive,
            threads.unwrap_or_else(prime_server::server::default_workers),
            defer_accept,
        ),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prime-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn load_command(args: &LoadArgs) -> anyhow::Result<()> {
    let requests = match &args.file {
        Some(path) => workload::requests_from_file(path)?,
        None => workload::requests(args.workload)?,
    };
    let spec = LoadSpec {
        addr: args.addr,
        concurrency: args.concurrency,
        mode: if args.keep_alive {
            Mode::Pipelined { depth: args.depth }
        } else {
            Mode::PerConnection
        },
        generator: args.generator,
        stop: args
            .count
            .map_or(Stop::Duration(args.duration), Stop::Count),
        timeout: args.timeout,
        check_replies: true,
    };
    let r = load::run(&spec, &requests);
    println!(
        "{} requests in {:.2?}: {:.0} req/s; latency p50 {} p90 {} p99 {} max {}; errors {}, wrong {}; generator CPU {:.1} us/req",
        r.requests,
        r.elapsed,
        r.rate(),
        report::micros(r.percentile(50.0)),
        report::micros(r.percentile(90.0)),
        report::micros(r.percentile(99.0)),
        report::micros(r.latency.max()),
        r.errors,
        r.wrong,
        r.generator_cpu.as_secs_f64() * 1e6 / r.requests.max(1) as f64
    );
    if r.errors > 0 || r.wrong > 0 {
        anyhow::bail!("{} errors and {} wrong replies", r.errors, r.wrong);
    }
    Ok(())
}

/// One comparison: a workload at a concurrency, in a mode.
struct Scenario {
    workload: Workload,
    concurrency: usize,
    mode: Mode,
    generator: Generator,
    round: Duration,
}

fn compare(args: &CompareArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let scratch = tempdir()?;
    let (tools, mut notes) = Toolbox::discover(&scratch, false)?;
    let rounds = if args.smoke { 1 } else { args.rounds.max(1) };
    let (round, heavy_round) = if args.smoke {
        (Duration::from_millis(300), Duration::from_millis(300))
    } else {
        (args.round, args.heavy_round)
    };
    let per_conn = |workload, concurrency| Scenario {
        workload,
        concurrency,
        mode: Mode::PerConnection,
        generator: Generator::Evented,
        round: if Workload::is_heavy(workload) {
            heavy_round
        } else {
            round
        },
    };
    let mut scenarios = vec![
        per_conn(Workload::Seventeen, 32),
        // The same load from a thread per connection: how much the
        // generator's shape moves the server's figures.
        Scenario {
            generator: Generator::Threads,
            ..per_conn(Workload::Seventeen, 32)
        },
        per_conn(Workload::Small, 32),
    ];
    if !args.smoke {
        scenarios.extend([
            per_conn(Workload::U64Primes, 32),
            per_conn(Workload::Digits100, 32),
            per_conn(Workload::Mix, 32),
            per_conn(Workload::Digits1000, 8),
            per_conn(Workload::Digits4300, 8),
        ]);
    }
    // Fewer pipelining clients than workers: a keep-alive connection holds
    // its worker, so more would measure the queue, not the server.
    scenarios.push(Scenario {
        workload: Workload::Seventeen,
        concurrency: if args.smoke { 2 } else { 8 },
        mode: Mode::Pipelined { depth: 64 },
        generator: Generator::Threads,
        round,
    });
    notes.push(format!(
        "floors: {} threads blocking in accept() (2, one per core, and one per prime-server worker), each with and without TCP_DEFER_ACCEPT; prime-server runs with --workers {}; every ratio is against the floor with the least server CPU per request in that table; big-number tables run only the cheapest floor of the first table",
        tools
            .floor_threads
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        tools.workers
    ));
    notes.push("connection-per-request rows are driven by one event-driven thread (epoll) unless the title says thread-per-connection generator; server cs/req is context switches of all the server's threads, from /proc/PID/task/*/status".to_owned());
    notes.push(format!("pipelined rows: the Python references speak one line per connection, so only prime-server and the floor with one thread per prime-server worker ({} threads; a keep-alive connection holds a thread) run them", tools.workers));

    let mut tables: Vec<Table> = Vec::new();
    for scenario in &scenarios {
        // Every floor answers big numbers as fast as small ones, so the
        // heavy tables need only one for reference.
        let only_floor = if scenario.workload.is_heavy() {
            tables
                .first()
                .and_then(Table::cheapest_floor)
                .map(|(kind, _)| kind)
        } else {
            None
        };
        let table = run_scenario(scenario, &tools, rounds, only_floor)?;
        eprintln!("{}", table.markdown());
        tables.push(table);
    }

    let sweep_levels: &[usize] = if args.smoke {
        &[1, 4]
    } else {
        &[1, 4, 16, 32, 64]
    };
    let floor = tables
        .first()
        .and_then(Table::cheapest_floor)
        .map(|(kind, _)| kind);
    let sweep = run_sweep(
        &tools,
        floor,
        sweep_levels,
        if args.smoke { round } else { args.round },
    )?;
    let chart_path = args.out.join("latency.svg");
    report::chart(
        &sweep,
        "line 17, connection per request: latency against concurrency",
        &chart_path,
    )?;

    let flood = if args.smoke {
        Vec::new()
    } else {
        run_flood(&tools, heavy_round)?
    };
    let markdown = render(&tables, &sweep, &flood, &notes, rounds, args.smoke);
    let md_path = args.out.join("latest.md");
    std::fs::write(&md_path, &markdown)
        .with_context(|| format!("cannot write {}", md_path.display()))?;
    println!("{markdown}");
    println!("wrote {} and {}", md_path.display(), chart_path.display());
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// Runs every server on one scenario: fresh servers, a probe, then rounds
/// in rotating order.
/// With `only_floor`, the other floors are left out.
fn run_scenario(
    scenario: &Scenario,
    tools: &Toolbox,
    rounds: u32,
    only_floor: Option<Kind>,
) -> anyhow::Result<Table> {
    let keep_alive = matches!(scenario.mode, Mode::Pipelined { .. });
    let requests = workload::requests(scenario.workload)?;
    let mut started: Vec<(Kind, Result<Server, String>)> = tools
        .available(keep_alive)
        .into_iter()
        .filter(|k| !k.is_floor() || only_floor.is_none_or(|f| f == *k))
        .map(|kind| {
            (
                kind,
                Server::start(kind, tools, keep_alive).map_err(|e| format!("{e:#}")),
            )
        })
        .collect();
    for (kind, server) in &mut started {
        if let Ok(s) = server {
            if let Err(why) = probe(s, &requests, scenario, *kind) {
                *server = Err(why);
            }
        }
    }
    let mut totals: Vec<(LoadResult, Duration, Option<u64>)> = started
        .iter()
        .map(|_| (LoadResult::empty(), Duration::ZERO, Some(0)))
        .collect();
    for round in 0..rounds as usize {
        let n = started.len();
        for offset in 0..n {
            let index = (round + offset) % n;
            let (kind, server) = &started[index];
            let Ok(server) = server else { continue };
            let spec = spec_for(server.addr, scenario, *kind, Stop::Duration(scenario.round));
            let cpu_before = server.cpu().unwrap_or_default();
            let cs_before = server.context_switches();
            let result = load::run(&spec, &requests);
            let cpu = server.cpu().unwrap_or_default().saturating_sub(cpu_before);
            let cs = cs_before
                .zip(server.context_switches())
                .map(|(before, after)| after.saturating_sub(before));
            totals[index].0.merge(&result);
            totals[index].1 += cpu;
            totals[index].2 = totals[index].2.zip(cs).map(|(sum, cs)| sum + cs);
        }
    }
    let rows = started
        .iter()
        .zip(totals)
        .map(|((kind, server), (load, server_cpu, cs))| Row {
            kind: *kind,
            outcome: server.as_ref().map_err(Clone::clone).map(|s| Measured {
                load,
                server_cpu,
                server_context_switches: cs,
                peak_rss_kib: s.peak_rss_kib(),
            }),
        })
        .collect();
    let mode = match (scenario.mode, scenario.generator) {
        (Mode::PerConnection, Generator::Evented) => "connection per request".to_owned(),
        (Mode::PerConnection, Generator::Threads) => {
            format!("connection per request, {}", Generator::Threads.name())
        }
        (Mode::Pipelined { depth }, _) => {
            format!("keep-alive, {depth} lines pipelined per connection")
        }
    };
    Ok(Table {
        title: format!(
            "{}, {} connections, {mode}",
            scenario.workload.name(),
            scenario.concurrency
        ),
        rows,
    })
}

/// One request of every kind in the workload, with a bound: servers that
/// cannot answer in time (trial division on big primes) are left out.
fn probe(
    server: &Server,
    requests: &[Request],
    scenario: &Scenario,
    kind: Kind,
) -> Result<(), String> {
    let limit = if scenario.workload.is_heavy() {
        Duration::from_secs(20)
    } else {
        Duration::from_secs(2)
    };
    let mut distinct: Vec<&Request> = Vec::new();
    for r in requests {
        if distinct.len() < 8 && !distinct.iter().any(|d| d.line.len() == r.line.len()) {
            distinct.push(r);
        }
    }
    let sample: Vec<Request> = distinct.into_iter().cloned().collect();
    let mut spec = spec_for(
        server.addr,
        scenario,
        kind,
        Stop::Count(sample.len() as u64),
    );
    spec.concurrency = 1;
    spec.timeout = limit;
    let result = load::run(&spec, &sample);
    if result.errors > 0 {
        return Err(format!("no answer within {limit:?} per request"));
    }
    if result.wrong > 0 {
        return Err("wrong answers".to_owned());
    }
    Ok(())
}

fn spec_for(addr: SocketAddr, scenario: &Scenario, kind: Kind, stop: Stop) -> LoadSpec {
    LoadSpec {
        addr,
        concurrency: scenario.concurrency,
        mode: scenario.mode,
        generator: scenario.generator,
        stop,
        timeout: Duration::from_secs(60),
        check_replies: kind.answers_truly(),
    }
}

/// Latency percentiles of the line `17` at several concurrencies, for
/// `floor` (the cheapest one; every floor when unknown) and the others.
fn run_sweep(
    tools: &Toolbox,
    floor: Option<Kind>,
    levels: &[usize],
    round: Duration,
) -> anyhow::Result<Vec<SweepPoint>> {
    let requests = workload::requests(Workload::Seventeen)?;
    let mut points = Vec::new();
    let kinds = tools
        .available(false)
        .into_iter()
        .filter(|k| !k.is_floor() || floor.is_none_or(|f| f == *k));
    for kind in kinds {
        let server = Server::start(kind, tools, false)?;
        for &concurrency in levels {
            let scenario = Scenario {
                workload: Workload::Seventeen,
                concurrency,
                mode: Mode::PerConnection,
                generator: Generator::Evented,
                round,
            };
            let r = load::run(
                &spec_for(server.addr, &scenario, kind, Stop::Duration(round)),
                &requests,
            );
            points.push(SweepPoint {
                kind,
                concurrency,
                percentiles: [r.percentile(50.0), r.percentile(90.0), r.percentile(99.0)],
            });
        }
    }
    Ok(points)
}

/// 64-bit requests while 8 clients flood 4300-digit primes.
struct Flood {
    kind: Kind,
    light: LoadResult,
    heavy: LoadResult,
}

fn run_flood(tools: &Toolbox, duration: Duration) -> anyhow::Result<Vec<Flood>> {
    let light_requests = workload::requests(Workload::U64Primes)?;
    let heavy_requests = workload::requests(Workload::Digits4300)?;
    let mut out = Vec::new();
    for kind in tools.available(false) {
        if kind.is_floor() || kind == Kind::Python {
            continue;
        }
        let server = Server::start(kind, tools, false)?;
        let spec = |concurrency| LoadSpec {
            addr: server.addr,
            concurrency,
            mode: Mode::PerConnection,
            generator: Generator::Evented,
            stop: Stop::Duration(duration),
            timeout: Duration::from_secs(120),
            check_replies: true,
        };
        let (heavy, light) = std::thread::scope(|scope| {
            let heavy = scope.spawn(|| load::run(&spec(8), &heavy_requests));
            // Let the flood fill the server first.
            std::thread::sleep(Duration::from_millis(200));
            let light = load::run(&spec(8), &light_requests);
            (heavy.join().unwrap_or_else(|_| LoadResult::empty()), light)
        });
        out.push(Flood { kind, light, heavy });
    }
    Ok(out)
}

fn render(
    tables: &[Table],
    sweep: &[SweepPoint],
    flood: &[Flood],
    notes: &[String],
    rounds: u32,
    smoke: bool,
) -> String {
    let mut md = String::from("# prime-bench results\n\n");
    let _ = writeln!(
        md,
        "Loopback, {} cores shared by the load generator and the server; {rounds} round(s) per server, servers alternating within each round.{}\n",
        std::thread::available_parallelism().map_or(0, usize::from),
        if smoke { " SMOKE RUN: tiny counts, figures mean nothing." } else { "" }
    );
    for note in notes {
        let _ = writeln!(md, "- {note}");
    }
    md.push('\n');
    md.push_str(&targets(tables, flood));
    md.push_str("\n## Tables\n\n");
    for table in tables {
        md.push_str(&table.markdown());
        md.push('\n');
    }
    if !flood.is_empty() {
        md.push_str("### 64-bit primes while 8 clients flood 4300-digit primes\n\n| server | 64-bit req/s | 64-bit p50 | 64-bit p99 | 4300-digit req/s | errors |\n| --- | ---: | ---: | ---: | ---: | ---: |\n");
        for f in flood {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.2} | {} |",
                f.kind.name(),
                report::rate(f.light.rate()),
                report::micros(f.light.percentile(50.0)),
                report::micros(f.light.percentile(99.0)),
                f.heavy.rate(),
                f.light.errors + f.heavy.errors + f.light.wrong + f.heavy.wrong
            );
        }
        md.push('\n');
    }
    md.push_str("### Latency against concurrency (line 17)\n\n![latency](latency.svg)\n\n| server | connections | p50 | p90 | p99 |\n| --- | ---: | ---: | ---: | ---: |\n");
    for p in sweep {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            p.kind.name(),
            p.concurrency,
            report::micros(p.percentiles[0]),
            report::micros(p.percentiles[1]),
            report::micros(p.percentiles[2])
        );
    }
    md
}

/// The targets, each with where we stand. Every "vs floor" is
/// against the cheapest floor of the table it comes from.
fn targets(tables: &[Table], flood: &[Flood]) -> String {
    let mut md = String::from(
        "## Targets\n\nAgainst the floor with the least server CPU per request in each table.\n\n| target | measured | met |\n| --- | ---: | :---: |\n",
    );
    let mut line =
        |target: &str, measured: Option<f64>, ok: Option<fn(f64) -> bool>, unit: &str| {
            let (value, met) = match (measured, ok) {
                (Some(v), Some(ok)) => (format!("{v:.2}{unit}"), if ok(v) { "yes" } else { "no" }),
                (Some(v), None) => (format!("{v:.2}{unit}"), "-"),
                (None, _) => ("n/a".to_owned(), "-"),
            };
            let _ = writeln!(md, "| {target} | {value} | {met} |");
        };
    let per_connection = |title: &str, generator: Generator| {
        tables.iter().find(|t| {
            t.title.starts_with(title)
                && t.title.contains("connection per request")
                && t.title.contains(Generator::Threads.name()) == (generator == Generator::Threads)
        })
    };
    let ratio = |t: Option<&Table>,
                 a: Option<Kind>,
                 b: Option<Kind>,
                 f: fn(&Measured) -> Option<f64>|
     -> Option<f64> {
        let t = t?;
        let (x, y) = (f(t.measured(a?)?)?, f(t.measured(b?)?)?);
        (y > 0.0).then(|| x / y)
    };
    let floor_of = |t: Option<&Table>| t.and_then(Table::cheapest_floor).map(|(k, _)| k);
    let ours = Some(Kind::PrimeServer);
    let cpu: fn(&Measured) -> Option<f64> = |m| Some(m.cpu_per_request());
    let line17 = per_connection("line 17, 32", Generator::Evented);
    let floor17 = floor_of(line17);
    line(
        "line 17: server CPU/request vs floor (<= 1.3x)",
        ratio(line17, ours, floor17, cpu),
        Some(|v| v <= 1.3),
        "x",
    );
    let threads17 = per_connection("line 17, 32", Generator::Threads);
    line(
        "line 17, thread-per-connection generator: server CPU/request vs floor (same target)",
        ratio(threads17, ours, floor_of(threads17), cpu),
        Some(|v| v <= 1.3),
        "x",
    );
    line(
        "line 17: server context switches/request vs floor (no target)",
        ratio(
            line17,
            ours,
            floor17,
            Measured::context_switches_per_request,
        ),
        None,
        "x",
    );
    line(
        "line 17: requests/s vs floor (>= 0.9x)",
        ratio(line17, ours, floor17, |m| Some(m.load.rate())),
        Some(|v| v >= 0.9),
        "x",
    );
    line(
        "line 17: p99 vs floor (<= 1.2x)",
        ratio(line17, ours, floor17, |m| {
            Some(m.load.percentile(99.0) as f64)
        }),
        Some(|v| v <= 1.2),
        "x",
    );
    line(
        "line 17: Python CPU/request over ours (>= 2x)",
        ratio(line17, Some(Kind::Python), ours, cpu),
        Some(|v| v >= 2.0),
        "x",
    );
    for digits in ["1000-digit", "4300-digit"] {
        let t = per_connection(digits, Generator::Evented);
        line(
            &format!("{digits}: throughput vs Python+gmpy2 (>= 1.8x)"),
            ratio(t, ours, Some(Kind::PythonGmpy2), |m| Some(m.load.rate())),
            Some(|v| v >= 1.8),
            "x",
        );
    }
    let p99 = flood
        .iter()
        .find(|f| f.kind == Kind::PrimeServer)
        .map(|f| f.light.percentile(99.0) as f64 / 1000.0);
    line(
        "64-bit p99 during a 4300-digit flood (< 50 ms)",
        p99,
        Some(|v| v < 50.0),
        " ms",
    );
    md.push_str("\nPer-test time against GMP itself is measured by `cargo bench --bench primality` (criterion).\n");
    md
}

/// A fresh scratch directory for prime-server's audit log.
fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("prime-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
