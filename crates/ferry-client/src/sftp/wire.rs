//! Requests and responses on the SFTP channel: ids handed out here, one writer at a time, and a
//! reader task that matches every response to the request that waits for it, in whatever
//! order the server answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use ferry_sftp_proto::{ClientMessage, Request, Response, ServerMessage, split_packet};
use russh::ChannelMsg;
use russh::client::Msg;
use tokio::sync::oneshot;

use crate::{Error, Result};

/// Matching state shared by senders and the reader task.
#[derive(Default)]
struct Pending {
    waiting: HashMap<u32, oneshot::Sender<Response>>,
    /// Why the channel can carry no more responses, once it can't.
    ended: Option<Ended>,
}

#[derive(Debug, Clone)]
enum Ended {
    Closed,
    Protocol(String),
}

impl Ended {
    fn error(&self) -> Error {
        match self {
            Ended::Closed => Error::Closed,
            Ended::Protocol(why) => Error::Protocol(why.clone()),
        }
    }
}

type Shared = Arc<Mutex<Pending>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Pending> {
    // A panic elsewhere while holding the lock leaves a map that is still consistent.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The SFTP channel after `INIT`/`VERSION`.
pub(crate) struct Wire {
    tx: tokio::sync::Mutex<russh::ChannelWriteHalf<Msg>>,
    next_id: AtomicU32,
    shared: Shared,
    reader: tokio::task::JoinHandle<()>,
    /// Most requests awaiting their responses at one time.
    peak: AtomicUsize,
}

impl Drop for Wire {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A request on its way: [`Ticket::wait`] gives its response.
pub(crate) struct Ticket {
    rx: oneshot::Receiver<Response>,
    shared: Shared,
}

impl Ticket {
    /// The response, within `timeout`.
    pub(crate) async fn wait(self, timeout: Duration, what: &str) -> Result<Response> {
        match tokio::time::timeout(timeout, self.rx).await {
            Err(_) => Err(Error::Timeout(format!("waiting for the answer to {what}"))),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(lock(&self.shared)
                .ended
                .as_ref()
                .map_or(Error::Closed, Ended::error)),
        }
    }
}

impl Wire {
    /// Start the reader on `rx`; `buf` holds bytes already received after `VERSION`.
    /// Packets longer than `max_packet` end the session.
    pub(crate) fn start(
        tx: russh::ChannelWriteHalf<Msg>,
        rx: russh::ChannelReadHalf,
        buf: BytesMut,
        max_packet: u32,
    ) -> Wire {
        let shared: Shared = Arc::default();
        let reader = tokio::spawn(read_loop(rx, buf, max_packet, Arc::clone(&shared)));
        Wire {
            tx: tokio::sync::Mutex::new(tx),
            next_id: AtomicU32::new(1),
            shared,
            reader,
            peak: AtomicUsize::new(0),
        }
    }

    /// The most requests that were awaiting responses at one time.
    pub(crate) fn peak_in_flight(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Send `request`; its response comes through the returned ticket.
    pub(crate) async fn send(&self, request: Request) -> Result<Ticket> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut p = lock(&self.shared);
            if let Some(ended) = &p.ended {
                return Err(ended.error());
            }
            p.waiting.insert(id, tx);
            self.peak.fetch_max(p.waiting.len(), Ordering::Relaxed);
        }
        let mut out = BytesMut::new();
        ClientMessage::Request { id, request }.encode(&mut out);
        // One writer at a time: russh cuts a buffer into window-sized pieces, and two
        // writers' pieces would interleave inside packets.
        let sent = self.tx.lock().await.data_bytes(out.freeze()).await;
        if sent.is_err() {
            let mut p = lock(&self.shared);
            p.waiting.remove(&id);
            return Err(p.ended.as_ref().map_or(Error::Closed, Ended::error));
        }
        Ok(Ticket {
            rx,
            shared: Arc::clone(&self.shared),
        })
    }

    /// Send `request` and wait for its response.
    pub(crate) async fn call(
        &self,
        request: Request,
        timeout: Duration,
        what: &str,
    ) -> Result<Response> {
        self.send(request).await?.wait(timeout, what).await
    }

    /// Say end of file and close the channel (best effort).
    pub(crate) async fn close(&self) {
        let tx = self.tx.lock().await;
        let _ = tx.eof().await;
        let _ = tx.close().await;
    }
}

async fn read_loop(mut rx: russh::ChannelReadHalf, mut buf: BytesMut, max: u32, shared: Shared) {
    let ended = loop {
        match drain(&mut buf, max, &shared) {
            Ok(()) => {}
            Err(why) => break Ended::Protocol(why),
        }
        match rx.wait().await {
            Some(ChannelMsg::Data { data }) => buf.extend_from_slice(&data),
            // stderr of the subsystem, exit status, window changes: nothing to match.
            Some(ChannelMsg::Eof | ChannelMsg::Close) | None => break Ended::Closed,
            Some(_) => {}
        }
    };
    let mut p = lock(&shared);
    p.ended = Some(ended);
    // Dropping the senders wakes every waiter with the reason just recorded.
    p.waiting.clear();
}

/// Deliver every whole packet in `buf`.
fn drain(buf: &mut BytesMut, max: u32, shared: &Shared) -> std::result::Result<(), String> {
    loop {
        let packet = match split_packet(buf, max) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("SFTP framing: {e}")),
        };
        let (id, response) = match ServerMessage::decode(packet) {
            Ok(ServerMessage::Response { id, response }) => (id, response),
            Ok(ServerMessage::Version { .. }) => {
                return Err("the server sent a second VERSION".into());
            }
            Err(e) => return Err(format!("SFTP packet: {e}")),
        };
        // A waiter that gave up (a transfer that stopped at end of file) left its sender in
        // the map, so every id sent is found once; an id not found was never sent or is
        // answered twice.
        let Some(waiter) = lock(shared).waiting.remove(&id) else {
            return Err(format!(
                "the server answered request {id}, which is not pending"
            ));
        };
        let _ = waiter.send(response);
    }
}
