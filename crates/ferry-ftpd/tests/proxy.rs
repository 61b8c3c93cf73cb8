//! PROXY protocol on the FTP listener: the balancer's header names the client, who is then
//! the session's peer for limits and for the passive data check.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A connection from `from` (a loopback address) to `to`, with `header` sent first.
async fn connect_from(from: [u8; 4], to: SocketAddr, header: &[u8]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let mut stream = tokio::time::timeout(WAIT, socket.connect(to))
        .await
        .unwrap()
        .unwrap();
    stream.write_all(header).await.unwrap();
    stream
}

fn v1(client: [u8; 4]) -> Vec<u8> {
    let [a, b, c, d] = client;
    format!("PROXY TCP4 {a}.{b}.{c}.{d} 127.0.0.1 40000 21\r\n").into_bytes()
}

fn v2(client: [u8; 4]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\0\x0c".to_vec();
    h.extend_from_slice(&client);
    h.extend_from_slice(&[127, 0, 0, 1, 0x9c, 0x40, 0, 21]);
    h
}

/// The server closes `stream` without a word.
async fn closed_unanswered(mut stream: TcpStream) {
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .expect("connection left open")
        .unwrap_or(0);
    assert_eq!(n, 0, "answered: {:?}", String::from_utf8_lossy(&buf[..n]));
}

#[tokio::test]
async fn the_proxy_header_names_the_client_for_limits_and_data_connections() {
    let server = TestServer::start_with(|c| {
        c.proxy = ferry_core::ProxyTrust::new(vec!["127.0.0.1/32".parse().unwrap()]);
        c.max_sessions_per_ip = 1;
    })
    .await;
    std::fs::write(server.path("f"), b"through the balancer").unwrap();
    let addr = server.addr();

    // The balancer (127.0.0.1) announces 127.0.0.2.
    let stream = connect_from([127, 0, 0, 1], addr, &v2([127, 0, 0, 2])).await;
    let mut ctrl = Ctrl::greeted(stream, addr).await.unwrap();
    ctrl.login(USER, PASSWORD).await;
    let r = ctrl.expect("STAT", 211).await;
    assert!(r.text().contains("127.0.0.2"), "{r:?}");

    // A data connection through the balancer for another client is refused; the client's
    // own, through the balancer, is taken.
    let port = ctrl.epsv().await.port();
    let data_at = SocketAddr::from(([127, 0, 0, 1], port));
    let stranger = connect_from([127, 0, 0, 1], data_at, &v1([127, 0, 0, 3])).await;
    let mut own = connect_from([127, 0, 0, 1], data_at, &v1([127, 0, 0, 2])).await;
    ctrl.expect("RETR f", 150).await;
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, own.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"through the balancer");
    assert_eq!(ctrl.read_reply().await.code, 226);
    closed_unanswered(stranger).await;

    // The client reaching the node directly (no header: not from the balancer) is taken too.
    let port = ctrl.epsv().await.port();
    let mut direct = connect_from(
        [127, 0, 0, 2],
        SocketAddr::from(([127, 0, 0, 1], port)),
        b"",
    )
    .await;
    ctrl.expect("RETR f", 150).await;
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, direct.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"through the balancer");
    assert_eq!(ctrl.read_reply().await.code, 226);

    // Limits count the announced client: a second session of 127.0.0.2 is over its cap of
    // one, while 127.0.0.4 (through the same balancer) is not.
    let again = connect_from([127, 0, 0, 1], addr, &v1([127, 0, 0, 2])).await;
    let Err(refused) = Ctrl::greeted(again, addr).await else {
        panic!("a second session of 127.0.0.2 was greeted");
    };
    assert_eq!(refused.code, 421, "{refused:?}");
    let other = connect_from([127, 0, 0, 1], addr, &v1([127, 0, 0, 4])).await;
    Ctrl::greeted(other, addr).await.unwrap();
}

#[tokio::test]
async fn connections_without_a_trusted_header_are_refused() {
    let server = TestServer::start_with(|c| {
        c.proxy = ferry_core::ProxyTrust::new(vec!["127.0.0.1/32".parse().unwrap()]);
    })
    .await;
    let addr = server.addr();
    // From the balancer, but no header: not served.
    closed_unanswered(connect_from([127, 0, 0, 1], addr, b"USER alice\r\n").await).await;
    // A malformed header.
    closed_unanswered(connect_from([127, 0, 0, 1], addr, b"PROXY TCP4 x y 1 2\r\n").await).await;
    // A valid header from an address that is not a trusted balancer.
    closed_unanswered(connect_from([127, 0, 0, 2], addr, &v2([127, 0, 0, 9])).await).await;
    // A balancer's health check (v2 LOCAL) is served as the balancer itself.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\0\0";
    let stream = connect_from([127, 0, 0, 1], addr, local).await;
    Ctrl::greeted(stream, addr).await.unwrap();
    // Without PROXY protocol configured, a header is just a bad command.
    let plain = TestServer::start().await;
    let stream = connect_from([127, 0, 0, 1], plain.addr(), b"").await;
    let mut ctrl = Ctrl::greeted(stream, plain.addr()).await.unwrap();
    let r = ctrl.cmd("PROXY TCP4 127.0.0.9 127.0.0.1 1 2").await;
    assert!(r.code >= 500, "{r:?}");
}
