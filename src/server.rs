//! The server core: a blocking accept loop, a waiting room, a fixed worker
//! pool and a heavy lane, knowing nothing about primes.
//!
//! ```text
//!  TcpListener --accept--> [server] --line already there?--yes--> threadpool --> Handler
//!   (blocking)             admission     | no                      (fixed size)   [worker]
//!                                        v                            ^   | heavy work
//!                                      [room] --line complete---------'   v
//!                                   readiness + deadlines              [lane]
//! ```
//!
//! One job each, as in Tomcat's NIO connector: the accept loop only
//! accepts (and reads what has already arrived, so the common request goes
//! straight to a worker), the room ([`crate::room`]) only watches
//! connections that are not ready and owns their deadlines, the workers
//! ([`crate::worker`]) only serve lines, and the lane ([`crate::lane`])
//! only runs heavy work. A [`Handler`] serves the lines; the core supplies
//! everything around it, the way Python's `socketserver` separates the
//! server from the request handler:
//!
//! * **Admission.** At most `max_connections` connections are open at
//!   once, wherever they are; at the cap the loop waits and the kernel
//!   backlog absorbs the burst. At start the soft `RLIMIT_NOFILE` is raised
//!   to the hard limit, and the cap is lowered (with a warning) if it still
//!   cannot fit. Per-address caps and rates are in [`crate::clients`].
//! * **accept() errors** (EMFILE, ENFILE, ENOBUFS, ECONNABORTED, ...) are
//!   logged and retried after a back-off of 5 ms doubling to 1 s, as Go's
//!   `net/http` does; the loop never exits because of them.
//! * **Stopping.** Once [`Shutdown`] is requested the loop stops accepting,
//!   serves what the kernel had already queued (up to a bound), closes the
//!   listener so new connections are refused, and waits until every
//!   connection is done: lines already received are answered and logged,
//!   connections with no complete line are closed without a reply, and
//!   keep-alive connections close after their last answer. If that takes
//!   longer than `shutdown_timeout`, whatever is left is closed and counted.

use crate::clients::{Clients, Rate};
use crate::conn::{Connection, Limits};
use crate::health::Health;
use crate::lane::Lane;
use crate::metrics::CoreMetrics;
use crate::proxy::TrustedProxies;
use crate::room::Room;
use crate::shutdown::Shutdown;
use crate::sync::{Permit, Semaphore};
use crate::worker::{Core, Handler, ReadyQueue, Serve};
use prometheus_client::metrics::gauge::Gauge;
use slog::{info, warn, Logger};
use socket2::{Domain, Socket, Type};
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;
use threadpool::ThreadPool;

/// Listen backlog asked of the kernel (capped by `net.core.somaxconn`).
pub const BACKLOG: i32 = 1024;
/// First pause after a failed `accept()`.
const BACKOFF_START: Duration = Duration::from_millis(5);
/// Longest pause after repeated `accept()` failures.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Most connections served from the backlog once shutdown is requested, so
/// a flood cannot keep a stopping server busy forever.
pub const SHUTDOWN_DRAIN_LIMIT: usize = 4096;
/// Descriptors kept free for everything that is not a client connection
/// (listener, audit log, epoll, pipes, the admin endpoint, ...), at most;
/// under a tiny limit an eighth of it. Should the estimate be short,
/// `accept()` fails with EMFILE and backs off, as for any accept error.
const RESERVED_FDS: u64 = 64;
/// How long a stop waits for the lane threads and the pool to finish the
/// work in hand after the last connection closed.
const JOIN_GRACE: Duration = Duration::from_secs(2);

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
/// docs/performance.md#targets). With `--audit-sync always` a worker
/// waits for the disk, so see [`default_workers_for`].
pub fn default_workers() -> usize {
    cores()
}

