//! `ferry probe URL`: audit an FTP, FTPS or SFTP server without changing it, and judge each
//! finding ok, warning or risk. The exit status is the worst verdict: 0, 10 or 20; 1 when
//! the server could not be probed, 2 for bad usage.
//!
//! # Layout
//! - `report`: findings, verdicts, the table and JSON, the exit status.
//! - `ftp`: the FTP/FTPS checks (banner, FEAT, TLS, logins, data connections, bounce).
//! - `cert`: the certificate recorder and its validity dates.
//! - `sftp`: the SSH identification and KEXINIT algorithms.
//! - `ports`: what answers on the host's other well-known ports.

mod cert;
mod ftp;
mod ports;
mod report;
mod sftp;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use clap::Args;

use crate::client::RemoteUrl;
use crate::client::url::Scheme;
use report::Report;

/// `ferry probe` arguments.
#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// ftp://, ftpes://, ftps:// or sftp://[user[:pass]@]host[:port]. With a user (password
    /// from the URL or FERRY_PASSWORD) the session checks log in as that user; without one
    /// they try anonymous.
    url: String,
    /// Print the findings as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Verify the server's certificate against the CA certificates in this PEM file instead
    /// of the system's.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Check whether anonymous users may write by creating a uniquely named directory and
    /// removing it at once (otherwise that check is reported untested).
    #[arg(long)]
    allow_write_test: bool,
    /// The third address a bounce `PORT` names (default 127.0.0.3 for a loopback server,
    /// else 192.0.2.1). No transfer ever follows it.
    #[arg(long, value_name = "IP")]
    bounce_address: Option<IpAddr>,
    /// Other ports of the host to identify (FTP, SSH, implicit TLS, closed); comma-separated,
    /// empty for none.
    #[arg(
        long,
        value_name = "PORTS",
        value_delimiter = ',',
        default_value = "21,22,990"
    )]
    ports: Vec<String>,
    /// Seconds to wait for each connection, reply and data transfer.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    timeout: u64,
}

/// Run the probe; the exit status is the worst finding's.
pub(crate) fn run(args: ProbeArgs) -> ExitCode {
    let url = match RemoteUrl::parse(&args.url) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("ferry: error: {}", crate::client::printable(&e));
            return ExitCode::from(2);
        }
    };
    let roots = match &args.cacert {
        Some(path) => match ferry_client::tls::load_pem_certs(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ferry: error: {e}");
                return ExitCode::from(2);
            }
        },
        None => rustls_native_certs::load_native_certs().certs,
    };
    let ports = match args
        .ports
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u16>()
                .map_err(|_| format!("--ports: bad port '{p}'"))
        })
        .collect::<Result<Vec<u16>, String>>()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ferry: error: {}", crate::client::printable(&e));
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferry: error: {e}");
            return ExitCode::from(1);
        }
    };
    let mut report = Report::new(shown_url(&url));
    match runtime.block_on(probe(&url, &args, &ports, roots, &mut report)) {
        Ok(()) => {
            if args.json {
                println!("{}", report.json());
            } else {
                print!("{}", report.table());
            }
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            eprintln!(
                "ferry: error: probe failed: {}",
                crate::client::printable(&format!("{e:#}"))
            );
            ExitCode::from(1)
        }
    }
}

/// The URL without its password.
fn shown_url(url: &RemoteUrl) -> String {
    let scheme = match url.scheme {
        Scheme::Ftp => "ftp",
        Scheme::Ftpes => "ftpes",
        Scheme::Ftps => "ftps",
        Scheme::Sftp => "sftp",
    };
    let user = url
        .user
        .as_ref()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    format!("{scheme}://{user}{host}:{}", url.port)
}

async fn probe(
    url: &RemoteUrl,
    args: &ProbeArgs,
    ports: &[u16],
    roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    report: &mut Report,
) -> Result<()> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let addr = tokio::time::timeout(
        timeout,
        tokio::net::lookup_host((url.host.as_str(), url.port)),
    )
    .await
    .map_err(|_| anyhow!("resolving {} timed out", url.host))?
    .with_context(|| format!("resolving {}", url.host))?
    .next()
    .ok_or_else(|| anyhow!("{} has no address", url.host))?;
    if url.scheme == Scheme::Sftp {
        sftp::probe(addr, timeout, report).await?;
        ports::scan(addr, &url.host, ports, timeout, report).await;
        return Ok(());
    }
    let password = url.password.clone().or_else(|| {
        url.user.as_ref()?;
        std::env::var("FERRY_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
    });
    let target = ftp::Target {
        host: url.host.clone(),
        addr,
        implicit: url.scheme == Scheme::Ftps,
        require_tls: matches!(url.scheme, Scheme::Ftpes | Scheme::Ftps),
        user: url.user.clone(),
        password,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let settings = ftp::Settings {
        timeout,
        allow_write_test: args.allow_write_test,
        bounce: args.bounce_address,
        roots,
        now,
    };
    ftp::probe(&target, &settings, report).await?;
    ports::scan(addr, &url.host, ports, timeout, report).await;
    Ok(())
}
