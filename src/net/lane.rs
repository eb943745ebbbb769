//! The heavy lane: a few threads of its own for work too slow for the pool
//! (a 4300-digit primality test takes over a second), fed by a queue that
//! is fair between client addresses.
//!
//! A worker that meets such work hands the whole connection to the lane and
//! goes back to the pool at once, so heavy requests never hold a worker and
//! light ones keep flowing. Waiting jobs hold no thread. The queue serves
//! addresses round-robin: each address has its own FIFO, and a lane thread
//! takes one job from the address at the front of the ring, then moves that
//! address to the back, so a client with a hundred heavy requests queued
//! gets one turn per round like a client with one. As in Linux's `fq`
//! qdisc, an address that arrives with nothing queued goes ahead of the
//! addresses already taking turns: a client asking once is served next,
//! not after another round of the busy ones.
//!
//! The queue holds at most one job per connection (a connection whose job
//! is queued is not read from, so its next lines wait in the kernel: TCP
//! back-pressure), so it is bounded by `--max-connections`.

use crate::net::metrics::CoreMetrics;
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A unit of heavy work; it owns its connection and finishes it.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// The lane: its threads and the fair queue they share.
#[derive(Debug)]
pub struct Lane {
    /// State shared with the lane threads.
    shared: Arc<Shared>,
    /// The lane threads, joined on [`Lane::join`].
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// What the lane threads share.
#[derive(Debug)]
struct Shared {
    /// The queue and the stop flag.
    queue: Mutex<FairQueue>,
    /// Signalled when a job is queued or the lane stops.
    work: Condvar,
    /// Where the queue and running gauges live.
    metrics: CoreMetrics,
}

/// Jobs by address, served round-robin.
#[derive(Default)]
struct FairQueue {
    /// Each address's waiting jobs, in arrival order.
    by_addr: HashMap<IpAddr, VecDeque<Job>>,
    /// Addresses that joined with nothing queued and have not had a turn
    /// yet: served first.
    fresh: VecDeque<IpAddr>,
    /// Addresses with waiting jobs that already had a turn, in turn order.
    ring: VecDeque<IpAddr>,
    /// Jobs waiting in all.
    len: usize,
    /// No more jobs will come: threads exit once the queue is empty.
    closing: bool,
}

impl std::fmt::Debug for FairQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FairQueue")
            .field("addresses", &(self.fresh.len() + self.ring.len()))
            .field("len", &self.len)
            .field("closing", &self.closing)
            .finish()
    }
}

impl FairQueue {
    /// Queues `job` behind `addr`'s earlier ones.
    fn push(&mut self, addr: IpAddr, job: Job) {
        let jobs = self.by_addr.entry(addr).or_default();
        if jobs.is_empty() {
            self.fresh.push_back(addr);
        }
        jobs.push_back(job);
        self.len += 1;
    }

    /// The next job in round-robin order.
    fn pop(&mut self) -> Option<Job> {
        let addr = self.fresh.pop_front().or_else(|| self.ring.pop_front())?;
        let jobs = self.by_addr.get_mut(&addr)?;
        let job = jobs.pop_front()?;
        if jobs.is_empty() {
            self.by_addr.remove(&addr);
        } else {
            self.ring.push_back(addr);
        }
        self.len -= 1;
        Some(job)
    }

    /// Takes every waiting job out (to drop them when a stop runs out of
    /// time).
    fn take_all(&mut self) -> Vec<Job> {
        self.fresh.clear();
        self.ring.clear();
        self.len = 0;
        self.by_addr.drain().flat_map(|(_, jobs)| jobs).collect()
    }
}

