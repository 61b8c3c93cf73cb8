//! The three data-connection methods (active, passive, extended passive) on IPv4 and IPv6,
//! their security checks, timeouts and port release.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const LOCAL4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LOCAL6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

async fn roundtrip_active(c: &mut Ctrl, ip: IpAddr, eprt: bool, s: &TestServer, name: &str) {
    let body = content(300_000, name.len() as u64);
    // Upload in active mode.
    let l = c.active(ip, eprt).await;
    let r = c.cmd(&format!("STOR {name}")).await;
    assert_eq!(r.code, 150, "{r:?}");
    let mut data = accept(&l).await;
    data.write_all(&body).await.unwrap();
    data.shutdown().await.unwrap();
    drop(data);
    assert_eq!(c.read_reply().await.code, 226);
    assert_eq!(sha256(&std::fs::read(s.path(name)).unwrap()), sha256(&body));
    // Download in active mode.
    let l = c.active(ip, eprt).await;
    let r = c.cmd(&format!("RETR {name}")).await;
    assert_eq!(r.code, 150, "{r:?}");
    let mut data = accept(&l).await;
    let mut got = Vec::new();
    data.read_to_end(&mut got).await.unwrap();
    assert_eq!(c.read_reply().await.code, 226);
    assert_eq!(sha256(&got), sha256(&body));
}

#[tokio::test]
async fn active_port_and_eprt_ipv4() {
    let s = TestServer::start().await;
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    roundtrip_active(&mut c, LOCAL4, false, &s, "port.bin").await;
    roundtrip_active(&mut c, LOCAL4, true, &s, "eprt.bin").await;
}

#[tokio::test]
async fn ipv6_all_methods() {
    if !ipv6_available() {
        eprintln!("skipping: ::1 not available");
        return;
    }
    let s = TestServer::start_with(|c| c.listen = vec!["[::1]:0".parse().unwrap()]).await;
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    roundtrip_active(&mut c, LOCAL6, true, &s, "v6.bin").await;
    // EPSV over IPv6.
    let (bytes, done) = c.retr_passive("RETR v6.bin").await;
    assert_eq!(done.code, 226);
    assert_eq!(bytes.len(), 300_000);
    // PASV can't carry IPv6: a clear refusal pointing to EPSV.
    let r = c.cmd("PASV").await;
    assert!(r.code >= 500 && r.text().contains("EPSV"), "{r:?}");
    // Wrong family for EPSV / EPRT.
    c.expect("EPSV 1", 522).await;
    c.expect("EPSV 2", 229).await;
    c.expect("EPRT |1|127.0.0.1|5000|", 504).await;
}

#[tokio::test]
async fn dual_stack_and_several_listeners() {
    if !ipv6_available() {
        eprintln!("skipping: ::1 not available");
        return;
    }
    let s = TestServer::start_with(|c| {
        c.listen = vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()]
    })
    .await;
    assert_eq!(s.addrs.len(), 2);
    for addr in &s.addrs {
        let mut c = Ctrl::connect(*addr).await;
        c.login(USER, PASSWORD).await;
        let (_, done) = c.retr_passive("LIST").await;
        assert_eq!(done.code, 226);
    }
}

#[tokio::test]
async fn passive_pasv_and_epsv_variants() {
    let s = TestServer::start().await;
    std::fs::write(s.path("f"), b"data").unwrap();
    let mut c = s.login().await;
    // PASV
    let addr = c.pasv().await;
    assert_eq!(addr.ip(), LOCAL4);
    let mut data = TcpStream::connect(addr).await.unwrap();
    c.expect("RETR f", 150).await;
    let mut got = Vec::new();
    data.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"data");
    assert_eq!(c.read_reply().await.code, 226);
    // EPSV 1, EPSV 2 on IPv4, unknown family.
    c.expect("EPSV 1", 229).await;
    c.expect("EPSV 2", 522).await;
    c.expect("EPSV 7", 522).await;
    c.expect("EPSV x", 501).await;
    c.expect("EPRT |3|x|1|", 522).await;
    c.expect("EPRT garbage", 501).await;
    c.expect("PORT 1,2,3", 501).await;
    // EPSV ALL: other methods refused afterwards, EPSV still works.
    c.expect("EPSV ALL", 200).await;
    c.expect("PASV", 503).await;
    c.expect("PORT 127,0,0,1,200,10", 503).await;
    let (got, done) = c.retr_passive("RETR f").await;
    assert_eq!((got.as_slice(), done.code), (&b"data"[..], 226));
}

