//! Logins and channel requests over real SSH connections (russh's client on loopback): the
//! methods offered, keys of every kind (and a signature from another key refused), the
//! keyboard-interactive prompt, the throttle (passwords count, keys offered do not), and
//! everything but the `sftp` subsystem refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{Harness, PASSWORD, Setup, Sftp, USER, WAIT, path, ssh};
use ferry_sftp_proto::{Request, Response};
use russh::client::KeyboardInteractiveAuthResponse;
use russh::keys::ssh_key::encoding::Encode;
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey, PrivateKeyWithHashAlg};
use russh::{ChannelMsg, MethodKind};

fn key(algorithm: Algorithm) -> PrivateKey {
    if let Algorithm::Rsa { .. } = algorithm {
        // Small, to keep the test quick: the size is the client's business.
        let pair = russh::keys::ssh_key::private::RsaKeypair::random(
            &mut russh::keys::key::safe_rng(),
            2048,
        )
        .unwrap();
        return PrivateKey::from(pair);
    }
    PrivateKey::random(&mut russh::keys::key::safe_rng(), algorithm).unwrap()
}

/// The `authorized_keys` line of `key`.
fn line(key: &PrivateKey) -> String {
    key.public_key().to_openssh().unwrap()
}

async fn key_login(h: &Harness, key: &PrivateKey, hash: Option<HashAlg>) -> bool {
    let mut c = ssh(h).await;
    let key = PrivateKeyWithHashAlg::new(Arc::new(key.clone()), hash);
    c.authenticate_publickey(USER, key).await.unwrap().success()
}

