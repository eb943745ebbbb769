//! What `/livez`, `/readyz` and the systemd watchdog ask of a running
//! server, answered from one place.
//!
//! * **Ready** (`/readyz`): the server is listening, is not stopping, and
//!   every registered check passes (the audit log is writable and its last
//!   sync succeeded). A stop turns it not-ready at once, so a load balancer
//!   stops sending new connections while the accepted ones finish.
//! * **Alive** (the watchdog): the worker pool runs a job within the given
//!   time, the waiting room's loop has turned recently, and the accept loop
//!   is not stuck outside `accept()`. That proves the paths a request takes
//!   are moving, not just that the process exists.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use threadpool::ThreadPool;

/// A readiness check: `Some(reason)` when not ready.
pub type Check = Box<dyn Fn() -> Option<String> + Send + Sync>;

/// The room's loop must have turned within this long to count as alive
/// (it wakes at least once a second).
const ROOM_STALE: Duration = Duration::from_secs(5);
/// The accept loop may spend this long handling one connection before it
/// counts as stuck.
const ACCEPT_STUCK: Duration = Duration::from_secs(5);

/// The server's health, shared by the core (which updates it) and the
/// admin endpoint and watchdog (which read it).
pub struct Health {
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
    /// Extra readiness checks (the audit log's).
    checks: Mutex<Vec<Check>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("listening", &self.listening)
            .field("stopping", &self.stopping)
            .finish_non_exhaustive()
    }
}

impl Default for Health {
    fn default() -> Self {
        Health {
            started: Instant::now(),
            listening: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            acceptor_turn: AtomicU64::new(0),
            acceptor_seen: Mutex::new(None),
            room_tick: AtomicU64::new(0),
            pool: Mutex::new(None),
            checks: Mutex::new(Vec::new()),
        }
    }
}

impl Health {
    /// A fresh, not-yet-listening health.
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
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

    /// Adds a readiness check.
    pub fn add_check(&self, check: Check) {
        self.checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(check);
    }

    /// The accept loop started (or stopped) accepting.
    pub fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::SeqCst);
    }

    /// A stop was requested: not ready from now on.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was requested.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The pool the watchdog probes.
    pub fn set_pool(&self, pool: Option<ThreadPool>) {
        *self.pool.lock().unwrap_or_else(PoisonError::into_inner) = pool;
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
        let mut seen = self
            .acceptor_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
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

    /// `Ok` when the server should get traffic; the reason otherwise.
    ///
    /// # Errors
    ///
    /// A one-line reason: stopping, not listening, or a failed check.
    pub fn ready(&self) -> Result<(), String> {
        if self.is_stopping() {
            return Err("stopping".into());
        }
        if !self.listening.load(Ordering::SeqCst) {
            return Err("not listening".into());
        }
        let checks = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        match checks.iter().find_map(|check| check()) {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
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
        let pool = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
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
    fn ready_only_while_listening_and_not_stopping_and_checks_pass() {
        let health = Health::new();
        assert_eq!(health.ready(), Err("not listening".into()));
        health.set_listening(true);
        assert_eq!(health.ready(), Ok(()));
        let failing = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&failing);
        health.add_check(Box::new(move || {
            flag.load(Ordering::SeqCst).then(|| "disk full".to_owned())
        }));
        assert_eq!(health.ready(), Err("disk full".into()));
        failing.store(false, Ordering::SeqCst);
        assert_eq!(health.ready(), Ok(()));
        health.set_stopping();
        assert_eq!(health.ready(), Err("stopping".into()));
    }

    #[test]
    fn a_blocked_pool_is_not_alive() {
        let health = Health::new();
        let pool = ThreadPool::new(1);
        health.set_pool(Some(pool.clone()));
        assert_eq!(health.alive(Duration::from_secs(10)), Ok(()));
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        pool.execute(move || {
            let _ = release_rx.recv();
        });
        let err = health.alive(Duration::from_millis(50)).unwrap_err();
        assert!(err.contains("worker pool"), "{err}");
        drop(release_tx);
        pool.join();
    }

    #[test]
    fn a_stuck_acceptor_is_not_alive() {
        let health = Health::new();
        health.acceptor_busy();
        // First sight of this busy turn: not stuck yet.
        assert_eq!(health.alive(Duration::from_secs(1)), Ok(()));
        // Still the same busy turn, first seen a minute ago.
        *health.acceptor_seen.lock().unwrap() = Some((1, Instant::now() - Duration::from_secs(60)));
        let err = health.alive(Duration::from_secs(1)).unwrap_err();
        assert!(err.contains("accept loop"), "{err}");
        // Another turn since: alive again.
        health.acceptor_idle();
        health.acceptor_busy();
        assert_eq!(health.alive(Duration::from_secs(1)), Ok(()));
        health.acceptor_idle();
        assert_eq!(health.acceptor_turn.load(Ordering::Relaxed), 4);
        health.acceptor_idle();
        assert_eq!(
            health.acceptor_turn.load(Ordering::Relaxed),
            4,
            "idle twice is one turn"
        );
    }

    #[test]
    fn a_stale_room_is_not_alive() {
        let health = Health {
            started: Instant::now() - Duration::from_secs(60),
            ..Health::default()
        };
        health.room_tick.store(1, Ordering::Relaxed);
        let err = health.alive(Duration::from_secs(1)).unwrap_err();
        assert!(err.contains("waiting room"), "{err}");
        health.room_turned();
        assert_eq!(health.alive(Duration::from_secs(1)), Ok(()));
    }
}
