//! `ferry.toml`: the server's configuration file, mapped onto `ServerConfig` and the users.
//!
//! Unknown keys are errors (`deny_unknown_fields`), so a typo never silently does nothing, and
//! every error names its line and column.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use ferry_auth::UserSpec;
use ferry_ftpd::{Masquerade, ServerConfig, TlsPolicy};
use ipnet::IpNet;
use serde::Deserialize;

/// The whole file. Every key is optional; the defaults are the ones documented in
/// `docs/configuration.md`. Settings every protocol shares sit at the top and in `[limits]`
/// and `[storage]`; each protocol has its table (`[ftp]`, `[sftp]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) state_dir: Option<PathBuf>,
    /// Append one xferlog(5) line per transfer of any protocol to this file.
    pub(crate) xferlog: Option<PathBuf>,
    /// `text` (default) or `json`.
    pub(crate) log_format: Option<crate::logformat::LogFormat>,
    /// Balancers that must send a PROXY protocol header (every protocol's listeners).
    #[serde(default)]
    pub(crate) proxy_protocol_from: Vec<IpNet>,
    /// Started as root: the account (`USER[:GROUP]`) to serve as once the ports are bound.
    pub(crate) run_as: Option<String>,
    /// Started as root without `run_as`: serve as root all the same.
    pub(crate) allow_root: Option<bool>,
    /// Confine the process to the served roots with Landlock (default true).
    pub(crate) landlock: Option<bool>,
    /// Filter out the system calls a file server never makes (default true).
    pub(crate) seccomp: Option<bool>,
    #[serde(default)]
    pub(crate) users: Vec<UserSpec>,
    #[serde(default)]
    pub(crate) limits: LimitsSection,
    #[serde(default)]
    pub(crate) storage: StorageSection,
    #[serde(default)]
    pub(crate) ftp: FtpSection,
    #[serde(default)]
    pub(crate) sftp: SftpSection,
    #[serde(default)]
    pub(crate) metrics: MetricsSection,
}

/// `[metrics]`: the metrics, health and status listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsSection {
    pub(crate) listen: Option<SocketAddr>,
    /// Basic auth for everything but `/healthz`: the user name...
    pub(crate) user: Option<String>,
    /// ...and its password's argon2id PHC string (`ferry hash-password`).
    pub(crate) password_hash: Option<String>,
}

/// `[limits]`: sessions and logins, counted across every protocol.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsSection {
    pub(crate) max_sessions: Option<usize>,
    pub(crate) max_sessions_per_ip: Option<usize>,
    pub(crate) max_sessions_per_user: Option<usize>,
    /// The whole server's upload bandwidth, e.g. `"100MiB"` (per second).
    pub(crate) upload_rate: Option<String>,
    /// The whole server's download bandwidth.
    pub(crate) download_rate: Option<String>,
    /// Each user's bytes quota unless its own `quota_bytes` says otherwise (0/"none": none).
    pub(crate) quota_bytes: Option<ferry_auth::SizeValue>,
    /// Each user's files quota unless its own `quota_files` says otherwise (0: none).
    pub(crate) quota_files: Option<u64>,
    pub(crate) max_login_attempts: Option<u32>,
    pub(crate) login_failure_delay_ms: Option<u64>,
    pub(crate) max_failed_logins_per_ip: Option<u32>,
    pub(crate) max_failed_logins_per_user: Option<u32>,
    pub(crate) failed_login_window: Option<u64>,
    pub(crate) login_timeout: Option<u64>,
    pub(crate) idle_timeout: Option<u64>,
}

/// `[storage]`: how users' files are served.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StorageSection {
    pub(crate) listing_cache_entries: Option<usize>,
    /// `[storage.s3]`: how `s3://` homes are reached.
    #[serde(default)]
    pub(crate) s3: S3Section,
}

/// `[storage.s3]`: endpoint, region, URL style and credentials for every `s3://BUCKET/PREFIX`
/// home; what is missing comes from the `AWS_*` environment.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct S3Section {
    pub(crate) endpoint: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) path_style: Option<bool>,
    pub(crate) access_key_id: Option<String>,
    pub(crate) secret_access_key: Option<String>,
}

