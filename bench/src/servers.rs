//! The servers under test, started by the bench itself: the floor (at
//! several thread counts), the Python reference (trial division, and gmpy2
//! where it can be had) and prime-server. Each runs as a child process, so
//! its CPU time, context switches and peak memory can be read from /proc.

use anyhow::{bail, Context};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a server may take to report its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Accept, read to the newline, write a constant, close.
    Floor {
        /// Threads blocking in `accept()`: the floor's cost depends on it,
        /// so the bench runs several and compares against the cheapest.
        threads: usize,
        /// Whether the listener has `TCP_DEFER_ACCEPT` (prime-server's
        /// does); which is cheaper depends on the client, so both run.
        defer_accept: bool,
    },
    /// Python socketserver with trial division.
    Python,
    /// Python socketserver with gmpy2.
    PythonGmpy2,
    /// This project, release build, audit log on.
    PrimeServer,
}

impl Kind {
    /// The name in reports.
    pub fn name(self) -> String {
        match self {
            Kind::Floor {
                threads,
                defer_accept,
            } => format!(
                "floor, {threads} thread{}{}",
                if threads == 1 { "" } else { "s" },
                if defer_accept {
                    ", deferred accept"
                } else {
                    ""
                }
            ),
            Kind::Python => "python (trial division)".to_owned(),
            Kind::PythonGmpy2 => "python + gmpy2".to_owned(),
            Kind::PrimeServer => "prime-server".to_owned(),
        }
    }

    /// Whether this is one of the floors.
    pub fn is_floor(self) -> bool {
        matches!(self, Kind::Floor { .. })
    }

    /// Whether its replies mean anything (the floor answers a constant).
    pub fn answers_truly(self) -> bool {
        !self.is_floor()
    }
}

/// The floor's thread counts worth measuring: 2 (what an independent C
/// floor used), one per core, and prime-server's worker count; sorted,
/// without repeats.
pub fn floor_threads(cores: usize, workers: usize) -> Vec<usize> {
    let mut threads = vec![2, cores.max(1), workers.max(1)];
    threads.sort_unstable();
    threads.dedup();
    threads
}

/// Where the pieces the bench starts are found.
#[derive(Debug, Clone)]
pub struct Toolbox {
    /// This very binary, for `prime-bench floor`.
    pub bench: PathBuf,
    /// The prime-server binary beside it.
    pub prime_server: PathBuf,
    /// The prime-audit binary beside it (it makes sealing states).
    pub prime_audit: PathBuf,
    /// The Python interpreter (the bench venv's, if present).
    pub python: Option<PathBuf>,
    /// Whether that interpreter can import gmpy2.
    pub gmpy2: bool,
    /// The Python reference server script.
    pub python_script: PathBuf,
    /// Where prime-server's audit logs go.
    pub scratch: PathBuf,
    /// prime-server's worker count, passed to it with `--workers` so the
    /// floor that matches it is known to match.
    pub workers: usize,
    /// The floor's thread counts to run (see [`floor_threads`]).
    pub floor_threads: Vec<usize>,
}