impl Lane {
    /// Starts `threads` lane threads.
    ///
    /// # Errors
    ///
    /// A thread could not be spawned.
    pub fn start(threads: usize, metrics: CoreMetrics) -> std::io::Result<Lane> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(FairQueue::default()),
            work: Condvar::new(),
            metrics,
        });
        let handles = (0..threads.max(1))
            .map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("heavy-{i}"))
                    .spawn(move || shared.run())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Lane {
            shared,
            threads: Mutex::new(handles),
        })
    }

    /// Queues `job` for a lane thread, fair by `addr`.
    pub fn submit(&self, addr: IpAddr, job: Job) {
        let mut queue = self.shared.queue.lock();
        queue.push(addr, job);
        self.shared.metrics.heavy_queued.inc();
        drop(queue);
        self.shared.work.notify_one();
    }

    /// Lets the threads exit once every queued job is done.
    pub fn close(&self) {
        self.shared.queue.lock().closing = true;
        self.shared.work.notify_all();
    }

    /// Drops every job still waiting (their connections close without a
    /// reply); returns how many.
    pub fn discard_queued(&self) -> usize {
        let jobs = self.shared.queue.lock().take_all();
        let n = jobs.len();
        self.shared
            .metrics
            .heavy_queued
            .dec_by(i64::try_from(n).unwrap_or(i64::MAX));
        drop(jobs);
        n
    }

    /// Waits for the lane threads to exit (after [`Lane::close`]).
    pub fn join(&self) {
        let threads = std::mem::take(&mut *self.threads.lock());
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Shared {
    /// A lane thread: run jobs in fair order until closed and empty.
    fn run(&self) {
        loop {
            let mut queue = self.queue.lock();
            let job = loop {
                if let Some(job) = queue.pop() {
                    break job;
                }
                if queue.closing {
                    return;
                }
                self.work.wait(&mut queue);
            };
            drop(queue);
            self.metrics.heavy_queued.dec();
            self.metrics.heavy_running.inc();
            // A job contains its own panics (it owns a connection and knows
            // how to report them); this only keeps the thread alive.
            let _ = catch_unwind(AssertUnwindSafe(job));
            self.metrics.heavy_running.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn addresses_take_turns() {
        let mut q = FairQueue::default();
        let (tx, rx) = mpsc::channel();
        for (addr, label) in [
            (1, "a1"),
            (1, "a2"),
            (1, "a3"),
            (2, "b1"),
            (3, "c1"),
            (2, "b2"),
        ] {
            let tx = tx.clone();
            q.push(ip(addr), Box::new(move || tx.send(label).unwrap()));
        }
        assert_eq!(q.len, 6);
        while let Some(job) = q.pop() {
            job();
        }
        let order: Vec<_> = rx.try_iter().collect();
        assert_eq!(order, ["a1", "b1", "c1", "a2", "b2", "a3"]);
        assert_eq!(q.len, 0);
        assert!(q.by_addr.is_empty() && q.ring.is_empty() && q.fresh.is_empty());
    }

    #[test]
    fn an_address_arriving_idle_goes_before_the_busy_ones() {
        let mut q = FairQueue::default();
        let (tx, rx) = mpsc::channel();
        let job = |label: &'static str| {
            let tx = tx.clone();
            Box::new(move || tx.send(label).unwrap()) as Job
        };
        for label in ["a1", "a2", "a3"] {
            q.push(ip(1), job(label));
        }
        // a1 starts; then b arrives with one request.
        q.pop().unwrap()();
        q.push(ip(2), job("b1"));
        while let Some(job) = q.pop() {
            job();
        }
        let order: Vec<_> = rx.try_iter().collect();
        assert_eq!(order, ["a1", "b1", "a2", "a3"]);
    }

    #[test]
    fn lane_runs_jobs_and_survives_a_panic() {
        let lane = Lane::start(2, CoreMetrics::new()).unwrap();
        let (tx, rx) = mpsc::channel();
        lane.submit(ip(1), Box::new(|| panic!("contained")));
        for i in 0..10 {
            let tx = tx.clone();
            lane.submit(ip(i), Box::new(move || tx.send(i).unwrap()));
        }
        lane.close();
        lane.join();
        let mut done: Vec<_> = rx.try_iter().collect();
        done.sort_unstable();
        assert_eq!(done, (0..10).collect::<Vec<_>>());
        assert_eq!(lane.shared.metrics.heavy_queued.get(), 0);
        assert_eq!(lane.shared.metrics.heavy_running.get(), 0);
    }

    #[test]
    fn discarded_jobs_are_dropped_not_run() {
        let metrics = CoreMetrics::new();
        let lane = Lane::start(1, metrics.clone()).unwrap();
        let (block_tx, block_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel();
        lane.submit(
            ip(1),
            Box::new(move || {
                started_tx.send(()).unwrap();
                let _ = block_rx.recv();
            }),
        );
        started_rx.recv().unwrap();
        let ran = Arc::new(std::sync::Mutex::new(0));
        for _ in 0..3 {
            let ran = Arc::clone(&ran);
            lane.submit(ip(2), Box::new(move || *ran.lock().unwrap() += 1));
        }
        assert_eq!(metrics.heavy_queued.get(), 3);
        assert_eq!(lane.discard_queued(), 3);
        drop(block_tx);
        lane.close();
        lane.join();
        assert_eq!(*ran.lock().unwrap(), 0);
        assert_eq!(metrics.heavy_queued.get(), 0);
    }
}
