//! The waiting room's tables: honest load beside a crowd of clients that
//! stalled after one byte, or that idle on keep-alive connections.

use super::*;

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
