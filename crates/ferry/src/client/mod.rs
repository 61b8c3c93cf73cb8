//! The client verbs of `ferry`: `ls`, `get`, `put`, `cat`, `rm`, `mkdir`, `rmdir`, `mv`,
//! `quote`, `mirror` and `shell`, on top of `ferry-client`, over FTP/FTPS and SFTP.
//!
//! # Layout
//! - `url`: `ftp://`, `ftpes://`, `ftps://` and `sftp://` URL parsing.
//! - `netrc`: a `~/.netrc` reader.
//! - `remote`: [`Remote`](remote::Remote), an FTP or SFTP session behind the operations the
//!   verbs use.
//! - `transfer`: get/put/cat with progress, size check, checksum and resume.
//! - `mirror`: recursive copy in both directions over several connections.
//! - `shell`: the interactive session.
//!
//! Exit codes come from [`ferry_client::Error::exit_code`] (see docs/client.md).

mod mirror;
mod netrc;
mod remote;
mod shell;
mod transfer;
pub(crate) mod url;

use std::io::{IsTerminal, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use ferry_client::sftp::{Ask, HostKeyError, HostKeyPolicy};
use ferry_client::tls::{TlsClientConfig, TlsMode, Trust};
use ferry_client::{
    Client, ConnectOptions, Dialogue, EntryKind, Error, Mode, ParsedEntry, SftpClient, SftpOptions,
    SshAuth,
};

use remote::Remote;
pub(crate) use url::RemoteUrl;
use url::Scheme;

/// `--tls`: whether an `ftp://` URL's connection uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TlsFlag {
    /// AUTH TLS, or fail (as ftpes://).
    Required,
    /// AUTH TLS when the server lists it in FEAT, else clear text.
    Auto,
    /// Clear text.
    Off,
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// Flags shared by every client verb.
#[derive(Debug, Clone, Args)]
pub(crate) struct ClientArgs {
    /// Data connections: auto (EPSV, falling back to PASV), passive (PASV; EPSV on IPv6),
    /// epsv, or active (PORT on IPv4, EPRT on IPv6).
    #[arg(long, value_name = "MODE", default_value = "auto")]
    mode: Mode,
    /// In active mode, the local IP the server connects to (default: the control
    /// connection's local address).
    #[arg(long, value_name = "IP")]
    active_addr: Option<IpAddr>,
    /// Connect to the address in a PASV (227) reply even when it is private or unspecified
    /// and differs from the server's (default: use the server's address).
    #[arg(long)]
    trust_pasv_address: bool,
    /// User name (overrides ~/.netrc; the URL's user wins over both).
    #[arg(long, short = 'u', value_name = "NAME")]
    user: Option<String>,
    /// Read credentials from this file instead of ~/.netrc.
    #[arg(long, value_name = "FILE")]
    netrc_file: Option<PathBuf>,
    /// For ftp:// URLs: required (AUTH TLS or fail), auto (AUTH TLS when FEAT offers it) or
    /// off (clear text, the default). ftpes:// and ftps:// always require TLS.
    #[arg(long, value_name = "WHEN")]
    tls: Option<TlsFlag>,
    /// Trust the CA certificates in this PEM file (instead of the system's) for the
    /// server's certificate.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["pin_sha256", "insecure"])]
    cacert: Option<PathBuf>,
    /// Accept exactly the server certificate with this SHA-256 fingerprint (AB:CD:... or
    /// hex), whoever signed it; repeatable.
    #[arg(
        long = "pin-sha256",
        value_name = "FINGERPRINT",
        conflicts_with = "insecure"
    )]
    pin_sha256: Vec<String>,
    /// Don't verify the server's certificate (FTPS) or host key (SFTP) at all: the
    /// connection is still encrypted, but anyone on the path can pose as the server.
    #[arg(long, short = 'k')]
    insecure: bool,
    /// For sftp:// URLs: a private key to log in with (repeatable); tried before the
    /// agent's keys and ~/.ssh/id_ed25519, id_ecdsa, id_rsa.
    #[arg(long = "identity", short = 'i', value_name = "FILE")]
    identity: Vec<PathBuf>,
    /// For sftp:// URLs: accept the server's host key if its fingerprint is this one (as
    /// printed by `ferry serve` or `ssh-keygen -lf`), and record it in ~/.ssh/known_hosts.
    #[arg(long, value_name = "SHA256:...", conflicts_with = "insecure")]
    accept_host_key: Option<String>,
    /// Seconds to connect (control and data connections).
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    connect_timeout: u64,
    /// Seconds to wait for a reply, or for data on a silent data connection.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    timeout: u64,
    /// Print the control dialogue to standard error (`> RETR x` / `< 150 ...`), the password
    /// masked.
    #[arg(long, short = 'v')]
    verbose: bool,
    /// No progress bars or notes; errors only.
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// The client verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum ClientCommand {
    /// List a remote directory (MLSD when offered, else LIST; READDIR over SFTP).
    #[command(after_help = "Example: ferry ls -l ftp://alice@example.org/pub/")]
    Ls {
        /// ftp://[user[:pass]@]host[:port]/path (ftpes:// or ftps:// for TLS, sftp:// for SFTP)
        url: String,
        /// Long form: type, size, modification time (UTC), name.
        #[arg(short = 'l', long)]
        long: bool,
        /// JSON array of {name, type, size, mtime, modified, target}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: ClientArgs,
    },
    /// Download a file.
    #[command(after_help = "Example: ferry get -c ftp://example.org/pub/big.iso -o big.iso")]
    Get {
        /// ftp://[user[:pass]@]host[:port]/path/file (ftpes:// or ftps:// for TLS, sftp:// for SFTP)
        url: String,
        /// Local file (default: the remote file's name in the current directory; - for stdout).
        #[arg(short = 'o', long, value_name = "LOCAL")]
        output: Option<PathBuf>,
        /// Resume: continue a partial local file (REST; over SFTP, reads from its length),
        /// reconnecting if the connection drops.
        #[arg(short = 'c', long = "continue")]
        resume: bool,
        /// Verify with the server's HASH/XSHA256/XSHA512/XMD5 when offered.
        #[arg(long)]
        checksum: bool,
        #[command(flatten)]
        common: ClientArgs,
    },
    /// Upload a file.
    #[command(after_help = "Example: ferry put report.pdf ftp://alice@example.org/inbox/")]
    Put {
        /// The local file.
        local: PathBuf,
        /// ftp://... or sftp://... target; a URL ending in / names a directory and keeps the
        /// file's name.
        url: String,
        /// Resume: send the part the server does not have yet (APPE; over SFTP, written at
        /// its offsets).
        #[arg(short = 'c', long = "continue", conflicts_with = "append")]
        resume: bool,
        /// Append to the remote file (APPE).
        #[arg(long)]
        append: bool,
        /// Verify with the server's HASH/XSHA256/XSHA512/XMD5 when offered.
        #[arg(long)]
        checksum: bool,
        #[command(flatten)]
        common: ClientArgs,
    },
    /// Print a remote file on standard output.
    Cat {
        /// ftp://... or sftp://... file
        url: String,
        #[command(flatten)]
        common: ClientArgs,
    },
    /// Delete a remote file.
    Rm {
        /// ftp://... or sftp://... file
        url: String,
        #[command(flatten)]
        common: ClientArgs,
    },
    /// Create a remote directory.
    Mkdir {
        /// ftp://... or sftp://... directory
        url: String,
        /// Create missing parents too; no error if it exists.
        #[arg(short = 'p', long)]
        parents: bool,
        #[command(flatten)]
        common: ClientArgs,
    },
    /// Remove an empty remote directory.
    Rmdir {
        /// ftp://... or sftp://... directory
        url: String,
        #[command(flatten)]
        common: ClientArgs,
    },
    /// Rename or move a remote file or directory.
    #[command(after_help = "NEWNAME without '/' stays in the same directory.")]
    Mv {
        /// ftp://... or sftp://... the file or directory
        url: String,
        /// The new name or path.
        newname: String,
        #[command(flatten)]
        common: ClientArgs,
    },
    /// Send raw commands (after login and, if the URL has a path, CWD to it) and print the
    /// replies.
    #[command(after_help = "Example: ferry quote ftp://example.org/ 'SITE HELP' 'STAT'")]
    Quote {
        /// ftp://... server (and optional directory)
        url: String,
        /// Command lines, e.g. 'SITE CHMOD 644 f'.
        #[arg(required = true)]
        commands: Vec<String>,
        #[command(flatten)]
        common: ClientArgs,
    },
    /// Copy a directory tree: the contents of the source go into the target (created).
    /// Only changed files (size, modification time) are transferred.
    #[command(
        after_help = "Examples:\n  ferry mirror ftp://example.org/pub/ ./pub\n  ferry mirror --reverse ./site ftp://alice@example.org/www/"
    )]
    Mirror {
        /// Source: a URL, or with --reverse a local directory.
        source: String,
        /// Target: a local directory, or with --reverse a URL.
        target: String,
        /// Upload: LOCALDIR to URL.
        #[arg(short = 'R', long)]
        reverse: bool,
        /// Delete target files and directories that are not in the source.
        #[arg(long)]
        delete: bool,
        /// Transfer over N connections at once.
        #[arg(long, short = 'P', value_name = "N", default_value_t = 1)]
        parallel: usize,
        #[command(flatten)]
        common: ClientArgs,
    },
    /// An interactive session like the classic ftp command (reads commands from standard
    /// input when it is not a terminal).
    Shell {
        /// ftp://... or sftp://... server (and optional starting directory)
        url: String,
        #[command(flatten)]
        common: ClientArgs,
    },
}