impl Toolbox {
    /// Finds everything, noting what is missing.
    ///
    /// # Errors
    ///
    /// The bench's own path cannot be found.
    pub fn discover(scratch: &Path, keep_alive: bool) -> anyhow::Result<(Toolbox, Vec<String>)> {
        let bench = std::env::current_exe().context("cannot find the prime-bench binary")?;
        let prime_server = bench.with_file_name("prime-server");
        let prime_audit = bench.with_file_name("prime-audit");
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let venv_python = root.join(".venv/bin/python");
        let mut notes = Vec::new();
        let python = [venv_python, PathBuf::from("python3")]
            .into_iter()
            .find(|p| {
                Command::new(p)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            });
        if python.is_none() {
            notes.push("python3 not found: the Python references are skipped".to_owned());
        }
        let gmpy2 = python.as_ref().is_some_and(|p| {
            Command::new(p)
                .args(["-c", "import gmpy2"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        if python.is_some() && !gmpy2 {
            notes.push("gmpy2 could not be imported (make bench installs it into bench/.venv when it can): the Python+gmpy2 reference is skipped".to_owned());
        }
        if keep_alive {
            notes.push("pipelined mode: the Python references speak one line per connection and are skipped".to_owned());
        }
        if !prime_server.exists() {
            bail!(
                "{} not found: build it first (cargo build --release --bins)",
                prime_server.display()
            );
        }
        let workers = prime_server::net::default_workers();
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Ok((
            Toolbox {
                bench,
                prime_server,
                prime_audit,
                python,
                gmpy2,
                python_script: root.join("python/prime_server.py"),
                scratch: scratch.to_path_buf(),
                workers,
                floor_threads: floor_threads(cores, workers),
            },
            notes,
        ))
    }

    /// The servers this machine can run, in report order. Keep-alive runs
    /// only the floor with as many threads as prime-server has workers: a
    /// keep-alive connection holds a thread, so fewer threads than clients
    /// would measure clients waiting for a thread, not the floor.
    pub fn available(&self, keep_alive: bool) -> Vec<Kind> {
        let mut kinds: Vec<Kind> = if keep_alive {
            vec![Kind::Floor {
                threads: self.workers,
                defer_accept: false,
            }]
        } else {
            self.floor_threads
                .iter()
                .flat_map(|&threads| {
                    [false, true].map(|defer_accept| Kind::Floor {
                        threads,
                        defer_accept,
                    })
                })
                .collect()
        };
        if !keep_alive && self.python.is_some() {
            kinds.push(Kind::Python);
            if self.gmpy2 {
                kinds.push(Kind::PythonGmpy2);
            }
        }
        kinds.push(Kind::PrimeServer);
        kinds
    }
}

/// How to start a server beyond its kind.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Answer every line of a connection (`--keep-alive`).
    pub keep_alive: bool,
    /// prime-server only: serve `/metrics` on a free port
    /// (`--admin-listen 127.0.0.1:0`), found in [`Server::admin`].
    pub admin: bool,
    /// prime-server only: more flags, after the bench's own.
    pub args: Vec<OsString>,
    /// prime-server only: the audit log [default: `prime_server.log` in
    /// the scratch directory]. Servers running at once need their own.
    pub audit_log: Option<PathBuf>,
    /// Run the server under this program with these arguments, the
    /// server's own command line after them (`perf stat ... --`). The
    /// server is then the wrapper's child: what is read from /proc is the
    /// server's, and stopping it ends the wrapper too.
    pub wrap: Option<(PathBuf, Vec<OsString>)>,
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its admin endpoint, when started with [`Launch::admin`].
    pub admin: Option<SocketAddr>,
    /// The process started: the server, or the [`Launch::wrap`] program
    /// it runs under.
    child: Child,
    /// The server's process id (the wrapper's child when wrapped).
    pid: u32,
}

impl Server {
    /// Starts `kind` on 127.0.0.1 with a free port.
    ///
    /// # Errors
    ///
    /// It could not be started or did not report its address in time.
    pub fn start(kind: Kind, tools: &Toolbox, keep_alive: bool) -> anyhow::Result<Server> {
        Server::launch(
            kind,
            tools,
            &Launch {
                keep_alive,
                ..Launch::default()
            },
        )
    }

    /// Starts `kind` on 127.0.0.1 with a free port, as `launch` says.
    ///
    /// # Errors
    ///
    /// It could not be started or did not report its address in time.
    pub fn launch(kind: Kind, tools: &Toolbox, launch: &Launch) -> anyhow::Result<Server> {
        let keep_alive = launch.keep_alive;
        let mut command = match kind {
            Kind::Floor {
                threads,
                defer_accept,
            } => {
                let mut c = Command::new(&tools.bench);
                c.args(["floor", "--listen", "127.0.0.1:0", "--threads"])
                    .arg(threads.to_string());
                if defer_accept {
                    c.arg("--defer-accept");
                }
                if keep_alive {
                    c.arg("--keep-alive");
                }
                c
            }
            Kind::Python | Kind::PythonGmpy2 => {
                let python = tools.python.as_ref().context("python3 is not available")?;
                let mut c = Command::new(python);
                c.arg(&tools.python_script)
                    .args(["--listen", "127.0.0.1:0"]);
                if kind == Kind::PythonGmpy2 {
                    c.arg("--gmpy2");
                }
                c
            }
            Kind::PrimeServer => {
                let mut c = Command::new(&tools.prime_server);
                c.args([
                    "--listen",
                    "127.0.0.1:0",
                    "--log-format",
                    "json",
                    "--workers",
                ])
                .arg(tools.workers.to_string())
                .arg("--audit-log")
                .arg(
                    launch
                        .audit_log
                        .clone()
                        .unwrap_or_else(|| tools.scratch.join("prime_server.log")),
                );
                if keep_alive {
                    c.arg("--keep-alive");
                }
                if launch.admin {
                    c.args(["--admin-listen", "127.0.0.1:0"]);
                }
                c.args(&launch.args);
                c
            }
        };
        if let Some((program, args)) = &launch.wrap {
            let mut wrapped = Command::new(program);
            wrapped
                .args(args)
                .arg(command.get_program())
                .args(command.get_args());
            command = wrapped;
        }
        // prime-server reports on stderr (its log), the others on stdout.
        let on_stderr = kind == Kind::PrimeServer;
        command.stdin(Stdio::null());
        if on_stderr {
            command.stdout(Stdio::null()).stderr(Stdio::piped());
        } else {
            command.stdout(Stdio::piped()).stderr(Stdio::inherit());
        }
        let mut child = command.spawn()?;
        let pipe: Box<dyn Read + Send> = if on_stderr {
            Box::new(child.stderr.take().context("no stderr")?)
        } else {
            Box::new(child.stdout.take().context("no stdout")?)
        };
        let (tx, rx) = mpsc::channel();
        // Keep reading the pipe for the server's whole life, so it never
        // blocks on a full pipe; send on every address it announces (the
        // admin endpoint's comes before the service's).
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(announced) = announced(&line) {
                    // The receiver is gone once the server is up: fine.
                    let _ = tx.send(announced);
                }
            }
        });
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        let mut admin = None;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(Announced::Admin(addr)) => admin = Some(addr),
                Ok(Announced::Service(addr)) if admin.is_some() || !launch.admin => {
                    let pid = if launch.wrap.is_some() {
                        // The server announced itself, so it exists.
                        only_child(child.id())
                    } else {
                        Some(child.id())
                    };
                    let Some(pid) = pid else {
                        let _ = child.kill();
                        let _ = child.wait();
                        bail!("cannot find {} under its wrapper", kind.name());
                    };
                    return Ok(Server {
                        addr,
                        admin,
                        child,
                        pid,
                    });
                }
                Ok(Announced::Service(_)) | Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!(
                        "{} did not report its address{}",
                        kind.name(),
                        if launch.admin { "es" } else { "" }
                    )
                }
            }
        }
    }

    /// The value of the sample `name` on the server's `/metrics`.
    ///
    /// # Errors
    ///
    /// No admin endpoint, it did not answer, or the sample is missing.
    pub fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let admin = self
            .admin
            .context("the server has no admin endpoint (Launch::admin)")?;
        let text = crate::scrape::get(admin, "/metrics")?;
        crate::scrape::sample(&text, name)
            .with_context(|| format!("no sample {name} on http://{admin}/metrics"))
    }

    /// CPU time the server has used so far (user + system, every thread,
    /// exited ones included). Read from the kernel's CPU clock for the
    /// process, which is exact to the nanosecond; `/proc/PID/stat` holds
    /// the same sum in clock ticks (10 ms), too coarse for short rounds,
    /// and is the fallback.
    pub fn cpu(&self) -> Option<Duration> {
        cpu_of(self.pid)
    }

    /// Context switches so far, voluntary and not, summed over the
    /// server's live threads (`/proc/PID/task/*/status`). Threads that
    /// have exited are not counted: none of the servers here ends a thread
    /// while it serves.
    pub fn context_switches(&self) -> Option<u64> {
        context_switches_of(self.pid)
    }

    /// The server's process id (not its wrapper's), for /proc.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Peak resident memory so far, in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        status_kib(self.pid, "VmHWM:")
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        status_kib(self.pid, "VmRSS:")
    }
}

