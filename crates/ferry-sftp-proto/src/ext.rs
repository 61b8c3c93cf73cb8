//! OpenSSH's SFTP extensions (OpenSSH `PROTOCOL`, section 4): their names, and the typed
//! bodies of the `EXTENDED_REPLY`s that answer them.

use bytes::{BufMut, Bytes, BytesMut};

use crate::Extension;
use crate::wire::{Reader, WireError};

/// `posix-rename@openssh.com` (advertised version `1`).
pub const POSIX_RENAME: &str = "posix-rename@openssh.com";
/// `statvfs@openssh.com` (version `2`).
pub const STATVFS: &str = "statvfs@openssh.com";
/// `fstatvfs@openssh.com` (version `2`).
pub const FSTATVFS: &str = "fstatvfs@openssh.com";
/// `hardlink@openssh.com` (version `1`).
pub const HARDLINK: &str = "hardlink@openssh.com";
/// `fsync@openssh.com` (version `1`).
pub const FSYNC: &str = "fsync@openssh.com";
/// `lsetstat@openssh.com` (version `1`).
pub const LSETSTAT: &str = "lsetstat@openssh.com";
/// `limits@openssh.com` (version `1`).
pub const LIMITS: &str = "limits@openssh.com";
/// `expand-path@openssh.com` (version `1`).
pub const EXPAND_PATH: &str = "expand-path@openssh.com";
/// `copy-data` (version `1`).
pub const COPY_DATA: &str = "copy-data";

/// The `VERSION` pair advertising extension `name` at `version` (e.g. `(STATVFS, "2")`).
pub fn advertise(name: &'static str, version: &'static str) -> Extension {
    (name, version).into()
}

/// `ST_RDONLY` in [`StatVfs::flag`].
pub const ST_RDONLY: u64 = 0x1;
/// `ST_NOSUID` in [`StatVfs::flag`].
pub const ST_NOSUID: u64 = 0x2;

/// The reply to `statvfs@openssh.com` / `fstatvfs@openssh.com`: POSIX `struct statvfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatVfs {
    pub bsize: u64,
    pub frsize: u64,
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub favail: u64,
    pub fsid: u64,
    pub flag: u64,
    pub namemax: u64,
}

impl StatVfs {
    const FIELDS: usize = 11;

    fn fields(&self) -> [u64; Self::FIELDS] {
        [
            self.bsize,
            self.frsize,
            self.blocks,
            self.bfree,
            self.bavail,
            self.files,
            self.ffree,
            self.favail,
            self.fsid,
            self.flag,
            self.namemax,
        ]
    }

    /// The `EXTENDED_REPLY` body.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(8 * Self::FIELDS);
        for f in self.fields() {
            out.put_u64(f);
        }
        out.freeze()
    }

    /// Parse an `EXTENDED_REPLY` body.
    pub fn decode(body: Bytes) -> Result<StatVfs, ReplyError> {
        let mut r = Reader::new(body);
        let mut f = [0u64; Self::FIELDS];
        for slot in &mut f {
            *slot = r.u64()?;
        }
        r.finish()?;
        let [
            bsize,
            frsize,
            blocks,
            bfree,
            bavail,
            files,
            ffree,
            favail,
            fsid,
            flag,
            namemax,
        ] = f;
        Ok(StatVfs {
            bsize,
            frsize,
            blocks,
            bfree,
            bavail,
            files,
            ffree,
            favail,
            fsid,
            flag,
            namemax,
        })
    }
}

/// The reply to `limits@openssh.com`. 0 means "no limit" for each field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Longest packet the server accepts (length field included, as OpenSSH counts it).
    pub max_packet_len: u64,
    /// Largest `READ` the server answers in full.
    pub max_read_len: u64,
    /// Largest `WRITE` the server accepts.
    pub max_write_len: u64,
    /// Most handles open at once.
    pub max_open_handles: u64,
}

impl Limits {
    /// The `EXTENDED_REPLY` body.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(32);
        out.put_u64(self.max_packet_len);
        out.put_u64(self.max_read_len);
        out.put_u64(self.max_write_len);
        out.put_u64(self.max_open_handles);
        out.freeze()
    }

    /// Parse an `EXTENDED_REPLY` body.
    pub fn decode(body: Bytes) -> Result<Limits, ReplyError> {
        let mut r = Reader::new(body);
        let limits = Limits {
            max_packet_len: r.u64()?,
            max_read_len: r.u64()?,
            max_write_len: r.u64()?,
            max_open_handles: r.u64()?,
        };
        r.finish()?;
        Ok(limits)
    }
}

/// An `EXTENDED_REPLY` body that doesn't have the expected shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed extended reply")]
pub struct ReplyError;

impl From<WireError> for ReplyError {
    fn from(_: WireError) -> Self {
        ReplyError
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statvfs_roundtrip_and_length() {
        let s = StatVfs {
            bsize: 4096,
            namemax: 255,
            flag: ST_NOSUID,
            ..StatVfs::default()
        };
        let body = s.encode();
        assert_eq!(body.len(), 88);
        assert_eq!(StatVfs::decode(body.clone()), Ok(s));
        assert_eq!(StatVfs::decode(body.slice(..87)), Err(ReplyError));
    }

    #[test]
    fn limits_roundtrip_and_trailing() {
        let l = Limits {
            max_packet_len: 262_144,
            max_read_len: 261_120,
            max_write_len: 261_120,
            max_open_handles: 64,
        };
        assert_eq!(Limits::decode(l.encode()), Ok(l));
        let mut long = BytesMut::from(&l.encode()[..]);
        long.put_u8(0);
        assert_eq!(Limits::decode(long.freeze()), Err(ReplyError));
    }
}
