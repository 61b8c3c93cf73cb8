//! What a client sends: `INIT`, then requests each carrying an id that its response repeats.

use bytes::{BufMut, Bytes, BytesMut};

use crate::attrs::{decode_pairs_to_end, encode_pairs};
use crate::ext;
use crate::packet as t;
use crate::wire::{Reader, WireError, begin_packet, end_packet, put_string};
use crate::{Attrs, DecodeError, Extension, Handle, MAX_HANDLE_LEN};

/// `SSH_FXP_OPEN`'s `pflags`. Unknown bits are kept (so a packet re-encodes as it came); the
/// server decides what to do with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenFlags(pub u32);

impl OpenFlags {
    /// `SSH_FXF_READ`.
    pub const READ: u32 = 0x01;
    /// `SSH_FXF_WRITE`.
    pub const WRITE: u32 = 0x02;
    /// `SSH_FXF_APPEND`.
    pub const APPEND: u32 = 0x04;
    /// `SSH_FXF_CREAT`.
    pub const CREAT: u32 = 0x08;
    /// `SSH_FXF_TRUNC`.
    pub const TRUNC: u32 = 0x10;
    /// `SSH_FXF_EXCL`.
    pub const EXCL: u32 = 0x20;
    /// Every flag v3 defines.
    pub const KNOWN: u32 = 0x3f;

    /// `true` if every bit of `flag` is set.
    pub fn has(self, flag: u32) -> bool {
        self.0 & flag == flag
    }

    /// Bits v3 does not define.
    pub fn unknown(self) -> u32 {
        self.0 & !Self::KNOWN
    }
}

/// One request (everything but `INIT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `SSH_FXP_OPEN`.
    Open {
        path: Bytes,
        flags: OpenFlags,
        attrs: Attrs,
    },
    /// `SSH_FXP_CLOSE`.
    Close { handle: Handle },
    /// `SSH_FXP_READ`.
    Read {
        handle: Handle,
        offset: u64,
        len: u32,
    },
    /// `SSH_FXP_WRITE`: `data` is a slice of the received packet.
    Write {
        handle: Handle,
        offset: u64,
        data: Bytes,
    },
    /// `SSH_FXP_LSTAT`.
    Lstat { path: Bytes },
    /// `SSH_FXP_FSTAT`.
    Fstat { handle: Handle },
    /// `SSH_FXP_SETSTAT`.
    Setstat { path: Bytes, attrs: Attrs },
    /// `SSH_FXP_FSETSTAT`.
    Fsetstat { handle: Handle, attrs: Attrs },
    /// `SSH_FXP_OPENDIR`.
    Opendir { path: Bytes },
    /// `SSH_FXP_READDIR`.
    Readdir { handle: Handle },
    /// `SSH_FXP_REMOVE`.
    Remove { path: Bytes },
    /// `SSH_FXP_MKDIR`.
    Mkdir { path: Bytes, attrs: Attrs },
    /// `SSH_FXP_RMDIR`.
    Rmdir { path: Bytes },
    /// `SSH_FXP_REALPATH`.
    Realpath { path: Bytes },
    /// `SSH_FXP_STAT`.
    Stat { path: Bytes },
    /// `SSH_FXP_RENAME`.
    Rename { from: Bytes, to: Bytes },
    /// `SSH_FXP_READLINK`.
    Readlink { path: Bytes },
    /// `SSH_FXP_SYMLINK`, in OpenSSH's field order: the target the link will point to, then
    /// the path of the link to create.
    Symlink { target: Bytes, link: Bytes },
    /// `SSH_FXP_EXTENDED`.
    Extended(Extended),
}

/// An `SSH_FXP_EXTENDED` request: the OpenSSH extensions typed, anything else kept as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extended {
    /// `posix-rename@openssh.com`: rename, replacing the target atomically.
    PosixRename { from: Bytes, to: Bytes },
    /// `statvfs@openssh.com`.
    StatVfs { path: Bytes },
    /// `fstatvfs@openssh.com`.
    FstatVfs { handle: Handle },
    /// `fsync@openssh.com`.
    Fsync { handle: Handle },
    /// `hardlink@openssh.com`: make `to` a hard link to `from`.
    Hardlink { from: Bytes, to: Bytes },
    /// `limits@openssh.com`.
    Limits,
    /// `lsetstat@openssh.com`: `SETSTAT` without following a final symlink.
    Lsetstat { path: Bytes, attrs: Attrs },
    /// `expand-path@openssh.com`: `REALPATH` that also expands `~`.
    ExpandPath { path: Bytes },
    /// `copy-data`: copy a range between two open handles on the server.
    CopyData {
        read_from: Handle,
        read_offset: u64,
        /// 0 means "to the end of the file".
        read_len: u64,
        write_to: Handle,
        write_offset: u64,
    },
    /// Any other extension: its name and the bytes after it.
    Unknown { name: Bytes, data: Bytes },
}

