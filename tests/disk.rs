//! A full disk never tears the audit log: the log on a tiny tmpfs, filled
//! under load, then freed. docs/operations.md#limits-and-failure-behaviour:
//! audit log write fails. Needs root to mount a tmpfs (as on CI); elsewhere it
//! skips loudly.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use test_support::{
    audit::{audited_answers, parse_audit},
    io::{try_ask, wait_until, IO_TIMEOUT},
    process::ServerProcess,
    tools::skip,
};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    /// Where it is mounted.
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `64k`) at `path`, or says why not.
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot mount a tmpfs (root needed): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the filesystem holding `dir` with a file until `ENOSPC`.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = [b'x'; 512];
    while file.write_all(&chunk).is_ok() {}
    while file.write_all(b"x").is_ok() {}
    path
}

#[test]
fn a_full_disk_never_tears_a_line_and_service_resumes_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = match Tmpfs::mount(&dir.path().join("mnt"), "64k") {
        Ok(mnt) => mnt,
        Err(why) => return skip(&why),
    };
    let audit = mnt.path.join("audit.log");
    let mut server = ServerProcess::start(&[
        "--audit-log",
        audit.to_str().unwrap(),
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let mut received = HashSet::new();
    let mut n = 1_000_000u64;
    let mut ask = |received: &mut HashSet<(String, String)>| {
        n += 1;
        let line = n.to_string();
        let reply = try_ask(server.addr, &line);
        if let Some(code) = reply.clone() {
            received.insert((line, code));
        }
        reply
    };
    for _ in 0..20 {
        assert!(ask(&mut received).is_some());
    }
    let filler = fill(&mnt.path);
    // Requests until several in a row go unanswered: the disk is full.
    let mut unanswered_in_a_row = 0;
    for _ in 0..2_000 {
        match ask(&mut received) {
            Some(_) => unanswered_in_a_row = 0,
            None => unanswered_in_a_row += 1,
        }
        if unanswered_in_a_row == 20 {
            break;
        }
    }
    assert_eq!(unanswered_in_a_row, 20, "the disk never filled up");
    assert_eq!(server.admin_get("/readyz").0, 503);
    assert!(server.metric("prime_server_audit_write_failures_total") >= 20.0);
    server.expect_stderr("audit log write failed", IO_TIMEOUT);
    // Warnings are rate-limited, not one per failed request.
    assert!(server.stderr().matches("audit log write failed").count() <= 2);
    std::fs::remove_file(filler).unwrap();
    assert!(
        wait_until(IO_TIMEOUT, || ask(&mut received).is_some()),
        "service did not resume once space returned"
    );
    for _ in 0..20 {
        assert!(ask(&mut received).is_some());
    }
    assert_eq!(server.admin_get("/readyz").0, 200);
    server.expect_stderr("the audit log is writable again", IO_TIMEOUT);
    server.signal(libc::SIGINT);
    assert_eq!(server.wait(IO_TIMEOUT).code(), Some(0));
    // Every byte of the file is whole lines, and they are exactly the
    // replies the clients received.
    let raw = std::fs::read(&audit).unwrap();
    assert_eq!(raw.last(), Some(&b'\n'), "the file ends mid-line");
    let lines: Vec<String> = String::from_utf8(raw)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    for line in &lines {
        let record = parse_audit(line);
        assert!(record.phrase.ends_with("prime number"), "torn: {line:?}");
    }
    assert_eq!(audited_answers(&lines), received);
    drop(mnt);
}
