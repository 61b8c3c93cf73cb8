//! Bounded line splitting for the control connection.
//!
//! A hostile peer may send a line that never ends. [`LineBuffer`] keeps at most `max_line`
//! bytes; past that it reports [`Line::TooLong`] once and discards bytes until the next LF,
//! so memory stays bounded whatever the peer sends.

use std::collections::VecDeque;

/// One item taken out of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A complete line, CRLF (or bare LF) stripped.
    Complete(Vec<u8>),
    /// A line exceeded the limit; its bytes were dropped (reported once per long line).
    TooLong,
}

/// Accumulates control-stream bytes and yields lines.
///
/// Guarantees against a hostile peer: the unfinished line never holds more than `max_line`
/// bytes (a CR that would be the `max_line + 1`-th byte is remembered as a flag, not stored);
/// every input byte is examined once, so feeding `n` bytes costs `O(n)` whatever their split.
/// Complete lines wait in a queue until taken; callers drain it with [`LineBuffer::next_line`]
/// after each [`LineBuffer::extend`], so the queue is bounded by one read's worth of bytes.
#[derive(Debug)]
pub struct LineBuffer {
    max_line: usize,
    /// Bytes of the unfinished line (at most `max_line`).
    partial: Vec<u8>,
    /// A CR arrived when `partial` was already full: fine if LF follows, too long otherwise.
    cr_pending: bool,
    /// Inside an over-long line: drop bytes until the next LF.
    discarding: bool,
    /// Items ready for `next_line`, each with the raw bytes it consumed (for `pending`).
    ready: VecDeque<(Line, usize)>,
    /// Sum of the raw sizes in `ready`.
    ready_bytes: usize,
}

impl LineBuffer {
    /// A buffer that refuses lines longer than `max_line` bytes (CRLF excluded).
    pub fn new(max_line: usize) -> Self {
        LineBuffer {
            max_line,
            partial: Vec::new(),
            cr_pending: false,
            discarding: false,
            ready: VecDeque::new(),
            ready_bytes: 0,
        }
    }

    /// Feed bytes read from the peer. Call [`LineBuffer::next_line`] until it returns `None`.
    pub fn extend(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let lf = bytes.iter().position(|&b| b == b'\n');
            let (segment, rest, complete) = match lf {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            bytes = rest;

            if self.discarding {
                if complete {
                    self.discarding = false;
                }
                continue;
            }

            if complete {
                self.finish_line(segment);
            } else {
                self.append_partial(segment);
            }
        }
    }

    /// Take the next complete line (or a `TooLong` marker) if one is ready.
    pub fn next_line(&mut self) -> Option<Line> {
        let (line, raw) = self.ready.pop_front()?;
        self.ready_bytes -= raw;
        Some(line)
    }

    /// Bytes received and not yet returned: queued complete lines (with their terminators)
    /// plus the unfinished line. Bytes discarded from an over-long line are not counted.
    pub fn pending(&self) -> usize {
        self.ready_bytes + self.partial.len() + usize::from(self.cr_pending)
    }

    /// Release the buffer's capacity (idle sessions keep no memory).
    pub fn shrink(&mut self) {
        if self.partial.is_empty() {
            self.partial = Vec::new();
        } else {
            self.partial.shrink_to_fit();
        }
        if self.ready.is_empty() {
            self.ready = VecDeque::new();
        } else {
            self.ready.shrink_to_fit();
        }
    }

