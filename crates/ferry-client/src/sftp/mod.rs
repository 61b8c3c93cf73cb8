//! SFTP version 3 over SSH: [`SftpClient`], on russh's client (ring only) and the sans-IO
//! [`ferry_sftp_proto`] codec.
//!
//! # Layout
//! - `ssh`: TCP connect (`TCP_NODELAY`), russh's configuration (8 MiB window, 64 KiB packets,
//!   AES-GCM first), the host key check.
//! - [`known_hosts`](HostKeyPolicy): OpenSSH's `known_hosts` files (plain, hashed,
//!   `[host]:port`, wildcards, `@revoked`), [`HostKeyError`].
//! - [`auth`](SshAuth): `none`, public keys (`-i` files, ssh-agent, `~/.ssh/id_*`), password
//!   or keyboard-interactive; [`Asker`] for passwords and passphrases.
//! - `wire`: request ids, one writer, a reader task matching responses to requests.
//! - `transfer`: downloads and uploads with many requests in flight.
//!
//! # Against a hostile server
//! Packets are framed with a length limit before anything is buffered for them; a response
//! to a request never sent, a second `VERSION` or a malformed packet ends the session with a
//! protocol error; every wait has a timeout; a `DATA` longer than asked for, or empty, is an
//! error rather than a loop; listings are bounded like FTP's ([`MAX_LISTING`](crate::MAX_LISTING)).
//! Names are returned as the server sent them (lossily made UTF-8): callers escape them for
//! display and check them before using them as local paths.

mod auth;
mod known_hosts;
mod ssh;
mod transfer;
mod wire;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry_proto::listing::{EntryKind, ParsedEntry};
use ferry_sftp_proto::ext;
use ferry_sftp_proto::{
    Attrs, ClientMessage, Extended, Handle, OpenFlags, Request, Response, ServerMessage, Status,
    StatusCode, Times, split_packet,
};
use russh::ChannelMsg;

pub use auth::{Ask, Asker, SshAuth};
pub use known_hosts::{HostKeyError, HostKeyPolicy};
pub use transfer::{RemoteFile, UploadStart};

use crate::options::{Dialogue, Observer};
use crate::{Error, MAX_LISTING, Result};

/// Receives notes meant for the user (a skipped key, a host key recorded), one line each.
pub type Notice = Arc<dyn Fn(&str) + Send + Sync>;

/// Options for [`SftpClient::connect`].
#[derive(Clone)]
pub struct SftpOptions {
    /// Time to resolve, connect and finish the SSH handshake.
    pub connect_timeout: Duration,
    /// Time to wait for any one response (and for the next one during a transfer).
    pub reply_timeout: Duration,
    /// How the server's host key is checked.
    pub host_keys: HostKeyPolicy,
    /// Read or write requests kept in flight during a transfer.
    pub requests_in_flight: usize,
    /// Largest read or write asked for (the server's `limits@openssh.com` may lower it).
    pub max_chunk: u32,
    /// SSH channel window granted to the server.
    pub window_size: u32,
    /// Largest SSH packet accepted from the server.
    pub max_ssh_packet: u32,
    /// Receives a trace of the session (`-v`).
    pub observer: Option<Observer>,
    /// Receives notes for the user.
    pub notice: Option<Notice>,
}

impl Default for SftpOptions {
    fn default() -> Self {
        SftpOptions {
            connect_timeout: Duration::from_secs(15),
            reply_timeout: Duration::from_secs(60),
            host_keys: HostKeyPolicy::user_default(),
            requests_in_flight: 64,
            max_chunk: 256 * 1024,
            window_size: 8 * 1024 * 1024,
            max_ssh_packet: 64 * 1024,
            observer: None,
            notice: None,
        }
    }
}

impl fmt::Debug for SftpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("reply_timeout", &self.reply_timeout)
            .field("host_keys", &self.host_keys)
            .field("requests_in_flight", &self.requests_in_flight)
            .field("max_chunk", &self.max_chunk)
            .field("window_size", &self.window_size)
            .field("max_ssh_packet", &self.max_ssh_packet)
            .finish_non_exhaustive()
    }
}