impl Extended {
    /// The extension's name on the wire.
    pub fn name(&self) -> &[u8] {
        match self {
            Extended::PosixRename { .. } => ext::POSIX_RENAME.as_bytes(),
            Extended::StatVfs { .. } => ext::STATVFS.as_bytes(),
            Extended::FstatVfs { .. } => ext::FSTATVFS.as_bytes(),
            Extended::Fsync { .. } => ext::FSYNC.as_bytes(),
            Extended::Hardlink { .. } => ext::HARDLINK.as_bytes(),
            Extended::Limits => ext::LIMITS.as_bytes(),
            Extended::Lsetstat { .. } => ext::LSETSTAT.as_bytes(),
            Extended::ExpandPath { .. } => ext::EXPAND_PATH.as_bytes(),
            Extended::CopyData { .. } => ext::COPY_DATA.as_bytes(),
            Extended::Unknown { name, .. } => name,
        }
    }

    fn encode_args(&self, out: &mut BytesMut) {
        match self {
            Extended::PosixRename { from, to } | Extended::Hardlink { from, to } => {
                put_string(out, from);
                put_string(out, to);
            }
            Extended::StatVfs { path } | Extended::ExpandPath { path } => put_string(out, path),
            Extended::FstatVfs { handle } | Extended::Fsync { handle } => {
                put_string(out, &handle.0)
            }
            Extended::Limits => {}
            Extended::Lsetstat { path, attrs } => {
                put_string(out, path);
                attrs.encode(out);
            }
            Extended::CopyData {
                read_from,
                read_offset,
                read_len,
                write_to,
                write_offset,
            } => {
                put_string(out, &read_from.0);
                out.put_u64(*read_offset);
                out.put_u64(*read_len);
                put_string(out, &write_to.0);
                out.put_u64(*write_offset);
            }
            Extended::Unknown { data, .. } => out.put_slice(data),
        }
    }

    fn decode(r: &mut Reader) -> Result<Extended, WireError> {
        let name = r.string()?;
        let parsed = match &name[..] {
            n if n == ext::POSIX_RENAME.as_bytes() => Extended::PosixRename {
                from: r.string()?,
                to: r.string()?,
            },
            n if n == ext::STATVFS.as_bytes() => Extended::StatVfs { path: r.string()? },
            n if n == ext::FSTATVFS.as_bytes() => Extended::FstatVfs { handle: handle(r)? },
            n if n == ext::FSYNC.as_bytes() => Extended::Fsync { handle: handle(r)? },
            n if n == ext::HARDLINK.as_bytes() => Extended::Hardlink {
                from: r.string()?,
                to: r.string()?,
            },
            n if n == ext::LIMITS.as_bytes() => Extended::Limits,
            n if n == ext::LSETSTAT.as_bytes() => Extended::Lsetstat {
                path: r.string()?,
                attrs: Attrs::decode(r)?,
            },
            n if n == ext::EXPAND_PATH.as_bytes() => Extended::ExpandPath { path: r.string()? },
            n if n == ext::COPY_DATA.as_bytes() => Extended::CopyData {
                read_from: handle(r)?,
                read_offset: r.u64()?,
                read_len: r.u64()?,
                write_to: handle(r)?,
                write_offset: r.u64()?,
            },
            _ => Extended::Unknown {
                data: r.rest(),
                name,
            },
        };
        Ok(parsed)
    }
}

fn handle(r: &mut Reader) -> Result<Handle, WireError> {
    let h = r.string()?;
    if h.len() > MAX_HANDLE_LEN {
        return Err(WireError::Invalid("handle longer than 256 bytes"));
    }
    Ok(Handle(h))
}

