//! `fts sync SRC DST`: both trees are read first, a plan says what will
//! change (`plan`), and then one side is brought to match: the remote one
//! by uploads (`push`) or the local one by downloads (`pull`).

mod plan;
mod pull;
mod push;

use super::report::TransferReport;
use super::{Context, Excludes};
use crate::client::Observer;
use crate::error::{Error, Result};
use crate::model::Entry;
use std::path::{Path, PathBuf};

/// `fts sync SRC DST`: makes DST a mirror of SRC's contents. Exactly one
/// side is remote.
pub async fn sync(
    ctx: &Context,
    src: &crate::remote::Location,
    dst: &crate::remote::Location,
) -> Result<TransferReport> {
    use crate::remote::Location::{Local, Remote as R};
    let ex = Excludes::new(&ctx.transfer.excludes)?;
    match (src, dst) {
        (Local(s), R(d)) => ctx.with_retries(|| push::push_once(ctx, s, d, &ex)).await,
        (R(s), Local(d)) => ctx.with_retries(|| pull::pull_once(ctx, s, d, &ex)).await,
        _ => Err(Error::usage(
            "sync needs exactly one remote side (HOST:PATH or fts://…)",
        )),
    }
}

/// One side of a tree: relative path → entry (and local path, for local trees).
type Tree = std::collections::BTreeMap<String, (Entry, Option<PathBuf>)>;

/// The local tree below `root`, and the paths whose names are not UTF-8
/// (the protocol carries UTF-8 names only), which are left out.
fn local_tree(root: &Path, ex: &Excludes, obs: &dyn Observer) -> Result<(Tree, Vec<PathBuf>)> {
    let mut t = Tree::new();
    let mut odd = Vec::new();
    if !root.exists() {
        return Ok((t, odd));
    }
    crate::fsutil::walk(
        root,
        "",
        true,
        &mut |p, e| {
            if !ex.excluded(&e.path) {
                t.insert(e.path.clone(), (e, Some(p.to_path_buf())));
            }
            Ok(())
        },
        &mut |p| {
            obs.notice(&format!("skipping {} (name is not UTF-8)", p.display()));
            odd.push(p.to_path_buf());
        },
    )?;
    Ok((t, odd))
}

fn remote_tree(entries: Vec<Entry>, prefix: &str, ex: &Excludes) -> Result<Tree> {
    let mut t = Tree::new();
    for mut e in entries {
        let rel = if prefix.is_empty() {
            e.path.clone()
        } else {
            match e
                .path
                .strip_prefix(prefix)
                .and_then(|r| r.strip_prefix('/'))
            {
                Some(r) => r.to_string(),
                None => {
                    return Err(Error::protocol(format!(
                        "listing returned foreign path {}",
                        e.path
                    )))
                }
            }
        };
        crate::paths::components(&rel)
            .map_err(|_| Error::protocol(format!("server sent unsafe path {:?}", e.path)))?;
        if !ex.excluded(&rel) {
            e.path = rel.clone();
            t.insert(rel, (e, None));
        }
    }
    Ok(t)
}