/// Where traces and notes go.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    observer: Option<Observer>,
    notice: Option<Notice>,
}

impl Hooks {
    fn new(opts: &SftpOptions) -> Hooks {
        Hooks {
            observer: opts.observer.clone(),
            notice: opts.notice.clone(),
        }
    }

    /// A line for `-v`.
    pub(crate) fn trace(&self, text: &str) {
        if let Some(o) = &self.observer {
            o(Dialogue::Note(text));
        }
    }

    /// A request as sent, for `-v`.
    fn sent(&self, text: &str) {
        if let Some(o) = &self.observer {
            o(Dialogue::Sent(text));
        }
    }

    /// A note for the user (also traced when nobody takes notes).
    pub(crate) fn note(&self, text: &str) {
        match &self.notice {
            Some(n) => n(text),
            None => self.trace(text),
        }
    }
}

/// SFTP packets longer than this end the session (OpenSSH's own limit is 256 KiB).
const MAX_INCOMING_PACKET: u32 = 1024 * 1024;
/// Reads and writes when the server does not say (what every server takes).
const DEFAULT_CHUNK: u32 = 32 * 1024;
/// Consecutive empty `NAME` replies tolerated in one listing.
const MAX_EMPTY_READDIR: u32 = 16;

/// An SFTP session: one SSH connection, one channel running the `sftp` subsystem.
///
/// Requests may be issued from several tasks at once (`&self`); responses are matched by id.
/// Relative paths are resolved against the directory set with [`cd`](Self::cd), or by the
/// server against the login directory before any `cd`.
pub struct SftpClient {
    ssh: russh::client::Handle<ssh::Checker>,
    wire: wire::Wire,
    peer: SocketAddr,
    opts: SftpOptions,
    hooks: Hooks,
    server_version: u32,
    extensions: Vec<(String, String)>,
    read_len: u32,
    write_len: u32,
    cwd: Option<String>,
}

impl fmt::Debug for SftpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpClient")
            .field("peer", &self.peer)
            .field("server_version", &self.server_version)
            .field("extensions", &self.extensions)
            .field("read_len", &self.read_len)
            .field("write_len", &self.write_len)
            .field("cwd", &self.cwd)
            .finish_non_exhaustive()
    }
}

/// The error for an error status answering `command`.
fn status_error(command: &str, status: &Status) -> Error {
    let text = String::from_utf8_lossy(&status.message);
    let name = status
        .code
        .name()
        .map_or_else(|| format!("status {}", status.code.0), str::to_string);
    let message = if text.trim().is_empty() {
        name
    } else {
        format!("{} ({name})", text.trim())
    };
    Error::Status {
        command: command.to_string(),
        code: status.code.0,
        message,
    }
}

fn unexpected(command: &str, response: &Response) -> Error {
    Error::Protocol(format!(
        "unexpected answer to {command}: packet type {}",
        response.packet_type()
    ))
}

/// `Ok` for an `SSH_FX_OK` status.
fn expect_ok(command: &str, response: Response) -> Result<()> {
    match response {
        Response::Status(s) if s.code == StatusCode::OK => Ok(()),
        Response::Status(s) => Err(status_error(command, &s)),
        other => Err(unexpected(command, &other)),
    }
}

fn path_bytes(path: &str) -> Bytes {
    Bytes::copy_from_slice(path.as_bytes())
}

/// `dir` joined with `name` by one `/`.
fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn entry_kind(attrs: &Attrs, longname: &[u8]) -> EntryKind {
    if attrs.permissions.is_some() {
        if attrs.is_dir() {
            EntryKind::Dir
        } else if attrs.is_regular() {
            EntryKind::File
        } else if attrs.is_symlink() {
            EntryKind::Symlink
        } else {
            EntryKind::Other
        }
    } else {
        // No permissions: the `ls -l` line's first letter is all there is.
        match longname.first() {
            Some(b'd') => EntryKind::Dir,
            Some(b'-') => EntryKind::File,
            Some(b'l') => EntryKind::Symlink,
            _ => EntryKind::Other,
        }
    }
}

