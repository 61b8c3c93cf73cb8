//! `ferry serve`: quick flags for scripts and tests on top of `ferry.toml`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use ferry_auth::{Authenticator, UserSpec};
use ferry_ftpd::{CertStore, Server, TlsConfig, TlsPolicy};
use tracing_subscriber::EnvFilter;

use crate::config::{FileConfig, PortRange, default_root, default_state_dir};

/// Where the quick default serves SFTP.
const DEFAULT_SFTP_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 2222);

/// Flags of `ferry serve`. Flags override the configuration file.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Configuration file (see docs/configuration.md).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on; repeat for several (IPv6 as [::1]:2121, [::]:21 for dual-stack).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
    /// Directory served to the `--user` (or generated) user; created if missing.
    #[arg(long, value_name = "DIR", conflicts_with = "storage")]
    root: Option<PathBuf>,
    /// Serve the `--user` (or generated) user from an S3 bucket instead of --root:
    /// s3://BUCKET/PREFIX (credentials and region from AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION, or [storage.s3]).
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    storage: Option<String>,
    /// Endpoint of the S3-compatible store for s3:// homes (path-style URLs), e.g.
    /// http://127.0.0.1:9000.
    #[arg(long, value_name = "URL")]
    s3_endpoint: Option<String>,
    /// Passive ports, inclusive, e.g. 30000-30099.
    #[arg(long, value_name = "LOW-HIGH")]
    passive_ports: Option<PortRange>,
    /// User name; the password comes from the FERRY_PASSWORD environment variable (optional
    /// with --authorized-keys).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// OpenSSH authorized_keys file: public keys the --user may log in with over SFTP.
    #[arg(long, value_name = "FILE", requires = "user")]
    authorized_keys: Option<PathBuf>,
    /// Also allow anonymous read-only logins, serving DIR.
    #[arg(long, value_name = "DIR")]
    anonymous_root: Option<PathBuf>,
    /// FTP over TLS: off, optional, or required (default: required, with a self-signed
    /// certificate generated into the state directory unless --cert/--key are given).
    #[arg(long, value_name = "POLICY")]
    tls: Option<TlsPolicyArg>,
    /// PEM certificate chain for TLS (with --key).
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key for TLS (with --cert).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Serve SFTP on this address; repeatable ([::1]:2222 for IPv6). Without a configuration
    /// file or --listen, SFTP is served on 127.0.0.1:2222.
    #[arg(long, value_name = "ADDR:PORT")]
    sftp_listen: Vec<SocketAddr>,
    /// Listen for implicit FTPS (TLS from the first byte); repeatable.
    #[arg(long, value_name = "ADDR:PORT")]
    implicit_tls_listen: Vec<SocketAddr>,
    /// Most concurrent control connections (0: as many as the open-file limit carries).
    #[arg(long, value_name = "N")]
    max_sessions: Option<usize>,
    /// Most concurrent control connections from one IP address (default 50; 0: no limit).
    #[arg(long, value_name = "N")]
    max_sessions_per_ip: Option<usize>,
    /// Directory for generated state (self-signed certificate). Default ./ferry-state.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Log filter (tracing syntax), e.g. info, debug, ferry_ftpd=debug. RUST_LOG also works.
    #[arg(long, value_name = "FILTER", default_value = "info")]
    log: String,
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|f| !f.is_empty() && EnvFilter::try_new(f).is_ok())
        .unwrap_or_else(|| args.log.clone());
    let filter = quiet_filter(&spec);
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(|| LogWriter)
        .init();

    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let mut config = file.server_config()?;
    if !args.listen.is_empty() {
        config.listen = args.listen.clone();
    }
    if let Some(r) = args.passive_ports {
        config.passive_ports = Some((r.0, r.1));
    }
    if let Some(n) = args.max_sessions {
        config.max_sessions = n;
    }
    if let Some(n) = args.max_sessions_per_ip {
        config.max_sessions_per_ip = n;
    }
    let tls = prepare_tls(&file, &args)?;
    if let Some(t) = &tls {
        config.tls = Some(t.config.clone());
        config.implicit_tls_listen = if args.implicit_tls_listen.is_empty() {
            file.ftp.implicit_tls_listen.clone().unwrap_or_default()
        } else {
            args.implicit_tls_listen.clone()
        };
    } else if !args.implicit_tls_listen.is_empty() || file.ftp.implicit_tls_listen.is_some() {
        bail!("implicit TLS listeners need tls = optional or required");
    }

    let mut users = file.users.clone();
    if let Some(dir) = &args.anonymous_root {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        config.anonymous_home = Some(dir.clone());
    }
    let anonymous = config.anonymous_home.is_some();
    let mut banner_credentials = None;
    let quick_root = match &args.storage {
        Some(url) if ferry_vfs::S3Config::from_url(url).is_some() => PathBuf::from(url),
        Some(url) => bail!("--storage takes s3://BUCKET/PREFIX, not {url}"),
        None => args.root.clone().unwrap_or_else(default_root),
    };
    if let Some(name) = &args.user {
        let password = std::env::var("FERRY_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty());
        if password.is_none() && args.authorized_keys.is_none() {
            bail!(
                "--user needs the password in the FERRY_PASSWORD environment variable, or keys with --authorized-keys"
            );
        }
        let keys = args.authorized_keys.clone().map(absolute);
        users.retain(|u| &u.name != name);
        users.push(quick_user(name, password.as_deref(), keys, &quick_root)?);
    } else if users.is_empty() && !anonymous {
        // Nothing configured: a generated user on a folder we create, printed below.
        let password = generate_password();
        users.push(quick_user("ferry", Some(&password), None, &quick_root)?);
        banner_credentials = Some(("ferry".to_string(), password));
    } else if args.root.is_some() || args.storage.is_some() {
        bail!(
            "--root and --storage apply to the --user (or generated) user; set `home` per user in the config file"
        );
    }
    let auth = Arc::new(Authenticator::new(users)?);

    // One listing cache for the homes of every protocol: its limit bounds the server.
    let listings = Arc::new(ferry_vfs::ListCache::new(
        file.storage
            .listing_cache_entries
            .unwrap_or(ferry_vfs::listcache::DEFAULT_LIMIT),
    ));
    // Each session holds a descriptor or a few; lift the soft limit to the hard one, and keep
    // the sessions within it.
    let nofile = ferry_sys::raise_nofile_limit().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not raise the open-file limit");
        ferry_sys::nofile_limit()
    });
    let asked_for = args.max_sessions.or(file.limits.max_sessions);
    match config.fit_open_file_limit(nofile) {
        Some(asked) if asked_for.is_some() => tracing::warn!(
            open_file_limit = nofile,
            max_sessions = config.max_sessions,
            asked,
            "max_sessions lowered to what the open-file limit carries; raise the limit (LimitNOFILE) for more"
        ),
        Some(_) => tracing::info!(
            open_file_limit = nofile,
            max_sessions = config.max_sessions,
            "sessions limited by the open-file limit"
        ),
        None => tracing::debug!(
            open_file_limit = nofile,
            max_sessions = config.max_sessions,
            "open-file limit"
        ),
    }
    // SFTP: where asked; on the quick default (no file, no --listen) beside FTPS.
    let sftp_listen = if !args.sftp_listen.is_empty() {
        args.sftp_listen.clone()
    } else if let Some(listen) = &file.sftp.listen {
        listen.clone()
    } else if args.config.is_none() && args.listen.is_empty() {
        vec![DEFAULT_SFTP_LISTEN]
    } else {
        Vec::new()
    };
    let state_dir = args
        .state_dir
        .clone()
        .or(file.state_dir.clone())
        .unwrap_or_else(default_state_dir);
    let sftp_config = {
        let mut c = ferry_sftpd::SftpConfig::new(absolute(state_dir));
        c.login_grace = config.login_timeout;
        c.idle_timeout = config.idle_timeout;
        c.limits.idle_timeout = config.idle_timeout;
        c.auth_rejection_time = config.login_failure_delay;
        c
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // One context for every protocol: the same users and files, one login throttle and
        // one set of session limits.
        let context = ferry_core::ServerContext::new(
            Arc::clone(&auth),
            ferry_core::with_s3(
                ferry_core::local_storage_with(listings),
                file.storage.s3.settings(args.s3_endpoint.as_deref()),
            ),
            ferry_core::SharedLimits {
                max_sessions: config.max_sessions,
                max_sessions_per_ip: config.max_sessions_per_ip,
                max_failed_logins_per_ip: config.max_failed_logins_per_ip,
                max_failed_logins_per_user: config.max_failed_logins_per_user,
                failed_login_window: config.failed_login_window,
            },
        );
        let server = Server::bind_in(config, Arc::clone(&context))?;
        for addr in server.local_addrs() {
            println!("ferry: listening on ftp://{addr}/");
        }
        let (sftp_stop, sftp_stopped) = tokio::sync::watch::channel(false);
        let mut sftp_addrs = Vec::new();
        let mut sftp_listeners = Vec::new();
        if !sftp_listen.is_empty() {
            let sftp = ferry_sftpd::SftpServer::new_in(sftp_config, Arc::clone(&context))
                .context("starting SFTP")?;
            let sftp = Arc::new(sftp);
            for addr in &sftp_listen {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen for SFTP on {addr}"))?;
                let bound = listener.local_addr()?;
                println!("ferry: listening on sftp://{bound}/");
                sftp_addrs.push(bound);
                let sftp = Arc::clone(&sftp);
                let mut stopped = sftp_stopped.clone();
                sftp_listeners.push(tokio::spawn(async move {
                    let stop = async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    };
                    if let Err(e) = sftp.serve(listener, stop).await {
                        tracing::error!(error = %e, "SFTP listener failed");
                    }
                }));
            }
            for key in sftp.host_keys() {
                println!("ferry: SFTP host key {key}");
            }
        }
        for addr in server.implicit_tls_addrs() {
            println!("ferry: listening on ftps://{addr}/ (implicit TLS)");
        }
        if let Some(t) = &tls {
            println!(
                "ferry: TLS {} with certificate {} (SHA-256 {})",
                policy_name(t.config.policy),
                t.cert_path.display(),
                t.config.certs.fingerprint()
            );
            tokio::spawn(reload_on_sighup(t.clone()));
        }
        if let Some((user, password)) = &banner_credentials {
            let addr = server.local_addrs().first().copied();
            println!(
                "ferry: serving {} as user '{user}' with password '{password}'",
                quick_root.display()
            );
            match (addr, &tls) {
                (Some(addr), Some(t)) => println!(
                    "ferry: try: curl --ssl-reqd --cacert {} ftp://{user}:{password}@{addr}/",
                    t.cert_path.display()
                ),
                (Some(addr), None) => println!("ferry: try: curl ftp://{user}:{password}@{addr}/"),
                _ => {}
            }
            if let Some(addr) = sftp_addrs.first() {
                let host = match addr.ip() {
                    std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                    ip => ip.to_string(),
                };
                println!("ferry: try: sftp -P {} {user}@{host}", addr.port());
            }
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        server
            .run(async {
                shutdown_signal().await;
                let _ = sftp_stop.send(true);
            })
            .await?;
        // SFTP sessions were told at the same time; those still running finish their
        // transfers (see SftpServer::serve).
        for listener in sftp_listeners {
            let _ = listener.await;
        }
        anyhow::Ok(())
    })?;
    Ok(())
}

