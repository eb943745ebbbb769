//! A server's threads, one by one, from `/proc`: each thread's role (told
//! by its name), its time on CPU (`/proc/PID/task/TID/schedstat`, first
//! field, nanoseconds) and its context switches (`/proc/PID/task/TID/status`,
//! voluntary and not). Two samples around a measured round give each
//! role's share of the server's work.

use std::collections::HashMap;
use std::time::Duration;

/// What a prime-server thread does, from its name (`/proc/.../comm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The main thread (named after the binary): the blocking accept loop.
    AcceptLoop,
    /// `waiting-room`: the one mio thread holding connections without a line.
    WaitingRoom,
    /// `worker`: the threadpool that answers complete lines.
    Workers,
    /// `heavy-N`: the heavy lane's big-number tests.
    HeavyLane,
    /// `audit-sync`: the background `fdatasync` of `--audit-sync interval:DUR`.
    AuditSync,
    /// `audit-seal`: the sealing thread.
    AuditSeal,
    /// `log-writer`: the terminal log's writer.
    LogWriter,
    /// `admin` and `admin-client`: the admin endpoint.
    Admin,
    /// Any other thread (signals, watchdog, stop-join, ...).
    Other,
}

impl Role {
    /// Every role, in table order.
    pub const ALL: [Role; 9] = [
        Role::AcceptLoop,
        Role::WaitingRoom,
        Role::Workers,
        Role::HeavyLane,
        Role::AuditSync,
        Role::AuditSeal,
        Role::LogWriter,
        Role::Admin,
        Role::Other,
    ];

    /// The role of thread `tid` named `comm` in process `pid`: the main
    /// thread (the one whose id is the process's) is the accept loop.
    pub fn of(pid: u32, tid: u32, comm: &str) -> Role {
        if tid == pid {
            return Role::AcceptLoop;
        }
        match comm {
            "waiting-room" => Role::WaitingRoom,
            "worker" => Role::Workers,
            "audit-sync" => Role::AuditSync,
            "audit-seal" => Role::AuditSeal,
            "log-writer" => Role::LogWriter,
            "admin" | "admin-client" => Role::Admin,
            heavy if heavy.strip_prefix("heavy-").is_some_and(is_number) => Role::HeavyLane,
            _ => Role::Other,
        }
    }

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Role::AcceptLoop => "accept loop (main thread)",
            Role::WaitingRoom => "waiting room (`waiting-room`)",
            Role::Workers => "workers (`worker`)",
            Role::HeavyLane => "heavy lane (`heavy-N`)",
            Role::AuditSync => "audit sync (`audit-sync`)",
            Role::AuditSeal => "audit seal (`audit-seal`)",
            Role::LogWriter => "terminal log (`log-writer`)",
            Role::Admin => "admin endpoint (`admin`)",
            Role::Other => "other threads",
        }
    }

    /// Whether the role is one thread whatever the core count, so its CPU
    /// per request caps the whole server's rate.
    pub fn single_threaded(self) -> bool {
        matches!(self, Role::AcceptLoop | Role::WaitingRoom)
    }
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// One thread at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSample {
    /// The thread's id.
    pub tid: u32,
    /// Its role.
    pub role: Role,
    /// Time on CPU so far.
    pub cpu: Duration,
    /// Context switches so far, voluntary and not.
    pub context_switches: u64,
}

/// Every live thread of process `pid` now; `None` when its task list
/// cannot be read (the process is gone, or this is not Linux). A thread
/// that exits between the listing and the read is left out.
pub fn sample(pid: u32) -> Option<Vec<ThreadSample>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let path = task.path();
        let read = |file: &str| std::fs::read_to_string(path.join(file)).ok();
        let (Some(comm), Some(schedstat), Some(status)) =
            (read("comm"), read("schedstat"), read("status"))
        else {
            continue;
        };
        let (Some(cpu), Some(context_switches)) = (on_cpu(&schedstat), context_switches(&status))
        else {
            continue;
        };
        out.push(ThreadSample {
            tid,
            role: Role::of(pid, tid, comm.trim_end()),
            cpu,
            context_switches,
        });
    }
    Some(out)
}

/// The first field of a `schedstat` text: nanoseconds on CPU.
fn on_cpu(schedstat: &str) -> Option<Duration> {
    schedstat
        .split_whitespace()
        .next()?
        .parse()
        .ok()
        .map(Duration::from_nanos)
}

/// `voluntary_ctxt_switches` plus `nonvoluntary_ctxt_switches` of a
/// `status` text.
fn context_switches(status: &str) -> Option<u64> {
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].trim().parse().ok()
    };
    Some(field("voluntary_ctxt_switches:")? + field("nonvoluntary_ctxt_switches:")?)
}

