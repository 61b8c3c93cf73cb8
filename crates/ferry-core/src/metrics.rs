//! [`Metrics`]: what every protocol's servers count, in Prometheus' text format (through
//! `prometheus-client`), the transfers running now ([`TransferGuard`]), and
//! [`MeteredStorage`], which times every storage request.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use ferry_vfs::{
    Capabilities, Entry, EntryStream, FileAccess, FileHandle, FsSpace, Metadata, ReadHandle,
    Result, Storage, Upload, VPath, WriteMode,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::sessions::{Protocol, SessionRegistry};

/// Which way a transfer's bytes go, from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server.
    Upload,
    /// Server to client.
    Download,
}

impl Direction {
    /// Lower-case name, the metrics' label value.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LoginLabels {
    protocol: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransferLabels {
    protocol: &'static str,
    direction: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

type Probe = Box<dyn Fn() -> usize + Send + Sync>;

/// The counters of one process (every protocol's servers share them through
/// [`ServerContext`](crate::ServerContext)).
pub struct Metrics {
    registry: Registry,
    sessions: Family<ProtocolLabels, Gauge>,
    logins: Family<LoginLabels, Counter>,
    bans: Family<ProtocolLabels, Counter>,
    bytes: Family<TransferLabels, Counter>,
    transfers: Family<TransferLabels, Counter>,
    transfer_errors: Family<ProtocolLabels, Counter>,
    passive_ports: Gauge,
    storage_seconds: Family<OperationLabels, Histogram, fn() -> Histogram>,
    passive_probes: Mutex<Vec<Probe>>,
    /// Bytes of the transfers that have ended.
    moved: AtomicU64,
    running: Mutex<HashMap<u64, Arc<RunningTransfer>>>,
    next_transfer: AtomicU64,
    recent_bans: Mutex<VecDeque<Ban>>,
}

/// How many refused logins [`Metrics::recent_bans`] keeps.
const RECENT_BANS: usize = 32;

/// A login refused by the failed-login throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ban {
    pub protocol: Protocol,
    /// The client refused.
    pub address: IpAddr,
    pub at: SystemTime,
}

/// A transfer under way, as [`Metrics::transfers`] lists it.
#[derive(Debug)]
pub struct RunningTransfer {
    /// Unique within the process.
    pub id: u64,
    /// The session's id in the [`SessionRegistry`].
    pub session: u64,
    pub protocol: Protocol,
    pub direction: Direction,
    /// The file, as the user sees it.
    pub path: String,
    /// The bytes it will move, when known.
    pub size: Option<u64>,
    pub since: SystemTime,
    progress: Arc<AtomicU64>,
}

impl RunningTransfer {
    /// Bytes moved so far.
    pub fn bytes(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }
}

/// A transfer's place among the running ones; when finished (or dropped: failed), its bytes
/// and its outcome are counted.
#[derive(Debug)]
pub struct TransferGuard {
    metrics: Arc<Metrics>,
    info: Arc<RunningTransfer>,
    ended: bool,
}

impl TransferGuard {
    /// Count `n` more bytes moved.
    pub fn add(&self, n: u64) {
        self.info.progress.fetch_add(n, Ordering::Relaxed);
    }

    /// The transfer ended, having moved `bytes` in all, completed (`ok`) or not.
    pub fn finish(mut self, bytes: u64, ok: bool) {
        self.info.progress.store(bytes, Ordering::Relaxed);
        self.end(ok);
    }

    /// Bytes moved so far.
    pub fn bytes(&self) -> u64 {
        self.info.bytes()
    }

    fn end(&mut self, ok: bool) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let info = &self.info;
        lock(&self.metrics.running).remove(&info.id);
        self.metrics
            .add_bytes(info.protocol, info.direction, info.bytes());
        self.metrics
            .transfer_ended(info.protocol, info.direction, ok);
    }
}

