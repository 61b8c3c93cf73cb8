//! Which protocols answer on the other well-known ports of the host: each port is
//! connected to once, its greeting read (FTP and SSH servers speak first), and a silent one
//! offered a TLS handshake (implicit FTPS waits for the client). Nothing else is sent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::cert::Recorder;
use super::report::{Report, Verdict};

/// How long a port gets to greet before it is offered TLS.
const GREETING_WAIT: Duration = Duration::from_millis(1500);

/// What answers at `addr`.
async fn identify(addr: SocketAddr, host: &str, timeout: Duration) -> String {
    let mut tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return "closed".to_string(),
        Err(_) => return "no answer (filtered?)".to_string(),
    };
    let mut buf = [0u8; 256];
    if let Ok(Ok(n)) = tokio::time::timeout(GREETING_WAIT, tcp.read(&mut buf)).await {
        let text = String::from_utf8_lossy(&buf[..n]);
        let first: String = text.lines().next().unwrap_or("").chars().take(80).collect();
        return if first.starts_with("SSH-") {
            format!("SSH ({first})")
        } else if first.starts_with("220") {
            format!("FTP ({first})")
        } else if n == 0 {
            "open, closed at once".to_string()
        } else {
            format!("unknown ({first})")
        };
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder::new(Vec::new(), Arc::clone(&provider)));
    let Ok(builder) =
        rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()
    else {
        return "open, silent".to_string();
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(recorder)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap_or_else(|_| {
        rustls::pki_types::ServerName::try_from("localhost").expect("a valid name")
    });
    match tokio::time::timeout(
        timeout,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    {
        Ok(Ok(mut tls)) => {
            let greeting = match tokio::time::timeout(timeout, tls.read(&mut buf)).await {
                Ok(Ok(n)) if buf[..n].starts_with(b"220") => " with an FTP greeting",
                _ => "",
            };
            format!("TLS{greeting} (implicit FTPS?)")
        }
        _ => "open, silent".to_string(),
    }
}

/// Add one finding listing what answers on each of `ports` of `addr`'s host.
pub(crate) async fn scan(
    addr: SocketAddr,
    host: &str,
    ports: &[u16],
    timeout: Duration,
    report: &mut Report,
) {
    let mut seen = Vec::new();
    for &port in ports.iter().filter(|&&p| p != addr.port()) {
        let what = identify(SocketAddr::new(addr.ip(), port), host, timeout).await;
        seen.push(format!("{port}: {what}"));
    }
    if !seen.is_empty() {
        report.add("ports", "other ports", Verdict::Ok, seen.join("; "));
    }
}