#[tokio::test]
async fn masquerade_address_and_overrides() {
    let s = TestServer::start_with(|c| {
        c.masquerade.address = Some(Ipv4Addr::new(203, 0, 113, 9));
    })
    .await;
    let mut c = s.login().await;
    let addr = c.pasv().await;
    assert_eq!(addr.ip(), IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)));
    // EPSV needs no masquerade address.
    c.expect("EPSV", 229).await;

    let s = TestServer::start_with(|c| {
        c.masquerade.address = Some(Ipv4Addr::new(203, 0, 113, 9));
        c.masquerade.overrides =
            vec![("127.0.0.0/8".parse().unwrap(), Ipv4Addr::new(127, 0, 0, 1))];
    })
    .await;
    std::fs::write(s.path("f"), b"lan").unwrap();
    let mut c = s.login().await;
    let addr = c.pasv().await;
    assert_eq!(addr.ip(), LOCAL4, "LAN clients get the LAN address");
    let mut data = TcpStream::connect(addr).await.unwrap();
    c.expect("RETR f", 150).await;
    let mut got = Vec::new();
    data.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"lan");
}

#[tokio::test]
async fn methods_can_be_refused_by_config() {
    let s = TestServer::start_with(|c| c.active_enabled = false).await;
    let mut c = s.login().await;
    let r = c.expect("PORT 127,0,0,1,200,10", 502).await;
    assert!(r.text().contains("PASV"), "{r:?}");
    c.expect("EPRT |1|127.0.0.1|51210|", 502).await;
    c.expect("EPSV", 229).await;

    let s = TestServer::start_with(|c| c.passive_enabled = false).await;
    let mut c = s.login().await;
    c.expect("PASV", 502).await;
    c.expect("EPSV", 502).await;
    c.expect("PORT 127,0,0,1,200,10", 200).await;
}

#[tokio::test]
async fn bounce_port_is_refused() {
    let s = TestServer::start().await;
    let mut c = s.login().await;
    // Another host, and a privileged port on the client's own address.
    let r = c.expect("PORT 10,0,0,1,0,80", 504).await;
    assert!(r.text().to_lowercase().contains("bounce"), "{r:?}");
    c.expect("PORT 127,0,0,2,200,10", 504).await;
    c.expect("EPRT |1|127.0.0.1|25|", 504).await;
    c.expect("EPRT |1|192.0.2.1|5000|", 504).await;
    // A refused PORT leaves no data method set.
    c.expect("RETR x", 425).await;
    // Relaxable by name.
    let s = TestServer::start_with(|c| {
        c.allow_active_foreign_address = true;
        c.allow_active_privileged_port = true;
    })
    .await;
    let mut c = s.login().await;
    c.expect("PORT 127,0,0,2,0,80", 200).await;
}

#[tokio::test]
async fn passive_connection_from_another_ip_is_refused() {
    let s = TestServer::start_with(|c| c.data_connect_timeout = Duration::from_secs(2)).await;
    std::fs::write(s.path("secret"), b"top secret").unwrap();
    let mut c = s.login().await;
    let addr = c.epsv().await;
    // A thief on 127.0.0.2 connects first: it must get nothing.
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 0))
        .unwrap();
    let mut thief = sock.connect(addr).await.unwrap();
    c.expect("RETR secret", 150).await;
    let mut stolen = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), thief.read_to_end(&mut stolen)).await;
    assert!(stolen.is_empty(), "foreign peer received data");
    // The real client can still connect within the timeout.
    let mut data = TcpStream::connect(addr).await.unwrap();
    let mut got = Vec::new();
    data.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"top secret");
    assert_eq!(c.read_reply().await.code, 226);
}

#[tokio::test]
async fn missing_data_connection_times_out_with_425() {
    let s = TestServer::start_with(|c| c.data_connect_timeout = Duration::from_millis(500)).await;
    std::fs::write(s.path("f"), b"x").unwrap();
    let mut c = s.login().await;
    c.epsv().await;
    c.expect("RETR f", 150).await;
    assert_eq!(c.read_reply().await.code, 425);
    // The session is still usable.
    c.expect("NOOP", 200).await;
    let (got, done) = c.retr_passive("RETR f").await;
    assert_eq!((got.as_slice(), done.code), (&b"x"[..], 226));
    // Active target that never answers (closed port) -> 425 too.
    let l = c.active(LOCAL4, false).await;
    drop(l);
    c.expect("RETR f", 150).await;
    assert_eq!(c.read_reply().await.code, 425);
    c.expect("NOOP", 200).await;
}

