//! PROXY protocol (v1 and v2) on accept: [`ProxyTrust`] says which peers are balancers that
//! must announce the client, and reads the announcement.
//!
//! The header is read exactly (never a byte past it: what follows is the client's own
//! protocol, SSH's banner or a TLS hello) and within a time limit, and parsed by `ppp`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest v1 header (spec: 107 bytes with its CRLF).
const V1_MAX: usize = 107;
/// The v2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The time a balancer has to send its header after connecting.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection's PROXY header was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// PROXY protocol is required and the peer is not a trusted balancer.
    #[error("connection from {0}, which is not a trusted PROXY protocol sender")]
    Untrusted(IpAddr),
    /// No header within [`HEADER_TIMEOUT`].
    #[error("no PROXY header in time")]
    Timeout,
    /// Not a valid v1 or v2 header.
    #[error("invalid PROXY header: {0}")]
    Invalid(String),
    /// The connection failed while the header was read.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The balancers whose PROXY headers are believed. Empty: PROXY protocol off, every peer is
/// its own client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyTrust {
    from: Vec<IpNet>,
}

impl ProxyTrust {
    /// Headers required from, and only believed from, peers in `from`.
    pub fn new(from: Vec<IpNet>) -> Self {
        ProxyTrust { from }
    }

    /// Whether PROXY protocol is on.
    pub fn is_enabled(&self) -> bool {
        !self.from.is_empty()
    }

    /// Whether `ip` is a trusted balancer.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.from.iter().any(|net| net.contains(&ip))
    }

    /// The client of a control connection (FTP, implicit FTPS, SSH) from `peer`. With PROXY
    /// protocol off, `peer` itself. With it on, the connection must come from a trusted
    /// balancer and begin with a valid header, read within [`HEADER_TIMEOUT`]; anything else
    /// is an error and the connection is to be closed unserved. A `LOCAL` header (the
    /// balancer's own health check) gives `peer`.
    pub async fn client_of<S: AsyncRead + Unpin>(
        &self,
        stream: &mut S,
        peer: SocketAddr,
    ) -> Result<SocketAddr, ProxyError> {
        if !self.is_enabled() {
            return Ok(peer);
        }
        if !self.trusts(peer.ip()) {
            return Err(ProxyError::Untrusted(peer.ip()));
        }
        Ok(read_header_within(stream, HEADER_TIMEOUT)
            .await?
            .unwrap_or(peer))
    }

    /// The source of a data connection from `peer`: the header's source when `peer` is a
    /// trusted balancer (which must then send one within `timeout`), else `peer` itself (a
    /// client reaching the node directly).
    pub async fn source_of<S: AsyncRead + Unpin>(
        &self,
        stream: &mut S,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<SocketAddr, ProxyError> {
        if !self.trusts(peer.ip()) {
            return Ok(peer);
        }
        Ok(read_header_within(stream, timeout.min(HEADER_TIMEOUT))
            .await?
            .unwrap_or(peer))
    }
}

async fn read_header_within<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<Option<SocketAddr>, ProxyError> {
    tokio::time::timeout(timeout, read_header(stream))
        .await
        .map_err(|_| ProxyError::Timeout)?
}