impl Request {
    /// The packet type number.
    pub fn packet_type(&self) -> u8 {
        match self {
            Request::Open { .. } => t::OPEN,
            Request::Close { .. } => t::CLOSE,
            Request::Read { .. } => t::READ,
            Request::Write { .. } => t::WRITE,
            Request::Lstat { .. } => t::LSTAT,
            Request::Fstat { .. } => t::FSTAT,
            Request::Setstat { .. } => t::SETSTAT,
            Request::Fsetstat { .. } => t::FSETSTAT,
            Request::Opendir { .. } => t::OPENDIR,
            Request::Readdir { .. } => t::READDIR,
            Request::Remove { .. } => t::REMOVE,
            Request::Mkdir { .. } => t::MKDIR,
            Request::Rmdir { .. } => t::RMDIR,
            Request::Realpath { .. } => t::REALPATH,
            Request::Stat { .. } => t::STAT,
            Request::Rename { .. } => t::RENAME,
            Request::Readlink { .. } => t::READLINK,
            Request::Symlink { .. } => t::SYMLINK,
            Request::Extended(_) => t::EXTENDED,
        }
    }

    /// The handle the request works on, if any (for ordering requests per handle).
    pub fn handle(&self) -> Option<&Handle> {
        match self {
            Request::Close { handle }
            | Request::Read { handle, .. }
            | Request::Write { handle, .. }
            | Request::Fstat { handle }
            | Request::Fsetstat { handle, .. }
            | Request::Readdir { handle }
            | Request::Extended(Extended::FstatVfs { handle } | Extended::Fsync { handle }) => {
                Some(handle)
            }
            _ => None,
        }
    }

    /// A short name for logs (`"OPEN"`, `"posix-rename@openssh.com"`), never peer bytes
    /// except an unknown extension's name, which is shown escaped.
    pub fn name(&self) -> String {
        let fixed = match self {
            Request::Open { .. } => "OPEN",
            Request::Close { .. } => "CLOSE",
            Request::Read { .. } => "READ",
            Request::Write { .. } => "WRITE",
            Request::Lstat { .. } => "LSTAT",
            Request::Fstat { .. } => "FSTAT",
            Request::Setstat { .. } => "SETSTAT",
            Request::Fsetstat { .. } => "FSETSTAT",
            Request::Opendir { .. } => "OPENDIR",
            Request::Readdir { .. } => "READDIR",
            Request::Remove { .. } => "REMOVE",
            Request::Mkdir { .. } => "MKDIR",
            Request::Rmdir { .. } => "RMDIR",
            Request::Realpath { .. } => "REALPATH",
            Request::Stat { .. } => "STAT",
            Request::Rename { .. } => "RENAME",
            Request::Readlink { .. } => "READLINK",
            Request::Symlink { .. } => "SYMLINK",
            Request::Extended(e) => {
                return String::from_utf8_lossy(e.name()).escape_debug().to_string();
            }
        };
        fixed.to_string()
    }

    fn encode_body(&self, out: &mut BytesMut) {
        match self {
            Request::Open { path, flags, attrs } => {
                put_string(out, path);
                out.put_u32(flags.0);
                attrs.encode(out);
            }
            Request::Close { handle } | Request::Fstat { handle } | Request::Readdir { handle } => {
                put_string(out, &handle.0)
            }
            Request::Read {
                handle,
                offset,
                len,
            } => {
                put_string(out, &handle.0);
                out.put_u64(*offset);
                out.put_u32(*len);
            }
            Request::Write {
                handle,
                offset,
                data,
            } => {
                put_string(out, &handle.0);
                out.put_u64(*offset);
                put_string(out, data);
            }
            Request::Lstat { path }
            | Request::Opendir { path }
            | Request::Remove { path }
            | Request::Rmdir { path }
            | Request::Realpath { path }
            | Request::Stat { path }
            | Request::Readlink { path } => put_string(out, path),
            Request::Setstat { path, attrs } | Request::Mkdir { path, attrs } => {
                put_string(out, path);
                attrs.encode(out);
            }
            Request::Fsetstat { handle, attrs } => {
                put_string(out, &handle.0);
                attrs.encode(out);
            }
            Request::Rename { from, to } => {
                put_string(out, from);
                put_string(out, to);
            }
            Request::Symlink { target, link } => {
                put_string(out, target);
                put_string(out, link);
            }
            Request::Extended(e) => {
                put_string(out, e.name());
                e.encode_args(out);
            }
        }
    }

