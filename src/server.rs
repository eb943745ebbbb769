//! The server core: a blocking accept loop feeding a fixed worker pool.
//!
//! It knows nothing about primes. A [`Handler`] serves one connection; the
//! core supplies everything around it, the way Python's `socketserver`
//! separates the server from the request handler:
//!
//! * **Admission.** A connection takes a slot before it is accepted; there
//!   are `workers + max_pending` slots. When all are taken the loop waits
//!   instead of queueing without bound, and the kernel backlog absorbs the
//!   burst (`threadpool`'s own queue is unbounded).
//! * **accept() errors** (EMFILE, ENFILE, ENOBUFS, ECONNABORTED, ...) are
//!   logged and retried after a back-off of 5 ms doubling to 1 s, as Go's
//!   `net/http` does; the loop never exits because of them.
//! * **Panics** in a handler are caught, logged with the peer, and the worker
//!   thread lives on, so the pool keeps its size.
//! * **Shutdown.** Once [`Shutdown`] is requested the loop stops accepting,
//!   serves whatever the kernel had already queued (up to the free slots and
//!   a bound), closes the listener so new connections are refused, and joins
//!   the pool: every accepted connection is answered.

use crate::conn::{Connection, Limits};
use crate::logging::panic_message;
use crate::shutdown::Shutdown;
use crate::sync::{Permit, Semaphore};
use slog::{error, info, o, warn, Logger};
use socket2::{Domain, Socket, Type};
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
const SHUTDOWN_DRAIN_LIMIT: usize = 4096;

/// Serves one accepted connection; implemented by each service.
pub trait Handler: Send + Sync + 'static {
    /// Reads requests from `conn` and answers them. Runs on a worker thread;
    /// a panic here is contained by the core.
    fn handle(&self, conn: Connection, log: &Logger);
}

/// How the core runs, whatever the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// Worker threads in the pool: connections served at once.
    pub workers: usize,
    /// Connections accepted but waiting for a worker, at most.
    pub max_pending: usize,
    /// Deadlines and line limit for every connection.
    pub limits: Limits,
    /// Ask Linux to hand over a connection only once its first bytes have
    /// arrived (`TCP_DEFER_ACCEPT`, for up to the request timeout), so
    /// clients that connect and send nothing never occupy a worker.
    pub defer_accept: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            workers: default_workers(),
            max_pending: 256,
            limits: Limits::default(),
            defer_accept: true,
        }
    }
}

/// The default pool size: eight workers per core, at least 16. Cheap
/// requests are short, but a blocking worker is held for as long as its
/// client takes to send a line, so the pool is sized for slow clients too.
pub fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    (cores * 8).max(16)
}