#[tokio::test]
async fn passive_ports_come_from_the_range_and_are_released() {
    let base = quiet_ports(10);
    let s = TestServer::start_with(|c| c.passive_ports = Some((base, base + 1))).await;
    std::fs::write(s.path("f"), b"x").unwrap();
    let mut c = s.login().await;
    // Many transfers through a two-port range: each port is returned after use.
    for _ in 0..6 {
        let addr = c.epsv().await;
        assert!((base..=base + 1).contains(&addr.port()), "{addr}");
        let mut data = TcpStream::connect(addr).await.unwrap();
        c.expect("RETR f", 150).await;
        let mut got = Vec::new();
        data.read_to_end(&mut got).await.unwrap();
        assert_eq!(c.read_reply().await.code, 226);
    }
    // Two sessions hold both ports; a third gets a clear 425; a PASV replaces its own listener.
    let mut c2 = s.login().await;
    c.epsv().await;
    c.epsv().await;
    c2.epsv().await;
    let mut c3 = s.login().await;
    c3.expect("EPSV", 425).await;
    drop(c2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    c3.expect("EPSV", 229).await;
}

#[tokio::test]
async fn passive_listeners_are_kept_and_stray_connections_dropped() {
    let base = quiet_ports(10);
    let s = TestServer::start_with(|c| c.passive_ports = Some((base, base + 1))).await;
    std::fs::write(s.path("f"), b"payload").unwrap();
    let mut c = s.login().await;
    let first = c.epsv().await;
    assert_eq!(c.retr_at(first, "RETR f").await.1.code, 226);
    // The port's listener stays open between transfers (no bind per transfer), so a
    // connection made now is queued...
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut stray = TcpStream::connect(first).await.unwrap();
    // ...and dropped when the port is next handed out, before the client hears of it.
    let again = c.epsv().await;
    assert_eq!(again, first, "most recently used port first");
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(5), stray.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the stray connection got data");
    let (got, done) = c.retr_at(again, "RETR f").await;
    assert_eq!(got, b"payload");
    assert_eq!(done.code, 226);
}

#[tokio::test]
async fn ports_held_elsewhere_are_skipped_not_retried() {
    let base = quiet_ports(10);
    let range = Some((base, base + 1));
    let s1 = TestServer::start_with(|c| c.passive_ports = range).await;
    let s2 = TestServer::start_with(|c| c.passive_ports = range).await;
    std::fs::write(s1.path("f"), b"one").unwrap();
    std::fs::write(s2.path("f"), b"two").unwrap();
    // The first server keeps `base` open between its transfers...
    let mut c1 = s1.login().await;
    let addr = c1.epsv().await;
    assert_eq!(addr.port(), base);
    assert_eq!(c1.retr_at(addr, "RETR f").await.1.code, 226);
    // ...so the second server, sharing the range, uses `base + 1`, transfer after transfer.
    let mut c2 = s2.login().await;
    for _ in 0..3 {
        let addr = c2.epsv().await;
        assert_eq!(addr.port(), base + 1);
        let (got, done) = c2.retr_at(addr, "RETR f").await;
        assert_eq!(got, b"two");
        assert_eq!(done.code, 226);
    }
}

#[tokio::test]
async fn active_from_control_port_minus_one() {
    // Control port and port - 1 above the ephemeral range, so no other connection holds them.
    let control = quiet_ports(10) + 5;
    let s = TestServer::start_with(|c| {
        c.active_source_port_minus_one = true;
        c.listen = vec![SocketAddr::new(LOCAL4, control)];
    })
    .await;
    std::fs::write(s.path("f"), b"classic").unwrap();
    let mut c = s.login().await;
    let l = c.active(LOCAL4, false).await;
    c.expect("RETR f", 150).await;
    let (mut data, from) = tokio::time::timeout(WAIT, l.accept())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        from.port(),
        s.addr().port() - 1,
        "data must come from control port - 1"
    );
    let mut got = Vec::new();
    data.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"classic");
    assert_eq!(c.read_reply().await.code, 226);
}

#[test]
fn source_port_minus_one_needs_a_usable_port() {
    // Control port 1 has no port below it: a clear startup error, not a runtime surprise.
    let config = ferry_ftpd::ServerConfig {
        listen: vec!["127.0.0.1:1".parse().unwrap()],
        active_source_port_minus_one: true,
        ..Default::default()
    };
    let auth = std::sync::Arc::new(ferry_auth::Authenticator::new(vec![]).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    match ferry_ftpd::Server::bind(config, auth, ferry_ftpd::local_storage()) {
        Ok(_) => panic!("bind should fail"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("active_source_port_minus_one") || msg.contains("cannot listen"),
                "{msg}"
            );
        }
    }
}

