//! The FTP and FTPS checks. Each runs on its own short control connection where a check
//! would leave state behind (`EPSV ALL`, a clear-text `USER`), and nothing is ever stored,
//! renamed or deleted on the server unless `--allow-write-test` asks for the anonymous write
//! check (a directory made and removed at once). A `PORT` to a third address is never
//! followed by a transfer command, so the server never connects there.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use ferry_proto::hostport;
use ferry_proto::{Reply, ReplyDecoder};
use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use super::cert::{self, Recorder};
use super::report::{Report, Verdict};

/// The server to probe and how to reach it.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The name dialled (certificate names are checked against it).
    pub(crate) host: String,
    pub(crate) addr: SocketAddr,
    /// `ftps://`: TLS from the first byte.
    pub(crate) implicit: bool,
    /// `ftpes://` or `ftps://`: never send credentials in clear text.
    pub(crate) require_tls: bool,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
}

/// How far the probe may go.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Per connect, reply and data transfer.
    pub(crate) timeout: Duration,
    pub(crate) allow_write_test: bool,
    /// The address a bounce `PORT` names (default: 127.0.0.3 for a loopback server,
    /// 192.0.2.1, a documentation address, otherwise).
    pub(crate) bounce: Option<IpAddr>,
    /// Roots the certificate chain is verified against.
    pub(crate) roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Unix seconds, for certificate expiry.
    pub(crate) now: i64,
}

/// The control connection's transport.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Closed,
}

/// A control connection: commands out, replies in, each within the timeout.
struct Control {
    stream: Stream,
    decoder: ReplyDecoder,
    timeout: Duration,
    peer: SocketAddr,
    local: SocketAddr,
}

/// Longest reply line and most lines per reply accepted from the server.
const MAX_LINE: usize = 8192;
const MAX_LINES: usize = 2000;

impl Control {
    async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Control> {
        let tcp = connect(addr, timeout).await?;
        let local = tcp.local_addr()?;
        Ok(Control {
            stream: Stream::Plain(tcp),
            decoder: ReplyDecoder::new(MAX_LINE, MAX_LINES),
            timeout,
            peer: addr,
            local,
        })
    }

    async fn read_some(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.stream {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
            Stream::Closed => Ok(0),
        }
    }

    async fn reply(&mut self) -> Result<Reply> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(r) = self.decoder.next_reply().map_err(|e| anyhow!("{e}"))? {
                return Ok(r);
            }
            let n = tokio::time::timeout(self.timeout, self.read_some(&mut buf))
                .await
                .map_err(|_| anyhow!("no reply within {} s", self.timeout.as_secs()))??;
            if n == 0 {
                bail!("the server closed the control connection");
            }
            self.decoder.extend(&buf[..n]);
        }
    }

    async fn send(&mut self, line: &str) -> Result<()> {
        let bytes = format!("{line}\r\n");
        let write = async {
            match &mut self.stream {
                Stream::Plain(s) => s.write_all(bytes.as_bytes()).await,
                Stream::Tls(s) => {
                    s.write_all(bytes.as_bytes()).await?;
                    s.flush().await
                }
                Stream::Closed => Err(std::io::ErrorKind::NotConnected.into()),
            }
        };
        tokio::time::timeout(self.timeout, write)
            .await
            .map_err(|_| anyhow!("sending a command timed out"))??;
        Ok(())
    }

    async fn cmd(&mut self, line: &str) -> Result<Reply> {
        self.send(line).await?;
        self.reply().await
    }

    async fn start_tls(
        &mut self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<()> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Closed) else {
            bail!("the control connection is not in clear text");
        };
        let tls = tokio::time::timeout(self.timeout, TlsConnector::from(config).connect(name, tcp))
            .await
            .map_err(|_| anyhow!("TLS handshake timed out"))?
            .context("TLS handshake")?;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// `TLSv1_3 TLS13_AES_256_GCM_SHA384`, say.
    fn tls_summary(&self) -> Option<String> {
        let Stream::Tls(s) = &self.stream else {
            return None;
        };
        let conn = s.get_ref().1;
        let version = conn.protocol_version()?;
        let suite = conn.negotiated_cipher_suite()?;
        Some(format!("{version:?} {:?}", suite.suite()))
    }

    fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    async fn quit(mut self) {
        let _ = self.cmd("QUIT").await;
    }
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow!("connecting to {addr} timed out"))?
        .with_context(|| format!("connecting to {addr}"))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// A listener for the active-mode checks that accepts whatever the server connects and
