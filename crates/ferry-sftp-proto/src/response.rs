//! What a server sends: `VERSION`, then one response per request, matched by id.

use bytes::{BufMut, Bytes, BytesMut};

use crate::attrs::{decode_pairs_to_end, encode_pairs};
use crate::packet as t;
use crate::wire::{Reader, WireError, begin_packet, end_packet, len32, put_string};
use crate::{Attrs, DecodeError, Extension, Handle, MAX_HANDLE_LEN};

/// An `SSH_FX_*` status code. A newtype rather than an enum so that any value a peer sends
/// round-trips; the v3 codes are associated constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusCode(pub u32);

impl StatusCode {
    /// `SSH_FX_OK`.
    pub const OK: StatusCode = StatusCode(0);
    /// `SSH_FX_EOF`: end of file, or no more directory entries.
    pub const EOF: StatusCode = StatusCode(1);
    /// `SSH_FX_NO_SUCH_FILE`.
    pub const NO_SUCH_FILE: StatusCode = StatusCode(2);
    /// `SSH_FX_PERMISSION_DENIED`.
    pub const PERMISSION_DENIED: StatusCode = StatusCode(3);
    /// `SSH_FX_FAILURE`: anything without a more precise code.
    pub const FAILURE: StatusCode = StatusCode(4);
    /// `SSH_FX_BAD_MESSAGE`: a malformed packet.
    pub const BAD_MESSAGE: StatusCode = StatusCode(5);
    /// `SSH_FX_NO_CONNECTION` (client-side only).
    pub const NO_CONNECTION: StatusCode = StatusCode(6);
    /// `SSH_FX_CONNECTION_LOST` (client-side only).
    pub const CONNECTION_LOST: StatusCode = StatusCode(7);
    /// `SSH_FX_OP_UNSUPPORTED`.
    pub const OP_UNSUPPORTED: StatusCode = StatusCode(8);

    /// The code's `SSH_FX_*` name, or `None` for a code v3 doesn't define.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "SSH_FX_OK",
            1 => "SSH_FX_EOF",
            2 => "SSH_FX_NO_SUCH_FILE",
            3 => "SSH_FX_PERMISSION_DENIED",
            4 => "SSH_FX_FAILURE",
            5 => "SSH_FX_BAD_MESSAGE",
            6 => "SSH_FX_NO_CONNECTION",
            7 => "SSH_FX_CONNECTION_LOST",
            8 => "SSH_FX_OP_UNSUPPORTED",
            _ => return None,
        })
    }
}

/// `SSH_FXP_STATUS`: a code, a human-readable message and its language tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: StatusCode,
    pub message: Bytes,
    pub language: Bytes,
}

impl Status {
    /// A status with an English message (language tag `en`).
    pub fn new(code: StatusCode, message: impl Into<String>) -> Status {
        Status {
            code,
            message: Bytes::from(message.into()),
            language: Bytes::from_static(b"en"),
        }
    }

    /// `SSH_FX_OK` with the message `Success`.
    pub fn ok() -> Status {
        Status {
            code: StatusCode::OK,
            message: Bytes::from_static(b"Success"),
            language: Bytes::from_static(b"en"),
        }
    }

    /// `SSH_FX_EOF` with the message `End of file`.
    pub fn eof() -> Status {
        Status {
            code: StatusCode::EOF,
            message: Bytes::from_static(b"End of file"),
            language: Bytes::from_static(b"en"),
        }
    }
}

/// One entry of an `SSH_FXP_NAME` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    /// The name (a directory entry's name, or a full path for `REALPATH`).
    pub filename: Bytes,
    /// An `ls -l` style line for display (see [`longname`](crate::longname)).
    pub longname: Bytes,
    pub attrs: Attrs,
}

/// One response (everything but `VERSION`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `SSH_FXP_STATUS`.
    Status(Status),
    /// `SSH_FXP_HANDLE`.
    Handle(Handle),
    /// `SSH_FXP_DATA`: a slice of the received packet when decoded.
    Data(Bytes),
    /// `SSH_FXP_NAME`.
    Name(Vec<Name>),
    /// `SSH_FXP_ATTRS`.
    Attrs(Attrs),
    /// `SSH_FXP_EXTENDED_REPLY`: the bytes after the id, decoded by the typed reply of the
    /// request that asked (e.g. [`StatVfs::decode`](crate::StatVfs::decode)).
    ExtendedReply(Bytes),
}

impl Response {
    /// The packet type number.
    pub fn packet_type(&self) -> u8 {
        match self {
            Response::Status(_) => t::STATUS,
            Response::Handle(_) => t::HANDLE,
            Response::Data(_) => t::DATA,
            Response::Name(_) => t::NAME,
            Response::Attrs(_) => t::ATTRS,
            Response::ExtendedReply(_) => t::EXTENDED_REPLY,
        }
    }

    fn encode_body(&self, out: &mut BytesMut) {
        match self {
            Response::Status(s) => {
                out.put_u32(s.code.0);
                put_string(out, &s.message);
                put_string(out, &s.language);
            }
            Response::Handle(h) => put_string(out, &h.0),
            Response::Data(d) => put_string(out, d),
            Response::Name(names) => {
                out.put_u32(len32(names.len()));
                for n in names {
                    put_string(out, &n.filename);
                    put_string(out, &n.longname);
                    n.attrs.encode(out);
                }
            }
            Response::Attrs(a) => a.encode(out),
            Response::ExtendedReply(data) => out.put_slice(data),
        }
    }

