//! The SFTP (SSH) checks: the server's identification string and the algorithms its first
//! `SSH_MSG_KEXINIT` offers, read from the clear-text start of the connection. No key
//! exchange is made and no login attempted.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::report::{Report, Verdict};

/// Lines a server may send before its identification (RFC 4253 §4.2), and their length.
const MAX_PRE_LINES: usize = 32;
const MAX_LINE: usize = 255;
/// The largest first packet accepted (RFC 4253 §6.1 asks implementations to take 35000).
const MAX_PACKET: usize = 35_000;
const SSH_MSG_KEXINIT: u8 = 20;

/// The name-lists of a KEXINIT, server to client and client to server merged.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct KexInit {
    pub(crate) kex: Vec<String>,
    pub(crate) host_key: Vec<String>,
    pub(crate) ciphers: Vec<String>,
    pub(crate) macs: Vec<String>,
}

fn merge(a: &str, b: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in a.split(',').chain(b.split(',')).filter(|n| !n.is_empty()) {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    out
}

/// Parse the payload of a KEXINIT (message number first).
pub(crate) fn parse_kexinit(payload: &[u8]) -> Result<KexInit> {
    let (&kind, rest) = payload
        .split_first()
        .ok_or_else(|| anyhow!("empty packet"))?;
    if kind != SSH_MSG_KEXINIT {
        bail!("the first packet is message {kind}, not KEXINIT");
    }
    let mut rest = rest.get(16..).ok_or_else(|| anyhow!("KEXINIT too short"))?;
    let mut lists = Vec::new();
    for _ in 0..8 {
        let len = rest
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| anyhow!("KEXINIT truncated"))?;
        let bytes = rest
            .get(4..4 + len)
            .ok_or_else(|| anyhow!("KEXINIT name-list truncated"))?;
        lists.push(String::from_utf8_lossy(bytes).into_owned());
        rest = &rest[4 + len..];
    }
    Ok(KexInit {
        kex: merge(&lists[0], ""),
        host_key: merge(&lists[1], ""),
        ciphers: merge(&lists[2], &lists[3]),
        macs: merge(&lists[4], &lists[5]),
    })
}

