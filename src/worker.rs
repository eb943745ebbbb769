//! What happens to a connection once it is worth a worker: the Executor
//! side of the core.
//!
//! A connection reaches a worker with at least one complete line buffered
//! (see [`crate::room`]). The worker gives the [`Handler`] a turn of at
//! most `batch_lines` lines (fewer if the address's rate limit says so),
//! sends the replies without waiting, and then routes the connection on:
//!
//! ```text
//!  serve a turn --Heavy--> heavy lane (fair by address) --> serve_heavy --.
//!      |                                                                   |
//!      +--Close--> send replies --> close (or linger in the room) <--------+
//!      '--Continue--> send replies --> another line buffered? --yes--> back of the pool queue
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

use crate::clients::{Clients, Grant};
use crate::conn::{Connection, Readiness};
use crate::escape::escape_bytes;
use crate::health::Health;
use crate::lane::Lane;
use crate::logging::panic_message;
use crate::metrics::{seconds, CoreMetrics};
use crate::proxy::{ProxyError, TrustedProxies};
use crate::room::{Park, RoomHandle};
use crate::shutdown::Shutdown;
use slog::{debug, error, warn, Logger};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use threadpool::ThreadPool;

/// Serves the lines of one connection; implemented by each service.
///
/// A handler never reads from or waits on the socket: it takes the lines
/// already buffered with [`Connection::next_line`] (which stops at the
/// turn's budget) and queues replies with [`Connection::queue_reply`]. The
/// core sends them and decides where the connection goes next.
pub trait Handler: Send + Sync + 'static {
    /// Work too slow for the pool, finished on the heavy lane by
    /// [`Handler::serve_heavy`]; `Infallible` for services that have none.
    type Heavy: Send + 'static;

    /// Serves the lines of one turn.
    fn serve(&self, conn: &mut Connection, log: &Logger) -> Flow<Self::Heavy>;

    /// Finishes heavy work on a lane thread, queueing its reply.
    fn serve_heavy(
        &self,
        job: Self::Heavy,
        conn: &mut Connection,
        log: &Logger,
    ) -> Flow<Self::Heavy>;
}

/// What a handler wants after its turn.
#[derive(Debug)]
pub enum Flow<J> {
    /// Keep the connection for more lines.
    Continue,
    /// Close it once the replies are sent.
    Close,
    /// Finish this on the heavy lane first (the replies queued so far go
    /// out before it).
    Heavy(J),
}

/// What to do with a connection once its replies are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Serve its next line, or wait for one.
    Route,
    /// Close it.
    Close,
}

/// A connection's input, as the core sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A complete line is buffered: worth a worker.
    Ready,
    /// Not yet: wait in the room.
    Wait,
    /// Nothing more will come, or the connection was refused (logged and
    /// counted already): drop it.
    Closed,
}

/// The core as the waiting room sees it (not generic over the handler).
pub trait Serve: Send + Sync {
    /// Queues a ready connection for a worker (the caller has marked when
    /// its line became ready, see [`Connection::mark_ready`]; a fresh
    /// connection counts from accept).
    fn dispatch(self: Arc<Self>, conn: Connection);
    /// Continues a connection whose replies the room finished sending.
    fn after_flush(self: Arc<Self>, conn: Connection, then: Then);
    /// Reads what has arrived (when `read`) and classifies the input;
    /// logs and counts refusals.
    fn poll_input(&self, conn: &mut Connection, read: bool) -> Input;
    /// Counts and logs a connection closed for its PROXY header (the one
    /// place that does, wherever the header failed).
    fn reject_proxy(&self, socket_peer: SocketAddr, reason: &ProxyError);
    /// Whether a stop has been requested.
    fn stopping(&self) -> bool;
    /// The core's metrics.
    fn metrics(&self) -> &CoreMetrics;
    /// The per-address limits, if any are on.
    fn clients(&self) -> Option<&Clients>;
    /// The server's logger.
    fn log(&self) -> &Logger;
    /// Where the room marks that its loop turned.
    fn health(&self) -> &Health;
}

