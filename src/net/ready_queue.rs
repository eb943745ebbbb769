//! The ready queue: connections with a complete line, waiting for a
//! worker, and the pool jobs ("drainers") that take them.
//!
//! The pool is not handed one job per connection: a job drains this queue,
//! waiting for more when it is empty (for up to [`DRAINER_IDLE`]), and a
//! new job is posted only when the queue is longer than the jobs already
//! draining it. Under load a busy worker takes the next connection straight
//! from the queue, and an idle one is woken with a single futex wake,
//! sparing the pool's shared channel (whose receiver lock wakes a second
//! idle worker on every job) per request.
//!
//! A drainer that finds the queue empty while the accept loop is in the
//! middle of handling a connection (which it will most likely queue within
//! microseconds) spins for it instead of going to sleep, as Linux's
//! mutexes spin while their owner runs: sleeping and being woken costs two
//! `futex` calls and two context switches, several times the wait. It
//! never spins longer than [`SPIN_LIMIT`], and not at all while the accept
//! loop is blocked in `accept()`, so an idle server burns nothing.
//!
//! Generic over what it queues, so the arithmetic of when to wake and when
//! to post is unit-tested here without sockets.

use parking_lot::{Condvar, Mutex, MutexGuard};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a drainer job waits for work before giving its thread back to
/// the pool.
pub const DRAINER_IDLE: Duration = Duration::from_millis(200);

/// The longest a drainer spins for a connection the accept loop is
/// handling: a few times what the accept loop spends on one (a few
/// microseconds), so a stalled accept loop costs little.
pub const SPIN_LIMIT: Duration = Duration::from_micros(50);

/// A queue of ready items and the count of jobs draining it.
#[derive(Debug)]
pub struct ReadyQueue<T> {
    /// The items and the drainers' counts, under one lock.
    state: Mutex<State<T>>,
    /// Signalled when an item is queued for a waiting drainer.
    work_arrived: Condvar,
    /// Items queued, readable without the lock (what a spinning drainer
    /// watches).
    queued: AtomicUsize,
    /// Drainers that may run at once (the pool's size).
    workers: usize,
    /// The longest one spin ([`SPIN_LIMIT`]; longer in tests).
    spin_limit: Duration,
}

/// What the lock guards.
#[derive(Debug)]
struct State<T> {
    /// Ready items, oldest first.
    queue: VecDeque<T>,
    /// Drainer jobs now, busy or waiting.
    draining: usize,
    /// Of those, the ones waiting for work.
    idle: usize,
    /// Times a drainer went to sleep, for the tests (a plain count under
    /// the lock it already holds).
    sleeps: u64,
}