    /// The limit given to [`LineBuffer::new`].
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// `segment` ends with the LF that completes the current line (LF itself excluded).
    fn finish_line(&mut self, segment: &[u8]) {
        let raw = self.partial.len() + usize::from(self.cr_pending) + segment.len() + 1;
        let too_long = if self.cr_pending {
            // The pending CR is only a terminator if the LF follows it immediately.
            !segment.is_empty()
        } else {
            let content = self.partial.len() + segment.len();
            let content = if segment.last() == Some(&b'\r')
                || (segment.is_empty() && self.partial.last() == Some(&b'\r'))
            {
                content - 1
            } else {
                content
            };
            content > self.max_line
        };
        if too_long {
            self.push(Line::TooLong, 0);
            self.partial.clear();
            self.cr_pending = false;
            return;
        }
        let mut line = std::mem::take(&mut self.partial);
        if line.is_empty() {
            line = segment.to_vec();
        } else {
            line.extend_from_slice(segment);
        }
        if !self.cr_pending && line.last() == Some(&b'\r') {
            line.pop();
        }
        self.cr_pending = false;
        self.push(Line::Complete(line), raw);
    }

    /// `segment` continues the current line and no LF follows it yet.
    fn append_partial(&mut self, segment: &[u8]) {
        if self.cr_pending {
            // Something other than LF followed the CR: the line has more than `max_line` bytes.
            self.overflow();
            return;
        }
        let room = self.max_line - self.partial.len();
        if segment.len() <= room {
            self.partial.extend_from_slice(segment);
        } else if segment.len() == room + 1 && segment.last() == Some(&b'\r') {
            self.partial.extend_from_slice(&segment[..room]);
            self.cr_pending = true;
        } else {
            self.overflow();
        }
    }

    fn overflow(&mut self) {
        self.partial.clear();
        self.cr_pending = false;
        self.discarding = true;
        self.push(Line::TooLong, 0);
    }

