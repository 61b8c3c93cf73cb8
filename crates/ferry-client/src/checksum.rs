//! Server-side checksums (`HASH`, `XSHA256`, `XSHA512`, `XMD5`) and the matching local hashers.

use sha2::Digest;

use crate::{Client, Error, Result};

/// A checksum algorithm both the client and some servers know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha512,
    Md5,
}

impl Algorithm {
    /// The `HASH` name (draft-bryan-ftpext-hash).
    pub fn hash_name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha512 => "SHA-512",
            Algorithm::Md5 => "MD5",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
            Algorithm::Md5 => 32,
        }
    }

    /// A fresh local hasher.
    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
            Algorithm::Md5 => Hasher::Md5(Md5::new()),
        }
    }
}

/// A running local checksum.
#[derive(Debug, Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
    Md5(Md5),
}

impl Hasher {
    /// Feed bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
            Hasher::Md5(h) => h.update(bytes),
        }
    }

    /// Lower-case hex digest.
    pub fn hex(self) -> String {
        match self {
            Hasher::Sha256(h) => to_hex(&h.finalize()),
            Hasher::Sha512(h) => to_hex(&h.finalize()),
            Hasher::Md5(h) => to_hex(&h.finalize()),
        }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The algorithm the server can compute for us, best first: `HASH` with SHA-256, SHA-512 or
/// MD5, else `XSHA256`, `XSHA512`, `XMD5` (as announced in `FEAT`).
pub fn offered(features: &crate::Features) -> Option<(Algorithm, bool)> {
    if let Some(params) = features.params("HASH") {
        let names: Vec<String> = params
            .split(';')
            .map(|n| n.trim().trim_end_matches('*').to_ascii_uppercase())
            .collect();
        for algo in [Algorithm::Sha256, Algorithm::Sha512, Algorithm::Md5] {
            if names.iter().any(|n| n == algo.hash_name()) {
                return Some((algo, true));
            }
        }
    }
    for (feat, algo) in [
        ("XSHA256", Algorithm::Sha256),
        ("XSHA512", Algorithm::Sha512),
        ("XMD5", Algorithm::Md5),
    ] {
        if features.has(feat) {
            return Some((algo, false));
        }
    }
    None
}

/// The first run of hex digits of the algorithm's length in a reply text.
fn find_hex(text: &str, len: usize) -> Option<String> {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .find(|t| t.len() == len)
        .map(str::to_ascii_lowercase)
}

impl Client {
    /// The server's checksum of a whole file, or `None` when it offers no algorithm we know.
    pub async fn remote_checksum(&mut self, path: &str) -> Result<Option<(Algorithm, String)>> {
        let Some((algo, via_hash)) = offered(self.features()) else {
            return Ok(None);
        };
        let line = if via_hash {
            let selected = self
                .features()
                .params("HASH")
                .and_then(|p| p.split(';').find(|n| n.trim().ends_with('*')))
                .map(|n| n.trim().trim_end_matches('*').to_ascii_uppercase());
            if selected.as_deref() != Some(algo.hash_name()) {
                let r = self
                    .command(&format!("OPTS HASH {}", algo.hash_name()))
                    .await?;
                if !r.is_success() {
                    return Err(Error::Refused {
                        command: format!("OPTS HASH {}", algo.hash_name()),
                        reply: r,
                    });
                }
            }
            format!("HASH {path}")
        } else {
            let verb = match algo {
                Algorithm::Sha256 => "XSHA256",
                Algorithm::Sha512 => "XSHA512",
                Algorithm::Md5 => "XMD5",
            };
            format!("{verb} {path}")
        };
        let reply = self.quote(&line).await?;
        if !reply.is_success() {
            return Err(Error::Refused {
                command: line,
                reply,
            });
        }
        let text = reply.text();
        // HASH: "SHA-256 0-49 <hex> name"; X*: "<hex>" possibly with the name.
        let hex = find_hex(&text, algo.hex_len())
            .ok_or_else(|| Error::Protocol(format!("no {} digest in: {text}", algo.hash_name())))?;
        Ok(Some((algo, hex)))
    }
}

/// MD5 (RFC 1321), for servers that offer nothing better. Not for security.
#[derive(Debug, Clone)]
pub struct Md5 {
    state: [u32; 4],
    buffer: Vec<u8>,
    length: u64,
}

const MD5_S: [u32; 16] = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];

