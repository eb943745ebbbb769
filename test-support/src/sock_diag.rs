//! Asking the kernel about one TCP socket through sock_diag (netlink):
//! how many bytes the server has read from a connection, how many
//! connections wait in a listener's accept queue, the state of the
//! server's side of a connection. A test waits on these instead of
//! sleeping and hoping. States are the kernel's `TCP_*` numbers, named by
//! `netlink_packet_sock_diag::constants` (`TCP_ESTABLISHED`, ...).

use netlink_packet_sock_diag::constants::{TCP_CLOSE_WAIT, TCP_ESTABLISHED, TCP_LISTEN};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// Bytes the server has read from the TCP connection `server` <- `client`
/// (received by its kernel, less those still queued unread), asked of the
/// kernel through sock_diag for that one socket; `None` while no such
/// socket exists (not accepted yet, or closed). Lets a test wait until the
/// server has consumed exactly the bytes it sent so far, instead of
/// sleeping and hoping. (An exact lookup by address: reading
/// `/proc/net/tcp` instead skips rows while other tests churn through
/// thousands of sockets.)
pub fn server_read(server: SocketAddr, client: SocketAddr) -> Option<u64> {
    let found = sock_diag(server, client)?;
    // CLOSE_WAIT: the client half-closed. Before accept, the exact lookup
    // falls back to the listener (TCP_LISTEN), which is not the connection.
    if ![TCP_ESTABLISHED, TCP_CLOSE_WAIT].contains(&found.state) {
        return None;
    }
    Some(found.bytes_received? - u64::from(found.recv_queue))
}

/// How many connections wait in the accept queue of the listener at
/// `listener` (completed by the kernel, not yet accepted by the server),
/// asked of the kernel through sock_diag; `None` when nothing listens
/// there. Lets a test wait until its connections are queued behind a full
/// server instead of sleeping.
pub fn accept_queue(listener: SocketAddr) -> Option<u64> {
    // No connection has the unspecified peer, so the exact lookup falls
    // back to the listening socket, whose receive queue is its accept queue.
    let nobody = SocketAddr::new(
        if listener.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        },
        0,
    );
    let found = sock_diag(listener, nobody)?;
    (found.state == TCP_LISTEN).then_some(u64::from(found.recv_queue))
}

/// The TCP state of the server's side of the connection `server` <-
/// `client` (`TCP_ESTABLISHED`; `TCP_SYN_RECV`, a handshake the kernel
/// holds back, as with `TCP_DEFER_ACCEPT`; `TCP_CLOSE_WAIT`; ...: the
/// constants of `netlink_packet_sock_diag::constants`), or `None` when the
/// kernel has no such connection (not even half-open).
pub fn server_side_state(server: SocketAddr, client: SocketAddr) -> Option<u8> {
    // The exact lookup falls back to the listener: no such connection.
    sock_diag(server, client)
        .map(|found| found.state)
        .filter(|&state| state != TCP_LISTEN)
}

/// What sock_diag says about one socket.
struct SockInfo {
    /// The TCP state (`TCP_ESTABLISHED`, `TCP_CLOSE_WAIT`, `TCP_LISTEN`, ...).
    state: u8,
    /// Bytes queued unread; for a listener, connections not yet accepted.
    recv_queue: u32,
    /// Bytes received in all (from `tcp_info`), when given.
    bytes_received: Option<u64>,
}

/// Looks up the TCP socket `local` <- `peer` through sock_diag (an exact
/// lookup, falling back to the listener on `local` as the kernel does);
/// `None` when there is no such socket.
fn sock_diag(local: SocketAddr, peer: SocketAddr) -> Option<SockInfo> {
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
    use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
    use netlink_packet_sock_diag::inet::{
        nlas::Nla, ExtensionFlags, InetRequest, SocketId, StateFlags,
    };
    use netlink_packet_sock_diag::SockDiagMessage;
    use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket};

    let mut socket = Socket::new(NETLINK_SOCK_DIAG).expect("netlink sock_diag socket");
    socket.bind_auto().expect("bind netlink");
    socket
        .connect(&netlink_sys::SocketAddr::new(0, 0))
        .expect("connect netlink");
    // Without NLM_F_DUMP the kernel looks up the one socket with this
    // address, port, peer address and peer port (cookie: "any").
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let request = InetRequest {
        family: if local.is_ipv4() { AF_INET } else { AF_INET6 },
        protocol: IPPROTO_TCP,
        extensions: ExtensionFlags::INFO,
        states: StateFlags::all(),
        socket_id: SocketId {
            source_port: local.port(),
            destination_port: peer.port(),
            source_address: local.ip(),
            destination_address: peer.ip(),
            interface_id: 0,
            cookie: [0xff; 8],
        },
    };
    let mut packet = NetlinkMessage::new(header, SockDiagMessage::InetRequest(request).into());
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0).expect("send sock_diag request");
    let mut answer = vec![0; 8192];
    let n = socket
        .recv(&mut &mut answer[..], 0)
        .expect("sock_diag answer");
    let reply =
        NetlinkMessage::<SockDiagMessage>::deserialize(&answer[..n]).expect("a sock_diag message");
    match reply.payload {
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => Some(SockInfo {
            state: response.header.state,
            recv_queue: response.header.recv_queue,
            bytes_received: response.nlas.iter().find_map(|nla| match nla {
                Nla::TcpInfo(info) => Some(info.bytes_received),
                _ => None,
            }),
        }),
        // ENOENT: no such socket (yet, or any more).
        NetlinkPayload::Error(_) => None,
        other => panic!("unexpected sock_diag answer {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{connect, wait_until, IO_TIMEOUT};
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener};

    #[test]
    fn the_kernel_reports_queue_state_and_bytes_read() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(accept_queue(addr), Some(0));
        let mut client = connect(addr);
        let me = client.local_addr().unwrap();
        assert!(wait_until(IO_TIMEOUT, || accept_queue(addr) == Some(1)));
        // Queued but not accepted: the connection is there, established.
        assert_eq!(server_side_state(addr, me), Some(TCP_ESTABLISHED));

        let (mut accepted, _) = listener.accept().unwrap();
        assert_eq!(accept_queue(addr), Some(0));
        client.write_all(b"12345").unwrap();
        let mut three = [0; 3];
        accepted.read_exact(&mut three).unwrap();
        assert!(wait_until(IO_TIMEOUT, || server_read(addr, me) == Some(3)));

        client.shutdown(Shutdown::Write).unwrap();
        assert!(wait_until(IO_TIMEOUT, || {
            server_side_state(addr, me) == Some(TCP_CLOSE_WAIT)
        }));
        assert_eq!(server_read(addr, me), Some(3));
        drop(accepted);
        drop(client);
        assert!(wait_until(IO_TIMEOUT, || server_side_state(addr, me).is_none()));
        drop(listener);
        assert_eq!(accept_queue(addr), None);
    }
}
