//! FTP replies: encoding (RFC 959 §4.2 single and multi-line) and streaming decoding.

/// One reply: a three-digit code and one or more text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The reply code, 100..=599.
    pub code: u16,
    /// Text lines; at least one. Lines never contain CR or LF.
    pub lines: Vec<String>,
}

impl Reply {
    /// A single-line reply. CR/LF in `text` are replaced by spaces.
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        let _ = (code, text);
        todo!()
    }

    /// A multi-line reply: `code-first`, middle lines, `code last`.
    /// Middle lines that start with digits are indented with a space so they can't end the reply.
    pub fn multi(code: u16, lines: Vec<String>) -> Self {
        let _ = (code, lines);
        todo!()
    }

    /// Append the wire form (with CRLFs) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let _ = out;
        todo!()
    }

    /// The wire form as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// 1yz.
    pub fn is_preliminary(&self) -> bool {
        (100..200).contains(&self.code)
    }
    /// 2yz.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }
    /// 3yz.
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }
    /// 4yz or 5yz.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }
    /// All text lines joined with `\n`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

/// Error decoding a reply stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A line that doesn't start with a three-digit code where one is required.
    #[error("malformed reply line: {0:?}")]
    Malformed(String),
    /// A line or a multi-line reply exceeded the decoder's limit.
    #[error("reply too long")]
    TooLong,
}

/// Streaming reply decoder for clients: feed bytes, take complete replies.
#[derive(Debug)]
pub struct ReplyDecoder {
    // implementation-defined fields
}

impl ReplyDecoder {
    /// A decoder with limits: `max_line` bytes per line, `max_lines` lines per reply.
    pub fn new(max_line: usize, max_lines: usize) -> Self {
        let _ = (max_line, max_lines);
        todo!()
    }

    /// Feed bytes received from the server.
    pub fn extend(&mut self, bytes: &[u8]) {
        let _ = bytes;
        todo!()
    }

    /// Take the next complete reply, if any. Invalid UTF-8 is replaced lossily.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, DecodeError> {
        todo!()
    }
}

impl Default for ReplyDecoder {
    fn default() -> Self {
        Self::new(64 * 1024, 100_000)
    }
}
