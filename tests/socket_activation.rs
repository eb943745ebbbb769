//! Socket activation: `prime-server` serves on a listening socket passed the
//! way systemd passes it (descriptor 3, `LISTEN_FDS=1`), and a restart on
//! that socket refuses no client: connections made while no process runs
//! wait in the socket's backlog and are answered by the next process.
//!
//! The test plays systemd: it binds the socket, keeps it open across the
//! restart, and hands it to each process.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;
use test_support::{
    io::{ask, read_to_close},
    process::ServerProcess,
};

/// The descriptor systemd passes first.
const SD_LISTEN_FDS_START: i32 = 3;

/// Starts prime-server with `listener` as descriptor 3 and the activation
/// variables set (`LISTEN_PID` left out, which `listenfd` accepts as "for
/// this process", since the child's pid is not known before it starts).
fn start_activated(listener: &TcpListener, pid_var: Option<&str>) -> ServerProcess {
    let fd = listener.as_raw_fd();
    ServerProcess::start_with(&[], |command: &mut Command| {
        command.env("LISTEN_FDS", "1").env_remove("LISTEN_PID");
        if let Some(pid) = pid_var {
            command.env("LISTEN_PID", pid);
        }
        // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork
        // and exec, on a descriptor this process owns.
        unsafe {
            command.pre_exec(move || {
                let rc = if fd == SD_LISTEN_FDS_START {
                    // Already in place: only clear close-on-exec.
                    libc::fcntl(fd, libc::F_SETFD, 0)
                } else {
                    // dup2 leaves the new descriptor without close-on-exec.
                    libc::dup2(fd, SD_LISTEN_FDS_START)
                };
                if rc == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
}

#[test]
fn serves_on_the_socket_systemd_passes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = start_activated(&listener, None);
    assert_eq!(server.addr, listener.local_addr().unwrap());
    assert_eq!(ask(server.addr, "17"), "T\n");
    assert!(server
        .stderr()
        .contains("using the listening socket passed by systemd"));
}

#[test]
fn a_socket_meant_for_another_process_is_left_alone() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // LISTEN_PID names pid 1, not the server: it binds --listen instead.
    let server = start_activated(&listener, Some("1"));
    assert_ne!(server.addr, listener.local_addr().unwrap());
    assert_eq!(ask(server.addr, "17"), "T\n");
}

#[test]
fn restart_on_the_passed_socket_refuses_no_client() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();

    let mut first = start_activated(&listener, None);
    assert_eq!(ask(addr, "17"), "T\n");
    first.signal(libc::SIGTERM);
    assert!(first.wait(Duration::from_secs(20)).success());

    // No process serves now; clients connect and send anyway. The kernel
    // completes their connections into the backlog of the socket we hold.
    let mut waiting: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).expect("connect while restarting");
            stream.write_all(b"17\n").unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            stream
        })
        .collect();

    let second = start_activated(&listener, None);
    for stream in &mut waiting {
        assert_eq!(read_to_close(stream), b"T\n");
    }
    assert_eq!(ask(addr, "4"), "F\n");
    assert_eq!(second.audit_lines().len(), 21);
    // The first process left the shared socket non-blocking while draining
    // it; the second must not take that as accept errors.
    let stderr = second.stderr();
    assert!(!stderr.contains("accept failed"), "{stderr}");
}
