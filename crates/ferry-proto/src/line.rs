//! Bounded line splitting for the control connection.
//!
//! A hostile peer may send a line that never ends. [`LineBuffer`] keeps at most `max_line`
//! bytes; past that it reports [`Line::TooLong`] once and discards bytes until the next LF,
//! so memory stays bounded whatever the peer sends.

/// One item taken out of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A complete line, CRLF (or bare LF) stripped.
    Complete(Vec<u8>),
    /// A line exceeded the limit; its bytes were dropped (reported once per long line).
    TooLong,
}

/// Accumulates control-stream bytes and yields lines.
#[derive(Debug)]
pub struct LineBuffer {
    max_line: usize,
    // implementation-defined fields
}

impl LineBuffer {
    /// A buffer that refuses lines longer than `max_line` bytes (CRLF excluded).
    pub fn new(max_line: usize) -> Self {
        let _ = max_line;
        todo!()
    }

    /// Feed bytes read from the peer. Call [`LineBuffer::next_line`] until it returns `None`.
    pub fn extend(&mut self, bytes: &[u8]) {
        let _ = bytes;
        todo!()
    }

    /// Take the next complete line (or a `TooLong` marker) if one is ready.
    pub fn next_line(&mut self) -> Option<Line> {
        todo!()
    }

    /// Bytes buffered and not yet returned (an unfinished line).
    pub fn pending(&self) -> usize {
        todo!()
    }

    /// Release the buffer's capacity (idle sessions keep no memory).
    pub fn shrink(&mut self) {
        todo!()
    }
}