/// A `... kB` field of `/proc/PID/status`.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.pid != self.child.id() {
            // The server first: its wrapper then finishes by itself (perf
            // writes its counts when its child exits).
            if let Ok(pid) = libc::pid_t::try_from(self.pid) {
                // SAFETY: kill has no memory preconditions; the pid is our
                // wrapper's child, which only we stop.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let until = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < until {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The one child of process `pid`, from
/// `/proc/PID/task/PID/children`.
fn only_child(pid: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    let mut ids = children.split_whitespace();
    let child = ids.next()?.parse().ok()?;
    ids.next().is_none().then_some(child)
}

/// CPU time process `pid` has used so far (every thread, exited ones
/// included): its CPU clock, or `/proc/PID/stat` in clock ticks.
pub fn cpu_of(pid: u32) -> Option<Duration> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    process_cpu_clock(pid).or_else(|| proc_stat_cpu(pid))
}

/// Context switches of process `pid` so far, voluntary and not, summed
/// over its live threads (`/proc/PID/task/*/status`).
pub fn context_switches_of(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        // A thread may exit between the listing and the read.
        if let Ok(status) = std::fs::read_to_string(task.path().join("status")) {
            total += context_switches(&status)?;
        }
    }
    Some(total)
}

/// The CPU clock of process `pid` (`clock_getcpuclockid`), which the
/// kernel keeps as the sum of every thread's run time, living or exited.
fn process_cpu_clock(pid: libc::pid_t) -> Option<Duration> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: the pointer is to a live clockid_t; the call only writes it.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the pointer is to a live timespec; the call only writes it.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(now.tv_sec).ok()?,
        u32::try_from(now.tv_nsec).ok()?,
    ))
}

