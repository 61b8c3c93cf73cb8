//! The TLS control connection, on rustls' unbuffered API: this stream owns the buffers, and
//! holds them only while they hold something.
//!
//! rustls' buffered `ServerConnection` (what tokio-rustls wraps) keeps a 4 KiB record buffer
//! from the first read to the end of the connection, and a few smaller ones: an idle TLS
//! control connection cost ~7.5 KiB of heap, against ~3.3 KiB with the unbuffered API. Here a
//! record is decrypted from a stack buffer when it arrives whole; only a record cut by the
//! socket (kept until its end arrives), decrypted bytes the reader has not taken, and encrypted
//! bytes the socket has not taken live on the heap, and each buffer is freed once emptied.
//!
//! Session tickets issued here carry the session's token (see [`super::TicketScope`]), which is
//! what lets a data connection prove it belongs to this control connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{TOKEN_LEN, TicketScope};

/// Bytes read from the socket per read call (on the stack).
const READ_CHUNK: usize = 4096;

/// Plaintext taken per `poll_write` (rustls splits it into records).
const MAX_WRITE: usize = 64 * 1024;

/// More than a partial record and a fragmented handshake message can need: a peer that makes
/// the incoming buffer grow past this is misbehaving.
const MAX_INCOMING: usize = 128 * 1024;

/// What to encrypt once rustls allows writing.
enum Output<'a> {
    Data(&'a [u8]),
    CloseNotify,
}

/// A server-side TLS control connection over TCP.
pub(crate) struct ControlTls {
    tcp: TcpStream,
    conn: UnbufferedServerConnection,
    token: [u8; TOKEN_LEN],
    /// The start of a record (or of a fragmented handshake message) still incomplete.
    incoming: Vec<u8>,
    /// Decrypted bytes not yet read, from `plain_pos`.
    plaintext: Vec<u8>,
    plain_pos: usize,
    /// Encrypted bytes not yet written to the socket, from `out_pos`.
    outgoing: Vec<u8>,
    out_pos: usize,
    /// The peer sent close_notify: reads see end of stream.
    peer_closed: bool,
    /// The TCP connection ended (without close_notify unless `peer_closed`).
    eof: bool,
    /// Our close_notify is queued; no more application data may be written.
    closing: bool,
    /// A TLS error ended the connection.
    failed: bool,
}