/// Read one PROXY header (v1 or v2) from `stream`, and not a byte more. `Ok(None)`: a header
/// that names no client (v2 `LOCAL`, v1 `UNKNOWN`, or an address family other than TCP over
/// IPv4/IPv6).
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<SocketAddr>, ProxyError> {
    let mut head = [0u8; 16];
    // 15 bytes is the shortest v1 header ("PROXY UNKNOWN\r\n"), and 16 the fixed part of v2.
    stream.read_exact(&mut head[..6]).await?;
    if head[..6] == *b"PROXY " {
        let mut line = head[..6].to_vec();
        let mut byte = [0u8; 1];
        // Byte by byte: a read past the CRLF would take the client's first bytes.
        while !line.ends_with(b"\r\n") {
            if line.len() >= V1_MAX {
                return Err(ProxyError::Invalid("v1 header too long".into()));
            }
            stream.read_exact(&mut byte).await?;
            line.push(byte[0]);
        }
        let header = ppp::v1::Header::try_from(line.as_slice())
            .map_err(|e| ProxyError::Invalid(e.to_string()))?;
        return Ok(match header.addresses {
            ppp::v1::Addresses::Tcp4(a) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            ppp::v1::Addresses::Tcp6(a) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            ppp::v1::Addresses::Unknown => None,
        });
    }
    if head[..6] != V2_SIGNATURE[..6] {
        return Err(ProxyError::Invalid("no PROXY signature".into()));
    }
    stream.read_exact(&mut head[6..]).await?;
    if head[..12] != V2_SIGNATURE {
        return Err(ProxyError::Invalid("no PROXY signature".into()));
    }
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    let mut whole = Vec::with_capacity(16 + len);
    whole.extend_from_slice(&head);
    whole.resize(16 + len, 0);
    stream.read_exact(&mut whole[16..]).await?;
    let header = ppp::v2::Header::try_from(whole.as_slice())
        .map_err(|e| ProxyError::Invalid(e.to_string()))?;
    if header.command == ppp::v2::Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        ppp::v2::Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        ppp::v2::Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    async fn parse(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyError>, Vec<u8>) {
        let mut input = bytes;
        let r = read_header(&mut input).await;
        (r, input.to_vec())
    }

    #[tokio::test]
    async fn v1_is_read_up_to_its_crlf_and_no_further() {
        let (r, rest) = parse(b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 21\r\nSSH-2.0-x\r\n").await;
        assert_eq!(r.unwrap(), Some("127.0.0.2:40000".parse().unwrap()));
        assert_eq!(rest, b"SSH-2.0-x\r\n");
        let (r, _) = parse(b"PROXY TCP6 ::2 ::1 5 6\r\n").await;
        assert_eq!(r.unwrap(), Some("[::2]:5".parse().unwrap()));
        let (r, _) = parse(b"PROXY UNKNOWN\r\n").await;
        assert_eq!(r.unwrap(), None);
    }

    #[tokio::test]
    async fn v2_is_read_to_its_length() {
        let header = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (
                "127.0.0.2:4000".parse::<SocketAddr>().unwrap(),
                "127.0.0.1:21".parse::<SocketAddr>().unwrap(),
            ),
        )
        .write_tlv(ppp::v2::Type::NoOp, b"xyz")
        .unwrap()
        .build()
        .unwrap();
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"USER a\r\n");
        let (r, rest) = parse(&bytes).await;
        assert_eq!(r.unwrap(), Some("127.0.0.2:4000".parse().unwrap()));
        assert_eq!(rest, b"USER a\r\n");
        let local = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Local,
            ppp::v2::Protocol::Unspecified,
            ppp::v2::Addresses::Unspecified,
        )
        .build()
        .unwrap();
        assert_eq!(parse(&local).await.0.unwrap(), None);
    }

    #[tokio::test]
    async fn garbage_and_overlong_headers_are_refused() {
        for bad in [
            &b"USER anonymous\r\n"[..],
            b"PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\n",
            b"\r\n\r\n\0\r\nQUIX\n\x21\x11\0\0",
            &[b'P'; 200],
        ] {
            assert!(parse(bad).await.0.is_err(), "{bad:?}");
        }
        let mut long = b"PROXY TCP4 ".to_vec();
        long.extend(std::iter::repeat_n(b'1', 200));
        assert!(matches!(parse(&long).await.0, Err(ProxyError::Invalid(_))));
        // Cut short: an error, never a wait (the stream has ended).
        assert!(parse(b"PROXY TCP4 127.0.0.2").await.0.is_err());
    }

    #[test]
    fn trust_is_by_network_and_sees_mapped_ipv4() {
        let trust = ProxyTrust::new(vec!["127.0.0.1/32".parse().unwrap()]);
        assert!(trust.trusts("127.0.0.1".parse().unwrap()));
        assert!(trust.trusts("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!trust.trusts("127.0.0.2".parse().unwrap()));
        assert!(!ProxyTrust::default().is_enabled());
    }
}
