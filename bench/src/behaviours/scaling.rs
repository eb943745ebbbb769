//! Scaling past two cores, on paper: line-17 load against prime-server
//! and the floor, with the mechanism behind the figures. prime-server's
//! CPU and context switches per request are split by thread role (from
//! each thread's `/proc` counters, [`crate::threads`]), so the rate at
//! which each single-threaded role would fill one core can be read off;
//! the heavy lane gets a row of its own from a big-number round; the audit
//! writer's lock, held for the `write(2)` of each batch, is timed in this
//! process. Both servers' system calls per request, by kind, come from
//! `perf stat` ([`crate::syscalls`]) in rounds of their own, since its
//! tracepoints slow every system call.

use super::*;
use crate::report::Grid;
use crate::syscalls::{Perf, Syscalls, COLUMNS};
use crate::threads::{self, Role, RoleUsage};
use prime_server::audit::{format_line, AppendError, AuditLog, AuditMetrics, SyncPolicy};
use std::collections::HashMap;
use std::time::SystemTime;

/// The bound on prime-server's system calls per request under load.
const SYSCALL_TARGET: f64 = 5.5;

/// What the scaling section measured.
pub struct Scaling {
    /// The floor and prime-server, with system calls per request by kind.
    pub table: Table,
    /// prime-server's CPU and context switches per request by thread role,
    /// the lane's and the audit lock's, and where each would saturate.
    pub roles: Grid,
    /// System calls per request against the bound.
    pub targets: Vec<Target>,
}

/// One server's figures over the rounds.
struct Measure {
    /// Which server.
    kind: Kind,
    /// The server the CPU rounds run against (started once, never under
    /// perf), or why it could not start.
    plain: Result<Server, String>,
    /// Its load, CPU and context switches over the CPU rounds.
    totals: Totals,
    /// Its threads' CPU and context switches by role, over the same rounds.
    roles: HashMap<Role, RoleUsage>,
    /// System calls and the requests answered while they were counted, or
    /// why they were not.
    syscalls: Result<(Syscalls, u64), String>,
}

/// The audit writer's lock, timed in this process on one line at a time.
#[derive(Debug, Clone, Copy)]
struct LockHold {
    /// Mean time of `AuditLog::append` of one pre-formatted line: the lock
    /// taken, the `write(2)`, the lock released. The hold time per line,
    /// within the uncontended lock's own cost.
    append: Duration,
    /// Mean time of `AuditLog::record_batch` of one answer: the line
    /// formatted (outside the lock), then appended.
    record: Duration,
}

/// The scaling section: CPU per request by role, system calls per request
/// beside the floor's, the lane and the audit lock.
///
/// # Errors
///
/// A workload could not be made, or the audit lock could not be timed.
pub fn scaling(bench: &Bench) -> anyhow::Result<Scaling> {
    let s = bench.settings;
    let requests = workload::requests(Workload::Seventeen)?;
    let lane_requests = workload::requests(s.lane_workload)?;
    let perf = Perf::find();
    let mut measures: Vec<Measure> = [s.floor, Kind::PrimeServer]
        .into_iter()
        .map(|kind| Measure {
            kind,
            plain: start_plain(bench, kind, &requests).map_err(|e| format!("{e:#}")),
            totals: Totals::new(0),
            roles: HashMap::new(),
            syscalls: perf
                .as_ref()
                .map(|_| (Syscalls::default(), 0))
                .map_err(Clone::clone),
        })
        .collect();
    let mut lane_roles: HashMap<Role, RoleUsage> = HashMap::new();
    let mut lane_load = LoadResult::empty();
    // Each server twice per round, once for CPU and once under perf, in
    // rotating order; then the lane's round on the plain prime-server.
    let slots = measures.len() * 2;
    for round in 0..s.rounds.max(1) as usize {
        for offset in 0..slots {
            let slot = (round + offset) % slots;
            let m = &mut measures[slot / 2];
            if slot.is_multiple_of(2) {
                cpu_round(m, s, &requests);
            } else if let Ok(perf) = &perf {
                counted_round(bench, perf, m, &requests);
            }
        }
        if let Some(Ok(server)) = measures.last().map(|m| &m.plain) {
            let (load, roles) = role_round(server, s, &lane_requests);
            lane_load.merge(&load);
            threads::add(&mut lane_roles, &roles);
        }
    }
    for m in &mut measures {
        if let Ok(server) = &m.plain {
            m.totals.peak_rss_kib = server.peak_rss_kib();
        }
    }
    let lock = audit_lock_hold(&bench.tools.scratch, bench.unique(), s.lock_lines)?;

    let ours = &measures[measures.len() - 1];
    let ours_per_request = ours
        .syscalls
        .as_ref()
        .ok()
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| c.total as f64 / *n as f64);
    let targets = vec![Target {
        name: format!(
            "line 17, {} connections: system calls per request under load (<= {SYSCALL_TARGET})",
            s.concurrency
        ),
        measured: match (&ours.syscalls, ours_per_request) {
            (_, Some(per)) => format!("{per:.2}"),
            (Err(why), None) => format!("n/a: {why}"),
            (Ok(_), None) => "n/a".to_owned(),
        },
        met: ours_per_request.map(|per| per <= SYSCALL_TARGET),
    }];
    let roles = role_grid(s, ours, &lane_roles, &lane_load, lock);
    let table = syscall_table(s, &measures, &perf);
    Ok(Scaling {
        table,
        roles,
        targets,
    })
}