impl ControlTls {
    /// Complete a server handshake on `tcp`; tickets issued carry `token`.
    pub(crate) async fn accept(
        config: Arc<rustls::ServerConfig>,
        tcp: TcpStream,
        token: &[u8; TOKEN_LEN],
    ) -> io::Result<ControlTls> {
        let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
        let mut s = ControlTls {
            tcp,
            conn,
            token: *token,
            incoming: Vec::new(),
            plaintext: Vec::new(),
            plain_pos: 0,
            outgoing: Vec::new(),
            out_pos: 0,
            peer_closed: false,
            eof: false,
            closing: false,
            failed: false,
        };
        std::future::poll_fn(|cx| s.poll_handshake(cx)).await?;
        Ok(s)
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_send(cx))?;
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            if self.peer_closed || self.eof {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during the TLS handshake",
                )));
            }
            ready!(self.poll_receive(cx))?;
        }
    }

    /// Heap bytes this stream holds in its own buffers now (0 when idle).
    #[cfg(test)]
    pub(crate) fn buffered_capacity(&self) -> usize {
        self.incoming.capacity() + self.plaintext.capacity() + self.outgoing.capacity()
    }

    /// Queue a close_notify; `flush` sends it. Application data can no longer be written.
    pub(crate) fn send_close_notify(&mut self) -> io::Result<()> {
        if !self.closing {
            self.drive_owned(Some(Output::CloseNotify))?;
            self.closing = true;
        }
        Ok(())
    }

    /// The TCP connection, and any bytes that followed the peer's close_notify (clear text
    /// after `CCC`). Decrypted bytes not yet read are dropped.
    pub(crate) fn into_tcp(self) -> (TcpStream, Vec<u8>) {
        // rustls stops at close_notify; what follows it is left in `incoming` untouched.
        let rest = if self.peer_closed {
            self.incoming
        } else {
            Vec::new()
        };
        (self.tcp, rest)
    }

    /// Read once from the socket and run what arrived through rustls.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut chunk = [0u8; READ_CHUNK];
        let mut read = ReadBuf::new(&mut chunk);
        ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        if n == 0 {
            self.eof = true;
            return Poll::Ready(Ok(()));
        }
        Poll::Ready(self.receive(&mut chunk[..n]))
    }

    /// Process received bytes: whole records straight from `data`, a trailing partial record
    /// kept in `incoming`.
    fn receive(&mut self, data: &mut [u8]) -> io::Result<()> {
        if self.incoming.is_empty() {
            let used = self.drive(data, None)?;
            let rest = data.get(used..).unwrap_or_default();
            if !rest.is_empty() {
                self.incoming.extend_from_slice(rest);
            }
            return Ok(());
        }
        if self.incoming.len() + data.len() > MAX_INCOMING {
            self.failed = true;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS peer sent an oversized record or handshake message",
            ));
        }
        self.incoming.extend_from_slice(data);
        self.drive_owned(None)
    }

    /// [`Self::drive`] over `incoming`, then drop what was used (and the buffer, if emptied).
    fn drive_owned(&mut self, output: Option<Output<'_>>) -> io::Result<()> {
        let mut incoming = std::mem::take(&mut self.incoming);
        let used = self.drive(&mut incoming, output)?;
        if used < incoming.len() {
            incoming.drain(..used);
            self.incoming = incoming;
        }
        Ok(())
    }

    /// Run rustls over `input` until it needs more bytes: decrypted data goes to `plaintext`,
    /// records to send to `outgoing`, and `output` (if any) is encrypted once rustls allows.
    /// Returns how many leading bytes of `input` are done with.
    fn drive(&mut self, input: &mut [u8], mut output: Option<Output<'_>>) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS connection failed",
            ));
        }
        // Tickets (and TLS 1.2 session-cache entries) are made inside process_tls_records.
        let _scope = TicketScope::control(&self.token);
        let mut used = 0;
        loop {
            let status = self
                .conn
                .process_tls_records(input.get_mut(used..).unwrap_or_default());
            let discard = status.discard;
            let state = match status.state {
                Ok(state) => state,
                Err(e) => {
                    used += discard;
                    self.fail(input.get_mut(used..).unwrap_or_default());
                    return Err(tls_error(e));
                }
            };
            let more = match state {
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(record) = r.next_record() {
                        let record = match record {
                            Ok(record) => record,
                            Err(e) => {
                                // No more processing: the same bytes would fail again.
                                self.failed = true;
                                return Err(tls_error(e));
                            }
                        };
                        if self.plain_pos == self.plaintext.len() {
                            self.plaintext.clear();
                            self.plain_pos = 0;
                        }
                        self.plaintext.extend_from_slice(record.payload);
                    }
                    true
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    append(&mut self.outgoing, |buf| match e.encode(buf) {
                        Ok(n) => Ok(n),
                        Err(EncodeError::InsufficientSize(s)) => Err(Some(s.required_size)),
                        Err(EncodeError::AlreadyEncoded) => Err(None),
                    })?;
                    true
                }
                // Queued in `outgoing`, which is always written out in order.
                ConnectionState::TransmitTlsData(t) => {
                    t.done();
                    true
                }
                ConnectionState::PeerClosed => {
                    self.peer_closed = true;
                    true
                }
                ConnectionState::WriteTraffic(mut w) => match output.take() {
                    Some(Output::Data(data)) => {
                        append(&mut self.outgoing, |buf| {
                            w.encrypt(data, buf).map_err(needed)
                        })?;
                        true
                    }
                    Some(Output::CloseNotify) => {
                        append(&mut self.outgoing, |buf| {
                            w.queue_close_notify(buf).map_err(needed)
                        })?;
                        true
                    }
                    None => false,
                },
                ConnectionState::BlockedHandshake => {
                    if output.is_some() {
                        return Err(io::Error::new(
                            io::ErrorKind::NotConnected,
                            "TLS handshake not complete",
                        ));
                    }
                    false
                }
                ConnectionState::Closed => {
                    if output.is_some() {
                        return Err(io::Error::new(
                            io::ErrorKind::BrokenPipe,
                            "TLS connection closed",
                        ));
                    }
                    false
                }
                // No early data is accepted (max_early_data_size is 0); anything else is new.
                _ => {
                    self.failed = true;
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "unexpected TLS connection state",
                    ));
                }
            };
            used += discard;
            if !more {
                return Ok(used);
            }
        }
    }

    /// After a TLS error, send the alert rustls has for the peer if the socket takes it at
    /// once. `rest` is the input not yet discarded (rustls may still index into it).
    ///
    /// rustls hands out a queued alert before it looks at the input again, so one more call
    /// yields it; and only one: after a framing error the next call would parse the same bad
    /// bytes again and queue a second fatal alert, which rustls asserts never happens.
    fn fail(&mut self, rest: &mut [u8]) {
        self.failed = true;
        let status = self.conn.process_tls_records(rest);
        if let Ok(ConnectionState::EncodeTlsData(mut e)) = status.state {
            let _ = append(&mut self.outgoing, |buf| match e.encode(buf) {
                Ok(n) => Ok(n),
                Err(EncodeError::InsufficientSize(s)) => Err(Some(s.required_size)),
                Err(EncodeError::AlreadyEncoded) => Err(None),
            });
        }
        if let Some(pending) = self.outgoing.get(self.out_pos..) {
            let _ = self.tcp.try_write(pending);
        }
        self.outgoing = Vec::new();
        self.out_pos = 0;
    }

    /// Write queued records to the socket; frees the buffer when all are out.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(pending) = self.outgoing.get(self.out_pos..).filter(|p| !p.is_empty()) {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.outgoing = Vec::new();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }
}

