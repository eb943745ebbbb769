//! Admission under `--max-connections`: a counting semaphore for
//! connections accepted but not yet finished, and the [`Admission`] each
//! connection holds until it is dropped. A stop waits on the semaphore
//! until every connection is done.

use parking_lot::{Condvar, Mutex};
use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A counting semaphore: an atomic count for the common case (a permit is
/// free, nobody waits: no lock, no system call), a mutex and condition
/// variable only for threads that must wait.
#[derive(Debug)]
pub struct Semaphore {
    /// Permits currently free.
    available: AtomicUsize,
    /// Threads waiting in [`Semaphore::acquire`] or
    /// [`Semaphore::wait_until_unused`]; a release takes the lock and wakes
    /// them only when there are some.
    waiting: AtomicUsize,
    /// Held by waiters between checking the count and sleeping, so a
    /// release cannot slip between the two.
    lock: Mutex<()>,
    /// Signalled when a permit is returned and someone is waiting.
    returned: Condvar,
    /// Permits in all, to report how many are taken.
    capacity: usize,
}

impl Semaphore {
    /// A semaphore with `capacity` permits.
    pub fn new(capacity: usize) -> Arc<Semaphore> {
        Arc::new(Semaphore {
            available: AtomicUsize::new(capacity),
            waiting: AtomicUsize::new(0),
            lock: Mutex::new(()),
            returned: Condvar::new(),
            capacity,
        })
    }

    /// Takes a permit if one is free, without waiting.
    fn try_take(&self) -> bool {
        self.available
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Blocks until a permit is free and takes it; the permit goes back
    /// when the returned guard is dropped (a panic included).
    pub fn acquire(self: &Arc<Self>) -> Permit {
        if !self.try_take() {
            let mut guard = self.lock.lock();
            self.waiting.fetch_add(1, Ordering::SeqCst);
            while !self.try_take() {
                self.returned.wait(&mut guard);
            }
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        Permit {
            semaphore: Arc::clone(self),
        }
    }

    /// Waits until every permit is back or `deadline` passes; returns
    /// whether every permit is back.
    pub fn wait_until_unused(&self, deadline: Instant) -> bool {
        let mut guard = self.lock.lock();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let unused = loop {
            if self.available.load(Ordering::SeqCst) == self.capacity {
                break true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            self.returned.wait_for(&mut guard, left);
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        unused
    }

    /// How many permits are taken right now.
    pub fn in_use(&self) -> usize {
        self.capacity - self.available.load(Ordering::SeqCst)
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
        let semaphore = &self.semaphore;
        semaphore.available.fetch_add(1, Ordering::SeqCst);
        // A waiter increments `waiting` before its last check of the count,
        // under the lock; taking the lock here before notifying means the
        // waiter is either still before that check (and will see this
        // permit) or already asleep (and is woken).
        if semaphore.waiting.load(Ordering::SeqCst) > 0 {
            drop(semaphore.lock.lock());
            semaphore.returned.notify_all();
        }
    }
}

/// A connection's place under `--max-connections`; it also keeps the
/// `connections_open` gauge right, wherever the connection is dropped.
pub struct Admission {
    /// The semaphore permit.
    _permit: Permit,
    /// The gauge to decrement.
    open: Gauge,
}

impl Admission {
    /// Admits a connection: holds `permit` and counts it in `open` until
    /// dropped.
    pub fn new(permit: Permit, open: &Gauge) -> Admission {
        open.inc();
        Admission {
            _permit: permit,
            open: open.clone(),
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.open.dec();
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
    fn many_threads_never_hold_more_than_the_capacity() {
        let s = Semaphore::new(3);
        let held = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|scope| {
            for _ in 0..8 {
                let s = Arc::clone(&s);
                let held = Arc::clone(&held);
                scope.spawn(move || {
                    for _ in 0..2_000 {
                        let _p = s.acquire();
                        let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= 3, "{now} permits out of 3");
                        held.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(s.in_use(), 0);
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
