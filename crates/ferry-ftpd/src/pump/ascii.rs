//! `TYPE A`: text crosses the network with CRLF line ends, and is stored with LF.

/// Converts bare LF to CRLF (server → client in `TYPE A`).
#[derive(Debug, Default)]
pub(crate) struct ToNetworkAscii {
    prev_cr: bool,
}

impl ToNetworkAscii {
    pub(crate) fn convert(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(input.len() + input.len() / 8);
        for &b in input {
            if b == b'\n' && !self.prev_cr {
                out.push(b'\r');
            }
            out.push(b);
            self.prev_cr = b == b'\r';
        }
    }
}

/// Converts CRLF to LF (client → server in `TYPE A`); a CR not followed by LF is kept.
#[derive(Debug, Default)]
pub(crate) struct FromNetworkAscii {
    pending_cr: bool,
}

impl FromNetworkAscii {
    pub(crate) fn convert(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(input.len() + 1);
        for &b in input {
            if self.pending_cr {
                self.pending_cr = false;
                if b != b'\n' {
                    out.push(b'\r');
                }
            }
            if b == b'\r' {
                self.pending_cr = true;
            } else {
                out.push(b);
            }
        }
    }

    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        out.clear();
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_net(chunks: &[&[u8]]) -> Vec<u8> {
        let mut c = ToNetworkAscii::default();
        let mut all = Vec::new();
        let mut out = Vec::new();
        for ch in chunks {
            c.convert(ch, &mut out);
            all.extend_from_slice(&out);
        }
        all
    }

    fn from_net(chunks: &[&[u8]]) -> Vec<u8> {
        let mut c = FromNetworkAscii::default();
        let mut all = Vec::new();
        let mut out = Vec::new();
        for ch in chunks {
            c.convert(ch, &mut out);
            all.extend_from_slice(&out);
        }
        c.finish(&mut out);
        all.extend_from_slice(&out);
        all
    }

    #[test]
    fn lf_becomes_crlf_once() {
        assert_eq!(to_net(&[b"a\nb\r\nc\n"]), b"a\r\nb\r\nc\r\n");
        assert_eq!(to_net(&[b"a\r", b"\nb\n"]), b"a\r\nb\r\n");
    }

    #[test]
    fn crlf_becomes_lf_across_chunks() {
        assert_eq!(from_net(&[b"a\r\nb\r", b"\nc\rd\r"]), b"a\nb\nc\rd\r");
        assert_eq!(from_net(&[b"\r", b"\r", b"\n"]), b"\r\n");
    }

    #[test]
    fn round_trip_of_unix_text() {
        let text = b"line one\nline two\n\nend";
        assert_eq!(from_net(&[&to_net(&[text])]), text);
    }
}