impl SftpClient {
    /// Connect to `host` (a name or an IP literal without brackets) on `port`, check its host
    /// key, log in as `auth.user`, and start the `sftp` subsystem.
    pub async fn connect(
        host: &str,
        port: u16,
        auth: &SshAuth,
        opts: SftpOptions,
    ) -> Result<SftpClient> {
        auth.check_files()?;
        let hooks = Hooks::new(&opts);
        let (mut ssh, peer) = ssh::connect(host, port, &opts, &hooks).await?;
        let login = auth::authenticate(&mut ssh, auth, host, &hooks);
        if auth.asker.is_some() {
            // Someone may be typing: no time limit.
            login.await?;
        } else {
            tokio::time::timeout(opts.reply_timeout, login)
                .await
                .map_err(|_| Error::Timeout("logging in".into()))??;
        }
        hooks.trace(&format!("logged in as {}", auth.user));
        let timeout = opts.reply_timeout;
        let channel = tokio::time::timeout(timeout, ssh.channel_open_session())
            .await
            .map_err(|_| Error::Timeout("opening the SSH session channel".into()))?
            .map_err(|e| ssh::russh_error("opening the SSH session channel", e))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| ssh::russh_error("starting the sftp subsystem", e))?;
        let (mut rx, tx) = channel.split();
        let mut stderr = Vec::new();
        let mut buf = BytesMut::new();
        let start = async {
            // The subsystem's acceptance, then INIT and the server's VERSION.
            loop {
                match rx.wait().await {
                    Some(ChannelMsg::Success) => break,
                    Some(ChannelMsg::Failure) => {
                        return Err(Error::Protocol(
                            "the server refused to start the sftp subsystem".into(),
                        ));
                    }
                    Some(ChannelMsg::ExtendedData { data, .. }) => {
                        if stderr.len() < 4096 {
                            stderr.extend_from_slice(&data);
                        }
                    }
                    Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                        return Err(closed_early(&stderr));
                    }
                    Some(_) => {}
                }
            }
            let mut init = BytesMut::new();
            ClientMessage::Init {
                version: ferry_sftp_proto::VERSION,
                extensions: Vec::new(),
            }
            .encode(&mut init);
            tx.data_bytes(init.freeze())
                .await
                .map_err(|e| ssh::russh_error("sending SFTP INIT", e))?;
            loop {
                match split_packet(&mut buf, MAX_INCOMING_PACKET) {
                    Ok(Some(packet)) => return Ok(packet),
                    Ok(None) => {}
                    Err(e) => return Err(Error::Protocol(format!("SFTP framing: {e}"))),
                }
                match rx.wait().await {
                    Some(ChannelMsg::Data { data }) => buf.extend_from_slice(&data),
                    Some(ChannelMsg::ExtendedData { data, .. }) => {
                        if stderr.len() < 4096 {
                            stderr.extend_from_slice(&data);
                        }
                    }
                    Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                        return Err(closed_early(&stderr));
                    }
                    Some(_) => {}
                }
            }
        };
        let packet = tokio::time::timeout(timeout, start)
            .await
            .map_err(|_| Error::Timeout("starting SFTP".into()))??;
        let (server_version, extensions) = match ServerMessage::decode(packet) {
            Ok(ServerMessage::Version {
                version,
                extensions,
            }) => (version, extensions),
            Ok(_) => return Err(Error::Protocol("no SFTP VERSION from the server".into())),
            Err(e) => return Err(Error::Protocol(format!("SFTP VERSION: {e}"))),
        };
        if server_version < 3 {
            return Err(Error::Protocol(format!(
                "the server speaks SFTP version {server_version}; version 3 is needed"
            )));
        }
        let extensions: Vec<(String, String)> = extensions
            .iter()
            .map(|e| {
                (
                    String::from_utf8_lossy(&e.name).into_owned(),
                    String::from_utf8_lossy(&e.data).into_owned(),
                )
            })
            .collect();
        hooks.trace(&format!(
            "SFTP version {server_version}; extensions: {}",
            extensions
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let wire = wire::Wire::start(tx, rx, buf, MAX_INCOMING_PACKET);
        let mut client = SftpClient {
            ssh,
            wire,
            peer,
            hooks,
            server_version,
            extensions,
            read_len: DEFAULT_CHUNK.min(opts.max_chunk),
            write_len: DEFAULT_CHUNK.min(opts.max_chunk),
            opts,
            cwd: None,
        };
        if client.has_extension(ext::LIMITS) {
            client.apply_limits().await?;
        }
        Ok(client)
    }

    /// Chunk sizes from `limits@openssh.com`, within [`SftpOptions::max_chunk`].
    async fn apply_limits(&mut self) -> Result<()> {
        let response = self
            .call(Request::Extended(Extended::Limits), ext::LIMITS)
            .await?;
        let Response::ExtendedReply(body) = response else {
            return Ok(());
        };
        let Ok(limits) = ferry_sftp_proto::Limits::decode(body) else {
            return Err(Error::Protocol("malformed limits@openssh.com reply".into()));
        };
        let pick = |n: u64| -> u32 {
            let n = if n == 0 {
                u64::from(self.opts.max_chunk)
            } else {
                n
            };
            u32::try_from(n.min(u64::from(self.opts.max_chunk)))
                .unwrap_or(DEFAULT_CHUNK)
                .max(1024)
        };
        self.read_len = pick(limits.max_read_len);
        self.write_len = pick(limits.max_write_len);
        self.hooks.trace(&format!(
            "server limits: reads of {} bytes, writes of {} bytes",
            self.read_len, self.write_len
        ));
        Ok(())
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The SFTP version the server announced.
    pub fn server_version(&self) -> u32 {
        self.server_version
    }

    /// The extensions the server announced (name, version).
    pub fn extensions(&self) -> &[(String, String)] {
        &self.extensions
    }

    /// `true` if the server announced extension `name`.
    pub fn has_extension(&self, name: &str) -> bool {
        self.extensions.iter().any(|(n, _)| n == name)
    }

    /// The most requests that were in flight at one time in this session (a transfer keeps
    /// up to [`SftpOptions::requests_in_flight`]).
    pub fn peak_in_flight(&self) -> usize {
        self.wire.peak_in_flight()
    }

    /// The size of the reads and writes a transfer asks for.
    pub fn chunk_sizes(&self) -> (u32, u32) {
        (self.read_len, self.write_len)
    }

    /// `path` made absolute against the current directory (when one was set).
    fn resolve(&self, path: &str) -> String {
        let path = if path.is_empty() { "." } else { path };
        match &self.cwd {
            Some(cwd) if !path.starts_with('/') => join(cwd, path),
            _ => path.to_string(),
        }
    }

    async fn call(&self, request: Request, what: &str) -> Result<Response> {
        self.wire.call(request, self.opts.reply_timeout, what).await
    }

    /// Send a request whose answer is a status, and require `SSH_FX_OK`.
    async fn simple(&self, request: Request, command: &str) -> Result<()> {
        self.hooks.sent(command);
        let response = self.call(request, command).await?;
        expect_ok(command, response)
    }

    // ---- paths and attributes ------------------------------------------------------------

    /// The server's canonical form of `path` (`REALPATH`).
    pub async fn realpath(&self, path: &str) -> Result<String> {
        let path = self.resolve(path);
        let command = format!("REALPATH {path}");
        self.hooks.sent(&command);
        match self
            .call(
                Request::Realpath {
                    path: path_bytes(&path),
                },
                &command,
            )
            .await?
        {
            Response::Name(names) => names
                .first()
                .map(|n| String::from_utf8_lossy(&n.filename).into_owned())
                .ok_or_else(|| Error::Protocol(format!("{command}: an empty NAME reply"))),
            Response::Status(s) => Err(status_error(&command, &s)),
            other => Err(unexpected(&command, &other)),
        }
    }

    async fn attrs(&self, request: Request, command: &str) -> Result<Attrs> {
        self.hooks.sent(command);
        match self.call(request, command).await? {
            Response::Attrs(a) => Ok(a),
            Response::Status(s) => Err(status_error(command, &s)),
            other => Err(unexpected(command, &other)),
        }
    }

    /// Attributes of `path`, following symbolic links (`STAT`).
    pub async fn stat(&self, path: &str) -> Result<Attrs> {
        let path = self.resolve(path);
        self.attrs(
            Request::Stat {
                path: path_bytes(&path),
            },
            &format!("STAT {path}"),
        )
        .await
    }

    /// Attributes of `path` itself (`LSTAT`).
    pub async fn lstat(&self, path: &str) -> Result<Attrs> {
        let path = self.resolve(path);
        self.attrs(
            Request::Lstat {
                path: path_bytes(&path),
            },
            &format!("LSTAT {path}"),
        )
        .await
    }

    /// The size of the file at `path`.
    pub async fn size(&self, path: &str) -> Result<u64> {
        let attrs = self.stat(path).await?;
        attrs
            .size
            .ok_or_else(|| Error::Protocol(format!("the server gave no size for {path}")))
    }

    /// The modification time of `path`, Unix seconds.
    pub async fn mtime(&self, path: &str) -> Result<i64> {
        let attrs = self.stat(path).await?;
        attrs.times.map(|t| i64::from(t.mtime)).ok_or_else(|| {
            Error::Protocol(format!("the server gave no modification time for {path}"))
        })
    }

    /// Set the access and modification times of `path` to `unix_secs` (`SETSTAT`).
    pub async fn set_mtime(&self, path: &str, unix_secs: i64) -> Result<()> {
        let Ok(t) = u32::try_from(unix_secs) else {
            return Err(Error::Usage(format!(
                "SFTP version 3 can't carry the time {unix_secs}"
            )));
        };
        let path = self.resolve(path);
        let attrs = Attrs {
            times: Some(Times { atime: t, mtime: t }),
            ..Attrs::default()
        };
        self.simple(
            Request::Setstat {
                path: path_bytes(&path),
                attrs,
            },
            &format!("SETSTAT {path}"),
        )
        .await
    }

    // ---- directories ---------------------------------------------------------------------

    /// The current directory: the one set with [`cd`](Self::cd), else the login directory.
    pub async fn pwd(&mut self) -> Result<String> {
        if let Some(cwd) = &self.cwd {
            return Ok(cwd.clone());
        }
        let home = self.realpath(".").await?;
        self.cwd = Some(home.clone());
        Ok(home)
    }

    /// Make `path` (which must be a directory) the current directory.
    pub async fn cd(&mut self, path: &str) -> Result<()> {
        let target = self.realpath(path).await?;
        let attrs = self.stat(&target).await?;
        if attrs.permissions.is_some() && !attrs.is_dir() {
            return Err(Error::Status {
                command: format!("cd {target}"),
                code: StatusCode::NO_SUCH_FILE.0,
                message: "not a directory".into(),
            });
        }
        self.cwd = Some(target);
        Ok(())
    }

    /// The entries of directory `path` (`None`: the current directory), without `.` and `..`.
    pub async fn list(&self, path: Option<&str>) -> Result<Vec<ParsedEntry>> {
        let path = self.resolve(path.unwrap_or("."));
        let command = format!("OPENDIR {path}");
        self.hooks.sent(&command);
        let handle = match self
            .call(
                Request::Opendir {
                    path: path_bytes(&path),
                },
                &command,
            )
            .await?
        {
            Response::Handle(h) => h,
            Response::Status(s) => return Err(status_error(&command, &s)),
            other => return Err(unexpected(&command, &other)),
        };
        let listed = self.read_dir(&handle, &path).await;
        let closed = self.close_handle(&handle, &path).await;
        let entries = listed?;
        closed?;
        Ok(entries)
    }

    async fn read_dir(&self, handle: &Handle, path: &str) -> Result<Vec<ParsedEntry>> {
        let command = format!("READDIR {path}");
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        let mut empty = 0;
        loop {
            let response = self
                .call(
                    Request::Readdir {
                        handle: handle.clone(),
                    },
                    &command,
                )
                .await?;
            let names = match response {
                Response::Name(names) => names,
                Response::Status(s) if s.code == StatusCode::EOF => return Ok(entries),
                Response::Status(s) => return Err(status_error(&command, &s)),
                other => return Err(unexpected(&command, &other)),
            };
            if names.is_empty() {
                empty += 1;
                if empty > MAX_EMPTY_READDIR {
                    return Err(Error::Protocol(format!(
                        "{command}: the server keeps sending empty NAME replies"
                    )));
                }
                continue;
            }
            empty = 0;
            for n in names {
                bytes += n.filename.len() + n.longname.len();
                if bytes > MAX_LISTING {
                    return Err(Error::Protocol(format!(
                        "listing larger than {MAX_LISTING} bytes"
                    )));
                }
                if &n.filename[..] == b"." || &n.filename[..] == b".." {
                    continue;
                }
                entries.push(ParsedEntry {
                    name: String::from_utf8_lossy(&n.filename).into_owned(),
                    kind: entry_kind(&n.attrs, &n.longname),
                    size: n.attrs.size,
                    mtime: n.attrs.times.map(|t| i64::from(t.mtime)),
                    link_target: None,
                });
            }
        }
    }

    /// Create directory `path` (`MKDIR`).
    pub async fn mkdir(&self, path: &str) -> Result<()> {
        let path = self.resolve(path);
        self.simple(
            Request::Mkdir {
                path: path_bytes(&path),
                attrs: Attrs::default(),
            },
            &format!("MKDIR {path}"),
        )
        .await
    }

    /// Remove the empty directory `path` (`RMDIR`).
    pub async fn rmdir(&self, path: &str) -> Result<()> {
        let path = self.resolve(path);
        self.simple(
            Request::Rmdir {
                path: path_bytes(&path),
            },
            &format!("RMDIR {path}"),
        )
        .await
    }

    /// Delete the file `path` (`REMOVE`).
    pub async fn remove(&self, path: &str) -> Result<()> {
        let path = self.resolve(path);
        self.simple(
            Request::Remove {
                path: path_bytes(&path),
            },
            &format!("REMOVE {path}"),
        )
        .await
    }

    /// Rename `from` to `to`, replacing `to` when the server offers
    /// `posix-rename@openssh.com` (plain `RENAME` refuses an existing target).
    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let from = self.resolve(from);
        let to = self.resolve(to);
        let (from_b, to_b) = (path_bytes(&from), path_bytes(&to));
        if self.has_extension(ext::POSIX_RENAME) {
            self.simple(
                Request::Extended(Extended::PosixRename {
                    from: from_b,
                    to: to_b,
                }),
                &format!("posix-rename {from} {to}"),
            )
            .await
        } else {
            self.simple(
                Request::Rename {
                    from: from_b,
                    to: to_b,
                },
                &format!("RENAME {from} {to}"),
            )
            .await
        }
    }

    // ---- handles -------------------------------------------------------------------------

    async fn open(&self, path: &str, flags: u32, what: &str) -> Result<Handle> {
        let command = format!("OPEN {path} ({what})");
        self.hooks.sent(&command);
        match self
            .call(
                Request::Open {
                    path: path_bytes(path),
                    flags: OpenFlags(flags),
                    attrs: Attrs::default(),
                },
                &command,
            )
            .await?
        {
            Response::Handle(h) => Ok(h),
            Response::Status(s) => Err(status_error(&command, &s)),
            other => Err(unexpected(&command, &other)),
        }
    }

    async fn close_handle(&self, handle: &Handle, path: &str) -> Result<()> {
        let command = format!("CLOSE {path}");
        let response = self
            .call(
                Request::Close {
                    handle: handle.clone(),
                },
                &command,
            )
            .await?;
        expect_ok(&command, response)
    }

    /// End the session: close the channel and disconnect.
    pub async fn quit(self) -> Result<()> {
        self.wire.close().await;
        let _ = self
            .ssh
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
        Ok(())
    }
}

fn closed_early(stderr: &[u8]) -> Error {
    let said = String::from_utf8_lossy(stderr);
    let said = said.trim();
    if said.is_empty() {
        Error::Protocol("the server closed the channel instead of starting SFTP".into())
    } else {
        Error::Protocol(format!(
            "the server closed the channel instead of starting SFTP: {said}"
        ))
    }
}
