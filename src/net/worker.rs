//! What happens to a connection once it is worth a worker: the Executor
//! side of the core, and the one hand-off every other part goes through.
//!
//! [`Core`] holds what a connection's journey needs (the handler, the pool,
//! the room, the lane, the limits). Every connection that might be ready
//! goes through [`Core::process`] (from the accept loop, the waiting room
//! and the worker that just served it): read what has arrived, turn it
//! away if its PROXY header or address limits say so, and queue it for a
//! worker when a line is complete, or give it back to wait. Tomcat's NIO
//! connector routes every dispatch through one `processSocket` the same
//! way.
//!
//! A worker gives the [`Handler`] a turn of at most `batch_lines` lines
//! (fewer if the address's rate limit says so), sends the replies without
//! waiting, and then routes the connection on:
//!
//! ```text
//!  serve a turn --Heavy--> heavy lane (fair by address) --> serve_heavy --.
//!      |                                                                   |
//!      +--Close--> send replies --> close (or linger in the room) <--------+
//!      '--Continue--> send replies --> process: another line buffered? --yes--> back of the ready queue
//!                        | client not reading          | no
//!                        v                             v
//!                     room: Flush                   room: Read (idle or partial line)
//! ```
//!
//! Nothing here waits on a client: reads and writes are non-blocking, and
//! anything that would wait goes to the room. A panic in a handler is
//! contained: it is counted and logged with the peer, the connection is
//! closed, and the worker lives on. Replies queued before the panic, whose
//! audit lines were written, are still sent.

use crate::escape::escape_bytes;
use crate::net::connection::{Connection, Limits};
use crate::net::framing::Readiness;
use crate::net::handler::{panic_message, Flow, Handler};
use crate::net::lane::Lane;
use crate::net::liveness::Liveness;
use crate::net::metrics::{seconds, CoreMetrics};
use crate::net::options::ServerOptions;
use crate::net::per_address::{AddressLimits, Grant};
use crate::net::proxy::{ProxyError, TrustedProxies};
use crate::net::ready_queue::ReadyQueue;
use crate::net::room::{Park, Room, RoomHandle, Serve, Then};
use crate::net::shutdown::Shutdown;
use parking_lot::Mutex;
use slog::{debug, error, warn, Logger};
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use threadpool::ThreadPool;

/// How long a stop waits for the lane threads and the pool to finish the
/// work in hand after the last connection closed.
const JOIN_GRACE: Duration = Duration::from_secs(2);

/// Everything a connection's journey needs, shared by the accept loop, the
/// room, the workers and the lane.
pub struct Core<H: Handler> {
    /// The service.
    handler: Arc<H>,
    /// The worker pool.
    pool: ThreadPool,
    /// Where waiting connections go.
    room: RoomHandle,
    /// The room's thread, joined when the core shuts down.
    room_thread: Mutex<Option<JoinHandle<()>>>,
    /// The heavy lane, for services with heavy work.
    lane: Option<Lane>,
    /// The counters.
    metrics: CoreMetrics,
    /// Per-address limits, when on.
    address_limits: Option<Arc<AddressLimits>>,
    /// With `--proxy-protocol`: the addresses a header is accepted from.
    proxy: Option<TrustedProxies>,
    /// The stop flag.
    shutdown: Shutdown,
    /// Set when the stop ran out of time: connections are closed unserved.
    abandoned: AtomicBool,
    /// Lines per worker turn, at most.
    batch_lines: usize,
    /// Connections with a complete line, waiting for a worker.
    ready: ReadyQueue<Connection>,
    /// Deadlines and line limit given to every connection.
    limits: Limits,
    /// Liveness marks for the watchdog.
    liveness: Arc<Liveness>,
    /// The server's logger.
    log: Logger,
}