/// The default pool size for an audit sync policy: with `always`, eight
/// per core, so that while one group `fdatasync` runs, the next group's
/// lines are being written (group commit needs writers in flight).
pub fn default_workers_for(policy: crate::audit::SyncPolicy) -> usize {
    match policy {
        crate::audit::SyncPolicy::Always => cores() * 8,
        _ => default_workers(),
    }
}

/// Why the server could not listen.
#[derive(Debug, Error)]
pub enum BindError {
    /// Something already listens on the address.
    #[error(
        "cannot listen on {addr}: the address is already in use (is another server running there?)"
    )]
    InUse {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// Any other failure: permissions, an address not on this machine, ...
    #[error("cannot listen on {addr}: {source}")]
    Other {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
}

/// Binds a listening socket with [`BACKLOG`] and `SO_REUSEADDR` (so a
/// restart does not wait out `TIME_WAIT`). Port 0 picks a free port.
///
/// # Errors
///
/// [`BindError::InUse`] when the address is taken, [`BindError::Other`]
/// for anything else.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    let attempt = || -> io::Result<TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            // `[::]` means IPv6 only, as with std; not a surprise dual stack.
            socket.set_only_v6(true)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        Ok(socket.into())
    };
    attempt().map_err(|source| match source.kind() {
        ErrorKind::AddrInUse => BindError::InUse { addr },
        _ => BindError::Other { addr, source },
    })
}