/// The log filter `spec`, with rustls' notes on the server names clients send kept below
/// warnings unless `spec` says what to do with rustls: FTP clients given an IP address (lftp,
/// wget) send it as the TLS server name, which RFC 6066 does not allow and rustls warns about
/// at every connection, although nothing is wrong.
fn quiet_filter(spec: &str) -> EnvFilter {
    let filter = EnvFilter::new(spec);
    if spec.contains("rustls") {
        return filter;
    }
    match "rustls::msgs::handshake=error".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// Standard error for the log, with what clients chose (user names, paths, commands, errors
/// that quote them) unable to reorder, hide or forge what the log shows: every control,
/// bidirectional or invisible character is written as an escape (`\u{202e}`), as the
/// client shows server text. tracing-subscriber escapes ESC and a few other controls in field
/// values itself, so a raw ESC here is its own colouring, and stays, as do tab and the
/// newline that ends each event.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // One call per event: the formatter writes each event whole.
        let text = String::from_utf8_lossy(buf);
        let safe = ferry_proto::text::escaped(&text, |c| matches!(c, '\t' | '\n' | '\x1b'));
        std::io::stderr().lock().write_all(safe.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// `--tls` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum TlsPolicyArg {
    Off,
    Optional,
    Required,
}

impl From<TlsPolicyArg> for TlsPolicy {
    fn from(a: TlsPolicyArg) -> Self {
        match a {
            TlsPolicyArg::Off => TlsPolicy::Off,
            TlsPolicyArg::Optional => TlsPolicy::Optional,
            TlsPolicyArg::Required => TlsPolicy::Required,
        }
    }
}

fn policy_name(p: TlsPolicy) -> &'static str {
    match p {
        TlsPolicy::Off => "off",
        TlsPolicy::Optional => "optional",
        TlsPolicy::Required => "required",
    }
}

