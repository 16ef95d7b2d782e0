//! What a sync will do, decided from the two trees before anything is
//! touched; a dry run reports the plan instead of carrying it out.

use super::Tree;
use crate::client::Action;
use crate::model::{Entry, EntryKind, Meta};
use crate::ops::report::{FileError, TransferReport};
use crate::ops::Context;
use std::path::PathBuf;

/// Is the receiver's copy the same as the source's? Size and mtime (rsync's
/// quick check), or the content hash with `--checksum`.
fn unchanged(
    src: &(Entry, Option<PathBuf>),
    dst: &(Entry, Option<PathBuf>),
    checksum: bool,
) -> bool {
    let (s, d) = (&src.0, &dst.0);
    if d.kind != EntryKind::File || s.size != d.size {
        return false;
    }
    if !checksum {
        return (s.mtime, s.mtime_ns) == (d.mtime, d.mtime_ns);
    }
    let hash_of = |x: &(Entry, Option<PathBuf>)| match (&x.0.hash, &x.1) {
        (Some(h), _) => Some(h.clone()),
        (None, Some(p)) => crate::transfer::hash_file(p).ok(),
        _ => None,
    };
    matches!((hash_of(src), hash_of(dst)), (Some(a), Some(b)) if a == b)
}

/// Files (not directories) in `tree` at or below `rel`.
pub(super) fn files_under(tree: &Tree, rel: &str) -> u64 {
    let below = format!("{rel}/");
    tree.range(rel.to_string()..)
        .take_while(|(k, _)| *k == rel || k.starts_with(&below))
        .filter(|(_, (e, _))| e.kind != EntryKind::Dir)
        .count() as u64
}

/// Paths in `dst` that are not in `src`, topmost only (a removed directory
/// takes its contents along).
fn extraneous(src: &Tree, dst: &Tree) -> Vec<(String, EntryKind)> {
    let mut out: Vec<(String, EntryKind)> = Vec::new();
    for (rel, (e, _)) in dst {
        if src.contains_key(rel) {
            continue;
        }
        if let Some((last, _)) = out.last() {
            if rel.starts_with(&format!("{last}/")) {
                continue;
            }
        }
        out.push((rel.clone(), e.kind));
    }
    out
}

/// What a sync will do, decided before anything is touched.
#[derive(Default)]
pub(super) struct SyncPlan {
    /// Topmost paths to delete, and whether each is a directory.
    pub(super) deletes: Vec<(String, bool)>,
    /// Paths whose type changes: removed before being written anew.
    pub(super) replace: Vec<(String, bool)>,
    pub(super) mkdirs: Vec<String>,
    /// Source files to send (relative path, source entry).
    pub(super) files: Vec<(String, Entry, Option<PathBuf>)>,
    pub(super) links: Vec<(String, String)>,
    pub(super) dir_metas: Vec<(String, Meta)>,
    /// Files the deletions take away (what a dry run reports).
    pub(super) files_deleted: u64,
}

pub(super) fn plan_sync(
    src: &Tree,
    dst: &Tree,
    ctx: &Context,
    report: &mut TransferReport,
) -> SyncPlan {
    let mut plan = SyncPlan::default();
    if ctx.transfer.delete {
        for (rel, kind) in extraneous(src, dst) {
            plan.files_deleted += files_under(dst, &rel);
            plan.deletes.push((rel, kind == EntryKind::Dir));
        }
    }
    for (rel, s) in src {
        let d = dst.get(rel);
        let kind_differs = d.is_some_and(|d| d.0.kind != s.0.kind);
        match s.0.kind {
            EntryKind::Dir => {
                if kind_differs {
                    plan.replace.push((rel.clone(), false));
                }
                if d.is_none() || kind_differs {
                    plan.mkdirs.push(rel.clone());
                }
                let same_meta = d.is_some_and(|d| {
                    !kind_differs
                        && d.0.mode == s.0.mode
                        && (d.0.mtime, d.0.mtime_ns) == (s.0.mtime, s.0.mtime_ns)
                });
                if !same_meta {
                    plan.dir_metas.push((rel.clone(), s.0.meta()));
                }
            }
            EntryKind::File => {
                report.files_total += 1;
                report.bytes_total += s.0.size;
                if let Some(d) = d.filter(|_| !kind_differs) {
                    if unchanged(s, d, ctx.transfer.checksum) {
                        report.files_skipped += 1;
                        continue;
                    }
                }
                if kind_differs && d.is_some_and(|d| d.0.kind == EntryKind::Dir) {
                    plan.replace.push((rel.clone(), true));
                }
                plan.files.push((rel.clone(), s.0.clone(), s.1.clone()));
            }
            EntryKind::Symlink => {
                let Some(target) = s.0.target.clone() else {
                    continue;
                };
                let parent = rel.rsplit_once('/').map_or("", |(p, _)| p);
                if let Err(e) = crate::fsutil::check_link_target(parent, &target) {
                    report.errors.push(FileError::new(rel, e));
                    continue;
                }
                if d.is_some_and(|d| d.0.target.as_deref() == Some(target.as_str())) {
                    continue;
                }
                if d.is_some_and(|d| d.0.kind == EntryKind::Dir) {
                    plan.replace.push((rel.clone(), true));
                }
                plan.links.push((rel.clone(), target));
            }
        }
    }
    plan
}

pub(super) fn dry_run_report(plan: &SyncPlan, ctx: &Context, report: &mut TransferReport) {
    report.dry_run = true;
    report.files_deleted = plan.files_deleted;
    report.files_transferred = plan.files.len() as u64;
    report.bytes_transferred = plan.files.iter().map(|(_, e, _)| e.size).sum();
    let v = ctx.transfer.verbose;
    for (p, _) in &plan.deletes {
        report.note(v, p, Action::Delete);
    }
    for p in &plan.mkdirs {
        report.note(v, p, Action::Mkdir);
    }
    for (p, e, _) in &plan.files {
        report.note(v, p, Action::Copy);
        if let Some(f) = report.files.last_mut() {
            f.bytes = e.size;
        }
    }
    for (p, _) in &plan.links {
        report.note(v, p, Action::Symlink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str, kind: EntryKind, size: u64) -> (String, (Entry, Option<PathBuf>)) {
        (
            path.to_string(),
            (
                Entry {
                    path: path.into(),
                    kind,
                    size,
                    mtime: 5,
                    mtime_ns: 0,
                    mode: 0o644,
                    target: None,
                    hash: None,
                },
                None,
            ),
        )
    }

    #[test]
    fn extraneous_lists_topmost_paths_only() {
        let src: Tree = [e("a", EntryKind::File, 1)].into_iter().collect();
        let dst: Tree = [
            e("a", EntryKind::File, 1),
            e("d", EntryKind::Dir, 0),
            e("d/x", EntryKind::File, 1),
            e("d/y", EntryKind::File, 1),
            e("z", EntryKind::File, 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            extraneous(&src, &dst),
            vec![("d".into(), EntryKind::Dir), ("z".into(), EntryKind::File)]
        );
        assert_eq!(files_under(&dst, "d"), 2);
        assert_eq!(files_under(&dst, "z"), 1);
    }
}
