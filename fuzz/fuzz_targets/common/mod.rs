//! What the session targets share: a runtime, one user with a cheap password hash, and
//! storage that gives every login a fresh in-memory tree (so each input starts alike).
use std::sync::Arc;

use ferry_auth::{Authenticator, UserSpec};
use ferry_ftpd::StorageFactory;
use ferry_vfs::{MemoryFs, Storage};

/// The user's name and password.
pub const USER: &str = "fuzz";

/// A runtime with one worker beside the thread that blocks on each input.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `USER` with password `USER` and every permission; tiny argon2 parameters keep logins
/// cheap for the fuzzer.
pub fn users() -> Arc<Authenticator> {
    let params = argon2::Params::new(8, 1, 1, None).expect("params");
    let salt = argon2::password_hash::SaltString::encode_b64(b"ferry-fuzz-salt").expect("salt");
    let hash = argon2::PasswordHasher::hash_password(
        &argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params),
        USER.as_bytes(),
        &salt,
    )
    .expect("hash")
    .to_string();
    let users = vec![UserSpec {
        name: USER.into(),
        password_hash: Some(hash),
        home: "/nonexistent".into(),
        permissions: vec!["all".into()],
        ..UserSpec::default()
    }];
    Arc::new(Authenticator::new(users).expect("users"))
}

/// A fresh in-memory tree per login.
pub fn memory_storage() -> StorageFactory {
    Arc::new(|_| Ok(Arc::new(MemoryFs::new()) as Arc<dyn Storage>))
}