/// The server's TLS settings and where its certificate comes from (for SIGHUP reloads).
#[derive(Clone)]
struct TlsSetup {
    config: TlsConfig,
    cert_path: PathBuf,
    key_path: PathBuf,
}

/// Build the TLS settings: configured PEM files, or a self-signed certificate generated once
/// into the state directory. `None` when TLS is off.
fn prepare_tls(file: &FileConfig, args: &ServeArgs) -> anyhow::Result<Option<TlsSetup>> {
    let policy: TlsPolicy = args
        .tls
        .map(Into::into)
        .or(file.ftp.tls)
        .unwrap_or(TlsPolicy::Required);
    if policy == TlsPolicy::Off {
        return Ok(None);
    }
    let (cert_path, key_path) = match (&args.cert, &args.key, &file.ftp.tls_cert, &file.ftp.tls_key)
    {
        (Some(c), Some(k), _, _) | (None, None, Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let dir = args
                .state_dir
                .clone()
                .or(file.state_dir.clone())
                .unwrap_or_else(default_state_dir);
            let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
            if !c.exists() || !k.exists() {
                write_self_signed(&dir, &c, &k)?;
            }
            (c, k)
        }
    };
    // Printed (in the `curl` line, among others) and read again on SIGHUP: the same file from
    // any directory.
    let (cert_path, key_path) = (absolute(cert_path), absolute(key_path));
    let key = ferry_ftpd::tls::load_pem_files(&cert_path, &key_path)
        .with_context(|| format!("loading the TLS certificate {}", cert_path.display()))?;
    let mut config = TlsConfig::new(CertStore::new(key))?;
    config.policy = policy;
    config.require_session_reuse = file.ftp.tls_require_session_reuse.unwrap_or(true);
    config.exempt_anonymous = file.ftp.tls_exempt_anonymous.unwrap_or(false);
    config.allow_ccc = file.ftp.allow_ccc.unwrap_or(false);
    Ok(Some(TlsSetup {
        config,
        cert_path,
        key_path,
    }))
}