/// `[::]` is dual-stack: IPv4 clients (seen as ::ffff:a.b.c.d) and IPv6 clients both work,
/// including PASV for the IPv4 one.
#[tokio::test]
async fn unspecified_ipv6_listener_is_dual_stack() {
    if !ipv6_available() {
        eprintln!("skipping: ::1 not available");
        return;
    }
    let s = TestServer::start_with(|c| c.listen = vec!["[::]:0".parse().unwrap()]).await;
    std::fs::write(s.path("f"), b"both").unwrap();
    let port = s.addr().port();
    let mut v4 = Ctrl::connect(SocketAddr::new(LOCAL4, port)).await;
    v4.login(USER, PASSWORD).await;
    let addr = v4.pasv().await;
    assert_eq!(addr.ip(), LOCAL4, "PASV announces the IPv4 address");
    let mut data = TcpStream::connect(addr).await.unwrap();
    v4.expect("RETR f", 150).await;
    let mut got = Vec::new();
    data.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"both");
    assert_eq!(v4.read_reply().await.code, 226);
    let mut v6 = Ctrl::connect(SocketAddr::new(LOCAL6, port)).await;
    v6.login(USER, PASSWORD).await;
    let (got, done) = v6.retr_passive("RETR f").await;
    assert_eq!((got.as_slice(), done.code), (&b"both"[..], 226));
}

/// `PORT 0,0,0,0,...` and `EPRT |2|::|...|` (lftp's active mode over IPv6) name no host: the
/// server connects back to the control connection's peer instead of refusing a bounce.
#[tokio::test]
async fn unspecified_active_address_means_the_client() {
    async fn download(c: &mut Ctrl, ip: IpAddr, line: impl Fn(u16) -> String) {
        let l = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .unwrap();
        let port = l.local_addr().unwrap().port();
        c.expect(&line(port), 200).await;
        c.expect("RETR f", 150).await;
        let (mut data, from) = tokio::time::timeout(WAIT, l.accept())
            .await
            .expect("no active data connection")
            .unwrap();
        assert_eq!(from.ip(), ip);
        let mut got = Vec::new();
        data.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"back to you");
        assert_eq!(c.read_reply().await.code, 226);
    }
    let s = TestServer::start().await;
    std::fs::write(s.path("f"), b"back to you").unwrap();
    let mut c = s.login().await;
    download(&mut c, LOCAL4, |p| {
        format!("PORT 0,0,0,0,{},{}", p >> 8, p & 0xff)
    })
    .await;
    download(&mut c, LOCAL4, |p| format!("EPRT |1|0.0.0.0|{p}|")).await;
    // Still no privileged port, even on the client's own address.
    c.expect("PORT 0,0,0,0,0,25", 504).await;
    if !ipv6_available() {
        eprintln!("skipping the IPv6 half: ::1 not available");
        return;
    }
    let s = TestServer::start_with(|c| c.listen = vec!["[::1]:0".parse().unwrap()]).await;
    std::fs::write(s.path("f"), b"back to you").unwrap();
    let mut c = s.login().await;
    download(&mut c, LOCAL6, |p| format!("EPRT |2|::|{p}|")).await;
}

/// A session holds one passive port however many `PASV`s it sends, and a port nobody
/// connects to within `data_connect_timeout` goes back to the pool, however busy the session
/// keeps itself with `NOOP`; its next transfer command gets `425`.
#[tokio::test]
async fn unused_passive_ports_are_released() {
    let base = quiet_ports(10);
    let s = TestServer::start_with(|c| {
        c.passive_ports = Some((base, base + 1));
        c.data_connect_timeout = Duration::from_millis(600);
    })
    .await;
    std::fs::write(s.path("f"), b"late").unwrap();
    let mut greedy = s.login().await;
    for _ in 0..3 {
        greedy.expect("PASV", 227).await;
    }
    let mut second = s.login().await;
    second.expect("EPSV", 229).await;
    let mut third = s.login().await;
    let refused = third.expect("EPSV", 425).await;
    assert!(refused.text().contains("No passive port"), "{refused:?}");
    // The holders stay active; the ports come back once their timeout has passed.
    let until = std::time::Instant::now() + WAIT;
    loop {
        greedy.expect("NOOP", 200).await;
        second.expect("NOOP", 200).await;
        if third.cmd("EPSV").await.code == 229 {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "passive ports held past the data-connect timeout"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = greedy.expect("RETR f", 425).await;
    assert!(r.text().contains("PASV or EPSV again"), "{r:?}");
    // A connection that arrived in time is kept for the command that comes late; the port
    // goes back all the same.
    let mut late = s.login().await;
    let addr = late.epsv().await;
    let mut data = TcpStream::connect(addr).await.unwrap();
    let until = std::time::Instant::now() + WAIT;
    loop {
        late.expect("NOOP", 200).await;
        if greedy.cmd("EPSV").await.code == 229 && second.cmd("EPSV").await.code == 229 {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "a passive port with its connection waiting was never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    late.expect("RETR f", 150).await;
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, data.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"late");
    assert_eq!(late.read_reply().await.code, 226);
}