/// The room an encryption needs, if more room is what it needs (see [`append`]).
fn needed(e: EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(s) => Some(s.required_size),
        _ => None,
    }
}

/// Append what `encode` writes to `out`, growing it to the size rustls asks for.
/// `encode` returns `Err(Some(n))` when it needs `n` bytes, `Err(None)` when it cannot write.
fn append(
    out: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> io::Result<()> {
    let start = out.len();
    let mut room = 0;
    for _ in 0..3 {
        out.resize(start + room, 0);
        match encode(out.get_mut(start..).unwrap_or_default()) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(Some(needed)) if needed > room => room = needed,
            Err(_) => break,
        }
    }
    out.truncate(start);
    Err(io::Error::other("TLS record could not be encoded"))
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl AsyncRead for ControlTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if let Some(ready) = this
                .plaintext
                .get(this.plain_pos..)
                .filter(|p| !p.is_empty())
            {
                let n = ready.len().min(buf.remaining());
                buf.put_slice(&ready[..n]);
                this.plain_pos += n;
                if this.plain_pos == this.plaintext.len() {
                    this.plaintext = Vec::new();
                    this.plain_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed the connection without sending TLS close_notify",
                )));
            }
            // Answers rustls queued while reading (a key update, an alert) go out first; a
            // full socket does not stop the read.
            if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                return Poll::Ready(Err(e));
            }
            ready!(this.poll_receive(cx))?;
        }
    }
}

