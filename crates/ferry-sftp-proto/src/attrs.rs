//! File attributes (`ATTRS`, draft-ietf-secsh-filexfer-02 §5): a flags word saying which
//! fields follow, then size, uid/gid, permissions, atime/mtime and extended pairs.

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::{Reader, WireError, len32, put_string};
use crate::{Extension, MAX_EXTENSIONS};

/// `SSH_FILEXFER_ATTR_SIZE`.
pub const ATTR_SIZE: u32 = 0x0000_0001;
/// `SSH_FILEXFER_ATTR_UIDGID`.
pub const ATTR_UIDGID: u32 = 0x0000_0002;
/// `SSH_FILEXFER_ATTR_PERMISSIONS`.
pub const ATTR_PERMISSIONS: u32 = 0x0000_0004;
/// `SSH_FILEXFER_ATTR_ACMODTIME`.
pub const ATTR_ACMODTIME: u32 = 0x0000_0008;
/// `SSH_FILEXFER_ATTR_EXTENDED`.
pub const ATTR_EXTENDED: u32 = 0x8000_0000;
const KNOWN_FLAGS: u32 =
    ATTR_SIZE | ATTR_UIDGID | ATTR_PERMISSIONS | ATTR_ACMODTIME | ATTR_EXTENDED;

/// File type bits carried in the `permissions` field (POSIX `st_mode`), as OpenSSH sends them.
pub mod file_type {
    /// Mask of the type bits.
    pub const MASK: u32 = 0o170000;
    /// Socket.
    pub const SOCKET: u32 = 0o140000;
    /// Symbolic link.
    pub const SYMLINK: u32 = 0o120000;
    /// Regular file.
    pub const REGULAR: u32 = 0o100000;
    /// Block device.
    pub const BLOCK: u32 = 0o060000;
    /// Directory.
    pub const DIRECTORY: u32 = 0o040000;
    /// Character device.
    pub const CHAR: u32 = 0o020000;
    /// FIFO.
    pub const FIFO: u32 = 0o010000;
}

/// Owner and group, numeric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Access and modification times, Unix seconds (v3 carries 32 bits: up to 2106).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    pub atime: u32,
    pub mtime: u32,
}

/// File attributes; a field is present on the wire exactly when it is `Some` (or, for
/// `extended`, non-empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    pub size: Option<u64>,
    pub owner: Option<Owner>,
    /// `st_mode`: permission bits, plus the file type bits (see [`file_type`]) in replies.
    pub permissions: Option<u32>,
    pub times: Option<Times>,
    /// Vendor attributes, kept as name + data.
    pub extended: Vec<Extension>,
}

impl Attrs {
    /// No attributes (flags 0): what a request that sets nothing carries.
    pub const EMPTY: Attrs = Attrs {
        size: None,
        owner: None,
        permissions: None,
        times: None,
        extended: Vec::new(),
    };

    /// The flags word for the fields present.
    pub fn flags(&self) -> u32 {
        let mut flags = 0;
        if self.size.is_some() {
            flags |= ATTR_SIZE;
        }
        if self.owner.is_some() {
            flags |= ATTR_UIDGID;
        }
        if self.permissions.is_some() {
            flags |= ATTR_PERMISSIONS;
        }
        if self.times.is_some() {
            flags |= ATTR_ACMODTIME;
        }
        if !self.extended.is_empty() {
            flags |= ATTR_EXTENDED;
        }
        flags
    }

    /// The file type bits of `permissions` (0 when absent).
    pub fn file_type(&self) -> u32 {
        self.permissions.unwrap_or(0) & file_type::MASK
    }

    /// `true` if `permissions` says directory.
    pub fn is_dir(&self) -> bool {
        self.file_type() == file_type::DIRECTORY
    }

    /// `true` if `permissions` says regular file.
    pub fn is_regular(&self) -> bool {
        self.file_type() == file_type::REGULAR
    }