impl S3Section {
    /// The settings, `endpoint` (a command-line flag) taking precedence.
    pub(crate) fn settings(&self, endpoint: Option<&str>) -> ferry_core::S3Settings {
        ferry_core::S3Settings {
            endpoint: endpoint.map(str::to_string).or(self.endpoint.clone()),
            region: self.region.clone(),
            path_style: self.path_style,
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
        }
    }
}

/// `[ftp]`: FTP and FTPS.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FtpSection {
    pub(crate) listen: Option<Vec<SocketAddr>>,
    pub(crate) implicit_tls_listen: Option<Vec<SocketAddr>>,
    pub(crate) greeting: Option<String>,
    pub(crate) passive_ports: Option<PortRange>,
    pub(crate) masquerade_address: Option<String>,
    #[serde(default)]
    pub(crate) masquerade_overrides: Vec<MasqueradeOverride>,
    pub(crate) active: Option<bool>,
    pub(crate) passive: Option<bool>,
    pub(crate) active_source_port_minus_one: Option<bool>,
    pub(crate) allow_foreign_passive_peer: Option<bool>,
    pub(crate) allow_active_foreign_address: Option<bool>,
    pub(crate) allow_active_privileged_port: Option<bool>,
    pub(crate) data_connect_timeout: Option<u64>,
    pub(crate) data_stall_timeout: Option<u64>,
    pub(crate) quick_download_max: Option<u64>,
    pub(crate) max_line: Option<usize>,
    pub(crate) tls: Option<TlsPolicy>,
    pub(crate) tls_cert: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
    pub(crate) tls_require_session_reuse: Option<bool>,
    pub(crate) tls_exempt_anonymous: Option<bool>,
    pub(crate) allow_ccc: Option<bool>,
    /// Serve anonymous (`anonymous`/`ftp`) read-only logins from this directory.
    pub(crate) anonymous_root: Option<PathBuf>,
    /// Anonymous logins may only upload new files there (a drop folder), not list or read.
    pub(crate) anonymous_upload_only: Option<bool>,
    /// `[ftp.user_tls]`: user name = TLS policy, where it differs from `tls`.
    #[serde(default)]
    pub(crate) user_tls: BTreeMap<String, TlsPolicy>,
}

/// `[sftp]`: SFTP over SSH.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SftpSection {
    pub(crate) listen: Option<Vec<SocketAddr>>,
}

/// Keys of the old, flat file and the table each now lives in.
const MOVED_KEYS: [(&str, &str); 31] = [
    ("listen", "ftp"),
    ("implicit_tls_listen", "ftp"),
    ("greeting", "ftp"),
    ("passive_ports", "ftp"),
    ("masquerade_address", "ftp"),
    ("masquerade_overrides", "ftp"),
    ("active", "ftp"),
    ("passive", "ftp"),
    ("active_source_port_minus_one", "ftp"),
    ("allow_foreign_passive_peer", "ftp"),
    ("allow_active_foreign_address", "ftp"),
    ("allow_active_privileged_port", "ftp"),
    ("data_connect_timeout", "ftp"),
    ("data_stall_timeout", "ftp"),
    ("quick_download_max", "ftp"),
    ("max_line", "ftp"),
    ("tls", "ftp"),
    ("tls_cert", "ftp"),
    ("tls_key", "ftp"),
    ("tls_require_session_reuse", "ftp"),
    ("tls_exempt_anonymous", "ftp"),
    ("allow_ccc", "ftp"),
    ("listing_cache_entries", "storage"),
    ("max_sessions", "limits"),
    ("max_sessions_per_ip", "limits"),
    ("max_login_attempts", "limits"),
    ("login_failure_delay_ms", "limits"),
    ("max_failed_logins_per_ip", "limits"),
    ("max_failed_logins_per_user", "limits"),
    ("failed_login_window", "limits"),
    ("login_timeout", "limits"),
];

