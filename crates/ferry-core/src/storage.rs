//! Which storage a logged-in account sees: [`StorageFactory`], and the default,
//! [`local_storage`], which serves each account's home directory, jailed.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_auth::Account;
use ferry_vfs::{LocalFs, Storage};

/// Makes the storage a logged-in account sees (its home). Shared by every protocol, so an
/// account sees the same files over FTP and SFTP.
pub type StorageFactory =
    Arc<dyn Fn(&Account) -> io::Result<Arc<dyn Storage>> + Send + Sync + 'static>;

/// How long an opened home directory serves new logins (see [`local_storage`]).
pub const ROOT_REUSE: Duration = Duration::from_secs(5);

/// The default [`StorageFactory`]: the account's home directory, jailed. Logins of the same
/// home within [`ROOT_REUSE`] of its opening share one open directory (one descriptor, not one
/// per session, and no open per login); after that, the next login opens it again, so a home
/// replaced on disk is picked up within that time even on a busy server. Sessions keep the
/// directory they started with.
pub fn local_storage() -> StorageFactory {
    local_storage_reusing(ROOT_REUSE)
}

/// [`local_storage`] with another reuse window (tests).
pub fn local_storage_reusing(reuse: Duration) -> StorageFactory {
    let open: Mutex<HashMap<PathBuf, (Arc<LocalFs>, Instant)>> = Mutex::new(HashMap::new());
    Arc::new(move |account: &Account| {
        let now = Instant::now();
        let mut open = open
            .lock()
            .map_err(|_| io::Error::other("storage cache poisoned"))?;
        if let Some((fs, opened)) = open.get(&account.home) {
            if now.duration_since(*opened) < reuse {
                return Ok(Arc::clone(fs) as Arc<dyn Storage>);
            }
        }
        let fs = Arc::new(LocalFs::new(&account.home)?);
        // Only recently opened homes stay (their sessions hold their own references).
        open.retain(|_, (_, opened)| now.duration_since(*opened) < reuse);
        open.insert(account.home.clone(), (Arc::clone(&fs), now));
        Ok(fs as Arc<dyn Storage>)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn roots_are_reused_for_a_while_then_reopened() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("home");
        std::fs::create_dir(&root).unwrap();
        let account = Account {
            name: "alice".into(),
            home: root.clone(),
            permissions: ferry_auth::Permissions::ALL,
            anonymous: false,
        };
        let factory = local_storage_reusing(std::time::Duration::from_millis(300));
        let first = factory(&account).unwrap();
        let first_ptr = Arc::as_ptr(&first).cast::<()>();
        drop(first);
        // No session holds it, yet the next login shares it: no open per login.
        let second = factory(&account).unwrap();
        assert_eq!(Arc::as_ptr(&second).cast::<()>(), first_ptr);
        // A root replaced on disk is picked up once the window has passed.
        std::fs::rename(&root, tmp.path().join("old")).unwrap();
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("new-file"), b"x").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(350));
        let third = factory(&account).unwrap();
        assert_ne!(Arc::as_ptr(&third).cast::<()>(), first_ptr);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let names = |fs: &Arc<dyn Storage>| -> Vec<String> {
            let entries = rt.block_on(fs.list(&ferry_vfs::VPath::root())).unwrap();
            entries.into_iter().map(|e| e.name).collect()
        };
        assert_eq!(names(&third), ["new-file"]);
        // The session that started on the old root keeps it.
        assert!(names(&second).is_empty());
    }
}