impl<T> ReadyQueue<T> {
    /// An empty queue drained by at most `workers` jobs at once.
    pub fn new(workers: usize) -> ReadyQueue<T> {
        ReadyQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                draining: 0,
                idle: 0,
                sleeps: 0,
            }),
            work_arrived: Condvar::new(),
            queued: AtomicUsize::new(0),
            workers: workers.max(1),
            spin_limit: SPIN_LIMIT,
        }
    }

    /// Queues `item` behind the others. Wakes a waiting drainer when one is
    /// free for it (outside the lock, so it does not wake into a lock still
    /// held) and returns how many new drainer jobs the caller must post:
    /// only as many as the queue has outgrown the drainers, up to the pool.
    pub fn push(&self, item: T) -> usize {
        let mut state = self.state.lock();
        state.queue.push_back(item);
        self.queued.store(state.queue.len(), Ordering::Release);
        // A waiting drainer takes the work first: one wake-up, no new job.
        let busy = state.draining - state.idle;
        let wake = state.idle.min(state.queue.len().saturating_sub(busy));
        let mut posts = 0;
        while state.draining < self.workers && state.queue.len() > busy + wake + posts {
            state.draining += 1;
            posts += 1;
        }
        drop(state);
        for _ in 0..wake {
            self.work_arrived.notify_one();
        }
        posts
    }

    /// A drainer's next item, waiting for one for up to [`DRAINER_IDLE`].
    /// While the queue is empty and `incoming()` says an item is on its way
    /// (the accept loop is handling a connection), it spins for up to
    /// [`SPIN_LIMIT`] before sleeping. `None` tells the drainer to end (it
    /// is no longer counted): nothing came in time, or `stopping()` holds
    /// and nothing is queued.
    pub fn next(&self, stopping: impl Fn() -> bool, incoming: impl Fn() -> bool) -> Option<T> {
        let mut state = self.state.lock();
        loop {
            if let Some(item) = state.queue.pop_front() {
                self.queued.store(state.queue.len(), Ordering::Release);
                return Some(item);
            }
            if stopping() {
                state.draining -= 1;
                return None;
            }
            if incoming() && MutexGuard::unlocked(&mut state, || self.spin(&incoming)) {
                continue;
            }
            state.idle += 1;
            state.sleeps += 1;
            let waited = self.work_arrived.wait_for(&mut state, DRAINER_IDLE);
            state.idle -= 1;
            if waited.timed_out() && state.queue.is_empty() {
                state.draining -= 1;
                return None;
            }
        }
    }

    /// Spins (outside the lock) while the queue is empty and an item is on
    /// its way, for at most [`SPIN_LIMIT`]; whether an item came.
    fn spin(&self, incoming: &impl Fn() -> bool) -> bool {
        let until = Instant::now() + self.spin_limit;
        loop {
            for _ in 0..64 {
                if self.queued.load(Ordering::Acquire) > 0 {
                    return true;
                }
                std::hint::spin_loop();
            }
            if !incoming() {
                // The accept loop finished that connection: it was queued,
                // or it went to wait elsewhere.
                return self.queued.load(Ordering::Acquire) > 0;
            }
            if Instant::now() >= until {
                return false;
            }
        }
    }

    /// Wakes every waiting drainer, so that at a stop they see it and end.
    pub fn wake_all(&self) {
        let _state = self.state.lock();
        self.work_arrived.notify_all();
    }

    /// Items queued now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn a_job_is_posted_only_when_the_queue_outgrows_the_drainers() {
        let queue = ReadyQueue::new(2);
        assert_eq!(queue.push(1), 1, "nobody drains yet: post one");
        assert_eq!(
            queue.push(2),
            1,
            "one busy drainer, two items: post a second"
        );
        assert_eq!(queue.push(3), 0, "the pool is full: the item waits");
        assert_eq!(queue.len(), 3);
    }

    #[test]
    fn items_come_out_in_order_and_an_idle_drainer_ends() {
        let queue = ReadyQueue::new(1);
        assert_eq!(queue.push('a'), 1);
        queue.push('b');
        assert_eq!(queue.next(|| false, || false), Some('a'));
        assert_eq!(queue.next(|| false, || false), Some('b'));
        let waited = Instant::now();
        assert_eq!(queue.next(|| false, || false), None, "idle drainer ends");
        assert!(waited.elapsed() >= DRAINER_IDLE);
        assert_eq!(queue.push('c'), 1, "it was no longer counted: post again");
    }

    #[test]
    fn a_waiting_drainer_is_woken_instead_of_posting_a_job() {
        let queue = Arc::new(ReadyQueue::new(4));
        assert_eq!(queue.push(0), 1);
        assert_eq!(queue.next(|| false, || false), Some(0));
        let drainer = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || queue.next(|| false, || false))
        };
        // Wait (bounded) until the drainer waits, then hand it one item.
        let until = Instant::now() + Duration::from_secs(10);
        while queue.state.lock().idle == 0 {
            assert!(Instant::now() < until, "the drainer never waited");
            std::thread::yield_now();
        }
        assert_eq!(queue.push(7), 0, "the waiting drainer takes it");
        assert_eq!(drainer.join().unwrap(), Some(7));
    }

    #[test]
    fn a_stop_ends_a_drainer_with_nothing_queued_and_wake_all_reaches_it() {
        let queue = Arc::new(ReadyQueue::<u8>::new(1));
        assert_eq!(queue.push(1), 1);
        assert_eq!(
            queue.next(|| true, || false),
            Some(1),
            "queued work is still taken"
        );
        assert_eq!(queue.next(|| true, || false), None);
        assert_eq!(queue.push(2), 1);
        assert_eq!(queue.next(|| true, || false), Some(2));
        let stop = Arc::new(AtomicBool::new(false));
        let drainer = {
            let (queue, stop) = (Arc::clone(&queue), Arc::clone(&stop));
            std::thread::spawn(move || {
                (
                    queue.next(|| stop.load(Ordering::SeqCst), || false),
                    Instant::now(),
                )
            })
        };
        while queue.state.lock().idle == 0 {
            std::thread::yield_now();
        }
        stop.store(true, Ordering::SeqCst);
        let woken = Instant::now();
        queue.wake_all();
        let (got, ended) = drainer.join().unwrap();
        assert_eq!(got, None);
        // Without the wake-up it would end only when DRAINER_IDLE runs out.
        let took = ended.duration_since(woken);
        assert!(took < DRAINER_IDLE, "woken, not timed out: {took:?}");
    }

    #[test]
    fn a_drainer_spins_for_an_item_on_its_way_instead_of_sleeping() {
        let queue = Arc::new(ReadyQueue {
            spin_limit: Duration::from_secs(20),
            ..ReadyQueue::new(1)
        });
        assert_eq!(queue.push(0), 1);
        assert_eq!(queue.next(|| false, || false), Some(0));
        // The producer is handling an item when the drainer finds the queue
        // empty: the drainer spins; the item is queued meanwhile.
        let asked = Arc::new(AtomicBool::new(false));
        let drainer = {
            let (queue, asked) = (Arc::clone(&queue), Arc::clone(&asked));
            std::thread::spawn(move || {
                queue.next(
                    || false,
                    || {
                        asked.store(true, Ordering::SeqCst);
                        true
                    },
                )
            })
        };
        let until = Instant::now() + Duration::from_secs(10);
        while !asked.load(Ordering::SeqCst) {
            assert!(Instant::now() < until, "the drainer never looked");
            std::thread::yield_now();
        }
        // The push wakes nobody and posts no job: the spinner takes it.
        assert_eq!(queue.push(7), 0);
        assert_eq!(drainer.join().unwrap(), Some(7));
        assert_eq!(
            queue.state.lock().sleeps,
            0,
            "taken while spinning, not asleep"
        );
        // With nothing on its way it does not spin, and a spin is bounded:
        // then it sleeps until it gives up.
        let queue = ReadyQueue::<u8>::new(1);
        assert_eq!(queue.push(1), 1);
        assert_eq!(queue.next(|| false, || false), Some(1));
        let started = Instant::now();
        assert_eq!(queue.next(|| false, || true), None);
        assert!(
            started.elapsed() >= DRAINER_IDLE,
            "spun, then slept until idle"
        );
        assert_eq!(queue.state.lock().sleeps, 1);
    }
}
