//! [`VPath`]: the server's virtual path. Always absolute and normalised: it starts with `/`,
//! has no empty, `.` or `..` components, and no trailing `/` (except the root itself).
//! Resolving `..` at the root stays at the root, so no sequence of arguments can climb above `/`.

use std::fmt;

/// Longest path accepted, in bytes.
pub const MAX_PATH: usize = 4096;
/// Longest single name accepted, in bytes.
pub const MAX_NAME: usize = 255;

fn check_chars(s: &str) -> Result<(), PathError> {
    if s.bytes().any(|b| matches!(b, 0 | b'\r' | b'\n')) {
        Err(PathError::InvalidChar)
    } else {
        Ok(())
    }
}

/// A path argument that can't name a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// NUL, CR or LF in a name.
    #[error("file names may not contain NUL, CR or LF")]
    InvalidChar,
    /// Longer than the limit (4096 bytes in total or 255 bytes per component).
    #[error("path too long")]
    TooLong,
}

/// Absolute, normalised virtual path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VPath(String);

impl VPath {
    /// `/`.
    pub fn root() -> Self {
        VPath("/".to_string())
    }

    /// Resolve a client argument against `self` (the working directory): absolute arguments
    /// start from `/`, relative ones from `self`; `.` and empty components are dropped, `..`
    /// pops (never above `/`).
    ///
    /// Errors: NUL, CR or LF anywhere → [`PathError::InvalidChar`]; a component over 255
    /// bytes or a result over 4096 bytes → [`PathError::TooLong`]. A backslash is an ordinary
    /// character. The cost is linear in `arg`, whatever it holds.
    pub fn resolve(&self, arg: &str) -> Result<VPath, PathError> {
        check_chars(arg)?;
        let mut parts: Vec<&str> = if arg.starts_with('/') {
            Vec::new()
        } else {
            self.components().collect()
        };
        for part in arg.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                name if name.len() > MAX_NAME => return Err(PathError::TooLong),
                name => parts.push(name),
            }
        }
        let len: usize = parts.iter().map(|p| p.len() + 1).sum();
        if len > MAX_PATH {
            return Err(PathError::TooLong);
        }
        let mut out = String::with_capacity(len.max(1));
        for part in &parts {
            out.push('/');
            out.push_str(part);
        }
        if out.is_empty() {
            out.push('/');
        }
        Ok(VPath(out))
    }

    /// Append one name (which must not contain `/` and must not be `.` or `..`).
    ///
    /// An empty name, `.`, `..`, or one containing `/`, NUL, CR or LF is
    /// [`PathError::InvalidChar`]; over 255 bytes (or a result over 4096) is [`PathError::TooLong`].
    pub fn join_name(&self, name: &str) -> Result<VPath, PathError> {
        check_chars(name)?;
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(PathError::InvalidChar);
        }
        if name.len() > MAX_NAME {
            return Err(PathError::TooLong);
        }
        let sep = usize::from(!self.is_root());
        if self.0.len() + sep + name.len() > MAX_PATH {
            return Err(PathError::TooLong);
        }
        let mut out = String::with_capacity(self.0.len() + sep + name.len());
        out.push_str(&self.0);
        if sep == 1 {
            out.push('/');
        }
        out.push_str(name);
        Ok(VPath(out))
    }

    /// The path as a string, e.g. `/a/b`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path without its leading `/` (`""` for the root): what a storage backend joins to its root.
    pub fn relative(&self) -> &str {
        &self.0[1..]
    }

    /// `true` for `/`.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The parent directory (`/` for `/`).
    pub fn parent(&self) -> VPath {
        match self.0.rfind('/') {
            Some(0) | None => VPath::root(),
            Some(i) => VPath(self.0[..i].to_string()),
        }
    }

    /// The last component, `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        if self.is_root() {
            return None;
        }
        self.0.rfind('/').map(|i| &self.0[i + 1..])
    }

    /// `true` if `self` is `base` or lies beneath it (component-wise: `/ab` is not under `/a`).
    pub fn starts_with(&self, base: &VPath) -> bool {
        base.is_root()
            || self.0 == base.0
            || (self.0.starts_with(&base.0) && self.0.as_bytes().get(base.0.len()) == Some(&b'/'))
    }

    /// Components from the root down.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// Quote for a `257` reply: embedded `"` doubled (RFC 959 appendix II).
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0.replace('"', "\"\""))
    }
}

