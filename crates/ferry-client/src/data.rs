//! Data connections: the address of a `227`, connecting and accepting with timeouts, and the
//! idle timer shared by downloads and uploads.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::{Error, Result};

/// A data connection being set up: connected already (passive) or waiting for the server
/// (active).
#[derive(Debug)]
pub(crate) enum Pending {
    Connected(TcpStream),
    Listening {
        listener: TcpListener,
        /// The only IP the server may connect from.
        peer_ip: IpAddr,
    },
}

impl Pending {
    /// The data stream; in active mode waits up to `timeout` for the server to connect,
    /// ignoring connections from any IP other than the control peer's.
    pub(crate) async fn establish(self, timeout: Duration) -> Result<TcpStream> {
        match self {
            Pending::Connected(s) => Ok(s),
            Pending::Listening { listener, peer_ip } => {
                let accept = async {
                    loop {
                        let (stream, from) = listener
                            .accept()
                            .await
                            .map_err(Error::network("accepting the data connection"))?;
                        if same_ip(from.ip(), peer_ip) {
                            return Ok(stream);
                        }
                        // A stranger raced the server to our port: drop it, keep waiting.
                    }
                };
                tokio::time::timeout(timeout, accept).await.map_err(|_| {
                    Error::Timeout("waiting for the server's data connection".into())
                })?
            }
        }
    }
}

/// Connect to a data port within `timeout`.
pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::Timeout(format!("connecting the data connection to {addr}")))?
        .map_err(Error::network(format!("data connection to {addr}")))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// IPs equal, treating an IPv4-mapped IPv6 address as its IPv4 address.
pub(crate) fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        // Carrier-grade NAT, 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
}

/// Where to connect after a `227` reply naming `offered`, on a control connection to
/// `control_peer`.
///
/// The offered address is used when it is the control peer's, or when `trust` is set.
/// Otherwise an unspecified, private, link-local or CGNAT address, or a loopback address that
/// isn't the control peer's, is replaced by the control peer's IP (a server behind NAT
/// announcing its inside address is the classic PASV failure; curl does the same). A public
/// address different from the peer's is kept.
pub(crate) fn pasv_target(offered: SocketAddr, control_peer: IpAddr, trust: bool) -> SocketAddr {
    if trust || same_ip(offered.ip(), control_peer) {
        return offered;
    }
    let suspicious = match offered.ip().to_canonical() {
        IpAddr::V4(v4) => is_private_v4(v4) || v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_loopback(),
    };
    if suspicious {
        SocketAddr::new(control_peer, offered.port())
    } else {
        offered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|_| panic!("{s}"))
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("{s}"))
    }

    #[test]
    fn pasv_address_choice() {
        let peer = ip("203.0.113.7");
        // Same IP: used.
        assert_eq!(
            pasv_target(sa("203.0.113.7:3000"), peer, false),
            sa("203.0.113.7:3000")
        );
        // Private, unspecified, CGNAT, loopback: replaced by the peer's IP.
        for offered in [
            "10.0.0.5:3000",
            "192.168.1.2:3000",
            "172.16.3.4:3000",
            "0.0.0.0:3000",
            "100.64.1.1:3000",
            "169.254.1.1:3000",
            "127.0.0.1:3000",
        ] {
            assert_eq!(
                pasv_target(sa(offered), peer, false),
                sa("203.0.113.7:3000"),
                "{offered}"
            );
            assert_eq!(pasv_target(sa(offered), peer, true), sa(offered));
        }
        // A different public address is kept.
        assert_eq!(
            pasv_target(sa("198.51.100.1:3000"), peer, false),
            sa("198.51.100.1:3000")
        );
        // Loopback mismatch on loopback.
        assert_eq!(
            pasv_target(sa("127.0.0.2:3000"), ip("127.0.0.1"), false),
            sa("127.0.0.1:3000")
        );
        // Mapped peer.
        assert_eq!(
            pasv_target(sa("127.0.0.1:3000"), ip("::ffff:127.0.0.1"), false),
            sa("127.0.0.1:3000")
        );
    }
}
