//! The metrics listener (`--metrics-listen`): Prometheus text at `/metrics`, `/healthz` for
//! balancers and orchestrators, and a live status page at `/` fed by `/status.json`.
//!
//! Read-only. Every connection is bounded (header read timeout, a cap on connections at
//! once); with a user configured, every path but `/healthz` needs HTTP basic auth.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::path::PathBuf;

use ferry_auth::{Authenticator, UserSpec};
use ferry_core::ServerContext;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections served at once; more wait in the backlog.
const MAX_CONNECTIONS: usize = 64;
/// Throughput samples kept (one a second): the plot's five minutes.
const SAMPLES: usize = 300;

/// Whether the node's storage answers (for `/healthz`).
pub(crate) type HealthProbe =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// What the listener shows.
pub(crate) struct Observer {
    pub(crate) context: Arc<ServerContext>,
    /// Set once shutdown has begun: `/healthz` answers 503 so balancers stop sending.
    pub(crate) draining: Arc<AtomicBool>,
    pub(crate) storage_ok: HealthProbe,
    /// Basic-auth credentials (a one-user authenticator), when configured.
    pub(crate) auth: Option<Arc<Authenticator>>,
    throughput: Mutex<VecDeque<u64>>,
}

impl Observer {
    pub(crate) fn new(
        context: Arc<ServerContext>,
        draining: Arc<AtomicBool>,
        storage_ok: HealthProbe,
        auth: Option<Arc<Authenticator>>,
    ) -> Arc<Observer> {
        Arc::new(Observer {
            context,
            draining,
            storage_ok,
            auth,
            throughput: Mutex::new(VecDeque::new()),
        })
    }
}

/// Serve `listener` until the process ends, and sample throughput once a second.
pub(crate) async fn serve(listener: TcpListener, observer: Arc<Observer>) {
    tokio::spawn(sample(Arc::clone(&observer)));
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let observer = Arc::clone(&observer);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let observer = Arc::clone(&observer);
                async move { Ok::<_, Infallible>(answer(&observer, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            // Bounded: a client that holds a connection open idle loses it.
            let _ = tokio::time::timeout(Duration::from_secs(120), conn).await;
            drop(permit);
        });
    }
}

async fn sample(observer: Arc<Observer>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let moved = observer.context.metrics.bytes_moved();
        let mut samples = observer
            .throughput
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if samples.len() > SAMPLES {
            samples.pop_front();
        }
        samples.push_back(moved);
    }
}

fn reply(status: StatusCode, kind: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = kind.parse() {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    if let Ok(v) = "no-store".parse() {
        r.headers_mut().insert(CACHE_CONTROL, v);
    }
    r
}

async fn answer(observer: &Observer, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
    }
    let path = req.uri().path();
    if path == "/healthz" {
        return healthz(observer).await;
    }
    if !authorized(observer, &req).await {
        let mut r = reply(
            StatusCode::UNAUTHORIZED,
            "text/plain",
            "authorization needed\n",
        );
        if let Ok(v) = "Basic realm=\"ferry\", charset=\"UTF-8\"".parse() {
            r.headers_mut().insert(WWW_AUTHENTICATE, v);
        }
        return r;
    }
    match path {
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            observer.context.metrics.render(&observer.context.sessions),
        ),
        "/status.json" => reply(
            StatusCode::OK,
            "application/json",
            status_json(observer).to_string(),
        ),
        "/" => reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            status_page(&status_json(observer)),
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

async fn healthz(observer: &Observer) -> Response<Full<Bytes>> {
    if observer.draining.load(Ordering::Relaxed) {
        return reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n");
    }
    let probe = (observer.storage_ok)();
    match tokio::time::timeout(Duration::from_secs(5), probe).await {
        Ok(true) => reply(StatusCode::OK, "text/plain", "ok\n"),
        _ => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "storage unavailable\n",
        ),
    }
}

async fn authorized(observer: &Observer, req: &Request<Incoming>) -> bool {
    let Some(auth) = &observer.auth else {
        return true;
    };
    let Some((user, password)) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| decode_base64(b64.trim()))
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        })
    else {
        return false;
    };
    auth.authenticate(&user, &password).await.is_some()
}