/// utime + stime of process `pid` from `/proc/PID/stat`, in clock ticks.
fn proc_stat_cpu(pid: libc::pid_t) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" that ends the command name; utime and stime
    // are fields 14 and 15 of the whole line.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()?
        .max(1);
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks as f64,
    ))
}

/// `voluntary_ctxt_switches` plus `nonvoluntary_ctxt_switches` from a
/// `/proc/.../status` text, or `None` if either is missing.
fn context_switches(status: &str) -> Option<u64> {
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].trim().parse().ok()
    };
    Some(field("voluntary_ctxt_switches:")? + field("nonvoluntary_ctxt_switches:")?)
}

/// An address a server announces on its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Announced {
    /// Where it serves the protocol.
    Service(SocketAddr),
    /// Where its admin endpoint (`/metrics`) listens.
    Admin(SocketAddr),
}

/// The address in a "listening" line: `listening 127.0.0.1:1234` (floor,
/// Python), or prime-server's JSON records `{"msg":"listening",...,
/// "address":"127.0.0.1:1234"}` and `{"msg":"admin endpoint listening",
/// ...}`, told apart by their `msg` (the admin record comes first and
/// also says "listening").
fn announced(line: &str) -> Option<Announced> {
    if line.trim_start().starts_with('{') {
        let record: serde_json::Value = serde_json::from_str(line).ok()?;
        let addr = record.get("address")?.as_str()?.parse().ok()?;
        return match record.get("msg")?.as_str()? {
            "listening" => Some(Announced::Service(addr)),
            "admin endpoint listening" => Some(Announced::Admin(addr)),
            _ => None,
        };
    }
    let mut words = line.split_whitespace();
    if words.next()? != "listening" {
        return None;
    }
    words.last()?.parse().ok().map(Announced::Service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_found_in_both_formats() {
        let addr = |text: &str| -> SocketAddr { text.parse().unwrap() };
        assert_eq!(
            announced("listening 127.0.0.1:80"),
            Some(Announced::Service(addr("127.0.0.1:80")))
        );
        let json = r#"{"msg":"listening","level":"INFO","address":"127.0.0.1:9","workers":4}"#;
        assert_eq!(
            announced(json),
            Some(Announced::Service(addr("127.0.0.1:9")))
        );
        // The admin endpoint's record also says "listening", and comes first.
        let admin = r#"{"msg":"admin endpoint listening","level":"INFO","address":"127.0.0.1:7"}"#;
        assert_eq!(
            announced(admin),
            Some(Announced::Admin(addr("127.0.0.1:7")))
        );
        let other = r#"{"msg":"open-files limit","level":"INFO","address":"127.0.0.1:7"}"#;
        assert_eq!(announced(other), None);
        assert_eq!(announced("starting"), None);
        assert_eq!(announced("not listening 127.0.0.1:80"), None);
    }

    #[test]
    fn context_switches_add_both_kinds() {
        let status = "Name:\tprime-server\nThreads:\t3\nvoluntary_ctxt_switches:\t1200\nnonvoluntary_ctxt_switches:\t34\n";
        assert_eq!(context_switches(status), Some(1234));
        assert_eq!(context_switches("voluntary_ctxt_switches:\t5\n"), None);
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(context_switches(&own).is_some(), "{own}");
    }

    #[test]
    fn both_cpu_readings_agree_on_a_busy_process() {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        // Burn CPU until the clock says 300 ms (bounded, on a busy machine).
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while process_cpu_clock(pid).unwrap() < Duration::from_millis(300)
            && started.elapsed() < Duration::from_secs(30)
        {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let clock = process_cpu_clock(pid).unwrap();
        let stat = proc_stat_cpu(pid).unwrap();
        assert!(clock >= Duration::from_millis(300), "{clock:?}");
        let gap = clock.abs_diff(stat);
        assert!(
            gap < Duration::from_millis(60),
            "clock {clock:?}, stat {stat:?}"
        );
    }

    #[test]
    fn floor_thread_counts_are_distinct_and_sorted() {
        assert_eq!(floor_threads(2, 16), vec![2, 16]);
        assert_eq!(floor_threads(4, 32), vec![2, 4, 32]);
        assert_eq!(floor_threads(1, 16), vec![1, 2, 16]);
        assert_eq!(floor_threads(2, 2), vec![2]);
    }
}