/// Starts `kind` with default flags (its own audit log) and probes it.
fn start_plain(bench: &Bench, kind: Kind, requests: &[Request]) -> anyhow::Result<Server> {
    let launch = Launch {
        audit_log: Some(
            bench
                .tools
                .scratch
                .join(format!("audit-{}.log", bench.unique())),
        ),
        ..Launch::default()
    };
    let server = Server::launch(kind, bench.tools, &launch)?;
    probe(server.addr, requests, false, kind)?;
    Ok(server)
}

/// The load of one round: `concurrency` connections, one per request.
fn round_spec(addr: SocketAddr, s: &Settings, kind: Kind) -> LoadSpec {
    let mut spec = honest(addr, s.concurrency, Stop::Duration(s.round), false);
    spec.check_replies = kind.answers_truly();
    spec
}

/// A reading of the server's whole-process counters, as the other tables
/// take them.
fn reading(server: &Server) -> Reading {
    Reading {
        cpu: server.cpu(),
        context_switches: server.context_switches(),
        proxy_cpu: None,
        counters: Vec::new(),
    }
}

/// One round for CPU: the process's counters and every thread's.
fn cpu_round(m: &mut Measure, s: &Settings, requests: &[Request]) {
    let Ok(server) = &m.plain else { return };
    let before = reading(server);
    let threads_before = threads::sample(server.pid());
    let load = load::run(&round_spec(server.addr, s, m.kind), requests);
    let threads_after = threads::sample(server.pid());
    let after = reading(server);
    m.totals.add(&load, &before, &after);
    if let (Some(b), Some(a)) = (threads_before, threads_after) {
        threads::add(&mut m.roles, &threads::by_role(&b, &a));
    }
}

/// One round of `requests` read by thread role only (the lane's round).
fn role_round(
    server: &Server,
    s: &Settings,
    requests: &[Request],
) -> (LoadResult, HashMap<Role, RoleUsage>) {
    let before = threads::sample(server.pid());
    let load = load::run(&round_spec(server.addr, s, Kind::PrimeServer), requests);
    let after = threads::sample(server.pid());
    let roles = before
        .zip(after)
        .map(|(b, a)| threads::by_role(&b, &a))
        .unwrap_or_default();
    (load, roles)
}