/// A key of the old flat layout, found where the current one has none: `line L: ...` naming
/// the key's new place. TOML puts top-level keys before the first table, so those are the
/// lines looked at; `[anonymous]` and a user's `tls` moved too.
fn moved_key(text: &str) -> Option<String> {
    let mut table = "";
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            table = line;
            if line.replace(' ', "") == "[anonymous]" {
                return Some(format!(
                    "line {}: the [anonymous] table is now `anonymous_root = \"DIR\"` in [ftp]",
                    i + 1
                ));
            }
            continue;
        }
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().trim_matches('"');
        if table.is_empty() {
            if key == "idle_timeout" {
                return Some(format!(
                    "line {}: `idle_timeout` now belongs in [limits]",
                    i + 1
                ));
            }
            if let Some((_, section)) = MOVED_KEYS.iter().find(|(k, _)| *k == key) {
                return Some(format!(
                    "line {}: `{key}` now belongs in [{section}] (write it under a `[{section}]` line)",
                    i + 1
                ));
            }
        } else if table.replace(' ', "") == "[[users]]" && key == "tls" {
            return Some(format!(
                "line {}: a user's `tls` is now set in [ftp.user_tls] (`NAME = \"POLICY\"`)",
                i + 1
            ));
        }
    }
    None
}

/// `[[masquerade_overrides]]`: clients in `network` are told `address` in `227` replies.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MasqueradeOverride {
    pub(crate) network: IpNet,
    pub(crate) address: Ipv4Addr,
}

/// Passive ports when none are configured: above Linux's default ephemeral range
/// (32768-60999), so outgoing connections never hold them, and handed out from a pool. Letting
/// the kernel pick an ephemeral port per transfer degrades badly once tens of thousands of
/// transfers have left that range full of TIME_WAIT sockets (measured: 9,000 -> 600
/// transfers/s, then 425s).
pub(crate) const DEFAULT_PASSIVE_PORTS: (u16, u16) = (61000, 63999);

