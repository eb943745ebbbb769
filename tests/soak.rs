//! `make soak`: a longer, bounded load-plus-faults session against the real
//! binary. Ignored by `make test`; run with
//! `cargo test --release --test soak -- --ignored --nocapture`.
//!
//! Phases:
//! 1. a flood of connections (`SOAK_CONNECTIONS`, default 10,000) from many
//!    threads, mixing honest requests with faulty clients: silent, reset
//!    mid-line, over-long, pipelined junk, hostile bytes;
//! 2. idle and stalled clients against a small pool, with and without
//!    `TCP_DEFER_ACCEPT`, timing an honest request behind them;
//! 3. SIGINT during load.
//!
//! It prints requests sent, replies received, audit lines, mismatches, torn
//! lines and peak RSS, and fails on any mismatch or torn line.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use test_support::{
    audit::parse_audit,
    io::{ask, reply_for, wait_until, IO_TIMEOUT},
    process::ServerProcess,
};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident memory of a process, in KiB, from /proc (Linux).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    replies: AtomicU64,
    mismatches: AtomicU64,
    faults: AtomicU64,
}

/// What one client of the flood does, chosen by its sequence number.
fn one_client(addr: SocketAddr, i: u64, tally: &Tally) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(10)) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let n = i.wrapping_mul(0x9e37_79b9) % 10_000_000;
    let (request, expected): (Vec<u8>, Option<&[u8]>) = match i % 20 {
        0 => {
            // Silent: connect and go.
            tally.faults.fetch_add(1, Ordering::Relaxed);
            return;
        }
        1 => {
            // Reset mid-line.
            let _ = s.write_all(b"12345");
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            tally.faults.fetch_add(1, Ordering::Relaxed);
            return;
        }
        2 => (vec![b'9'; 70_000], Some(b"E\n")),
        3 => (
            format!("{n}\n").repeat(500).into_bytes(),
            Some(expected_for(n)),
        ),
        4 => (b"\x1b]0;x\x07\r\n".to_vec(), Some(b"E\n")),
        _ => (format!("{n}\n").into_bytes(), Some(expected_for(n))),
    };
    tally.sent.fetch_add(1, Ordering::Relaxed);
    let mut writer = match s.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let feeder = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let _ = feeder.join();
    if reply.is_empty() {
        return;
    }
    tally.replies.fetch_add(1, Ordering::Relaxed);
    if Some(reply.as_slice()) != expected {
        tally.mismatches.fetch_add(1, Ordering::Relaxed);
        eprintln!("mismatch for client {i}: {reply:?}");
    }
}

fn expected_for(n: u64) -> &'static [u8] {
    reply_for(n).as_bytes()
}

/// Time an honest request takes behind `idle` silent and `stalled`
/// mid-line clients, on a 4-worker server.
fn honest_latency_behind(idle: usize, stalled: usize, extra: &[&str]) -> Duration {
    let mut args = vec![
        "--workers",
        "4",
        "--request-timeout",
        "3s",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let server = ServerProcess::start(&args);
    let idle: Vec<_> = (0..idle)
        .filter_map(|_| TcpStream::connect(server.addr).ok())
        .collect();
    let stalled: Vec<_> = (0..stalled)
        .filter_map(|_| {
            let mut s = TcpStream::connect(server.addr).ok()?;
            s.write_all(b"1").ok()?;
            Some(s)
        })
        .collect();
    // Wait until the server holds every client it will take: the stalled
    // ones, and the idle ones too when it does not defer accepting them.
    let held = stalled.len()
        + if extra.contains(&"--no-defer-accept") {
            idle.len()
        } else {
            0
        };
    assert!(
        wait_until(IO_TIMEOUT, || server
            .metric("prime_server_connections_waiting")
            == held as f64),
        "the server should hold {held} clients"
    );
    let started = Instant::now();
    let reply = ask(server.addr, "17");
    assert_eq!(reply, "T\n");
    started.elapsed()
}

#[test]
#[ignore = "long; run with make soak"]
fn soak() {
    let connections = env_or("SOAK_CONNECTIONS", 10_000);
    let threads = env_or("SOAK_THREADS", 64);
    let seconds = env_or("SOAK_SECONDS", 120);
    let mut server = ServerProcess::start(&["--request-timeout", "2s"]);
    let pid = server.child.id();
    let tally = Tally::default();
    let next = AtomicU64::new(0);
    let give_up = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();

    // Phase 1: the flood.
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= connections || Instant::now() > give_up {
                    break;
                }
                one_client(server.addr, i, &tally);
            });
        }
    });
    let flood_time = started.elapsed();
    let rss_after_flood = peak_rss_kib(pid);

    // Phase 3: SIGINT during load.
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let (tally, stop, addr) = (&tally, &stop, server.addr);
            scope.spawn(move || {
                let mut i = 1_000_000 + t;
                while !stop.load(Ordering::Relaxed) {
                    one_client(addr, i * 20 + 5, tally);
                    i += 8;
                }
            });
        }
        // Signal once this load is going.
        let before = server.audit_lines().len();
        assert!(wait_until(IO_TIMEOUT, || server.audit_lines().len() >= before + 50));
        server.signal(libc::SIGINT);
        let status = server.wait(Duration::from_secs(30));
        stop.store(true, Ordering::Relaxed);
        assert_eq!(status.code(), Some(0));
    });

    let audit = server.audit_lines();
    let torn = audit
        .iter()
        .filter(|l| std::panic::catch_unwind(|| parse_audit(l)).is_err())
        .count();
    let replies = tally.replies.load(Ordering::Relaxed);

    // Phase 2: idle and stalled clients, with and without deferred accept.
    let behind_idle_defer = honest_latency_behind(100, 0, &[]);
    let behind_idle_plain = honest_latency_behind(100, 0, &["--no-defer-accept"]);
    let behind_stalled = honest_latency_behind(0, 100, &[]);

    println!("soak: {connections} connections from {threads} threads in {flood_time:.1?}");
    println!(
        "  requests sent      {}",
        tally.sent.load(Ordering::Relaxed)
    );
    println!(
        "  faulty clients     {}",
        tally.faults.load(Ordering::Relaxed)
    );
    println!("  replies received   {replies}");
    println!("  audit lines        {}", audit.len());
    println!(
        "  mismatches         {}",
        tally.mismatches.load(Ordering::Relaxed)
    );
    println!("  torn lines         {torn}");
    println!(
        "  peak RSS           {} KiB after the flood",
        rss_after_flood.map_or("?".into(), |k| k.to_string())
    );
    println!("  honest request behind 100 silent clients:  {behind_idle_defer:.1?} with TCP_DEFER_ACCEPT, {behind_idle_plain:.1?} without");
    println!("  honest request behind 100 stalled clients: {behind_stalled:.1?} (4 workers, 3 s deadline)");
    assert_eq!(tally.mismatches.load(Ordering::Relaxed), 0);
    assert_eq!(torn, 0);
    assert!(
        audit.len() as u64 >= replies,
        "fewer audit lines than replies"
    );
}
