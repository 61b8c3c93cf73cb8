//! `ferry`: the command-line entry point.
//!
//! # Layout
//! - `config`: `ferry.toml` parsing and validation.
//! - `serve`: the `serve` subcommand (quick defaults, flags, startup banner, signals).
//! - `logformat`: `--log-format json`, the log as JSON lines.
//! - `lockdown`: who may serve, as which account, confined to what.
//! - `client`: the FTP client verbs (`ls`, `get`, `put`, `mirror`, `shell`, ...).
//! - `bench`: `ferry bench`, a load generator for FTP and SFTP servers on loopback.
//! - `manual`: `ferry completions` and `ferry man`, generated from this command line.
//! - `notify`: systemd's readiness protocol (`NOTIFY_SOCKET`).
//! - `reload`: what SIGHUP reloads in a running server (users, certificate).
//! - `probe`: `ferry probe URL`, a read-only security audit of an FTP, FTPS or SFTP server.

mod bench;
mod client;
mod config;
mod lockdown;
mod logformat;
mod manual;
mod notify;
mod observe;
mod probe;
mod reload;
mod serve;

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

/// Ferry: a secure, fast FTP server and client.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Run the FTP server. With no arguments: 127.0.0.1:2121, serving ./ferry-data with a
    /// generated password that is printed.
    Serve(Box<serve::ServeArgs>),
    /// Check a configuration file and report every problem with its line.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Generate a self-signed TLS certificate and key (PEM) and print its SHA-256 fingerprint.
    GenCert {
        /// Where to write the certificate.
        #[arg(long, value_name = "FILE", default_value = "cert.pem")]
        cert: PathBuf,
        /// Where to write the private key (mode 0600).
        #[arg(long, value_name = "FILE", default_value = "key.pem")]
        key: PathBuf,
        /// DNS name or IP address the certificate is for; repeatable.
        #[arg(long = "name", value_name = "NAME", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])]
        names: Vec<String>,
    },
    /// Print an argon2id hash of a password for `password_hash` in ferry.toml. The password is
    /// read from FERRY_PASSWORD or standard input.
    HashPassword,
    /// Measure an FTP or SFTP server on this machine (loopback only): throughput, logins/s,
    /// small transfers/s, large listings, idle-session memory, server and bench CPU.
    Bench(bench::BenchArgs),
    /// The minimal server `ferry bench --scenario ceiling` measures small downloads against.
    #[command(hide = true, name = "bench-minimal-peer")]
    BenchMinimalPeer {
        /// Bytes of each download.
        #[arg(long)]
        size: u64,
    },
    /// Audit an FTP, FTPS or SFTP server without changing it: a verdict (ok, warning, risk)
    /// per finding; exit status 0 all ok, 10 a warning, 20 a risk, 1 the probe failed.
    #[command(after_help = "Example: ferry probe ftpes://alice@ftp.example.org")]
    Probe(probe::ProbeArgs),
    #[command(flatten)]
    Client(client::ClientCommand),
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell, e.g.
    /// `ferry completions bash > /usr/share/bash-completion/completions/ferry`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on standard output, every subcommand included, e.g.
    /// `ferry man | man -l -`; with --dir, write ferry.1 and a page per subcommand there.
    Man {
        /// Write one page per subcommand (ferry.1, ferry-serve.1, ...) into DIR.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Serve(args) => serve::run(*args),
        Commands::CheckConfig { file } => check_config(&file),
        Commands::HashPassword => hash_password(),
        Commands::Bench(args) => bench::run(args),
        Commands::BenchMinimalPeer { size } => bench::minimal_peer(size),
        Commands::Client(cmd) => return client::run(cmd),
        Commands::Probe(args) => return probe::run(args),
        Commands::GenCert { cert, key, names } => gen_cert(&cert, &key, &names),
        Commands::Completions { shell } => manual::completions(shell, Cli::command()),
        Commands::Man { dir } => manual::man(Cli::command(), dir.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: error: {}", client::printable(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let cfg = config::FileConfig::load(file)?;
    cfg.server_config()?;
    if let Some(spec) = &cfg.run_as {
        ferry_sys::privilege::resolve_identity(spec).context("run_as")?;
    }
    ferry_auth::Authenticator::new(cfg.users.clone())?;
    for u in &cfg.users {
        let home = u.home.to_string_lossy();
        if ferry_vfs::S3Config::is_s3_url(&home) {
            if ferry_vfs::S3Config::from_url(&home).is_none() {
                anyhow::bail!("user '{}': {home} names no valid bucket", u.name);
            }
        } else if !u.home.is_dir() {
            eprintln!(
                "ferry: warning: user '{}': home {} is not a directory yet",
                u.name,
                u.home.display()
            );
        }
    }
    println!("{}: ok", file.display());
    Ok(())
}

fn gen_cert(cert: &std::path::Path, key: &std::path::Path, names: &[String]) -> anyhow::Result<()> {
    let generated = ferry_ftpd::tls::generate_self_signed(names)?;
    serve::write_private(key, generated.key_pem.as_bytes())?;
    std::fs::write(cert, &generated.cert_pem)?;
    let loaded = ferry_ftpd::tls::load_pem_files(cert, key)?;
    let fp = loaded
        .cert
        .first()
        .map(|c| ferry_ftpd::tls::fingerprint_sha256(c.as_ref()))
        .unwrap_or_default();
    println!("certificate: {}", cert.display());
    println!("private key: {}", key.display());
    println!("SHA-256 fingerprint: {fp}");
    Ok(())
}

fn hash_password() -> anyhow::Result<()> {
    let password = match std::env::var("FERRY_PASSWORD") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            if std::io::stdin().is_terminal() {
                eprint!("Password (input is shown; prefer FERRY_PASSWORD or a pipe): ");
            }
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if password.is_empty() {
        anyhow::bail!("empty password");
    }
    println!("{}", ferry_auth::hash_password(&password));
    Ok(())
}