/// holds it open until dropped: some servers connect as soon as `EPRT` or `PORT` names the
/// address, and a refused or reset connection would make them send an extra reply later.
struct Sink {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    async fn bind(ip: IpAddr) -> Result<Sink> {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            // Bounded: a server has no reason to connect more than a few times.
            while held.len() < 16 {
                match listener.accept().await {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => break,
                }
            }
            std::future::pending::<()>().await;
        });
        Ok(Sink { addr, task })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A reply on one line for the report: code and first line, cut to a sensible length.
fn show(r: &Reply) -> String {
    let first = r.lines.first().map(String::as_str).unwrap_or("");
    let first: String = first.chars().take(160).collect();
    format!("{} {}", r.code, first.trim())
}

/// TLS settings shared by every connection of one probe.
struct Tls {
    recorder: Arc<Recorder>,
    provider: Arc<CryptoProvider>,
    name: ServerName<'static>,
}

impl Tls {
    fn new(target: &Target, settings: &Settings) -> Result<Tls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let recorder = Arc::new(Recorder::new(settings.roots.clone(), Arc::clone(&provider)));
        let name = ServerName::try_from(target.host.clone())
            .map_err(|e| anyhow!("{}: not a name TLS can check: {e}", target.host))?;
        Ok(Tls {
            recorder,
            provider,
            name,
        })
    }

    /// A configuration offering `versions`, with its own session cache (one per control
    /// connection, so its data connections can resume its session).
    fn config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Result<Arc<ClientConfig>> {
        let config = ClientConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_protocol_versions(versions)?
            .dangerous()
            .with_custom_certificate_verifier(self.recorder.clone())
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    fn session(&self) -> Result<Arc<ClientConfig>> {
        self.config(rustls::ALL_VERSIONS)
    }
}

/// A connected control connection, greeted, over TLS when `tls` is given and the server
/// agrees (`AUTH TLS`, or implicit TLS). Returns the greeting and, for explicit TLS, the
/// `AUTH TLS` reply.
async fn open(
    target: &Target,
    timeout: Duration,
    tls: Option<(&Tls, Arc<ClientConfig>)>,
) -> Result<(Control, Reply, Option<Reply>)> {
    let mut ctl = Control::connect(target.addr, timeout).await?;
    if target.implicit {
        let (t, config) = tls
            .clone()
            .ok_or_else(|| anyhow!("implicit TLS needs a TLS configuration"))?;
        ctl.start_tls(config, t.name.clone()).await?;
    }
    let greeting = ctl.reply().await?;
    if greeting.code != 220 {
        bail!("the server greeted with {}", show(&greeting));
    }
    let mut auth = None;
    if let (false, Some((t, config))) = (target.implicit, tls) {
        let r = ctl.cmd("AUTH TLS").await?;
        if r.code == 234 {
            ctl.start_tls(config, t.name.clone()).await?;
        }
        auth = Some(r);
    }
    Ok((ctl, greeting, auth))
}

/// Log in: the URL's user with its password, or anonymous. `Err` carries the refusal.
async fn login(ctl: &mut Control, target: &Target) -> Result<Result<String, String>> {
    let (user, pass) = match (&target.user, &target.password) {
        (Some(u), Some(p)) => (u.clone(), p.clone()),
        (Some(u), None) => {
            return Ok(Err(format!(
                "no password for {u} (put it in the URL or FERRY_PASSWORD)"
            )));
        }
        (None, _) => ("anonymous".to_string(), "probe@example.invalid".to_string()),
    };
    let r = ctl.cmd(&format!("USER {user}")).await?;
    let r = if r.code == 331 {
        ctl.cmd(&format!("PASS {pass}")).await?
    } else {
        r
    };
    Ok(if r.code == 230 {
        Ok(user)
    } else {
        Err(format!("login as {user} refused: {}", show(&r)))
    })
}

