//! TCP_NODELAY on this process's connections to a PostgreSQL server.
//!
//! sqlx 0.9.0 no longer sets it and offers no way to (transact-rs/sqlx#4335; fixed upstream,
//! not released). Without it a COPY stalls: sqlx sends the data and the end-of-copy message
//! as two writes, and Nagle's algorithm holds the second until the server's delayed ACK of
//! the first, 40 ms later. The option is set on the socket itself, reached through a
//! duplicate of its descriptor (`pidfd_getfd` on our own process: no unsafe code, no access
//! to sqlx's internals).

use std::{io, net::SocketAddr};

use rustix::{
    net::{getpeername, sockopt},
    process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open},
};

/// Sets TCP_NODELAY on every TCP socket of this process connected to `port` of some host
/// (all of them PostgreSQL connections of this agent; the option only sends small writes
/// sooner). Returns how many sockets now have it.
pub fn set_for_server_port(port: u16) -> io::Result<usize> {
    let pidfd = pidfd_open(getpid(), PidfdFlags::empty())?;
    let mut set = 0;
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(entry) = entry else { continue };
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // The descriptor may have been closed since it was listed.
        let Ok(dup) = pidfd_getfd(&pidfd, fd, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let peer = getpeername(&dup)
            .ok()
            .flatten()
            .and_then(|a| SocketAddr::try_from(a).ok());
        if peer.is_some_and(|p| p.port() == port) {
            sockopt::set_tcp_nodelay(&dup, true)?;
            set += 1;
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::set_for_server_port;

    #[test]
    fn sets_the_option_on_connections_to_the_port_only() {
        let wanted = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let to_wanted = TcpStream::connect(wanted.local_addr().unwrap()).unwrap();
        let to_other = TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!to_wanted.nodelay().unwrap());

        let n = set_for_server_port(wanted.local_addr().unwrap().port()).unwrap();

        assert_eq!(n, 1);
        assert!(to_wanted.nodelay().unwrap());
        assert!(!to_other.nodelay().unwrap());
    }
}
