//! FTP replies: encoding (RFC 959 §4.2 single and multi-line) and streaming decoding.

use crate::line::{Line, LineBuffer};

/// One reply: a three-digit code and one or more text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The reply code, 100..=599.
    pub code: u16,
    /// Text lines; at least one. Lines never contain CR or LF.
    pub lines: Vec<String>,
}

/// Replace CR and LF by spaces so a text can never end a reply line early.
fn sanitize(text: String) -> String {
    if text.contains(['\r', '\n']) {
        text.replace(['\r', '\n'], " ")
    } else {
        text
    }
}

impl Reply {
    /// A single-line reply. CR/LF in `text` are replaced by spaces.
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Reply {
            code,
            lines: vec![sanitize(text.into())],
        }
    }

    /// A multi-line reply: `code-first`, middle lines, `code last`.
    /// Middle lines that start with digits are indented with a space so they can't end the reply.
    /// One line gives a single-line reply; no lines give one empty line. CR/LF become spaces.
    pub fn multi(code: u16, lines: Vec<String>) -> Self {
        if lines.is_empty() {
            return Reply::new(code, "");
        }
        let last = lines.len() - 1;
        let lines = lines
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let l = sanitize(l);
                if i != 0 && i != last && l.starts_with(|c: char| c.is_ascii_digit()) {
                    format!(" {l}")
                } else {
                    l
                }
            })
            .collect();
        Reply { code, lines }
    }

    /// Append the wire form (with CRLFs) to `out`.
    ///
    /// Safe whatever `lines` holds (the field is public): CR/LF are written as spaces, middle
    /// lines starting with a digit are indented, and a code outside 100..=999 is written as 500
    /// so the peer always sees a well-formed reply.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let code = if (100..=999).contains(&self.code) {
            self.code
        } else {
            500
        };
        let code = code.to_string();
        let put_text = |out: &mut Vec<u8>, text: &str| {
            out.extend(
                text.bytes()
                    .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
            );
        };
        match self.lines.as_slice() {
            [] => {
                out.extend_from_slice(code.as_bytes());
                out.extend_from_slice(b" \r\n");
            }
            [only] => {
                out.extend_from_slice(code.as_bytes());
                out.push(b' ');
                put_text(out, only);
                out.extend_from_slice(b"\r\n");
            }
            [first, middle @ .., last] => {
                out.extend_from_slice(code.as_bytes());
                out.push(b'-');
                put_text(out, first);
                out.extend_from_slice(b"\r\n");
                for line in middle {
                    if line.starts_with(|c: char| c.is_ascii_digit()) {
                        out.push(b' ');
                    }
                    put_text(out, line);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(code.as_bytes());
                out.push(b' ');
                put_text(out, last);
                out.extend_from_slice(b"\r\n");
            }
        }
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

/// State of a multi-line reply being read.
#[derive(Debug)]
struct InProgress {
    code: u16,
    lines: Vec<String>,
    /// An error was already reported for this reply: drop lines until its end, then resync.
    failed: bool,
}

/// Streaming reply decoder for clients: feed bytes, take complete replies.
///
/// Tolerates bare LF line ends and invalid UTF-8 (replaced lossily). Memory is bounded by
/// `max_line * max_lines`. After an error the decoder resynchronises: a too-long multi-line
/// reply is skipped to its end line, and each error is reported once.
#[derive(Debug)]
pub struct ReplyDecoder {
    lines: LineBuffer,
    max_lines: usize,
    current: Option<InProgress>,
}

/// The code of a line that starts with three digits (100..=599) and the byte after them.
fn code_of(line: &[u8]) -> Option<(u16, Option<u8>)> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'1'..=b'5').contains(&digits[0]) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    Some((code, line.get(3).copied()))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl ReplyDecoder {
    /// A decoder with limits: `max_line` bytes per line, `max_lines` lines per reply.
    pub fn new(max_line: usize, max_lines: usize) -> Self {
        ReplyDecoder {
            lines: LineBuffer::new(max_line),
            max_lines: max_lines.max(1),
            current: None,
        }
    }

    /// Feed bytes received from the server.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.lines.extend(bytes);
    }

    /// Take the next complete reply, if any. Invalid UTF-8 is replaced lossily.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, DecodeError> {
        while let Some(line) = self.lines.next_line() {
            if let Some(result) = self.on_line(line) {
                return result.map(Some);
            }
        }
        Ok(None)
    }

    /// Bytes received and not yet part of a returned reply's last line.
    pub fn pending(&self) -> usize {
        self.lines.pending()
    }

    /// Handle one line; `Some` when it finishes a reply or is an error to report.
    fn on_line(&mut self, line: Line) -> Option<Result<Reply, DecodeError>> {
        let Some(mut cur) = self.current.take() else {
            let Line::Complete(line) = line else {
                return Some(Err(DecodeError::TooLong));
            };
            return match code_of(&line) {
                Some((code, None)) => Some(Ok(Reply {
                    code,
                    lines: vec![String::new()],
                })),
                Some((code, Some(b' '))) => Some(Ok(Reply {
                    code,
                    lines: vec![lossy(&line[4..])],
                })),
                Some((code, Some(b'-'))) => {
                    self.current = Some(InProgress {
                        code,
                        lines: vec![lossy(&line[4..])],
                        failed: false,
                    });
                    None
                }
                _ => Some(Err(DecodeError::Malformed(lossy(&line)))),
            };
        };

        let Line::Complete(line) = line else {
            let first_error = !cur.failed;
            cur.failed = true;
            cur.lines = Vec::new();
            self.current = Some(cur);
            return first_error.then_some(Err(DecodeError::TooLong));
        };

        let (text, is_end) = match code_of(&line) {
            Some((code, None)) if code == cur.code => (String::new(), true),
            Some((code, Some(b' '))) if code == cur.code => (lossy(&line[4..]), true),
            // Some servers prefix every line with `code-`: keep only the text.
            Some((code, Some(b'-'))) if code == cur.code => (lossy(&line[4..]), false),
            _ => (lossy(&line), false),
        };

        if cur.failed {
            if !is_end {
                self.current = Some(cur);
            }
            return None;
        }
        if cur.lines.len() >= self.max_lines {
            cur.lines = Vec::new();
            if !is_end {
                cur.failed = true;
                self.current = Some(cur);
            }
            return Some(Err(DecodeError::TooLong));
        }
        cur.lines.push(text);
        if is_end {
            Some(Ok(Reply {
                code: cur.code,
                lines: cur.lines,
            }))
        } else {
            self.current = Some(cur);
            None
        }
    }
}