/// A banner token that looks like a version number (`3.0.3`, `1.3.8b`), IP addresses aside.
fn disclosed_version(banner: &str) -> Option<String> {
    banner
        .split(|c: char| c.is_whitespace() || "()[]{},;\"'".contains(c))
        .map(|t| t.trim_matches(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|t| t.parse::<IpAddr>().is_err())
        .find(|t| {
            let b = t.as_bytes();
            b.windows(3)
                .any(|w| w[0].is_ascii_digit() && w[1] == b'.' && w[2].is_ascii_digit())
        })
        .map(str::to_string)
}

/// The verdict on a `227` address `announced` when `dialled` was dialled.
fn judge_pasv(announced: Ipv4Addr, dialled: IpAddr) -> (Verdict, String) {
    let dialled = dialled.to_canonical();
    let private = |ip: Ipv4Addr| ip.is_private() || ip.is_loopback() || ip.is_link_local();
    match dialled {
        IpAddr::V4(d) if d == announced => (
            Verdict::Ok,
            format!("announces the address dialled ({announced})"),
        ),
        IpAddr::V4(_) if announced.is_unspecified() => (
            Verdict::Warning,
            format!("announces {announced}: clients must guess the data address"),
        ),
        IpAddr::V4(d) if private(announced) && !private(d) => (
            Verdict::Risk,
            format!(
                "announces the private address {announced} while {d} was dialled: \
                 internal address leaked, passive mode broken behind NAT"
            ),
        ),
        IpAddr::V4(d) => (
            Verdict::Warning,
            format!(
                "announces {announced} while {d} was dialled: NAT or masquerade address \
                 misconfigured? Clients that trust it connect elsewhere"
            ),
        ),
        IpAddr::V6(d) => (
            Verdict::Ok,
            format!("announces {announced} on an IPv6 connection to {d} (clients use EPSV)"),
        ),
    }
}

/// Open a passive data connection: EPSV when `epsv`, else PASV; always to the address
/// dialled, whatever a 227 says. `Err` is the refusal.
async fn passive(ctl: &mut Control, epsv: bool) -> Result<Result<TcpStream, String>> {
    let port = if epsv {
        let r = ctl.cmd("EPSV").await?;
        if r.code != 229 {
            return Ok(Err(format!("EPSV: {}", show(&r))));
        }
        hostport::parse_epsv_reply_text(&r.text()).map_err(|e| anyhow!("bad 229 reply: {e}"))?
    } else {
        let r = ctl.cmd("PASV").await?;
        if r.code != 227 {
            return Ok(Err(format!("PASV: {}", show(&r))));
        }
        hostport::parse_pasv_reply_text(&r.text())
            .map_err(|e| anyhow!("bad 227 reply: {e}"))?
            .port()
    };
    let addr = SocketAddr::new(ctl.peer.ip(), port);
    Ok(Ok(connect(addr, ctl.timeout).await?))
}

async fn drain<S: AsyncRead + Unpin>(mut s: S) -> usize {
    let mut buf = [0u8; 8192];
    let mut total = 0;
    // A TLS peer that closes without close_notify ends the read with an error: the bytes
    // counted so far are what arrived.
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
        total += n;
    }
    total
}

/// Run `LIST` over a passive data connection, protected with `tls` when given. `Ok(bytes)`
/// when the server completed it (2xx), `Err` with what refused it.
async fn list(
    ctl: &mut Control,
    epsv: bool,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
) -> Result<Result<usize, String>> {
    let tcp = match passive(ctl, epsv).await? {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    ctl.send("LIST").await?;
    let timeout = ctl.timeout;
    let data = async move {
        match tls {
            Some((config, name)) => {
                let s = TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("data connection TLS handshake failed: {e}"))?;
                Ok::<usize, String>(drain(s).await)
            }
            None => Ok(drain(tcp).await),
        }
    };
    let data = async move {
        tokio::time::timeout(timeout, data)
            .await
            .unwrap_or_else(|_| Err("data connection timed out".into()))
    };
    let control = async {
        let first = ctl.reply().await?;
        if first.is_preliminary() {
            ctl.reply().await
        } else {
            Ok(first)
        }
    };
    tokio::pin!(data, control);
    // A refusal on the control connection ends the wait: a server that refuses may leave
    // the data connection open.
    let (fin, data) = tokio::select! {
        fin = &mut control => {
            let fin = fin?;
            if fin.is_success() {
                (fin, data.await)
            } else {
                (fin, Err("data connection abandoned".to_string()))
            }
        }
        d = &mut data => (control.await?, d),
    };
    Ok(match (fin.is_success(), data) {
        (true, Ok(n)) => Ok(n),
        (true, Err(e)) => Err(format!("{e} (control said {})", show(&fin))),
        (false, Err(e)) => Err(format!("{} ({e})", show(&fin))),
        (false, Ok(_)) => Err(show(&fin)),
    })
}

