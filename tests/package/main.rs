//! The Debian package (`make deb`, see docs/packaging.md): its unit keeps
//! the shipped unit's hardening and defaults, its settings file names only
//! options the server has, lintian finds no error, and, as root with dpkg
//! (as on CI), the package installs, its service runs the way systemd would
//! run it (read from the installed unit), and removing and purging it keeps
//! the audit logs. The install test puts the machine back as it found it.
//!
//! The tests that need the package use the one `make deb` built last
//! (`.ci/run` builds it before `make test`); a missing or stale one skips
//! them, which on CI is a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};
use test_support::audit::read_lines;
use test_support::io::{ask, exchange, http_get, unused_addr, wait_until, IO_TIMEOUT};
use test_support::process::ServerProcess;
use test_support::proxy::proxy_v1;
use test_support::tools::{have_tool, skip};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const PACKAGE: &str = "prime-server";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const BINARIES: [&str; 4] = ["prime-server", "prime-client", "echo-server", "prime-audit"];
/// Where the package puts its units (cargo-deb's choice).
const UNIT_DIR: &str = "/usr/lib/systemd/system";

mod system;
mod unit;

use system::*;
use unit::*;

#[test]
fn packaged_unit_keeps_what_the_shipped_unit_sets() {
    let shipped = shipped_unit();
    let packaged = source_unit();
    // Every setting of deploy/prime-server.service is kept as it is, but
    // for the command line (its flags move to the settings file) and the
    // dynamic user (replaced by a system user, below).
    for (section, key, value) in &shipped.entries {
        if section == "Service" && (key == "ExecStart" || key == "DynamicUser") {
            continue;
        }
        assert_eq!(
            packaged.get(section, key),
            Some(value.as_str()),
            "debian/prime-server.service must keep [{section}] {key}={value} of deploy/prime-server.service"
        );
    }
    // DynamicUser=yes implied these; a fixed user must set them itself.
    if shipped.service("DynamicUser") == Some("yes")
        && packaged.service("DynamicUser") != Some("yes")
    {
        let user = packaged.require("User");
        assert_ne!(user, "root", "the service must not run as root");
        for (key, allowed) in [
            ("NoNewPrivileges", &["yes"][..]),
            ("PrivateTmp", &["yes"]),
            ("RemoveIPC", &["yes"]),
            ("RestrictSUIDSGID", &["yes"]),
            ("ProtectSystem", &["strict"]),
            ("ProtectHome", &["yes", "read-only", "tmpfs"]),
        ] {
            let value = packaged.service(key);
            assert!(
                value.is_some_and(|v| allowed.contains(&v)),
                "without DynamicUser=yes the packaged unit must set {key}= to one of {allowed:?}, not {value:?}"
            );
        }
    }
    // The shipped command line's settings are the package's defaults.
    let defaults = read_env_file(&Path::new(ROOT).join("debian/prime-server.default"));
    let flags = flag_values(&exec_argv(shipped.require("ExecStart"), &BTreeMap::new()));
    assert!(!flags.is_empty(), "no flags in the shipped ExecStart");
    for (flag, value) in flags {
        let name = env_name(&flag);
        assert_eq!(
            defaults.get(&name),
            Some(&value),
            "deploy/prime-server.service runs with {flag} {value}: debian/prime-server.default must set {name}={value}"
        );
    }
}

