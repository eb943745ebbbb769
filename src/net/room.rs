//! The waiting room: one thread that watches every connection no worker
//! should wait for, and owns their deadlines.
//!
//! This is the Poller of Tomcat's NIO connector (and the listener thread of
//! Apache httpd's event MPM) in front of a pool of blocking workers: a
//! connection is handed to a worker only when the worker will not have to
//! wait on the client. Until then it waits here, holding no thread:
//!
//! * **Read**: no complete line yet (a slow or stalled client, or a
//!   keep-alive connection idling between lines). Ready when a line is
//!   complete, the client closed, or the line passed the limit. Deadline:
//!   the request timeout from accept for the first line, from its first
//!   byte for later ones; the idle timeout for the first byte of a later
//!   line.
//! * **Flush**: replies the client is not reading fast enough. Deadline:
//!   the write timeout.
//! * **Linger**: half-closed after the last reply, draining the client's
//!   unread input so the close is not a reset that destroys the reply.
//!   Deadline: [`LINGER`].
//! * **Throttled**: a complete line held back by the per-address rate
//!   limit until the address has tokens again. No deadline is held against
//!   the client (the wait is the server's choice).
//!
//! Connections arrive through [`RoomHandle::park`] (from the accept loop,
//! workers and the heavy lane) and leave through the core's one hand-off,
//! [`Serve::process`], which queues them for a worker once their line is
//! ready (or gives them back to wait some more).
//! Readiness comes from `mio` (epoll on Linux, edge-triggered): each
//! connection is registered while it waits here and deregistered when it
//! leaves, and every event is read until the kernel has nothing more.
//!
//! At a stop, connections waiting for a line get one last read: a complete
//! line is still answered, anything less is closed without a reply.
//! Flushing and lingering connections finish as usual.

use crate::lock::Lock;
use crate::net::connection::{Connection, LINGER};
use crate::net::liveness::Liveness;
use crate::net::metrics::CoreMetrics;
use crate::net::per_address::AddressLimits;
use crate::net::proxy::ProxyError;
use crate::net::shutdown::Shutdown;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use slog::{debug, error, warn, Logger};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The waker's token; connections use their slab index.
const WAKER: Token = Token(usize::MAX);
/// Events taken per `poll`.
const EVENTS: usize = 1024;
/// How often idle per-address state is swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The core as the room sees it (not generic over the handler): where a
/// connection goes when its wait is over.
pub trait Serve: Send + Sync {
    /// The one hand-off, as Tomcat's `processSocket`: reads what has
    /// arrived (when `read`), turns the connection away if its PROXY header
    /// or its address's limits say so (logged and counted), and queues it
    /// for a worker when a line is ready (marked ready at `ready_at`).
    /// Gives the connection back when it has to wait for more input.
    fn process(
        self: Arc<Self>,
        conn: Connection,
        read: bool,
        ready_at: Instant,
    ) -> Option<Connection>;
    /// Continues a connection whose replies the room finished sending.
    fn after_flush(self: Arc<Self>, conn: Connection, then: Then);
    /// Counts and logs a connection closed for its PROXY header (the one
    /// place that does, wherever the header failed).
    fn reject_proxy(&self, socket_peer: SocketAddr, reason: &ProxyError);
}

/// What to do with a connection once its replies are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Serve its next line, or wait for one.
    Route,
    /// Close it.
    Close,
}

/// Why a connection is parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Park {
    /// Waiting for a complete line.
    Read,
    /// Waiting for the client to read its replies; then continue as
    /// [`Then`] says.
    Flush(Then),
    /// Half-closed, draining the client's input before closing.
    Linger,
    /// Held back by the rate limit until then.
    Throttled(Instant),
}

/// What a parked connection is waiting for, with its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A line; `idle` when not even its first byte has come.
    Read {
        /// No byte of the line has arrived (the idle timeout applies).
        idle: bool,
    },
    /// Writability.
    Flush(Then),
    /// The client's FIN, or enough drained.
    Linger {
        /// Bytes drained so far.
        drained: usize,
    },
    /// Tokens.
    Throttled,
}

/// One parked connection.
#[derive(Debug)]
struct Entry {
    /// The connection.
    conn: Connection,
    /// What it waits for.
    state: State,
    /// When waiting ends, if ever.
    deadline: Option<Instant>,
    /// Registered with the poller (every state but Throttled).
    registered: bool,
    /// Bumped on every re-arm, so stale timers are ignored.
    generation: u64,
}

