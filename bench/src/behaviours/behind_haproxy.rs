//! The table behind HAProxy: the same server direct and through the shipped
//! configuration, with HAProxy's own CPU.

use super::*;

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
