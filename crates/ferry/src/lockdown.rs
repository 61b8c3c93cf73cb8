//! `ferry serve`'s least privilege: who may serve, as which account, confined to what. The
//! system calls are `ferry_sys::privilege`'s; this module decides what to ask of them from the
//! configuration, and says what it got.

use std::path::PathBuf;

use anyhow::{Context, bail};
use ferry_sys::privilege::{self, Identity, Landlock, LockDown};

/// Set only by tests: after the lock-down, try to open this file and say on standard error
/// whether it could be (never what it holds). It shows that a file outside the served roots
/// stays shut even when the server's own code asks for it, as a bug would.
const PROBE_VAR: &str = "FERRY_TEST_CONFINEMENT_PROBE";

/// What the configuration asks for.
#[derive(Debug, Default)]
pub(crate) struct Settings {
    /// `run_as` / `--run-as`: `USER[:GROUP]`.
    pub(crate) run_as: Option<String>,
    /// `allow_root` / `--allow-root`: serve as root when started as root without `run_as`.
    pub(crate) allow_root: bool,
    /// `landlock = false` gives up the file-system confinement.
    pub(crate) landlock: bool,
    /// `seccomp = false` gives up the system-call filter.
    pub(crate) seccomp: bool,
    /// Keep `CAP_NET_BIND_SERVICE` (active-mode data connections from a port below 1024).
    pub(crate) keep_bind_service: bool,
    /// Served roots and the state directory: read and write.
    pub(crate) read_write: Vec<PathBuf>,
    /// What is read after start (anonymous root, certificate files for a reload).
    pub(crate) read_only: Vec<PathBuf>,
}

/// Decide, before anything is bound, whether this process may serve at all: started as root,
/// it needs an account to drop to, or to be told it may stay root. Returns the account.
pub(crate) fn check(settings: &Settings) -> anyhow::Result<Option<Identity>> {
    let root = privilege::effective_uid() == 0;
    let Some(spec) = &settings.run_as else {
        if root && !settings.allow_root {
            bail!(
                "refusing to serve as root: set run_as = \"USER[:GROUP]\" (or --run-as) to drop to that account once the ports are bound, or allow_root = true (or --allow-root) to serve as root"
            );
        }
        return Ok(None);
    };
    let id = privilege::resolve_identity(spec).context("run_as")?;
    if root {
        return Ok(Some(id));
    }
    let (uid, gid) = (privilege::real_uid(), privilege::real_gid());
    if id.uid != uid || id.gid != gid {
        bail!(
            "run_as = \"{spec}\" needs ferry started as root (running as uid {uid} gid {gid}); start it as root, or leave run_as out"
        );
    }
    // Already that account: nothing to switch.
    Ok(None)
}

/// Drop to `identity` (if any) and confine the process. Must run before the async runtime
/// starts its threads (it fails otherwise), after every port is bound and every key and
/// certificate is loaded.
pub(crate) fn apply(settings: &Settings, identity: Option<Identity>) -> anyhow::Result<()> {
    let mut read_write = settings.read_write.clone();
    // /dev/null is written by libraries now and then; /proc/self is read for memory figures.
    read_write.push(PathBuf::from("/dev/null"));
    let mut read_only = settings.read_only.clone();
    read_only.extend(["/proc/self", "/dev/urandom"].map(PathBuf::from));
    let plan = LockDown {
        keep_bind_service: settings.keep_bind_service && identity.is_some(),
        run_as: identity.clone(),
        read_write,
        read_only,
        landlock: settings.landlock,
        seccomp: settings.seccomp,
    };
    let done = privilege::lock_down(&plan).context("dropping privileges")?;
    if let Some(id) = &identity {
        tracing::info!(
            user = %id.name,
            uid = id.uid,
            gid = id.gid,
            keep_bind_service = plan.keep_bind_service,
            "privileges dropped"
        );
    }
    match done.landlock {
        Landlock::Full => tracing::info!("landlock: confined to the served roots"),
        Landlock::Partial => tracing::info!(
            "landlock: confined to the served roots, as far as this kernel's Landlock goes"
        ),
        Landlock::Unsupported => {
            tracing::warn!("landlock: this kernel lacks Landlock; files are not confined")
        }
        Landlock::Off => tracing::warn!("landlock = false: files are not confined"),
    }
    if !settings.seccomp {
        tracing::warn!("seccomp = false: no system-call filter");
    }
    for path in &done.missing {
        tracing::warn!(path = %path.display(), "landlock: does not exist at start, so stays unreachable");
    }
    if let Some(path) = std::env::var_os(PROBE_VAR) {
        let path = PathBuf::from(path);
        match std::fs::File::open(&path) {
            Ok(_) => eprintln!("ferry: confinement probe: {} opened", path.display()),
            Err(e) => eprintln!(
                "ferry: confinement probe: {} refused: {}",
                path.display(),
                e.kind()
            ),
        }
    }
    Ok(())
}
