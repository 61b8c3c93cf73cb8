//! Byte pumps: what moves a transfer's bytes between storage and a data connection.
//!
//! Buffers are allocated per transfer and freed when it ends, so idle sessions hold none; the
//! large ones within the server's [`BufferBudget`](crate::budget::BufferBudget). What each
//! path moved is counted in the server's [`TransferCounters`](crate::counters::TransferCounters).
//!
//! # Layout
//! - `copy`: any reader to any writer through a buffer, with `TYPE A` conversion (the
//!   generic path of both directions).
//! - `ascii`: `TYPE A` line-ending conversion, each direction.
//! - `local_file`: a local file read in place on the worker (downloads that copy).
//! - `sendfile`: zero-copy downloads of a local file on a plain connection.
//! - `quick`: the quick path of a small download, sent from the session without waiting.
//! - `sealed`: large TLS downloads of a local file, sealed on the blocking pool.
//! - `upload`: binary uploads into a local file, pipelined past their first megabytes ...
//! - `write_queue`: ... through a queue of buffers written by blocking-pool jobs.

use std::io;

mod ascii;
mod copy;
mod local_file;
mod quick;
mod sealed;
mod sendfile;
mod upload;
mod write_queue;

pub(crate) use copy::{receive, send};
pub(crate) use local_file::LocalFile;
pub(crate) use quick::send_file_now;
pub(crate) use sealed::{SEAL_AFTER, send_file_sealed};
pub(crate) use sendfile::send_file;
pub(crate) use upload::receive_file;

/// Which side of a transfer failed: it decides the reply (451 local, 426 network).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PumpError {
    #[error("local error: {0}")]
    Local(io::Error),
    #[error("data connection: {0}")]
    Network(io::Error),
}

/// Whether `sendfile` failed on the socket's side (the peer went away) rather than the file's.
fn is_network_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::TimedOut
    )
}
