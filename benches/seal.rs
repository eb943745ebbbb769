//! What sealing costs the request path: `Tracker::observe` on one typical
//! 70-byte audit line (run under the audit writer's lock, so it adds to every
//! request), with a cut every 1024 lines as the sealing thread would take;
//! and one whole `Sealer::seal` (state save and seal append, four fsyncs),
//! which runs on the sealing thread, outside the lock, once per interval;
//! a heartbeat seal (what an idle server pays per `--seal-heartbeat`); and
//! stepping the key over a month of downtime (at start-up, and in verify).
//! `make bench` runs it; `make test` runs each case once.

use criterion::{criterion_group, criterion_main, Criterion};
use prime_server::audit::seal::{keygen, Key, Ratchet, Sealer, Tracker};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// A real audit line: 69 bytes plus the newline.
const LINE: &[u8] = b"2026-11-23T19:14:17.566136Z 127.0.0.1:41822 F '1024' is not a prime number\n";

/// A fresh state and empty log in `dir`, sealing opened on them.
fn open_sealing(dir: &Path, name: &str) -> (Sealer, Tracker) {
    let log = dir.join(format!("{name}.log"));
    let state = dir.join(format!("{name}.state"));
    keygen(&state, Duration::from_secs(1), SystemTime::now()).expect("keygen");
    std::fs::write(&log, b"").expect("log");
    let (sealer, tracker, _) =
        Sealer::open(&state, &log, SystemTime::now(), Duration::from_secs(60))
            .expect("open sealing");
    (sealer, tracker)
}

fn sealing(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("seal");
    let (_, mut tracker) = open_sealing(dir.path(), "observe");
    group.bench_function("observe one 70-byte line", |b| {
        let mut n = 0u32;
        b.iter(|| {
            tracker.observe(black_box(LINE));
            n += 1;
            if n.is_multiple_of(1024) {
                black_box(tracker.cut());
            }
        });
    });
    // Sealing does not read the log, so the lines need not be in it.
    let (mut sealer, mut tracker) = open_sealing(dir.path(), "seal");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("seal 100 lines (4 fsyncs, sealing thread)", |b| {
        b.iter(|| {
            for _ in 0..100 {
                tracker.observe(LINE);
            }
            let cuts = tracker.cut();
            black_box(sealer.seal(cuts, SystemTime::now()).expect("seal"));
        });
    });
    group.bench_function("heartbeat seal (idle, sealing thread)", |b| {
        b.iter(|| {
            let cuts = tracker.beat();
            black_box(sealer.seal(cuts, SystemTime::now()).expect("seal"));
        });
    });
    let seed = Key::generate().expect("random");
    let month_ms = 30 * 24 * 3600 * 1000u64;
    for (name, epoch_ms) in [("1s", 1000u64), ("10ms", 10)] {
        group.bench_function(format!("step the key over 30 days of {name} epochs"), |b| {
            b.iter(|| {
                let mut keys = Ratchet::from_seed(&seed);
                keys.advance_to(black_box(month_ms / epoch_ms));
                black_box(keys.epoch())
            });
        });
    }
    group.finish();
}

criterion_group!(benches, sealing);
criterion_main!(benches);