#[test]
fn packaged_unit_is_at_least_as_hardened_as_the_shipped_one() {
    if !have_tool("systemd-analyze") {
        return skip(
            "systemd-analyze is not installed (package systemd; make test installs it as root)",
        );
    }
    // systemd's own exposure checks, on the files (no running systemd).
    let report = |path: &str| -> (BTreeSet<String>, f64) {
        let out = output(
            Command::new("systemd-analyze")
                .args(["security", "--offline=true", "--no-pager"])
                .arg(Path::new(ROOT).join(path)),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let passed = text
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix('✓'))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect();
        let exposure = text
            .lines()
            .find_map(|l| {
                l.split_once("Overall exposure level for ")?
                    .1
                    .split_once(": ")?
                    .1
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| {
                panic!(
                    "no overall exposure for {path}:\n{text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        (passed, exposure)
    };
    let (shipped_passed, shipped) = report("deploy/prime-server.service");
    let (packaged_passed, packaged) = report("debian/prime-server.service");
    let lost: Vec<_> = shipped_passed.difference(&packaged_passed).collect();
    assert!(
        lost.is_empty(),
        "the packaged unit loses these protections of the shipped one: {lost:?}"
    );
    assert!(
        packaged <= shipped,
        "exposure {packaged} of the packaged unit is above the shipped unit's {shipped}"
    );
}

#[test]
fn shipped_socket_pairs_with_the_packaged_service() {
    let root = Path::new(ROOT);
    let packaged = root.join("debian/prime-server.socket");
    assert_eq!(
        std::fs::canonicalize(&packaged).expect("debian/prime-server.socket"),
        std::fs::canonicalize(root.join("deploy/prime-server.socket"))
            .expect("deploy/prime-server.socket"),
        "the package must ship deploy/prime-server.socket itself"
    );
    let socket = Unit::read(&packaged);
    // Same name as the service, so systemd passes the socket to it, and one
    // stream socket, passed whole: prime-server takes the first it is given.
    assert!(
        socket
            .get("Socket", "Service")
            .is_none_or(|s| s == "prime-server.service"),
        "the socket must activate prime-server.service"
    );
    assert_eq!(
        socket.all("Socket", "ListenStream").len(),
        1,
        "one ListenStream"
    );
    assert!(
        socket.get("Socket", "Accept").is_none_or(|a| a == "no"),
        "Accept=no: the server takes the listening socket, not one per connection"
    );
}

#[test]
fn settings_file_names_only_options_the_server_has_and_each_example_works() {
    let help = run_ok(Command::new(env!("CARGO_BIN_EXE_prime-server")).arg("--help"));
    let known: BTreeSet<&str> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split_once('=').map(|(name, _)| name))
        .collect();
    let path = Path::new(ROOT).join("debian/prime-server.default");
    let text = std::fs::read_to_string(&path).expect("read debian/prime-server.default");
    // Every assignment, the commented-out examples too.
    let mut examples = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start_matches('#');
        if let Some((name, value)) = line
            .split_once('=')
            .filter(|(n, _)| n.starts_with("PRIME_SERVER_"))
        {
            assert!(known.contains(name), "{name} in debian/prime-server.default is not an option of prime-server (see --help)");
            examples.insert(name.to_owned(), value.to_owned());
        }
    }
    assert!(examples.len() >= 10, "too few settings found: {examples:?}");
    // And every option of the server is there, so a new flag cannot be
    // left out of the file operators edit.
    for name in &known {
        assert!(
            examples.contains_key(*name),
            "{name} is an option of prime-server, missing from debian/prime-server.default"
        );
    }
    // All of them at once, but the addresses and paths of this machine.
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("seal.state");
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_prime-audit"))
            .args(["keygen", "--state"])
            .arg(&state),
    );
    examples.insert(
        "PRIME_SERVER_AUDIT_SEAL".into(),
        state.display().to_string(),
    );
    examples.insert("PRIME_SERVER_ADMIN_LISTEN".into(), "127.0.0.1:0".into());
    let server = ServerProcess::start_with(&[], |command| {
        command.envs(&examples);
    });
    // With the PROXY protocol on, a header first; keep-alive: half-close.
    let mut request = proxy_v1("192.0.2.7:4000".parse().expect("addr"), server.addr);
    request.extend_from_slice(b"17\n");
    assert_eq!(
        exchange(server.addr, &request),
        b"T\n",
        "{}",
        server.stderr()
    );
    server.expect_stderr("sealing the audit log", IO_TIMEOUT);
}

#[test]
fn changelog_is_for_this_version() {
    let changelog = std::fs::read_to_string(Path::new(ROOT).join("debian/changelog"))
        .expect("debian/changelog");
    let first = changelog.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("{PACKAGE} ({VERSION}-1) ")),
        "debian/changelog must start with the entry for {VERSION}-1 (Cargo.toml's version): {first:?}"
    );
}

// ---------------------------------------------------------------------------
// Tests of the built package

/// lintian tags the package may carry, each for a reason (docs/packaging.md).
const KEPT_WARNINGS: [&str; 1] = [
    // Not an upload to Debian: there is no ITP bug to close.
    "initial-upload-closes-no-bugs",
];

#[test]
fn lintian_reports_no_error() {
    let deb = match built_package() {
        Ok(deb) => deb,
        Err(why) => return skip(&why),
    };
    if !have_tool("lintian") {
        return skip("lintian is not installed (make test installs it as root)");
    }
    let out = output(
        Command::new("lintian")
            .args(["--fail-on", "error"])
            .arg(&deb),
    );
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "lintian {}:\n{report}{}",
        deb.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "lintian failed ({}): {report}",
        out.status
    );
    for line in report
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
    {
        let tag = line
            .split(": ")
            .nth(2)
            .and_then(|t| t.split_whitespace().next())
            .unwrap_or(line);
        assert!(
            line.starts_with("W: ") && KEPT_WARNINGS.contains(&tag),
            "lintian: {line} (fix it, or keep it in KEPT_WARNINGS with its reason)"
        );
    }
}

