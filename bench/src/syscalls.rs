//! System calls by kind, counted by `perf stat` on the kernel's syscall
//! tracepoints (`raw_syscalls:sys_enter` for the total, one
//! `syscalls:sys_enter_NAME` per kind).
//!
//! The server runs as `perf stat`'s child (`perf stat -x, -o FILE
//! --control fifo:CTL,ACK -D -1 -e ... -- SERVER ...`), with counting off
//! until the bench writes `enable` to the control FIFO before the measured
//! round and `disable` after it; perf writes its CSV when the server exits.
//! Attaching to a running process (`perf stat -p PID`) would be simpler,
//! but on some kernels (this project's bench machine's among them) it
//! counts nothing, while a child's counters always work.
//!
//! perf is optional (`scripts/ensure-tools.sh --optional perf` installs
//! Debian's `linux-perf`): without it, or when it cannot count tracepoints
//! (not root and `perf_event_paranoid` above 1, no tracefs), [`Perf::find`]
//! says why and the bench goes on without these columns.

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The table's columns: a name, and the system calls counted under it
/// (the first that exists on this kernel is the name's own; e.g. arm64 has
/// only `epoll_pwait`).
pub const COLUMNS: [(&str, &[&str]); 8] = [
    ("accept4", &["accept4", "accept"]),
    ("recvfrom", &["recvfrom"]),
    ("write", &["write"]),
    ("sendto", &["sendto"]),
    ("close", &["close"]),
    ("futex", &["futex"]),
    ("epoll_wait", &["epoll_wait", "epoll_pwait", "epoll_pwait2"]),
    ("epoll_ctl", &["epoll_ctl"]),
];

/// Counted as well, so that what falls outside [`COLUMNS`] can be named.
const OTHERS: [&str; 17] = [
    "read",
    "recvmsg",
    "sendmsg",
    "writev",
    "ioctl",
    "fcntl",
    "setsockopt",
    "getsockopt",
    "getsockname",
    "getpeername",
    "shutdown",
    "sched_yield",
    "poll",
    "fdatasync",
    "madvise",
    "mmap",
    "munmap",
];

/// The tracepoint that fires on every system call.
const TOTAL: &str = "raw_syscalls:sys_enter";
/// How long perf may take to acknowledge a command.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// A `perf` that can count system calls here.
#[derive(Debug, Clone)]
pub struct Perf {
    /// The binary.
    binary: PathBuf,
    /// The syscalls (names without `sys_enter_`) this kernel has
    /// tracepoints for, among those the bench counts.
    kinds: Vec<String>,
}

