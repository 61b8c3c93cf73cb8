//! Packet framing and type numbers.
//!
//! On the channel every SFTP packet is `u32 length ‖ u8 type ‖ payload`, the length counting
//! what follows it. [`split_packet`] cuts whole packets from a receive buffer.

use bytes::{Buf, Bytes, BytesMut};

/// `SSH_FXP_INIT`.
pub const INIT: u8 = 1;
/// `SSH_FXP_VERSION`.
pub const VERSION: u8 = 2;
/// `SSH_FXP_OPEN`.
pub const OPEN: u8 = 3;
/// `SSH_FXP_CLOSE`.
pub const CLOSE: u8 = 4;
/// `SSH_FXP_READ`.
pub const READ: u8 = 5;
/// `SSH_FXP_WRITE`.
pub const WRITE: u8 = 6;
/// `SSH_FXP_LSTAT`.
pub const LSTAT: u8 = 7;
/// `SSH_FXP_FSTAT`.
pub const FSTAT: u8 = 8;
/// `SSH_FXP_SETSTAT`.
pub const SETSTAT: u8 = 9;
/// `SSH_FXP_FSETSTAT`.
pub const FSETSTAT: u8 = 10;
/// `SSH_FXP_OPENDIR`.
pub const OPENDIR: u8 = 11;
/// `SSH_FXP_READDIR`.
pub const READDIR: u8 = 12;
/// `SSH_FXP_REMOVE`.
pub const REMOVE: u8 = 13;
/// `SSH_FXP_MKDIR`.
pub const MKDIR: u8 = 14;
/// `SSH_FXP_RMDIR`.
pub const RMDIR: u8 = 15;
/// `SSH_FXP_REALPATH`.
pub const REALPATH: u8 = 16;
/// `SSH_FXP_STAT`.
pub const STAT: u8 = 17;
/// `SSH_FXP_RENAME`.
pub const RENAME: u8 = 18;
/// `SSH_FXP_READLINK`.
pub const READLINK: u8 = 19;
/// `SSH_FXP_SYMLINK`.
pub const SYMLINK: u8 = 20;
/// `SSH_FXP_STATUS`.
pub const STATUS: u8 = 101;
/// `SSH_FXP_HANDLE`.
pub const HANDLE: u8 = 102;
/// `SSH_FXP_DATA`.
pub const DATA: u8 = 103;
/// `SSH_FXP_NAME`.
pub const NAME: u8 = 104;
/// `SSH_FXP_ATTRS`.
pub const ATTRS: u8 = 105;
/// `SSH_FXP_EXTENDED`.
pub const EXTENDED: u8 = 200;
/// `SSH_FXP_EXTENDED_REPLY`.
pub const EXTENDED_REPLY: u8 = 201;

/// A receive stream that can't be framed; the only answer is to close the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length field exceeds the limit.
    #[error("packet of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: u32, max: u32 },
    /// A length of 0: no room for the type byte.
    #[error("packet of length 0")]
    Empty,
}

/// Take the next whole packet (type byte and payload, without the length) off the front of
/// `buf`; `Ok(None)` until one is complete.
///
/// The length is checked against `max_len` as soon as its four bytes are in, before the caller
/// buffers anything more for it, and nothing is reserved here: a hostile length costs no memory.
pub fn split_packet(buf: &mut BytesMut, max_len: u32) -> Result<Option<Bytes>, FrameError> {
    let Some(head) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max_len {
        return Err(FrameError::TooLarge { len, max: max_len });
    }
    let total = 4 + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len as usize).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_whole_packet_then_splits() {
        let mut buf = BytesMut::from(&[0, 0, 0, 3, 1, 2][..]);
        assert_eq!(split_packet(&mut buf, 10), Ok(None));
        buf.extend_from_slice(&[3, 0, 0]);
        assert_eq!(
            split_packet(&mut buf, 10),
            Ok(Some(Bytes::from_static(&[1, 2, 3])))
        );
        assert_eq!(&buf[..], &[0, 0]);
        assert_eq!(split_packet(&mut buf, 10), Ok(None));
    }

    #[test]
    fn oversize_refused_from_the_header_alone() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert_eq!(
            split_packet(&mut buf, 1 << 18),
            Err(FrameError::TooLarge {
                len: u32::MAX,
                max: 1 << 18
            })
        );
        let mut buf = BytesMut::from(&[0, 0, 0, 0][..]);
        assert_eq!(split_packet(&mut buf, 10), Err(FrameError::Empty));
    }
}
