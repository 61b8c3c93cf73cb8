//! [`S3Fs`]: the objects of an S3 bucket, beneath a prefix, served as a file tree (through
//! OpenDAL, over rustls with `ring`).
//!
//! How files map onto objects, and what an object store cannot do:
//! - a file `/a/b` is the object `PREFIX/a/b`; a directory `/a` is the marker object `PREFIX/a/`
//!   (made by `mkdir`), or simply the common prefix of objects beneath it;
//! - downloads stream with ranged GETs pinned to the object's ETag, so a download never mixes
//!   two versions of an object (the first part is fetched when the file is opened);
//! - uploads stream as multipart uploads of unknown length, [`S3Config::part_size`] bytes a
//!   part and at most [`S3Config::concurrency`] parts in flight, completed only by
//!   [`Upload::commit`]; anything else leaves the previous object as it was and nothing visible
//!   (an upload given up is aborted; one lost to a crash is never completed);
//! - listings use the delimiter, paged by the store;
//! - a file is renamed by copy then delete; an empty directory by moving its marker;
//! - appending, writing at an offset, renaming a non-empty directory, setting times or
//!   permissions are refused ([`ErrorKind::Unsupported`], see [`Capabilities`]), never
//!   approximated.

use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, TryStreamExt};
use opendal::options::{ListOptions, ReadOptions, WriteOptions};
use opendal::{Operator, Writer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{
    Capabilities, Entry, EntryKind, Error, ErrorKind, FileAccess, FileHandle, Metadata, ReadHandle,
    Result, Storage, Unique, Upload, VPath, WriteMode,
};

/// Default size of one part of a multipart upload, and of one ranged GET.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// Default number of parts (or ranges) in flight per transfer.
pub const DEFAULT_CONCURRENCY: usize = 2;
/// S3's smallest part (all but the last).
const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Out-of-order writes a handle holds back before refusing (SFTP clients keep many writes in
/// flight, and they may complete out of order).
const REORDER_WINDOW: usize = 16 * 1024 * 1024;

/// Where and how to reach a bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix served as `/` (no leading or trailing `/`; empty for the whole bucket).
    pub prefix: String,
    /// Endpoint URL (`http://127.0.0.1:9000`); `None` for AWS.
    pub endpoint: Option<String>,
    /// Region; `None` reads `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Path-style URLs (`ENDPOINT/BUCKET/KEY`) rather than virtual-hosted ones.
    pub path_style: bool,
    /// Access key id; `None` takes the standard `AWS_*` environment (or the instance's role).
    pub access_key_id: Option<String>,
    /// Secret access key, with `access_key_id`.
    pub secret_access_key: Option<String>,
    /// Bytes per part of an upload and per ranged GET (at least 5 MiB).
    pub part_size: usize,
    /// Parts (ranges) in flight per transfer.
    pub concurrency: usize,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// The bucket and prefix of an `s3://BUCKET/PREFIX` URL, everything else default.
    pub fn from_url(url: &str) -> Option<S3Config> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = !bucket.is_empty()
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
        if !valid {
            return None;
        }
        let prefix = prefix
            .split('/')
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        Some(S3Config {
            bucket: bucket.to_string(),
            prefix,
            endpoint: None,
            region: None,
            path_style: true,
            access_key_id: None,
            secret_access_key: None,
            part_size: DEFAULT_PART_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
        })
    }

    /// Whether `home` names a bucket (`s3://...`) rather than a local directory.
    pub fn is_s3_url(home: &str) -> bool {
        home.starts_with("s3://")
    }

    /// Most memory one upload holds: the part being filled, the part the client library keeps
    /// back, and the parts in flight.
    pub fn upload_memory_bound(&self) -> usize {
        self.part_size
            .saturating_mul(self.concurrency.saturating_add(2))
    }
}

/// An S3 bucket (beneath a prefix) as a [`Storage`].
#[derive(Clone)]
pub struct S3Fs {
    op: Operator,
    part_size: usize,
    concurrency: usize,
}

impl std::fmt::Debug for S3Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Fs")
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

