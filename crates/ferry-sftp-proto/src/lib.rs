//! Sans-IO SFTP version 3 (draft-ietf-secsh-filexfer-02, the version OpenSSH speaks), shared by
//! Ferry's SFTP server and client.
//!
//! Nothing here touches a socket, a file or the clock: packets go in as bytes and come out as
//! values, values go out as bytes; the time a listing is formatted against is passed in.
//!
//! # Layout
//! - [`packet`]: packet type numbers and [`split_packet`], which cuts
//!   `u32 length ‖ body` frames out of a byte stream, refusing an over-long length before any
//!   buffer grows for it.
//! - [`request`]: [`ClientMessage`] (`INIT` or a [`Request`] with its id) and [`Request`], every
//!   v3 request plus the OpenSSH extensions as typed [`Extended`] variants.
//! - [`response`]: [`ServerMessage`] (`VERSION` or a [`Response`] with its id), [`Status`] and
//!   [`StatusCode`], [`Name`], and [`data_header`](response::data_header) for a zero-copy `DATA`.
//! - [`attrs`]: [`Attrs`], the `ATTRS` structure, and the file type bits.
//! - [`ext`]: names of the OpenSSH extensions and the typed replies ([`StatVfs`], [`Limits`]).
//! - [`longname`]: the `ls -l` line that `NAME` replies carry for `ls -l` in OpenSSH's client.
//!
//! # Choices
//! - **Strings are bytes.** File names on the wire are bytes in no declared encoding; this
//!   crate carries them as [`Bytes`] and never fails on non-UTF-8. Deciding what a name
//!   means (Ferry's server refuses non-UTF-8 paths with `SSH_FX_FAILURE` and says why) is the
//!   caller's business.
//! - **Zero copy where the data is.** A decoded packet is a [`Bytes`]; every string, a
//!   `WRITE`'s data and a `DATA` payload included, is a slice of it (a reference count, no
//!   copy). For sending file data, [`data_header`](response::data_header) lets the server read
//!   a file straight into the buffer that goes out.
//! - **Malformed and unsupported are different errors.** [`DecodeError::status_code`] says what
//!   the server answers: `SSH_FX_BAD_MESSAGE` for a packet that breaks the format,
//!   `SSH_FX_OP_UNSUPPORTED` for a well-framed packet of a type this version doesn't know.
//! - **Strict.** Trailing bytes after the last field, unknown attribute flags and handles over
//!   256 bytes are malformed. The one leniency: a `STATUS` without message and language tag
//!   (old servers) decodes with both empty.
//! - **`SYMLINK` in OpenSSH's order.** OpenSSH sends the link's target first and the new link's
//!   path second, the reverse of the draft; every deployed client and server follows OpenSSH,
//!   and so does [`Request::Symlink`].

pub mod attrs;
pub mod ext;
pub mod longname;
pub mod packet;
pub mod request;
pub mod response;
mod wire;

use bytes::Bytes;

pub use attrs::{Attrs, Owner, Times};
pub use ext::{Limits, StatVfs};
pub use packet::{FrameError, split_packet};
pub use request::{ClientMessage, Extended, OpenFlags, Request};
pub use response::{Name, Response, ServerMessage, Status, StatusCode};

/// The protocol version this crate speaks.
pub const VERSION: u32 = 3;

/// Longest handle a peer may send (draft §3: "MUST NOT be longer than 256 bytes").
pub const MAX_HANDLE_LEN: usize = 256;

/// Most extension pairs accepted in one `INIT`, `VERSION` or `ATTRS`: far more than any real
/// peer sends, few enough that a list of them is cheap to hold.
pub const MAX_EXTENSIONS: usize = 1024;

/// A (name, data) pair: an `INIT`/`VERSION` extension or an extended attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub name: Bytes,
    pub data: Bytes,
}

/// An opaque file or directory handle chosen by the server (at most [`MAX_HANDLE_LEN`] bytes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Handle(pub Bytes);

impl Handle {
    /// The handle's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A packet that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A packet with no type byte.
    #[error("empty packet")]
    Empty,
    /// A well-framed packet of a type this side does not handle.
    #[error("unsupported packet type {packet_type}")]
    Unsupported {
        packet_type: u8,
        /// The request id, when the packet was long enough to carry one.
        id: Option<u32>,
    },
    /// A packet that breaks the format.
    #[error("malformed packet of type {packet_type}: {reason}")]
    Malformed {
        packet_type: u8,
        /// The request id, when the packet was long enough to carry one.
        id: Option<u32>,
        reason: &'static str,
    },
}

impl DecodeError {
    /// The request id to answer, if the packet carried one.
    pub fn id(&self) -> Option<u32> {
        match self {
            DecodeError::Empty => None,
            DecodeError::Unsupported { id, .. } | DecodeError::Malformed { id, .. } => *id,
        }
    }

    /// The status a server answers with: `SSH_FX_OP_UNSUPPORTED` or `SSH_FX_BAD_MESSAGE`.
    pub fn status_code(&self) -> StatusCode {
        match self {
            DecodeError::Unsupported { .. } => StatusCode::OP_UNSUPPORTED,
            DecodeError::Empty | DecodeError::Malformed { .. } => StatusCode::BAD_MESSAGE,
        }
    }

    pub(crate) fn malformed(packet_type: u8, id: Option<u32>, err: wire::WireError) -> Self {
        let reason = match err {
            wire::WireError::Truncated => "packet ends inside a field",
            wire::WireError::Invalid(why) => why,
        };
        DecodeError::Malformed {
            packet_type,
            id,
            reason,
        }
    }
}