/// Connections waiting for a worker, in arrival order.
///
/// The pool is not handed one job per connection: a job drains this queue,
/// waiting on [`Core::work_arrived`] when it is empty (for up to
/// [`DRAINER_IDLE`]), and a new job is posted only when the queue is longer
/// than the jobs already draining it. Under load a busy worker takes the
/// next connection straight from the queue, and an idle one is woken with a
/// single futex wake, sparing the pool's shared channel (whose receiver lock
/// wakes a second idle worker on every job) per request.
#[derive(Debug, Default)]
pub struct ReadyQueue {
    /// Ready connections, oldest first.
    queue: VecDeque<Connection>,
    /// Pool jobs draining the queue now, busy or waiting.
    draining: usize,
    /// Of those, the ones waiting for work.
    idle: usize,
}

/// How long a drainer job waits for work before giving its thread back to
/// the pool.
pub const DRAINER_IDLE: std::time::Duration = std::time::Duration::from_millis(200);

/// Everything a connection's journey needs, shared by the accept loop, the
/// room, the workers and the lane.
pub struct Core<H: Handler> {
    /// The service.
    pub handler: Arc<H>,
    /// The worker pool.
    pub pool: ThreadPool,
    /// Where waiting connections go.
    pub room: RoomHandle,
    /// The heavy lane, for services with heavy work.
    pub lane: Option<Lane>,
    /// The counters.
    pub metrics: CoreMetrics,
    /// Per-address limits, when on.
    pub clients: Option<Arc<Clients>>,
    /// With `--proxy-protocol`: the addresses a header is accepted from.
    pub proxy: Option<TrustedProxies>,
    /// The stop flag.
    pub shutdown: Shutdown,
    /// Set when the stop ran out of time: connections are closed unserved.
    pub abandoned: AtomicBool,
    /// Lines per worker turn, at most.
    pub batch_lines: usize,
    /// Connections with a complete line, waiting for a worker, and how many
    /// pool jobs are draining them.
    pub ready: Mutex<ReadyQueue>,
    /// Pool jobs that may drain the ready queue at once (the pool's size).
    pub workers: usize,
    /// Signalled when a connection is queued for a waiting drainer.
    pub work_arrived: Condvar,
    /// Deadlines and line limit given to every connection.
    pub limits: crate::conn::Limits,
    /// Liveness marks for the watchdog.
    pub health: Arc<Health>,
    /// The server's logger.
    pub log: Logger,
}

impl<H: Handler> Core<H> {
    /// Takes a freshly accepted connection: refuses it if the PROXY
    /// protocol says so, dispatches it at once when its line is already
    /// there (the fast path), else parks it in the room.
    pub fn accept(self: &Arc<Self>, mut conn: Connection) {
        if let Some(trusted) = &self.proxy {
            let peer = conn.socket_peer();
            if let Err(e) = trusted.check(peer.ip()) {
                self.reject_proxy(peer, &e);
                return;
            }
            conn.expect_proxy_header();
        }
        match self.poll_input(&mut conn, true) {
            Input::Ready => Arc::clone(self).dispatch(conn),
            Input::Wait if self.stopping() => {
                self.metrics.closed_at_stop.inc();
            }
            Input::Wait => self.room.park(conn, Park::Read),
            Input::Closed => {}
        }
    }

    /// Wakes another worker only when the queue outgrows the workers
    /// already draining it: a busy worker takes the next connection
    /// without a wake-up of its own.
    fn post_drainers(self: &Arc<Self>, mut ready: MutexGuard<'_, ReadyQueue>) {
        // A waiting drainer takes the work first: one wake-up, no new job.
        let busy = ready.draining - ready.idle;
        let wake = ready.idle.min(ready.queue.len().saturating_sub(busy));
        let mut posts = 0;
        while ready.draining < self.workers && ready.queue.len() > busy + wake + posts {
            ready.draining += 1;
            posts += 1;
        }
        drop(ready);
        // Outside the lock, so the woken drainer does not wake straight into
        // a lock still held.
        for _ in 0..wake {
            self.work_arrived.notify_one();
        }
        for _ in 0..posts {
            let core = Arc::clone(self);
            self.pool.execute(move || core.drain());
        }
    }

