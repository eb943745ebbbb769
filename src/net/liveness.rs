//! Whether the core is listening, stopping, and moving: the marks the
//! accept loop, the waiting room and the pool leave as they work, and the
//! check that reads them. The application turns these into `/readyz`,
//! `/livez` and the systemd watchdog, adding checks of its own (the audit
//! log's); the core knows nothing of those.
//!
//! **Alive** means the paths a request takes are moving, not just that the
//! process exists: the worker pool runs a job within the given time, the
//! waiting room's loop has turned recently, and the accept loop is not
//! stuck outside `accept()`.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use threadpool::ThreadPool;

/// The room's loop must have turned within this long to count as alive
/// (it wakes at least once a second).
const ROOM_STALE: Duration = Duration::from_secs(5);
/// The accept loop may spend this long handling one connection before it
/// counts as stuck.
const ACCEPT_STUCK: Duration = Duration::from_secs(5);

/// The core's liveness marks, shared by the core (which updates them) and
/// whoever reports on them.
pub struct Liveness {
    /// Time origin for the tick fields.
    started: Instant,
    /// The accept loop runs.
    listening: AtomicBool,
    /// A stop was requested.
    stopping: AtomicBool,
    /// The accept loop's turns: odd while it handles a connection, even
    /// while it waits in `accept()` or for a connection slot. Counting, not
    /// timing, keeps the clock off the accept path.
    acceptor_turn: AtomicU64,
    /// The last busy turn the liveness check saw, and since when: the same
    /// busy turn for too long means the loop is stuck.
    acceptor_seen: Mutex<Option<(u64, Instant)>>,
    /// When the waiting room's loop last turned, in microseconds since
    /// `started`.
    room_tick: AtomicU64,
    /// The pool, to probe.
    pool: Mutex<Option<ThreadPool>>,
}

impl std::fmt::Debug for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Liveness")
            .field("listening", &self.listening)
            .field("stopping", &self.stopping)
            .finish_non_exhaustive()
    }
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            started: Instant::now(),
            listening: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            acceptor_turn: AtomicU64::new(0),
            acceptor_seen: Mutex::new(None),
            room_tick: AtomicU64::new(0),
            pool: Mutex::new(None),
        }
    }
}

impl Liveness {
    /// Fresh marks: not yet listening.
    pub fn new() -> Arc<Liveness> {
        Arc::new(Liveness::default())
    }

    /// Microseconds since `started`, plus one (so 0 can mean "none").
    fn now_tick(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// How long ago `tick` was.
    fn age(&self, tick: u64) -> Duration {
        Duration::from_micros(self.now_tick().saturating_sub(tick))
    }

    /// The accept loop started (or stopped) accepting.
    pub fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::SeqCst);
    }

    /// Whether the accept loop is accepting.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    /// A stop was requested.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was requested.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The pool the check probes.
    pub fn set_pool(&self, pool: Option<ThreadPool>) {
        *self.pool.lock() = pool;
    }

    /// The accept loop begins handling a connection.
    pub fn acceptor_busy(&self) {
        self.acceptor_turn.fetch_add(1, Ordering::Relaxed);
    }

    /// The accept loop goes back to waiting (a no-op if it already is).
    pub fn acceptor_idle(&self) {
        let _ = self
            .acceptor_turn
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |turn| {
                (!turn.is_multiple_of(2)).then_some(turn + 1)
            });
    }

    /// How long the accept loop has been on its current busy turn, as far
    /// as successive checks can tell; zero when it is waiting.
    fn acceptor_busy_for(&self) -> Duration {
        let turn = self.acceptor_turn.load(Ordering::Relaxed);
        let mut seen = self.acceptor_seen.lock();
        if turn.is_multiple_of(2) {
            *seen = None;
            return Duration::ZERO;
        }
        match *seen {
            Some((same, since)) if same == turn => since.elapsed(),
            _ => {
                *seen = Some((turn, Instant::now()));
                Duration::ZERO
            }
        }
    }

    /// The waiting room's loop turned.
    pub fn room_turned(&self) {
        self.room_tick.store(self.now_tick(), Ordering::Relaxed);
    }

    /// `Ok` when requests can make progress: the pool runs a job within
    /// `within`, the room turned recently, the accept loop is not stuck.
    ///
    /// # Errors
    ///
    /// A one-line reason naming the part that is stuck.
    pub fn alive(&self, within: Duration) -> Result<(), String> {
        let busy = self.acceptor_busy_for();
        if busy > ACCEPT_STUCK {
            return Err(format!("the accept loop has been busy for {busy:?}"));
        }
        let tick = self.room_tick.load(Ordering::Relaxed);
        if tick != 0 && self.age(tick) > ROOM_STALE {
            return Err(format!(
                "the waiting room has not turned for {:?}",
                self.age(tick)
            ));
        }
        let pool = self.pool.lock().clone();
        if let Some(pool) = pool {
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            pool.execute(move || {
                let _ = done_tx.send(());
            });
            if done_rx.recv_timeout(within).is_err() {
                return Err(format!("the worker pool ran no job within {within:?}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_pool_is_not_alive() {
        let liveness = Liveness::new();
        let pool = ThreadPool::new(1);
        liveness.set_pool(Some(pool.clone()));
        assert_eq!(liveness.alive(Duration::from_secs(10)), Ok(()));
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        pool.execute(move || {
            let _ = release_rx.recv();
        });
        let err = liveness.alive(Duration::from_millis(50)).unwrap_err();
        assert!(err.contains("worker pool"), "{err}");
        drop(release_tx);
        pool.join();
    }

    #[test]
    fn a_stuck_acceptor_is_not_alive() {
        let liveness = Liveness::new();
        liveness.acceptor_busy();
        // First sight of this busy turn: not stuck yet.
        assert_eq!(liveness.alive(Duration::from_secs(1)), Ok(()));
        // Still the same busy turn, first seen a minute ago.
        *liveness.acceptor_seen.lock() = Some((1, Instant::now() - Duration::from_secs(60)));
        let err = liveness.alive(Duration::from_secs(1)).unwrap_err();
        assert!(err.contains("accept loop"), "{err}");
        // Another turn since: alive again.
        liveness.acceptor_idle();
        liveness.acceptor_busy();
        assert_eq!(liveness.alive(Duration::from_secs(1)), Ok(()));
        liveness.acceptor_idle();
        assert_eq!(liveness.acceptor_turn.load(Ordering::Relaxed), 4);
        liveness.acceptor_idle();
        assert_eq!(
            liveness.acceptor_turn.load(Ordering::Relaxed),
            4,
            "idle twice is one turn"
        );
    }

    #[test]
    fn a_stale_room_is_not_alive() {
        let liveness = Liveness {
            started: Instant::now() - Duration::from_secs(60),
            ..Liveness::default()
        };
        liveness.room_tick.store(1, Ordering::Relaxed);
        let err = liveness.alive(Duration::from_secs(1)).unwrap_err();
        assert!(err.contains("waiting room"), "{err}");
        liveness.room_turned();
        assert_eq!(liveness.alive(Duration::from_secs(1)), Ok(()));
    }
}
