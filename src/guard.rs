//! The client's checks on what a server says. A server is a peer, not an
//! authority over the client's disk: the client-side CVEs of scp and rsync
//! (CVE-2019-6111, CVE-2024-12087, CVE-2024-12088) were servers naming
//! files outside the destination, or files "through" symlinks, and clients
//! that wrote where they were told. Before anything is written locally,
//! `get`, `sync` and `ls` check here that
//!
//! - a `Stat` answer is about the path that was asked for ([`check_stat_reply`]);
//! - a listing holds only canonical relative paths below the listed
//!   directory, each once, each inside a directory the listing also names,
//!   never below a symlink or a file ([`check_listing`]);
//! - a listing stays within a memory bound ([`ListBudget`]);
//! - nothing is written through a symlink below the destination, whoever
//!   made it ([`no_symlink_below`]).
//!
//! File contents are checked elsewhere: lengths by `transfer::receive`,
//! delta pieces by `engine::delta::Base::apply`, the whole file by its
//! BLAKE3 hash before it is renamed into place.

use crate::error::{Error, Result};
use crate::model::{Entry, EntryKind};
use std::collections::HashMap;
use std::path::Path;

/// Most memory a listing may take in the client (entries as held, names
/// included): several million files of ordinary names. A bigger listing is
/// refused rather than read to the end.
pub const MAX_LISTING_BYTES: usize = 512 << 20;

/// Counts what a listing costs while it is being read.
#[derive(Debug, Default)]
pub struct ListBudget {
    used: usize,
}

impl ListBudget {
    /// Accounts for a batch of entries; an error once the total is over
    /// [`MAX_LISTING_BYTES`].
    pub fn take(&mut self, entries: &[Entry]) -> Result<()> {
        for e in entries {
            self.used += std::mem::size_of::<Entry>()
                + e.path.len()
                + e.target.as_ref().map_or(0, String::len)
                + e.hash.as_ref().map_or(0, String::len);
        }
        if self.used > MAX_LISTING_BYTES {
            return Err(Error::protocol(format!(
                "the listing is larger than this client accepts ({} MiB of entries, \
                 a few million files); stopped reading it",
                MAX_LISTING_BYTES >> 20
            )));
        }
        Ok(())
    }
}

fn kind_name(k: EntryKind) -> &'static str {
    match k {
        EntryKind::File => "file",
        EntryKind::Dir => "directory",
        EntryKind::Symlink => "symlink",
    }
}

/// Is `p` a path the server itself would write: relative, `/`-separated,
/// without empty, `.` or `..` components, NUL bytes, or names fts keeps
/// for its in-flight files?
fn canonical(p: &str) -> bool {
    match crate::paths::normalize(p) {
        Ok(n) if n == p => p
            .split('/')
            .all(|c| c.is_empty() || !crate::fsutil::is_temp_name(c)),
        _ => false,
    }
}

/// Checks the server's answer to `Stat(requested)`: it must be about that
/// very path (as the server normalises it), or, for the root of a share
/// that is a single file, about that one file.
pub fn check_stat_reply(requested: &str, e: &Entry) -> Result<()> {
    let bad = || {
        Error::protocol(format!(
            "asked about {requested:?}, the server answered for {:?}",
            e.path
        ))
    };
    let want = crate::paths::normalize(requested).map_err(|_| bad())?;
    let ok = if want.is_empty() {
        e.path.is_empty()
            || (e.kind == EntryKind::File && canonical(&e.path) && !e.path.contains('/'))
    } else {
        e.path == want
    };
    if ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// The part of a listed `path` below `prefix` (the listed directory, as the
/// server named it), refusing anything that is not strictly below it or
/// not canonical.
pub fn listed_rel<'a>(prefix: &str, path: &'a str) -> Result<&'a str> {
    let rel = if prefix.is_empty() {
        Some(path)
    } else {
        path.strip_prefix(prefix).and_then(|r| r.strip_prefix('/'))
    };
    match rel {
        Some(r) if !r.is_empty() && canonical(path) => Ok(r),
        _ => Err(Error::protocol(format!("server sent unsafe path {path:?}"))),
    }
}

/// Checks a listing of the directory `prefix` before anything acts on it:
/// every path is canonical and below `prefix` (directly, unless
/// `recursive`), no path comes twice, and every entry's parent is `prefix`
/// or a directory of the listing: nothing is listed below a symlink, a
/// file, or a directory the listing does not name. A real server walks its
/// tree and lists each directory before what is in it.
pub fn check_listing(prefix: &str, entries: &[Entry], recursive: bool) -> Result<()> {
    let mut kinds: HashMap<&str, EntryKind> = HashMap::with_capacity(entries.len());
    for e in entries {
        let rel = listed_rel(prefix, &e.path)?;
        if !recursive && rel.contains('/') {
            return Err(Error::protocol(format!(
                "server listed {:?}, which is not directly in {prefix:?}",
                e.path
            )));
        }
        if kinds.insert(&e.path, e.kind).is_some() {
            return Err(Error::protocol(format!("server listed {:?} twice", e.path)));
        }
    }
    for e in entries {
        let Some((parent, _)) = e.path.rsplit_once('/') else {
            continue; // top level of the share
        };
        if parent == prefix {
            continue;
        }
        match kinds.get(parent) {
            Some(EntryKind::Dir) => {}
            Some(k) => {
                return Err(Error::protocol(format!(
                    "server listed {:?} inside {parent:?}, which it listed as a {}",
                    e.path,
                    kind_name(*k)
                )))
            }
            None => {
                return Err(Error::protocol(format!(
                    "server listed {:?} but not its directory {parent:?}",
                    e.path
                )))
            }
        }
    }
    Ok(())
}

