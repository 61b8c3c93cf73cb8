//! [`VPath`]: the server's virtual path. Always absolute and normalised: it starts with `/`,
//! has no empty, `.` or `..` components, and no trailing `/` (except the root itself).
//! Resolving `..` at the root stays at the root, so no sequence of arguments can climb above `/`.

use std::fmt;

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
    pub fn resolve(&self, arg: &str) -> Result<VPath, PathError> {
        let _ = arg;
        todo!()
    }

    /// Append one name (which must not contain `/` and must not be `.` or `..`).
    pub fn join_name(&self, name: &str) -> Result<VPath, PathError> {
        let _ = name;
        todo!()
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
        todo!()
    }

    /// The last component, `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        todo!()
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
