//! `--exclude`: which paths of a sync are left alone on both sides.

use crate::error::{Error, Result};

/// `--exclude` patterns: one without `/` matches a name at any depth, one
/// with `/` matches the path from the top of the transfer (a leading `/` is
/// ignored). An excluded directory excludes everything below it, and
/// excluded paths on the receiving side are never deleted.
pub struct Excludes {
    names: globset::GlobSet,
    paths: globset::GlobSet,
}

impl Excludes {
    pub fn new(patterns: &[String]) -> Result<Excludes> {
        let mut names = globset::GlobSetBuilder::new();
        let mut paths = globset::GlobSetBuilder::new();
        for p in patterns {
            let p = p.trim_end_matches('/');
            let glob = |s: &str| {
                globset::GlobBuilder::new(s)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| Error::usage(format!("--exclude '{p}': {e}")))
            };
            if p.contains('/') {
                paths.add(glob(p.trim_start_matches('/'))?);
            } else {
                names.add(glob(p)?);
            }
        }
        let build = |b: globset::GlobSetBuilder| b.build().map_err(|e| Error::usage(e.to_string()));
        Ok(Excludes {
            names: build(names)?,
            paths: build(paths)?,
        })
    }

    /// Is `rel` (relative to the top of the transfer) or one of its parents excluded?
    pub fn excluded(&self, rel: &str) -> bool {
        // Most syncs have no patterns; a sync asks once per entry.
        if self.names.is_empty() && self.paths.is_empty() {
            return false;
        }
        let mut end = 0;
        loop {
            let next = rel[end..].find('/').map(|i| end + i);
            let prefix = &rel[..next.unwrap_or(rel.len())];
            let name = prefix.rsplit('/').next().unwrap_or(prefix);
            if self.names.is_match(name) || self.paths.is_match(prefix) {
                return true;
            }
            match next {
                Some(i) => end = i + 1,
                None => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_match_names_paths_and_subtrees() {
        let ex = Excludes::new(&[
            "*.log".into(),
            "/build/".into(),
            "cache".into(),
            "a/*/c".into(),
        ])
        .unwrap();
        assert!(ex.excluded("x.log"));
        assert!(ex.excluded("deep/down/x.log"));
        assert!(ex.excluded("build"));
        assert!(ex.excluded("build/out.o"));
        assert!(!ex.excluded("src/build"), "anchored pattern");
        assert!(ex.excluded("cache/x"));
        assert!(ex.excluded("src/cache"));
        assert!(ex.excluded("a/b/c/d"));
        assert!(!ex.excluded("a/b/d"));
        assert!(!ex.excluded("main.rs"));
        assert!(Excludes::new(&["[".into()]).is_err());
    }
}