/// Run every FTP check against `target`, adding findings to `report`. `Err` when the server
/// could not be probed at all (no connection, no greeting).
pub(crate) async fn probe(target: &Target, settings: &Settings, report: &mut Report) -> Result<()> {
    let tls = Tls::new(target, settings)?;
    let timeout = settings.timeout;

    // The main session: greeting, FEAT, TLS, login, then the data-connection checks.
    let session_config = tls.session()?;
    let (mut ctl, greeting, auth) =
        open(target, timeout, Some((&tls, session_config.clone()))).await?;
    report.add(
        "service",
        "service",
        Verdict::Ok,
        format!(
            "FTP at {}{}",
            target.addr,
            if target.implicit {
                " (implicit TLS)"
            } else {
                ""
            }
        ),
    );
    let banner = greeting.text();
    match disclosed_version(&banner) {
        Some(v) => report.add(
            "banner.version",
            "banner version",
            Verdict::Warning,
            format!(
                "the greeting discloses a version ({v}): {}",
                show(&greeting)
            ),
        ),
        None => report.add(
            "banner.version",
            "banner version",
            Verdict::Ok,
            format!("no version disclosed: {}", show(&greeting)),
        ),
    }
    let tls_on = ctl.is_tls();
    match (&auth, tls_on) {
        (None, true) => report.add("tls.auth", "TLS offered", Verdict::Ok, "implicit TLS"),
        (Some(r), true) => report.add(
            "tls.auth",
            "TLS offered",
            Verdict::Ok,
            format!("AUTH TLS accepted ({})", show(r)),
        ),
        (Some(r), false) => report.add(
            "tls.auth",
            "TLS offered",
            Verdict::Risk,
            format!(
                "AUTH TLS refused ({}): logins and data cross in clear text",
                show(r)
            ),
        ),
        (None, false) => {}
    }
    if tls_on {
        report.add(
            "tls.session",
            "TLS negotiated",
            Verdict::Ok,
            ctl.tls_summary().unwrap_or_default(),
        );
    }
    let feat = ctl.cmd("FEAT").await?;
    let features: Vec<String> = if feat.code == 211 {
        feat.lines
            .iter()
            .skip(1)
            .take(feat.lines.len().saturating_sub(2))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_ascii_uppercase)
            .fold(Vec::new(), |mut seen, f| {
                if !seen.contains(&f) {
                    seen.push(f);
                }
                seen
            })
    } else {
        Vec::new()
    };
    if feat.code == 211 {
        report.add(
            "feat",
            "FEAT",
            Verdict::Ok,
            format!("lists {}", features.join(" ")),
        );
    } else {
        report.add(
            "feat",
            "FEAT",
            Verdict::Warning,
            format!(
                "not supported ({}): clients cannot discover extensions",
                show(&feat)
            ),
        );
    }
    if features.iter().any(|f| f == "MLST") {
        report.add(
            "listing.mlsd",
            "MLSD",
            Verdict::Ok,
            "offered (MLST in FEAT)",
        );
    } else {
        report.add(
            "listing.mlsd",
            "MLSD",
            Verdict::Ok,
            "not offered: clients must parse LIST output",
        );
    }

    let logged_in = if tls_on || !target.require_tls {
        login(&mut ctl, target).await?
    } else {
        Err("not logged in: TLS was refused and the URL requires it".to_string())
    };
    match &logged_in {
        Ok(_) => session_checks(&mut ctl, settings, &tls, &session_config, report).await,
        Err(why) => {
            for (id, check) in [
                ("pasv.address", "PASV address"),
                ("epsv", "EPSV"),
                ("eprt", "EPRT"),
                ("data.protection", "data protection"),
                ("data.session_reuse", "TLS session reuse"),
                ("port.bounce", "PORT bounce"),
                ("epsv_all", "EPSV ALL"),
            ] {
                report.add(id, check, Verdict::Untested, why.clone());
            }
        }
    }
    ctl.quit().await;

    if logged_in.is_ok() {
        step(
            report,
            "EPSV ALL",
            "epsv_all",
            epsv_all(target, settings, &tls, tls_on),
        )
        .await;
    }
    step(
        report,
        "clear-text login",
        "login.cleartext",
        cleartext_login(target, timeout),
    )
    .await;
    step(
        report,
        "TLS versions",
        "tls.versions",
        tls_versions(target, timeout, &tls, tls_on),
    )
    .await;
    if tls_on {
        match tls.recorder.seen() {
            Some(seen) => cert::judge(&seen, settings.now, report),
            None => report.add(
                "tls.certificate.trust",
                "certificate chain",
                Verdict::Untested,
                "no certificate seen",
            ),
        }
    }
    step(
        report,
        "anonymous login",
        "anonymous.login",
        anonymous(target, settings, &tls, tls_on),
    )
    .await;
    Ok(())
}