/// An inclusive port range written `"LOW-HIGH"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PortRange(pub(crate) u16, pub(crate) u16);

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (lo, hi) = s
            .split_once('-')
            .ok_or_else(|| format!("'{s}': expected LOW-HIGH, e.g. 30000-30099"))?;
        let lo: u16 = lo
            .trim()
            .parse()
            .map_err(|_| format!("'{lo}' is not a port number"))?;
        let hi: u16 = hi
            .trim()
            .parse()
            .map_err(|_| format!("'{hi}' is not a port number"))?;
        if lo == 0 || lo > hi {
            return Err(format!("'{s}': need 1 <= LOW <= HIGH"));
        }
        Ok(PortRange(lo, hi))
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl FileConfig {
    /// Read and parse a file; errors carry the file name, line and column.
    pub(crate) fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parse the text of a configuration file.
    pub(crate) fn parse(text: &str) -> anyhow::Result<FileConfig> {
        if let Some(moved) = moved_key(text) {
            bail!("{moved}");
        }
        let cfg: FileConfig =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", describe(text, &e)))?;
        Ok(cfg)
    }

    /// `[limits]`' quotas, every user's unless its own keys say otherwise: bytes and files
    /// (`None`: no quota).
    pub(crate) fn quota_defaults(&self) -> anyhow::Result<(Option<u64>, Option<u64>)> {
        let bytes = match &self.limits.quota_bytes {
            None => None,
            Some(v) => match v.bytes() {
                Some(n) => Some(n),
                None => bail!(
                    "quota_bytes: '{v}' is not a size (e.g. \"10GiB\", \"500MB\", a number of bytes, or \"none\")"
                ),
            },
        };
        let files = self.limits.quota_files;
        Ok((bytes.filter(|n| *n > 0), files.filter(|n| *n > 0)))
    }

    /// Apply the file onto the server defaults.
    pub(crate) fn server_config(&self) -> anyhow::Result<ServerConfig> {
        // Checked here too, so that check-config and a reload refuse what a start would.
        self.quota_defaults()?;
        let mut c = ServerConfig {
            proxy: ferry_core::ProxyTrust::new(self.proxy_protocol_from.clone()),
            ..ServerConfig::default()
        };
        if let Some(l) = &self.ftp.listen {
            c.listen = l.clone();
        }
        if let Some(g) = &self.ftp.greeting {
            if g.contains(['\r', '\n']) {
                bail!("greeting: must be one line");
            }
            c.greeting = g.clone();
        }
        c.passive_ports = Some(
            self.ftp
                .passive_ports
                .map_or(DEFAULT_PASSIVE_PORTS, |r| (r.0, r.1)),
        );
        c.masquerade = Masquerade {
            address: match &self.ftp.masquerade_address {
                Some(a) => Some(resolve_v4(a).with_context(|| "masquerade_address")?),
                None => None,
            },
            overrides: self
                .ftp
                .masquerade_overrides
                .iter()
                .map(|o| (o.network, o.address))
                .collect(),
        };
        macro_rules! set {
            ($field:ident, $table:ident . $key:ident) => {
                if let Some(v) = self.$table.$key {
                    c.$field = v;
                }
            };
        }
        set!(active_enabled, ftp.active);
        set!(passive_enabled, ftp.passive);
        set!(
            active_source_port_minus_one,
            ftp.active_source_port_minus_one
        );
        set!(allow_foreign_passive_peer, ftp.allow_foreign_passive_peer);
        set!(
            allow_active_foreign_address,
            ftp.allow_active_foreign_address
        );
        set!(
            allow_active_privileged_port,
            ftp.allow_active_privileged_port
        );
        set!(max_line, ftp.max_line);
        set!(quick_download_max, ftp.quick_download_max);
        set!(max_sessions, limits.max_sessions);
        set!(max_sessions_per_ip, limits.max_sessions_per_ip);
        set!(max_sessions_per_user, limits.max_sessions_per_user);
        let rate = |key: &str, v: &Option<String>| -> anyhow::Result<Option<u64>> {
            match v {
                None => Ok(None),
                Some(text) => match ferry_auth::parse_rate(text) {
                    Some(r) => Ok(Some(r)),
                    None => bail!("{key}: '{text}' is not a rate (e.g. \"100MiB\", per second)"),
                },
            }
        };
        c.upload_rate = rate("upload_rate", &self.limits.upload_rate)?;
        c.download_rate = rate("download_rate", &self.limits.download_rate)?;
        set!(max_login_attempts, limits.max_login_attempts);
        set!(max_failed_logins_per_ip, limits.max_failed_logins_per_ip);
        set!(
            max_failed_logins_per_user,
            limits.max_failed_logins_per_user
        );
        let secs = |v: Option<u64>, key: &str, default: Duration| -> anyhow::Result<Duration> {
            match v {
                None => Ok(default),
                Some(0) => bail!("{key}: must be at least 1 second"),
                Some(s) => Ok(Duration::from_secs(s)),
            }
        };
        c.data_connect_timeout = secs(
            self.ftp.data_connect_timeout,
            "data_connect_timeout",
            c.data_connect_timeout,
        )?;
        c.data_stall_timeout = secs(
            self.ftp.data_stall_timeout,
            "data_stall_timeout",
            c.data_stall_timeout,
        )?;
        c.login_timeout = secs(self.limits.login_timeout, "login_timeout", c.login_timeout)?;
        c.idle_timeout = secs(self.limits.idle_timeout, "idle_timeout", c.idle_timeout)?;
        c.failed_login_window = secs(
            self.limits.failed_login_window,
            "failed_login_window",
            c.failed_login_window,
        )?;
        if let Some(ms) = self.limits.login_failure_delay_ms {
            c.login_failure_delay = Duration::from_millis(ms);
        }
        if c.max_line < 512 {
            bail!("max_line: must be at least 512 (RFC 959 commands can be that long)");
        }
        if c.max_login_attempts == 0 {
            bail!("max_login_attempts: must be at least 1");
        }
        if self.ftp.tls_cert.is_some() != self.ftp.tls_key.is_some() {
            bail!("tls_cert and tls_key: give both or neither");
        }
        let global_tls = self.ftp.tls.unwrap_or(TlsPolicy::Required);
        for (name, &policy) in &self.ftp.user_tls {
            if !self.users.iter().any(|u| &u.name == name) {
                bail!("[ftp.user_tls]: '{name}' is not a configured user");
            }
            if global_tls == TlsPolicy::Required && policy != TlsPolicy::Required {
                bail!(
                    "[ftp.user_tls] {name} = \"{}\" cannot relax the server's tls = \"required\" (clear-text USER is refused before the user is known)",
                    if policy == TlsPolicy::Off {
                        "off"
                    } else {
                        "optional"
                    }
                );
            }
            if global_tls == TlsPolicy::Off && policy == TlsPolicy::Required {
                bail!("[ftp.user_tls] {name} = \"required\" but the server's tls is \"off\"");
            }
        }
        c.user_tls = self
            .ftp
            .user_tls
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        c.anonymous_home = self.ftp.anonymous_root.clone();
        c.anonymous_upload_only = self.ftp.anonymous_upload_only.unwrap_or(false);
        Ok(c)
    }
}