/// Read the server's identification line and first packet from `stream`.
async fn exchange(stream: &mut TcpStream) -> Result<(String, Vec<u8>)> {
    stream
        .write_all(b"SSH-2.0-ferry_probe\r\n")
        .await
        .context("sending the identification")?;
    let mut ident = None;
    let mut line = Vec::new();
    for _ in 0..MAX_PRE_LINES {
        line.clear();
        loop {
            let b = stream
                .read_u8()
                .await
                .context("reading the identification")?;
            if b == b'\n' {
                break;
            }
            if line.len() >= MAX_LINE {
                bail!("identification line longer than {MAX_LINE} bytes");
            }
            line.push(b);
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches('\r')
            .to_string();
        if text.starts_with("SSH-") {
            ident = Some(text);
            break;
        }
    }
    let ident = ident.ok_or_else(|| anyhow!("no SSH identification line (not an SSH server?)"))?;
    let len = stream
        .read_u32()
        .await
        .context("reading the first packet")? as usize;
    if !(5..=MAX_PACKET).contains(&len) {
        bail!("first packet of {len} bytes");
    }
    let mut packet = vec![0u8; len];
    stream
        .read_exact(&mut packet)
        .await
        .context("reading the first packet")?;
    let padding = usize::from(packet[0]);
    let payload = packet
        .get(1..len.saturating_sub(padding))
        .ok_or_else(|| anyhow!("bad padding length"))?
        .to_vec();
    Ok((ident, payload))
}

/// Names in `offered` that match one of `patterns` (`*` at either end is a wildcard).
fn matching(offered: &[String], patterns: &[&str]) -> Vec<String> {
    offered
        .iter()
        .filter(|name| {
            patterns
                .iter()
                .any(|p| match (p.strip_prefix('*'), p.strip_suffix('*')) {
                    (Some(suffix), _) => name.ends_with(suffix),
                    (_, Some(prefix)) => name.starts_with(prefix),
                    _ => name.as_str() == *p,
                })
        })
        .cloned()
        .collect()
}

/// One finding for a list of algorithms: risky names first, then weak ones.
fn judge_list(
    report: &mut Report,
    id: &'static str,
    check: &'static str,
    offered: &[String],
    risky: &[&str],
    weak: &[&str],
) {
    let bad = matching(offered, risky);
    let poor = matching(offered, weak);
    let all = offered.join(",");
    if !bad.is_empty() {
        report.add(
            id,
            check,
            Verdict::Risk,
            format!("offers broken {} (all: {all})", bad.join(",")),
        );
    } else if !poor.is_empty() {
        report.add(
            id,
            check,
            Verdict::Warning,
            format!("offers weak {} (all: {all})", poor.join(",")),
        );
    } else {
        report.add(id, check, Verdict::Ok, all);
    }
}

/// Judge what the server offers.
pub(crate) fn judge(ident: &str, kex: &KexInit, report: &mut Report) {
    report.add(
        "ssh.banner",
        "SSH identification",
        Verdict::Ok,
        ident.to_string(),
    );
    let real_kex: Vec<String> = kex
        .kex
        .iter()
        .filter(|k| !k.starts_with("ext-info-") && !k.starts_with("kex-strict-"))
        .cloned()
        .collect();
    judge_list(
        report,
        "ssh.kex",
        "SSH key exchange",
        &real_kex,
        &["diffie-hellman-group1-sha1", "gss-group1-sha1-*"],
        &[
            "diffie-hellman-group14-sha1",
            "diffie-hellman-group-exchange-sha1",
            "gss-*-sha1-*",
            "*-sha1",
        ],
    );
    judge_list(
        report,
        "ssh.host_key",
        "SSH host key types",
        &kex.host_key,
        &["ssh-dss", "ssh-dss-*"],
        &["ssh-rsa", "ssh-rsa-cert-v01@openssh.com"],
    );
    judge_list(
        report,
        "ssh.ciphers",
        "SSH ciphers",
        &kex.ciphers,
        &[
            "none",
            "arcfour*",
            "3des-cbc",
            "des-cbc*",
            "blowfish-cbc",
            "cast128-cbc",
            "rijndael-cbc*",
        ],
        &["*-cbc"],
    );
    judge_list(
        report,
        "ssh.macs",
        "SSH MACs",
        &kex.macs,
        &["none", "hmac-md5*"],
        &["hmac-sha1*", "*-96*", "umac-64*", "hmac-ripemd160*"],
    );
    // Terrapin (CVE-2023-48795) needs ChaCha20-Poly1305 or an EtM MAC with CBC, and a server
    // without strict key exchange.
    let strict = kex.kex.iter().any(|k| k.starts_with("kex-strict-s-"));
    let chacha = kex
        .ciphers
        .iter()
        .any(|c| c.starts_with("chacha20-poly1305"));
    let cbc_etm = !matching(&kex.ciphers, &["*-cbc"]).is_empty()
        && kex.macs.iter().any(|m| m.contains("-etm@"));
    if strict {
        report.add(
            "ssh.strict_kex",
            "SSH strict key exchange",
            Verdict::Ok,
            "offered (Terrapin mitigated)",
        );
    } else if chacha || cbc_etm {
        report.add(
            "ssh.strict_kex",
            "SSH strict key exchange",
            Verdict::Warning,
            "not offered while ChaCha20-Poly1305 or CBC with EtM is: open to Terrapin (CVE-2023-48795)",
        );
    } else {
        report.add(
            "ssh.strict_kex",
            "SSH strict key exchange",
            Verdict::Ok,
            "not offered, not needed by the ciphers offered",
        );
    }
}

/// Probe the SSH server at `addr`.
pub(crate) async fn probe(addr: SocketAddr, timeout: Duration, report: &mut Report) -> Result<()> {
    let mut stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow!("connecting to {addr} timed out"))?
        .with_context(|| format!("connecting to {addr}"))?;
    let (ident, payload) = tokio::time::timeout(timeout, exchange(&mut stream))
        .await
        .map_err(|_| {
            anyhow!(
                "{addr}: no SSH identification and KEXINIT within {} s",
                timeout.as_secs()
            )
        })??;
    let kex = parse_kexinit(&payload)?;
    report.add("service", "service", Verdict::Ok, format!("SSH at {addr}"));
    judge(&ident, &kex, report);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kexinit(lists: [&str; 10]) -> Vec<u8> {
        let mut p = vec![SSH_MSG_KEXINIT];
        p.extend_from_slice(&[7; 16]);
        for l in lists {
            p.extend_from_slice(&(l.len() as u32).to_be_bytes());
            p.extend_from_slice(l.as_bytes());
        }
        p.extend_from_slice(&[0, 0, 0, 0, 0]);
        p
    }

    #[test]
    fn weak_and_broken_algorithms_are_flagged() {
        let k = parse_kexinit(&kexinit([
            "curve25519-sha256,diffie-hellman-group14-sha1,ext-info-s",
            "ssh-ed25519,ssh-rsa",
            "aes128-ctr,aes256-cbc",
            "aes128-ctr",
            "hmac-sha2-256,hmac-sha1",
            "hmac-sha2-256",
            "none",
            "none",
            "",
            "",
        ]))
        .unwrap_or_default();
        assert_eq!(k.ciphers, ["aes128-ctr", "aes256-cbc"]);
        let mut r = Report::new("sftp://h".into());
        judge("SSH-2.0-x", &k, &mut r);
        let verdict = |id: &str| r.findings.iter().find(|f| f.id == id).map(|f| f.verdict);
        assert_eq!(verdict("ssh.kex"), Some(Verdict::Warning));
        assert_eq!(verdict("ssh.host_key"), Some(Verdict::Warning));
        assert_eq!(verdict("ssh.ciphers"), Some(Verdict::Warning));
        assert_eq!(verdict("ssh.macs"), Some(Verdict::Warning));
        let k = parse_kexinit(&kexinit([
            "diffie-hellman-group1-sha1",
            "ssh-dss",
            "3des-cbc",
            "3des-cbc",
            "hmac-md5",
            "hmac-md5",
            "none",
            "none",
            "",
            "",
        ]))
        .unwrap_or_default();
        let mut r = Report::new("sftp://h".into());
        judge("SSH-2.0-x", &k, &mut r);
        assert_eq!(r.worst(), Verdict::Risk);
        assert_eq!(
            r.findings
                .iter()
                .filter(|f| f.verdict == Verdict::Risk)
                .count(),
            4
        );
    }

    #[test]
    fn truncated_kexinit_is_an_error_not_a_panic() {
        let full = kexinit(["a", "b", "c", "d", "e", "f", "g", "h", "", ""]);
        for cut in 0..full.len() - 15 {
            let _ = parse_kexinit(&full[..cut]);
        }
        let mut lying = full.clone();
        lying[17..21].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_kexinit(&lying).is_err());
    }
}