/// The HTTPS client: rustls with `ring` and the system's roots.
fn http_client() -> Result<reqwest::Client> {
    // The HTTP library builds a client of its own before it takes ours, and that one wants a
    // process-wide provider: `ring`, the only one built in (an error means one is set).
    let _ = rustls::crypto::ring::default_provider().install_default();
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    let roots = ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(loaded.certs);
        Arc::new(roots)
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorKind::Other, format!("TLS setup: {e}")))?
        .with_root_certificates(Arc::clone(roots))
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| Error::new(ErrorKind::Other, format!("HTTP client setup: {e}")))
}

impl S3Fs {
    /// A bucket as `config` says; nothing is sent until the first operation.
    pub fn new(config: &S3Config) -> Result<S3Fs> {
        let client = opendal::raw::HttpClient::with(http_client()?);
        let region = config
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "us-east-1".to_string());
        let mut builder = opendal::services::S3::default()
            .bucket(&config.bucket)
            .root(&format!("/{}", config.prefix))
            .region(&region);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint(endpoint);
        }
        if !config.path_style {
            builder = builder.enable_virtual_host_style();
        }
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            builder = builder.access_key_id(id).secret_access_key(secret);
        }
        let op = Operator::new(builder)
            .map_err(|e| map_err(&e))?
            .layer(opendal::layers::HttpClientLayer::new(client))
            .finish();
        Ok(S3Fs {
            op,
            part_size: config.part_size.max(MIN_PART_SIZE),
            concurrency: config.concurrency.max(1),
        })
    }
}

/// An OpenDAL error as a storage error; the message never names the bucket or the endpoint
/// (the detail goes to the log).
fn map_err(err: &opendal::Error) -> Error {
    use opendal::ErrorKind as K;
    let (kind, message) = match err.kind() {
        K::NotFound => (ErrorKind::NotFound, "No such file or directory"),
        K::PermissionDenied => (ErrorKind::PermissionDenied, "Permission denied"),
        K::AlreadyExists => (ErrorKind::AlreadyExists, "File exists"),
        K::IsADirectory => (ErrorKind::IsADirectory, "Is a directory"),
        K::NotADirectory => (ErrorKind::NotADirectory, "Not a directory"),
        K::Unsupported => (
            ErrorKind::Unsupported,
            "Operation not supported by this storage",
        ),
        K::ConditionNotMatch => (
            ErrorKind::Other,
            "The object changed while it was being transferred",
        ),
        K::RateLimited => (
            ErrorKind::Unavailable,
            "The object store is busy; try again later",
        ),
        _ => (
            ErrorKind::Unavailable,
            "The object store failed or could not be reached; try again later",
        ),
    };
    if kind == ErrorKind::Unavailable || kind == ErrorKind::Other {
        tracing::warn!(error = %err, "object store request failed");
    }
    Error::new(kind, message)
}

/// An upload's I/O error as the storage error it carries.
fn from_upload(err: std::io::Error) -> Error {
    match err.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
        Some(e) => Error::new(e.kind, e.message.clone()),
        None => Error::new(ErrorKind::Other, err.to_string()),
    }
}

fn unsupported(what: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!("{what} is not supported by this storage"),
    )
}
fn not_found() -> Error {
    Error::new(ErrorKind::NotFound, "No such file or directory")
}
fn not_a_directory() -> Error {
    Error::new(ErrorKind::NotADirectory, "Not a directory")
}
fn is_a_directory() -> Error {
    Error::new(ErrorKind::IsADirectory, "Is a directory")
}
fn already_exists() -> Error {
    Error::new(ErrorKind::AlreadyExists, "File exists")
}
fn permission_denied() -> Error {
    Error::new(ErrorKind::PermissionDenied, "Permission denied")
}
fn not_open_for(what: &str) -> Error {
    Error::new(
        ErrorKind::PermissionDenied,
        format!("File not open for {what}"),
    )
}

/// The key of the file at `path`, relative to the prefix.
fn file_key(path: &VPath) -> String {
    path.relative().to_string()
}