/// Run one check; an error becomes an untested finding instead of ending the probe.
async fn step(
    report: &mut Report,
    check: &'static str,
    id: &'static str,
    run: impl std::future::Future<Output = Result<Vec<(&'static str, &'static str, Verdict, String)>>>,
) {
    match run.await {
        Ok(findings) => {
            for (id, check, verdict, detail) in findings {
                report.add(id, check, verdict, detail);
            }
        }
        Err(e) => report.add(id, check, Verdict::Untested, format!("probe failed: {e:#}")),
    }
}

/// The checks that need a logged-in session: PASV address, EPSV, EPRT, data protection,
/// bounce, data protection, session reuse (last: strict servers may end the session when a
/// data connection fails).
async fn session_checks(
    ctl: &mut Control,
    settings: &Settings,
    tls: &Tls,
    session_config: &Arc<ClientConfig>,
    report: &mut Report,
) {
    let r = session_checks_inner(ctl, settings, tls, session_config, report).await;
    if let Err(e) = r {
        report.add(
            "session",
            "session checks",
            Verdict::Untested,
            format!("probe failed: {e:#}"),
        );
    }
}

async fn session_checks_inner(
    ctl: &mut Control,
    settings: &Settings,
    tls: &Tls,
    session_config: &Arc<ClientConfig>,
    report: &mut Report,
) -> Result<()> {
    // Some servers refuse PASV and EPSV until data protection is settled.
    if ctl.is_tls() {
        let pbsz = ctl.cmd("PBSZ 0").await?;
        if !pbsz.is_success() {
            bail!("PBSZ 0 refused: {}", show(&pbsz));
        }
        let _ = ctl.cmd("PROT P").await?;
    }

    // PASV: the address announced against the one dialled.
    let r = ctl.cmd("PASV").await?;
    if r.code == 227 {
        let announced = hostport::parse_pasv_reply_text(&r.text())
            .map_err(|e| anyhow!("bad 227 reply {}: {e}", show(&r)))?;
        let (verdict, detail) = judge_pasv(*announced.ip(), ctl.peer.ip());
        report.add("pasv.address", "PASV address", verdict, detail);
    } else {
        report.add(
            "pasv.address",
            "PASV address",
            Verdict::Ok,
            format!("PASV refused ({})", show(&r)),
        );
    }

    let r = ctl.cmd("EPSV").await?;
    let epsv = r.code == 229;
    report.add(
        "epsv",
        "EPSV",
        if epsv { Verdict::Ok } else { Verdict::Warning },
        if epsv {
            "supported".to_string()
        } else {
            format!(
                "not supported ({}): passive mode depends on PASV's address",
                show(&r)
            )
        },
    );

    // EPRT to our own address: is active mode on? Nothing is transferred.
    let sink = Sink::bind(ctl.local.ip()).await?;
    let own = sink.addr;
    let r = ctl
        .cmd(&format!("EPRT {}", hostport::format_eprt_arg(own)))
        .await?;
    let eprt = r.code == 200;
    report.add(
        "eprt",
        "EPRT",
        Verdict::Ok,
        if eprt {
            "supported".to_string()
        } else {
            format!("refused ({})", show(&r))
        },
    );

    // Bounce: PORT (or EPRT) naming a third address; judged by the reply alone;
    // the next data command (or QUIT) replaces it, no transfer follows.
    let third = settings.bounce.unwrap_or(if ctl.peer.ip().is_loopback() {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))
    });
    let victim = SocketAddr::new(third, 50_021);
    let line = match (victim, ctl.peer) {
        (SocketAddr::V4(v), SocketAddr::V4(_)) => format!("PORT {}", hostport::format_port_arg(v)),
        _ => format!("EPRT {}", hostport::format_eprt_arg(victim)),
    };
    let r = ctl.cmd(&line).await?;
    if r.code == 200 {
        report.add(
            "port.bounce",
            "PORT bounce",
            Verdict::Risk,
            format!(
                "{line} accepted ({}): the server can be told to connect to third parties (FTP bounce)",
                show(&r)
            ),
        );
    } else {
        report.add(
            "port.bounce",
            "PORT bounce",
            Verdict::Ok,
            format!("{line} refused ({})", show(&r)),
        );
    }

    // Last: a strict server may end the session when a data connection fails.
    if ctl.is_tls() {
        let prot_c = ctl.cmd("PROT C").await?;
        if prot_c.code == 200 {
            match list(ctl, epsv, None).await? {
                Ok(n) => report.add(
                    "data.protection",
                    "data protection",
                    Verdict::Warning,
                    format!("clear-text data connections accepted (PROT C, then LIST sent {n} bytes in clear)"),
                ),
                Err(e) => report.add(
                    "data.protection",
                    "data protection",
                    Verdict::Ok,
                    format!("PROT C accepted but a clear-text LIST refused: {e}"),
                ),
            }
        } else {
            report.add(
                "data.protection",
                "data protection",
                Verdict::Ok,
                format!("PROT C refused ({})", show(&prot_c)),
            );
        }
        let prot_p = ctl.cmd("PROT P").await?;
        if prot_p.code != 200 {
            report.add(
                "data.session_reuse",
                "TLS session reuse",
                Verdict::Untested,
                format!("PROT P refused ({})", show(&prot_p)),
            );
        } else {
            reuse_check(ctl, epsv, tls, session_config, report).await?;
        }
    } else {
        report.add(
            "data.protection",
            "data protection",
            Verdict::Untested,
            "no TLS: data connections are in clear text",
        );
        report.add(
            "data.session_reuse",
            "TLS session reuse",
            Verdict::Untested,
            "no TLS",
        );
    }

    Ok(())
}