impl Md5 {
    /// A fresh MD5 state.
    pub fn new() -> Md5 {
        Md5 {
            state: [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476],
            buffer: Vec::with_capacity(64),
            length: 0,
        }
    }

    /// Feed bytes.
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.length = self.length.wrapping_add(bytes.len() as u64);
        if !self.buffer.is_empty() {
            let take = (64 - self.buffer.len()).min(bytes.len());
            self.buffer.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buffer.len() == 64 {
                let block = std::mem::take(&mut self.buffer);
                self.block(&block);
            }
        }
        let mut chunks = bytes.chunks_exact(64);
        for block in &mut chunks {
            self.block(block);
        }
        self.buffer.extend_from_slice(chunks.remainder());
    }

    /// The 16-byte digest.
    pub fn finalize(mut self) -> [u8; 16] {
        let bits = self.length.wrapping_mul(8);
        let mut pad = vec![0x80u8];
        let used = (self.length % 64) as usize;
        let zeros = if used < 56 { 55 - used } else { 119 - used };
        pad.extend(std::iter::repeat_n(0u8, zeros));
        pad.extend_from_slice(&bits.to_le_bytes());
        let length = self.length;
        self.update(&pad);
        self.length = length;
        let mut out = [0u8; 16];
        for (i, word) in self.state.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
        }
        out
    }

    fn block(&mut self, block: &[u8]) {
        let mut m = [0u32; 16];
        for (i, word) in m.iter_mut().enumerate() {
            *word = u32::from_le_bytes([
                block[i * 4],
                block[i * 4 + 1],
                block[i * 4 + 2],
                block[i * 4 + 3],
            ]);
        }
        let [mut a, mut b, mut c, mut d] = self.state;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let k = ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32;
            let s = MD5_S[(i / 16) * 4 + i % 4];
            let rotated = a
                .wrapping_add(f)
                .wrapping_add(k)
                .wrapping_add(m[g])
                .rotate_left(s);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(rotated);
        }
        self.state[0] = self.state[0].wrapping_add(a);
        self.state[1] = self.state[1].wrapping_add(b);
        self.state[2] = self.state[2].wrapping_add(c);
        self.state[3] = self.state[3].wrapping_add(d);
    }
}

impl Default for Md5 {
    fn default() -> Self {
        Md5::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md5(bytes: &[u8]) -> String {
        let mut h = Algorithm::Md5.hasher();
        h.update(bytes);
        h.hex()
    }

    #[test]
    fn md5_vectors() {
        assert_eq!(md5(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            md5(b"The quick brown fox jumps over the lazy dog"),
            "9e107d9d372bb6826bd81d3542a419d6"
        );
        let long: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        // Split feeding gives the same digest.
        let mut h = Algorithm::Md5.hasher();
        for chunk in long.chunks(7) {
            h.update(chunk);
        }
        assert_eq!(h.hex(), md5(&long));
        assert_eq!(
            md5(
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            ),
            "57edf4a22be3c955ac49da2e2107b67a"
        );
    }

    #[test]
    fn picks_best_offer() {
        use ferry_proto::Reply;
        let feat = |lines: &[&str]| {
            let mut l = vec!["Features:".to_string()];
            l.extend(lines.iter().map(|s| format!(" {s}")));
            l.push("End".into());
            crate::Features::parse(&Reply {
                code: 211,
                lines: l,
            })
        };
        assert_eq!(
            offered(&feat(&["HASH SHA-1*;SHA-256;MD5"])),
            Some((Algorithm::Sha256, true))
        );
        assert_eq!(
            offered(&feat(&["XMD5", "XSHA256"])),
            Some((Algorithm::Sha256, false))
        );
        assert_eq!(offered(&feat(&["XMD5"])), Some((Algorithm::Md5, false)));
        assert_eq!(offered(&feat(&["HASH CRC32"])), None);
        assert_eq!(
            find_hex(
                "SHA-256 0-3 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad abc",
                64
            )
            .as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }
}
