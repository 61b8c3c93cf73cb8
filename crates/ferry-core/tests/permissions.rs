//! The permission matrix: every operation of [`UserFs`] against every single permission, on a
//! real (memory) backend. An operation the account may not do is refused before storage is
//! touched; one it may do goes through.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use ferry_auth::{Account, Permissions};
use ferry_core::{Operation, UserFs};
use ferry_vfs::{ErrorKind, FileAccess, MemoryFs, Storage, VPath, WriteMode};
use tokio::io::AsyncWriteExt;

fn p(s: &str) -> VPath {
    VPath::root().resolve(s).unwrap()
}

fn account(permissions: Permissions) -> Arc<Account> {
    Arc::new(Account {
        name: "u".into(),
        home: PathBuf::from("/unused"),
        permissions,
        anonymous: false,
        limits: Default::default(),
    })
}

/// `/d/` and `/d/f` ("abc"), and an empty directory `/e/`.
async fn tree() -> Arc<MemoryFs> {
    let fs = Arc::new(MemoryFs::new());
    fs.mkdir(&p("/d")).await.unwrap();
    fs.mkdir(&p("/e")).await.unwrap();
    let mut up = fs.open_write(&p("/d/f"), WriteMode::Replace).await.unwrap();
    up.write_all(b"abc").await.unwrap();
    up.commit().await.unwrap();
    fs
}

/// Run one operation the way a protocol would; `Err(kind)` if refused or failed.
async fn attempt(user: &UserFs, op: Operation) -> Result<(), ErrorKind> {
    let kind = |e: ferry_vfs::Error| e.kind;
    match op {
        Operation::Enter => user.enter(&p("/d")).await.map(drop).map_err(kind),
        Operation::Stat => {
            user.stat(&p("/d/f")).await.map_err(kind)?;
            // The memory backend has no file system figures: let through, then unsupported.
            match user.statvfs(&p("/d/f")).await {
                Err(e) if e.kind != ErrorKind::Unsupported => Err(e.kind),
                _ => Ok(()),
            }
        }
        Operation::List => {
            user.describe(&p("/d/f")).await.map_err(kind)?;
            user.list_sorted(&p("/d")).await.map(drop).map_err(kind)
        }
        Operation::Read => {
            user.open_read(&p("/d/f"), 0).await.map_err(kind)?;
            let read = FileAccess {
                read: true,
                write: None,
            };
            user.open_file(&p("/d/f"), read)
                .await
                .map(drop)
                .map_err(kind)
        }
        Operation::Write => {
            let up = user
                .open_write(&p("/d/g"), WriteMode::Replace)
                .await
                .map_err(kind)?;
            up.commit().await.map_err(kind)?;
            let write = FileAccess {
                read: false,
                write: Some(WriteMode::Update),
            };
            let h = user.open_file(&p("/d/f"), write).await.map_err(kind)?;
            h.close().await.map_err(kind)
        }
        Operation::SetAttributes => user.set_mtime(&p("/d/f"), 0).await.map_err(kind),
        Operation::MakeDir => user.mkdir(&p("/d/new")).await.map_err(kind),
        Operation::Delete => {
            user.remove_file(&p("/d/f")).await.map_err(kind)?;
            user.rmdir(&p("/e")).await.map_err(kind)
        }
        Operation::Rename => {
            user.rename_source(&p("/d/f")).await.map_err(kind)?;
            user.rename(&p("/d/f"), &p("/d/h")).await.map_err(kind)
        }
    }
}

/// What `/d` holds, to see that a refused operation changed nothing.
async fn snapshot(fs: &MemoryFs) -> Vec<(String, u64, i64)> {
    let mut all: Vec<_> = fs
        .list(&p("/d"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.size, e.mtime))
        .collect();
    all.push((
        "/e".into(),
        u64::from(fs.metadata(&p("/e")).await.is_ok()),
        0,
    ));
    all
}

#[tokio::test]
async fn every_operation_against_every_permission() {
    let singles: [(&str, Permissions); 8] = [
        ("none", Permissions::default()),
        (
            "list",
            Permissions {
                list: true,
                ..Permissions::default()
            },
        ),
        (
            "read",
            Permissions {
                read: true,
                ..Permissions::default()
            },
        ),
        (
            "write",
            Permissions {
                write: true,
                ..Permissions::default()
            },
        ),
        (
            "delete",
            Permissions {
                delete: true,
                ..Permissions::default()
            },
        ),
        (
            "rename",
            Permissions {
                rename: true,
                ..Permissions::default()
            },
        ),
        (
            "mkdir",
            Permissions {
                mkdir: true,
                ..Permissions::default()
            },
        ),
        ("all", Permissions::ALL),
    ];
    // The expected matrix, written out rather than derived from `allowed_by`.
    let expected = |op: Operation, perm: &str| -> bool {
        perm == "all"
            || match op {
                Operation::Enter => true,
                Operation::Stat => perm == "list" || perm == "read",
                Operation::List => perm == "list",
                Operation::Read => perm == "read",
                Operation::Write | Operation::SetAttributes => perm == "write",
                Operation::MakeDir => perm == "mkdir",
                Operation::Delete => perm == "delete",
                Operation::Rename => perm == "rename",
            }
    };
    for op in Operation::ALL {
        for (name, perms) in singles {
            let fs = tree().await;
            let user = UserFs::new(account(perms), Arc::clone(&fs) as Arc<dyn Storage>);
            let before = snapshot(&fs).await;
            let result = attempt(&user, op).await;
            let want = expected(op, name);
            assert_eq!(user.allows(op), want, "{op:?} with {name}: allows()");
            if want {
                assert_eq!(result, Ok(()), "{op:?} with {name} must go through");
            } else {
                assert_eq!(
                    result,
                    Err(ErrorKind::PermissionDenied),
                    "{op:?} with {name} must be refused"
                );
                assert_eq!(
                    snapshot(&fs).await,
                    before,
                    "{op:?} with {name} changed storage"
                );
            }
        }
    }
}

#[tokio::test]
async fn what_the_backend_cannot_do_is_unsupported_not_denied() {
    let fs = tree().await;
    let user = UserFs::new(account(Permissions::ALL), fs as Arc<dyn Storage>);
    // The memory backend has no permission bits.
    let chmod = user.set_mode(&p("/d/f"), 0o600).await;
    assert_eq!(chmod.map_err(|e| e.kind), Err(ErrorKind::Unsupported));
}

#[tokio::test]
async fn the_root_can_be_neither_removed_nor_renamed() {
    let fs = tree().await;
    let user = UserFs::new(account(Permissions::ALL), fs as Arc<dyn Storage>);
    let kind = |r: ferry_vfs::Result<()>| r.map_err(|e| e.kind);
    assert_eq!(
        kind(user.rmdir(&VPath::root()).await),
        Err(ErrorKind::PermissionDenied)
    );
    assert_eq!(
        kind(user.rename(&VPath::root(), &p("/x")).await),
        Err(ErrorKind::PermissionDenied)
    );
    assert_eq!(
        kind(user.rename_source(&VPath::root()).await.map(drop)),
        Err(ErrorKind::PermissionDenied)
    );
}
