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
//! Generic over what it queues, so the arithmetic of when to wake and when
//! to post is unit-tested here without sockets.

use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::time::Duration;

/// How long a drainer job waits for work before giving its thread back to
/// the pool.
pub const DRAINER_IDLE: Duration = Duration::from_millis(200);

/// A queue of ready items and the count of jobs draining it.
#[derive(Debug)]
pub struct ReadyQueue<T> {
    /// The items and the drainers' counts, under one lock.
    state: Mutex<State<T>>,
    /// Signalled when an item is queued for a waiting drainer.
    work_arrived: Condvar,
    /// Drainers that may run at once (the pool's size).
    workers: usize,
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
}

impl<T> ReadyQueue<T> {
    /// An empty queue drained by at most `workers` jobs at once.
    pub fn new(workers: usize) -> ReadyQueue<T> {
        ReadyQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                draining: 0,
                idle: 0,
            }),
            work_arrived: Condvar::new(),
            workers: workers.max(1),
        }
    }

    /// Queues `item` behind the others. Wakes a waiting drainer when one is
    /// free for it (outside the lock, so it does not wake into a lock still
    /// held) and returns how many new drainer jobs the caller must post:
    /// only as many as the queue has outgrown the drainers, up to the pool.
    pub fn push(&self, item: T) -> usize {
        let mut state = self.state.lock();
        state.queue.push_back(item);
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
    /// `None` tells the drainer to end (it is no longer counted): nothing
    /// came in time, or `stopping()` holds and nothing is queued.
    pub fn next(&self, stopping: impl Fn() -> bool) -> Option<T> {
        let mut state = self.state.lock();
        loop {
            if let Some(item) = state.queue.pop_front() {
                return Some(item);
            }
            if stopping() {
                state.draining -= 1;
                return None;
            }
            state.idle += 1;
            let waited = self.work_arrived.wait_for(&mut state, DRAINER_IDLE);
            state.idle -= 1;
            if waited.timed_out() && state.queue.is_empty() {
                state.draining -= 1;
                return None;
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

    /// Returns once a drainer waits on `queue` (fails after 10 s).
    fn wait_until_a_drainer_waits<T>(queue: &ReadyQueue<T>) {
        let until = Instant::now() + Duration::from_secs(10);
        while queue.state.lock().idle == 0 {
            assert!(Instant::now() < until, "the drainer never waited");
            std::thread::yield_now();
        }
    }

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
        assert_eq!(queue.next(|| false), Some('a'));
        assert_eq!(queue.next(|| false), Some('b'));
        let waited = Instant::now();
        assert_eq!(queue.next(|| false), None, "idle drainer ends");
        assert!(waited.elapsed() >= DRAINER_IDLE);
        assert_eq!(queue.push('c'), 1, "it was no longer counted: post again");
    }

    #[test]
    fn a_waiting_drainer_is_woken_instead_of_posting_a_job() {
        let queue = Arc::new(ReadyQueue::new(4));
        assert_eq!(queue.push(0), 1);
        assert_eq!(queue.next(|| false), Some(0));
        let drainer = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || (queue.next(|| false), Instant::now()))
        };
        // Wait (bounded) until the drainer waits, then hand it one item.
        wait_until_a_drainer_waits(&queue);
        let pushed = Instant::now();
        assert_eq!(queue.push(7), 0, "the waiting drainer takes it");
        let (got, at) = drainer.join().unwrap();
        assert_eq!(got, Some(7));
        // Woken by the push, not by its wait running out.
        let took = at.duration_since(pushed);
        assert!(took < DRAINER_IDLE, "woken, not timed out: {took:?}");
    }

    #[test]
    fn an_item_that_comes_as_the_wait_runs_out_is_still_taken() {
        let queue = Arc::new(ReadyQueue::new(1));
        assert_eq!(queue.push(0), 1);
        assert_eq!(queue.next(|| false), Some(0));
        let drainer = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || queue.next(|| false))
        };
        wait_until_a_drainer_waits(&queue);
        // Hold the lock past the drainer's timeout, so that it wakes timed
        // out and finds an item queued meanwhile: it must take it, not end
        // and leave it to no one.
        let mut state = queue.state.lock();
        std::thread::sleep(DRAINER_IDLE + Duration::from_millis(100));
        state.queue.push_back(7);
        drop(state);
        assert_eq!(drainer.join().unwrap(), Some(7));
    }

    #[test]
    fn a_stop_ends_a_drainer_with_nothing_queued_and_wake_all_reaches_it() {
        let queue = Arc::new(ReadyQueue::<u8>::new(1));
        assert_eq!(queue.push(1), 1);
        assert_eq!(queue.next(|| true), Some(1), "queued work is still taken");
        assert_eq!(queue.next(|| true), None);
        assert_eq!(queue.push(2), 1);
        assert_eq!(queue.next(|| true), Some(2));
        let stop = Arc::new(AtomicBool::new(false));
        let drainer = {
            let (queue, stop) = (Arc::clone(&queue), Arc::clone(&stop));
            std::thread::spawn(move || (queue.next(|| stop.load(Ordering::SeqCst)), Instant::now()))
        };
        wait_until_a_drainer_waits(&queue);
        stop.store(true, Ordering::SeqCst);
        let woken = Instant::now();
        queue.wake_all();
        let (got, ended) = drainer.join().unwrap();
        assert_eq!(got, None);
        // Without the wake-up it would end only when DRAINER_IDLE runs out.
        let took = ended.duration_since(woken);
        assert!(took < DRAINER_IDLE, "woken, not timed out: {took:?}");
    }
}
