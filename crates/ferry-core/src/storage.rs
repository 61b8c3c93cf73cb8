//! Which storage a logged-in account sees: [`StorageFactory`], and the default,
//! [`local_storage`], which serves each account's home directory, jailed, with one listing
//! cache for every home it opens; [`with_s3`] serves homes written `s3://BUCKET/PREFIX`
//! from an S3 bucket instead.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_auth::Account;
use ferry_vfs::{ListCache, LocalFs, S3Config, S3Fs, Storage};

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
/// directory they started with. Every home it opens keeps and shares large listings in one
/// [`ListCache`] of its own (default limit), which outlives the homes' reopening.
pub fn local_storage() -> StorageFactory {
    local_storage_with(Arc::new(ListCache::default()))
}

/// [`local_storage`] keeping listings in `listings` (a server's configured limit; its
/// counters stay readable through the caller's handle).
pub fn local_storage_with(listings: Arc<ListCache>) -> StorageFactory {
    factory(listings, ROOT_REUSE)
}

/// [`local_storage`] with another reuse window (tests).
pub fn local_storage_reusing(reuse: Duration) -> StorageFactory {
    factory(Arc::new(ListCache::default()), reuse)
}

fn factory(listings: Arc<ListCache>, reuse: Duration) -> StorageFactory {
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
        let fs = Arc::new(LocalFs::with_cache(&account.home, Arc::clone(&listings))?);
        // Only recently opened homes stay (their sessions hold their own references).
        open.retain(|_, (_, opened)| now.duration_since(*opened) < reuse);
        open.insert(account.home.clone(), (Arc::clone(&fs), now));
        Ok(fs as Arc<dyn Storage>)
    })
}

/// How every `s3://` home is reached: endpoint, region, URL style, credentials. What is
/// left `None` comes from the standard `AWS_*` environment (credentials, region) or
/// defaults (AWS itself; path-style URLs with an endpoint, virtual-hosted ones without).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// Endpoint URL of an S3-compatible store (`http://127.0.0.1:9000`).
    pub endpoint: Option<String>,
    /// Region (`AWS_REGION` otherwise).
    pub region: Option<String>,
    /// Path-style URLs (`ENDPOINT/BUCKET/KEY`).
    pub path_style: Option<bool>,
    /// Access key id (`AWS_ACCESS_KEY_ID` otherwise).
    pub access_key_id: Option<String>,
    /// Secret access key (`AWS_SECRET_ACCESS_KEY` otherwise).
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

impl S3Settings {
    /// The configuration of the bucket a home `s3://BUCKET/PREFIX` names; `None` for a home
    /// that is not such a URL.
    pub fn config_for(&self, home: &str) -> Option<S3Config> {
        let mut config = S3Config::from_url(home)?;
        config.endpoint.clone_from(&self.endpoint);
        config.region.clone_from(&self.region);
        config.path_style = self.path_style.unwrap_or(self.endpoint.is_some());
        config.access_key_id.clone_from(&self.access_key_id);
        config.secret_access_key.clone_from(&self.secret_access_key);
        Some(config)
    }
}

