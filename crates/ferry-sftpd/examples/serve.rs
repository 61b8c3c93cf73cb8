//! Serve one directory over SFTP on loopback, for trying the server by hand:
//!
//! ```text
//! FERRY_PASSWORD=secret cargo run -p ferry-sftpd --example serve -- DIR [PORT] [STATE_DIR]
//! sftp -P PORT ferry@127.0.0.1
//! ```
//!
//! The user is `ferry` with the password from `FERRY_PASSWORD`; the host keys are kept in
//! STATE_DIR (default: `DIR/../.ferry-sftp-state`).

use std::path::PathBuf;
use std::sync::Arc;

use ferry_auth::{Authenticator, UserSpec};
use ferry_sftpd::{SftpConfig, SftpServer, local_storage};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(args.next().ok_or("usage: serve DIR [PORT] [STATE_DIR]")?);
    let port: u16 = args.next().map_or(Ok(2222), |p| p.parse())?;
    let state = args
        .next()
        .map_or_else(|| root.join("..").join(".ferry-sftp-state"), PathBuf::from);
    let password = std::env::var("FERRY_PASSWORD").map_err(|_| "set FERRY_PASSWORD")?;
    let auth = Authenticator::new(vec![UserSpec {
        name: "ferry".into(),
        password_hash: Some(ferry_auth::hash_password(&password)),
        authorized_keys: Vec::new(),
        authorized_keys_file: None,
        home: root,
        permissions: vec!["all".into()],
        max_sessions: None,
        allowed_networks: Vec::new(),
        upload_rate: None,
        download_rate: None,
        quota_bytes: None,
        quota_files: None,
    }])?;
    let server = SftpServer::new(SftpConfig::new(state), Arc::new(auth), local_storage())?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    for key in server.host_keys() {
        println!("host key {key}");
    }
    println!(
        "try: sftp -P {} ferry@127.0.0.1",
        listener.local_addr()?.port()
    );
    server
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