    fn decode_body(packet_type: u8, r: &mut Reader) -> Result<Option<Response>, WireError> {
        let resp = match packet_type {
            t::STATUS => {
                let code = StatusCode(r.u32()?);
                // Old servers end the packet after the code.
                let (message, language) = if r.remaining() == 0 {
                    (Bytes::new(), Bytes::new())
                } else {
                    (r.string()?, r.string()?)
                };
                Response::Status(Status {
                    code,
                    message,
                    language,
                })
            }
            t::HANDLE => {
                let h = r.string()?;
                if h.len() > MAX_HANDLE_LEN {
                    return Err(WireError::Invalid("handle longer than 256 bytes"));
                }
                Response::Handle(Handle(h))
            }
            t::DATA => Response::Data(r.string()?),
            t::NAME => {
                let count = r.u32()?;
                // Each entry takes at least 12 bytes: two empty strings and empty attrs.
                let mut names = Vec::with_capacity(r.capacity_for(count, 12));
                for _ in 0..count {
                    names.push(Name {
                        filename: r.string()?,
                        longname: r.string()?,
                        attrs: Attrs::decode(r)?,
                    });
                }
                Response::Name(names)
            }
            t::ATTRS => Response::Attrs(Attrs::decode(r)?),
            t::EXTENDED_REPLY => Response::ExtendedReply(r.rest()),
            _ => return Ok(None),
        };
        Ok(Some(resp))
    }
}

/// Bytes before a `DATA` payload: length, type, id, payload length.
pub const DATA_HEADER_LEN: usize = 13;

/// The framing of an `SSH_FXP_DATA` response carrying `data_len` bytes, to put in front of the
/// payload. Lets a server read file data straight into a buffer that starts with
/// [`DATA_HEADER_LEN`] spare bytes and send it without copying it again.
pub fn data_header(id: u32, data_len: u32) -> [u8; DATA_HEADER_LEN] {
    let mut h = [0u8; DATA_HEADER_LEN];
    h[..4].copy_from_slice(&data_len.saturating_add(9).to_be_bytes());
    h[4] = t::DATA;
    h[5..9].copy_from_slice(&id.to_be_bytes());
    h[9..].copy_from_slice(&data_len.to_be_bytes());
    h
}

/// A packet from server to client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// `SSH_FXP_VERSION`: the version the server speaks and the extensions it offers.
    Version {
        version: u32,
        extensions: Vec<Extension>,
    },
    /// A response to the request with this id.
    Response { id: u32, response: Response },
}

impl ServerMessage {
    /// Append the framed packet (length included) to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            ServerMessage::Version {
                version,
                extensions,
            } => {
                let start = begin_packet(out, t::VERSION);
                out.put_u32(*version);
                encode_pairs(out, extensions);
                end_packet(out, start);
            }
            ServerMessage::Response { id, response } => {
                let start = begin_packet(out, response.packet_type());
                out.put_u32(*id);
                response.encode_body(out);
                end_packet(out, start);
            }
        }
    }

    /// The framed packet as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }

    /// Decode one packet as [`split_packet`](crate::split_packet) returns it (type byte and
    /// payload). Never panics; allocates at most in proportion to the packet.
    pub fn decode(packet: Bytes) -> Result<ServerMessage, DecodeError> {
        let mut r = Reader::new(packet);
        let packet_type = r.u8().map_err(|_| DecodeError::Empty)?;
        if packet_type == t::VERSION {
            let malformed = |e| DecodeError::malformed(packet_type, None, e);
            let version = r.u32().map_err(malformed)?;
            let extensions = decode_pairs_to_end(&mut r).map_err(malformed)?;
            return Ok(ServerMessage::Version {
                version,
                extensions,
            });
        }
        let known =
            (t::STATUS..=t::ATTRS).contains(&packet_type) || packet_type == t::EXTENDED_REPLY;
        let Ok(id) = r.u32() else {
            return Err(if known {
                DecodeError::malformed(packet_type, None, WireError::Truncated)
            } else {
                DecodeError::Unsupported {
                    packet_type,
                    id: None,
                }
            });
        };
        let malformed = |e| DecodeError::malformed(packet_type, Some(id), e);
        match Response::decode_body(packet_type, &mut r).map_err(malformed)? {
            Some(response) => {
                r.finish().map_err(malformed)?;
                Ok(ServerMessage::Response { id, response })
            }
            None => Err(DecodeError::Unsupported {
                packet_type,
                id: Some(id),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_header_frames_like_encode() {
        let payload = Bytes::from_static(b"hello");
        let whole = ServerMessage::Response {
            id: 7,
            response: Response::Data(payload.clone()),
        }
        .to_bytes();
        let mut manual = data_header(7, 5).to_vec();
        manual.extend_from_slice(&payload);
        assert_eq!(&whole[..], &manual[..]);
    }

    #[test]
    fn status_without_message_from_old_servers() {
        let pkt = Bytes::from_static(&[101, 0, 0, 0, 9, 0, 0, 0, 1]);
        assert_eq!(
            ServerMessage::decode(pkt),
            Ok(ServerMessage::Response {
                id: 9,
                response: Response::Status(Status {
                    code: StatusCode::EOF,
                    message: Bytes::new(),
                    language: Bytes::new(),
                })
            })
        );
    }

    #[test]
    fn name_count_larger_than_packet_is_malformed_without_allocating() {
        let pkt = Bytes::from_static(&[104, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            ServerMessage::decode(pkt),
            Err(DecodeError::Malformed { id: Some(1), .. })
        ));
    }
}