/// One round under perf: a fresh server as perf's child (so perf's
/// tracepoints exist only during this round), counting only while the
/// load runs. A failure ends the server's counting, with why.
fn counted_round(bench: &Bench, perf: &Perf, m: &mut Measure, requests: &[Request]) {
    let Ok((total, answered)) = &mut m.syscalls else {
        return;
    };
    let outcome = (|| -> anyhow::Result<(Syscalls, u64)> {
        let dir = bench.tools.scratch.join(format!("perf-{}", bench.unique()));
        std::fs::create_dir_all(&dir)?;
        let mut counter = perf.counter(&dir)?;
        let launch = Launch {
            audit_log: Some(dir.join("audit.log")),
            wrap: Some(counter.wrapper()),
            ..Launch::default()
        };
        let server = Server::launch(m.kind, bench.tools, &launch)?;
        probe(server.addr, requests, false, m.kind)?;
        counter.enable()?;
        let load = load::run(&round_spec(server.addr, bench.settings, m.kind), requests);
        counter.disable()?;
        // perf writes its counts once the server has exited.
        drop(server);
        if load.errors > 0 || load.wrong > 0 {
            bail!(
                "{} errors and {} wrong replies under perf",
                load.errors,
                load.wrong
            );
        }
        let counted = counter.read()?;
        let _ = std::fs::remove_dir_all(&dir);
        Ok((counted, load.requests))
    })();
    match outcome {
        Ok((counted, requests)) => {
            total.add(&counted);
            *answered += requests;
        }
        Err(e) => m.syscalls = Err(format!("{e:#}")),
    }
}

/// Times the audit writer's lock in this process: `lines` appends of one
/// line-17 audit line to a fresh log in `dir` (the filesystem the servers'
/// audit logs are on), `--audit-sync none`, then as many `record_batch`es.
fn audit_lock_hold(dir: &Path, unique: usize, lines: usize) -> anyhow::Result<LockHold> {
    let path = dir.join(format!("audit-lock-{unique}.log"));
    let log = AuditLog::open(
        &path,
        SyncPolicy::None,
        None,
        AuditMetrics::default(),
        &prime_server::ops::discard(),
    )?;
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 40_000));
    let answer = prime_server::prime::answer(b"17");
    let line = format_line(SystemTime::now(), peer, &answer);
    let lines = lines.max(1);
    let mean = |one: &dyn Fn() -> Result<(), AppendError>| -> anyhow::Result<Duration> {
        for _ in 0..lines / 10 {
            one()?;
        }
        let started = Instant::now();
        for _ in 0..lines {
            one()?;
        }
        Ok(started.elapsed() / u32::try_from(lines)?)
    };
    let append = mean(&|| log.append(line.as_bytes()))?;
    let record = mean(&|| log.record_batch(peer, [&answer]))?;
    drop(log);
    let _ = std::fs::remove_file(&path);
    Ok(LockHold { append, record })
}

/// Microseconds per request, with one decimal.
fn per_request_us(cpu: Duration, requests: u64) -> f64 {
    cpu.as_secs_f64() * 1e6 / requests.max(1) as f64
}

/// The rate one core carries at `us` of CPU per request (`-` when the
/// CPU rounds to nothing in the table).
fn one_core_rate(us: f64) -> String {
    if us >= 0.005 {
        format!("{:.0}", 1e6 / us)
    } else {
        "-".to_owned()
    }
}

