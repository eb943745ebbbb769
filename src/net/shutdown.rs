//! Graceful shutdown: a flag, and a deliberate wake-up of the blocked
//! `accept()`.
//!
//! [`Shutdown::request`] sets the flag and then wakes the accept loop by
//! connecting to the listener from a socket whose address it notes first,
//! so the loop can recognise and drop that connection. If the self-connect
//! fails (a full backlog, say), it falls back to `shutdown(2)` on a
//! duplicate of the listening socket, which makes `accept()` fail at once.
//! Either way nothing polls.
//!
//! The signals that request it are the application's
//! (`crate::ops::signals`).

use parking_lot::Mutex;
use socket2::{Domain, SockRef, Socket, Type};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long the wake-up connection may take before the fallback is used.
const WAKE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A cloneable handle that asks a running server to stop gracefully.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// State shared by every clone.
    inner: Arc<Inner>,
}

/// What the clones of a [`Shutdown`] share.
#[derive(Default)]
struct Inner {
    /// Set once a stop has been requested.
    requested: AtomicBool,
    /// The listener to wake, while a server runs.
    listener: Mutex<Option<TcpListener>>,
    /// The local address of the wake-up connection, so the accept loop can
    /// drop it instead of serving it.
    waker: Mutex<Option<SocketAddr>>,
    /// Called once a stop is requested (to wake the waiting room, say).
    callbacks: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
    /// The listening socket outlives this process (systemd socket
    /// activation): never shut it down, the next process needs it.
    shared_listener: AtomicBool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("requested", &self.requested)
            .finish_non_exhaustive()
    }
}

impl Shutdown {
    /// A handle with no stop requested.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Whether a stop has been requested.
    pub fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// Requests a graceful stop and wakes the accept loop. Returns `false`
    /// if a stop had already been requested.
    pub fn request(&self) -> bool {
        if self.inner.requested.swap(true, Ordering::SeqCst) {
            return false;
        }
        // Holding the lock keeps the listener from being deregistered (and
        // its socket closed) while we wake it.
        let listener = self.inner.listener.lock();
        if let Some(listener) = listener.as_ref() {
            let shared = self.inner.shared_listener.load(Ordering::SeqCst);
            // A full backlog is the usual reason the connect fails, and
            // then accept() cannot block: the loop takes a queued
            // connection, sees the flag, and the stop serves the backlog.
            // Shutting the socket down then would reset every connection
            // still queued instead of answering it.
            if self.connect_to(listener).is_err() && !shared && !has_pending(listener) {
                // Makes a blocked accept() return EINVAL at once; connections
                // still in the backlog are reset, never half-answered. (A
                // socket shared with systemd is left alone: the connect
                // fails only when its backlog is full, and then accept()
                // returns at once anyway.)
                let _ = SockRef::from(listener).shutdown(std::net::Shutdown::Read);
            }
        }
        drop(listener);
        for callback in self.inner.callbacks.lock().iter() {
            callback();
        }
        true
    }

    /// Calls `callback` when a stop is requested (at once if it already
    /// was).
    pub fn on_request(&self, callback: Box<dyn Fn() + Send + Sync>) {
        let mut callbacks = self.inner.callbacks.lock();
        if self.is_requested() {
            callback();
        }
        callbacks.push(callback);
    }

    /// Marks the listening socket as shared with systemd (socket
    /// activation): a stop never shuts it down.
    pub fn share_listener(&self) {
        self.inner.shared_listener.store(true, Ordering::SeqCst);
    }

    /// Whether `peer` is this handle's own wake-up connection.
    pub fn is_waker(&self, peer: SocketAddr) -> bool {
        *self.inner.waker.lock() == Some(peer)
    }

    /// Makes `listener` the one [`Shutdown::request`] wakes, until the
    /// returned registration is dropped.
    ///
    /// # Errors
    ///
    /// Duplicating the listening socket failed.
    pub fn register(&self, listener: &TcpListener) -> io::Result<Registration> {
        let duplicate = listener.try_clone()?;
        *self.inner.listener.lock() = Some(duplicate);
        Ok(Registration {
            shutdown: self.clone(),
        })
    }

    /// Connects to `listener` from an address noted beforehand, and sends a
    /// byte so the connection is handed over even with `TCP_DEFER_ACCEPT`.
    fn connect_to(&self, listener: &TcpListener) -> io::Result<()> {
        let target = wake_target(listener.local_addr()?);
        let socket = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
        socket.bind(&SocketAddr::new(target.ip(), 0).into())?;
        let local = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("wake socket has no IP address"))?;
        *self.inner.waker.lock() = Some(local);
        socket.connect_timeout(&target.into(), WAKE_CONNECT_TIMEOUT)?;
        let mut stream = TcpStream::from(socket);
        stream.write_all(b"\n")?;
        Ok(())
    }
}

/// Whether `listener` has connections waiting to be accepted (so
/// `accept()` would return at once), asked with a zero-timeout `poll`.
fn has_pending(listener: &TcpListener) -> bool {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call, on a
    // descriptor borrowed from `listener`; a zero timeout never blocks.
    let ready = unsafe { libc::poll(&raw mut fd, 1, 0) };
    ready == 1 && fd.revents & libc::POLLIN != 0
}

/// Keeps a listener registered with a [`Shutdown`]; dropping it deregisters
/// and closes the duplicate, so the listening socket can really close.
#[derive(Debug)]
pub struct Registration {
    /// The handle the listener is registered with.
    shutdown: Shutdown,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut listener = self.shutdown.inner.listener.lock();
        *listener = None;
    }
}

/// Where to connect to reach a listener: its own address, with a wildcard
/// IP replaced by the loopback address of the same family.
pub(crate) fn wake_target(bound: SocketAddr) -> SocketAddr {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bound.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_targets_loopback() {
        let v4: SocketAddr = "0.0.0.0:80".parse().unwrap();
        assert_eq!(wake_target(v4), "127.0.0.1:80".parse().unwrap());
        let v6: SocketAddr = "[::]:80".parse().unwrap();
        assert_eq!(wake_target(v6), "[::1]:80".parse().unwrap());
        let exact: SocketAddr = "127.0.0.2:80".parse().unwrap();
        assert_eq!(wake_target(exact), exact);
    }

    #[test]
    fn request_wakes_a_blocked_accept_with_a_recognisable_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let shutdown = Shutdown::new();
        let registration = shutdown.register(&listener).unwrap();
        let requester = shutdown.clone();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            assert!(requester.request());
            assert!(!requester.request());
        });
        let (_stream, peer) = listener.accept().unwrap();
        assert!(shutdown.is_requested());
        assert!(shutdown.is_waker(peer));
        thread.join().unwrap();
        drop(registration);
    }

    #[test]
    fn request_without_a_listener_only_sets_the_flag() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.is_requested());
        assert!(shutdown.request());
        assert!(shutdown.is_requested());
    }
}
