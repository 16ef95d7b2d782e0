//! The syntax of remote paths, shared by client and server: relative,
//! `/`-separated, UTF-8, at most [`MAX_PATH`] bytes, no NUL, no absolute
//! paths and no `..` (refused outright, exit 5). Where a path may lead is
//! the store's business (see `store/root.rs`).

use crate::error::{Error, Result};
use crate::proto::MAX_PATH;

/// Checks a client path and splits it into components. `""`, `"."` and
/// `"/"`-free forms all mean the root.
pub fn components(rel: &str) -> Result<Vec<&str>> {
    if rel.len() > MAX_PATH {
        return Err(Error::usage("path too long"));
    }
    if rel.contains('\0') {
        return Err(Error::permission("path contains a NUL byte"));
    }
    if rel.starts_with('/') {
        return Err(Error::permission(format!(
            "absolute path '{rel}' refused: remote paths are relative to the share root"
        )));
    }
    let mut out = Vec::new();
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(Error::permission(format!(
                    "path '{rel}' refused: '..' may not leave the share root"
                )))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The canonical form of a valid remote path (`a/b`, `""` for the root).
pub fn normalize(rel: &str) -> Result<String> {
    Ok(components(rel)?.join("/"))
}