/// What the core counted while it ran.
#[derive(Debug, Default)]
pub struct CoreStats {
    /// Connections handed to a worker.
    pub connections: AtomicU64,
    /// Handlers that panicked.
    pub panics: AtomicU64,
    /// `accept()` calls that failed.
    pub accept_errors: AtomicU64,
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

/// Runs the accept loop on `listener` until `shutdown` is requested, then
/// finishes every accepted connection and returns.
///
/// # Errors
///
/// Only set-up failures (registering the listener for wake-up); errors of
/// `accept()` itself are logged and retried.
pub fn serve<H: Handler>(
    listener: TcpListener,
    shutdown: &Shutdown,
    handler: Arc<H>,
    options: &ServerOptions,
    log: &Logger,
) -> io::Result<Arc<CoreStats>> {
    let registration = shutdown.register(&listener)?;
    if options.defer_accept {
        if let Err(e) = set_defer_accept(&listener, options.limits.request_timeout) {
            warn!(log, "TCP_DEFER_ACCEPT unavailable; idle clients will occupy workers"; "error" => %e);
        }
    }
    let workers = options.workers.max(1);
    info!(log, "listening";
        "address" => %listener.local_addr()?,
        "workers" => workers,
        "max_pending" => options.max_pending,
        "defer_accept" => options.defer_accept);
    let stats = Arc::new(CoreStats::default());
    let pool = ThreadPool::with_name("worker".into(), workers);
    let slots = Semaphore::new(workers + options.max_pending);
    let dispatcher = Dispatcher {
        pool: &pool,
        handler,
        limits: options.limits,
        stats: Arc::clone(&stats),
        log,
    };
    let mut backoff = BACKOFF_START;

    while !shutdown.is_requested() {
        let slot = slots.acquire();
        if shutdown.is_requested() {
            break;
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                backoff = BACKOFF_START;
                // The wake-up connection is made only after the flag is set,
                // so the lock in is_waker is taken only while stopping.
                if shutdown.is_requested() && shutdown.is_waker(peer) {
                    break;
                }
                dispatcher.dispatch(stream, peer, slot);
            }
            Err(_) if shutdown.is_requested() => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                warn!(log, "accept failed; backing off"; "error" => %e, "retry_in" => ?backoff);
                drop(slot);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    let drained = drain_backlog(&listener, shutdown, &slots, &dispatcher);
    // Close the listening socket (both descriptors) so new connections are
    // refused while the pool finishes.
    drop(registration);
    drop(listener);
    info!(log, "stopped accepting; finishing accepted connections";
        "served_from_backlog" => drained, "in_flight" => slots.in_use());
    pool.join();
    Ok(stats)
}

/// Sets `TCP_DEFER_ACCEPT` on a listening socket: the kernel completes the
/// handshake but hands the connection to `accept()` only when data arrives,
/// or once `wait` has passed (then the request deadline applies as usual).
#[cfg(target_os = "linux")]
fn set_defer_accept(listener: &TcpListener, wait: Duration) -> io::Result<()> {
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

/// Elsewhere there is no such option; idle clients wait on a worker.
#[cfg(not(target_os = "linux"))]
fn set_defer_accept(_listener: &TcpListener, _wait: Duration) -> io::Result<()> {
    Err(io::Error::new(
        ErrorKind::Unsupported,
        "TCP_DEFER_ACCEPT is Linux-only",
    ))
}

/// Serves connections the kernel had already completed when shutdown was
/// requested, without waiting for new ones. Returns how many it took.
fn drain_backlog<H: Handler>(
    listener: &TcpListener,
    shutdown: &Shutdown,
    slots: &Arc<Semaphore>,
    dispatcher: &Dispatcher<'_, H>,
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
                    dispatcher.dispatch(stream, peer, slot);
                    served += 1;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    served
}

/// Hands accepted connections to the pool.
struct Dispatcher<'a, H> {
    /// The worker pool.
    pool: &'a ThreadPool,
    /// The service.
    handler: Arc<H>,
    /// Per-connection bounds.
    limits: Limits,
    /// Counters shared with the caller.
    stats: Arc<CoreStats>,
    /// The server's logger; each connection gets a child with its peer.
    log: &'a Logger,
}

impl<H: Handler> Dispatcher<'_, H> {
    /// Queues `stream` for a worker; `slot` is released when it is done.
    fn dispatch(&self, stream: TcpStream, peer: SocketAddr, slot: Permit) {
        let accepted = Instant::now();
        let handler = Arc::clone(&self.handler);
        let stats = Arc::clone(&self.stats);
        let limits = self.limits;
        let log = self.log.new(o!("peer" => Peer(peer)));
        stats.connections.fetch_add(1, Ordering::Relaxed);
        self.pool.execute(move || {
            let _slot = slot;
            let conn = Connection::new(stream, peer, accepted, limits);
            let outcome = catch_unwind(AssertUnwindSafe(|| handler.handle(conn, &log)));
            if let Err(panic) = outcome {
                stats.panics.fetch_add(1, Ordering::Relaxed);
                error!(log, "handler panicked; connection dropped, server continues";
                    "panic" => panic_message(panic.as_ref()));
            }
        });
    }
}

/// A client address as a log value, formatted only if a record is emitted.
struct Peer(SocketAddr);

impl slog::Value for Peer {
    fn serialize(
        &self,
        _: &slog::Record<'_>,
        key: slog::Key,
        serializer: &mut dyn slog::Serializer,
    ) -> slog::Result {
        serializer.emit_arguments(key, &format_args!("{}", self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_reports_an_address_in_use() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let err = bind(addr).unwrap_err();
        assert!(matches!(err, BindError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("already in use"));
    }

    #[test]
    fn default_workers_is_at_least_sixteen() {
        assert!(default_workers() >= 16);
    }

    #[test]
    fn panic_messages_are_recovered() {
        let p = catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "boom 1");
    }
}