    /// `true` if `permissions` says symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.file_type() == file_type::SYMLINK
    }

    /// Append the wire form.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.flags());
        if let Some(size) = self.size {
            out.put_u64(size);
        }
        if let Some(owner) = self.owner {
            out.put_u32(owner.uid);
            out.put_u32(owner.gid);
        }
        if let Some(mode) = self.permissions {
            out.put_u32(mode);
        }
        if let Some(times) = self.times {
            out.put_u32(times.atime);
            out.put_u32(times.mtime);
        }
        if !self.extended.is_empty() {
            out.put_u32(len32(self.extended.len()));
            for ext in &self.extended {
                put_string(out, &ext.name);
                put_string(out, &ext.data);
            }
        }
    }

    /// Read one `ATTRS`. Unknown flag bits are refused: their fields' layout is unknown, so
    /// nothing after them could be trusted.
    pub(crate) fn decode(r: &mut Reader) -> Result<Attrs, WireError> {
        let flags = r.u32()?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(WireError::Invalid("unknown attribute flags"));
        }
        let mut attrs = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            attrs.size = Some(r.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            attrs.owner = Some(Owner {
                uid: r.u32()?,
                gid: r.u32()?,
            });
        }
        if flags & ATTR_PERMISSIONS != 0 {
            attrs.permissions = Some(r.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            attrs.times = Some(Times {
                atime: r.u32()?,
                mtime: r.u32()?,
            });
        }
        if flags & ATTR_EXTENDED != 0 {
            attrs.extended = decode_extensions(r)?;
        }
        Ok(attrs)
    }
}

/// `count` then that many (name, data) string pairs; the count is bounded by
/// [`MAX_EXTENSIONS`] and by what the packet can hold.
pub(crate) fn decode_extensions(r: &mut Reader) -> Result<Vec<Extension>, WireError> {
    let count = r.u32()?;
    if count as usize > MAX_EXTENSIONS {
        return Err(WireError::Invalid("too many extension pairs"));
    }
    let mut out = Vec::with_capacity(r.capacity_for(count, 8));
    for _ in 0..count {
        let name = r.string()?;
        let data = r.string()?;
        out.push(Extension { name, data });
    }
    Ok(out)
}

/// Append extension pairs without a count (as `INIT`/`VERSION` carry them).
pub(crate) fn encode_pairs(out: &mut BytesMut, pairs: &[Extension]) {
    for ext in pairs {
        put_string(out, &ext.name);
        put_string(out, &ext.data);
    }
}

/// Pairs until the end of the packet (as `INIT`/`VERSION` carry them).
pub(crate) fn decode_pairs_to_end(r: &mut Reader) -> Result<Vec<Extension>, WireError> {
    let mut out = Vec::new();
    while r.remaining() > 0 {
        if out.len() >= MAX_EXTENSIONS {
            return Err(WireError::Invalid("too many extension pairs"));
        }
        let name = r.string()?;
        let data = r.string()?;
        out.push(Extension { name, data });
    }
    Ok(out)
}

impl From<(&'static str, &'static str)> for Extension {
    fn from((name, data): (&'static str, &'static str)) -> Self {
        Extension {
            name: Bytes::from_static(name.as_bytes()),
            data: Bytes::from_static(data.as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(a: &Attrs) -> Attrs {
        let mut out = BytesMut::new();
        a.encode(&mut out);
        let mut r = Reader::new(out.freeze());
        let back = Attrs::decode(&mut r).unwrap();
        r.finish().unwrap();
        back
    }

    #[test]
    fn empty_is_four_zero_bytes() {
        let mut out = BytesMut::new();
        Attrs::EMPTY.encode(&mut out);
        assert_eq!(&out[..], &[0, 0, 0, 0]);
    }

    #[test]
    fn all_fields_roundtrip_in_order() {
        let a = Attrs {
            size: Some(5),
            owner: Some(Owner { uid: 1, gid: 2 }),
            permissions: Some(file_type::REGULAR | 0o644),
            times: Some(Times { atime: 3, mtime: 4 }),
            extended: vec![("a@b", "c").into()],
        };
        let mut out = BytesMut::new();
        a.encode(&mut out);
        assert_eq!(&out[..4], &0x8000_000fu32.to_be_bytes());
        assert_eq!(&out[4..12], &5u64.to_be_bytes());
        assert_eq!(roundtrip(&a), a);
        assert!(a.is_regular() && !a.is_dir() && !a.is_symlink());
    }

    #[test]
    fn unknown_flag_is_refused() {
        let mut r = Reader::new(Bytes::from_static(&[0, 0, 0, 0x10]));
        assert!(matches!(Attrs::decode(&mut r), Err(WireError::Invalid(_))));
    }

    #[test]
    fn huge_extended_count_is_refused_without_allocating() {
        let mut r = Reader::new(Bytes::from_static(&[0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]));
        assert!(Attrs::decode(&mut r).is_err());
        let mut r = Reader::new(Bytes::from_static(&[0x80, 0, 0, 0, 0, 0, 0, 100]));
        assert_eq!(Attrs::decode(&mut r), Err(WireError::Truncated));
    }
}