impl Drop for TransferGuard {
    fn drop(&mut self) {
        self.end(false);
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn storage_histogram() -> Histogram {
    // 100 µs to about 3 s: a local stat up to a slow object store's upload part.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("ferry"),
            sessions: Family::default(),
            logins: Family::default(),
            bans: Family::default(),
            bytes: Family::default(),
            transfers: Family::default(),
            transfer_errors: Family::default(),
            passive_ports: Gauge::default(),
            storage_seconds: Family::new_with_constructor(storage_histogram),
            passive_probes: Mutex::new(Vec::new()),
            moved: AtomicU64::new(0),
            running: Mutex::new(HashMap::new()),
            next_transfer: AtomicU64::new(1),
            recent_bans: Mutex::new(VecDeque::new()),
        };
        let r = &mut m.registry;
        r.register("sessions", "Sessions open now", m.sessions.clone());
        r.register("logins", "Login attempts by result", m.logins.clone());
        r.register(
            "bans",
            "Logins refused because the address or user failed too often",
            m.bans.clone(),
        );
        r.register("transfer_bytes", "Bytes transferred", m.bytes.clone());
        r.register("transfers", "Transfers completed", m.transfers.clone());
        r.register(
            "transfer_errors",
            "Transfers that failed",
            m.transfer_errors.clone(),
        );
        r.register(
            "passive_ports_in_use",
            "FTP passive ports leased now",
            m.passive_ports.clone(),
        );
        r.register(
            "storage_request_seconds",
            "Time storage requests took",
            m.storage_seconds.clone(),
        );
        m
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Metrics {
    /// A login attempt of `protocol` that succeeded (`ok`) or failed.
    pub fn login(&self, protocol: Protocol, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.logins
            .get_or_create(&LoginLabels {
                protocol: protocol.name(),
                result,
            })
            .inc();
    }

    /// A login from `address` refused by the failed-login throttle.
    pub fn banned(&self, protocol: Protocol, address: IpAddr) {
        {
            let mut recent = lock(&self.recent_bans);
            if recent.len() >= RECENT_BANS {
                recent.pop_front();
            }
            recent.push_back(Ban {
                protocol,
                address,
                at: SystemTime::now(),
            });
        }
        self.bans
            .get_or_create(&ProtocolLabels {
                protocol: protocol.name(),
            })
            .inc();
    }

    /// `n` bytes moved `direction` over `protocol` (by a transfer not registered with
    /// [`Metrics::start_transfer`]).
    pub fn add_bytes(&self, protocol: Protocol, direction: Direction, n: u64) {
        self.bytes
            .get_or_create(&TransferLabels {
                protocol: protocol.name(),
                direction: direction.name(),
            })
            .inc_by(n);
        self.moved.fetch_add(n, Ordering::Relaxed);
    }

    /// A transfer ended: completed (`ok`) or failed.
    pub fn transfer_ended(&self, protocol: Protocol, direction: Direction, ok: bool) {
        if ok {
            self.transfers
                .get_or_create(&TransferLabels {
                    protocol: protocol.name(),
                    direction: direction.name(),
                })
                .inc();
        } else {
            self.transfer_errors
                .get_or_create(&ProtocolLabels {
                    protocol: protocol.name(),
                })
                .inc();
        }
    }

    /// The latest logins refused by the throttle (at most a few dozen), oldest first.
    pub fn recent_bans(&self) -> Vec<Ban> {
        lock(&self.recent_bans).iter().copied().collect()
    }

    /// Every byte moved so far: of ended transfers, and of those running.
    pub fn bytes_moved(&self) -> u64 {
        let running: u64 = lock(&self.running).values().map(|t| t.bytes()).sum();
        self.moved.load(Ordering::Relaxed) + running
    }

    /// A transfer of `session` begins; `progress` counts its bytes as they move (the
    /// transfer's own counter, or a new one to feed through [`TransferGuard::add`]).
    #[allow(clippy::too_many_arguments)]
    pub fn start_transfer(
        self: &Arc<Self>,
        session: u64,
        protocol: Protocol,
        direction: Direction,
        path: String,
        size: Option<u64>,
        progress: Arc<AtomicU64>,
    ) -> TransferGuard {
        let info = Arc::new(RunningTransfer {
            id: self.next_transfer.fetch_add(1, Ordering::Relaxed),
            session,
            protocol,
            direction,
            path,
            size,
            since: SystemTime::now(),
            progress,
        });
        lock(&self.running).insert(info.id, Arc::clone(&info));
        TransferGuard {
            metrics: Arc::clone(self),
            info,
            ended: false,
        }
    }

    /// The transfers running now, oldest first.
    pub fn transfers(&self) -> Vec<Arc<RunningTransfer>> {
        let mut all: Vec<_> = lock(&self.running).values().cloned().collect();
        all.sort_by_key(|t| t.id);
        all
    }

    /// Count `in_use()` (a passive port pool's leased ports) in `passive_ports_in_use`.
    pub fn watch_passive_ports(&self, in_use: impl Fn() -> usize + Send + Sync + 'static) {
        lock(&self.passive_probes).push(Box::new(in_use));
    }

    /// One storage request `operation` that took `took`.
    pub fn storage_request(&self, operation: &'static str, took: Duration) {
        self.storage_seconds
            .get_or_create(&OperationLabels { operation })
            .observe(took.as_secs_f64());
    }

    /// Everything, in Prometheus' text exposition format, with the sessions of `sessions`.
    pub fn render(&self, sessions: &SessionRegistry) -> String {
        for protocol in [Protocol::Ftp, Protocol::Sftp] {
            let n = i64::try_from(sessions.count_of(protocol)).unwrap_or(i64::MAX);
            self.sessions
                .get_or_create(&ProtocolLabels {
                    protocol: protocol.name(),
                })
                .set(n);
        }
        let ports: usize = lock(&self.passive_probes).iter().map(|p| p()).sum();
        self.passive_ports
            .set(i64::try_from(ports).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A storage whose every request is timed into [`Metrics`].
pub struct MeteredStorage {
    inner: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
}

impl MeteredStorage {
    /// `inner`, timed into `metrics`.
    pub fn wrap(inner: Arc<dyn Storage>, metrics: Arc<Metrics>) -> Arc<dyn Storage> {
        Arc::new(MeteredStorage { inner, metrics })
    }

    async fn timed<T>(&self, op: &'static str, f: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let r = f.await;
        self.metrics.storage_request(op, started.elapsed());
        r
    }
}

#[async_trait]
impl Storage for MeteredStorage {
    async fn metadata(&self, path: &VPath) -> Result<Metadata> {
        self.timed("metadata", self.inner.metadata(path)).await
    }

    async fn list(&self, path: &VPath) -> Result<Vec<Entry>> {
        self.timed("list", self.inner.list(path)).await
    }

    async fn list_sorted(&self, path: &VPath) -> Result<EntryStream> {
        self.timed("list", self.inner.list_sorted(path)).await
    }

    async fn open_read(&self, path: &VPath, offset: u64) -> Result<ReadHandle> {
        self.timed("open_read", self.inner.open_read(path, offset))
            .await
    }

    async fn open_write(&self, path: &VPath, mode: WriteMode) -> Result<Box<dyn Upload>> {
        self.timed("open_write", self.inner.open_write(path, mode))
            .await
    }

    async fn open_file(&self, path: &VPath, access: FileAccess) -> Result<Box<dyn FileHandle>> {
        self.timed("open_file", self.inner.open_file(path, access))
            .await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn mkdir(&self, path: &VPath) -> Result<()> {
        self.timed("mkdir", self.inner.mkdir(path)).await
    }

    async fn rmdir(&self, path: &VPath) -> Result<()> {
        self.timed("rmdir", self.inner.rmdir(path)).await
    }

    async fn remove_file(&self, path: &VPath) -> Result<()> {
        self.timed("remove_file", self.inner.remove_file(path))
            .await
    }

    async fn rename(&self, from: &VPath, to: &VPath) -> Result<()> {
        self.timed("rename", self.inner.rename(from, to)).await
    }

    async fn set_mtime(&self, path: &VPath, unix_secs: i64) -> Result<()> {
        self.timed("set_mtime", self.inner.set_mtime(path, unix_secs))
            .await
    }

    async fn check(&self) -> Result<()> {
        self.timed("check", self.inner.check()).await
    }

    async fn statvfs(&self, path: &VPath) -> Result<FsSpace> {
        self.timed("statvfs", self.inner.statvfs(path)).await
    }

    async fn set_mode(&self, path: &VPath, mode: u32) -> Result<()> {
        self.timed("set_mode", self.inner.set_mode(path, mode))
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn counts_show_in_the_text_format() {
        let m = Metrics::default();
        let reg = SessionRegistry::new(0, 0);
        let _s = reg
            .admit(Protocol::Sftp, "127.0.0.1:1".parse().unwrap())
            .unwrap();
        m.login(Protocol::Ftp, false);
        m.banned(Protocol::Ftp, "127.0.0.9".parse().unwrap());
        assert_eq!(m.recent_bans()[0].address.to_string(), "127.0.0.9");
        m.add_bytes(Protocol::Ftp, Direction::Download, 1234);
        m.transfer_ended(Protocol::Ftp, Direction::Download, true);
        m.transfer_ended(Protocol::Sftp, Direction::Upload, false);
        m.watch_passive_ports(|| 3);
        m.storage_request("metadata", Duration::from_millis(2));
        let text = m.render(&reg);
        for line in [
            "ferry_sessions{protocol=\"sftp\"} 1",
            "ferry_sessions{protocol=\"ftp\"} 0",
            "ferry_logins_total{protocol=\"ftp\",result=\"failed\"} 1",
            "ferry_bans_total{protocol=\"ftp\"} 1",
            "ferry_transfer_bytes_total{protocol=\"ftp\",direction=\"download\"} 1234",
            "ferry_transfers_total{protocol=\"ftp\",direction=\"download\"} 1",
            "ferry_transfer_errors_total{protocol=\"sftp\"} 1",
            "ferry_passive_ports_in_use 3",
            "ferry_storage_request_seconds_count{operation=\"metadata\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert_eq!(m.bytes_moved(), 1234);
    }

    #[test]
    fn running_transfers_are_listed_and_counted_when_they_end() {
        let m = Arc::new(Metrics::default());
        let progress = Arc::new(AtomicU64::new(0));
        let t = m.start_transfer(
            7,
            Protocol::Sftp,
            Direction::Upload,
            "/f".into(),
            None,
            Arc::clone(&progress),
        );
        t.add(10);
        assert_eq!(m.transfers()[0].bytes(), 10);
        assert_eq!(m.bytes_moved(), 10);
        t.finish(15, true);
        assert!(m.transfers().is_empty());
        assert_eq!(m.bytes_moved(), 15);
        // Dropped unfinished: a failed transfer, its bytes counted all the same.
        let t = m.start_transfer(
            7,
            Protocol::Ftp,
            Direction::Download,
            "/g".into(),
            Some(9),
            progress,
        );
        drop(t);
        let text = m.render(&SessionRegistry::new(0, 0));
        assert!(
            text.contains("ferry_transfer_errors_total{protocol=\"ftp\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ferry_transfers_total{protocol=\"sftp\",direction=\"upload\"} 1"),
            "{text}"
        );
    }
}