/// An IPv4 literal or a DNS name resolved once now (the answer is announced in `227` replies).
fn resolve_v4(name: &str) -> anyhow::Result<Ipv4Addr> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => Ok(v4),
            IpAddr::V6(_) => {
                bail!("'{name}' is IPv6; PASV can only announce IPv4 (IPv6 clients use EPSV)")
            }
        };
    }
    let addrs = (name, 0)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve '{name}'"))?;
    addrs
        .filter_map(|a| match a.ip() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .next()
        .with_context(|| format!("'{name}' has no IPv4 address"))
}

/// A TOML error as `line L, column C: message`.
fn describe(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before
                .rsplit('\n')
                .next()
                .map(|l| l.chars().count())
                .unwrap_or(0)
                + 1;
            format!("line {line}, column {col}: {}", e.message())
        }
        None => e.message().to_string(),
    }
}

/// Where generated state (the self-signed certificate) lives by default.
pub(crate) fn default_state_dir() -> PathBuf {
    PathBuf::from("ferry-state")
}

/// Where the default server keeps its files when no `--root` is given.
pub(crate) fn default_root() -> PathBuf {
    PathBuf::from("ferry-data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let err =
            FileConfig::parse("[ftp]\nlisten = [\"127.0.0.1:21\"]\npasive = true\n").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("pasive"), "{msg}");
        let err =
            FileConfig::parse("[ftp]\npassive = true\n[limits]\nidle_timeot = 3\n").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("line 4"), "{msg}");
        assert!(msg.contains("idle_timeot"), "{msg}");
    }

    /// Keys of the old flat layout are refused with their line and their new place.
    #[test]
    fn moved_keys_name_their_new_place() {
        let cases = [
            (
                "state_dir = \"/s\"\npassive_ports = \"1-2\"\n",
                "line 2",
                "[ftp]",
            ),
            ("idle_timeout = 3\n", "line 1", "[limits]"),
            ("max_sessions_per_ip = 3\n", "line 1", "[limits]"),
            ("listing_cache_entries = 3\n", "line 1", "[storage]"),
            ("tls = \"off\"\n", "line 1", "[ftp]"),
            ("[anonymous]\nroot = \"/p\"\n", "line 1", "anonymous_root"),
            (
                "[[users]]\nname = \"a\"\nhome = \"/\"\ntls = \"optional\"\n",
                "line 4",
                "[ftp.user_tls]",
            ),
        ];
        for (text, line, place) in cases {
            let msg = format!("{:#}", FileConfig::parse(text).unwrap_err());
            assert!(msg.contains(line) && msg.contains(place), "{text:?}: {msg}");
        }
        // The same names inside their tables are fine.
        FileConfig::parse("[ftp]\ntls = \"off\"\n[limits]\nidle_timeout = 3\n").unwrap();
    }

    #[test]
    fn full_file_maps_onto_server_config() {
        let text = r#"
[ftp]
listen = ["127.0.0.1:2121", "[::1]:2121"]
passive_ports = "30000-30009"
masquerade_address = "203.0.113.7"
active = false
data_connect_timeout = 5
data_stall_timeout = 120
[[ftp.masquerade_overrides]]
network = "192.168.0.0/16"
address = "192.168.1.2"
"#;
        let f = FileConfig::parse(text).unwrap();
        let c = f.server_config().unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.passive_ports, Some((30000, 30009)));
        assert!(!c.active_enabled);
        assert_eq!(c.data_connect_timeout, Duration::from_secs(5));
        assert_eq!(c.data_stall_timeout, Duration::from_secs(120));
        assert_eq!(
            c.masquerade.address_for("192.168.4.4".parse().unwrap()),
            Some(Ipv4Addr::new(192, 168, 1, 2))
        );
        assert_eq!(
            c.masquerade.address_for("10.0.0.1".parse().unwrap()),
            Some(Ipv4Addr::new(203, 0, 113, 7))
        );
    }

    #[test]
    fn bad_port_range_names_its_line() {
        let err = FileConfig::parse("\n[ftp]\npassive_ports = \"9-3\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 3"), "{err:#}");
    }

    #[test]
    fn s3_settings_come_from_the_file_and_the_endpoint_flag() {
        let f = FileConfig::parse(
            "[storage.s3]\nendpoint = \"http://127.0.0.1:9000\"\nregion = \"eu-west-1\"\npath_style = false\n",
        )
        .unwrap();
        let s = f.storage.s3.settings(None);
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            (s.region.as_deref(), s.path_style),
            (Some("eu-west-1"), Some(false))
        );
        let flag = f.storage.s3.settings(Some("http://[::1]:9000"));
        assert_eq!(flag.endpoint.as_deref(), Some("http://[::1]:9000"));
        assert!(FileConfig::parse("[storage.s3]\nendpont = \"x\"\n").is_err());
    }

    /// Every TOML example in docs/configuration.md parses and validates, so the reference can't
    /// drift from the code.
    #[test]
    fn documented_examples_are_valid() {
        let doc = concat!(
            include_str!("../../../docs/configuration.md"),
            include_str!("../../../docs/deployment.md")
        );
        let mut blocks = 0;
        for block in doc.split("```toml").skip(1) {
            let text = block.split("```").next().unwrap();
            let f = FileConfig::parse(text).unwrap_or_else(|e| panic!("{e:#}\n{text}"));
            f.server_config().unwrap();
            ferry_auth::Authenticator::new(f.users.clone()).unwrap();
            blocks += 1;
        }
        assert!(blocks >= 2);
    }

    #[test]
    fn quotas_are_read_and_bad_values_refused() {
        let text = "[limits]\nquota_bytes = \"10GiB\"\nquota_files = 10000\n[[users]]\n\
                    name = \"a\"\npassword_hash = \"x\"\nhome = \"/tmp\"\nquota_bytes = 1000\n\
                    quota_files = 0\n[[users]]\nname = \"b\"\npassword_hash = \"x\"\n\
                    home = \"/tmp\"\nquota_bytes = \"none\"\n";
        let f = FileConfig::parse(text).unwrap();
        f.server_config().unwrap();
        assert_eq!(f.quota_defaults().unwrap(), (Some(10 << 30), Some(10_000)));
        let a = &f.users[0];
        assert_eq!(
            (
                a.quota_bytes.as_ref().and_then(|v| v.bytes()),
                a.quota_files
            ),
            (Some(1000), Some(0))
        );
        assert_eq!(
            f.users[1].quota_bytes.as_ref().and_then(|v| v.bytes()),
            Some(0)
        );
        // 0 and "none" in [limits]: no quota.
        let none = FileConfig::parse("[limits]\nquota_bytes = 0\nquota_files = 0\n").unwrap();
        assert_eq!(none.quota_defaults().unwrap(), (None, None));

        let bad = FileConfig::parse("[limits]\nquota_bytes = \"lots\"\n").unwrap();
        let e = format!("{:#}", bad.server_config().unwrap_err());
        assert!(e.contains("quota_bytes: 'lots' is not a size"), "{e}");
        for (text, says) in [
            ("[limits]\nquota_bytes = -5\n", "a size can't be negative"),
            ("[limits]\nquota_bytes = 1.5\n", "a size such as"),
            ("[limits]\nquota_files = -1\n", "integer `-1`"),
            ("[limits]\nquota_file = 3\n", "quota_file"),
        ] {
            let e = format!("{:#}", FileConfig::parse(text).unwrap_err());
            assert!(e.contains(says) && e.contains("line 2"), "{text}: {e}");
        }
    }

    #[test]
    fn per_user_limits_and_drop_folders_are_read() {
        let text = "[limits]\nmax_sessions_per_user = 3\n[ftp]\nanonymous_root = \"/p\"\n\
                    anonymous_upload_only = true\n[[users]]\nname = \"a\"\n\
                    password_hash = \"x\"\nhome = \"/tmp\"\nmax_sessions = 1\n\
                    allowed_networks = [\"192.0.2.0/24\"]\npermissions = [\"upload-only\"]\n";
        let f = FileConfig::parse(text).unwrap();
        let c = f.server_config().unwrap();
        assert_eq!(c.max_sessions_per_user, 3);
        assert!(c.anonymous_upload_only);
        assert_eq!(f.users[0].max_sessions, Some(1));
        assert_eq!(f.users[0].allowed_networks, ["192.0.2.0/24"]);
        let rates =
            FileConfig::parse("[limits]\nupload_rate = \"1MiB\"\ndownload_rate = \"2M\"").unwrap();
        let c = rates.server_config().unwrap();
        assert_eq!(
            (c.upload_rate, c.download_rate),
            (Some(1 << 20), Some(2_000_000))
        );
        let bad = FileConfig::parse("[limits]\nupload_rate = \"fast\"").unwrap();
        assert!(bad.server_config().is_err());
    }

    #[test]
    fn masquerade_address_may_be_a_dns_name() {
        let f = FileConfig::parse("[ftp]\nmasquerade_address = \"localhost\"").unwrap();
        let c = f.server_config().unwrap();
        assert_eq!(c.masquerade.address, Some(Ipv4Addr::LOCALHOST));
        let f = FileConfig::parse("[ftp]\nmasquerade_address = \"::1\"").unwrap();
        let err = f.server_config().unwrap_err();
        assert!(format!("{err:#}").contains("EPSV"), "{err:#}");
    }

    #[test]
    fn a_user_cannot_relax_a_required_tls_server() {
        let user = |tls: &str| {
            format!(
                "[ftp]\n{tls}\n[ftp.user_tls]\na = \"optional\"\n[[users]]\nname = \"a\"\npassword_hash = \"x\"\nhome = \"/tmp\"\n"
            )
        };
        let err = FileConfig::parse(&user(""))
            .unwrap()
            .server_config()
            .unwrap_err();
        assert!(format!("{err:#}").contains("cannot relax"), "{err:#}");
        let c = FileConfig::parse(&user("tls = \"optional\""))
            .unwrap()
            .server_config()
            .unwrap();
        assert_eq!(c.user_tls.get("a"), Some(&TlsPolicy::Optional));
        let off = "[ftp]\ntls = \"off\"\n[ftp.user_tls]\na = \"required\"\n[[users]]\nname = \"a\"\npassword_hash = \"x\"\nhome = \"/tmp\"\n";
        assert!(FileConfig::parse(off).unwrap().server_config().is_err());
        let stranger = "[ftp]\ntls = \"optional\"\n[ftp.user_tls]\nzed = \"required\"\n";
        let err = FileConfig::parse(stranger)
            .unwrap()
            .server_config()
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("not a configured user"),
            "{err:#}"
        );
    }

    #[test]
    fn zero_timeout_is_refused() {
        let f = FileConfig::parse("[limits]\nidle_timeout = 0").unwrap();
        assert!(f.server_config().is_err());
    }
}