/// How to open a logged-in session, again and again (reconnect, parallel mirror).
#[derive(Clone, Debug)]
pub(crate) enum Connector {
    Ftp(FtpConnector),
    Sftp(SftpConnector),
}

impl Connector {
    /// Connect and log in.
    pub(crate) async fn open(&self) -> Result<Remote> {
        match self {
            Connector::Ftp(c) => Ok(Remote::Ftp(Box::new(c.open().await?))),
            Connector::Sftp(c) => Ok(Remote::Sftp(Box::new(c.open().await?))),
        }
    }
}

/// An SFTP server and the credentials for it (keys and a password that worked are kept for
/// the next connection).
#[derive(Clone, Debug)]
pub(crate) struct SftpConnector {
    host: String,
    port: u16,
    auth: SshAuth,
    opts: SftpOptions,
}

impl SftpConnector {
    async fn open(&self) -> Result<SftpClient> {
        SftpClient::connect(&self.host, self.port, &self.auth, self.opts.clone()).await
    }
}

/// An FTP server and the credentials for it.
#[derive(Clone)]
pub(crate) struct FtpConnector {
    authority: String,
    user: String,
    password: String,
    opts: ConnectOptions,
    quiet: bool,
    /// The "no TLS" note of `--tls auto` was printed (once per run).
    noted_plain: Arc<AtomicBool>,
}

