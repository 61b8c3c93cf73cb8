//! Temporary files of uploads: hidden from every operation, and removed once no upload owns
//! them.
//!
//! A [`WriteMode::Replace`](crate::WriteMode::Replace) upload writes `.ferry-upload.<16 hex>.tmp`
//! beside its target and holds an exclusive `flock` on it for as long as it runs. A process
//! that dies without cleaning up (`kill -9`, power loss) leaves the file behind, and the kernel
//! drops its lock: a temporary file nobody holds locked belongs to no running upload, in this
//! process or in any other serving the same tree. Such files are removed:
//! - when a root is opened for the first time in the process ([`sweep_once`]): a walk of the
//!   tree in a thread of its own, bounded in entries and in time, so even a huge tree costs a
//!   bounded amount, once per process;
//! - when a listing comes across one (what the bounded walk did not reach).
//!
//! A file modified less than [`CREATE_GRACE`] ago is left alone: an upload creates its file and
//! then locks it, and a sweep must not remove it in between. On a file system without `flock`
//! nothing is removed (a lock that cannot be tested proves nothing).
//!
//! Whatever their state, the names are never shown nor reachable: listings skip them, and
//! every operation on such a path answers "not found" (or refuses to create one), so no
//! protocol can read, remove, rename or overwrite an upload in progress or its remains.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::VPath;
use cap_std::fs::{Dir, MetadataExt, OpenOptions};

use crate::{Error, ErrorKind};

/// Prefix of an upload's temporary file.
pub const TEMP_PREFIX: &str = ".ferry-upload.";

const TEMP_SUFFIX: &str = ".tmp";

/// Hex digits of the random part of a temporary name.
const RANDOM_DIGITS: usize = 16;

/// A temporary file modified this recently may be one an upload has created and not yet locked.
pub const CREATE_GRACE: Duration = Duration::from_secs(2);

/// Most directory entries one sweep of a root looks at.
pub const SWEEP_MAX_ENTRIES: usize = 1_000_000;

/// Longest one sweep of a root runs.
pub const SWEEP_MAX_TIME: Duration = Duration::from_secs(60);

/// A new temporary name for an upload.
pub(crate) fn temp_name() -> String {
    format!(
        "{TEMP_PREFIX}{:0width$x}{TEMP_SUFFIX}",
        rand::random::<u64>(),
        width = RANDOM_DIGITS
    )
}

