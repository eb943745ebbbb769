//! The machine side of the package tests: processes, root, dpkg, users and
//! directories, the built package, and the service run as systemd would.

use super::*;

// ---------------------------------------------------------------------------
// Processes

/// Runs `command`, returning its output; panics (with the output) if it
/// cannot start.
pub(crate) fn output(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"))
}

/// Runs `command` and panics with its output unless it succeeds.
pub(crate) fn run_ok(command: &mut Command) -> String {
    let out = output(command);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{text}",
        out.status
    );
    text
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------
// The package `make deb` built

/// The architecture dpkg builds for (cargo-deb names the .deb after it).
pub(crate) fn dpkg_architecture() -> Option<String> {
    let out = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The newest modification time among the files the package is built from.
pub(crate) fn newest_input() -> (SystemTime, PathBuf) {
    pub(crate) fn visit(path: &Path, newest: &mut (SystemTime, PathBuf)) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).expect("read dir").flatten() {
                visit(&entry.path(), newest);
            }
        } else if let Ok(modified) = meta.modified() {
            if modified > newest.0 {
                *newest = (modified, path.to_owned());
            }
        }
    }
    let mut newest = (SystemTime::UNIX_EPOCH, PathBuf::new());
    for input in [
        "src",
        "debian",
        "deploy",
        "docs/packaging.md",
        "Cargo.toml",
        "Cargo.lock",
        "scripts/man-pages.sh",
    ] {
        visit(&Path::new(ROOT).join(input), &mut newest);
    }
    newest
}

/// The .deb `make deb` built for this version, or why it cannot be used.
pub(crate) fn built_package() -> Result<PathBuf, String> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(ROOT).join("target"), PathBuf::from);
    let arch = dpkg_architecture().ok_or("dpkg is not installed")?;
    let deb = target.join(format!("debian/{PACKAGE}_{VERSION}-1_{arch}.deb"));
    let built = std::fs::metadata(&deb)
        .and_then(|m| m.modified())
        .map_err(|_| format!("{} is missing: run `make deb` first", deb.display()))?;
    let (newest, input) = newest_input();
    if newest > built {
        return Err(format!(
            "{} is older than {}: run `make deb` again",
            deb.display(),
            input.display()
        ));
    }
    Ok(deb)
}

// ---------------------------------------------------------------------------
// Tests that read the sources (no root, no package)

pub(crate) fn source_unit() -> Unit {
    Unit::read(&Path::new(ROOT).join("debian/prime-server.service"))
}

pub(crate) fn shipped_unit() -> Unit {
    Unit::read(&Path::new(ROOT).join("deploy/prime-server.service"))
}

/// What the install test changed, undone on drop (also when it fails).
#[derive(Default)]
pub(crate) struct Cleanup {
    /// The package may be installed: purge it.
    pub(crate) installed: bool,
    /// Directories that did not exist before the test.
    pub(crate) directories: Vec<PathBuf>,
    /// The system user (and its group) did not exist before the test.
    pub(crate) user: Option<String>,
}