impl AsyncWrite for ControlTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.closing {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "TLS close_notify already sent",
            )));
        }
        // At most one write's records wait in `outgoing`.
        ready!(this.poll_send(cx))?;
        let n = buf.len().min(MAX_WRITE);
        this.drive_owned(Some(Output::Data(&buf[..n])))?;
        if let Poll::Ready(Err(e)) = this.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing && !this.failed {
            this.send_close_notify()?;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::tls::{CertStore, certified_key_from_pem, generate_self_signed, server_config};

    fn client(
        cert_pem: &str,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> Arc<rustls::ClientConfig> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[version])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// An idle control connection holds no buffer of its own, in TLS 1.3 and 1.2; the peer's
    /// close_notify reads as end of stream.
    #[tokio::test]
    async fn idle_connection_holds_no_buffers() {
        let g = generate_self_signed(&["localhost".to_string()]).unwrap();
        let key = certified_key_from_pem(g.cert_pem.as_bytes(), g.key_pem.as_bytes()).unwrap();
        let config = server_config(CertStore::new(key)).unwrap();
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let connector = tokio_rustls::TlsConnector::from(client(&g.cert_pem, version));
            let peer = tokio::spawn(async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
                let mut tls = connector.connect(name, tcp).await.unwrap();
                // A command cut across two records and two segments.
                tls.write_all(b"USER te").await.unwrap();
                tls.flush().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                tls.write_all(b"ster\r\n").await.unwrap();
                tls.flush().await.unwrap();
                let mut reply = vec![0u8; 9];
                tls.read_exact(&mut reply).await.unwrap();
                assert_eq!(reply, b"331 ok.\r\n");
                tls.shutdown().await.unwrap();
                let mut rest = Vec::new();
                let _ = tls.read_to_end(&mut rest).await;
            });
            let (tcp, _) = listener.accept().await.unwrap();
            let mut s = ControlTls::accept(Arc::clone(&config), tcp, &[9; TOKEN_LEN])
                .await
                .unwrap();
            assert_eq!(s.buffered_capacity(), 0, "{version:?} after the handshake");
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0);
                line.extend_from_slice(&buf[..n]);
            }
            assert_eq!(line, b"USER tester\r\n");
            s.write_all(b"331 ok.\r\n").await.unwrap();
            s.flush().await.unwrap();
            assert_eq!(s.buffered_capacity(), 0, "{version:?} idle after a command");
            let mut buf = [0u8; 64];
            assert_eq!(
                s.read(&mut buf).await.unwrap(),
                0,
                "{version:?} close_notify"
            );
            s.shutdown().await.unwrap();
            peer.await.unwrap();
        }
    }

    /// A server control stream and the listener's address, for a client to connect to.
    async fn serve_one(g: &crate::tls::GeneratedCert) -> (TcpListener, Arc<rustls::ServerConfig>) {
        let key = certified_key_from_pem(g.cert_pem.as_bytes(), g.key_pem.as_bytes()).unwrap();
        let config = server_config(CertStore::new(key)).unwrap();
        (TcpListener::bind("127.0.0.1:0").await.unwrap(), config)
    }

    async fn read_line(s: &mut ControlTls) -> Vec<u8> {
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "end of stream after {line:?}");
            line.extend_from_slice(&buf[..n]);
        }
        line
    }

    /// TLS 1.3 key updates from the client (asking for ours in return) between commands: the
    /// stream answers them and both directions go on under the new keys.
    #[tokio::test]
    async fn key_updates_between_commands() {
        let g = generate_self_signed(&["localhost".to_string()]).unwrap();
        let (listener, config) = serve_one(&g).await;
        let addr = listener.local_addr().unwrap();
        let connector =
            tokio_rustls::TlsConnector::from(client(&g.cert_pem, &rustls::version::TLS13));
        let peer = tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            let mut tls = connector.connect(name, tcp).await.unwrap();
            for i in 0..3 {
                tls.get_mut().1.refresh_traffic_keys().unwrap();
                tls.write_all(format!("NOOP {i}\r\n").as_bytes())
                    .await
                    .unwrap();
                tls.flush().await.unwrap();
                let mut reply = vec![0u8; 8];
                tls.read_exact(&mut reply).await.unwrap();
                assert_eq!(reply, format!("200 {i}.\r\n").as_bytes());
            }
            tls.shutdown().await.unwrap();
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let mut s = ControlTls::accept(config, tcp, &[3; TOKEN_LEN])
            .await
            .unwrap();
        for i in 0..3 {
            assert_eq!(read_line(&mut s).await, format!("NOOP {i}\r\n").as_bytes());
            s.write_all(format!("200 {i}.\r\n").as_bytes())
                .await
                .unwrap();
            s.flush().await.unwrap();
        }
        peer.await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).await.unwrap(), 0, "close_notify");
        assert_eq!(s.buffered_capacity(), 0);
    }

    /// Bytes that are not TLS records after the handshake end the stream with an error (and no
    /// panic); so does a record cut short by the connection closing.
    #[tokio::test]
    async fn garbage_after_the_handshake_is_an_error() {
        let g = generate_self_signed(&["localhost".to_string()]).unwrap();
        // Clear text; a record header promising more than ever comes; a well-formed record
        // that does not decrypt.
        let mut forged = vec![23, 3, 3, 0, 32];
        forged.extend_from_slice(&[0x55; 32]);
        for garbage in [
            &b"USER plain-text-after-tls\r\n"[..],
            &[23, 3, 3, 0x40, 0][..],
            &forged[..],
        ] {
            let (listener, config) = serve_one(&g).await;
            let addr = listener.local_addr().unwrap();
            let connector =
                tokio_rustls::TlsConnector::from(client(&g.cert_pem, &rustls::version::TLS13));
            let sent = garbage.to_vec();
            let peer = tokio::spawn(async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
                let tls = connector.connect(name, tcp).await.unwrap();
                // Behind rustls' back, on the bare socket.
                let (mut tcp, _) = tls.into_inner();
                tcp.write_all(&sent).await.unwrap();
                tcp.shutdown().await.unwrap();
                let mut rest = Vec::new();
                let _ = tcp.read_to_end(&mut rest).await;
            });
            let (tcp, _) = listener.accept().await.unwrap();
            // The garbage may arrive with the client's last handshake message: then the
            // handshake itself fails.
            if let Ok(mut s) = ControlTls::accept(config, tcp, &[4; TOKEN_LEN]).await {
                let mut buf = [0u8; 64];
                let r = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
                    .await
                    .unwrap();
                assert!(r.is_err(), "{garbage:?} read as {r:?}");
            }
            peer.await.unwrap();
        }
    }

    /// Random bytes in random pieces, instead of a handshake or after one, many times over:
    /// every attempt ends (an error or the end of the stream) without a panic or a hang.
    #[tokio::test]
    async fn random_input_never_panics_or_hangs() {
        use rand::{Rng, SeedableRng};
        let g = generate_self_signed(&["localhost".to_string()]).unwrap();
        let (listener, config) = serve_one(&g).await;
        let addr = listener.local_addr().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        for round in 0..60 {
            let after_handshake = round % 2 == 1;
            let len = rng.random_range(1..6000);
            let mut junk = vec![0u8; len];
            rng.fill(&mut junk[..]);
            // Sometimes a plausible record header first, so that rustls reads further.
            if round % 3 == 0 && len > 5 {
                junk[..3].copy_from_slice(&[23, 3, 3]);
            }
            let cuts: Vec<usize> = (0..rng.random_range(1..8))
                .map(|_| rng.random_range(0..len))
                .collect();
            let connector =
                tokio_rustls::TlsConnector::from(client(&g.cert_pem, &rustls::version::TLS13));
            let peer = tokio::spawn(async move {
                let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                if after_handshake {
                    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
                    let Ok(tls) = connector.connect(name, tcp).await else {
                        return;
                    };
                    tcp = tls.into_inner().0;
                }
                let mut cuts = cuts;
                cuts.sort_unstable();
                let mut at = 0;
                for cut in cuts.into_iter().chain([junk.len()]) {
                    if tcp.write_all(&junk[at..cut.max(at)]).await.is_err() {
                        return;
                    }
                    at = cut.max(at);
                    tokio::task::yield_now().await;
                }
                let _ = tcp.shutdown().await;
                let mut rest = Vec::new();
                let _ = tcp.read_to_end(&mut rest).await;
            });
            let (tcp, _) = listener.accept().await.unwrap();
            let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                let Ok(mut s) = ControlTls::accept(Arc::clone(&config), tcp, &[5; TOKEN_LEN]).await
                else {
                    return;
                };
                let mut buf = [0u8; 256];
                // Random bytes decrypt to nothing: reading ends in an error or end of stream.
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
            assert!(ended.is_ok(), "round {round}: the stream hung");
            peer.await.unwrap();
        }
    }
}
