//! The floor: the least work a connection-per-request line server can do.
//! Plain std threads, each blocking in `accept()` on the shared listener:
//! read to the newline, write a constant, close. No parsing, no logging,
//! no hand-off between threads, no socket options on the connections.
//! Per request that is four system calls (`accept4`, `recvfrom`, `sendto`,
//! `close`; checked with `strace -c`), the same as a C floor. Optionally the
//! listener gets `TCP_DEFER_ACCEPT`, as prime-server's does, so `accept()`
//! returns only once the line has arrived. Everything prime-server does
//! beyond this is what the bench measures.

use anyhow::Context;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// Serves forever (the bench kills it). With `keep_alive`, answers every
/// line of a connection, one write per batch of lines read together.
///
/// # Errors
///
/// Binding failed, `TCP_DEFER_ACCEPT` could not be set, or the address
/// could not be printed.
pub fn run(
    listen: SocketAddr,
    keep_alive: bool,
    threads: usize,
    defer_accept: bool,
) -> anyhow::Result<()> {
    let listener = prime_server::server::bind(listen)?;
    if defer_accept {
        set_defer_accept(&listener).context("cannot set TCP_DEFER_ACCEPT")?;
    }
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening {}", listener.local_addr()?)?;
    stdout.flush()?;
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            let listener = &listener;
            scope.spawn(move || accept_loop(listener, keep_alive));
        }
    });
    Ok(())
}

/// Keeps connections in the kernel until data arrives (or 5 s pass), so a
/// thread woken from `accept()` never then sleeps in `read()`. The server
/// sets this option privately; it is a one-line `setsockopt` that std and
/// socket2 do not expose, hence libc.
#[cfg(target_os = "linux")]
fn set_defer_accept(listener: &TcpListener) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let seconds: libc::c_int = 5;
    // SAFETY: a valid socket descriptor, an int option and its true size.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::from_ref(&seconds).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_defer_accept(_listener: &TcpListener) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "TCP_DEFER_ACCEPT is Linux-only",
    ))
}

fn accept_loop(listener: &TcpListener, keep_alive: bool) {
    loop {
        if let Ok((stream, _)) = listener.accept() {
            let _ = if keep_alive {
                serve_lines(stream)
            } else {
                serve_one(stream)
            };
        }
    }
}

/// Read until a newline (or EOF), answer, close.
fn serve_one(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 || buf[..n].contains(&b'\n') {
            break;
        }
    }
    stream.write_all(b"T\n")
}

/// Answer every line: one reply per newline in each chunk read.
fn serve_lines(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = [0u8; 16384];
    let mut replies = Vec::new();
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let lines = buf[..n].iter().filter(|&&b| b == b'\n').count();
        replies.clear();
        replies.extend(std::iter::repeat_n(*b"T\n", lines).flatten());
        stream.write_all(&replies)?;
    }
}