impl std::fmt::Debug for FtpConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FtpConnector")
            .field("authority", &self.authority)
            .field("user", &self.user)
            .field("password", &"****")
            .finish()
    }
}

impl FtpConnector {
    /// Connect and log in.
    pub(crate) async fn open(&self) -> Result<Client> {
        let mut c = Client::connect(self.authority.as_str(), self.opts.clone()).await?;
        if self.opts.tls == TlsMode::Auto
            && !c.is_tls()
            && !self.quiet
            && !self.noted_plain.swap(true, Ordering::Relaxed)
        {
            eprintln!(
                "ferry: note: the server does not offer TLS: the password and files cross in clear text"
            );
        }
        c.login(&self.user, &self.password).await?;
        Ok(c)
    }
}

/// `text` as it may be shown on a terminal: control characters, which a hostile server could
/// use to move the cursor, retitle the window, clear the screen or hide what follows, and the
/// bidirectional overrides and invisible characters that make a name read as another, are
/// shown as escapes (`\x1b`, `\u{202e}`). Everything a server chose (replies, file names from
/// listings, the messages built from them) goes through here on its way to the terminal; the
/// JSON listing escapes them itself, and file contents (`cat`, `get -o -`) are data and pass
/// untouched.
pub(crate) fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    ferry_proto::text::printable(text)
}

/// A reply's lines as the server sent them, each through [`printable`] (for `-v` and `quote`).
pub(crate) fn printable_reply(reply: &ferry_client::Reply) -> Vec<String> {
    String::from_utf8_lossy(&reply.to_bytes())
        .lines()
        .map(|line| printable(line).into_owned())
        .collect()
}