/// Protected LIST resuming the control session (must work), then one whose handshake
/// resumes nothing (a strict server refuses it).
async fn reuse_check(
    ctl: &mut Control,
    epsv: bool,
    tls: &Tls,
    session_config: &Arc<ClientConfig>,
    report: &mut Report,
) -> Result<()> {
    let name = tls.name.clone();
    if let Err(e) = list(ctl, epsv, Some((session_config.clone(), name.clone()))).await? {
        report.add(
            "data.session_reuse",
            "TLS session reuse",
            Verdict::Untested,
            format!("a protected LIST resuming the session failed: {e}"),
        );
        return Ok(());
    }
    let mut fresh = (**session_config).clone();
    fresh.resumption = rustls::client::Resumption::disabled();
    match list(ctl, epsv, Some((Arc::new(fresh), name))).await? {
        Ok(_) => report.add(
            "data.session_reuse",
            "TLS session reuse",
            Verdict::Warning,
            "a data connection with a new TLS session (no resumption) was accepted: \
             session reuse is not required, a third party could take over data connections",
        ),
        Err(e) => report.add(
            "data.session_reuse",
            "TLS session reuse",
            Verdict::Ok,
            format!("required: a data connection without resumption was refused ({e})"),
        ),
    }
    Ok(())
}

type Found = Vec<(&'static str, &'static str, Verdict, String)>;

