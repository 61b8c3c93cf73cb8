//! `ferry serve`: quick flags for scripts and tests on top of `ferry.toml`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use ferry_auth::{AnonymousSpec, Authenticator, UserSpec};
use ferry_ftpd::{Server, local_storage};
use tracing_subscriber::EnvFilter;

use crate::config::{FileConfig, PortRange, default_root};

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
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Passive ports, inclusive, e.g. 30000-30099.
    #[arg(long, value_name = "LOW-HIGH")]
    passive_ports: Option<PortRange>,
    /// User name; the password comes from the FERRY_PASSWORD environment variable.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Also allow anonymous read-only logins, serving DIR.
    #[arg(long, value_name = "DIR")]
    anonymous_root: Option<PathBuf>,
    /// Log filter (tracing syntax), e.g. info, debug, ferry_ftpd=debug. RUST_LOG also works.
    #[arg(long, value_name = "FILTER", default_value = "info")]
    log: String,
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&args.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
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

    let mut users = file.users.clone();
    let mut anonymous = file.anonymous.clone();
    if let Some(dir) = &args.anonymous_root {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        anonymous = Some(AnonymousSpec { root: dir.clone() });
    }
    let mut banner_credentials = None;
    let quick_root = args.root.clone().unwrap_or_else(default_root);
    if let Some(name) = &args.user {
        let password = std::env::var("FERRY_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
            .context("--user needs the password in the FERRY_PASSWORD environment variable")?;
        users.retain(|u| &u.name != name);
        users.push(quick_user(name, &password, &quick_root)?);
    } else if users.is_empty() && anonymous.is_none() {
        // Nothing configured: a generated user on a folder we create, printed below.
        let password = generate_password();
        users.push(quick_user("ferry", &password, &quick_root)?);
        banner_credentials = Some(("ferry".to_string(), password));
    } else if args.root.is_some() {
        bail!(
            "--root applies to the --user (or generated) user; set `root` per user in the config file"
        );
    }
    let auth = Arc::new(Authenticator::new(users, anonymous)?);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let server = Server::bind(config, auth, local_storage())?;
        for addr in server.local_addrs() {
            println!("ferry: listening on ftp://{addr}/");
        }
        if let Some((user, password)) = &banner_credentials {
            let addr = server.local_addrs().first().copied();
            println!(
                "ferry: serving {} as user '{user}' with password '{password}'",
                quick_root.display()
            );
            if let Some(addr) = addr {
                println!("ferry: try: curl ftp://{user}:{password}@{addr}/");
            }
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        server.run(shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(())
}

fn quick_user(name: &str, password: &str, root: &std::path::Path) -> anyhow::Result<UserSpec> {
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    Ok(UserSpec {
        name: name.to_string(),
        password_hash: ferry_auth::hash_password(password),
        root: root.to_path_buf(),
        permissions: vec!["all".to_string()],
        tls: None,
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
