//! The Acceptor: the user's blocking accept loop, and the stop sequence.
//! [`serve`] runs the whole core (waiting room, worker pool, heavy lane)
//! around it, knowing nothing about primes.
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
//! straight to a worker), the room ([`crate::net::room`]) only watches
//! connections that are not ready and owns their deadlines, the workers
//! ([`crate::net::worker`]) only serve lines, and the lane ([`crate::net::lane`])
//! only runs heavy work. A [`Handler`] serves the lines; the core supplies
//! everything around it, the way Python's `socketserver` separates the
//! server from the request handler:
//!
//! * **Admission.** At most `max_connections` connections are open at
//!   once, wherever they are; at the cap the loop waits and the kernel
//!   backlog absorbs the burst. At start the soft `RLIMIT_NOFILE` is raised
//!   to the hard limit, and the cap is lowered (with a warning) if it still
//!   cannot fit ([`crate::net::listener`]). Per-address caps and rates are
//!   in [`crate::net::per_address`].
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

use crate::net::admission::{Admission, Permit, Semaphore};
use crate::net::connection::Connection;
use crate::net::handler::Handler;
use crate::net::listener::{fit_connection_cap, set_defer_accept};
use crate::net::liveness::Liveness;
use crate::net::metrics::CoreMetrics;
use crate::net::options::ServerOptions;
use crate::net::shutdown::Shutdown;
use crate::net::worker::Core;
use slog::{info, warn, Logger};
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First pause after a failed `accept()`.
const BACKOFF_START: Duration = Duration::from_millis(5);
/// Longest pause after repeated `accept()` failures.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Most connections served from the backlog once shutdown is requested, so
/// a flood cannot keep a stopping server busy forever.
pub const SHUTDOWN_DRAIN_LIMIT: usize = 4096;

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
    liveness: &Arc<Liveness>,
    log: &Logger,
) -> io::Result<()> {
    let registration = shutdown.register(&listener)?;
    if options.defer_accept {
        if let Err(e) = set_defer_accept(&listener, options.limits.request_timeout) {
            warn!(log, "TCP_DEFER_ACCEPT unavailable; connections reach the waiting room before their data"; "error" => %e);
        }
    }
    let max_connections = fit_connection_cap(options.max_connections, log);
    metrics.set_capacity(
        options.workers.max(1),
        options.heavy_threads,
        max_connections,
    );
    let core = Core::start(handler, options, metrics, liveness, shutdown, log)?;
    info!(log, "listening";
        "address" => %listener.local_addr()?,
        "workers" => options.workers.max(1),
        "heavy_threads" => options.heavy_threads,
        "max_connections" => max_connections,
        "proxy_protocol" => options.proxy.is_some(),
        "defer_accept" => options.defer_accept);

    let slots = Semaphore::new(max_connections);
    liveness.set_listening(true);
    accept_loop(&listener, shutdown, &slots, &core);
    liveness.set_listening(false);
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
        core.abandon(left);
        warn!(log, "shutdown timeout reached; closing the remaining connections";
            "connections" => left, "shutdown_timeout" => ?options.shutdown_timeout);
    }
    core.shut_down();
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
        core.liveness().acceptor_idle();
        let slot = slots.acquire();
        if shutdown.is_requested() {
            break;
        }
        let accepted = listener.accept();
        core.liveness().acceptor_busy();
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
                core.metrics().accept_errors.inc();
                warn!(core.log(), "accept failed; backing off"; "error" => %e, "retry_in" => ?backoff);
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
    core.metrics().accepted.inc();
    let mut conn = Connection::new(stream, peer, Instant::now(), core.limits());
    conn.hold_admission(Box::new(Admission::new(slot, &core.metrics().open)));
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