/// Standard base64 (RFC 4648 with padding), as basic auth carries it; `None` if malformed.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = s.as_bytes();
    if bytes.len() & 3 != 0 || bytes.len() > 4096 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let three = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&three[..3 - pad]);
    }
    Some(out)
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Sessions, transfers, recent bans and throughput (bytes per second, oldest first).
fn status_json(observer: &Observer) -> serde_json::Value {
    use serde_json::json;
    let now = SystemTime::now();
    let sessions: Vec<_> = observer
        .context
        .sessions
        .sessions()
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "protocol": s.protocol.name(),
                "user": s.user().as_deref(),
                "peer": s.peer.to_string(),
                "since": unix_secs(s.since),
            })
        })
        .collect();
    let transfers: Vec<_> = observer
        .context
        .metrics
        .transfers()
        .iter()
        .map(|t| {
            let secs = now
                .duration_since(t.since)
                .map_or(0.0, |d| d.as_secs_f64())
                .max(0.001);
            json!({
                "session": t.session,
                "protocol": t.protocol.name(),
                "direction": t.direction.name(),
                "path": t.path,
                "bytes": t.bytes(),
                "size": t.size,
                "rate": (t.bytes() as f64 / secs).round(),
                "since": unix_secs(t.since),
            })
        })
        .collect();
    let bans: Vec<_> = observer
        .context
        .metrics
        .recent_bans()
        .iter()
        .rev()
        .map(|b| {
            json!({
                "protocol": b.protocol.name(),
                "address": b.address.to_string(),
                "at": unix_secs(b.at),
            })
        })
        .collect();
    let samples = observer
        .throughput
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let rates: Vec<u64> = samples
        .iter()
        .zip(samples.iter().skip(1))
        .map(|(a, b)| b.saturating_sub(*a))
        .collect();
    json!({
        "now": unix_secs(now),
        "draining": observer.draining.load(Ordering::Relaxed),
        "sessions": sessions,
        "transfers": transfers,
        "bans": bans,
        "throughput": rates,
    })
}

/// The page, with the status at the time embedded, so it shows without waiting for a fetch;
/// its script renders that, then fetches `/status.json` every two seconds. Everything a
/// client chose (user names, paths) goes in as text, never as markup.
fn status_page(initial: &serde_json::Value) -> String {
    // `</` cannot end the script element from inside the JSON.
    let data = initial.to_string().replace('<', "\\u003c");
    STATUS_PAGE.replace("/*STATUS*/null", &data)
}

const STATUS_PAGE: &str = include_str!("status.html");

/// Whether storage answers: the root of `home` (the first user's), through the context's
/// storage factory, read-only.
pub(crate) fn health_probe(
    context: &Arc<ferry_core::ServerContext>,
    home: Option<PathBuf>,
) -> HealthProbe {
    let context = Arc::clone(context);
    Box::new(move || {
        let context = Arc::clone(&context);
        let home = home.clone();
        Box::pin(async move {
            let Some(home) = home else { return true };
            let account = ferry_auth::Account {
                name: "healthz".to_string(),
                home,
                permissions: ferry_auth::Permissions::READ_ONLY,
                anonymous: true,
                limits: Default::default(),
            };
            match (context.storage)(&account) {
                Ok(storage) => storage.check().await.is_ok(),
                Err(_) => false,
            }
        })
    })
}

/// Basic auth for the metrics listener, from `[metrics]`.
pub(crate) fn basic_auth(
    section: &crate::config::MetricsSection,
) -> anyhow::Result<Option<Arc<Authenticator>>> {
    match (&section.user, &section.password_hash) {
        (None, None) => Ok(None),
        (Some(user), Some(hash)) => Ok(Some(Arc::new(Authenticator::new(vec![UserSpec {
            name: user.clone(),
            password_hash: Some(hash.clone()),
            authorized_keys: Vec::new(),
            authorized_keys_file: None,
            home: PathBuf::from("/nonexistent"),
            permissions: Vec::new(),
            ..UserSpec::default()
        }])?))),
        _ => anyhow::bail!("[metrics]: user and password_hash go together"),
    }
}

/// A listener for `addr` (for the metrics, on loopback unless the operator chose otherwise).
pub(crate) async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn base64_of_basic_auth() {
        assert_eq!(decode_base64("YWxpY2U6cHc=").unwrap(), b"alice:pw");
        assert_eq!(decode_base64("YWI=").unwrap(), b"ab");
        assert_eq!(decode_base64("YWJj").unwrap(), b"abc");
        for bad in ["YWJ", "Y===", "!!!!", "YW=j"] {
            assert!(decode_base64(bad).is_none(), "{bad}");
        }
    }
}