/// The key of the directory at `path` (its marker, and the prefix of what it holds).
fn dir_key(path: &VPath) -> String {
    if path.is_root() {
        "/".to_string()
    } else {
        format!("{}/", path.relative())
    }
}

/// A stable id for a key (MLSx `unique`, SFTP handles' identity).
fn key_id(key: &str) -> Unique {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    Unique::Id(h.finish())
}

fn unix_secs(meta: &opendal::Metadata) -> i64 {
    meta.last_modified()
        .and_then(|t| {
            std::time::SystemTime::from(t)
                .duration_since(UNIX_EPOCH)
                .ok()
        })
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn file_metadata(key: &str, meta: &opendal::Metadata) -> Metadata {
    Metadata {
        kind: EntryKind::File,
        size: meta.content_length(),
        mtime: unix_secs(meta),
        mode: 0o644,
        nlink: 1,
        unique: Some(key_id(key)),
    }
}

fn dir_metadata(key: &str, mtime: i64) -> Metadata {
    Metadata {
        kind: EntryKind::Dir,
        size: 0,
        mtime,
        mode: 0o755,
        nlink: 2,
        unique: Some(key_id(key)),
    }
}

/// What a path is in the bucket.
enum Found {
    File(Box<opendal::Metadata>),
    /// A directory, with its marker's time (0 when only implied by what it holds).
    Dir(i64),
    Missing,
}

impl S3Fs {
    /// The object at `path`, if it is a file.
    async fn stat_file(&self, path: &VPath) -> Result<Option<opendal::Metadata>> {
        if path.is_root() {
            return Ok(None);
        }
        match self.op.stat(&file_key(path)).await {
            Ok(meta) if meta.is_file() => Ok(Some(meta)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(map_err(&e)),
        }
    }

    /// Up to `limit` entries of directory `path` (its marker included): empty when there is no
    /// such directory.
    async fn peek_dir(&self, path: &VPath, limit: usize) -> Result<Vec<opendal::Entry>> {
        let key = dir_key(path);
        let options = ListOptions {
            limit: Some(limit),
            ..ListOptions::default()
        };
        let lister = self
            .op
            .lister_options(&key, options)
            .await
            .map_err(|e| map_err(&e))?;
        lister
            .take(limit)
            .try_collect()
            .await
            .map_err(|e| map_err(&e))
    }

    async fn find(&self, path: &VPath) -> Result<Found> {
        if path.is_root() {
            return Ok(Found::Dir(0));
        }
        if let Some(meta) = self.stat_file(path).await? {
            return Ok(Found::File(Box::new(meta)));
        }
        let key = dir_key(path);
        let entries = self.peek_dir(path, 1).await?;
        Ok(match entries.first() {
            None => Found::Missing,
            Some(marker) if marker.path() == key => {
                let mtime = match self.op.stat(&key).await {
                    Ok(meta) => unix_secs(&meta),
                    Err(_) => unix_secs(marker.metadata()),
                };
                Found::Dir(mtime)
            }
            Some(_) => Found::Dir(0),
        })
    }

    /// The error for a `path` that does not exist: `NotADirectory` when one of its ancestors
    /// is a file, else `NotFound`.
    async fn missing(&self, path: &VPath) -> Error {
        let mut dir = path.parent();
        while !dir.is_root() {
            match self.find(&dir).await {
                Ok(Found::File(_)) => return not_a_directory(),
                Ok(Found::Dir(_)) => return not_found(),
                Ok(Found::Missing) => dir = dir.parent(),
                Err(e) => return e,
            }
        }
        not_found()
    }

    /// `Ok` when the parent of `path` is a directory.
    async fn parent_is_dir(&self, path: &VPath) -> Result<()> {
        let parent = path.parent();
        match self.find(&parent).await? {
            Found::Dir(_) => Ok(()),
            Found::File(_) => Err(not_a_directory()),
            Found::Missing => Err(self.missing(&parent).await),
        }
    }

    /// Whether directory `path` holds anything besides its marker.
    async fn has_children(&self, path: &VPath) -> Result<bool> {
        let key = dir_key(path);
        let entries = self.peek_dir(path, 2).await?;
        Ok(entries.iter().any(|e| e.path() != key))
    }

    /// Keep directory `dir` after what implied it went away: a marker where none is left.
    async fn keep_dir(&self, dir: &VPath) -> Result<()> {
        if dir.is_root() || !self.peek_dir(dir, 1).await?.is_empty() {
            return Ok(());
        }
        self.op
            .create_dir(&dir_key(dir))
            .await
            .map_err(|e| map_err(&e))
    }

    /// A multipart writer for `path`; nothing is visible until it is closed.
    async fn writer(&self, path: &VPath) -> Result<Writer> {
        // No `chunk`: parts come whole from S3Upload, and exact chunking would hold one more
        // part back.
        let options = WriteOptions {
            concurrent: self.concurrency,
            ..WriteOptions::default()
        };
        self.op
            .writer_options(&file_key(path), options)
            .await
            .map_err(|e| map_err(&e))
    }

    /// Checks that `path` may be written in `mode`, for a new object replacing what is there.
    async fn check_write(&self, path: &VPath, mode: WriteMode) -> Result<()> {
        let create_new = mode == WriteMode::CreateNew;
        if path.is_root() {
            return Err(if create_new {
                already_exists()
            } else {
                is_a_directory()
            });
        }
        match self.find(path).await? {
            Found::Dir(_) if create_new => return Err(already_exists()),
            Found::Dir(_) => return Err(is_a_directory()),
            Found::File(_) if create_new => return Err(already_exists()),
            Found::File(_) => {}
            Found::Missing => self.parent_is_dir(path).await?,
        }
        match mode {
            WriteMode::Append => Err(unsupported("Appending to a file")),
            WriteMode::At(offset) if offset > 0 => {
                Err(unsupported("Writing from an offset (REST before STOR)"))
            }
            WriteMode::Update => Err(unsupported("Writing in place")),
            WriteMode::Replace | WriteMode::At(_) | WriteMode::CreateNew => Ok(()),
        }
    }
}

/// A download: the bytes of one object version, as an [`AsyncRead`].
struct ObjectReader {
    current: Bytes,
    rest: Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
    done: bool,
}

impl AsyncRead for ObjectReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.current.is_empty() {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            match ready!(self.rest.as_mut().poll_next(cx)) {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => self.done = true,
            }
        }
        let n = self.current.len().min(buf.remaining());
        buf.put_slice(&self.current.split_to(n));
        Poll::Ready(Ok(()))
    }
}

