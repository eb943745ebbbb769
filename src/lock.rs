//! [`Lock`]: the mutex for the locks every request takes (the audit
//! writer, the waiting room's inbox).
//!
//! `parking_lot`'s mutex, used everywhere else, spins and then calls
//! `sched_yield` up to ten times before it sleeps. With two workers taking
//! the audit writer for every pipelined line, that was 0.05 `sched_yield`
//! calls per line, each a trip through the scheduler: pipelined keep-alive
//! cost 1.09x-1.16x the CPU per line of the `std` mutex it replaced
//! (bench/results/before-after-e9cd89a.md). The `std` mutex spins briefly
//! and then sleeps on a futex until the holder wakes it, which is what a
//! lock held for a microsecond wants. Poisoning is ignored, as it was with
//! `parking_lot`: a panic in one connection must not stop every later
//! request from being audited.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// A mutex that sleeps rather than yields when contended; poison ignored.
#[derive(Debug, Default)]
pub struct Lock<T>(Mutex<T>);

impl<T> Lock<T> {
    /// A lock around `value`.
    pub const fn new(value: T) -> Lock<T> {
        Lock(Mutex::new(value))
    }

    /// Waits for the lock (sleeping on a futex when another thread holds
    /// it).
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_locked_leaves_the_value_usable() {
        let lock = std::sync::Arc::new(Lock::new(1));
        let held = std::sync::Arc::clone(&lock);
        let _ = std::thread::spawn(move || {
            *held.lock() = 2;
            panic!("while holding the lock");
        })
        .join();
        assert_eq!(*lock.lock(), 2);
    }
}