fn methods(result: russh::client::AuthResult) -> Vec<MethodKind> {
    match result {
        russh::client::AuthResult::Failure {
            remaining_methods, ..
        } => remaining_methods.to_vec(),
        russh::client::AuthResult::Success => panic!("logged in with nothing"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_is_answered_with_the_methods_users_have() {
    let k = key(Algorithm::Ed25519);
    let cases = [
        (
            Some(PASSWORD),
            vec![],
            vec![MethodKind::Password, MethodKind::KeyboardInteractive],
        ),
        (None, vec![line(&k)], vec![MethodKind::PublicKey]),
        (
            Some(PASSWORD),
            vec![line(&k)],
            vec![
                MethodKind::PublicKey,
                MethodKind::Password,
                MethodKind::KeyboardInteractive,
            ],
        ),
    ];
    for (password, keys, want) in cases {
        let setup = Setup {
            password,
            keys,
            ..Setup::default()
        };
        let h = Harness::setup(setup, |_| {}).await;
        let mut c = ssh(&h).await;
        let got = methods(c.authenticate_none(USER).await.unwrap());
        assert_eq!(got, want);
        // The same for a name nobody has: the answer says nothing about who exists.
        let mut c = ssh(&h).await;
        assert_eq!(methods(c.authenticate_none("nobody").await.unwrap()), want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_every_kind_log_in() {
    let ed25519 = key(Algorithm::Ed25519);
    let ecdsa: Vec<PrivateKey> = [
        EcdsaCurve::NistP256,
        EcdsaCurve::NistP384,
        EcdsaCurve::NistP521,
    ]
    .into_iter()
    .map(|curve| key(Algorithm::Ecdsa { curve }))
    .collect();
    let rsa = key(Algorithm::Rsa { hash: None });
    let stranger = key(Algorithm::Ed25519);
    let mut keys = vec![line(&ed25519), line(&rsa)];
    keys.extend(ecdsa.iter().map(line));
    let setup = Setup {
        password: None,
        keys,
        ..Setup::default()
    };
    let h = Harness::setup(setup, |_| {}).await;

    assert!(key_login(&h, &ed25519, None).await);
    for k in &ecdsa {
        assert!(key_login(&h, k, None).await, "{:?}", k.algorithm());
    }
    assert!(key_login(&h, &rsa, Some(HashAlg::Sha256)).await);
    assert!(key_login(&h, &rsa, Some(HashAlg::Sha512)).await);
    // RSA with SHA-1 signatures (`ssh-rsa`) is refused, even for a listed key.
    assert!(!key_login(&h, &rsa, None).await);
    assert!(!key_login(&h, &stranger, None).await);

    // A key login serves SFTP as the user.
    std::fs::write(h.root.path().join("f"), b"abc").unwrap();
    let mut c = ssh(&h).await;
    let k = PrivateKeyWithHashAlg::new(Arc::new(ed25519.clone()), None);
    assert!(c.authenticate_publickey(USER, k).await.unwrap().success());
    let mut s = Sftp::on(c, true).await;
    match s.call(1, Request::Stat { path: path("/f") }).await {
        Response::Attrs(a) => assert_eq!(a.size, Some(3)),
        other => panic!("{other:?}"),
    }
    // Only the user the key is listed for.
    let mut c = ssh(&h).await;
    let k = PrivateKeyWithHashAlg::new(Arc::new(ed25519.clone()), None);
    assert!(!c.authenticate_publickey("bob", k).await.unwrap().success());
}

/// Answers the server's request for a signature with one made by another key.
struct WrongSigner(PrivateKey);

fn sign<K: russh::keys::ssh_key::SigningKey>(key: &K, data: &[u8]) -> Vec<u8> {
    key.try_sign(data).unwrap().encode_vec().unwrap()
}

impl russh::Signer for WrongSigner {
    type Error = russh::AgentAuthError;

    fn auth_sign(
        &mut self,
        _key: &russh::keys::agent::AgentIdentity,
        _hash_alg: Option<HashAlg>,
        mut to_sign: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, Self::Error>> + Send {
        let signature = sign(&self.0, &to_sign);
        to_sign.extend_from_slice(&(signature.len() as u32).to_be_bytes());
        to_sign.extend_from_slice(&signature);
        async move { Ok(to_sign) }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_key_needs_its_own_signature() {
    let listed = key(Algorithm::Ed25519);
    let other = key(Algorithm::Ed25519);
    let setup = Setup {
        password: None,
        keys: vec![line(&listed)],
        ..Setup::default()
    };
    let h = Harness::setup(setup, |_| {}).await;
    // The client asks first ("would this key do?", no signature), the server says yes, then
    // the signature comes from another key: refused.
    let mut c = ssh(&h).await;
    let mut signer = WrongSigner(other.clone());
    let r = c
        .authenticate_publickey_with(USER, listed.public_key().clone(), None, &mut signer)
        .await
        .unwrap();
    assert!(!r.success());
    // The same flow with the right signature logs in.
    let mut c = ssh(&h).await;
    let mut signer = WrongSigner(listed.clone());
    let r = c
        .authenticate_publickey_with(USER, listed.public_key().clone(), None, &mut signer)
        .await
        .unwrap();
    assert!(r.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_interactive_asks_once_for_the_password() {
    let h = Harness::start().await;
    for (answer, ok) in [("wrong", false), (PASSWORD, true)] {
        let mut c = ssh(&h).await;
        let r = c
            .authenticate_keyboard_interactive_start(USER, None)
            .await
            .unwrap();
        let KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } = r else {
            panic!("no prompt: {r:?}");
        };
        assert_eq!(prompts.len(), 1);
        assert_eq!(prompts[0].prompt, "Password: ");
        assert!(!prompts[0].echo);
        let r = c
            .authenticate_keyboard_interactive_respond(vec![answer.to_string()])
            .await
            .unwrap();
        assert_eq!(
            matches!(r, KeyboardInteractiveAuthResponse::Success),
            ok,
            "{answer}: {r:?}"
        );
    }
    // Two answers to one prompt: refused.
    let mut c = ssh(&h).await;
    c.authenticate_keyboard_interactive_start(USER, None)
        .await
        .unwrap();
    let r = c
        .authenticate_keyboard_interactive_respond(vec![PASSWORD.into(), PASSWORD.into()])
        .await
        .unwrap();
    assert!(!matches!(r, KeyboardInteractiveAuthResponse::Success));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_offered_are_not_failed_logins_but_passwords_are() {
    let listed = key(Algorithm::Ed25519);
    let setup = Setup {
        keys: vec![line(&listed)],
        ..Setup::default()
    };
    let h = Harness::setup(setup, |c| c.max_failed_logins_per_ip = 2).await;
    // Many keys nobody listed, as a client holding several offers them.
    for _ in 0..5 {
        assert!(!key_login(&h, &key(Algorithm::Ed25519), None).await);
    }
    let mut c = ssh(&h).await;
    assert!(
        c.authenticate_password(USER, PASSWORD)
            .await
            .unwrap()
            .success()
    );
    // Wrong passwords, over both password methods, use the address's guesses.
    let mut c = ssh(&h).await;
    assert!(
        !c.authenticate_password(USER, "wrong")
            .await
            .unwrap()
            .success()
    );
    let mut c = ssh(&h).await;
    c.authenticate_keyboard_interactive_start(USER, None)
        .await
        .unwrap();
    let r = c
        .authenticate_keyboard_interactive_respond(vec!["wrong".into()])
        .await
        .unwrap();
    assert!(!matches!(r, KeyboardInteractiveAuthResponse::Success));
    // Even the right password is not checked now; a key still logs in (it can't be guessed).
    let mut c = ssh(&h).await;
    assert!(
        !c.authenticate_password(USER, PASSWORD)
            .await
            .unwrap()
            .success()
    );
    assert!(key_login(&h, &listed, None).await);
}

/// What the server answers on `channel` until it closes: (successes, failures, stderr).
async fn answers(channel: &mut russh::Channel<russh::client::Msg>) -> (usize, usize, String) {
    let (mut ok, mut failed, mut stderr) = (0, 0, String::new());
    loop {
        let msg = tokio::time::timeout(WAIT, channel.wait())
            .await
            .expect("server silent");
        match msg {
            Some(ChannelMsg::Success) => ok += 1,
            Some(ChannelMsg::Failure) => failed += 1,
            Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                stderr.push_str(&String::from_utf8_lossy(&data))
            }
            Some(ChannelMsg::Close) | None => return (ok, failed, stderr),
            Some(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_but_sftp_is_refused() {
    let h = Harness::start().await;
    let mut c = ssh(&h).await;
    assert!(
        c.authenticate_password(USER, PASSWORD)
            .await
            .unwrap()
            .success()
    );
    let c = Sftp::on(c, false).await.ssh;

    // pty, env, X11 and agent forwarding: each refused, and the channel still carries SFTP.
    let channel = c.channel_open_session().await.unwrap();
    channel
        .request_pty(true, "xterm", 80, 24, 0, 0, &[])
        .await
        .unwrap();
    channel.set_env(true, "LANG", "C").await.unwrap();
    channel
        .request_x11(true, false, "MIT-MAGIC-COOKIE-1", "00", 0)
        .await
        .unwrap();
    channel.agent_forward(true).await.unwrap();
    let mut channel = channel;
    let mut refused = 0;
    while refused < 4 {
        let msg = tokio::time::timeout(WAIT, channel.wait()).await.unwrap();
        match msg {
            Some(ChannelMsg::Failure) => refused += 1,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    channel.request_subsystem(true, "sftp").await.unwrap();
    let msg = tokio::time::timeout(WAIT, channel.wait()).await.unwrap();
    assert!(matches!(msg, Some(ChannelMsg::Success)), "{msg:?}");

    // shell, exec, legacy scp and other subsystems: refused with a message, channel closed.
    let cases: [(&str, &str); 4] = [
        ("shell", "SFTP only"),
        ("exec", "SFTP only"),
        ("scp", "legacy protocol"),
        ("subsystem", "not provided"),
    ];
    for (what, says) in cases {
        let mut channel = c.channel_open_session().await.unwrap();
        match what {
            "shell" => channel.request_shell(true).await.unwrap(),
            "exec" => channel.exec(true, "id").await.unwrap(),
            "scp" => channel.exec(true, "scp -t /tmp").await.unwrap(),
            _ => channel.request_subsystem(true, "netconf").await.unwrap(),
        }
        let (_, _, stderr) = answers(&mut channel).await;
        assert!(stderr.contains(says), "{what}: {stderr:?}");
    }

    // Port forwarding, both ways.
    let r = c
        .channel_open_direct_tcpip("127.0.0.1", 22, "127.0.0.1", 40000)
        .await;
    assert!(r.is_err(), "direct-tcpip opened");
    let r = c.tcpip_forward("127.0.0.1", 0).await;
    assert!(r.is_err(), "remote forwarding accepted: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// The guesser is on `::1`, the user on 127.0.0.1 (needs IPv6 loopback).
async fn a_guesser_slows_itself_but_cannot_lock_the_user_out_ipv6() {
    const LIMIT: u32 = 2;
    let setup = Setup {
        also_listen: Some("[::1]:0"),
        ..Setup::default()
    };
    let h = Harness::setup(setup, |c| c.max_failed_logins_per_user = LIMIT).await;
    let config = Arc::new(russh::client::Config::default());
    let attacker = h.also_addr.unwrap();
    let mut guesser = russh::client::connect(Arc::clone(&config), attacker, common::TrustAll)
        .await
        .unwrap();
    for i in 0..LIMIT {
        let r = guesser
            .authenticate_password(USER, format!("guess{i}"))
            .await;
        assert!(!r.unwrap().success());
    }
    // The next guess from the guessing address is held back (a second, doubling)...
    let held = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        guesser.authenticate_password(USER, "guess-again"),
    )
    .await;
    assert!(held.is_err(), "the guesser was answered at once");
    // ...while the user, from an address that has not failed, logs in at once.
    let mut c = ssh(&h).await;
    let r = tokio::time::timeout(WAIT, c.authenticate_password(USER, PASSWORD)).await;
    assert!(r.unwrap().unwrap().success());
}

/// Log in with the password on a new connection to `h`: whether it was accepted.
async fn password_login(h: &Harness) -> (bool, russh::client::Handle<common::TrustAll>) {
    let mut c = ssh(h).await;
    let r = tokio::time::timeout(WAIT, c.authenticate_password(USER, PASSWORD)).await;
    (r.unwrap().unwrap().success(), c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_holds_at_most_max_sessions() {
    let setup = Setup {
        max_sessions: Some(2),
        ..Setup::default()
    };
    let h = Harness::setup(setup, |_| {}).await;
    let (first, one) = password_login(&h).await;
    let (second, _two) = password_login(&h).await;
    assert!(first && second);
    let (third, _) = password_login(&h).await;
    assert!(!third, "a third session over max_sessions = 2");
    // A session that ends gives its place back.
    one.disconnect(russh::Disconnect::ByApplication, "", "")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if password_login(&h).await.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_logs_in_only_from_allowed_networks() {
    let elsewhere = Setup {
        allowed_networks: vec!["192.0.2.0/24".into()],
        ..Setup::default()
    };
    let h = Harness::setup(elsewhere, |_| {}).await;
    assert!(
        !password_login(&h).await.0,
        "the right password from outside the networks"
    );
    let here = Setup {
        allowed_networks: vec!["192.0.2.0/24".into(), "127.0.0.1".into()],
        ..Setup::default()
    };
    let h = Harness::setup(here, |_| {}).await;
    assert!(password_login(&h).await.0);
}