type PartFuture = Pin<Box<dyn Future<Output = (Writer, opendal::Result<()>)> + Send>>;

enum WriterState {
    Idle(Writer),
    /// A part being handed over (the writer comes back with the result).
    Busy(PartFuture),
    /// Committed, aborted, or failed.
    Gone,
}

/// An upload to S3: a multipart upload fed part by part.
struct S3Upload {
    state: WriterState,
    part: BytesMut,
    part_size: usize,
    failed: Option<Error>,
}

impl S3Upload {
    fn new(writer: Writer, part_size: usize) -> S3Upload {
        S3Upload {
            state: WriterState::Idle(writer),
            part: BytesMut::new(),
            part_size,
            failed: None,
        }
    }

    fn failure(&self) -> std::io::Error {
        let err = match &self.failed {
            Some(e) => Error::new(e.kind, e.message.clone()),
            None => Error::new(ErrorKind::Other, "upload ended"),
        };
        std::io::Error::other(err)
    }

    /// Waits until no part is being handed over.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.state {
            WriterState::Idle(_) => Poll::Ready(Ok(())),
            WriterState::Gone => Poll::Ready(Err(self.failure())),
            WriterState::Busy(fut) => {
                let (writer, result) = ready!(fut.as_mut().poll(cx));
                self.state = WriterState::Idle(writer);
                match result {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(e) => {
                        let err = map_err(&e);
                        self.failed = Some(Error::new(err.kind, err.message.clone()));
                        Poll::Ready(Err(std::io::Error::other(err)))
                    }
                }
            }
        }
    }

    /// Hands the filled part to the writer.
    fn start_part(&mut self) {
        let WriterState::Idle(mut writer) = std::mem::replace(&mut self.state, WriterState::Gone)
        else {
            return;
        };
        let bytes = self.part.split().freeze();
        self.state = WriterState::Busy(Box::pin(async move {
            let result = writer.write(bytes).await;
            (writer, result)
        }));
    }

    /// The writer, once every part handed over has been taken.
    async fn finish_parts(&mut self) -> Result<Writer> {
        std::future::poll_fn(|cx| self.poll_idle(cx))
            .await
            .map_err(from_upload)?;
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        match std::mem::replace(&mut self.state, WriterState::Gone) {
            WriterState::Idle(writer) => Ok(writer),
            _ => Err(Error::new(ErrorKind::Other, "upload ended")),
        }
    }

    async fn commit_inner(&mut self) -> Result<()> {
        let mut writer = self.finish_parts().await?;
        let last = self.part.split().freeze();
        to_the_end(async move {
            let result = async {
                if !last.is_empty() {
                    writer.write(last).await?;
                }
                writer.close().await
            }
            .await;
            if let Err(e) = result {
                let _ = writer.abort().await;
                return Err(map_err(&e));
            }
            Ok(())
        })
        .await
    }

    async fn abort_inner(&mut self) -> Result<()> {
        self.part = BytesMut::new();
        let mut writer = match self.finish_parts().await {
            Ok(writer) => writer,
            Err(_) => return Ok(()),
        };
        to_the_end(async move { writer.abort().await.map_err(|e| map_err(&e)) }).await
    }
}