    /// The ready queue, recovering from poisoning: nothing that can panic
    /// runs under this lock.
    fn lock_ready(&self) -> MutexGuard<'_, ReadyQueue> {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A pool job: serves ready connections from the queue. When the queue
    /// is empty it waits for more (woken by the next `dispatch`,
    /// one futex wake, no pool channel) for up to [`DRAINER_IDLE`], then
    /// ends and its thread goes back to the pool. A stop ends it at once.
    fn drain(self: Arc<Self>) {
        loop {
            let conn = {
                let mut ready = self.lock_ready();
                loop {
                    if let Some(conn) = ready.queue.pop_front() {
                        break conn;
                    }
                    if self.stopping() {
                        ready.draining -= 1;
                        return;
                    }
                    ready.idle += 1;
                    let (again, waited) = self
                        .work_arrived
                        .wait_timeout(ready, DRAINER_IDLE)
                        .unwrap_or_else(PoisonError::into_inner);
                    ready = again;
                    ready.idle -= 1;
                    if waited.timed_out() && ready.queue.is_empty() {
                        ready.draining -= 1;
                        return;
                    }
                }
            };
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

    /// Wakes every waiting drainer, so that at a stop they see it and end.
    pub fn wake_all_drainers(&self) {
        let _ready = self.lock_ready();
        self.work_arrived.notify_all();
    }

    /// Whether the stop ran out of time.
    fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
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
        let granted = match &self.clients {
            Some(clients) if !stopping && clients.rate_limited() => {
                // No more tokens than the buffered lines can use: tokens a
                // turn holds are out of reach of the address's other
                // connections until it ends.
                let ready = conn.lines_ready(want).max(1);
                clients.take(conn.peer().ip(), ready, Instant::now())
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
        if let Some(clients) = &self.clients {
            let unused = u64::try_from(lines)
                .unwrap_or(u64::MAX)
                .saturating_sub(served);
            if unused > 0 && !stopping {
                clients.refund(
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

    /// The replies are sent: serve the next line, wait for one, or close.
    fn continue_after(self: &Arc<Self>, mut conn: Connection, then: Then) {
        if then == Then::Close || self.abandoned() {
            return self.close(conn);
        }
        // After a stop no new line is read; lines already buffered are
        // still answered.
        let stopping = self.stopping();
        match self.poll_input(&mut conn, !stopping) {
            // Behind every connection already waiting for a worker.
            Input::Ready => {
                conn.mark_ready(Instant::now());
                Arc::clone(self).dispatch(conn);
            }
            Input::Wait if stopping => self.close(conn),
            Input::Wait => self.room.park(conn, Park::Read),
            Input::Closed => {}
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
    fn dispatch(self: Arc<Self>, conn: Connection) {
        self.metrics.queued.inc();
        let mut ready = self.lock_ready();
        ready.queue.push_back(conn);
        self.post_drainers(ready);
    }

    fn after_flush(self: Arc<Self>, conn: Connection, then: Then) {
        self.continue_after(conn, then);
    }

    fn poll_input(&self, conn: &mut Connection, read: bool) -> Input {
        let readiness = if read {
            match conn.fill_until_ready() {
                Ok(r) => r,
                Err(e) => {
                    debug!(self.log, "connection failed while reading";
                        "peer" => %conn.peer(), "error" => %e);
                    return Input::Closed;
                }
            }
        } else {
            conn.readiness()
        };
        if let Readiness::Rejected(e) = &readiness {
            self.reject_proxy(conn.socket_peer(), e);
            return Input::Closed;
        }
        if let Some(clients) = &self.clients {
            if conn.peer_known() && !conn.counted_per_ip() {
                match clients.admit(conn.peer().ip()) {
                    Ok(slot) => conn.hold_per_ip(slot),
                    Err(refused) => {
                        self.metrics.per_ip_refused.inc();
                        warn!(self.log, "connection refused"; "peer" => %conn.peer(), "reason" => %refused);
                        return Input::Closed;
                    }
                }
            }
        }
        match readiness {
            Readiness::Line => Input::Ready,
            Readiness::Partial | Readiness::Empty => Input::Wait,
            Readiness::Closed | Readiness::Rejected(_) => Input::Closed,
        }
    }

    fn reject_proxy(&self, socket_peer: SocketAddr, reason: &ProxyError) {
        self.metrics.proxy_rejected.inc();
        warn!(self.log, "bad PROXY protocol header; closing without a reply";
            "peer" => %socket_peer,
            "reason" => escape_bytes(reason.to_string().as_bytes(), 200).text);
    }

    fn stopping(&self) -> bool {
        self.shutdown.is_requested()
    }

    fn metrics(&self) -> &CoreMetrics {
        &self.metrics
    }

    fn clients(&self) -> Option<&Clients> {
        self.clients.as_deref()
    }

    fn log(&self) -> &Logger {
        &self.log
    }

    fn health(&self) -> &Health {
        &self.health
    }
}