/// A connection's place under `--max-connections`; it also keeps the
/// `connections_open` gauge right, wherever the connection is dropped.
struct Admission {
    /// The semaphore permit.
    _permit: Permit,
    /// The gauge to decrement.
    open: Gauge,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// Runs the server on `listener` until `shutdown` is requested, then
/// finishes every accepted connection (see the module docs) and returns.
///
/// # Errors
///
/// Only set-up failures (the poller, threads, registering the listener for
/// wake-up); errors of `accept()` itself are logged and retried.
pub fn serve<H: Handler>(
    listener: TcpListener,
    shutdown: &Shutdown,
    handler: Arc<H>,
    options: &ServerOptions,
    metrics: &CoreMetrics,
    health: &Arc<Health>,
    log: &Logger,
) -> io::Result<()> {
    let registration = shutdown.register(&listener)?;
    if options.defer_accept {
        if let Err(e) = set_defer_accept(&listener, options.limits.request_timeout) {
            warn!(log, "TCP_DEFER_ACCEPT unavailable; connections reach the waiting room before their data"; "error" => %e);
        }
    }
    let max_connections = fit_connection_cap(options.max_connections, log);
    let workers = options.workers.max(1);
    let (room, room_handle) = Room::new()?;
    let lane = match options.heavy_threads {
        0 => None,
        n => Some(Lane::start(n, metrics.clone())?),
    };
    let core = Arc::new(Core {
        handler,
        pool: ThreadPool::with_name("worker".into(), workers),
        room: room_handle.clone(),
        lane,
        metrics: metrics.clone(),
        clients: Clients::new(options.max_connections_per_ip, options.max_rate_per_ip),
        proxy: options.proxy.clone(),
        shutdown: shutdown.clone(),
        abandoned: AtomicBool::new(false),
        batch_lines: options.batch_lines.max(1),
        ready: Mutex::new(ReadyQueue::default()),
        workers,
        work_arrived: Condvar::new(),
        limits: options.limits,
        health: Arc::clone(health),
        log: log.clone(),
    });
    let room_core: Arc<dyn Serve> = Arc::clone(&core) as Arc<dyn Serve>;
    let room_thread = std::thread::Builder::new()
        .name("waiting-room".into())
        .spawn(move || room.run(&room_core))?;
    let waker = room_handle.clone();
    let stopping = Arc::clone(health);
    shutdown.on_request(Box::new(move || {
        stopping.set_stopping();
        waker.wake();
    }));
    health.set_pool(Some(core.pool.clone()));
    info!(log, "listening";
        "address" => %listener.local_addr()?,
        "workers" => workers,
        "heavy_threads" => options.heavy_threads,
        "max_connections" => max_connections,
        "proxy_protocol" => options.proxy.is_some(),
        "defer_accept" => options.defer_accept);

    let slots = Semaphore::new(max_connections);
    health.set_listening(true);
    accept_loop(&listener, shutdown, &slots, &core);
    health.set_listening(false);
    let stop_started = Instant::now();
    let drained = drain_backlog(&listener, shutdown, &slots, &core);
    // Close the listening socket (both descriptors) so new connections are
    // refused while the rest finishes.
    drop(registration);
    drop(listener);
    info!(log, "stopped accepting; finishing accepted connections";
        "served_from_backlog" => drained, "open" => slots.in_use());

    let deadline = stop_started + options.shutdown_timeout;
    if !slots.wait_until_unused(deadline) {
        let left = slots.in_use();
        core.abandoned.store(true, Ordering::SeqCst);
        core.metrics
            .abandoned
            .inc_by(u64::try_from(left).unwrap_or(u64::MAX));
        warn!(log, "shutdown timeout reached; closing the remaining connections";
            "connections" => left, "shutdown_timeout" => ?options.shutdown_timeout);
        if let Some(lane) = &core.lane {
            lane.discard_queued();
        }
    }
    room_handle.exit();
    let _ = room_thread.join();
    core.wake_all_drainers();
    health.set_pool(None);
    // Work in hand (a big-number test, an audit write) finishes, bounded:
    // nothing answered goes unlogged, and nothing holds the exit for long.
    if let Some(lane) = &core.lane {
        lane.close();
    }
    let in_hand = Arc::clone(&core);
    join_within(JOIN_GRACE, move || {
        in_hand.pool.join();
        if let Some(lane) = &in_hand.lane {
            lane.join();
        }
    });
    Ok(())
}

/// Accepts until a stop is requested.
fn accept_loop<H: Handler>(
    listener: &TcpListener,
    shutdown: &Shutdown,
    slots: &Arc<Semaphore>,
    core: &Arc<Core<H>>,
) {
    let mut backoff = BACKOFF_START;
    while !shutdown.is_requested() {
        core.health.acceptor_idle();
        let slot = slots.acquire();
        if shutdown.is_requested() {
            break;
        }
        let accepted = listener.accept();
        core.health.acceptor_busy();
        match accepted {
            Ok((stream, peer)) => {
                backoff = BACKOFF_START;
                // The wake-up connection is made only after the flag is set,
                // so the lock in is_waker is taken only while stopping.
                if shutdown.is_requested() && shutdown.is_waker(peer) {
                    break;
                }
                admit(core, stream, peer, slot);
            }
            Err(_) if shutdown.is_requested() => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                core.metrics.accept_errors.inc();
                warn!(core.log, "accept failed; backing off"; "error" => %e, "retry_in" => ?backoff);
                drop(slot);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Wraps an accepted socket and hands it to the core.
fn admit<H: Handler>(
    core: &Arc<Core<H>>,
    stream: std::net::TcpStream,
    peer: SocketAddr,
    slot: Permit,
) {
    core.metrics.accepted.inc();
    core.metrics.open.inc();
    let mut conn = Connection::new(stream, peer, Instant::now(), core.limits);
    conn.hold_admission(Box::new(Admission {
        _permit: slot,
        open: core.metrics.open.clone(),
    }));
    core.accept(conn);
}

/// Serves connections the kernel had already completed when shutdown was
/// requested, without waiting for new ones. Returns how many it took.
fn drain_backlog<H: Handler>(
    listener: &TcpListener,
    shutdown: &Shutdown,
    slots: &Arc<Semaphore>,
    core: &Arc<Core<H>>,
) -> usize {
    if listener.set_nonblocking(true).is_err() {
        return 0;
    }
    let mut served = 0;
    while served < SHUTDOWN_DRAIN_LIMIT {
        let slot = slots.acquire();
        match listener.accept() {
            Ok((stream, peer)) => {
                if shutdown.is_waker(peer) {
                    continue;
                }
                // Accepted sockets do not inherit O_NONBLOCK on Linux, but
                // other systems differ: make sure.
                if stream.set_nonblocking(false).is_ok() {
                    admit(core, stream, peer, slot);
                    served += 1;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    served
}

/// Runs `f` on a thread and waits for it at most `limit`; if it does not
/// finish in time it is left to finish on its own.
fn join_within(limit: Duration, f: impl FnOnce() + Send + 'static) {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("stop-join".into())
        .spawn(move || {
            f();
            let _ = done_tx.send(());
        });
    if spawned.is_ok() {
        let _ = done_rx.recv_timeout(limit);
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (as Go and nginx do)
/// and returns the connection cap that fits under it, warning if it had to
/// be lowered.
fn fit_connection_cap(wanted: usize, log: &Logger) -> usize {
    let limit = match raise_nofile_limit() {
        Ok(limit) => limit,
        Err(e) => {
            warn!(log, "cannot read or raise the open-files limit"; "error" => %e);
            return wanted;
        }
    };
    let reserved = RESERVED_FDS.min(limit / 8);
    let fits = usize::try_from(limit.saturating_sub(reserved)).unwrap_or(usize::MAX);
    if wanted > fits {
        warn!(log, "--max-connections lowered to fit the open-files limit";
            "asked" => wanted, "now" => fits.max(1), "open_files_limit" => limit);
        return fits.max(1);
    }
    info!(log, "open-files limit"; "limit" => limit, "max_connections" => wanted);
    wanted
}

/// Raises the soft open-files limit to the hard one; returns the new soft
/// limit.
fn raise_nofile_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a live rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } == 0 {
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
}

/// Sets `TCP_DEFER_ACCEPT` on a listening socket: the kernel completes the
/// handshake but hands the connection to `accept()` only when data arrives,
/// or once `wait` has passed (then the request deadline applies as usual).
/// Public so the bench's floor server sets it exactly as the server does.
///
/// # Errors
///
/// The `setsockopt` failed, or the platform has no such option.
#[cfg(target_os = "linux")]
pub fn set_defer_accept(listener: &TcpListener, wait: Duration) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let seconds = libc::c_int::try_from(wait.as_secs().max(1)).unwrap_or(libc::c_int::MAX);
    let len =
        libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).map_err(io::Error::other)?;
    // SAFETY: a valid socket descriptor borrowed from `listener`, and a
    // pointer and length describing a live c_int, as setsockopt(2) expects.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::from_ref(&seconds).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere there is no such option; connections reach the room first.
#[cfg(not(target_os = "linux"))]
pub fn set_defer_accept(_listener: &TcpListener, _wait: Duration) -> io::Result<()> {
    Err(io::Error::new(
        ErrorKind::Unsupported,
        "TCP_DEFER_ACCEPT is Linux-only",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::panic_message;
    use std::panic::catch_unwind;

    #[test]
    fn bind_reports_an_address_in_use() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let err = bind(addr).unwrap_err();
        assert!(matches!(err, BindError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("already in use"));
    }

    #[test]
    fn panic_messages_are_recovered() {
        let p = catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "boom 1");
    }

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        let soft = raise_nofile_limit().unwrap();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in raise_nofile_limit.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) },
            0
        );
        assert_eq!(soft, limit.rlim_cur);
        assert_eq!(limit.rlim_cur, limit.rlim_max);
    }

    #[test]
    fn the_connection_cap_is_lowered_to_fit() {
        let soft = raise_nofile_limit().unwrap();
        let log = crate::logging::discard();
        let huge = usize::try_from(soft)
            .unwrap_or(usize::MAX)
            .saturating_add(1_000);
        let fitted = fit_connection_cap(huge, &log);
        assert_eq!(
            u64::try_from(fitted).unwrap(),
            soft - RESERVED_FDS.min(soft / 8)
        );
        assert_eq!(fit_connection_cap(10, &log), 10);
    }
}