/// Runs `step` to its end even if the caller stops waiting: a session that ends while its
/// upload is being completed or aborted (its task dropped) must not leave the multipart
/// upload open in the bucket, where it would hold its parts until a lifecycle rule removes
/// them.
async fn to_the_end<F>(step: F) -> Result<()>
where
    F: Future<Output = Result<()>> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime
            .spawn(step)
            .await
            .unwrap_or_else(|e| Err(Error::new(ErrorKind::Other, e.to_string()))),
        Err(_) => step.await,
    }
}

impl AsyncWrite for S3Upload {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        loop {
            ready!(this.poll_idle(cx))?;
            if this.part.len() < this.part_size {
                if this.part.capacity() == 0 {
                    this.part.reserve(this.part_size);
                }
                let n = buf.len().min(this.part_size - this.part.len());
                this.part.extend_from_slice(&buf[..n]);
                return Poll::Ready(Ok(n));
            }
            this.start_part();
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // A part goes out only once full (S3's parts but the last are at least 5 MiB).
        self.poll_idle(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

#[async_trait]
impl Upload for S3Upload {
    async fn commit(mut self: Box<Self>) -> Result<()> {
        self.commit_inner().await
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.abort_inner().await
    }
}

impl Drop for S3Upload {
    /// Neither committed nor aborted (a task cancelled mid-transfer): nothing becomes
    /// visible; the multipart upload is aborted in the background where a runtime runs.
    fn drop(&mut self) {
        let state = std::mem::replace(&mut self.state, WriterState::Gone);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        match state {
            WriterState::Idle(mut writer) => {
                runtime.spawn(async move {
                    let _ = writer.abort().await;
                });
            }
            WriterState::Busy(fut) => {
                runtime.spawn(async move {
                    let (mut writer, _) = fut.await;
                    let _ = writer.abort().await;
                });
            }
            WriterState::Gone => {}
        }
    }
}

/// A file open for reading at offsets: ranged GETs of the version seen at open.
struct S3ReadHandle {
    op: Operator,
    key: String,
    meta: opendal::Metadata,
}

#[async_trait]
impl FileHandle for S3ReadHandle {
    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let size = self.meta.content_length();
        if offset >= size || len == 0 {
            return Ok(Vec::new());
        }
        let end = offset.saturating_add(len as u64).min(size);
        let options = ReadOptions {
            range: (offset..end).into(),
            if_match: self.meta.etag().map(str::to_string),
            ..ReadOptions::default()
        };
        let data = self
            .op
            .read_options(&self.key, options)
            .await
            .map_err(|e| map_err(&e))?;
        Ok(data.to_vec())
    }

    async fn write_at(&self, _offset: u64, _data: &[u8]) -> Result<()> {
        Err(not_open_for("writing"))
    }

    async fn metadata(&self) -> Result<Metadata> {
        Ok(file_metadata(&self.key, &self.meta))
    }

    async fn set_len(&self, _len: u64) -> Result<()> {
        Err(not_open_for("writing"))
    }

    async fn sync(&self) -> Result<()> {
        Ok(())
    }

    async fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

/// Writes of a handle being uploaded: in order into the upload, the few that arrive early
/// held back until their turn.
struct Sequencer {
    upload: Option<Box<S3Upload>>,
    /// Where the next byte of the object goes.
    next: u64,
    early: BTreeMap<u64, Vec<u8>>,
    early_bytes: usize,
}

/// A file open for writing: a new object, uploaded as the writes come.
struct S3WriteHandle {
    key: String,
    state: tokio::sync::Mutex<Sequencer>,
}

impl S3WriteHandle {
    fn size_of(seq: &Sequencer) -> u64 {
        let early_end = seq
            .early
            .iter()
            .next_back()
            .map_or(0, |(offset, data)| offset + data.len() as u64);
        seq.next.max(early_end)
    }
}

fn out_of_order() -> Error {
    unsupported("Writing at random offsets")
}

#[async_trait]
impl FileHandle for S3WriteHandle {
    async fn read_at(&self, _offset: u64, _len: usize) -> Result<Vec<u8>> {
        Err(unsupported("Reading a file while it is being uploaded"))
    }

    async fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut seq = self.state.lock().await;
        if offset < seq.next {
            return Err(out_of_order());
        }
        if offset > seq.next {
            if seq.early_bytes + data.len() > REORDER_WINDOW || seq.early.contains_key(&offset) {
                return Err(out_of_order());
            }
            seq.early_bytes += data.len();
            seq.early.insert(offset, data.to_vec());
            return Ok(());
        }
        let seq = &mut *seq;
        let Some(upload) = seq.upload.as_mut() else {
            return Err(Error::new(ErrorKind::Other, "upload ended"));
        };
        upload.write_all(data).await.map_err(from_upload)?;
        seq.next += data.len() as u64;
        while let Some(entry) = seq.early.first_entry() {
            if *entry.key() > seq.next {
                break;
            }
            let (offset, data) = entry.remove_entry();
            seq.early_bytes -= data.len();
            if offset != seq.next {
                return Err(out_of_order());
            }
            upload.write_all(&data).await.map_err(from_upload)?;
            seq.next += data.len() as u64;
        }
        Ok(())
    }

    async fn metadata(&self) -> Result<Metadata> {
        let seq = self.state.lock().await;
        let now = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Ok(Metadata {
            kind: EntryKind::File,
            size: Self::size_of(&seq),
            mtime: now,
            mode: 0o644,
            nlink: 1,
            unique: Some(key_id(&self.key)),
        })
    }

    async fn set_len(&self, len: u64) -> Result<()> {
        let seq = self.state.lock().await;
        if len == Self::size_of(&seq) {
            return Ok(());
        }
        Err(unsupported("Changing the size of a file being uploaded"))
    }

    async fn sync(&self) -> Result<()> {
        Ok(())
    }

    async fn close(self: Box<Self>) -> Result<()> {
        let mut seq = self.state.into_inner();
        let Some(upload) = seq.upload.take() else {
            return Err(Error::new(ErrorKind::Other, "upload ended"));
        };
        if !seq.early.is_empty() {
            upload.abort().await?;
            return Err(Error::new(
                ErrorKind::Unsupported,
                "The file has a gap (writes at random offsets are not supported by this storage)",
            ));
        }
        upload.commit().await
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        match self.state.into_inner().upload.take() {
            Some(upload) => upload.abort().await,
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Storage for S3Fs {
    async fn metadata(&self, path: &VPath) -> Result<Metadata> {
        match self.find(path).await? {
            Found::File(meta) => Ok(file_metadata(&file_key(path), &meta)),
            Found::Dir(mtime) => Ok(dir_metadata(&dir_key(path), mtime)),
            Found::Missing => Err(self.missing(path).await),
        }
    }

    /// The root's metadata needs no request (the prefix always exists), so the check lists
    /// one key beneath it.
    async fn check(&self) -> Result<()> {
        self.peek_dir(&VPath::root(), 1).await.map(drop)
    }

    async fn list(&self, path: &VPath) -> Result<Vec<Entry>> {
        let key = dir_key(path);
        let mut lister = self.op.lister(&key).await.map_err(|e| map_err(&e))?;
        let mut entries = Vec::new();
        let mut seen = false;
        while let Some(entry) = lister.try_next().await.map_err(|e| map_err(&e))? {
            seen = true;
            if entry.path() == key {
                continue;
            }
            let name = entry.name().trim_end_matches('/');
            if name.is_empty() || name.contains('/') {
                continue;
            }
            let meta = entry.metadata();
            let child = format!("{}{name}", key.trim_start_matches('/'));
            let metadata = if meta.is_dir() {
                dir_metadata(&format!("{child}/"), 0)
            } else {
                file_metadata(&child, meta)
            };
            entries.push(metadata.into_entry(name.to_string()));
        }
        if !seen && !path.is_root() {
            match self.find(path).await? {
                Found::Dir(_) => {}
                Found::File(_) => return Err(not_a_directory()),
                Found::Missing => return Err(self.missing(path).await),
            }
        }
        Ok(entries)
    }

    async fn open_read(&self, path: &VPath, offset: u64) -> Result<ReadHandle> {
        let Some(meta) = self.stat_file(path).await? else {
            return Err(match self.find(path).await? {
                Found::Dir(_) => is_a_directory(),
                _ => self.missing(path).await,
            });
        };
        let size = meta.content_length();
        if offset >= size {
            return Ok(ReadHandle::from_reader(Box::pin(tokio::io::empty()), size));
        }
        // One ranged GET a part, `concurrency` of them in flight, each pinned to the ETag seen
        // here, so a download never mixes two versions of an object.
        let op = self.op.clone();
        let key = file_key(path);
        let etag = meta.etag().map(str::to_string);
        let part = self.part_size as u64;
        let ranges = (offset..size)
            .step_by(self.part_size)
            .map(move |start| start..start.saturating_add(part).min(size));
        let mut stream = futures_util::stream::iter(ranges)
            .map(move |range| {
                let (op, key) = (op.clone(), key.clone());
                let options = ReadOptions {
                    range: range.into(),
                    if_match: etag.clone(),
                    ..ReadOptions::default()
                };
                async move {
                    op.read_options(&key, options)
                        .await
                        .map(|data| data.to_bytes())
                        .map_err(|e| std::io::Error::other(map_err(&e)))
                }
            })
            .buffered(self.concurrency);
        // The first part now: a failure answers the command rather than the transfer.
        let current = match stream.next().await {
            Some(Ok(bytes)) => bytes,
            Some(Err(e)) => return Err(from_upload(e)),
            None => Bytes::new(),
        };
        let reader = ObjectReader {
            current,
            rest: Box::pin(stream),
            done: false,
        };
        Ok(ReadHandle::from_reader(Box::pin(reader), size))
    }

    async fn open_write(&self, path: &VPath, mode: WriteMode) -> Result<Box<dyn Upload>> {
        self.check_write(path, mode).await?;
        let writer = self.writer(path).await?;
        Ok(Box::new(S3Upload::new(writer, self.part_size)))
    }

    async fn open_file(&self, path: &VPath, access: FileAccess) -> Result<Box<dyn FileHandle>> {
        let Some(mode) = access.write else {
            let Some(meta) = self.stat_file(path).await? else {
                return Err(match self.find(path).await? {
                    Found::Dir(_) => is_a_directory(),
                    _ => self.missing(path).await,
                });
            };
            return Ok(Box::new(S3ReadHandle {
                op: self.op.clone(),
                key: file_key(path),
                meta,
            }));
        };
        self.check_write(path, mode).await?;
        let writer = self.writer(path).await?;
        Ok(Box::new(S3WriteHandle {
            key: file_key(path),
            state: tokio::sync::Mutex::new(Sequencer {
                upload: Some(Box::new(S3Upload::new(writer, self.part_size))),
                next: 0,
                early: BTreeMap::new(),
                early_bytes: 0,
            }),
        }))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            append: false,
            write_at: false,
            atomic_rename: false,
            directories: true,
            chmod: false,
            symlinks: false,
            set_times: false,
        }
    }

    async fn mkdir(&self, path: &VPath) -> Result<()> {
        if path.is_root() {
            return Err(already_exists());
        }
        match self.find(path).await? {
            Found::Missing => {}
            _ => return Err(already_exists()),
        }
        self.parent_is_dir(path).await?;
        self.op
            .create_dir(&dir_key(path))
            .await
            .map_err(|e| map_err(&e))
    }

    async fn rmdir(&self, path: &VPath) -> Result<()> {
        if path.is_root() {
            return Err(permission_denied());
        }
        match self.find(path).await? {
            Found::Dir(_) => {}
            Found::File(_) => return Err(not_a_directory()),
            Found::Missing => return Err(self.missing(path).await),
        }
        if self.has_children(path).await? {
            return Err(Error::new(
                ErrorKind::DirectoryNotEmpty,
                "Directory not empty",
            ));
        }
        self.op
            .delete(&dir_key(path))
            .await
            .map_err(|e| map_err(&e))?;
        self.keep_dir(&path.parent()).await
    }

    async fn remove_file(&self, path: &VPath) -> Result<()> {
        if path.is_root() {
            return Err(permission_denied());
        }
        if self.stat_file(path).await?.is_none() {
            return Err(match self.find(path).await? {
                Found::Dir(_) => is_a_directory(),
                _ => self.missing(path).await,
            });
        }
        self.op
            .delete(&file_key(path))
            .await
            .map_err(|e| map_err(&e))?;
        self.keep_dir(&path.parent()).await
    }

    async fn rename(&self, from: &VPath, to: &VPath) -> Result<()> {
        if from.is_root() || to.is_root() {
            return Err(permission_denied());
        }
        let source = self.find(from).await?;
        if let Found::Missing = source {
            return Err(self.missing(from).await);
        }
        if from == to {
            return Ok(());
        }
        if to.starts_with(from) {
            return Err(Error::new(ErrorKind::PermissionDenied, "Invalid argument"));
        }
        self.parent_is_dir(to).await?;
        let target = self.find(to).await?;
        match source {
            Found::File(_) => {
                if let Found::Dir(_) = target {
                    return Err(is_a_directory());
                }
                // Not atomic: for a moment both names hold the content, never neither.
                self.op
                    .copy(&file_key(from), &file_key(to))
                    .await
                    .map_err(|e| map_err(&e))?;
                self.op
                    .delete(&file_key(from))
                    .await
                    .map_err(|e| map_err(&e))?;
            }
            Found::Dir(_) => {
                match target {
                    Found::File(_) => return Err(not_a_directory()),
                    Found::Dir(_) if self.has_children(to).await? => {
                        return Err(Error::new(
                            ErrorKind::DirectoryNotEmpty,
                            "Directory not empty",
                        ));
                    }
                    Found::Dir(_) | Found::Missing => {}
                }
                if self.has_children(from).await? {
                    return Err(unsupported("Renaming a directory that is not empty"));
                }
                self.op
                    .create_dir(&dir_key(to))
                    .await
                    .map_err(|e| map_err(&e))?;
                self.op
                    .delete(&dir_key(from))
                    .await
                    .map_err(|e| map_err(&e))?;
            }
            Found::Missing => return Err(not_found()),
        }
        self.keep_dir(&from.parent()).await
    }

    async fn set_mtime(&self, path: &VPath, _unix_secs: i64) -> Result<()> {
        match self.find(path).await? {
            Found::Missing => Err(self.missing(path).await),
            _ => Err(unsupported("Setting modification times")),
        }
    }
}