/// The sending side: how other threads park connections.
#[derive(Debug, Clone)]
pub struct RoomHandle {
    /// Shared with the room thread.
    shared: Arc<Shared>,
}

/// What the room and its handles share.
#[derive(Debug)]
struct Shared {
    /// Connections handed in and not yet taken by the room thread.
    inbox: Lock<Vec<(Connection, Park)>>,
    /// Wakes the room thread's `poll`.
    waker: Waker,
    /// The room must close everything and exit now.
    exit: AtomicBool,
}

impl RoomHandle {
    /// Hands `conn` to the room to wait as `park` says.
    pub fn park(&self, conn: Connection, park: Park) {
        let mut inbox = self.shared.inbox.lock();
        let was_empty = inbox.is_empty();
        inbox.push((conn, park));
        drop(inbox);
        // One wake-up covers everything queued before the room drains it.
        if was_empty {
            self.wake();
        }
    }

    /// Wakes the room thread (a stop was requested, say).
    pub fn wake(&self) {
        let _ = self.shared.waker.wake();
    }

    /// Tells the room to close every connection it holds and exit.
    pub fn exit(&self) {
        self.shared.exit.store(true, Ordering::SeqCst);
        self.wake();
    }
}

/// The room thread's state.
#[derive(Debug)]
pub struct Room {
    /// The readiness poller.
    poll: Poll,
    /// Parked connections by token.
    entries: Slab<Entry>,
    /// Deadlines: (when, token, generation), earliest first.
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// Shared with the handles.
    shared: Arc<Shared>,
    /// The stop has been applied to the parked connections.
    stopping: bool,
    /// Last sweep of per-address state.
    swept: Instant,
    /// Source of generations.
    generation: u64,
    /// The core's counters (the `waiting` gauge, timeouts, closes).
    metrics: CoreMetrics,
    /// Where the room marks that its loop turned.
    liveness: Arc<Liveness>,
    /// The per-address limits, swept of idle addresses every second.
    address_limits: Option<Arc<AddressLimits>>,
    /// The stop flag.
    shutdown: Shutdown,
    /// The server's logger.
    log: Logger,
}

