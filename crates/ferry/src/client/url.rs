//! `ftp://user[:pass]@host[:port]/path` URLs (RFC 1738), percent-decoded, their FTPS forms
//! `ftpes://` (explicit TLS) and `ftps://` (implicit TLS), and `sftp://user@host[:port]/path`
//! (the SSH URI draft, as curl reads it: the path is absolute, `/~/` starts at the login
//! directory).

use percent_encoding::percent_decode_str;

/// The URL's scheme: how the control connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `ftp://`: as `--tls` says (default: plain).
    Ftp,
    /// `ftpes://`: `AUTH TLS` on the normal port (21), required.
    Ftpes,
    /// `ftps://`: TLS from the first byte, port 990.
    Ftps,
    /// `sftp://`: SFTP over SSH, port 22.
    Sftp,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Ftp | Scheme::Ftpes => 21,
            Scheme::Ftps => 990,
            Scheme::Sftp => 22,
        }
    }
}

/// A parsed `ftp://`, `ftpes://`, `ftps://` or `sftp://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteUrl {
    pub(crate) scheme: Scheme,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    /// Host name or IP literal, without brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The path as sent to the server. FTP: relative to the login directory (RFC 1738),
    /// absolute when the URL path starts with `%2F` (`ftp://h/%2Fetc`). SFTP: absolute
    /// (`sftp://h/etc` is `/etc`), relative to the login directory after `/~/`
    /// (`sftp://h/~/docs` is `docs`). Empty means the login directory.
    pub(crate) path: String,
}

fn decode(s: &str, what: &str) -> Result<String, String> {
    let text = percent_decode_str(s)
        .decode_utf8()
        .map_err(|_| format!("the URL's {what} is not UTF-8 after percent-decoding"))?
        .into_owned();
    if text.contains(['\r', '\n', '\0']) {
        return Err(format!("the URL's {what} contains CR, LF or NUL"));
    }
    Ok(text)
}

impl RemoteUrl {
    /// Parse an `ftp://`, `ftpes://`, `ftps://` or `sftp://` URL.
    pub(crate) fn parse(s: &str) -> Result<RemoteUrl, String> {
        let (scheme, rest) = [
            ("ftp://", Scheme::Ftp),
            ("ftpes://", Scheme::Ftpes),
            ("ftps://", Scheme::Ftps),
            ("sftp://", Scheme::Sftp),
        ]
        .into_iter()
        .find_map(|(prefix, scheme)| {
            s.get(..prefix.len())
                .filter(|p| p.eq_ignore_ascii_case(prefix))
                .map(|_| (scheme, &s[prefix.len()..]))
        })
        .ok_or_else(|| format!("not an ftp://, ftpes://, ftps:// or sftp:// URL: {s}"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => match ui.split_once(':') {
                Some((u, p)) => (Some(decode(u, "user")?), Some(decode(p, "password")?)),
                None => (Some(decode(ui, "user")?), None),
            },
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("unclosed '[' in {s}"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("junk after ']' in {s}"))?,
                ),
            };
            (h.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("no host in {s}"));
        }
        let port = match port {
            None | Some("") => scheme.default_port(),
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("bad port '{p}' in {s}"))?,
        };
        let path = match (scheme, path) {
            (Scheme::Sftp, None) => String::new(),
            (Scheme::Sftp, Some(p)) => {
                let p = decode(p, "path")?;
                match p.strip_prefix('~') {
                    Some("") => String::new(),
                    Some(home) if home.starts_with('/') => home[1..].to_string(),
                    _ => format!("/{p}"),
                }
            }
            // A `;type=i` suffix (RFC 1738) is accepted and ignored: transfers are binary.
            (_, p) => decode(p.unwrap_or("").split(";type=").next().unwrap_or(""), "path")?,
        };
        Ok(RemoteUrl {
            scheme,
            user: user.filter(|u| !u.is_empty()),
            password,
            host,
            port,
            path,
        })
    }

    /// `host:port` for connecting (IPv6 in brackets).
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The last path component (empty for a directory URL ending in `/`).
    pub(crate) fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or("")
    }

    /// The path as an optional argument: `None` for the login directory.
    pub(crate) fn path_arg(&self) -> Option<&str> {
        (!self.path.is_empty()).then_some(self.path.as_str())
    }
}

/// `dir` joined with `name` by one `/` (an empty `dir` is the login directory).
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RemoteUrl {
        RemoteUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_urls() {
        let u = p("ftp://alice:s%40cret%3A@example.org:2121/dir/a%20b.txt");
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("s@cret:"));
        assert_eq!(u.host, "example.org");
        assert_eq!(u.port, 2121);
        assert_eq!(u.path, "dir/a b.txt");
        assert_eq!(u.file_name(), "a b.txt");
        assert_eq!(u.authority(), "example.org:2121");

        let u = p("FTP://[::1]:21/");
        assert_eq!(u.host, "::1");
        assert_eq!(u.path, "");
        assert_eq!(u.path_arg(), None);
        assert_eq!(u.authority(), "[::1]:21");
        assert_eq!(u.user, None);

        let u = p("ftp://bob@[::1]/%2Fetc/x;type=i");
        assert_eq!(u.user.as_deref(), Some("bob"));
        assert_eq!(u.password, None);
        assert_eq!(u.port, 21);
        assert_eq!(u.path, "/etc/x");

        let u = p("ftp://a%40b.c@host");
        assert_eq!(u.user.as_deref(), Some("a@b.c"));
        assert_eq!(u.path, "");
        assert_eq!(u.file_name(), "");
        assert_eq!(p("ftp://h/d/").file_name(), "");
        assert_eq!(p("ftp://h/").scheme, Scheme::Ftp);
    }

    #[test]
    fn ftps_schemes() {
        let u = p("ftpes://alice@example.org/x");
        assert_eq!((u.scheme, u.port), (Scheme::Ftpes, 21));
        let u = p("FTPS://[::1]/");
        assert_eq!((u.scheme, u.port), (Scheme::Ftps, 990));
        let u = p("ftps://h:2990/");
        assert_eq!((u.scheme, u.port), (Scheme::Ftps, 2990));
        assert!(RemoteUrl::parse("ftpx://h/").is_err());
    }

    #[test]
    fn sftp_urls() {
        let u = p("sftp://alice@example.org/srv/a%20b.txt");
        assert_eq!((u.scheme, u.port), (Scheme::Sftp, 22));
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.path, "/srv/a b.txt");
        assert_eq!(u.file_name(), "a b.txt");
        let u = p("SFTP://[::1]:2222/~/docs/");
        assert_eq!((u.host.as_str(), u.port), ("::1", 2222));
        assert_eq!(u.path, "docs/");
        assert_eq!(u.authority(), "[::1]:2222");
        assert_eq!(p("sftp://h").path, "");
        assert_eq!(p("sftp://h/").path, "/");
        assert_eq!(p("sftp://h/~").path, "");
        assert_eq!(p("sftp://h/~/").path, "");
        assert_eq!(p("sftp://h/~x").path, "/~x");
        // `;` is part of an SFTP name.
        assert_eq!(p("sftp://h/a;type=i").path, "/a;type=i");
        assert!(RemoteUrl::parse("sftp://h/a%0Ab").is_err());
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "http://h/",
            "ftp://",
            "ftp://h:0/",
            "ftp://h:x/",
            "ftp://[::1/",
            "ftp://[::1]x/",
            "ftp://h/a%0d%0aDELE%20b",
            "ftp://h/%ff",
        ] {
            assert!(RemoteUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn joins() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("d", "a"), "d/a");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("d/", "a"), "d/a");
    }
}