/// What one role's threads did between two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoleUsage {
    /// Threads of the role alive at the second sample.
    pub threads: usize,
    /// Their time on CPU in between.
    pub cpu: Duration,
    /// Their context switches in between.
    pub context_switches: u64,
}

/// Per role, what its threads did from `before` to `after`. A thread
/// born in between counts from zero; one that died in between is lost
/// (prime-server's threads live as long as it does).
pub fn by_role(before: &[ThreadSample], after: &[ThreadSample]) -> HashMap<Role, RoleUsage> {
    let earlier: HashMap<u32, &ThreadSample> = before.iter().map(|t| (t.tid, t)).collect();
    let mut out: HashMap<Role, RoleUsage> = HashMap::new();
    for now in after {
        let (cpu, cs) = earlier
            .get(&now.tid)
            .map_or((Duration::ZERO, 0), |t| (t.cpu, t.context_switches));
        let usage = out.entry(now.role).or_default();
        usage.threads += 1;
        usage.cpu += now.cpu.saturating_sub(cpu);
        usage.context_switches += now.context_switches.saturating_sub(cs);
    }
    out
}

/// Adds `more` into `total`, role by role (for rounds measured apart).
/// The thread count is the largest seen.
pub fn add(total: &mut HashMap<Role, RoleUsage>, more: &HashMap<Role, RoleUsage>) {
    for (role, usage) in more {
        let t = total.entry(*role).or_default();
        t.threads = t.threads.max(usage.threads);
        t.cpu += usage.cpu;
        t.context_switches += usage.context_switches;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_thread_names() {
        assert_eq!(Role::of(10, 10, "prime-server"), Role::AcceptLoop);
        assert_eq!(Role::of(10, 11, "prime-server"), Role::Other);
        assert_eq!(Role::of(10, 12, "waiting-room"), Role::WaitingRoom);
        assert_eq!(Role::of(10, 13, "worker"), Role::Workers);
        assert_eq!(Role::of(10, 14, "heavy-0"), Role::HeavyLane);
        assert_eq!(Role::of(10, 15, "heavy-12"), Role::HeavyLane);
        assert_eq!(Role::of(10, 16, "heavy-x"), Role::Other);
        assert_eq!(Role::of(10, 17, "audit-sync"), Role::AuditSync);
        assert_eq!(Role::of(10, 18, "audit-seal"), Role::AuditSeal);
        assert_eq!(Role::of(10, 19, "log-writer"), Role::LogWriter);
        assert_eq!(Role::of(10, 20, "admin-client"), Role::Admin);
        assert_eq!(Role::of(10, 21, "signals"), Role::Other);
    }

    #[test]
    fn schedstat_and_status_are_read() {
        assert_eq!(
            on_cpu("123456789 2000 7\n"),
            Some(Duration::from_nanos(123_456_789))
        );
        assert_eq!(on_cpu(""), None);
        let status =
            "Name:\tworker\nvoluntary_ctxt_switches:\t40\nnonvoluntary_ctxt_switches:\t2\n";
        assert_eq!(context_switches(status), Some(42));
        let own = sample(std::process::id()).expect("this process's threads");
        let main = own
            .iter()
            .find(|t| t.tid == std::process::id())
            .expect("the main thread");
        assert_eq!(main.role, Role::AcceptLoop);
    }

    #[test]
    fn deltas_are_summed_by_role() {
        let t = |tid, role, ms, cs| ThreadSample {
            tid,
            role,
            cpu: Duration::from_millis(ms),
            context_switches: cs,
        };
        let before = [t(1, Role::AcceptLoop, 100, 5), t(2, Role::Workers, 50, 1)];
        let after = [
            t(1, Role::AcceptLoop, 130, 9),
            t(2, Role::Workers, 60, 2),
            // Born during the round: all its time is the round's.
            t(3, Role::Workers, 7, 3),
        ];
        let roles = by_role(&before, &after);
        assert_eq!(
            roles[&Role::AcceptLoop],
            RoleUsage {
                threads: 1,
                cpu: Duration::from_millis(30),
                context_switches: 4
            }
        );
        assert_eq!(
            roles[&Role::Workers],
            RoleUsage {
                threads: 2,
                cpu: Duration::from_millis(17),
                context_switches: 4
            }
        );
        let mut total = roles.clone();
        add(&mut total, &roles);
        assert_eq!(total[&Role::Workers].cpu, Duration::from_millis(34));
        assert_eq!(total[&Role::Workers].threads, 2);
    }
}
