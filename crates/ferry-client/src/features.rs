//! The `FEAT` reply (RFC 2389) as a set of features with their parameters.

use std::collections::BTreeMap;

use ferry_proto::Reply;

/// Features a server announced: upper-case name → parameters (may be empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    map: BTreeMap<String, String>,
}

impl Features {
    /// Parse a `211` FEAT reply. Lines between the first and last are features, each
    /// `NAME [params]`; a non-2xx reply (FEAT unsupported) gives no features.
    pub fn parse(reply: &Reply) -> Features {
        let mut map = BTreeMap::new();
        if reply.is_success() && reply.lines.len() > 2 {
            for line in &reply.lines[1..reply.lines.len() - 1] {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let (name, params) = line.split_once(' ').unwrap_or((line, ""));
                map.insert(name.to_ascii_uppercase(), params.trim().to_string());
            }
        }
        Features { map }
    }

    /// `true` if the feature was announced (case-insensitive).
    pub fn has(&self, name: &str) -> bool {
        self.map.contains_key(&name.to_ascii_uppercase())
    }

    /// The parameters of a feature, if announced.
    pub fn params(&self, name: &str) -> Option<&str> {
        self.map.get(&name.to_ascii_uppercase()).map(String::as_str)
    }

    /// Announced feature names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// `true` if nothing was announced.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_feat() {
        let r = Reply {
            code: 211,
            lines: vec![
                "Features:".into(),
                " EPRT".into(),
                " MLST type*;size*;modify*;".into(),
                " REST STREAM".into(),
                " hash SHA-256*;MD5".into(),
                "".into(),
                "End".into(),
            ],
        };
        let f = Features::parse(&r);
        assert!(f.has("eprt"));
        assert!(f.has("MLST"));
        assert_eq!(f.params("MLST"), Some("type*;size*;modify*;"));
        assert_eq!(f.params("REST"), Some("STREAM"));
        assert_eq!(f.params("HASH"), Some("SHA-256*;MD5"));
        assert!(!f.has("Features:"));
        assert!(!f.has("End"));
        assert!(Features::parse(&Reply::new(500, "no")).is_empty());
        assert!(Features::parse(&Reply::new(211, "no features")).is_empty());
    }
}