impl<H: Handler> Core<H> {
    /// Builds the core from `options` and starts its threads: the pool, the
    /// waiting room and (when `options.heavy_threads` > 0) the heavy lane.
    ///
    /// # Errors
    ///
    /// The room's poller or a thread could not be created.
    pub fn start(
        handler: Arc<H>,
        options: &ServerOptions,
        metrics: &CoreMetrics,
        liveness: &Arc<Liveness>,
        shutdown: &Shutdown,
        log: &Logger,
    ) -> io::Result<Arc<Core<H>>> {
        let workers = options.workers.max(1);
        let address_limits =
            AddressLimits::new(options.max_connections_per_ip, options.max_rate_per_ip);
        let (room, room_handle) = Room::new(
            metrics.clone(),
            Arc::clone(liveness),
            address_limits.clone(),
            shutdown.clone(),
            log.clone(),
        )?;
        let lane = match options.heavy_threads {
            0 => None,
            n => Some(Lane::start(n, metrics.clone())?),
        };
        let core = Arc::new(Core {
            handler,
            pool: ThreadPool::with_name("worker".into(), workers),
            room: room_handle,
            room_thread: Mutex::new(None),
            lane,
            metrics: metrics.clone(),
            address_limits,
            proxy: options.proxy.clone(),
            shutdown: shutdown.clone(),
            abandoned: AtomicBool::new(false),
            batch_lines: options.batch_lines.max(1),
            ready: ReadyQueue::new(workers),
            limits: options.limits,
            liveness: Arc::clone(liveness),
            log: log.clone(),
        });
        let room_core: Arc<dyn Serve> = Arc::clone(&core) as Arc<dyn Serve>;
        let thread = std::thread::Builder::new()
            .name("waiting-room".into())
            .spawn(move || room.run(&room_core))?;
        *core.room_thread.lock() = Some(thread);
        liveness.set_pool(Some(core.pool.clone()));
        let (waker, stopping) = (core.room.clone(), Arc::clone(liveness));
        shutdown.on_request(Box::new(move || {
            stopping.set_stopping();
            waker.wake();
        }));
        Ok(core)
    }

    /// The deadlines and line limit a new connection gets.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The counters.
    pub fn metrics(&self) -> &CoreMetrics {
        &self.metrics
    }

    /// The liveness marks the accept loop updates.
    pub fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    /// The server's logger.
    pub fn log(&self) -> &Logger {
        &self.log
    }

    /// Takes a freshly accepted connection: refuses it if the PROXY
    /// protocol says so, else hands it over ([`Core::process`]), which
    /// dispatches it at once when its line is already there (the fast
    /// path); otherwise it waits in the room.
    pub fn accept(self: &Arc<Self>, mut conn: Connection) {
        if let Some(trusted) = &self.proxy {
            let peer = conn.socket_peer();
            if let Err(e) = trusted.check(peer.ip()) {
                self.reject_proxy(peer, &e);
                return;
            }
            conn.expect_proxy_header();
        }
        // A fresh connection counts from accept: no clock read here.
        let accepted = conn.accepted();
        if let Some(conn) = self.hand_off(conn, true, accepted) {
            if self.stopping() {
                self.metrics.closed_at_stop.inc();
            } else {
                self.room.park(conn, Park::Read);
            }
        }
    }

    /// The one hand-off (see [`Serve::process`]): reads when `read`,
    /// refuses what must be refused, queues a ready connection (marked
    /// ready at `ready_at`) and gives back one that must wait.
    fn hand_off(
        self: &Arc<Self>,
        mut conn: Connection,
        read: bool,
        ready_at: Instant,
    ) -> Option<Connection> {
        let readiness = if read {
            match conn.fill_until_ready() {
                Ok(r) => r,
                Err(e) => {
                    debug!(self.log, "connection failed while reading";
                        "peer" => %conn.peer(), "error" => %e);
                    return None;
                }
            }
        } else {
            conn.readiness()
        };
        if let Readiness::Rejected(e) = &readiness {
            self.reject_proxy(conn.socket_peer(), e);
            return None;
        }
        if let Some(limits) = &self.address_limits {
            if conn.peer_known() && !conn.counted_per_ip() {
                match limits.admit(conn.peer().ip()) {
                    Ok(slot) => conn.hold_per_ip(slot),
                    Err(refused) => {
                        self.metrics.per_ip_refused.inc();
                        warn!(self.log, "connection refused"; "peer" => %conn.peer(), "reason" => %refused);
                        return None;
                    }
                }
            }
        }
        match readiness {
            Readiness::Line => {
                conn.mark_ready(ready_at);
                self.metrics.queued.inc();
                for _ in 0..self.ready.push(conn) {
                    let core = Arc::clone(self);
                    self.pool.execute(move || core.drain());
                }
                None
            }
            Readiness::Partial | Readiness::Empty => Some(conn),
            Readiness::Closed | Readiness::Rejected(_) => None,
        }
    }

