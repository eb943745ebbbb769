//! How the core runs, whatever the service: pool size, connection caps,
//! deadlines, the heavy lane, PROXY trust. Plain data, built from the
//! command line by the application and read by the accept loop and the
//! core.

use crate::net::connection::Limits;
use crate::net::per_address::Rate;
use crate::net::proxy::TrustedProxies;
use std::time::Duration;

/// How the core runs, whatever the service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerOptions {
    /// Worker threads in the pool. Workers never wait on a client, so a
    /// few per core suffice.
    pub workers: usize,
    /// Connections open at once, at most (waiting room, queue and workers
    /// together).
    pub max_connections: usize,
    /// Connections one client address may hold open (`None`: no cap).
    pub max_connections_per_ip: Option<u32>,
    /// Lines per second one client address may have answered (`None`: no
    /// limit).
    pub max_rate_per_ip: Option<Rate>,
    /// Deadlines and line limit for every connection.
    pub limits: Limits,
    /// Ask Linux to hand over a connection only once its first bytes have
    /// arrived (`TCP_DEFER_ACCEPT`, for up to the request timeout), so the
    /// fast path finds the line already there.
    pub defer_accept: bool,
    /// Longest a graceful stop may take before remaining connections are
    /// closed.
    pub shutdown_timeout: Duration,
    /// Heavy-lane threads; 0 for services with no heavy work.
    pub heavy_threads: usize,
    /// Lines a connection may have answered per worker turn before it goes
    /// behind the others.
    pub batch_lines: usize,
    /// `Some` with `--proxy-protocol`: every connection starts with a PROXY
    /// header, honoured only from these addresses.
    pub proxy: Option<TrustedProxies>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            workers: default_workers(),
            max_connections: 10_000,
            max_connections_per_ip: None,
            max_rate_per_ip: None,
            limits: Limits::default(),
            defer_accept: true,
            shutdown_timeout: Duration::from_secs(10),
            heavy_threads: cores(),
            batch_lines: 64,
            proxy: None,
        }
    }
}

/// The number of cores this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// The default pool size: one worker per core. Workers never wait on
/// clients (the room does) nor on big numbers (the lane does), so more
/// would only add wake-ups and context switches (measured: see
/// docs/performance.md#targets). A service whose workers wait for a disk
/// may want more (the prime service does under `--audit-sync always`).
pub fn default_workers() -> usize {
    cores()
}