impl Default for ReplyDecoder {
    fn default() -> Self {
        Self::new(64 * 1024, 100_000)
    }
}

/// The path in a `257 "path" ...` reply (`""` inside stands for `"`).
pub fn parse_257(text: &str) -> Option<String> {
    let start = text.find('"')? + 1;
    let mut out = String::new();
    let mut chars = text[start..].chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                chars.next();
                out.push('"');
            } else {
                return Some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(bytes: &[u8]) -> Vec<Result<Reply, DecodeError>> {
        let mut d = ReplyDecoder::new(1024, 100);
        d.extend(bytes);
        let mut out = Vec::new();
        loop {
            match d.next_reply() {
                Ok(Some(r)) => out.push(Ok(r)),
                Ok(None) => break,
                Err(e) => out.push(Err(e)),
            }
        }
        out
    }

    fn r(code: u16, lines: &[&str]) -> Reply {
        Reply {
            code,
            lines: lines.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn single_line_encoding() {
        assert_eq!(Reply::new(200, "OK").to_bytes(), b"200 OK\r\n");
        assert_eq!(Reply::new(200, "a\r\nb").to_bytes(), b"200 a  b\r\n");
        assert_eq!(Reply::new(200, "a\r\nb").lines, vec!["a  b"]);
        assert_eq!(Reply::new(220, "").to_bytes(), b"220 \r\n");
    }

    #[test]
    fn multi_line_encoding() {
        let rep = Reply::multi(
            211,
            vec![
                "Features:".into(),
                " MDTM".into(),
                "227 trap".into(),
                "End".into(),
            ],
        );
        assert_eq!(rep.lines[2], " 227 trap");
        assert_eq!(
            rep.to_bytes(),
            b"211-Features:\r\n MDTM\r\n 227 trap\r\n211 End\r\n"
        );
        assert_eq!(Reply::multi(200, vec!["x".into()]).to_bytes(), b"200 x\r\n");
        assert_eq!(Reply::multi(200, vec![]).to_bytes(), b"200 \r\n");
        assert_eq!(Reply::multi(200, vec![]).lines, vec![String::new()]);
        // First and last lines keep leading digits: they carry the code prefix anyway.
        assert_eq!(
            Reply::multi(200, vec!["1".into(), "2".into()]).to_bytes(),
            b"200-1\r\n200 2\r\n"
        );
    }

    #[test]
    fn encode_defends_public_fields() {
        let rep = Reply {
            code: 7,
            lines: vec!["a\nb".into(), "200 x".into(), "c".into()],
        };
        assert_eq!(rep.to_bytes(), b"500-a b\r\n 200 x\r\n500 c\r\n");
        assert_eq!(
            Reply {
                code: 200,
                lines: vec![]
            }
            .to_bytes(),
            b"200 \r\n"
        );
    }

    #[test]
    fn predicates() {
        assert!(Reply::new(150, "").is_preliminary());
        assert!(Reply::new(226, "").is_success());
        assert!(Reply::new(331, "").is_intermediate());
        assert!(Reply::new(421, "").is_error());
        assert!(Reply::new(550, "").is_error());
        assert_eq!(
            Reply::multi(211, vec!["a".into(), "b".into()]).text(),
            "a\nb"
        );
    }

    #[test]
    fn decodes_single_and_multi() {
        let got = decode_all(b"220 hi\r\n211-Features:\r\n MDTM\r\n211-SIZE\r\n211 End\r\n200\r\n");
        assert_eq!(
            got,
            vec![
                Ok(r(220, &["hi"])),
                Ok(r(211, &["Features:", " MDTM", "SIZE", "End"])),
                Ok(r(200, &[""]))
            ]
        );
    }

    #[test]
    fn multi_line_other_codes_inside_do_not_end() {
        let got = decode_all(b"230-Welcome\n220 not the end\n230\n");
        assert_eq!(got, vec![Ok(r(230, &["Welcome", "220 not the end", ""]))]);
    }

    #[test]
    fn streaming_byte_by_byte() {
        let wire = b"150-a\r\n b\r\n150 c\r\n226 done\r\n";
        let mut d = ReplyDecoder::default();
        let mut got = Vec::new();
        for &b in wire.iter() {
            d.extend(&[b]);
            while let Some(rep) = d.next_reply().unwrap() {
                got.push(rep);
            }
        }
        assert_eq!(got, vec![r(150, &["a", " b", "c"]), r(226, &["done"])]);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn lossy_utf8() {
        let got = decode_all(b"200 caf\xe9\r\n");
        assert_eq!(got, vec![Ok(r(200, &["caf\u{fffd}"]))]);
    }

    #[test]
    fn malformed_lines() {
        assert!(matches!(
            decode_all(b"hello\r\n")[0],
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_all(b"20 x\r\n")[0],
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_all(b"200x\r\n")[0],
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_all(b"\r\n")[0],
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_all(b"600 x\r\n")[0],
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_all(b"099 x\r\n")[0],
            Err(DecodeError::Malformed(_))
        ));
        // Recovers afterwards.
        assert_eq!(decode_all(b"junk\r\n200 ok\r\n")[1], Ok(r(200, &["ok"])));
    }

    #[test]
    fn too_long_line() {
        let mut d = ReplyDecoder::new(8, 10);
        d.extend(b"200 123456789\r\n200 ok\r\n");
        assert_eq!(d.next_reply(), Err(DecodeError::TooLong));
        assert_eq!(d.next_reply(), Ok(Some(r(200, &["ok"]))));
    }

    #[test]
    fn too_long_line_inside_multi_skips_reply() {
        let mut d = ReplyDecoder::new(8, 10);
        d.extend(b"211-a\r\n 123456789\r\n b\r\n211 end\r\n200 ok\r\n");
        assert_eq!(d.next_reply(), Err(DecodeError::TooLong));
        assert_eq!(d.next_reply(), Ok(Some(r(200, &["ok"]))));
        assert_eq!(d.next_reply(), Ok(None));
    }

    #[test]
    fn too_many_lines() {
        let mut d = ReplyDecoder::new(100, 3);
        d.extend(b"211-a\r\nb\r\n211 c\r\n");
        assert_eq!(d.next_reply(), Ok(Some(r(211, &["a", "b", "c"]))));
        d.extend(b"211-a\r\nb\r\nc\r\nd\r\ne\r\n211 f\r\n200 ok\r\n");
        assert_eq!(d.next_reply(), Err(DecodeError::TooLong));
        assert_eq!(d.next_reply(), Ok(Some(r(200, &["ok"]))));
        d.extend(b"211-a\r\nb\r\nc\r\n211 d\r\n");
        assert_eq!(d.next_reply(), Err(DecodeError::TooLong));
        assert_eq!(d.next_reply(), Ok(None));
        d.extend(b"200 x\r\n");
        assert_eq!(d.next_reply(), Ok(Some(r(200, &["x"]))));
    }

    #[test]
    fn hostile_stream_bounded() {
        let mut d = ReplyDecoder::new(64, 10);
        d.extend(b"211-start\r\n");
        for _ in 0..10_000 {
            d.extend(b"line line line\r\n");
            let _ = d.next_reply();
        }
        assert!(d.current.as_ref().is_some_and(|c| c.lines.len() <= 10));
    }

    fn text_line() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('1'),
                Just('2'),
                Just(' '),
                Just('-'),
                Just('\r'),
                Just('\n'),
                Just('é'),
                any::<char>()
            ],
            0..20,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            code in 100u16..600,
            lines in proptest::collection::vec(text_line(), 0..8),
            split in 0usize..400,
        ) {
            let rep = Reply::multi(code, lines);
            let wire = rep.to_bytes();
            let mut d = ReplyDecoder::new(1024, 100);
            let split = split.min(wire.len());
            d.extend(&wire[..split]);
            let mut got = Vec::new();
            while let Some(x) = d.next_reply().unwrap() { got.push(x); }
            d.extend(&wire[split..]);
            while let Some(x) = d.next_reply().unwrap() { got.push(x); }
            prop_assert_eq!(got, vec![rep]);
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut d = ReplyDecoder::new(32, 4);
            d.extend(&bytes);
            for _ in 0..1000 {
                if let Ok(None) = d.next_reply() { break; }
            }
        }
    }

    #[test]
    fn quoted_257() {
        assert_eq!(parse_257(r#""/" is current"#), Some("/".into()));
        assert_eq!(parse_257(r#""/a ""b""" created"#), Some(r#"/a "b""#.into()));
        assert_eq!(parse_257("no quotes"), None);
        assert_eq!(parse_257(r#""unterminated"#), None);
    }
}
