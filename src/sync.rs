//! A counting semaphore, for connections accepted but not yet finished
//! (`--max-connections`); a stop waits on it until every connection is
//! done.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// A counting semaphore built on a mutex and a condition variable.
#[derive(Debug)]
pub struct Semaphore {
    /// Permits currently free, and threads waiting for one.
    state: Mutex<State>,
    /// Signalled when a permit is returned and someone is waiting.
    returned: Condvar,
    /// Permits in all, to report how many are taken.
    capacity: usize,
}

/// The counts behind [`Semaphore`]'s lock.
#[derive(Debug)]
struct State {
    /// Permits currently free.
    available: usize,
    /// Threads blocked in [`Semaphore::acquire`]; a release wakes one only
    /// when there is one, sparing a futex call per release otherwise.
    waiting: usize,
}

impl Semaphore {
    /// A semaphore with `capacity` permits.
    pub fn new(capacity: usize) -> Arc<Semaphore> {
        Arc::new(Semaphore {
            state: Mutex::new(State {
                available: capacity,
                waiting: 0,
            }),
            returned: Condvar::new(),
            capacity,
        })
    }

    /// Blocks until a permit is free and takes it; the permit goes back
    /// when the returned guard is dropped (a panic included).
    pub fn acquire(self: &Arc<Self>) -> Permit {
        let mut state = self.lock();
        while state.available == 0 {
            state.waiting += 1;
            state = self
                .returned
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.waiting -= 1;
        }
        state.available -= 1;
        Permit {
            semaphore: Arc::clone(self),
        }
    }

    /// Waits until every permit is back or `deadline` passes; returns
    /// whether every permit is back.
    pub fn wait_until_unused(&self, deadline: Instant) -> bool {
        let mut state = self.lock();
        while state.available < self.capacity {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state.waiting += 1;
            state = self
                .returned
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            state.waiting -= 1;
        }
        true
    }

    /// How many permits are taken right now.
    pub fn in_use(&self) -> usize {
        self.capacity - self.lock().available
    }

    /// The counts, recovering from poisoning: no code that can panic runs
    /// under this lock, so a poisoned lock still holds correct counts.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A taken permit; dropping it returns the permit.
#[derive(Debug)]
pub struct Permit {
    /// The semaphore to give the permit back to.
    semaphore: Arc<Semaphore>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.semaphore.lock();
        state.available += 1;
        if state.waiting > 0 {
            // Both acquirers and wait_until_unused wait here: wake them all
            // (rare: only while the cap is reached or a stop waits).
            self.semaphore.returned.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn permits_are_counted_and_returned() {
        let s = Semaphore::new(2);
        let a = s.acquire();
        let _b = s.acquire();
        assert_eq!(s.in_use(), 2);
        drop(a);
        assert_eq!(s.in_use(), 1);
        let _c = s.acquire();
        assert_eq!(s.in_use(), 2);
    }

    #[test]
    fn acquire_waits_for_a_release() {
        let s = Semaphore::new(1);
        let held = s.acquire();
        let s2 = Arc::clone(&s);
        let waiter = std::thread::spawn(move || drop(s2.acquire()));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished());
        drop(held);
        waiter.join().unwrap();
        assert_eq!(s.in_use(), 0);
    }

    #[test]
    fn wait_until_unused_sees_the_last_release() {
        let s = Semaphore::new(2);
        let held = s.acquire();
        assert!(!s.wait_until_unused(Instant::now() + Duration::from_millis(20)));
        let releaser = std::thread::spawn(move || drop(held));
        assert!(s.wait_until_unused(Instant::now() + Duration::from_secs(10)));
        releaser.join().unwrap();
    }

    #[test]
    fn a_panic_returns_the_permit() {
        let s = Semaphore::new(1);
        let s2 = Arc::clone(&s);
        let result = std::thread::spawn(move || {
            let _p = s2.acquire();
            panic!("boom");
        })
        .join();
        assert!(result.is_err());
        assert_eq!(s.in_use(), 0);
    }
}
