//! What the probe learns from a server's certificate: a verifier that records the chain and
//! whether it verifies (against the system's roots or `--cacert`) but lets the handshake go
//! on either way, and the validity dates and self-signature read from the DER.

use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::report::{Report, Verdict};

/// The chain a server presented and what verifying it said.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) end_entity: CertificateDer<'static>,
    /// `Err` says why the chain is not trusted.
    pub(crate) verified: Result<(), String>,
}

/// A certificate verifier for auditing: records, never refuses (the probe must see the
/// server's TLS behaviour even with a bad certificate; no secret is sent to an unverified
/// server except the credentials the URL carries).
#[derive(Debug)]
pub(crate) struct Recorder {
    webpki: Result<Arc<WebPkiServerVerifier>, String>,
    provider: Arc<CryptoProvider>,
    seen: Mutex<Option<Seen>>,
}

impl Recorder {
    /// A recorder verifying against `roots` (none loaded: every chain is reported untrusted).
    pub(crate) fn new(
        roots: Vec<CertificateDer<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> Recorder {
        let mut store = rustls::RootCertStore::empty();
        let (added, _) = store.add_parsable_certificates(roots);
        let webpki = if added == 0 {
            Err("no trusted root certificates to verify against".to_string())
        } else {
            WebPkiServerVerifier::builder_with_provider(Arc::new(store), Arc::clone(&provider))
                .build()
                .map_err(|e| e.to_string())
        };
        Recorder {
            webpki,
            provider,
            seen: Mutex::new(None),
        }
    }

    /// The last chain seen.
    pub(crate) fn seen(&self) -> Option<Seen> {
        self.seen.lock().ok().and_then(|s| s.clone())
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = match &self.webpki {
            Ok(v) => v
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(Seen {
                end_entity: end_entity.clone().into_owned(),
                verified,
            });
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Validity and self-signature of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CertDates {
    /// Seconds since the Unix epoch.
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
    /// Issuer and subject names are the same.
    pub(crate) self_signed: bool,
}

/// One DER element: (tag, contents, what follows). Lengths up to 4 bytes.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An X.509 UTCTime (tag 0x17) or GeneralizedTime (0x18) in UTC, as Unix seconds.
fn x509_time(tag: u8, bytes: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(bytes).ok()?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = s.get(0..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, s.get(2..)?)
        }
        0x18 => (s.get(0..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    let field = |r: std::ops::Range<usize>| -> Option<i64> { rest.get(r)?.parse().ok() };
    let (mo, d, h, mi) = (field(0..2)?, field(2..4)?, field(4..6)?, field(6..8)?);
    let sec = field(8..10).unwrap_or(0);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(year, mo, d) * 86_400 + h * 3600 + mi * 60 + sec)
}

/// Read the validity and names of a DER certificate; `None` if it doesn't parse.
pub(crate) fn dates(cert: &[u8]) -> Option<CertDates> {
    let (_, certificate, _) = der(cert)?;
    let (_, tbs, _) = der(certificate)?;
    let (tag, _, mut rest) = der(tbs)?;
    if tag == 0xa0 {
        // [0] version came first: skip the serial number too.
        rest = der(rest)?.2;
    }
    let (_, _, rest) = der(rest)?; // signature algorithm
    let (_, issuer, rest) = der(rest)?;
    let (_, validity, rest) = der(rest)?;
    let (_, subject, _) = der(rest)?;
    let (t1, nb, after) = der(validity)?;
    let (t2, na, _) = der(after)?;
    Some(CertDates {
        not_before: x509_time(t1, nb)?,
        not_after: x509_time(t2, na)?,
        self_signed: issuer == subject,
    })
}

/// A Unix time as `YYYY-MM-DD`.
fn date(unix: i64) -> String {
    let z = unix.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days before expiry below which a certificate is a warning.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// Add the certificate's trust and expiry findings, judged at `now` (Unix seconds).
pub(crate) fn judge(seen: &Seen, now: i64, report: &mut Report) {
    let parsed = dates(seen.end_entity.as_ref());
    let self_signed = parsed.is_some_and(|d| d.self_signed);
    match (&seen.verified, self_signed) {
        (Ok(()), _) => report.add(
            "tls.certificate.trust",
            "certificate chain",
            Verdict::Ok,
            "verifies against the trusted roots for the name dialled",
        ),
        (Err(e), true) => report.add(
            "tls.certificate.trust",
            "certificate chain",
            Verdict::Warning,
            format!("self-signed: clients can only pin it ({e})"),
        ),
        (Err(e), false) => report.add(
            "tls.certificate.trust",
            "certificate chain",
            Verdict::Warning,
            format!("not trusted: {e}"),
        ),
    }
    let Some(d) = parsed else {
        report.add(
            "tls.certificate.expiry",
            "certificate expiry",
            Verdict::Warning,
            "the certificate's validity dates could not be read",
        );
        return;
    };
    let days_left = (d.not_after - now).div_euclid(86_400);
    let (verdict, detail) = if now < d.not_before {
        (
            Verdict::Risk,
            format!("not valid before {}", date(d.not_before)),
        )
    } else if now > d.not_after {
        (
            Verdict::Risk,
            format!("expired on {} ({} days ago)", date(d.not_after), -days_left),
        )
    } else if days_left < EXPIRY_WARNING_DAYS {
        (
            Verdict::Warning,
            format!("expires on {} (in {days_left} days)", date(d.not_after)),
        )
    } else {
        (
            Verdict::Ok,
            format!("expires on {} (in {days_left} days)", date(d.not_after)),
        )
    };
    report.add(
        "tls.certificate.expiry",
        "certificate expiry",
        verdict,
        detail,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_through_the_calendar() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(days_from_civil(2024, 2, 29) * 86_400), "2024-02-29");
        assert_eq!(x509_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(x509_time(0x18, b"20000301000000Z"), Some(951_868_800));
        assert_eq!(x509_time(0x17, b"99"), None);
    }

    #[test]
    fn truncated_or_hostile_der_is_refused_not_panicked_on() {
        for bad in [
            &b""[..],
            b"\x30",
            b"\x30\x85\xff\xff\xff\xff\xff",
            b"\x30\x02\x30\x05",
        ] {
            assert_eq!(dates(bad), None);
        }
    }
}
