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
use std::time::Duration;

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
    let listener = prime_server::net::bind(listen)?;
    if defer_accept {
        // As the server sets it: the kernel keeps a connection until data
        // arrives (or 5 s pass), so a thread woken from `accept()` never
        // then sleeps in `read()`.
        prime_server::net::set_defer_accept(&listener, Duration::from_secs(5))
            .context("cannot set TCP_DEFER_ACCEPT")?;
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