/// `path` made absolute against the current directory (left as it is if that is unknown).
fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

/// Generate a self-signed certificate for this host's loopback names into `dir`. A directory
/// made here gets a `.gitignore` that ignores it whole: `ferry serve` run in a checkout (the
/// default state directory is `./ferry-state`) must not offer its private key to `git add`.
fn write_self_signed(
    dir: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let ignore = dir.join(".gitignore");
        std::fs::write(
            &ignore,
            "# Made by ferry serve: generated state, never to be committed.\n*\n",
        )
        .with_context(|| format!("cannot write {}", ignore.display()))?;
    }
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from);
    let generated = ferry_ftpd::tls::generate_self_signed(&names)?;
    write_private(key, generated.key_pem.as_bytes())?;
    std::fs::write(cert, generated.cert_pem)
        .with_context(|| format!("cannot write {}", cert.display()))?;
    eprintln!(
        "ferry: generated a self-signed certificate in {}",
        absolute(dir.to_path_buf()).display()
    );
    Ok(())
}

/// Write a file readable only by its owner.
pub(crate) fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

/// Reload the certificate files on SIGHUP; sessions keep the certificate they started with.
async fn reload_on_sighup(tls: TlsSetup) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match ferry_ftpd::tls::load_pem_files(&tls.cert_path, &tls.key_path) {
            Ok(key) => {
                tls.config.certs.replace(key);
                tracing::info!(fingerprint = %tls.config.certs.fingerprint(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate reload failed; keeping the old one")
            }
        }
    }
}

fn quick_user(
    name: &str,
    password: Option<&str>,
    authorized_keys_file: Option<PathBuf>,
    root: &std::path::Path,
) -> anyhow::Result<UserSpec> {
    if !ferry_vfs::S3Config::is_s3_url(&root.to_string_lossy()) {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create {}", root.display()))?;
    }
    Ok(UserSpec {
        name: name.to_string(),
        password_hash: password.map(ferry_auth::hash_password),
        authorized_keys: Vec::new(),
        authorized_keys_file,
        home: root.to_path_buf(),
        permissions: vec!["all".to_string()],
    })
}

fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