impl fmt::Display for VPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for VPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> VPath {
        VPath::root().resolve(s).unwrap()
    }

    #[test]
    fn resolve_basics() {
        let cwd = p("/home/ftp");
        assert_eq!(cwd.as_str(), "/home/ftp");
        assert_eq!(cwd.resolve("a").unwrap().as_str(), "/home/ftp/a");
        assert_eq!(cwd.resolve("/a").unwrap().as_str(), "/a");
        assert_eq!(cwd.resolve("").unwrap().as_str(), "/home/ftp");
        assert_eq!(cwd.resolve(".").unwrap().as_str(), "/home/ftp");
        assert_eq!(cwd.resolve("..").unwrap().as_str(), "/home");
        assert_eq!(cwd.resolve("../..").unwrap().as_str(), "/");
        assert_eq!(
            cwd.resolve("../../../../etc/passwd").unwrap().as_str(),
            "/etc/passwd"
        );
        assert_eq!(cwd.resolve("/../..//./x/").unwrap().as_str(), "/x");
        assert_eq!(
            cwd.resolve("a//b/./c/../d/").unwrap().as_str(),
            "/home/ftp/a/b/d"
        );
        assert_eq!(cwd.resolve("/").unwrap(), VPath::root());
        assert_eq!(cwd.resolve("...").unwrap().as_str(), "/home/ftp/...");
        assert_eq!(
            cwd.resolve("..\\..\\x").unwrap().as_str(),
            "/home/ftp/..\\..\\x"
        );
        assert_eq!(cwd.resolve(" a b ").unwrap().as_str(), "/home/ftp/ a b ");
        assert_eq!(cwd.resolve("é/ü").unwrap().as_str(), "/home/ftp/é/ü");
    }

    #[test]
    fn resolve_rejects() {
        let cwd = VPath::root();
        assert_eq!(cwd.resolve("a\0b"), Err(PathError::InvalidChar));
        assert_eq!(cwd.resolve("a\rb"), Err(PathError::InvalidChar));
        assert_eq!(cwd.resolve("a\n"), Err(PathError::InvalidChar));
        assert_eq!(cwd.resolve(&"x".repeat(256)), Err(PathError::TooLong));
        assert!(cwd.resolve(&"x".repeat(255)).is_ok());
        let deep = "/abcdefg".repeat(512);
        assert_eq!(cwd.resolve(&deep).unwrap().as_str().len(), 4096);
        assert_eq!(cwd.resolve(&format!("{deep}/a")), Err(PathError::TooLong));
        // Long inputs that normalise to something short are fine.
        assert_eq!(cwd.resolve(&"a/../".repeat(10_000)).unwrap(), VPath::root());
        assert_eq!(cwd.resolve(&"/".repeat(10_000)).unwrap(), VPath::root());
    }

    #[test]
    fn join_name() {
        let r = VPath::root();
        assert_eq!(r.join_name("a").unwrap().as_str(), "/a");
        assert_eq!(p("/a").join_name("b c").unwrap().as_str(), "/a/b c");
        assert_eq!(r.join_name("...").unwrap().as_str(), "/...");
        for bad in ["", ".", "..", "a/b", "/", "a\0", "a\n", "\r"] {
            assert_eq!(r.join_name(bad), Err(PathError::InvalidChar), "{bad:?}");
        }
        assert_eq!(r.join_name(&"x".repeat(256)), Err(PathError::TooLong));
        let deep = p(&"/abcdefg".repeat(511));
        assert!(deep.join_name("abcdefg").is_ok());
        assert_eq!(deep.join_name("abcdefgh"), Err(PathError::TooLong));
    }

    #[test]
    fn parent_file_name_relative() {
        assert_eq!(VPath::root().parent(), VPath::root());
        assert_eq!(p("/a").parent(), VPath::root());
        assert_eq!(p("/a/b/c").parent().as_str(), "/a/b");
        assert_eq!(VPath::root().file_name(), None);
        assert_eq!(p("/a").file_name(), Some("a"));
        assert_eq!(p("/a/b c").file_name(), Some("b c"));
        assert_eq!(VPath::root().relative(), "");
        assert_eq!(p("/a/b").relative(), "a/b");
        assert!(VPath::root().is_root());
        assert!(!p("/a").is_root());
        assert_eq!(p("/a/b").components().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(VPath::root().components().count(), 0);
        assert_eq!(p("/say \"hi\"").quoted(), "\"/say \"\"hi\"\"\"");
        assert_eq!(p("/a").to_string(), "/a");
    }

    #[test]
    fn starts_with() {
        assert!(p("/a/b").starts_with(&p("/a")));
        assert!(p("/a").starts_with(&p("/a")));
        assert!(p("/a").starts_with(&VPath::root()));
        assert!(!p("/ab").starts_with(&p("/a")));
        assert!(!p("/a").starts_with(&p("/a/b")));
    }

    fn arg() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just(".."),
                Just("."),
                Just(""),
                Just("a"),
                Just("b c"),
                Just("\\")
            ],
            0..12,
        )
        .prop_flat_map(|parts| (Just(parts), any::<bool>()))
        .prop_map(|(parts, abs)| {
            let s = parts.join("/");
            if abs { format!("/{s}") } else { s }
        })
    }

    fn assert_normal(v: &VPath) -> Result<(), TestCaseError> {
        let s = v.as_str();
        prop_assert!(s.starts_with('/'));
        prop_assert!(s == "/" || !s.ends_with('/'));
        for c in s[1..].split('/') {
            prop_assert!(
                s == "/" || !(c.is_empty() || c == "." || c == ".."),
                "{:?}",
                s
            );
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn resolve_is_normalised(cwd in arg(), a in arg(), b in "\\PC{0,30}") {
            let cwd = VPath::root().resolve(&cwd).unwrap();
            assert_normal(&cwd)?;
            let r = cwd.resolve(&a).unwrap();
            assert_normal(&r)?;
            // Idempotent: resolving the result again from anywhere gives itself.
            prop_assert_eq!(&VPath::root().resolve(r.as_str()).unwrap(), &r);
            if let Ok(r2) = cwd.resolve(&b) {
                assert_normal(&r2)?;
            }
        }

        #[test]
        fn dotdot_never_escapes(n in 0usize..20, m in 0usize..20) {
            let cwd = VPath::root().resolve(&"d/".repeat(n)).unwrap();
            let r = cwd.resolve(&"../".repeat(m)).unwrap();
            let depth = n.saturating_sub(m);
            prop_assert_eq!(r.components().count(), depth);
        }

        #[test]
        fn parent_and_file_name_recompose(a in arg()) {
            let v = VPath::root().resolve(&a).unwrap();
            match v.file_name() {
                None => prop_assert!(v.is_root()),
                Some(name) => prop_assert_eq!(v.parent().join_name(name).unwrap(), v.clone()),
            }
        }
    }
}
