//! The shipped deployment files: HAProxy accepts `deploy/haproxy.cfg`, and
//! `deploy/rolling-restart.sh` checks its arguments before touching
//! anything. (Restarting real instances behind a real HAProxy under load
//! is `tests/scale_out.rs`.)

use std::process::{Command, Output};
use test_support::tools::skip;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn haproxy() -> Option<&'static str> {
    ["haproxy", "/usr/sbin/haproxy", "/sbin/haproxy"]
        .into_iter()
        .find(|p| Command::new(p).arg("-v").output().is_ok())
}

#[test]
fn haproxy_accepts_the_example_config() {
    let Some(haproxy) = haproxy() else {
        return skip("haproxy is not installed (make test installs it with apt-get)");
    };
    let out = Command::new(haproxy)
        .args(["-c", "-f", &format!("{ROOT}/deploy/haproxy.cfg")])
        .output()
        .expect("run haproxy -c");
    assert!(
        out.status.success(),
        "haproxy -c failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rolling_restart(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(format!("{ROOT}/deploy/rolling-restart.sh"))
        .args(args)
        .output()
        .expect("run rolling-restart.sh")
}

#[test]
fn rolling_restart_explains_itself() {
    let out = rolling_restart(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in ["Usage:", "--restart-cmd", "--stop-cmd", "{name}", "drain"] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
}

#[test]
fn rolling_restart_rejects_bad_usage_before_touching_anything() {
    let restart = ["--restart-cmd", "true"];
    let cases: [(&[&str], &str); 7] = [
        (&[], "--socket is required"),
        (&["--socket", "/nowhere"], "--backend is required"),
        (
            &["--socket", "/nowhere", "--backend", "b"],
            "name at least one server",
        ),
        (
            &["--socket", "/s", "--backend", "b", "p1"],
            "give --restart-cmd",
        ),
        (
            &[
                "--socket",
                "/s",
                "--backend",
                "b",
                "--restart-cmd",
                "x",
                "--stop-cmd",
                "y",
                "p1",
            ],
            "not both",
        ),
        (
            &[
                "--socket",
                "/s",
                "--backend",
                "b",
                "--restart-cmd",
                "x",
                "p1;reboot",
            ],
            "not a valid HAProxy name",
        ),
        (
            &[
                "--socket",
                "/s",
                "--backend",
                "b",
                "--restart-cmd",
                "x",
                "--up-timeout",
                "0",
                "p1",
            ],
            "whole seconds",
        ),
    ];
    for (args, message) in cases {
        let out = rolling_restart(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    // Valid usage, but no HAProxy there: a failure, said plainly.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let socket = socket.to_str().unwrap();
    let mut args = vec!["--socket", socket, "--backend", "b"];
    args.extend(restart);
    args.push("p1");
    let out = rolling_restart(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is not a socket") || stderr.contains("socat is not installed"),
        "{stderr}"
    );
}