    fn push(&mut self, line: Line, raw: usize) {
        self.ready_bytes += raw;
        self.ready.push_back((line, raw));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(b: &mut LineBuffer) -> Vec<Line> {
        std::iter::from_fn(|| b.next_line()).collect()
    }

    fn c(s: &[u8]) -> Line {
        Line::Complete(s.to_vec())
    }

    #[test]
    fn splits_crlf_and_bare_lf() {
        let mut b = LineBuffer::new(100);
        b.extend(b"USER a\r\nPASS b\nNOOP");
        assert_eq!(drain(&mut b), vec![c(b"USER a"), c(b"PASS b")]);
        assert_eq!(b.pending(), 4);
        b.extend(b"\r");
        assert_eq!(drain(&mut b), vec![]);
        b.extend(b"\n");
        assert_eq!(drain(&mut b), vec![c(b"NOOP")]);
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn only_one_trailing_cr_is_stripped() {
        let mut b = LineBuffer::new(100);
        b.extend(b"a\r\r\n\r\n\n");
        assert_eq!(drain(&mut b), vec![c(b"a\r"), c(b""), c(b"")]);
    }

    #[test]
    fn embedded_cr_is_content() {
        let mut b = LineBuffer::new(100);
        b.extend(b"a\rb\r\n");
        assert_eq!(drain(&mut b), vec![c(b"a\rb")]);
    }

    #[test]
    fn byte_by_byte() {
        let mut b = LineBuffer::new(10);
        for &x in b"RETR x\r\nNOOP\r\n".iter() {
            b.extend(&[x]);
        }
        assert_eq!(drain(&mut b), vec![c(b"RETR x"), c(b"NOOP")]);
    }

    #[test]
    fn too_long_is_reported_once_and_discarded() {
        let mut b = LineBuffer::new(4);
        b.extend(b"abcde");
        assert_eq!(drain(&mut b), vec![Line::TooLong]);
        assert_eq!(b.pending(), 0);
        b.extend(&[b'x'; 10_000]);
        assert_eq!(drain(&mut b), vec![]);
        assert_eq!(b.pending(), 0);
        b.extend(b"yyy\r\nok\r\n");
        assert_eq!(drain(&mut b), vec![c(b"ok")]);
    }

    #[test]
    fn exactly_max_line_is_fine_with_or_without_cr() {
        let mut b = LineBuffer::new(4);
        b.extend(b"abcd\r\nabcd\nabcd");
        assert_eq!(b.pending(), 15);
        assert_eq!(drain(&mut b), vec![c(b"abcd"), c(b"abcd")]);
        b.extend(b"\r");
        assert_eq!(b.pending(), 5);
        assert_eq!(b.partial.len(), 4);
        b.extend(b"\n");
        assert_eq!(drain(&mut b), vec![c(b"abcd")]);
    }

    #[test]
    fn cr_at_limit_then_other_byte_is_too_long() {
        let mut b = LineBuffer::new(4);
        b.extend(b"abcd\r");
        assert_eq!(drain(&mut b), vec![]);
        b.extend(b"x\r\nok\n");
        assert_eq!(drain(&mut b), vec![Line::TooLong, c(b"ok")]);
    }

    #[test]
    fn complete_long_line_in_one_chunk() {
        let mut b = LineBuffer::new(3);
        b.extend(b"abcdef\r\nabc\r\n");
        assert_eq!(drain(&mut b), vec![Line::TooLong, c(b"abc")]);
    }

    #[test]
    fn zero_limit_accepts_only_empty_lines() {
        let mut b = LineBuffer::new(0);
        b.extend(b"\r\n\na\n");
        assert_eq!(drain(&mut b), vec![c(b""), c(b""), Line::TooLong]);
    }

    #[test]
    fn pending_counts_queued_lines() {
        let mut b = LineBuffer::new(100);
        b.extend(b"\r\nAB");
        assert_eq!(b.pending(), 4);
        assert_eq!(b.next_line(), Some(c(b"")));
        assert_eq!(b.pending(), 2);
    }

    #[test]
    fn shrink_releases_capacity() {
        let mut b = LineBuffer::new(1 << 20);
        b.extend(&vec![b'a'; 100_000]);
        b.extend(b"\n");
        assert!(matches!(b.next_line(), Some(Line::Complete(v)) if v.len() == 100_000));
        b.shrink();
        assert_eq!(b.partial.capacity(), 0);
        assert_eq!(b.ready.capacity(), 0);
        b.extend(b"ab");
        b.shrink();
        assert_eq!(b.pending(), 2);
        b.extend(b"\n");
        assert_eq!(drain(&mut b), vec![c(b"ab")]);
    }

    /// The obvious whole-stream implementation the buffer must agree with.
    fn reference(input: &[u8], max_line: usize) -> (Vec<Line>, bool) {
        let mut out = Vec::new();
        let mut parts: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
        let tail = parts.pop().unwrap_or(&[]);
        for p in parts {
            let p = p.strip_suffix(b"\r").unwrap_or(p);
            if p.len() > max_line {
                out.push(Line::TooLong);
            } else {
                out.push(Line::Complete(p.to_vec()));
            }
        }
        let tail_known_long =
            tail.len() > max_line && !(tail.len() == max_line + 1 && tail.last() == Some(&b'\r'));
        if tail_known_long {
            out.push(Line::TooLong);
        }
        (out, tail_known_long)
    }

    proptest! {
        #[test]
        fn agrees_with_reference(
            input in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), any::<u8>()], 0..400),
            cuts in proptest::collection::vec(0usize..400, 0..20),
            max_line in 0usize..40,
        ) {
            let mut b = LineBuffer::new(max_line);
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= input.len()).collect();
            cuts.push(0);
            cuts.push(input.len());
            cuts.sort_unstable();
            let mut got = Vec::new();
            for w in cuts.windows(2) {
                b.extend(&input[w[0]..w[1]]);
                prop_assert!(b.partial.len() <= max_line);
                got.extend(drain(&mut b));
            }
            let (want, tail_long) = reference(&input, max_line);
            prop_assert_eq!(got, want);
            if !tail_long {
                let tail_len = input.len() - input.iter().rposition(|&x| x == b'\n').map_or(0, |i| i + 1);
                prop_assert_eq!(b.pending(), tail_len);
            }
        }
    }
}