/// The by-role grid: line-17 roles of prime-server, the lane's row from
/// its own round, the audit lock, and the whole server.
fn role_grid(
    s: &Settings,
    ours: &Measure,
    lane_roles: &HashMap<Role, RoleUsage>,
    lane_load: &LoadResult,
    lock: LockHold,
) -> Grid {
    let requests = ours.totals.load.requests;
    let mut rows = Vec::new();
    let mut row = |name: String, usage: RoleUsage, requests: u64, grows: &str| {
        let cpu = per_request_us(usage.cpu, requests);
        // Per thread means per thread of one role, not of the whole server.
        let per_thread = if name.starts_with("whole server") {
            "-".to_owned()
        } else {
            format!("{:.2}", cpu / usage.threads.max(1) as f64)
        };
        rows.push(vec![
            name,
            usage.threads.to_string(),
            format!("{cpu:.2}"),
            format!(
                "{:.2}",
                usage.context_switches as f64 / requests.max(1) as f64
            ),
            per_thread,
            one_core_rate(cpu),
            grows.to_owned(),
        ]);
    };
    for role in Role::ALL {
        let usage = ours.roles.get(&role).copied().unwrap_or_default();
        let always = matches!(
            role,
            Role::AcceptLoop | Role::WaitingRoom | Role::Workers | Role::HeavyLane
        );
        if usage.threads == 0 && !always {
            continue;
        }
        let grows = match role {
            _ if role.single_threaded() => "no: one thread, caps the server",
            Role::Workers => "yes (`--workers`): each core of them adds this rate",
            Role::HeavyLane => "idle for line 17: see the row below",
            _ => "off the path of a request",
        };
        row(role.name().to_owned(), usage, requests, grows);
    }
    let all = ours
        .roles
        .values()
        .fold(RoleUsage::default(), |t, u| RoleUsage {
            threads: t.threads + u.threads,
            cpu: t.cpu + u.cpu,
            context_switches: t.context_switches + u.context_switches,
        });
    row(
        "whole server (every thread)".to_owned(),
        all,
        requests,
        "one core of the whole server, for scale",
    );
    let lane = lane_roles
        .get(&Role::HeavyLane)
        .copied()
        .unwrap_or_default();
    row(
        format!("heavy lane (`heavy-N`), {} round", s.lane_workload.name()),
        lane,
        lane_load.requests,
        if lane.cpu.is_zero() {
            "the lane did not run for this workload"
        } else {
            "yes (`--big-tests`): each lane thread adds this rate"
        },
    );
    let hold = lock.append.as_secs_f64() * 1e6;
    rows.push(vec![
        "audit lock, held per line (in-process `append`)".to_owned(),
        "-".to_owned(),
        format!("{hold:.2}"),
        "-".to_owned(),
        "-".to_owned(),
        one_core_rate(hold),
        "no: one lock, every worker and lane thread takes it".to_owned(),
    ]);
    let mut notes = vec![
        format!(
            "prime-server with default flags ({} workers); each thread's CPU from `/proc/PID/task/TID/schedstat` (time on CPU, user and kernel) and context switches from its `status`, read before and after each line-17 round, grouped by thread name; per answered request ({} requests)",
            workers_of(ours),
            requests
        ),
        "\"one core of it saturates at\" is 1 / (CPU per request): for a single-threaded role the whole server's ceiling whatever the core count; for the pool and the lane what each more core of them adds".to_owned(),
        format!(
            "the lane's row: {} from the same generator, {} answered, CPU of the `heavy-N` threads per answer",
            s.lane_workload.name(),
            lane_load.requests
        ),
        format!(
            "the audit lock: mean of `AuditLog::append` of one line-17 audit line ({} bytes is typical) in this process, `--audit-sync none`, on the servers' scratch filesystem: the lock taken, the `write(2)`, the lock released; `record_batch` (formatting the line outside the lock, then the same) takes {:.2} us",
            format_line(SystemTime::UNIX_EPOCH, SocketAddr::from((Ipv4Addr::LOCALHOST, 40_000)), &prime_server::prime::answer(b"17")).len(),
            lock.record.as_secs_f64() * 1e6
        ),
        "on 2 shared cores every thread also waits for the load generator, so a role's CPU per request here is an upper bound on what it needs alone".to_owned(),
    ];
    if lane_load.errors > 0 || lane_load.wrong > 0 {
        notes.push(format!(
            "the lane's round had {} errors and {} wrong replies",
            lane_load.errors, lane_load.wrong
        ));
    }
    Grid {
        title: format!(
            "Scaling by role: line 17, {} connections, connection per request, prime-server's CPU per request by thread role",
            s.concurrency
        ),
        notes,
        header: [
            "role",
            "threads",
            "CPU us/req",
            "cs/req",
            "CPU us/req per thread",
            "one core of it saturates at (req/s)",
            "grows with cores",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows,
    }
}

/// The worker count of the measured prime-server, from its threads.
fn workers_of(ours: &Measure) -> usize {
    ours.roles.get(&Role::Workers).map_or(0, |u| u.threads)
}

/// The floor and prime-server with their system calls per request.
fn syscall_table(s: &Settings, measures: &[Measure], perf: &Result<Perf, String>) -> Table {
    let mut notes = vec![
        "CPU and context switches come from rounds without perf; system calls per answered request from as many rounds of the same length under `perf stat` (syscall tracepoints slow every system call): a fresh server as perf's child, counted only while the load runs".to_owned(),
        "the floor makes four by design (accept4, recvfrom, sendto, close); `other` names what it holds, largest first".to_owned(),
    ];
    match perf {
        Err(why) => notes.push(format!("system calls not counted: {why}")),
        Ok(_) => {
            for m in measures {
                if let Err(why) = &m.syscalls {
                    notes.push(format!(
                        "{}: system calls not counted: {why}",
                        m.kind.name()
                    ));
                }
            }
        }
    }
    let rows = measures
        .iter()
        .map(|m| Row {
            kind: m.kind,
            label: None,
            outcome: m
                .plain
                .as_ref()
                .map(|_| m.totals.measured())
                .map_err(Clone::clone),
            extra: syscall_cells(&m.syscalls),
        })
        .collect();
    let mut extra_columns = vec!["syscalls/req".to_owned()];
    extra_columns.extend(COLUMNS.iter().map(|(name, _)| (*name).to_owned()));
    extra_columns.push("other".to_owned());
    Table {
        title: format!(
            "Scaling: line 17, {} connections, connection per request, system calls per request",
            s.concurrency
        ),
        notes,
        rows,
        extra_columns,
    }
}

/// The system-call cells of a row: the total, each column, the rest.
fn syscall_cells(counted: &Result<(Syscalls, u64), String>) -> Vec<String> {
    let Ok((c, requests)) =
        counted.as_ref().map_err(|_| ()).and_then(
            |(c, n)| {
                if *n > 0 {
                    Ok((c, *n))
                } else {
                    Err(())
                }
            },
        )
    else {
        let mut cells = vec!["n/a".to_owned()];
        cells.resize(COLUMNS.len() + 2, "-".to_owned());
        return cells;
    };
    let per = |n: u64| n as f64 / requests as f64;
    let mut cells = vec![format!("{:.2}", per(c.total))];
    cells.extend(
        COLUMNS
            .iter()
            .map(|(name, _)| format!("{:.2}", per(c.column(name)))),
    );
    let (rest, named) = c.other();
    let named: Vec<String> = named
        .iter()
        .filter(|(_, n)| per(*n) >= 0.005)
        .take(3)
        .map(|(kind, n)| format!("{kind} {:.2}", per(*n)))
        .collect();
    cells.push(if named.is_empty() {
        format!("{:.2}", per(rest))
    } else {
        format!("{:.2} ({})", per(rest), named.join(", "))
    });
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_cells_are_per_request_with_the_rest_named() {
        let counted = Syscalls {
            total: 1000,
            by_kind: [("accept4", 100), ("close", 100), ("ioctl", 100)]
                .into_iter()
                .map(|(k, n)| (k.to_owned(), n))
                .collect(),
        };
        let cells = syscall_cells(&Ok((counted, 100)));
        assert_eq!(cells.len(), COLUMNS.len() + 2);
        assert_eq!(cells[0], "10.00");
        assert_eq!(cells[1], "1.00");
        assert_eq!(cells.last().unwrap(), "8.00 (ioctl 1.00)");
        let missing = syscall_cells(&Err("no perf".to_owned()));
        assert_eq!(missing.len(), COLUMNS.len() + 2);
        assert_eq!(missing[0], "n/a");
        assert_eq!(syscall_cells(&Ok((Syscalls::default(), 0)))[0], "n/a");
    }

    #[test]
    fn one_core_carries_the_inverse_of_the_cpu() {
        assert_eq!(one_core_rate(4.0), "250000");
        assert_eq!(one_core_rate(0.0), "-");
        assert_eq!(one_core_rate(0.001), "-");
        assert!((per_request_us(Duration::from_millis(36), 10_000) - 3.6).abs() < 1e-9);
    }
}
