//! The audit log's tables: what `--audit-sync` and `--audit-seal` cost per
//! request, with the `fdatasync`s and seals that show them at work.

use super::*;

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
    fn filesystems_are_named() {
        assert_eq!(filesystem_name(0xEF53), "ext2/3/4");
        assert!(filesystem_name(0x0102_1994).starts_with("tmpfs"));
        assert_eq!(filesystem_name(0x1234), "magic 0x1234");
        assert_ne!(filesystem(Path::new("/")), "unknown");
    }
}
