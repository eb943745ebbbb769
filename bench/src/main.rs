//! `prime-bench`: measures line servers over loopback.
//!
//! * `prime-bench load --addr A --workload W`: drive any server and print
//!   requests/s, latency percentiles, errors and wrong replies.
//! * `prime-bench compare`: start the floor (at 2 threads, one per core and
//!   one per prime-server worker), the Python references and prime-server,
//!   run the same workloads against each, alternating between them so
//!   machine drift hits all alike, and write one table per workload (ratios
//!   against the cheapest floor) plus a latency-vs-concurrency chart.
//!   Then the tables for the newer behaviours ([`behaviours`]): honest
//!   load beside stalled clients and idle keep-alive connections, beside a
//!   loop of big numbers, through HAProxy, with each audit sync mode, and
//!   with the audit log sealed; and scaling past two cores: prime-server's
//!   CPU per request by thread role, where each single-threaded role
//!   would saturate one core, and system calls per request by kind; and
//!   prime-server's CPU per request on primes of each size, beside one
//!   strong base-2 test and GMP's whole test in gmpy2, timed in-process.
//! * `prime-bench floor`: the floor reference server itself.

mod behaviours;
mod classic;
mod crowd;
mod evented;
mod floor;
mod haproxy;
mod load;
mod report;
mod run;
mod scrape;
mod servers;
mod syscalls;
mod threads;
mod workload;

use anyhow::Context;
use clap::{Parser, Subcommand};
use classic::Flood;
use load::{Generator, LoadSpec, Mode, Stop};
use prime_server::ops::flags::{parse_addr, parse_duration};
use report::{Grid, Measured, SweepPoint, Table, Target};
use servers::{Kind, Toolbox};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use workload::Workload;

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
    /// Which sections to run, comma-separated [default: all]
    #[arg(long, value_enum, value_delimiter = ',')]
    tables: Vec<Section>,
    /// Honest connections in flight beside stalled, idle and heavy clients.
    #[arg(long, default_value_t = 16)]
    honest_concurrency: usize,
    /// Stalled clients (one byte sent, then nothing).
    #[arg(long, default_value_t = 1000)]
    stalled: usize,
    /// Source addresses (in 127.0.0.0/8) the stalled clients come from.
    #[arg(long, default_value_t = 250)]
    stalled_sources: usize,
    /// Idle keep-alive connections.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Source addresses (in 127.0.0.0/8) the idle connections come from.
    #[arg(long, default_value_t = 10)]
    idle_sources: usize,
    /// Clients looping on 4300-digit primes in the heavy mix.
    #[arg(long, default_value_t = 32)]
    heavy_clients: usize,
    /// prime-server instances behind HAProxy in its larger setup.
    #[arg(long, default_value_t = 3)]
    instances: usize,
}

/// A part of the comparison, for `--tables`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    /// The per-workload tables, the flood, the latency sweep and chart.
    Classic,
    /// Honest load beside stalled clients.
    Stalled,
    /// Honest load beside idle keep-alive connections.
    Idle,
    /// Light load while clients loop on big numbers.
    HeavyMix,
    /// Through HAProxy to one and several instances.
    Haproxy,
    /// Each `--audit-sync` mode.
    AuditSync,
    /// `--audit-seal` on and off.
    Seal,
    /// CPU per request by thread role, system calls per request by kind.
    Scaling,
    /// Server CPU per request by size of prime, beside gmpy2's tests.
    Primality,
}

