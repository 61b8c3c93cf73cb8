//! [`MemoryFs`]: an in-memory tree for fast tests; same semantics as [`crate::LocalFs`].

/// An in-memory file tree.
#[derive(Debug, Default)]
pub struct MemoryFs {
    // implementation-defined fields
}

impl MemoryFs {
    /// An empty tree (just `/`).
    pub fn new() -> Self {
        Self::default()
    }
}