/// What to print besides results.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ui {
    pub(crate) quiet: bool,
    pub(crate) progress: bool,
}

impl Ui {
    /// A note on standard error, unless quiet.
    pub(crate) fn note(&self, msg: &str) {
        if !self.quiet {
            eprintln!("ferry: {}", printable(msg));
        }
    }

    /// A progress bar (bytes, rate, ETA) when standard error is a terminal.
    pub(crate) fn bar(&self, total: Option<u64>, label: &str) -> Option<indicatif::ProgressBar> {
        if !self.progress {
            return None;
        }
        let bar = match total {
            Some(t) => indicatif::ProgressBar::new(t),
            None => indicatif::ProgressBar::no_length(),
        };
        let style = indicatif::ProgressStyle::with_template(
            "{msg:20!} {bytes:>10}/{total_bytes:10} {binary_bytes_per_sec:>12} eta {eta:>4} [{wide_bar}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style.progress_chars("=> "));
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_message(printable(label).into_owned());
        Some(bar)
    }
}

impl ClientArgs {
    fn ui(&self) -> Ui {
        Ui {
            quiet: self.quiet,
            progress: !self.quiet && std::io::stderr().is_terminal(),
        }
    }

    /// The TLS mode for `url`: its scheme, and `--tls` for `ftp://`.
    fn tls_mode(&self, url: &RemoteUrl) -> Result<TlsMode> {
        let mode = match (url.scheme, self.tls) {
            (Scheme::Ftp, None | Some(TlsFlag::Off)) => TlsMode::Off,
            (Scheme::Ftp, Some(TlsFlag::Auto)) => TlsMode::Auto,
            (Scheme::Ftp, Some(TlsFlag::Required)) => TlsMode::Explicit,
            (Scheme::Ftpes, None | Some(TlsFlag::Required)) => TlsMode::Explicit,
            (Scheme::Ftps, None | Some(TlsFlag::Required)) => TlsMode::Implicit,
            (Scheme::Sftp, _) => {
                return Err(Error::Usage(
                    "sftp:// URLs use SSH, not TLS: --tls does not apply".into(),
                ));
            }
            (_, Some(flag)) => {
                return Err(Error::Usage(format!(
                    "--tls {} contradicts the URL: ftpes:// and ftps:// always use TLS",
                    flag.to_possible_value()
                        .map_or_else(String::new, |v| v.get_name().to_string())
                )));
            }
        };
        if mode == TlsMode::Off
            && (self.cacert.is_some() || !self.pin_sha256.is_empty() || self.insecure)
        {
            return Err(Error::Usage(
                "--cacert, --pin-sha256 and --insecure need TLS: use an ftpes:// or ftps:// URL, or --tls required"
                    .into(),
            ));
        }
        Ok(mode)
    }

    /// Whom to trust, from `--cacert`, `--pin-sha256`, `--insecure` (default: the system's
    /// root certificates).
    fn trust(&self) -> Result<Trust> {
        if self.insecure {
            // Said even with -q: the user should not forget it is on.
            eprintln!(
                "ferry: WARNING: --insecure: the server's certificate is not verified; anyone on the \
                 network path can pose as the server and read the password and files"
            );
            return Ok(Trust::Insecure);
        }
        if !self.pin_sha256.is_empty() {
            let pins = self
                .pin_sha256
                .iter()
                .map(|p| ferry_client::tls::parse_fingerprint(p))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(Error::Usage)?;
            return Ok(Trust::Pins(pins));
        }
        if let Some(file) = &self.cacert {
            return Ok(Trust::Roots(ferry_client::tls::load_pem_certs(file)?));
        }
        Ok(Trust::System)
    }

    /// With `-v`: prints the dialogue on standard error.
    fn observer(&self) -> Option<ferry_client::Observer> {
        self.verbose.then(|| {
            Arc::new(|step: Dialogue<'_>| {
                let mut err = std::io::stderr().lock();
                match step {
                    Dialogue::Sent(line) => {
                        let _ = writeln!(err, "> {}", printable(line));
                    }
                    Dialogue::Received(reply) => {
                        for line in printable_reply(reply) {
                            let _ = writeln!(err, "< {line}");
                        }
                    }
                    Dialogue::Note(note) => {
                        let _ = writeln!(err, "* {}", printable(note));
                    }
                }
            }) as ferry_client::Observer
        })
    }