impl Section {
    /// Every section, in report order.
    const ALL: [Section; 9] = [
        Section::Classic,
        Section::Stalled,
        Section::Idle,
        Section::HeavyMix,
        Section::Haproxy,
        Section::AuditSync,
        Section::Seal,
        Section::Scaling,
        Section::Primality,
    ];
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
            threads.unwrap_or_else(prime_server::net::default_workers),
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
        half_close: false,
        abandon_at_stop: false,
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

fn compare(args: &CompareArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let scratch = tempdir()?;
    let (tools, mut notes) = Toolbox::discover(&scratch, false)?;
    // The crowds hold thousands of sockets.
    let open_files = crowd::raise_open_files_limit().unwrap_or_else(|e| {
        notes.push(format!("cannot raise the open-files limit: {e}"));
        0
    });
    let sections: &[Section] = if args.tables.is_empty() {
        &Section::ALL
    } else {
        &args.tables
    };
    let rounds = if args.smoke { 1 } else { args.rounds.max(1) };
    let (round, heavy_round) = if args.smoke {
        (Duration::from_millis(300), Duration::from_millis(300))
    } else {
        (args.round, args.heavy_round)
    };
    let mut tables: Vec<Table> = Vec::new();
    let mut sweep = Vec::new();
    let mut flood = Vec::new();
    let mut chart_path = None;
    if sections.contains(&Section::Classic) {
        let classic = classic::classic(args, &tools, rounds, round, heavy_round)?;
        notes.extend(classic.notes);
        tables = classic.tables;
        sweep = classic.sweep;
        flood = classic.flood;
        let path = args.out.join("latency.svg");
        report::chart(
            &sweep,
            "line 17, connection per request: latency against concurrency",
            &path,
        )?;
        chart_path = Some(path);
    }

    let floor = tables.first().and_then(Table::cheapest_floor).map_or(
        Kind::Floor {
            threads: 2,
            defer_accept: false,
        },
        |(kind, _)| kind,
    );
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let settings = if args.smoke {
        behaviours::Settings {
            rounds,
            round,
            // Room to fill the lane on a loaded machine (half the window).
            heavy_round: Duration::from_secs(2),
            honest_concurrency: 4,
            concurrency: 8,
            stalled: 50,
            stalled_sources: 25,
            idle: 50,
            idle_sources: 2,
            heavy_clients: 4,
            heavy_workload: Workload::Digits1000,
            big_tests: cores,
            instances: args.instances.min(3),
            seal_interval: Duration::from_millis(100),
            floor,
            lane_workload: Workload::Digits100,
            lock_lines: 2_000,
            test_timing: Duration::from_millis(5),
            test_repeats: 2,
        }
    } else {
        behaviours::Settings {
            rounds,
            round,
            heavy_round,
            honest_concurrency: args.honest_concurrency.max(1),
            concurrency: 32,
            stalled: args.stalled,
            stalled_sources: args.stalled_sources.max(1),
            idle: args.idle,
            idle_sources: args.idle_sources.max(1),
            heavy_clients: args.heavy_clients.max(1),
            heavy_workload: Workload::Digits4300,
            big_tests: cores,
            instances: args.instances.max(1),
            seal_interval: Duration::from_secs(1),
            floor,
            lane_workload: Workload::Digits100,
            lock_lines: 200_000,
            test_timing: Duration::from_millis(100),
            test_repeats: 5,
        }
    };
    let bench = behaviours::Bench::new(&tools, &settings);
    let mut more_targets: Vec<Target> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut grids: Vec<Grid> = Vec::new();
    for &section in sections {
        let outcome = match section {
            Section::Classic => continue,
            Section::Stalled => behaviours::stalled(&bench).map(Some),
            Section::Idle => behaviours::idle(&bench, open_files).map(Some),
            Section::HeavyMix => behaviours::heavy_mix(&bench).map(Some),
            Section::Haproxy => behaviours::through_haproxy(&bench),
            Section::AuditSync => behaviours::audit_sync(&bench).map(Some),
            Section::Seal => behaviours::sealing(&bench).map(Some),
            Section::Scaling => behaviours::scaling(&bench).map(|s| {
                eprintln!("{}", s.roles.markdown());
                grids.push(s.roles);
                Some((s.table, s.targets))
            }),
            Section::Primality => match behaviours::primality(&bench) {
                Ok(p) => {
                    eprintln!("{}", p.grid.markdown());
                    grids.push(p.grid);
                    more_targets.extend(p.targets);
                    continue;
                }
                Err(e) => Err(e),
            },
        };
        match outcome {
            Ok(Some((table, targets))) => {
                eprintln!("{}", table.markdown());
                tables.push(table);
                more_targets.extend(targets);
            }
            Ok(None) => notes.push(
                "haproxy is not installed (scripts/ensure-tools.sh haproxy installs it): the HAProxy table is skipped".to_owned(),
            ),
            Err(e) => {
                let why = format!("the {section:?} table failed: {e:#}");
                notes.push(why.clone());
                failed.push(why);
            }
        }
    }

    let markdown = render(
        &Report {
            tables: &tables,
            grids: &grids,
            sweep: &sweep,
            flood: &flood,
            notes: &notes,
            more_targets: &more_targets,
            classic: sections.contains(&Section::Classic),
        },
        rounds,
        args.smoke,
    );
    let md_path = args.out.join("latest.md");
    std::fs::write(&md_path, &markdown)
        .with_context(|| format!("cannot write {}", md_path.display()))?;
    println!("{markdown}");
    match chart_path {
        Some(chart) => println!("wrote {} and {}", md_path.display(), chart.display()),
        None => println!("wrote {}", md_path.display()),
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if !failed.is_empty() {
        anyhow::bail!("{}", failed.join("; "));
    }
    Ok(())
}

/// Everything the report is made of.
struct Report<'a> {
    /// Every table, classic ones first.
    tables: &'a [Table],
    /// Tables whose rows are not servers (the scaling section's roles).
    grids: &'a [Grid],
    /// The latency sweep (empty without the classic section).
    sweep: &'a [SweepPoint],
    /// The flood table's rows (empty in a smoke run).
    flood: &'a [Flood],
    /// How to read the report, and what was skipped.
    notes: &'a [String],
    /// Targets of the behaviour tables.
    more_targets: &'a [Target],
    /// Whether the classic tables ran (their targets are listed then).
    classic: bool,
}

fn render(report: &Report, rounds: u32, smoke: bool) -> String {
    let mut md = String::from("# prime-bench results\n\n");
    let _ = writeln!(
        md,
        "Loopback, {} cores shared by the load generator and the server; {rounds} round(s) per server, servers alternating within each round.{}\n",
        std::thread::available_parallelism().map_or(0, usize::from),
        if smoke { " SMOKE RUN: tiny counts, figures mean nothing." } else { "" }
    );
    for note in report.notes {
        let _ = writeln!(md, "- {note}");
    }
    md.push('\n');
    md.push_str(&targets(report));
    md.push_str("\n## Tables\n\n");
    for table in report.tables {
        md.push_str(&table.markdown());
        md.push('\n');
    }
    for grid in report.grids {
        md.push_str(&grid.markdown());
        md.push('\n');
    }
    if !report.flood.is_empty() {
        md.push_str("### 64-bit primes while 8 clients flood 4300-digit primes\n\n| server | 64-bit req/s | 64-bit p50 | 64-bit p99 | 4300-digit req/s | errors |\n| --- | ---: | ---: | ---: | ---: | ---: |\n");
        for f in report.flood {
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
    if !report.sweep.is_empty() {
        md.push_str("### Latency against concurrency (line 17)\n\n![latency](latency.svg)\n\n| server | connections | p50 | p90 | p99 |\n| --- | ---: | ---: | ---: | ---: |\n");
        for p in report.sweep {
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
    }
    md
}

/// The targets, each with where we stand. Every "vs floor" is
/// against the cheapest floor of the table it comes from.
fn targets(report: &Report) -> String {
    let mut md = String::from(
        "## Targets\n\nAgainst the floor with the least server CPU per request in each table.\n\n| target | measured | met |\n| --- | ---: | :---: |\n",
    );
    if report.classic {
        md.push_str(&classic_targets(report.tables, report.flood));
    }
    for target in report.more_targets {
        md.push_str(&target.markdown_row());
        md.push('\n');
    }
    md.push_str("\nPer-test time against GMP itself is measured by `cargo bench --bench primality` (criterion).\n");
    md
}

/// The classic tables' targets, as rows of the targets table.
fn classic_targets(tables: &[Table], flood: &[Flood]) -> String {
    let mut md = String::new();
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
    let cpu: fn(&Measured) -> Option<f64> = Measured::cpu_per_request;
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
    md
}

/// A fresh scratch directory for prime-server's audit log.
fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("prime-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
