//! `ferry serve`: quick flags for scripts and tests on top of `ferry.toml`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use ferry_auth::{Authenticator, UserSpec};
use ferry_ftpd::{CertStore, Server, TlsConfig, TlsPolicy};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

use crate::config::{FileConfig, PortRange, default_root, default_state_dir};
use crate::logformat::{JsonLines, JsonWriter, LogFormat};
use crate::notify::Notifier;
use crate::reload::{Reloader, users_with};

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
    /// Most sessions one user may hold at once, every protocol together (0: no limit).
    #[arg(long, value_name = "N")]
    max_sessions_per_user: Option<usize>,
    /// Upload bandwidth of the whole server, every protocol, per second (e.g. 100MiB, 500kB).
    #[arg(long, value_name = "RATE", value_parser = rate_arg)]
    upload_rate: Option<u64>,
    /// Download bandwidth of the whole server, every protocol, per second.
    #[arg(long, value_name = "RATE", value_parser = rate_arg)]
    download_rate: Option<u64>,
    /// A client network (CIDR, or an address) the --user (or generated) user may log in
    /// from; repeatable. Without it: any.
    #[arg(long, value_name = "CIDR", value_parser = network_arg)]
    allowed_network: Vec<String>,
    /// Most bytes the --user's (or generated user's) files may hold (e.g. 10GiB; 0: none).
    #[arg(long, value_name = "SIZE", value_parser = size_arg)]
    quota_bytes: Option<u64>,
    /// Most files the --user (or generated user) may hold (0: none).
    #[arg(long, value_name = "N")]
    quota_files: Option<u64>,
    /// Directory for generated state (self-signed certificate). Default ./ferry-state.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Require a PROXY protocol (v1/v2) header from these balancers on every listener, and
    /// refuse other connections; repeatable (CIDR, e.g. 10.0.0.0/24, 127.0.0.1/32).
    #[arg(long, value_name = "CIDR")]
    proxy_protocol_from: Vec<ipnet::IpNet>,
    /// Serve Prometheus metrics (/metrics), health (/healthz) and the status page (/) here,
    /// e.g. 127.0.0.1:9100.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_listen: Option<SocketAddr>,
    /// Started as root: serve as this account (USER or USER:GROUP) once the ports are bound
    /// and the keys loaded.
    #[arg(long, value_name = "USER[:GROUP]")]
    run_as: Option<String>,
    /// Started as root without --run-as: serve as root all the same.
    #[arg(long)]
    allow_root: bool,
    /// Log filter (tracing syntax), e.g. info, debug, ferry_ftpd=debug. RUST_LOG also works.
    #[arg(long, value_name = "FILTER", default_value = "info")]
    log: String,
    /// Log as text (default) or as one JSON object per line (security events carry `event`).
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// Append one xferlog(5) line per finished or aborted transfer (FTP and SFTP) to FILE;
    /// reopened on SIGHUP and when moved.
    #[arg(long, value_name = "FILE")]
    xferlog: Option<PathBuf>,
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Buffers of 1 MiB and more (S3 parts, large listings) go back to the system when freed.
    ferry_sys::map_large_allocations(1 << 20);
    // Read again on SIGHUP, from the same file whatever the directory then.
    let config_path = args.config.clone().map(absolute);
    let file = match &config_path {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|f| !f.is_empty() && EnvFilter::try_new(f).is_ok())
        .unwrap_or_else(|| args.log.clone());
    let filter = quiet_filter(&spec);
    match args.log_format.or(file.log_format).unwrap_or_default() {
        LogFormat::Text => {
            use std::io::IsTerminal;
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(|| LogWriter)
                .init();
        }
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(JsonLines)
            .with_writer(|| JsonWriter)
            .init(),
    }
    let xferlog = args.xferlog.clone().or(file.xferlog.clone()).map(absolute);

    let mut config = file.server_config()?;
    // The embedded default (no configuration file, no listen address given) serves loopback
    // only, a folder it makes: the one run that needs no account chosen first, so that
    // `ferry serve` works on a fresh machine whoever starts it. Anything configured must say
    // which account to serve as.
    let embedded_default = args.config.is_none()
        && args.listen.is_empty()
        && args.sftp_listen.is_empty()
        && args.implicit_tls_listen.is_empty();
    let allow_root = args.allow_root || file.allow_root.unwrap_or(false);
    let mut lock = crate::lockdown::Settings {
        run_as: args.run_as.clone().or(file.run_as.clone()),
        allow_root: allow_root || embedded_default,
        landlock: file.landlock.unwrap_or(true),
        seccomp: file.seccomp.unwrap_or(true),
        ..Default::default()
    };
    let identity = crate::lockdown::check(&lock)?;
    if identity.is_none()
        && !allow_root
        && lock.run_as.is_none()
        && ferry_sys::privilege::effective_uid() == 0
    {
        tracing::warn!(
            "serving the loopback-only default as root (confined to its folders); a configured server needs run_as (--run-as) or allow_root"
        );
    }
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
    if let Some(n) = args.max_sessions_per_user {
        config.max_sessions_per_user = n;
    }
    if let Some(rate) = args.upload_rate {
        config.upload_rate = Some(rate);
    }
    if let Some(rate) = args.download_rate {
        config.download_rate = Some(rate);
    }
    let (quota_bytes, quota_files) = file.quota_defaults()?;
    if !args.proxy_protocol_from.is_empty() {
        config.proxy = ferry_core::ProxyTrust::new(args.proxy_protocol_from.clone());
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

    if let Some(dir) = &args.anonymous_root {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        config.anonymous_home = Some(dir.clone());
    }
    let anonymous = config.anonymous_home.is_some();
    let mut banner_credentials = None;
    // The --user (or generated) user, kept as it is now through reloads.
    let mut quick = None;
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
        quick = Some(quick_user(name, password.as_deref(), keys, &quick_root)?);
    } else if file.users.is_empty() && !anonymous {
        // Nothing configured: a generated user on a folder we create, printed below.
        let password = generate_password();
        quick = Some(quick_user("ferry", Some(&password), None, &quick_root)?);
        banner_credentials = Some(("ferry".to_string(), password));
    } else if args.root.is_some() || args.storage.is_some() {
        bail!(
            "--root and --storage apply to the --user (or generated) user; set `home` per user in the config file"
        );
    }
    match &mut quick {
        Some(user) => {
            user.allowed_networks = args.allowed_network.clone();
            user.quota_bytes = args.quota_bytes.map(ferry_auth::SizeValue::Bytes);
            user.quota_files = args.quota_files;
        }
        None if !args.allowed_network.is_empty()
            || args.quota_bytes.is_some()
            || args.quota_files.is_some() =>
        {
            bail!(
                "--allowed-network, --quota-bytes and --quota-files apply to the --user (or generated) user; set them per user in the config file"
            );
        }
        None => {}
    }
    let users = users_with(file.users.clone(), quick.as_ref());
    // The home `/healthz` checks the storage with.
    let probe_home = users
        .first()
        .map(|u| u.home.clone())
        .or(config.anonymous_home.clone());
    let auth_homes_on_s3 = users
        .iter()
        .any(|u| u.home.to_string_lossy().starts_with("s3://"));
    // Homes on disk (an `s3://` home is reached over the network, not through a path).
    let homes: Vec<PathBuf> = users
        .iter()
        .filter(|u| !u.home.to_string_lossy().starts_with("s3://"))
        .map(|u| absolute(u.home.clone()))
        .collect();
    // Read again on SIGHUP: the keys files of every user.
    let keys_files: Vec<PathBuf> = users
        .iter()
        .filter_map(|u| u.authorized_keys_file.clone())
        .map(absolute)
        .collect();
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
        let mut c = ferry_sftpd::SftpConfig::new(absolute(state_dir.clone()));
        c.login_grace = config.login_timeout;
        c.idle_timeout = config.idle_timeout;
        c.limits.idle_timeout = config.idle_timeout;
        c.auth_rejection_time = config.login_failure_delay;
        c.proxy = config.proxy.clone();
        c
    };
    // Everything that needs privilege or reads what the account served as may not read
    // happens here, on this one thread: binding, keys. Then the lock-down, then the runtime,
    // whose threads inherit it.
    let ftp_listeners = ferry_ftpd::Listeners::bind(&config)?;
    let mut sftp_sockets = Vec::new();
    for addr in &sftp_listen {
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("cannot listen for SFTP on {addr}"))?;
        listener.set_nonblocking(true)?;
        sftp_sockets.push(listener);
    }
    // One context for every protocol: the same users and files, one login throttle and
    // one set of session limits.
    let context = ferry_core::ServerContext::new(
        auth,
        ferry_core::with_s3(
            ferry_core::local_storage_with(listings),
            file.storage.s3.settings(args.s3_endpoint.as_deref()),
        ),
        ferry_core::SharedLimits {
            max_sessions: config.max_sessions,
            max_sessions_per_ip: config.max_sessions_per_ip,
            max_sessions_per_user: config.max_sessions_per_user,
            upload_rate: config.upload_rate,
            download_rate: config.download_rate,
            max_failed_logins_per_ip: config.max_failed_logins_per_ip,
            max_failed_logins_per_user: config.max_failed_logins_per_user,
            failed_login_window: config.failed_login_window,
            quota_bytes,
            quota_files,
            ..ferry_core::SharedLimits::default()
        },
    );
    let sftp = if sftp_sockets.is_empty() {
        None
    } else {
        let sftp = ferry_sftpd::SftpServer::new_in(sftp_config, Arc::clone(&context))
            .context("starting SFTP")?;
        Some(Arc::new(sftp))
    };
    lock.keep_bind_service = config.active_source_port_minus_one
        && ftp_listeners.local_addrs().iter().any(|a| a.port() <= 1024);
    lock.read_write = homes;
    // Only what was generated at start lives there: one never made is not needed later.
    if state_dir.exists() {
        lock.read_write.push(absolute(state_dir.clone()));
    }
    lock.read_only
        .extend(config.anonymous_home.clone().map(absolute));
    if let Some(t) = &tls {
        lock.read_only.push(t.cert_path.clone());
        lock.read_only.push(t.key_path.clone());
    }
    // Homes in a bucket: the store's name is resolved and its certificate checked after
    // the lock-down, with the system's files for both.
    let on_s3 = auth_homes_on_s3 || args.storage.is_some();
    if on_s3 {
        for path in [
            "/etc/ssl",
            "/etc/pki",
            "/usr/share/ca-certificates",
            // Local authorities: /etc/ssl/certs links point here.
            "/usr/local/share/ca-certificates",
            "/etc/ca-certificates",
            "/etc/resolv.conf",
            "/etc/hosts",
            "/etc/nsswitch.conf",
            "/etc/gai.conf",
        ] {
            let path = PathBuf::from(path);
            if path.exists() {
                lock.read_only.push(path);
            }
        }
    }
    // What a reload reads again, and where the transfer log is reopened after rotation.
    // Files are replaced by renaming a new one over them (editors, certbot's links), which
    // a rule on the file itself would not follow: their directories are readable instead.
    let mut reread: Vec<PathBuf> = Vec::new();
    if let Some(t) = &tls {
        reread.push(t.cert_path.clone());
        reread.push(t.key_path.clone());
    }
    reread.extend(config_path.clone());
    reread.extend(keys_files);
    for file in reread {
        let target = std::fs::canonicalize(&file).ok();
        for path in std::iter::once(file).chain(target) {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                lock.read_only.push(dir.to_path_buf());
            }
        }
    }
    if let Some(dir) = xferlog.as_ref().and_then(|p| p.parent()) {
        lock.read_write.push(dir.to_path_buf());
    }
    crate::lockdown::apply(&lock, identity)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Caught from here on, before any address is printed or readiness told: a reload or
        // a stop asked for as soon as the server answers is never the default action (which
        // ends the process).
        let hangup = signal(SignalKind::hangup()).context("cannot catch SIGHUP")?;
        let shutdown = shutdown_signal().context("cannot catch SIGTERM")?;
        if let Some(path) = &xferlog {
            context
                .transfer_log
                .open(path)
                .with_context(|| format!("cannot open the transfer log {}", path.display()))?;
            tokio::spawn(reopen_on_sighup(context.transfer_log.clone()));
        }
        let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let Some(addr) = args.metrics_listen.or(file.metrics.listen) {
            let listener = crate::observe::bind(addr).await?;
            println!(
                "ferry: metrics on http://{}/metrics",
                listener.local_addr()?
            );
            let observer = crate::observe::Observer::new(
                Arc::clone(&context),
                Arc::clone(&draining),
                crate::observe::health_probe(&context, probe_home),
                crate::observe::basic_auth(&file.metrics)?,
            );
            tokio::spawn(crate::observe::serve(listener, observer));
        }
        let server = Server::with_listeners(config, Arc::clone(&context), ftp_listeners)?;
        let mut serving = Vec::new();
        for addr in server.local_addrs() {
            println!("ferry: listening on ftp://{addr}/");
            serving.push(format!("ftp://{addr}"));
        }
        let (sftp_stop, sftp_stopped) = tokio::sync::watch::channel(false);
        let mut sftp_addrs = Vec::new();
        let mut sftp_listeners = Vec::new();
        if let Some(sftp) = sftp {
            for listener in sftp_sockets {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let bound = listener.local_addr()?;
                println!("ferry: listening on sftp://{bound}/");
                serving.push(format!("sftp://{bound}"));
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
            serving.push(format!("ftps://{addr}"));
        }
        if let Some(t) = &tls {
            println!(
                "ferry: TLS {} with certificate {} (SHA-256 {})",
                policy_name(t.config.policy),
                t.cert_path.display(),
                t.config.certs.fingerprint()
            );
        }
        let notifier = Notifier::from_env().map(Arc::new);
        let status = format!("serving {}", serving.join(" "));
        tokio::spawn(
            Reloader::new(
                config_path,
                quick,
                tls.clone(),
                Arc::clone(&context),
                notifier.clone(),
                status.clone(),
            )
            .run(hangup),
        );
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
        if let Some(n) = &notifier {
            n.ready(&status);
        }
        server
            .run(async {
                shutdown.await;
                draining.store(true, std::sync::atomic::Ordering::Relaxed);
                if let Some(n) = &notifier {
                    n.stopping();
                }
                let _ = sftp_stop.send(true);
            })
            .await?;
        // SFTP sessions were told at the same time; those still running finish their
        // transfers (see SftpServer::serve).
        for listener in sftp_listeners {
            let _ = listener.await;
        }
        context.transfer_log.flush(TRANSFER_LOG_FLUSH);
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
pub(crate) struct TlsSetup {
    pub(crate) config: TlsConfig,
    pub(crate) cert_path: PathBuf,
    pub(crate) key_path: PathBuf,
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

/// How long an exiting server waits for the transfer log to reach the disk.
const TRANSFER_LOG_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// Reopen the transfer log by its path on SIGHUP (after `logrotate` has moved it).
async fn reopen_on_sighup(log: ferry_core::TransferLog) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        log.reopen();
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
        max_sessions: None,
        allowed_networks: Vec::new(),
        upload_rate: None,
        download_rate: None,
        quota_bytes: None,
        quota_files: None,
    })
}

/// `--upload-rate` and `--download-rate`: bytes per second with a unit.
fn rate_arg(text: &str) -> Result<u64, String> {
    ferry_auth::parse_rate(text)
        .ok_or_else(|| format!("'{text}' is not a rate (e.g. 100MiB, 500kB: bytes per second)"))
}

/// `--quota-bytes`: a size with a unit (0 or none: no quota).
fn size_arg(text: &str) -> Result<u64, String> {
    ferry_auth::parse_size(text)
        .ok_or_else(|| format!("'{text}' is not a size (e.g. 10GiB, 500MB, a number of bytes)"))
}

/// `--allowed-network`: a CIDR network or a single address.
fn network_arg(text: &str) -> Result<String, String> {
    let ok = text.parse::<ipnet::IpNet>().is_ok() || text.parse::<std::net::IpAddr>().is_ok();
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "'{text}' is not a network (CIDR, e.g. 192.0.2.0/24) nor an address"
        ))
    }
}

fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// SIGTERM or SIGINT (Ctrl-C), caught from the moment this is called.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