    fn options(&self, url: &RemoteUrl) -> Result<ConnectOptions> {
        let tls = self.tls_mode(url)?;
        let tls_config = match tls {
            TlsMode::Off => None,
            _ => match self.trust()? {
                // Loaded by the client when it starts TLS: `--tls auto` against a server
                // without TLS needs no roots.
                Trust::System => None,
                trust => Some(TlsClientConfig::new(trust)?),
            },
        };
        let observer = self.observer();
        Ok(ConnectOptions {
            mode: self.mode,
            active_addr: self.active_addr,
            trust_pasv_address: self.trust_pasv_address,
            connect_timeout: Duration::from_secs(self.connect_timeout.max(1)),
            data_timeout: Duration::from_secs(self.connect_timeout.max(1)),
            reply_timeout: Duration::from_secs(self.timeout.max(1)),
            idle_timeout: Duration::from_secs(self.timeout.max(1)),
            observer,
            tls,
            tls_config,
            server_name: Some(url.host.clone()),
            ..ConnectOptions::default()
        })
    }

    /// How to connect to `url`'s server and log in.
    fn connector(&self, url: &RemoteUrl) -> Result<Connector> {
        if url.scheme == Scheme::Sftp {
            return Ok(Connector::Sftp(self.sftp_connector(url)?));
        }
        if !self.identity.is_empty() || self.accept_host_key.is_some() {
            return Err(Error::Usage(
                "-i/--identity and --accept-host-key are for sftp:// URLs".into(),
            ));
        }
        Ok(Connector::Ftp(self.ftp_connector(url)?))
    }

    /// SFTP: the user from the URL, `--user`, `~/.netrc` or the local login name; the
    /// password from the URL, `FERRY_PASSWORD` or `~/.netrc`, else asked on a terminal when
    /// no key was accepted; keys from `-i`, ssh-agent and `~/.ssh/id_*`; the host key checked
    /// against `~/.ssh/known_hosts`.
    fn sftp_connector(&self, url: &RemoteUrl) -> Result<SftpConnector> {
        if self.tls.is_some()
            || self.cacert.is_some()
            || !self.pin_sha256.is_empty()
            || self.active_addr.is_some()
            || self.trust_pasv_address
        {
            return Err(Error::Usage(
                "--tls, --cacert, --pin-sha256, --active-addr and --trust-pasv-address are for \
                 FTP; sftp:// checks the server's host key against ~/.ssh/known_hosts"
                    .into(),
            ));
        }
        let netrc_text = self.netrc_text();
        let explicit_user = url.user.clone().or_else(|| self.user.clone());
        let entry = netrc_text
            .as_deref()
            .and_then(|t| netrc::lookup(t, &url.host, explicit_user.as_deref()));
        let user = explicit_user
            .or_else(|| entry.as_ref().and_then(|e| e.login.clone()))
            .or_else(|| {
                ["USER", "LOGNAME"]
                    .iter()
                    .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
            })
            .ok_or_else(|| {
                Error::Usage("no user name: put it in the URL (sftp://user@host/)".into())
            })?;
        let password = url
            .password
            .clone()
            .or_else(|| {
                std::env::var("FERRY_PASSWORD")
                    .ok()
                    .filter(|p| !p.is_empty())
            })
            .or_else(|| entry.and_then(|e| e.password));
        let mut auth = SshAuth::new(user);
        auth.identities = self.identity.clone();
        auth.password = password;
        if std::io::stdin().is_terminal() {
            auth.asker = Some(Arc::new(|ask: Ask| {
                let prompt = match ask {
                    Ask::Password { user, host } => format!("Password for {user}@{host}: "),
                    Ask::Passphrase { key } => {
                        format!("Passphrase for the key {}: ", key.display())
                    }
                };
                rpassword::prompt_password(printable(&prompt).as_ref()).ok()
            }));
        }
        let mut host_keys = HostKeyPolicy::user_default();
        host_keys.insecure = self.insecure;
        host_keys.accept = self.accept_host_key.clone();
        if self.insecure {
            // Said even with -q: the user should not forget it is on.
            eprintln!(
                "ferry: WARNING: --insecure: the server's host key is not checked; anyone on the \
                 network path can pose as the server and read the password and files"
            );
        }
        let quiet = self.quiet;
        let notice: ferry_client::sftp::Notice = Arc::new(move |note: &str| {
            if !quiet {
                eprintln!("ferry: {}", printable(note));
            }
        });
        let opts = SftpOptions {
            connect_timeout: Duration::from_secs(self.connect_timeout.max(1)),
            reply_timeout: Duration::from_secs(self.timeout.max(1)),
            host_keys,
            observer: self.observer(),
            notice: Some(notice),
            ..SftpOptions::default()
        };
        Ok(SftpConnector {
            host: url.host.clone(),
            port: url.port,
            auth,
            opts,
        })
    }