    /// A pool job: serves ready connections from the queue until it has
    /// been idle for a while or the server stops (see
    /// [`crate::net::ready_queue`]).
    fn drain(self: Arc<Self>) {
        while let Some(conn) = self.ready.next(|| self.stopping()) {
            self.metrics.queued.dec();
            self.metrics.in_service.inc();
            // Handler panics are contained inside `work`; this catches a bug
            // of the core's own, so the drainer count stays right and the
            // queue keeps moving.
            let served = catch_unwind(AssertUnwindSafe(|| self.work(conn)));
            self.metrics.in_service.dec();
            if let Err(panic) = served {
                self.metrics.panics.inc();
                error!(self.log, "worker panicked outside a handler; connection dropped";
                    "panic" => panic_message(panic.as_ref()));
            }
        }
    }

    /// Whether a stop has been requested.
    fn stopping(&self) -> bool {
        self.shutdown.is_requested()
    }

    /// Whether the stop ran out of time.
    fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }

    /// The stop ran out of time with `left` connections open: they are
    /// closed unserved, as is every job still waiting for the lane.
    pub fn abandon(&self, left: usize) {
        self.abandoned.store(true, Ordering::SeqCst);
        self.metrics
            .abandoned
            .inc_by(u64::try_from(left).unwrap_or(u64::MAX));
        if let Some(lane) = &self.lane {
            lane.discard_queued();
        }
    }

    /// Ends the core once no connection is left: the room closes what it
    /// still holds and exits, the drainers end, and the work in hand (a
    /// big-number test, an audit write) finishes within [`JOIN_GRACE`], so
    /// nothing answered goes unlogged and nothing holds the exit for long.
    pub fn shut_down(self: &Arc<Self>) {
        self.room.exit();
        if let Some(thread) = self.room_thread.lock().take() {
            let _ = thread.join();
        }
        self.ready.wake_all();
        self.liveness.set_pool(None);
        if let Some(lane) = &self.lane {
            lane.close();
        }
        let in_hand = Arc::clone(self);
        join_within(JOIN_GRACE, move || {
            in_hand.pool.join();
            if let Some(lane) = &in_hand.lane {
                lane.join();
            }
        });
    }

    /// One turn of a ready connection on a worker.
    fn work(self: &Arc<Self>, mut conn: Connection) {
        if self.abandoned() {
            return;
        }
        let stopping = self.stopping();
        // At a stop every line already received is answered in one go.
        let want = if stopping {
            usize::MAX
        } else {
            self.batch_lines
        };
        let granted = match &self.address_limits {
            Some(limits) if !stopping && limits.rate_limited() => {
                // No more tokens than the buffered lines can use: tokens a
                // turn holds are out of reach of the address's other
                // connections until it ends.
                let ready = conn.lines_ready(want).max(1);
                limits.take(conn.peer().ip(), ready, Instant::now())
            }
            _ => Grant::Lines(want),
        };
        let lines = match granted {
            Grant::Lines(n) => n,
            Grant::Wait(until) => {
                self.metrics.throttled.inc();
                self.room.park(conn, Park::Throttled(until));
                return;
            }
        };
        conn.grant(lines);
        let before = conn.lines_taken();
        let flow = catch_unwind(AssertUnwindSafe(|| {
            self.handler.serve(&mut conn, &self.log)
        }));
        let served = conn.lines_taken() - before;
        if let Some(limits) = &self.address_limits {
            let unused = u64::try_from(lines)
                .unwrap_or(u64::MAX)
                .saturating_sub(served);
            if unused > 0 && !stopping {
                limits.refund(
                    conn.peer().ip(),
                    usize::try_from(unused).unwrap_or(usize::MAX),
                );
            }
        }
        let elapsed = seconds(conn.ready_since().elapsed());
        for _ in 0..served {
            self.metrics.request_duration.observe(elapsed);
        }
        self.proceed(conn, flow);
    }

    /// Heavy work on a lane thread.
    fn heavy(self: &Arc<Self>, mut conn: Connection, job: H::Heavy) {
        if self.abandoned() {
            return;
        }
        let flow = catch_unwind(AssertUnwindSafe(|| {
            self.handler.serve_heavy(job, &mut conn, &self.log)
        }));
        self.metrics
            .request_duration
            .observe(seconds(conn.ready_since().elapsed()));
        self.proceed(conn, flow);
    }

    /// Acts on what the handler wanted.
    fn proceed(self: &Arc<Self>, mut conn: Connection, flow: std::thread::Result<Flow<H::Heavy>>) {
        let flow = flow.unwrap_or_else(|panic| {
            self.metrics.panics.inc();
            error!(self.log, "handler panicked; connection closed, server continues";
                "peer" => %conn.peer(), "panic" => panic_message(panic.as_ref()));
            Flow::Close
        });
        match flow {
            Flow::Continue => self.send_then(conn, Then::Route),
            Flow::Close => self.send_then(conn, Then::Close),
            Flow::Heavy(job) => {
                // Earlier replies go out now; whatever does not fit is
                // sent after the heavy reply, still in order.
                if let Err(e) = conn.flush() {
                    debug!(self.log, "connection failed while sending replies";
                        "peer" => %conn.peer(), "error" => %e);
                    return;
                }
                match &self.lane {
                    Some(lane) => {
                        let core = Arc::clone(self);
                        let addr = conn.peer().ip();
                        lane.submit(addr, Box::new(move || core.heavy(conn, job)));
                    }
                    None => self.heavy(conn, job),
                }
            }
        }
    }

    /// Sends the queued replies, then continues as `then` says; a client
    /// that is not reading is left to the room.
    fn send_then(self: &Arc<Self>, mut conn: Connection, then: Then) {
        match conn.flush() {
            Ok(true) => self.continue_after(conn, then),
            Ok(false) => self.room.park(conn, Park::Flush(then)),
            Err(e) => {
                debug!(self.log, "connection failed while sending replies";
                    "peer" => %conn.peer(), "error" => %e);
            }
        }
    }

    /// The replies are sent: serve the next line (behind every connection
    /// already waiting for a worker), wait for one, or close.
    fn continue_after(self: &Arc<Self>, conn: Connection, then: Then) {
        if then == Then::Close || self.abandoned() {
            return self.close(conn);
        }
        // After a stop no new line is read; lines already buffered are
        // still answered.
        let stopping = self.stopping();
        if let Some(conn) = self.hand_off(conn, !stopping, Instant::now()) {
            if stopping {
                self.close(conn);
            } else {
                self.room.park(conn, Park::Read);
            }
        }
    }

    /// Closes after the last reply: at once, or after lingering in the room
    /// when an immediate close could reset the reply away.
    fn close(&self, conn: Connection) {
        if conn.needs_linger() {
            conn.half_close();
            self.room.park(conn, Park::Linger);
        }
    }
}

impl<H: Handler> Serve for Core<H> {
    fn process(
        self: Arc<Self>,
        conn: Connection,
        read: bool,
        ready_at: Instant,
    ) -> Option<Connection> {
        self.hand_off(conn, read, ready_at)
    }

    fn after_flush(self: Arc<Self>, conn: Connection, then: Then) {
        self.continue_after(conn, then);
    }

    fn reject_proxy(&self, socket_peer: SocketAddr, reason: &ProxyError) {
        self.metrics.proxy_rejected.inc();
        warn!(self.log, "bad PROXY protocol header; closing without a reply";
            "peer" => %socket_peer,
            "reason" => escape_bytes(reason.to_string().as_bytes(), 200).text);
    }
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
