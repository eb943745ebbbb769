//! The floor: the least work a connection-per-request line server can do.
//! Plain std threads, each blocking in `accept()` on the shared listener:
//! read to the newline, write a constant, close. No parsing, no logging,
//! no hand-off between threads, no socket options. Everything prime-server
//! does beyond this is what the bench measures.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// Serves forever (the bench kills it). With `keep_alive`, answers every
/// line of a connection, one write per batch of lines read together.
///
/// # Errors
///
/// Binding failed or the address could not be printed.
pub fn run(listen: SocketAddr, keep_alive: bool, threads: usize) -> anyhow::Result<()> {
    let listener = prime_server::server::bind(listen)?;
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
