//! Test harness: the SFTP server on loopback port 0 with one user and a temporary root.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ferry_auth::{Authenticator, UserSpec};
use ferry_sftpd::{SftpConfig, SftpServer, local_storage};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse";
/// Upper bound for one client run: a hang becomes a failure.
pub const WAIT: Duration = Duration::from_secs(60);

fn hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| ferry_auth::hash_password(PASSWORD))
}

pub struct Harness {
    pub addr: SocketAddr,
    pub root: tempfile::TempDir,
    _state: tempfile::TempDir,
    pub fingerprint: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut SftpConfig)) -> Harness {
        let root = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let auth = Authenticator::new(
            vec![UserSpec {
                name: USER.into(),
                password_hash: hash().to_string(),
                root: root.path().to_path_buf(),
                permissions: vec!["all".into()],
                tls: None,
            }],
            None,
        )
        .unwrap();
        let mut config = SftpConfig::new(state.path());
        config.auth_rejection_time = Duration::from_millis(10);
        tweak(&mut config);
        let server = SftpServer::new(config, Arc::new(auth), local_storage()).unwrap();
        let fingerprint = server.fingerprints()[0].clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = server
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Harness {
            addr,
            root,
            _state: state,
            fingerprint,
            stop: Some(stop),
        }
    }

    pub fn ssh_options(&self) -> Vec<String> {
        [
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "LogLevel=ERROR",
            // The cipher OpenSSH users pick for speed (not in russh's default offer).
            "-o",
            "Ciphers=aes128-gcm@openssh.com",
            // `sftp -b` turns batch mode on, which forbids password prompts; the first value
            // given wins, so this lets sshpass answer.
            "-o",
            "BatchMode=no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Run `sftp -b batch` in `local` (the batch's local working directory).
    pub async fn sftp(&self, password: &str, batch: &str, local: &Path) -> Output {
        let batch_file = local.join(".batch");
        std::fs::write(&batch_file, batch).unwrap();
        let mut args = vec!["-p".to_string(), password.to_string(), "sftp".to_string()];
        args.extend(self.ssh_options());
        args.extend([
            "-b".to_string(),
            batch_file.display().to_string(),
            "-P".to_string(),
            self.addr.port().to_string(),
            format!("{USER}@127.0.0.1"),
        ]);
        run("sshpass", &args, local).await
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn run(program: &str, args: &[String], dir: &Path) -> Output {
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} did not finish within {WAIT:?}"))
        .unwrap()
}