    /// FTP credentials, in order: the URL; `--user`; `FERRY_PASSWORD`; `~/.netrc`;
    /// anonymous; a hidden prompt on a terminal.
    fn ftp_connector(&self, url: &RemoteUrl) -> Result<FtpConnector> {
        let opts = self.options(url)?;
        let netrc_text = self.netrc_text();
        let explicit_user = url.user.clone().or_else(|| self.user.clone());
        let entry = netrc_text
            .as_deref()
            .and_then(|t| netrc::lookup(t, &url.host, explicit_user.as_deref()));
        let user = explicit_user
            .or_else(|| entry.as_ref().and_then(|e| e.login.clone()))
            .unwrap_or_else(|| "anonymous".to_string());
        let anonymous = user == "anonymous" || user == "ftp";
        let password = if let Some(p) = &url.password {
            p.clone()
        } else if let Some(p) = std::env::var("FERRY_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
        {
            p
        } else if let Some(p) = entry.and_then(|e| e.password) {
            p
        } else if anonymous {
            "ferry@".to_string()
        } else if std::io::stdin().is_terminal() {
            rpassword::prompt_password(format!("Password for {user}@{}: ", url.host))
                .map_err(Error::local("reading the password"))?
        } else {
            return Err(Error::Usage(format!(
                "no password for {user}@{}: put it in the URL, FERRY_PASSWORD or ~/.netrc",
                url.host
            )));
        };
        Ok(FtpConnector {
            authority: url.authority(),
            user,
            password,
            opts,
            quiet: self.quiet,
            noted_plain: Arc::default(),
        })
    }

    fn netrc_text(&self) -> Option<String> {
        let path = match &self.netrc_file {
            Some(p) => p.clone(),
            None => PathBuf::from(std::env::var_os("HOME")?).join(".netrc"),
        };
        std::fs::read_to_string(path).ok()
    }
}

fn parse_url(s: &str) -> Result<RemoteUrl> {
    RemoteUrl::parse(s).map_err(Error::Usage)
}

/// Run a client verb; the exit code says how it went.
pub(crate) fn run(cmd: ClientCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry: error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = if let ClientCommand::Shell { url, common } = cmd {
        shell::run(&runtime, &url, &common)
    } else {
        runtime.block_on(run_async(cmd))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: error: {}", printable(&e.to_string()));
            if wants_tls(&e) {
                eprintln!(
                    "ferry: hint: the server requires TLS: use an ftpes:// URL (explicit FTPS), \
                     ftps:// (implicit), or --tls required"
                );
            }
            if let Error::HostKey(k) = &e {
                host_key_hint(k);
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// How to go on after a host key was refused.
fn host_key_hint(k: &HostKeyError) {
    match k {
        HostKeyError::Unknown {
            fingerprint,
            hostname,
            port,
            ..
        } => {
            let host = printable(hostname);
            eprintln!(
                "ferry: hint: if {fingerprint} is the server's key (ask its administrator; \
                 `ferry serve` prints its fingerprint at start), accept it once with\n\
                 ferry: hint:     --accept-host-key {fingerprint}\n\
                 ferry: hint: (it is then recorded in ~/.ssh/known_hosts), or record the key the \
                 server shows now, unchecked:\n\
                 ferry: hint:     ssh-keyscan -p {port} {host} >> ~/.ssh/known_hosts"
            );
        }
        HostKeyError::Changed { host, .. } => {
            eprintln!(
                "ferry: hint: if the server's key was replaced on purpose, remove the old entry \
                 with: ssh-keygen -R '{}'",
                printable(host)
            );
        }
        _ => {}
    }
}

/// `true` for a login refused because the connection is not TLS (`530 ... AUTH TLS ...`).
fn wants_tls(e: &Error) -> bool {
    let reply = match e {
        Error::LoginRefused(r) => r,
        Error::Refused { reply, .. } if reply.code == 530 || reply.code == 534 => reply,
        _ => return false,
    };
    let text = reply.text().to_ascii_uppercase();
    ["TLS", "SSL", "AUTH"].iter().any(|w| text.contains(w))
}

async fn run_async(cmd: ClientCommand) -> Result<()> {
    match cmd {
        ClientCommand::Ls {
            url,
            long,
            json,
            common,
        } => {
            let url = parse_url(&url)?;
            let conn = common.connector(&url)?;
            let mut c = conn.open().await?;
            let entries = c.list(url.path_arg()).await?;
            c.quit().await?;
            print_listing(&entries, long, json);
            Ok(())
        }
        ClientCommand::Get {
            url,
            output,
            resume,
            checksum,
            common,
        } => {
            let url = parse_url(&url)?;
            let conn = common.connector(&url)?;
            transfer::get(&conn, &url, output, resume, checksum, common.ui()).await
        }
        ClientCommand::Put {
            local,
            url,
            resume,
            append,
            checksum,
            common,
        } => {
            let url = parse_url(&url)?;
            let conn = common.connector(&url)?;
            transfer::put(&conn, &local, &url, resume, append, checksum, common.ui()).await
        }
        ClientCommand::Cat { url, common } => {
            let url = parse_url(&url)?;
            let conn = common.connector(&url)?;
            transfer::cat(&conn, &url).await
        }
        ClientCommand::Rm { url, common } => {
            simple(&url, &common, |c, path| {
                Box::pin(async move { c.delete(&path).await })
            })
            .await
        }
        ClientCommand::Rmdir { url, common } => {
            simple(&url, &common, |c, path| {
                Box::pin(async move { c.rmdir(&path).await })
            })
            .await
        }
        ClientCommand::Mkdir {
            url,
            parents,
            common,
        } => {
            simple(&url, &common, move |c, path| {
                Box::pin(async move {
                    if parents {
                        mkdir_parents(c, &path).await
                    } else {
                        c.mkdir(&path).await
                    }
                })
            })
            .await
        }
        ClientCommand::Mv {
            url,
            newname,
            common,
        } => {
            simple(&url, &common, move |c, path| {
                Box::pin(async move {
                    let target = if newname.contains('/') {
                        newname
                    } else {
                        let parent = path
                            .trim_end_matches('/')
                            .rsplit_once('/')
                            .map_or("", |(p, _)| p);
                        let parent = if parent.is_empty() && path.starts_with('/') {
                            "/"
                        } else {
                            parent
                        };
                        url::join(parent, &newname)
                    };
                    c.rename(&path, &target).await
                })
            })
            .await
        }
        ClientCommand::Quote {
            url,
            commands,
            common,
        } => {
            let url = parse_url(&url)?;
            if url.scheme == Scheme::Sftp {
                return Err(Error::Usage(
                    "quote sends raw FTP commands; SFTP has none (use ls, get, put, mv, rm, \
                     mkdir, rmdir or shell)"
                        .into(),
                ));
            }
            let conn = common.connector(&url)?;
            let mut remote = conn.open().await?;
            let Some(c) = remote.ftp() else {
                return Err(Error::Usage("quote needs an FTP server".into()));
            };
            if let Some(dir) = url.path_arg() {
                c.cwd(dir).await?;
            }
            let mut out = std::io::stdout().lock();
            for line in commands {
                let reply = c.quote(&line).await?;
                for line in printable_reply(&reply) {
                    let _ = writeln!(out, "{line}");
                }
                let _ = out.flush();
                if reply.is_error() {
                    return Err(Error::Refused {
                        command: ferry_client::options::masked(&line),
                        reply,
                    });
                }
            }
            drop(out);
            remote.quit().await
        }
        ClientCommand::Mirror {
            source,
            target,
            reverse,
            delete,
            parallel,
            common,
        } => {
            let opts = mirror::MirrorOpts {
                delete,
                parallel: parallel.clamp(1, 16),
                ui: common.ui(),
            };
            if reverse {
                let url = parse_url(&target)?;
                let conn = common.connector(&url)?;
                mirror::upload(&conn, PathBuf::from(source), &url.path, opts).await
            } else {
                let url = parse_url(&source)?;
                let conn = common.connector(&url)?;
                mirror::download(&conn, &url.path, PathBuf::from(target), opts).await
            }
        }
        ClientCommand::Shell { .. } => Err(Error::Usage("shell runs on its own".into())),
    }
}

type BoxFut<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>>;

/// Connect, run one file command on the URL's path, quit.
async fn simple(
    url: &str,
    common: &ClientArgs,
    op: impl for<'a> FnOnce(&'a mut Remote, String) -> BoxFut<'a>,
) -> Result<()> {
    let url = parse_url(url)?;
    if url.path.is_empty() {
        return Err(Error::Usage("the URL needs a path".into()));
    }
    let conn = common.connector(&url)?;
    let mut c = conn.open().await?;
    op(&mut c, url.path.clone()).await?;
    c.quit().await
}

/// Create each missing component of `path`.
pub(crate) async fn mkdir_parents(c: &mut Remote, path: &str) -> Result<()> {
    let mut so_far = if path.starts_with('/') {
        "/".to_string()
    } else {
        String::new()
    };
    for part in path.split('/').filter(|p| !p.is_empty()) {
        so_far = url::join(&so_far, part);
        if let Err(e) = c.mkdir(&so_far).await {
            // Exists already (or can't be made: the next step or the caller will say).
            if !e.is_refusal() {
                return Err(e);
            }
        }
    }
    Ok(())
}

fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "file",
        EntryKind::Dir => "dir",
        EntryKind::Symlink => "symlink",
        EntryKind::Other => "other",
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC).
pub(crate) fn format_time(unix: i64) -> String {
    let s = ferry_proto::listing::format_mdtm(unix);
    format!(
        "{}-{}-{} {}:{}:{}",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[8..10],
        &s[10..12],
        &s[12..14]
    )
}

pub(crate) fn print_listing(entries: &[ParsedEntry], long: bool, json: bool) {
    let mut entries: Vec<&ParsedEntry> = entries.iter().collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = std::io::stdout().lock();
    if json {
        let list: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.name,
                    "type": kind_name(e.kind),
                    "size": e.size,
                    "mtime": e.mtime,
                    "modified": e.mtime.map(|t| {
                        let s = format_time(t);
                        format!("{}T{}Z", &s[..10], &s[11..])
                    }),
                    "target": e.link_target,
                })
            })
            .collect();
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return;
    }
    for e in entries {
        if long {
            let kind = match e.kind {
                EntryKind::File => '-',
                EntryKind::Dir => 'd',
                EntryKind::Symlink => 'l',
                EntryKind::Other => '?',
            };
            let size = e.size.map_or_else(|| "-".to_string(), |s| s.to_string());
            let when = e.mtime.map_or_else(|| "-".repeat(19), format_time);
            let target = e
                .link_target
                .as_ref()
                .map_or_else(String::new, |t| format!(" -> {}", printable(t)));
            let _ = writeln!(
                out,
                "{kind} {size:>14} {when} {}{target}",
                printable(&e.name)
            );
        } else {
            let _ = writeln!(out, "{}", printable(&e.name));
        }
    }
}

#[cfg(test)]
mod printable_tests {
    use super::printable;

    #[test]
    fn control_characters_and_bidi_overrides_are_shown_as_escapes() {
        assert_eq!(printable("plain name.txt"), "plain name.txt");
        assert!(matches!(
            printable("tab\tstays"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            printable("550 \u{1b}[2J\u{1b}]0;title\u{7}x\0y\r\nz\u{7f}\u{9b}"),
            "550 \\x1b[2J\\x1b]0;title\\x07x\\x00y\\x0d\\x0az\\x7f\\x9b"
        );
        assert_eq!(printable("abc\u{202e}txt.exe"), "abc\\u{202e}txt.exe");
        assert_eq!(printable("caf\u{e9} \u{1f600}"), "caf\u{e9} \u{1f600}");
    }
}