impl Perf {
    /// Finds `perf` and checks that it counts the system calls of a child
    /// (`perf stat -e raw_syscalls:sys_enter -- true`).
    ///
    /// # Errors
    ///
    /// Why it cannot, in a sentence for the report.
    pub fn find() -> Result<Perf, String> {
        let binary = PathBuf::from("perf");
        let scratch = std::env::temp_dir().join(format!("prime-bench-perf-{}", std::process::id()));
        let out = Command::new(&binary)
            .args(["stat", "-x,", "-o"])
            .arg(&scratch)
            .args(["-e", TOTAL, "--", "true"])
            .output();
        let counted = std::fs::read_to_string(&scratch).ok();
        let _ = std::fs::remove_file(&scratch);
        let out = out.map_err(|e| {
            format!("perf cannot be run ({e}): `scripts/ensure-tools.sh --optional perf` installs it (Debian's linux-perf)")
        })?;
        let total = counted
            .as_deref()
            .map(parse_csv)
            .and_then(|c| c.get(TOTAL).copied().flatten());
        if !out.status.success() || total.is_none_or(|n| n == 0) {
            let why = String::from_utf8_lossy(&out.stderr);
            let why = why
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no count");
            return Err(format!(
                "perf cannot count system calls here: {}",
                why.trim()
            ));
        }
        let listed = Command::new(&binary)
            .args(["list", "--raw-dump", "tracepoint"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let exists = |name: &str| {
            listed
                .split_whitespace()
                .any(|t| t.strip_prefix("syscalls:sys_enter_") == Some(name))
        };
        let kinds = COLUMNS
            .iter()
            .flat_map(|(_, names)| names.iter())
            .chain(OTHERS.iter())
            .filter(|name| exists(name))
            .map(|name| (*name).to_owned())
            .collect();
        Ok(Perf { binary, kinds })
    }

    /// A counter whose files (control FIFOs, CSV) live in `dir`, which
    /// must exist. Start the server under [`Counter::wrapper`].
    ///
    /// # Errors
    ///
    /// The FIFOs cannot be made or opened.
    pub fn counter(&self, dir: &Path) -> anyhow::Result<Counter> {
        let control = dir.join("perf-control");
        let ack = dir.join("perf-ack");
        for fifo in [&control, &ack] {
            let _ = std::fs::remove_file(fifo);
            let c_path = std::ffi::CString::new(fifo.as_os_str().as_bytes())?;
            // SAFETY: a NUL-terminated path; mkfifo only reads it.
            if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("cannot make the FIFO {}", fifo.display()));
            }
        }
        // Read-write: opening a FIFO that way does not wait for the other
        // end, and perf's own opens then find one.
        let open = |path: &Path| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .with_context(|| format!("cannot open {}", path.display()))
        };
        let mut events = vec![TOTAL.to_owned()];
        events.extend(self.kinds.iter().map(|k| format!("syscalls:sys_enter_{k}")));
        let out = dir.join("perf-stat.csv");
        let _ = std::fs::remove_file(&out);
        let mut control_spec = OsString::from("fifo:");
        control_spec.push(&control);
        control_spec.push(",");
        control_spec.push(&ack);
        let args = vec![
            OsString::from("stat"),
            OsString::from("-x,"),
            OsString::from("-o"),
            out.clone().into_os_string(),
            OsString::from("--control"),
            control_spec,
            OsString::from("-D"),
            OsString::from("-1"),
            OsString::from("-e"),
            OsString::from(events.join(",")),
            OsString::from("--"),
        ];
        Ok(Counter {
            wrapper: (self.binary.clone(), args),
            control: open(&control)?,
            ack: open(&ack)?,
            out,
        })
    }
}

/// One server's system calls, counted over the rounds it was enabled for.
#[derive(Debug)]
pub struct Counter {
    /// The program and arguments to put before the server's command line.
    wrapper: (PathBuf, Vec<OsString>),
    /// perf's control FIFO.
    control: File,
    /// Where perf acknowledges a command.
    ack: File,
    /// perf's CSV, written when the server exits.
    out: PathBuf,
}

impl Counter {
    /// The program and the arguments to start the server under.
    pub fn wrapper(&self) -> (PathBuf, Vec<OsString>) {
        self.wrapper.clone()
    }

    /// Starts counting (before the measured round).
    ///
    /// # Errors
    ///
    /// perf did not acknowledge.
    pub fn enable(&mut self) -> anyhow::Result<()> {
        self.command("enable")
    }

    /// Stops counting (after the measured round).
    ///
    /// # Errors
    ///
    /// perf did not acknowledge.
    pub fn disable(&mut self) -> anyhow::Result<()> {
        self.command("disable")
    }