impl Cleanup {
    pub(crate) fn undo(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if std::mem::take(&mut self.installed) {
            let out = output(Command::new("dpkg").args(["--purge", PACKAGE]));
            if !out.status.success() {
                problems.push(format!(
                    "dpkg --purge: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        for dir in self.directories.drain(..) {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    problems.push(format!("remove {}: {e}", dir.display()));
                }
            }
        }
        if let Some(user) = self.user.take() {
            // userdel also removes the user's own group (USERGROUPS_ENAB).
            let out = output(Command::new("userdel").arg(&user));
            if !out.status.success() {
                problems.push(format!(
                    "userdel {user}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            if output(Command::new("getent").args(["group", &user]))
                .status
                .success()
            {
                let _ = output(Command::new("groupdel").arg(&user));
            }
        }
        problems
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for problem in self.undo() {
            eprintln!("cleanup: {problem}");
        }
    }
}

/// `getent passwd NAME`: (uid, gid, home, shell), if the user exists.
pub(crate) fn passwd(name: &str) -> Option<(u32, u32, String, String)> {
    let out = output(Command::new("getent").args(["passwd", name]));
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let f: Vec<&str> = line.split(':').collect();
    assert_eq!(f.len(), 7, "getent passwd {name}: {line}");
    Some((
        f[2].parse().ok()?,
        f[3].parse().ok()?,
        f[5].to_owned(),
        f[6].to_owned(),
    ))
}

pub(crate) fn group_id(name: &str) -> Option<u32> {
    let out = output(Command::new("getent").args(["group", name]));
    out.status
        .success()
        .then(|| {
            String::from_utf8_lossy(&out.stdout)
                .split(':')
                .nth(2)?
                .trim()
                .parse()
                .ok()
        })
        .flatten()
}

pub(crate) fn package_status() -> String {
    let out = output(Command::new("dpkg-query").args(["-W", "-f=${Status}", PACKAGE]));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The directories a unit has systemd create: (path, mode) per name of
/// RuntimeDirectory=, StateDirectory=, CacheDirectory=, LogsDirectory= and
/// ConfigurationDirectory=, with their *Mode= (default 0755).
pub(crate) fn unit_directories(unit: &Unit) -> Vec<(PathBuf, u32)> {
    let mut dirs = Vec::new();
    for (kind, base) in [
        ("RuntimeDirectory", "/run"),
        ("StateDirectory", "/var/lib"),
        ("CacheDirectory", "/var/cache"),
        ("LogsDirectory", "/var/log"),
        ("ConfigurationDirectory", "/etc"),
    ] {
        let mode = unit.service(&format!("{kind}Mode")).map_or(0o755, |m| {
            u32::from_str_radix(m, 8).unwrap_or_else(|_| panic!("{kind}Mode={m} is not octal"))
        });
        for value in unit.all("Service", kind) {
            for name in value.split_whitespace() {
                dirs.push((Path::new(base).join(name), mode));
            }
        }
    }
    dirs
}

/// The service as systemd would start it, its notifications and its
/// terminal log.
pub(crate) struct Service {
    pub(crate) child: Child,
    pub(crate) notify: UnixDatagram,
    pub(crate) notified: Vec<String>,
    pub(crate) stderr: mpsc::Receiver<String>,
    pub(crate) log: Vec<String>,
}

impl Service {
    /// Waits (bounded) for a `sd_notify` message containing `what`.
    pub(crate) fn expect_notified(&mut self, what: &str) {
        let until = Instant::now() + IO_TIMEOUT;
        let mut buf = [0u8; 4096];
        while !self.notified.iter().any(|m| m.lines().any(|l| l == what)) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let log = self.log_text();
                panic!(
                    "no {what} from the service within {IO_TIMEOUT:?}; got {:?}; log:\n{log}",
                    self.notified
                );
            }
            self.notify
                .set_read_timeout(Some(left.min(Duration::from_millis(200))))
                .expect("timeout");
            match self.notify.recv(&mut buf) {
                Ok(n) => self
                    .notified
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if let Some(status) = self.child.try_wait().expect("try_wait") {
                        panic!(
                            "the service exited ({status}) before {what}; log:\n{}",
                            self.log_text()
                        );
                    }
                }
                Err(e) => panic!("notify socket: {e}"),
            }
        }
    }

    /// Waits (bounded) until the terminal log has a line containing `needle`.
    pub(crate) fn expect_log(&mut self, needle: &str) {
        let until = Instant::now() + IO_TIMEOUT;
        while !self.log.iter().any(|l| l.contains(needle)) {
            let left = until.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.log.push(line),
                Err(_) => panic!(
                    "no {needle:?} in the service's log within {IO_TIMEOUT:?}:\n{}",
                    self.log_text()
                ),
            }
        }
    }

    pub(crate) fn log_text(&mut self) -> String {
        while let Ok(line) = self.stderr.try_recv() {
            self.log.push(line);
        }
        self.log.join("\n")
    }

    /// Sends `signal` (the unit's KillSignal) and returns the exit code,
    /// failing if the exit takes longer than `within`.
    pub(crate) fn stop(mut self, signal: i32, within: Duration) -> (Option<i32>, Vec<String>) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        let sent = Instant::now();
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill {pid}");
        self.expect_notified("STOPPING=1");
        let until = Instant::now() + IO_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!(
                    "the service did not exit within {IO_TIMEOUT:?} of signal {signal}:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let took = sent.elapsed();
        let log = self.log_text();
        assert!(
            took <= within,
            "the service took {took:?} to exit after signal {signal}, more than {within:?}:\n{log}"
        );
        (status.code(), log.lines().map(str::to_owned).collect())
    }
}

/// Starts `argv` the way systemd starts the unit's ExecStart: environment
/// `env` only, in `/`, as `uid`/`gid` with no supplementary groups, the
/// unit's UMask, stdin from /dev/null, and NOTIFY_SOCKET set.
pub(crate) fn start_service(
    argv: &[String],
    env: &BTreeMap<String, String>,
    uid: u32,
    gid: u32,
    umask: u32,
    notify_dir: &Path,
) -> Service {
    let notify_path = notify_dir.join("notify");
    let _ = std::fs::remove_file(&notify_path);
    let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
    // The service's user must be able to send to it.
    std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o777))
        .expect("chmod notify socket");
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .env_clear()
        .envs(env)
        .env("NOTIFY_SOCKET", &notify_path)
        .current_dir("/")
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: umask(2) is async-signal-safe and cannot fail.
    unsafe {
        command.pre_exec(move || {
            libc::umask(umask);
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("start {argv:?}: {e}"));
    let pipe = child.stderr.take().expect("stderr piped");
    let (send, stderr) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    Service {
        child,
        notify,
        notified: Vec::new(),
        stderr,
        log: Vec::new(),
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Only a failing test leaves it running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound, then released).
pub(crate) fn free_addr() -> SocketAddr {
    unused_addr()
}