    fn decode_body(packet_type: u8, r: &mut Reader) -> Result<Option<Request>, WireError> {
        let req = match packet_type {
            t::OPEN => Request::Open {
                path: r.string()?,
                flags: OpenFlags(r.u32()?),
                attrs: Attrs::decode(r)?,
            },
            t::CLOSE => Request::Close { handle: handle(r)? },
            t::READ => Request::Read {
                handle: handle(r)?,
                offset: r.u64()?,
                len: r.u32()?,
            },
            t::WRITE => Request::Write {
                handle: handle(r)?,
                offset: r.u64()?,
                data: r.string()?,
            },
            t::LSTAT => Request::Lstat { path: r.string()? },
            t::FSTAT => Request::Fstat { handle: handle(r)? },
            t::SETSTAT => Request::Setstat {
                path: r.string()?,
                attrs: Attrs::decode(r)?,
            },
            t::FSETSTAT => Request::Fsetstat {
                handle: handle(r)?,
                attrs: Attrs::decode(r)?,
            },
            t::OPENDIR => Request::Opendir { path: r.string()? },
            t::READDIR => Request::Readdir { handle: handle(r)? },
            t::REMOVE => Request::Remove { path: r.string()? },
            t::MKDIR => Request::Mkdir {
                path: r.string()?,
                attrs: Attrs::decode(r)?,
            },
            t::RMDIR => Request::Rmdir { path: r.string()? },
            t::REALPATH => Request::Realpath { path: r.string()? },
            t::STAT => Request::Stat { path: r.string()? },
            t::RENAME => Request::Rename {
                from: r.string()?,
                to: r.string()?,
            },
            t::READLINK => Request::Readlink { path: r.string()? },
            t::SYMLINK => Request::Symlink {
                target: r.string()?,
                link: r.string()?,
            },
            t::EXTENDED => Request::Extended(Extended::decode(r)?),
            _ => return Ok(None),
        };
        Ok(Some(req))
    }
}

/// A packet from client to server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// `SSH_FXP_INIT`: the client's version and extensions (v3 clients send none).
    Init {
        version: u32,
        extensions: Vec<Extension>,
    },
    /// A request and the id its response will carry.
    Request { id: u32, request: Request },
}

impl ClientMessage {
    /// Append the framed packet (length included) to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            ClientMessage::Init {
                version,
                extensions,
            } => {
                let start = begin_packet(out, t::INIT);
                out.put_u32(*version);
                encode_pairs(out, extensions);
                end_packet(out, start);
            }
            ClientMessage::Request { id, request } => {
                let start = begin_packet(out, request.packet_type());
                out.put_u32(*id);
                request.encode_body(out);
                end_packet(out, start);
            }
        }
    }

    /// Decode one packet as [`split_packet`](crate::split_packet) returns it (type byte and
    /// payload). Never panics; allocates at most in proportion to the packet.
    pub fn decode(packet: Bytes) -> Result<ClientMessage, DecodeError> {
        let mut r = Reader::new(packet);
        let packet_type = r.u8().map_err(|_| DecodeError::Empty)?;
        if packet_type == t::INIT {
            let version = r
                .u32()
                .map_err(|e| DecodeError::malformed(packet_type, None, e))?;
            let extensions = decode_pairs_to_end(&mut r)
                .map_err(|e| DecodeError::malformed(packet_type, None, e))?;
            return Ok(ClientMessage::Init {
                version,
                extensions,
            });
        }
        let id = r.u32().ok();
        let Some(id) = id else {
            return Err(if is_request_type(packet_type) {
                DecodeError::malformed(packet_type, None, WireError::Truncated)
            } else {
                DecodeError::Unsupported {
                    packet_type,
                    id: None,
                }
            });
        };
        let malformed = |e| DecodeError::malformed(packet_type, Some(id), e);
        match Request::decode_body(packet_type, &mut r).map_err(malformed)? {
            Some(request) => {
                r.finish().map_err(malformed)?;
                Ok(ClientMessage::Request { id, request })
            }
            None => Err(DecodeError::Unsupported {
                packet_type,
                id: Some(id),
            }),
        }
    }
}

fn is_request_type(packet_type: u8) -> bool {
    (t::OPEN..=t::SYMLINK).contains(&packet_type) || packet_type == t::EXTENDED
}