    fn command(&mut self, what: &str) -> anyhow::Result<()> {
        self.control
            .write_all(format!("{what}\n").as_bytes())
            .with_context(|| format!("cannot tell perf to {what}"))?;
        let mut poll = libc::pollfd {
            fd: self.ack.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout = i32::try_from(ACK_TIMEOUT.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one live pollfd, and its count.
        if unsafe { libc::poll(&mut poll, 1, timeout) } != 1 {
            bail!("perf did not acknowledge `{what}` within {ACK_TIMEOUT:?}");
        }
        let mut reply = [0u8; 64];
        let n = self.ack.read(&mut reply)?;
        if !reply[..n].starts_with(b"ack") {
            bail!(
                "perf answered `{what}` with {:?}",
                String::from_utf8_lossy(&reply[..n])
            );
        }
        Ok(())
    }

    /// What was counted, once the server under perf has exited (perf
    /// writes its CSV then).
    ///
    /// # Errors
    ///
    /// perf wrote nothing readable, or did not count the total.
    pub fn read(&self) -> anyhow::Result<Syscalls> {
        let text = std::fs::read_to_string(&self.out)
            .with_context(|| format!("perf wrote no {}", self.out.display()))?;
        let counts = parse_csv(&text);
        let total = counts
            .get(TOTAL)
            .copied()
            .flatten()
            .with_context(|| format!("perf did not count {TOTAL}: {text}"))?;
        let by_kind = counts
            .into_iter()
            .filter_map(|(event, n)| {
                let kind = event.strip_prefix("syscalls:sys_enter_")?;
                Some((kind.to_owned(), n?))
            })
            .collect();
        Ok(Syscalls { total, by_kind })
    }
}

/// System calls counted, in all and by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Syscalls {
    /// Every system call.
    pub total: u64,
    /// By system call name (those counted).
    pub by_kind: BTreeMap<String, u64>,
}

impl Syscalls {
    /// Adds `more` (another round's).
    pub fn add(&mut self, more: &Syscalls) {
        self.total += more.total;
        for (kind, n) in &more.by_kind {
            *self.by_kind.entry(kind.clone()).or_default() += n;
        }
    }

    /// The count under one of [`COLUMNS`]'s names.
    pub fn column(&self, name: &str) -> u64 {
        COLUMNS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, kinds)| {
                kinds.iter().filter_map(|k| self.by_kind.get(*k)).sum()
            })
    }

    /// Every system call outside [`COLUMNS`], and those of them that were
    /// counted by name, largest first.
    pub fn other(&self) -> (u64, Vec<(String, u64)>) {
        let in_columns: u64 = COLUMNS.iter().map(|(name, _)| self.column(name)).sum();
        let mut named: Vec<(String, u64)> = self
            .by_kind
            .iter()
            .filter(|(kind, n)| {
                **n > 0
                    && !COLUMNS
                        .iter()
                        .any(|(_, kinds)| kinds.contains(&kind.as_str()))
            })
            .map(|(kind, n)| (kind.clone(), *n))
            .collect();
        named.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        (self.total.saturating_sub(in_columns), named)
    }
}

/// perf's `-x,` output: event name to count, `None` when perf says
/// `<not counted>` or `<not supported>`. Comments and blank lines are
/// skipped.
fn parse_csv(text: &str) -> BTreeMap<String, Option<u64>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let event = fields.get(2)?.trim();
            if event.is_empty() {
                return None;
            }
            Some((event.to_owned(), fields[0].trim().parse().ok()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_csv_is_read() {
        let text = "# started on Fri Dec  4 20:07:24 2026\n\n123568,,raw_syscalls:sys_enter,19661031,100.00,,\n7,,syscalls:sys_enter_write,19661031,100.00,,\n<not counted>,,syscalls:sys_enter_futex,0,100.00,,\n";
        let counts = parse_csv(text);
        assert_eq!(counts[TOTAL], Some(123_568));
        assert_eq!(counts["syscalls:sys_enter_write"], Some(7));
        assert_eq!(counts["syscalls:sys_enter_futex"], None);
        assert_eq!(counts.len(), 3);
    }

    #[test]
    fn columns_sum_their_aliases_and_the_rest_is_other() {
        let mut s = Syscalls {
            total: 100,
            by_kind: [
                ("accept4", 10),
                ("epoll_wait", 3),
                ("epoll_pwait", 2),
                ("ioctl", 20),
                ("fcntl", 0),
                ("write", 30),
            ]
            .into_iter()
            .map(|(k, n)| (k.to_owned(), n))
            .collect(),
        };
        assert_eq!(s.column("epoll_wait"), 5);
        assert_eq!(s.column("futex"), 0);
        assert_eq!(s.other(), (55, vec![("ioctl".to_owned(), 20)]));
        let again = s.clone();
        s.add(&again);
        assert_eq!((s.total, s.column("accept4")), (200, 20));
    }
}