/// On a fresh session: `EPSV ALL`, then PASV, PORT and EPRT must all be refused.
async fn epsv_all(target: &Target, settings: &Settings, tls: &Tls, tls_on: bool) -> Result<Found> {
    let config = tls.session()?;
    let (mut ctl, _, _) = open(target, settings.timeout, tls_on.then_some((tls, config))).await?;
    if let Err(e) = login(&mut ctl, target).await? {
        ctl.quit().await;
        return Ok(vec![("epsv_all", "EPSV ALL", Verdict::Untested, e)]);
    }
    if ctl.is_tls() {
        let _ = ctl.cmd("PBSZ 0").await?;
        let _ = ctl.cmd("PROT P").await?;
    }
    let r = ctl.cmd("EPSV ALL").await?;
    if !r.is_success() {
        ctl.quit().await;
        return Ok(vec![(
            "epsv_all",
            "EPSV ALL",
            Verdict::Warning,
            format!("not supported ({})", show(&r)),
        )]);
    }
    let sink = Sink::bind(ctl.local.ip()).await?;
    let own = sink.addr;
    let mut accepted = Vec::new();
    let mut tried = vec![
        "PASV".to_string(),
        format!("EPRT {}", hostport::format_eprt_arg(own)),
    ];
    if let SocketAddr::V4(v4) = own {
        tried.push(format!("PORT {}", hostport::format_port_arg(v4)));
    }
    for line in &tried {
        let r = ctl.cmd(line).await?;
        if r.is_success() {
            accepted.push(line.split_whitespace().next().unwrap_or("").to_string());
        }
    }
    ctl.quit().await;
    let verdict = if accepted.is_empty() {
        (
            Verdict::Ok,
            "honoured: PASV, EPRT and PORT refused after it".to_string(),
        )
    } else {
        (
            Verdict::Warning,
            format!(
                "not honoured: {} accepted after EPSV ALL (RFC 2428 says refuse)",
                accepted.join(", ")
            ),
        )
    };
    Ok(vec![("epsv_all", "EPSV ALL", verdict.0, verdict.1)])
}

/// On a clear-text connection, `USER`: does the server go on to ask for a password? The
/// password is never sent.
async fn cleartext_login(target: &Target, timeout: Duration) -> Result<Found> {
    const ID: &str = "login.cleartext";
    const CHECK: &str = "clear-text login";
    if target.implicit {
        return Ok(vec![(
            ID,
            CHECK,
            Verdict::Ok,
            "implicit TLS: nothing crosses this port in clear text".to_string(),
        )]);
    }
    let (mut ctl, _, _) = open(target, timeout, None).await?;
    let name = target
        .user
        .clone()
        .unwrap_or_else(|| "ferry-probe".to_string());
    let r = ctl.cmd(&format!("USER {name}")).await?;
    ctl.quit().await;
    let (verdict, detail) = match r.code {
        331 | 332 => (
            Verdict::Risk,
            format!(
                "USER {name} without TLS answered {}: the server takes passwords in clear text (none was sent)",
                show(&r)
            ),
        ),
        230 => (
            Verdict::Risk,
            format!("USER {name} without TLS logged in at once ({})", show(&r)),
        ),
        c if c >= 500 || c == 421 => (Verdict::Ok, format!("refused before TLS ({})", show(&r))),
        _ => (Verdict::Warning, format!("unexpected answer {}", show(&r))),
    };
    Ok(vec![(ID, CHECK, verdict, detail)])
}

/// One connection per TLS version rustls speaks.
async fn tls_versions(
    target: &Target,
    timeout: Duration,
    tls: &Tls,
    tls_on: bool,
) -> Result<Found> {
    let legacy = (
        "tls.legacy",
        "TLS 1.0/1.1",
        Verdict::Untested,
        "not tested: rustls does not speak TLS 1.0 or 1.1".to_string(),
    );
    if !tls_on {
        return Ok(vec![
            (
                "tls.versions",
                "TLS versions",
                Verdict::Untested,
                "no TLS".to_string(),
            ),
            legacy,
        ]);
    }
    let mut offered = Vec::new();
    let mut refused = Vec::new();
    for (label, version) in [
        ("TLS 1.3", &rustls::version::TLS13),
        ("TLS 1.2", &rustls::version::TLS12),
    ] {
        let config = tls.config(&[version])?;
        match open(target, timeout, Some((tls, config))).await {
            Ok((ctl, _, _)) if ctl.is_tls() => {
                offered.push(ctl.tls_summary().unwrap_or_else(|| label.to_string()));
                ctl.quit().await;
            }
            Ok((ctl, _, auth)) => {
                refused.push(format!(
                    "{label}: {}",
                    auth.map(|r| show(&r)).unwrap_or_default()
                ));
                ctl.quit().await;
            }
            Err(e) => refused.push(format!("{label}: {e:#}")),
        }
    }
    let found = if offered.is_empty() {
        (
            Verdict::Risk,
            format!(
                "neither TLS 1.3 nor 1.2 could be negotiated ({})",
                refused.join("; ")
            ),
        )
    } else {
        let mut detail = offered.join(", ");
        if !refused.is_empty() {
            detail.push_str(&format!("; not offered: {}", refused.join("; ")));
        }
        (Verdict::Ok, detail)
    };
    Ok(vec![
        ("tls.versions", "TLS versions", found.0, found.1),
        legacy,
    ])
}

