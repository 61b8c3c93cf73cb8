//! The SFTP client against a scripted, misbehaving SFTP server (russh's server on loopback):
//! short reads are completed in order, and answers longer than asked, empty data, responses to
//! requests never sent, an over-long packet length, endless empty listings and silence all end
//! in an error, never a panic or a hang.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry_client::sftp::HostKeyPolicy;
use ferry_client::{Error, SftpClient, SftpOptions, SshAuth};
use ferry_sftp_proto::{
    Attrs, ClientMessage, Handle, Request, Response, ServerMessage, Status, StatusCode,
    split_packet,
};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, ChannelMsg, MethodKind, MethodSet};

const WAIT: Duration = Duration::from_secs(60);
/// Size of the file the scripted server pretends to have.
const SIZE: u64 = 3_000_000;

#[derive(Clone, Copy, Debug)]
enum Script {
    /// Reads answered with at most 1000 bytes: a correct, slow server.
    ShortReads,
    /// A read answered with one byte more than asked.
    LongData,
    /// A read answered with no bytes.
    EmptyData,
    /// Answers carry an id that was never sent.
    WrongId,
    /// Reads are never answered.
    Silent,
    /// A packet length of 4 GiB.
    HugeLength,
    /// Directory reads answered with empty NAME replies forever.
    EmptyNames,
}

fn byte_at(offset: u64) -> u8 {
    (offset.wrapping_mul(31) % 251) as u8
}

fn expected(from: u64) -> Vec<u8> {
    (from..SIZE).map(byte_at).collect()
}

struct Hostile {
    script: Script,
    channels: HashMap<ChannelId, Channel<Msg>>,
}

impl russh::server::Handler for Hostile {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::Password][..])),
            partial_success: false,
        })
    }

    async fn auth_password(&mut self, _user: &str, _password: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(ch) = self.channels.remove(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        tokio::spawn(respond(ch, self.script));
        Ok(())
    }
}

async fn send(tx: &russh::ChannelWriteHalf<Msg>, id: u32, response: Response) {
    let bytes = ServerMessage::Response { id, response }.to_bytes();
    let _ = tx.data_bytes(bytes).await;
}

/// The scripted SFTP side of one channel.
async fn respond(ch: Channel<Msg>, script: Script) {
    let (mut rx, tx) = ch.split();
    let mut buf = BytesMut::new();
    loop {
        let packet = loop {
            if let Ok(Some(p)) = split_packet(&mut buf, 1 << 20) {
                break p;
            }
            match rx.wait().await {
                Some(ChannelMsg::Data { data }) => buf.extend_from_slice(&data),
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => return,
                Some(_) => {}
            }
        };
        let (id, request) = match ClientMessage::decode(packet) {
            Ok(ClientMessage::Init { .. }) => {
                let version = ServerMessage::Version {
                    version: 3,
                    extensions: vec![],
                }
                .to_bytes();
                let _ = tx.data_bytes(version).await;
                continue;
            }
            Ok(ClientMessage::Request { id, request }) => (id, request),
            Err(_) => return,
        };
        let handle = || Response::Handle(Handle(Bytes::from_static(b"h")));
        let ok = || Response::Status(Status::ok());
        match request {
            Request::Open { .. } | Request::Opendir { .. } => send(&tx, id, handle()).await,
            Request::Close { .. } => send(&tx, id, ok()).await,
            Request::Fstat { .. } | Request::Stat { .. } => {
                let attrs = Attrs {
                    size: Some(SIZE),
                    ..Attrs::default()
                };
                send(&tx, id, Response::Attrs(attrs)).await
            }
            Request::Readdir { .. } => send(&tx, id, Response::Name(vec![])).await,
            Request::Read { offset, len, .. } => {
                if offset >= SIZE {
                    send(&tx, id, Response::Status(Status::eof())).await;
                    continue;
                }
                let give = |n: u64| -> Bytes {
                    let end = (offset + n).min(SIZE);
                    (offset..end).map(byte_at).collect::<Vec<u8>>().into()
                };
                match script {
                    Script::ShortReads => {
                        send(&tx, id, Response::Data(give(u64::from(len.min(1000))))).await
                    }
                    Script::LongData => {
                        let data: Bytes = (0..=len).map(|i| i as u8).collect::<Vec<u8>>().into();
                        send(&tx, id, Response::Data(data)).await
                    }
                    Script::EmptyData => send(&tx, id, Response::Data(Bytes::new())).await,
                    Script::WrongId => {
                        send(&tx, id + 1_000_000, Response::Data(give(u64::from(len)))).await
                    }
                    Script::Silent => {}
                    Script::HugeLength => {
                        let _ = tx.data_bytes(Bytes::from_static(&[0xff; 8])).await;
                    }
                    Script::EmptyNames => send(&tx, id, Response::Data(give(u64::from(len)))).await,
                }
            }
            _ => {
                let st = Status::new(StatusCode::OP_UNSUPPORTED, "not here");
                send(&tx, id, Response::Status(st)).await
            }
        }
    }
}