#[test]
fn installs_runs_as_systemd_would_and_removal_keeps_the_audit_log() {
    if !is_root() {
        return skip("installing the package needs root (CI runs as root)");
    }
    let deb = match built_package() {
        Ok(deb) => deb,
        Err(why) => return skip(&why),
    };
    for tool in [
        "dpkg",
        "dpkg-query",
        "getent",
        "userdel",
        "systemd-analyze",
        "systemd-socket-activate",
    ] {
        if !have_tool(tool) {
            return skip(&format!("{tool} is not installed (systemd-analyze and systemd-socket-activate: package systemd)"));
        }
    }
    // Never touch a real installation or its evidence.
    let status = package_status();
    if !status.is_empty() && status != "unknown ok not-installed" {
        return skip(&format!(
            "{PACKAGE} is already on this machine ({status}); this test installs and purges it"
        ));
    }
    let source = source_unit();
    for (dir, _) in unit_directories(&source) {
        if dir.exists() {
            return skip(&format!(
                "{} exists already; this test would mix its files with it",
                dir.display()
            ));
        }
    }
    let user = source.require("User").to_owned();
    let user_existed = passwd(&user).is_some();
    let mut cleanup = Cleanup::default();
    cleanup.user = (!user_existed).then(|| user.clone());

    // Install.
    cleanup.installed = true;
    run_ok(Command::new("dpkg").arg("-i").arg(&deb));
    assert_eq!(package_status(), "install ok installed");

    // The files.
    let listed = run_ok(Command::new("dpkg").args(["-L", PACKAGE]));
    let mut expected: Vec<String> = BINARIES.iter().map(|b| format!("/usr/bin/{b}")).collect();
    expected.extend(
        BINARIES
            .iter()
            .map(|b| format!("/usr/share/man/man1/{b}.1.gz")),
    );
    expected.extend(
        [
            "/usr/lib/systemd/system/prime-server.service",
            "/usr/lib/systemd/system/prime-server.socket",
            "/etc/default/prime-server",
            "/etc/logrotate.d/prime-server",
            "/usr/share/doc/prime-server/copyright",
            "/usr/share/doc/prime-server/changelog.Debian.gz",
        ]
        .map(String::from),
    );
    for file in &expected {
        assert!(
            listed.lines().any(|l| l == file),
            "the package lacks {file}:\n{listed}"
        );
        assert!(
            Path::new(file).is_file(),
            "{file} is not on disk after dpkg -i"
        );
    }
    for binary in BINARIES {
        let version = run_ok(Command::new(format!("/usr/bin/{binary}")).arg("--version"));
        assert_eq!(version.trim(), format!("{binary} {VERSION}"));
    }
    let conffiles = run_ok(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", PACKAGE]));
    for conffile in ["/etc/default/prime-server", "/etc/logrotate.d/prime-server"] {
        assert!(
            conffiles.contains(conffile),
            "{conffile} is not a conffile: {conffiles}"
        );
    }
    // The installed units are what systemd would load.
    let unit_path = Path::new(UNIT_DIR).join("prime-server.service");
    let socket_path = Path::new(UNIT_DIR).join("prime-server.socket");
    let mut verify = Command::new("systemd-analyze");
    verify.arg("verify");
    if !have_tool("man") {
        verify.arg("--man=no");
    }
    let verified = output(verify.arg(&unit_path).arg(&socket_path));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(
        verified.status.success() && !said.contains("prime-server"),
        "systemd-analyze verify:\n{said}"
    );
    let unit = Unit::read(&unit_path);
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/prime-server.service").exists(),
        "dpkg -i must enable the service"
    );
    assert!(
        !Path::new("/etc/systemd/system/sockets.target.wants/prime-server.socket").exists(),
        "dpkg -i must leave the socket disabled"
    );

    // The user the unit runs as: a system user the package made, which
    // cannot log in.
    assert_ne!(
        unit.service("DynamicUser"),
        Some("yes"),
        "this test runs units with User="
    );
    let (uid, user_gid, home, shell) = passwd(unit.require("User"))
        .unwrap_or_else(|| panic!("dpkg -i did not create the user {}", unit.require("User")));
    let gid = group_id(unit.require("Group")).expect("the unit's Group= exists");
    assert_eq!(
        user_gid, gid,
        "the user's primary group is the unit's Group="
    );
    assert!(
        (1..1000).contains(&uid),
        "{} is not a system user (uid {uid})",
        unit.require("User")
    );
    assert!(
        shell.ends_with("nologin") || shell.ends_with("false"),
        "the user has a login shell: {shell}"
    );

    // The directories, as systemd makes them at start: owned by the user,
    // with the unit's modes.
    for (dir, mode) in unit_directories(&unit) {
        cleanup.directories.push(dir.clone());
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let writable: Vec<PathBuf> = unit_directories(&unit)
        .into_iter()
        .map(|(dir, _)| dir)
        .collect();
    let logs_dir = Path::new("/var/log").join(unit.service("LogsDirectory").unwrap_or_default());

    // The environment systemd gives the service: its own variables, the
    // EnvironmentFile, Environment=, and the addresses this test needs.
    let mut env: BTreeMap<String, String> = [
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("LANG", "C.UTF-8"),
        ("USER", unit.require("User")),
        ("LOGNAME", unit.require("User")),
        ("HOME", &home),
        ("SHELL", &shell),
        ("LOGS_DIRECTORY", logs_dir.to_str().expect("path")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if unit.service("LogsDirectory").is_none() {
        env.remove("LOGS_DIRECTORY");
    }
    if let Some(state) = unit.service("StateDirectory") {
        env.insert("STATE_DIRECTORY".into(), format!("/var/lib/{state}"));
    }
    if let Some(watchdog) = unit.service("WatchdogSec") {
        let seconds: u64 = watchdog.parse().expect("WatchdogSec in seconds");
        env.insert("WATCHDOG_USEC".into(), (seconds * 1_000_000).to_string());
    }
    for file in unit.all("Service", "EnvironmentFile") {
        let (optional, file) = file.strip_prefix('-').map_or((false, file), |f| (true, f));
        if optional && !Path::new(file).exists() {
            continue;
        }
        env.extend(read_env_file(Path::new(file)));
    }
    for assignment in unit.all("Service", "Environment") {
        for pair in assignment.split_whitespace() {
            let (k, v) = pair
                .trim_matches('"')
                .split_once('=')
                .expect("Environment=KEY=VALUE");
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    let audit_log = PathBuf::from(
        env.get("PRIME_SERVER_AUDIT_LOG")
            .expect("the settings name the audit log"),
    );
    assert!(
        audit_log.parent() == Some(logs_dir.as_path()) && writable.contains(&logs_dir),
        "the audit log {} is not in a LogsDirectory= of the unit (those systemd creates: {writable:?}); \
         the server could not create it, and ProtectSystem=strict makes the rest read-only",
        audit_log.display()
    );
    let listen = free_addr();
    let admin = free_addr();
    env.insert("PRIME_SERVER_LISTEN".into(), listen.to_string());
    env.insert("PRIME_SERVER_ADMIN_LISTEN".into(), admin.to_string());
    let argv = exec_argv(unit.require("ExecStart"), &env);
    assert_eq!(
        unit.service("KillSignal").unwrap_or("SIGTERM"),
        "SIGTERM",
        "the test stops the service with SIGTERM"
    );
    let signal = libc::SIGTERM;
    // With nothing in flight a stop is immediate; what the unit promises at
    // most is --shutdown-timeout (10 s unless the settings change it).
    let stop_within =
        env.get("PRIME_SERVER_SHUTDOWN_TIMEOUT")
            .map_or(Duration::from_secs(10), |t| {
                Duration::from_secs(
                    t.trim_end_matches('s')
                        .parse()
                        .expect("PRIME_SERVER_SHUTDOWN_TIMEOUT in whole seconds"),
                )
            });
    let umask = unit
        .service("UMask")
        .map_or(0o022, |m| u32::from_str_radix(m, 8).expect("octal UMask"));
    let notify_dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(notify_dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");

    // Run it, ask, find the audit line, stop it.
    let mut service = start_service(&argv, &env, uid, gid, umask, notify_dir.path());
    service.expect_notified("READY=1");
    let status = std::fs::read_to_string(format!("/proc/{}/status", service.child.id()))
        .expect("/proc status");
    let uids = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line");
    assert!(
        uids.split_whitespace()
            .skip(1)
            .all(|u| u == uid.to_string()),
        "the service does not run as uid {uid}: {uids}"
    );
    assert_eq!(ask(listen, "17"), "T\n", "{}", service.log_text());
    let (code, body) = http_get(admin, "/readyz");
    assert_eq!(code, 200, "/readyz on the admin address: {body}");
    let audited = wait_until(IO_TIMEOUT, || {
        read_lines(&audit_log).iter().any(|l| l.contains(" T '17'"))
    });
    assert!(
        audited,
        "no audit line for 17 in {}: {:?}",
        audit_log.display(),
        read_lines(&audit_log)
    );
    let meta = std::fs::metadata(&audit_log).expect("audit log");
    assert_eq!(
        meta.uid(),
        uid,
        "the audit log belongs to the service's user"
    );
    assert_eq!(
        meta.mode() & umask,
        0,
        "the audit log's mode {:o} ignores UMask={umask:o}",
        meta.mode()
    );
    let (code, log) = service.stop(signal, stop_within);
    assert_eq!(
        code,
        Some(0),
        "SIGTERM must stop the service with status 0:\n{}",
        log.join("\n")
    );

    // The packaged socket, as systemd would pass it: the server answers on
    // the socket's address, not PRIME_SERVER_LISTEN's.
    let socket = Unit::read(&socket_path);
    assert_eq!(
        socket.all("Socket", "ListenStream").len(),
        1,
        "one ListenStream"
    );
    let passed = free_addr();
    let ignored = free_addr();
    env.insert("PRIME_SERVER_LISTEN".into(), ignored.to_string());
    env.insert("PRIME_SERVER_ADMIN_LISTEN".into(), free_addr().to_string());
    // It hands the program only the variables named with -E (values from
    // its own environment), as systemd hands the unit's.
    let mut activated = vec![
        "/usr/bin/systemd-socket-activate".to_owned(),
        "-l".to_owned(),
        passed.to_string(),
    ];
    activated.extend(
        env.keys()
            .chain(["NOTIFY_SOCKET".to_owned()].iter())
            .map(|k| format!("-E{k}")),
    );
    activated.extend(argv.iter().cloned());
    let mut service = start_service(&activated, &env, uid, gid, umask, notify_dir.path());
    // systemd-socket-activate starts the server at the first connection.
    service.expect_log("Listening on");
    assert_eq!(ask(passed, "17"), "T\n", "{}", service.log_text());
    service.expect_notified("READY=1");
    service.expect_log("using the listening socket passed by systemd");
    assert!(
        std::net::TcpStream::connect(ignored).is_err(),
        "PRIME_SERVER_LISTEN must be ignored under socket activation"
    );
    let (code, log) = service.stop(signal, stop_within);
    assert_eq!(
        code,
        Some(0),
        "SIGTERM must stop the socket-activated service with status 0:\n{}",
        log.join("\n")
    );
    let answered = read_lines(&audit_log)
        .iter()
        .filter(|l| l.contains(" T '17'"))
        .count();
    assert_eq!(answered, 2, "one audit line per run");

    // Remove: the programs go, the audit log stays.
    run_ok(Command::new("dpkg").args(["--remove", PACKAGE]));
    assert!(
        !Path::new("/usr/bin/prime-server").exists(),
        "dpkg --remove left /usr/bin/prime-server"
    );
    assert_eq!(
        read_lines(&audit_log).len(),
        2,
        "dpkg --remove must keep the audit log"
    );
    // Purge: the settings go; the audit log, its owner and the state stay,
    // and purge says so.
    let purged = run_ok(Command::new("dpkg").args(["--purge", PACKAGE]));
    cleanup.installed = false;
    assert!(
        purged.contains("purge keeps") && purged.contains(logs_dir.to_str().expect("path")),
        "dpkg --purge must say what it keeps:\n{purged}"
    );
    assert_eq!(
        read_lines(&audit_log).len(),
        2,
        "dpkg --purge must keep the audit log"
    );
    assert!(
        passwd(&user).is_some(),
        "purge must keep the user that owns the audit log"
    );
    assert!(
        !Path::new("/etc/default/prime-server").exists(),
        "purge leaves /etc/default/prime-server"
    );
    assert!(
        !Path::new("/etc/systemd/system/multi-user.target.wants/prime-server.service").exists(),
        "purge leaves the service enabled"
    );

    // Leave the machine as it was.
    let problems = cleanup.undo();
    assert!(problems.is_empty(), "cleanup: {problems:?}");
    assert_eq!(
        passwd(&user).is_some(),
        user_existed,
        "the user {user} is not as it was before the test"
    );
    let status = package_status();
    assert!(
        status.is_empty() || status == "unknown ok not-installed",
        "{PACKAGE} is still known to dpkg: {status}"
    );
}