impl Room {
    /// A room and the handle to park connections in it.
    ///
    /// # Errors
    ///
    /// The poller or its waker could not be created.
    pub fn new(
        metrics: CoreMetrics,
        liveness: Arc<Liveness>,
        address_limits: Option<Arc<AddressLimits>>,
        shutdown: Shutdown,
        log: Logger,
    ) -> io::Result<(Room, RoomHandle)> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let shared = Arc::new(Shared {
            inbox: Lock::new(Vec::new()),
            waker,
            exit: AtomicBool::new(false),
        });
        let room = Room {
            poll,
            entries: Slab::new(),
            timers: BinaryHeap::new(),
            shared: Arc::clone(&shared),
            stopping: false,
            swept: Instant::now(),
            generation: 0,
            metrics,
            liveness,
            address_limits,
            shutdown,
            log,
        };
        Ok((room, RoomHandle { shared }))
    }

    /// Runs the room until [`RoomHandle::exit`]: waits for readiness and
    /// deadlines, hands ready connections to `core`.
    pub fn run(mut self, core: &Arc<dyn Serve>) {
        let mut events = Events::with_capacity(EVENTS);
        loop {
            self.liveness.room_turned();
            let timeout = self.timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    error!(self.log, "waiting room: poll failed; retrying"; "error" => %e);
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            for event in &events {
                if event.token() != WAKER {
                    self.on_event(event.token().0, core);
                }
            }
            if self.shared.exit.load(Ordering::SeqCst) {
                break;
            }
            let arrivals = std::mem::take(&mut *self.shared.inbox.lock());
            for (conn, park) in arrivals {
                self.admit(conn, park, core);
            }
            let now = Instant::now();
            if self.shutdown.is_requested() && !self.stopping {
                self.stop(core);
            }
            self.expire(now, core);
            if now.duration_since(self.swept) >= SWEEP_EVERY {
                self.swept = now;
                if let Some(limits) = &self.address_limits {
                    limits.sweep(now);
                }
            }
        }
        // Told to exit: whatever is still here closes without a reply.
        let left = self.entries.len();
        for entry in self.entries.drain() {
            self.metrics.waiting.dec();
            drop(entry.conn);
        }
        if left > 0 {
            debug!(self.log, "waiting room closed"; "connections_closed" => left);
        }
    }

    /// How long `poll` may sleep: until the earliest live deadline.
    fn timeout(&mut self, now: Instant) -> Option<Duration> {
        let until_sweep = SWEEP_EVERY.saturating_sub(now.duration_since(self.swept));
        while let Some(&Reverse((at, token, generation))) = self.timers.peek() {
            let live = self
                .entries
                .get(token)
                .is_some_and(|e| e.generation == generation);
            if live {
                return Some(at.saturating_duration_since(now).min(until_sweep));
            }
            self.timers.pop();
        }
        Some(until_sweep)
    }

    /// Takes in a connection handed over by another thread.
    fn admit(&mut self, mut conn: Connection, park: Park, core: &Arc<dyn Serve>) {
        let state = match park {
            Park::Read => {
                if self.stopping {
                    self.last_read(conn, core);
                    return;
                }
                conn.shrink();
                return self.wait_for_line(conn, None);
            }
            Park::Flush(then) => State::Flush(then),
            Park::Linger => State::Linger { drained: 0 },
            Park::Throttled(until) => {
                if self.stopping {
                    self.release(conn, core);
                    return;
                }
                return self.insert(conn, State::Throttled, Some(until));
            }
        };
        let deadline = deadline_of(&conn, state);
        self.insert(conn, state, Some(deadline));
    }

    /// Registers and stores a connection.
    fn insert(&mut self, conn: Connection, state: State, deadline: Option<Instant>) {
        let interest = match state {
            State::Read { .. } | State::Linger { .. } => Some(Interest::READABLE),
            State::Flush(_) => Some(Interest::WRITABLE),
            State::Throttled => None,
        };
        let vacant = self.entries.vacant_entry();
        let token = vacant.key();
        if let Some(interest) = interest {
            let fd = conn.raw_fd();
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut SourceFd(&fd), Token(token), interest)
            {
                // Out of kernel memory for epoll, say: the connection
                // cannot be watched, so it cannot be served fairly.
                warn!(self.log, "waiting room cannot watch a connection; closing it";
                    "peer" => %conn.peer(), "error" => %e);
                return;
            }
        }
        self.generation += 1;
        let generation = self.generation;
        if let Some(at) = deadline {
            self.timers.push(Reverse((at, token, generation)));
        }
        vacant.insert(Entry {
            conn,
            state,
            deadline,
            registered: interest.is_some(),
            generation,
        });
        self.metrics.waiting.inc();
    }

    /// Removes a connection from the room (deregistering it).
    fn remove(&mut self, token: usize) -> Entry {
        let entry = self.entries.remove(token);
        if entry.registered {
            let fd = entry.conn.raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        self.metrics.waiting.dec();
        entry
    }

    /// Handles readiness of the connection at `token`.
    fn on_event(&mut self, token: usize, core: &Arc<dyn Serve>) {
        let Some(entry) = self.entries.get_mut(token) else {
            return;
        };
        match entry.state {
            State::Read { .. } => {
                let entry = self.remove(token);
                if let Some(conn) = Arc::clone(core).process(entry.conn, true, Instant::now()) {
                    // Still no complete line: wait on, keeping the deadline
                    // unless the first byte of a keep-alive line came (then
                    // the request timeout applies, not the idle timeout).
                    self.wait_for_line(conn, Some((entry.state, entry.deadline)));
                }
            }
            State::Flush(then) => match entry.conn.flush() {
                Ok(true) => {
                    let entry = self.remove(token);
                    core.clone().after_flush(entry.conn, then);
                }
                Ok(false) => {}
                Err(e) => {
                    let entry = self.remove(token);
                    debug!(self.log, "connection failed while sending replies";
                        "peer" => %entry.conn.peer(), "error" => %e);
                }
            },
            State::Linger { mut drained } => {
                let done = entry.conn.drain(&mut drained);
                entry.state = State::Linger { drained };
                if done {
                    self.remove(token);
                }
            }
            State::Throttled => {}
        }
    }

    /// Parks a connection that has no complete line yet: idle (between
    /// keep-alive lines) or part-way through a line, with the deadline that
    /// state has. `before` is the state and deadline it waited with until
    /// now, kept when the state has not changed.
    fn wait_for_line(&mut self, conn: Connection, before: Option<(State, Option<Instant>)>) {
        let state = State::Read {
            idle: !conn.has_partial_line() && conn.lines_taken() > 0,
        };
        let deadline = match before {
            Some((State::Read { idle }, deadline)) if state == (State::Read { idle }) => deadline,
            _ => Some(deadline_of(&conn, state)),
        };
        self.insert(conn, state, deadline);
    }

    /// Hands a connection whose wait is over back to the core (a throttled
    /// one with tokens again, or any at a stop). It has a complete line, so
    /// it goes to a worker; should it not, it cannot wait any longer and is
    /// closed.
    fn release(&mut self, conn: Connection, core: &Arc<dyn Serve>) {
        let ready_since = conn.ready_since();
        if let Some(conn) = Arc::clone(core).process(conn, false, ready_since) {
            debug!(self.log, "released connection had no line; closing"; "peer" => %conn.peer());
        }
    }

    /// Acts on every deadline that has passed.
    fn expire(&mut self, now: Instant, core: &Arc<dyn Serve>) {
        while let Some(&Reverse((at, token, generation))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let live = self
                .entries
                .get(token)
                .is_some_and(|e| e.generation == generation && e.deadline == Some(at));
            if !live {
                continue;
            }
            let entry = self.remove(token);
            match entry.state {
                State::Read { idle } => {
                    // A connection is not blamed for the room's own delay:
                    // a line that has arrived by now is still answered.
                    let Some(conn) = Arc::clone(core).process(entry.conn, true, now) else {
                        continue;
                    };
                    if idle {
                        self.metrics.idle_closed.inc();
                        debug!(self.log, "keep-alive connection idle; closing";
                            "peer" => %conn.peer(),
                            "after" => ?conn.limits().idle_timeout);
                    } else if !conn.peer_known() {
                        core.reject_proxy(conn.socket_peer(), &ProxyError::Incomplete);
                    } else {
                        self.metrics.timeouts.inc();
                        warn!(self.log, "request timed out; closing without a reply";
                            "peer" => %conn.peer(),
                            "timeout" => ?conn.limits().request_timeout);
                    }
                }
                State::Flush(_) => {
                    self.metrics.timeouts.inc();
                    warn!(self.log, "client did not read its replies in time; closing";
                        "peer" => %entry.conn.peer(),
                        "timeout" => ?entry.conn.limits().write_timeout);
                }
                State::Linger { .. } => {}
                State::Throttled => self.release(entry.conn, core),
            }
        }
    }

    /// Applies a stop to every parked connection: a complete line is still
    /// answered, a throttled one served; anything less is closed.
    fn stop(&mut self, core: &Arc<dyn Serve>) {
        self.stopping = true;
        let tokens: Vec<usize> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.state, State::Read { .. } | State::Throttled))
            .map(|(token, _)| token)
            .collect();
        for token in tokens {
            let entry = self.remove(token);
            match entry.state {
                State::Throttled => self.release(entry.conn, core),
                _ => self.last_read(entry.conn, core),
            }
        }
    }

    /// One last read of a connection waiting for a line during a stop.
    fn last_read(&mut self, conn: Connection, core: &Arc<dyn Serve>) {
        let Some(conn) = Arc::clone(core).process(conn, true, Instant::now()) else {
            return;
        };
        if conn.lines_taken() == 0 || conn.has_partial_line() {
            self.metrics.closed_at_stop.inc();
        }
        debug!(self.log, "stopping: closing a connection with no complete line";
            "peer" => %conn.peer());
    }
}

/// The deadline of `state` for `conn`, from now.
fn deadline_of(conn: &Connection, state: State) -> Instant {
    let limits = conn.limits();
    let now = Instant::now();
    match state {
        State::Read { .. } if conn.lines_taken() == 0 => conn.accepted() + limits.request_timeout,
        State::Read { .. } if conn.has_partial_line() => {
            conn.line_started().unwrap_or(now) + limits.request_timeout
        }
        State::Read { .. } => now + limits.idle_timeout,
        State::Flush(_) => now + limits.write_timeout,
        State::Linger { .. } => now + LINGER,
        State::Throttled => now,
    }
}