/// Anonymous login (over TLS when the server has it), and with `--allow-write-test` whether
/// anonymous may create a directory (removed at once).
async fn anonymous(target: &Target, settings: &Settings, tls: &Tls, tls_on: bool) -> Result<Found> {
    let config = tls.session()?;
    let (mut ctl, _, _) = open(target, settings.timeout, tls_on.then_some((tls, config))).await?;
    let anon = Target {
        user: None,
        password: None,
        ..target.clone()
    };
    let logged = login(&mut ctl, &anon).await?;
    let mut found: Found = Vec::new();
    match logged {
        Err(e) => {
            found.push((
                "anonymous.login",
                "anonymous login",
                Verdict::Ok,
                format!("refused ({e})"),
            ));
            found.push((
                "anonymous.write",
                "anonymous write",
                Verdict::Ok,
                "no anonymous login".to_string(),
            ));
        }
        Ok(_) => {
            found.push((
                "anonymous.login",
                "anonymous login",
                Verdict::Warning,
                "accepted: anyone can log in (fine only for a public archive)".to_string(),
            ));
            if settings.allow_write_test {
                let name = format!("ferry-probe-{:016x}", rand::random::<u64>());
                let r = ctl.cmd(&format!("MKD {name}")).await?;
                if r.code == 257 {
                    let rmd = ctl.cmd(&format!("RMD {name}")).await?;
                    let cleanup = if rmd.is_success() {
                        "removed again".to_string()
                    } else {
                        format!(
                            "could not remove it ({}): remove {name} by hand",
                            show(&rmd)
                        )
                    };
                    found.push((
                        "anonymous.write",
                        "anonymous write",
                        Verdict::Risk,
                        format!(
                            "anonymous may create directories (MKD {name}: {}; {cleanup})",
                            show(&r)
                        ),
                    ));
                } else {
                    found.push((
                        "anonymous.write",
                        "anonymous write",
                        Verdict::Ok,
                        format!("MKD refused ({})", show(&r)),
                    ));
                }
            } else {
                found.push((
                    "anonymous.write",
                    "anonymous write",
                    Verdict::Untested,
                    "not tested: it would change the server (--allow-write-test makes and removes a directory)"
                        .to_string(),
                ));
            }
        }
    }
    ctl.quit().await;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_found_in_banners_but_addresses_and_counts_are_not() {
        assert_eq!(
            disclosed_version("(vsFTPd 3.0.3)").as_deref(),
            Some("3.0.3")
        );
        assert_eq!(
            disclosed_version("pyftpdlib 2.2.0 ready.").as_deref(),
            Some("2.2.0")
        );
        assert_eq!(
            disclosed_version("ProFTPD Server (Debian) [127.0.0.1]"),
            None
        );
        assert_eq!(
            disclosed_version("Local time is now 00:31. Server port: 2122."),
            None
        );
        assert_eq!(disclosed_version("Ferry FTP server ready."), None);
        assert_eq!(disclosed_version("[::1] welcome"), None);
    }

    #[test]
    fn pasv_addresses_are_judged_against_the_address_dialled() {
        let v4 = |s: &str| s.parse::<Ipv4Addr>().unwrap_or(Ipv4Addr::UNSPECIFIED);
        let ip = |s: &str| {
            s.parse::<IpAddr>()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        };
        assert_eq!(judge_pasv(v4("127.0.0.1"), ip("127.0.0.1")).0, Verdict::Ok);
        assert_eq!(
            judge_pasv(v4("10.0.0.5"), ip("203.0.113.7")).0,
            Verdict::Risk
        );
        assert_eq!(
            judge_pasv(v4("198.51.100.1"), ip("203.0.113.7")).0,
            Verdict::Warning
        );
        assert_eq!(
            judge_pasv(v4("0.0.0.0"), ip("127.0.0.1")).0,
            Verdict::Warning
        );
        assert_eq!(
            judge_pasv(v4("10.0.0.5"), ip("127.0.0.1")).0,
            Verdict::Warning
        );
    }
}