/// Start a scripted server on 127.0.0.1:0; connect a client to it.
async fn client(script: Script) -> SftpClient {
    let state = tempfile::tempdir().unwrap();
    let key = ferry_sftpd::hostkey::load_or_create(state.path()).unwrap();
    let config = Arc::new(russh::server::Config {
        keys: vec![key],
        auth_rejection_time: Duration::ZERO,
        auth_rejection_time_initial: Some(Duration::ZERO),
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = Hostile {
                script,
                channels: HashMap::new(),
            };
            let config = Arc::clone(&config);
            tokio::spawn(async move {
                if let Ok(session) = russh::server::run_stream(config, stream, handler).await {
                    let _ = session.await;
                }
            });
        }
    });
    let mut auth = SshAuth::new("anyone");
    auth.default_identities = false;
    auth.agent = false;
    auth.password = Some("x".into());
    let opts = SftpOptions {
        host_keys: HostKeyPolicy {
            insecure: true,
            ..HostKeyPolicy::default()
        },
        notice: Some(Arc::new(|_: &str| {})),
        reply_timeout: Duration::from_secs(2),
        ..SftpOptions::default()
    };
    tokio::time::timeout(
        WAIT,
        SftpClient::connect("127.0.0.1", addr.port(), &auth, opts),
    )
    .await
    .expect("connect hung")
    .unwrap()
}

async fn download(c: &SftpClient, offset: u64) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, c.download("f", offset, &mut out, &mut |_| {}))
        .await
        .expect("download hung")
        .map(|_| out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_reads_are_completed_in_order() {
    let c = client(Script::ShortReads).await;
    assert_eq!(download(&c, 0).await.unwrap(), expected(0));
    assert_eq!(download(&c, 1_234_567).await.unwrap(), expected(1_234_567));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_longer_than_asked_or_empty_are_errors() {
    let c = client(Script::LongData).await;
    let e = download(&c, 0).await.unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
    let c = client(Script::EmptyData).await;
    let e = download(&c, 0).await.unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_to_a_request_never_sent_ends_the_session() {
    let c = client(Script::WrongId).await;
    let e = download(&c, 0).await.unwrap_err();
    assert!(
        matches!(&e, Error::Protocol(m) if m.contains("not pending")),
        "{e:?}"
    );
    // Later requests fail at once with the same reason.
    let e = c.stat("f").await.unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_packet_ends_the_session() {
    let c = client(Script::HugeLength).await;
    let e = download(&c, 0).await.unwrap_err();
    assert!(
        matches!(&e, Error::Protocol(m) if m.contains("framing")),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_times_out() {
    let c = client(Script::Silent).await;
    let e = download(&c, 0).await.unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_empty_listings_are_cut_off() {
    let c = client(Script::EmptyNames).await;
    let e = tokio::time::timeout(WAIT, c.list(None))
        .await
        .expect("listing hung")
        .unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
}
