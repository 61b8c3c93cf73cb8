//! SSH wire primitives (RFC 4251 §5): big-endian integers and length-prefixed strings, read
//! from a [`Bytes`] without copying and written into a [`BytesMut`].

use bytes::{BufMut, Bytes, BytesMut};

/// Why a field could not be read. Turned into a [`DecodeError`](crate::DecodeError) with the
/// packet's context by the message decoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireError {
    /// The packet ended inside a field.
    Truncated,
    /// A field holds a value the protocol forbids (the text says which).
    Invalid(&'static str),
}

/// A cursor over one packet. Strings come out as slices of the packet ([`Bytes`] share its
/// buffer), so a `WRITE`'s data or a `DATA`'s payload is never copied while decoding.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        let (&b, _) = self.buf.split_first().ok_or(WireError::Truncated)?;
        self.skip(1);
        Ok(b)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        let bytes: [u8; 4] = self
            .buf
            .get(..4)
            .and_then(|s| s.try_into().ok())
            .ok_or(WireError::Truncated)?;
        self.skip(4);
        Ok(u32::from_be_bytes(bytes))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        let bytes: [u8; 8] = self
            .buf
            .get(..8)
            .and_then(|s| s.try_into().ok())
            .ok_or(WireError::Truncated)?;
        self.skip(8);
        Ok(u64::from_be_bytes(bytes))
    }

    /// A `string`: u32 length then that many bytes. The length is checked against what is
    /// left of the packet before anything is taken, so a hostile length costs nothing.
    pub(crate) fn string(&mut self) -> Result<Bytes, WireError> {
        let len = self.u32()? as usize;
        if len > self.buf.len() {
            return Err(WireError::Truncated);
        }
        Ok(self.buf.split_to(len))
    }

    /// Whatever is left, as one slice.
    pub(crate) fn rest(&mut self) -> Bytes {
        self.buf.split_off(0)
    }

    /// An upper bound for a count of items each at least `min_size` bytes long: what can
    /// really follow. Used to size vectors so a hostile count never allocates more than the
    /// packet could hold.
    pub(crate) fn capacity_for(&self, count: u32, min_size: usize) -> usize {
        (count as usize).min(self.buf.len() / min_size.max(1))
    }

    /// Ok if the packet has been read to its end.
    pub(crate) fn finish(&self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::Invalid("trailing bytes after the last field"))
        }
    }

    fn skip(&mut self, n: usize) {
        let _ = self.buf.split_to(n);
    }
}

/// A length as the wire's u32. Every length written here comes from a message the caller built;
/// anything past 4 GiB could not travel in one SSH packet anyway, and is clamped rather than
/// wrapped so the stream never silently resynchronises on attacker-chosen bytes.
pub(crate) fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

pub(crate) fn put_string(out: &mut BytesMut, s: &[u8]) {
    out.put_u32(len32(s.len()));
    out.put_slice(s);
}

/// Starts a packet: reserves the u32 length, writes the type; returns where the length goes.
pub(crate) fn begin_packet(out: &mut BytesMut, packet_type: u8) -> usize {
    let start = out.len();
    out.put_u32(0);
    out.put_u8(packet_type);
    start
}

/// Ends a packet begun at `start`: writes its length (everything after the length field).
pub(crate) fn end_packet(out: &mut BytesMut, start: usize) {
    let len = len32(out.len() - start - 4).to_be_bytes();
    out[start..start + 4].copy_from_slice(&len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_length_beyond_packet_is_truncated_not_allocated() {
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, b'a']));
        assert_eq!(r.string(), Err(WireError::Truncated));
    }

    #[test]
    fn capacity_is_bounded_by_what_remains() {
        let r = Reader::new(Bytes::from_static(&[0; 40]));
        assert_eq!(r.capacity_for(u32::MAX, 8), 5);
        assert_eq!(r.capacity_for(2, 8), 2);
        assert_eq!(r.capacity_for(7, 0), 7);
    }

    #[test]
    fn integers_are_big_endian() {
        let mut r = Reader::new(Bytes::from_static(&[1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1, 0]));
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u32(), Ok(2));
        assert_eq!(r.u64(), Ok(256));
        assert_eq!(r.u64(), Err(WireError::Truncated));
    }
}