/// Refuses to write at `base/rel` when a component on the way (below
/// `base`; with `include_last`, `rel`'s own last component too) is a
/// symlink: fts never writes, creates directories, or sets metadata
/// through a symlink below the destination, whether the server's tree made
/// it or it was there before. `base` itself (the destination the user
/// named) may be one. Components that do not exist yet end the check:
/// fts creates them as real directories.
pub fn no_symlink_below(base: &Path, rel: &str, include_last: bool) -> Result<()> {
    let comps = crate::paths::components(rel)?;
    let n = if include_last {
        comps.len()
    } else {
        comps.len().saturating_sub(1)
    };
    let mut p = base.to_path_buf();
    for c in &comps[..n] {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(md) if md.file_type().is_symlink() => {
                return Err(Error::permission(format!(
                    "{}: is a symlink; fts does not write through symlinks below the destination",
                    p.display()
                )))
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.into(),
            kind,
            size: 0,
            mtime: 0,
            mtime_ns: 0,
            mode: 0o644,
            target: None,
            hash: None,
        }
    }

    #[test]
    fn listings_must_be_canonical_trees_below_their_directory() {
        use EntryKind::*;
        let ok = [
            e("t/a", Dir),
            e("t/a/f", File),
            e("t/l", Symlink),
            e("t/g", File),
        ];
        check_listing("t", &ok, true).unwrap();
        assert!(check_listing("t", &ok, false).is_err(), "not direct");
        check_listing("", &[e("a", Dir), e("a/b", File)], true).unwrap();
        for bad in [
            vec![e("t/../x", File)],
            vec![e("/etc/x", File)],
            vec![e("t//x", File)],
            vec![e("t/./x", File)],
            vec![e("t/x/", Dir)],
            vec![e("t/a\0b", File)],
            vec![e("t", File)],
            vec![e("u/x", File)],
            vec![e("t/.x.fts-tmp", File)],
            vec![e("t/l", Symlink), e("t/l/x", File)],
            vec![e("t/f", File), e("t/f/x", File)],
            vec![e("t/d", Dir), e("t/d", File)],
            vec![e("t/nodir/x", File)],
        ] {
            assert!(check_listing("t", &bad, true).is_err(), "{bad:?}");
        }
        assert!(check_listing("", &[e("..", Dir)], true).is_err());
        assert!(check_listing("", &[e("", Dir)], true).is_err());
    }

    #[test]
    fn stat_replies_must_be_about_the_path_asked() {
        use EntryKind::*;
        check_stat_reply("a/b", &e("a/b", Dir)).unwrap();
        check_stat_reply("a//b/", &e("a/b", Dir)).unwrap();
        check_stat_reply("", &e("", Dir)).unwrap();
        check_stat_reply("", &e("only.txt", File)).unwrap();
        for (asked, got) in [
            ("a", e("..", Dir)),
            ("a", e("a/..", Dir)),
            ("a", e("b", Dir)),
            ("a", e("", Dir)),
            ("", e("x", Dir)),
            ("", e("..", File)),
            ("", e("a/b", File)),
            ("../a", e("../a", Dir)),
        ] {
            assert!(check_stat_reply(asked, &got).is_err(), "{asked} {got:?}");
        }
    }

    #[test]
    fn writes_never_pass_a_symlink_below_the_base() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path();
        std::fs::create_dir_all(base.join("real/sub")).unwrap();
        std::os::unix::fs::symlink("/tmp", base.join("real/link")).unwrap();
        no_symlink_below(base, "real/sub/new/f", false).unwrap();
        no_symlink_below(base, "real/link", false).unwrap();
        assert!(no_symlink_below(base, "real/link", true).is_err());
        let e = no_symlink_below(base, "real/link/f", false).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::Permission);
        assert!(no_symlink_below(base, "real/link/x/y", true).is_err());
    }

    #[test]
    fn big_listings_hit_the_budget() {
        let mut b = ListBudget::default();
        let mut big = e("x", EntryKind::File);
        big.path = "p".repeat(1 << 20);
        let batch = vec![big; 64];
        for _ in 0..7 {
            b.take(&batch).unwrap();
        }
        assert!(b.take(&batch).is_err());
    }
}