/// Whether `name` is an upload's temporary file name.
pub fn is_upload_temp(name: &str) -> bool {
    name.strip_prefix(TEMP_PREFIX)
        .and_then(|rest| rest.strip_suffix(TEMP_SUFFIX))
        .is_some_and(|hex| hex.len() == RANDOM_DIGITS && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `path` goes through a temporary name (such paths do not exist for clients).
pub(crate) fn hides(path: &VPath) -> bool {
    path.components().any(is_upload_temp)
}

/// The answer for a path through a temporary name that a client reads, removes or renames.
pub(crate) fn not_found() -> Error {
    Error::new(ErrorKind::NotFound, "No such file or directory")
}

/// The answer for a path through a temporary name that a client would create.
pub(crate) fn reserved() -> Error {
    Error::new(
        ErrorKind::InvalidName,
        "This name is reserved for uploads in progress",
    )
}

/// Take the lock that marks `file` as a running upload's (see the module notes). Errors are
/// ignored: where `flock` does not work, sweeps remove nothing.
pub(crate) fn claim(file: &cap_std::fs::File) {
    let _ = ferry_sys::try_lock_exclusive(file);
}

/// Remove the temporary file `name` in `dir` if no upload owns it; `true` if removed.
pub(crate) fn remove_if_stale(dir: &Dir, name: &str) -> bool {
    let Ok(md) = dir.symlink_metadata(name) else {
        return false;
    };
    if !md.is_file() || !older_than_grace(&md) {
        return false;
    }
    use cap_std::fs::OpenOptionsExt;
    let Ok(file) = dir.open_with(
        name,
        OpenOptions::new()
            .read(true)
            .custom_flags(ferry_sys::O_NONBLOCK | ferry_sys::O_NOFOLLOW),
    ) else {
        return false;
    };
    // Checked again on what was opened: the name may have been replaced meanwhile.
    let same = file
        .metadata()
        .is_ok_and(|now| now.is_file() && now.ino() == md.ino() && now.dev() == md.dev());
    if !same || !matches!(ferry_sys::try_lock_exclusive(&file), Ok(true)) {
        return false;
    }
    // Removed while locked, so no upload can take it meanwhile.
    dir.remove_file(name).is_ok()
}

fn older_than_grace(md: &cap_std::fs::Metadata) -> bool {
    let Ok(modified) = md.modified() else {
        return false;
    };
    SystemTime::now()
        .duration_since(modified.into_std())
        .is_ok_and(|age| age >= CREATE_GRACE)
}

/// Start a sweep of the tree under `root` unless one has run for it in this process (roots are
/// known by device, inode and birth time, so every path to one counts once, and a directory
/// made anew where another was counts anew).
pub(crate) fn sweep_once(root: &Arc<Dir>) {
    type Identity = (u64, u64, Option<SystemTime>);
    static SWEPT: Mutex<Option<HashSet<Identity>>> = Mutex::new(None);
    let Ok(md) = root.dir_metadata() else {
        return;
    };
    let identity = (md.dev(), md.ino(), md.created().ok().map(|t| t.into_std()));
    {
        let mut swept = SWEPT.lock().unwrap_or_else(|e| e.into_inner());
        if !swept.get_or_insert_with(HashSet::new).insert(identity) {
            return;
        }
    }
    /// Roots waiting for the sweeper, and whether its thread is running.
    static QUEUE: Mutex<(VecDeque<Arc<Dir>>, bool)> = Mutex::new((VecDeque::new(), false));
    let mut queue = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
    queue.0.push_back(Arc::clone(root));
    if queue.1 {
        return;
    }
    // One thread of its own, for every root in turn: not the blocking pool (a large tree must
    // not hold a thread that transfers and logins need), nor a thread per root (a thousand
    // users logging in at once).
    let spawned = std::thread::Builder::new()
        .name("ferry-sweep".into())
        .spawn(|| {
            loop {
                let next = {
                    let mut queue = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
                    let next = queue.0.pop_front();
                    // Told under the lock: a root queued from now on starts another thread.
                    queue.1 = next.is_some();
                    next
                };
                let Some(root) = next else { return };
                sweep(&root, SWEEP_MAX_ENTRIES, Instant::now() + SWEEP_MAX_TIME);
            }
        });
    queue.1 = spawned.is_ok();
}

/// Walk the tree under `root` (never through a symbolic link), removing stale temporary files,
/// until `max_entries` have been looked at or `deadline` has passed. Returns how many were
/// removed.
pub(crate) fn sweep(root: &Dir, max_entries: usize, deadline: Instant) -> usize {
    let mut pending = vec![String::new()];
    let mut seen = 0usize;
    let mut removed = 0;
    while let Some(rel) = pending.pop() {
        let opened = if rel.is_empty() {
            root.try_clone()
        } else {
            use cap_std::fs::OpenOptionsExt;
            // Never through a symbolic link (a directory replaced by one since it was read).
            root.open_with(
                &rel,
                OpenOptions::new()
                    .read(true)
                    .custom_flags(ferry_sys::O_DIRECTORY | ferry_sys::O_NOFOLLOW),
            )
            .map(|d| Dir::from_std_file(d.into_std()))
        };
        let Ok(dir) = opened else { continue };
        let Ok(entries) = dir.entries() else { continue };
        for entry in entries {
            seen += 1;
            if seen > max_entries || (seen % 1024 == 0 && Instant::now() >= deadline) {
                return removed;
            }
            let Ok(entry) = entry else { continue };
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                });
            } else if kind.is_file() && is_upload_temp(&name) && remove_if_stale(&dir, &name) {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised_exactly() {
        let name = temp_name();
        assert!(is_upload_temp(&name), "{name}");
        assert!(is_upload_temp(".ferry-upload.0123456789abcdef.tmp"));
        for other in [
            ".ferry-upload.0123456789abcdef",
            ".ferry-upload.0123456789abcde.tmp",
            ".ferry-upload.0123456789abcdeg.tmp",
            ".ferry-upload.notes",
            "ferry-upload.0123456789abcdef.tmp",
            ".ferry-upload.0123456789abcdef.tmp.bak",
        ] {
            assert!(!is_upload_temp(other), "{other}");
        }
    }

    #[test]
    fn a_sweep_removes_only_what_no_upload_owns() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let old = SystemTime::now() - Duration::from_secs(3600);
        let plant = |rel: &str, modified: SystemTime| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let file = std::fs::File::create(&path).unwrap();
            file.set_modified(modified).unwrap();
            file
        };
        drop(plant("a/.ferry-upload.000000000000000a.tmp", old));
        drop(plant("a/b/.ferry-upload.000000000000000b.tmp", old));
        // Just created: may be an upload's that has not taken its lock yet.
        drop(plant(
            ".ferry-upload.000000000000000c.tmp",
            SystemTime::now(),
        ));
        let live = plant(".ferry-upload.000000000000000d.tmp", old);
        assert!(ferry_sys::try_lock_exclusive(&live).unwrap());
        drop(plant("elsewhere/.ferry-upload.000000000000000e.tmp", old));
        std::fs::write(root.join(".ferry-upload.notes"), b"a user's file").unwrap();
        std::os::unix::fs::symlink(root.join("elsewhere"), root.join("a/link")).unwrap();
        let dir = Dir::open_ambient_dir(root, cap_std::ambient_authority()).unwrap();

        // Bounded: nothing is looked at past the limit.
        assert_eq!(sweep(&dir, 0, Instant::now() + SWEEP_MAX_TIME), 0);
        let far = Instant::now() + SWEEP_MAX_TIME;
        assert_eq!(sweep(&dir, SWEEP_MAX_ENTRIES, far), 3);
        for gone in [
            "a/.ferry-upload.000000000000000a.tmp",
            "a/b/.ferry-upload.000000000000000b.tmp",
            "elsewhere/.ferry-upload.000000000000000e.tmp",
        ] {
            assert!(!root.join(gone).exists(), "{gone}");
        }
        for kept in [
            ".ferry-upload.000000000000000c.tmp",
            ".ferry-upload.000000000000000d.tmp",
            ".ferry-upload.notes",
        ] {
            assert!(root.join(kept).exists(), "{kept}");
        }
        drop(live);
        assert_eq!(sweep(&dir, SWEEP_MAX_ENTRIES, far), 1);
        assert!(!root.join(".ferry-upload.000000000000000d.tmp").exists());
    }
}
