//! [`LocalFs`]: a local directory served as `/`, jailed with cap-std (openat2/`RESOLVE_BENEATH`
//! where available): neither `..` nor a symlink can reach outside the root.

use std::path::Path;

/// A local directory served as `/`.
#[derive(Debug)]
pub struct LocalFs {
    // implementation-defined fields (a cap_std::fs::Dir in an Arc)
}

impl LocalFs {
    /// Open `root` (which must exist and be a directory) as a jail.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        let _ = root;
        todo!()
    }
}