/// `local` for homes that are directories; an S3 bucket, reached as `settings` say, for homes
/// written `s3://BUCKET/PREFIX` (one client per such home, shared by its sessions). A home
/// that starts with `s3://` but names no valid bucket is refused, never taken as a directory.
pub fn with_s3(local: StorageFactory, settings: S3Settings) -> StorageFactory {
    let open: Mutex<HashMap<String, Arc<S3Fs>>> = Mutex::new(HashMap::new());
    Arc::new(move |account: &Account| {
        let home = account.home.to_string_lossy();
        if !S3Config::is_s3_url(&home) {
            return local(account);
        }
        let config = settings
            .config_for(&home)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "invalid s3:// home"))?;
        let mut open = open
            .lock()
            .map_err(|_| io::Error::other("storage cache poisoned"))?;
        if let Some(fs) = open.get(home.as_ref()) {
            return Ok(Arc::clone(fs) as Arc<dyn Storage>);
        }
        let fs = Arc::new(S3Fs::new(&config).map_err(|e| io::Error::other(e.message))?);
        open.insert(home.into_owned(), Arc::clone(&fs));
        Ok(fs as Arc<dyn Storage>)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn s3_homes_are_buckets_and_other_homes_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let settings = S3Settings {
            endpoint: Some("http://127.0.0.1:9".into()),
            ..S3Settings::default()
        };
        let config = settings.config_for("s3://bucket-1/a//b/").unwrap();
        assert_eq!(
            (config.bucket.as_str(), config.prefix.as_str()),
            ("bucket-1", "a/b")
        );
        assert!(config.path_style, "an endpoint means path-style by default");
        assert!(
            !S3Settings::default()
                .config_for("s3://b-1")
                .unwrap()
                .path_style
        );
        let factory = with_s3(local_storage(), settings);
        let mut account = account_on(tmp.path());
        assert!(factory(&account).unwrap().capabilities().append);
        account.home = PathBuf::from("s3://bucket-1/users/alice");
        let s3 = factory(&account).unwrap();
        assert!(!s3.capabilities().append && !s3.capabilities().write_at);
        assert!(
            Arc::ptr_eq(&s3, &factory(&account).unwrap()),
            "one client per home"
        );
        account.home = PathBuf::from("s3://Not_A_Bucket/x");
        assert!(factory(&account).is_err());
    }

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
            limits: Default::default(),
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

    /// Lists `/big` through a sorted listing (the path that uses the listing cache).
    async fn list_big(fs: &Arc<dyn Storage>) -> usize {
        let big = ferry_vfs::VPath::root().resolve("/big").unwrap();
        let stream = fs.list_sorted(&big).await.unwrap();
        stream.collect().await.unwrap().len()
    }

    fn account_on(home: &std::path::Path) -> Account {
        Account {
            name: "alice".into(),
            home: home.to_path_buf(),
            permissions: ferry_auth::Permissions::ALL,
            anonymous: false,
            limits: Default::default(),
        }
    }

    #[tokio::test]
    async fn listings_kept_outlive_a_home_reopened() {
        let home = tempfile::tempdir_in("/dev/shm").unwrap();
        std::fs::create_dir(home.path().join("big")).unwrap();
        for i in 0..1200 {
            std::fs::write(home.path().join(format!("big/f{i:04}")), b"x").unwrap();
        }
        let account = account_on(home.path());
        let cache = Arc::new(ListCache::default());
        let factory = super::factory(Arc::clone(&cache), Duration::from_millis(50));
        let first = factory(&account).unwrap();
        assert_eq!(list_big(&first).await, 1200);
        // Until the home is opened again (bounded: the window is 50 ms).
        let until = Instant::now() + Duration::from_secs(10);
        let reopened = loop {
            let next = factory(&account).unwrap();
            if !Arc::ptr_eq(&next, &first) {
                break next;
            }
            assert!(Instant::now() < until, "the home was never reopened");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(list_big(&reopened).await, 1200);
        assert_eq!(
            cache.hits(),
            1,
            "the reopened home did not use the kept listing"
        );
    }

    #[tokio::test]
    async fn factories_keep_listings_apart() {
        let home = tempfile::tempdir_in("/dev/shm").unwrap();
        std::fs::create_dir(home.path().join("big")).unwrap();
        for i in 0..1200 {
            std::fs::write(home.path().join(format!("big/f{i:04}")), b"x").unwrap();
        }
        let account = account_on(home.path());
        let (a, b) = (Arc::new(ListCache::default()), Arc::new(ListCache::new(0)));
        let (on_a, on_b) = (
            local_storage_with(Arc::clone(&a))(&account).unwrap(),
            local_storage_with(Arc::clone(&b))(&account).unwrap(),
        );
        for _ in 0..2 {
            assert_eq!(list_big(&on_a).await, 1200);
            assert_eq!(list_big(&on_b).await, 1200);
        }
        assert_eq!((a.hits(), a.kept_entries()), (1, 1200));
        assert_eq!((b.hits(), b.kept_entries()), (0, 0));
    }
}
