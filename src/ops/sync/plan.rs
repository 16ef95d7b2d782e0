//! What a sync does in one directory, decided from both sides' direct
//! entries before anything there is touched; a dry run reports it instead
//! of carrying it out.

use super::{Dst, Item, Pending};
use crate::client::Action;
use crate::model::{Entry, EntryKind};
use crate::ops::report::{FileError, TransferReport};
use crate::ops::{Excludes, TransferOptions};
use std::collections::HashMap;
use std::path::PathBuf;

/// Is the receiver's copy the same as the source's? Size and mtime (rsync's
/// quick check), or the content hash with `--checksum`.
fn unchanged(src: &Item, dst: &Item, checksum: bool) -> bool {
    let (s, d) = (&src.0, &dst.0);
    if d.kind != EntryKind::File || s.size != d.size {
        return false;
    }
    if !checksum {
        return (s.mtime, s.mtime_ns) == (d.mtime, d.mtime_ns);
    }
    let hash_of = |x: &Item| match (&x.0.hash, &x.1) {
        (Some(h), _) => Some(h.clone()),
        (None, Some(p)) => crate::transfer::hash_file(p).ok(),
        _ => None,
    };
    matches!((hash_of(src), hash_of(dst)), (Some(a), Some(b)) if a == b)
}

/// What a sync does in one directory. Paths are relative to the top.
#[derive(Debug, Default)]
pub(super) struct DirPlan {
    /// Entries to delete (not in the source), and whether each is a
    /// directory (removed with what is in it).
    pub(super) deletes: Vec<(String, bool)>,
    /// Entries whose type changes: removed before being written anew.
    pub(super) replace: Vec<(String, bool)>,
    pub(super) mkdirs: Vec<String>,
    /// Source files to send: relative path, source entry, local path.
    pub(super) files: Vec<(String, Entry, Option<PathBuf>)>,
    pub(super) links: Vec<(String, String)>,
    /// Source subdirectories to visit next, in name order.
    pub(super) subdirs: Vec<Pending>,
}

impl DirPlan {
    /// Nothing to do here (both sides are the same): only the
    /// subdirectories to visit; the files count as skipped.
    pub(super) fn unchanged(src: &[Item], ex: &Excludes, report: &mut TransferReport) -> DirPlan {
        for (e, _) in src {
            if e.kind == EntryKind::File && !ex.excluded(&e.path) {
                report.files_total += 1;
                report.files_skipped += 1;
                report.bytes_total += e.size;
            }
        }
        DirPlan {
            subdirs: src
                .iter()
                .filter(|(e, _)| e.kind == EntryKind::Dir && !ex.excluded(&e.path))
                .map(|(e, _)| Pending {
                    rel: e.path.clone(),
                    meta: e.meta(),
                    dst: Dst::Present { same_meta: true },
                })
                .collect(),
            ..DirPlan::default()
        }
    }

    /// Does carrying this out change the directory's own entries (and so
    /// its mtime)?
    pub(super) fn touches_dir(&self) -> bool {
        !(self.deletes.is_empty()
            && self.replace.is_empty()
            && self.mkdirs.is_empty()
            && self.files.is_empty()
            && self.links.is_empty())
    }
}

/// Does directory `p` need its metadata set once `plan` is carried out?
pub(super) fn needs_meta(p: &Pending, plan: &DirPlan) -> bool {
    plan.touches_dir() || p.dst != Dst::Present { same_meta: true }
}

/// Plans one directory from the source's and the destination's direct
/// entries (both with paths relative to the top). Excluded paths are left
/// alone on both sides. Counts files and bytes into `report`.
pub(super) fn plan_dir(
    src: &[Item],
    dst: &[Item],
    opts: &TransferOptions,
    ex: &Excludes,
    report: &mut TransferReport,
) -> DirPlan {
    let mut plan = DirPlan::default();
    let theirs: HashMap<&str, &Item> = dst.iter().map(|i| (i.0.path.as_str(), i)).collect();
    if opts.delete {
        let ours: std::collections::HashSet<&str> = src.iter().map(|i| i.0.path.as_str()).collect();
        for (e, _) in dst {
            if !ours.contains(e.path.as_str()) && !ex.excluded(&e.path) {
                plan.deletes
                    .push((e.path.clone(), e.kind == EntryKind::Dir));
            }
        }
    }
    for s in src {
        let rel = &s.0.path;
        if ex.excluded(rel) {
            continue;
        }
        let d = theirs.get(rel.as_str()).copied();
        let kind_differs = d.is_some_and(|d| d.0.kind != s.0.kind);
        match s.0.kind {
            EntryKind::Dir => {
                if kind_differs {
                    plan.replace.push((rel.clone(), false));
                }
                let dst = match d {
                    Some(d) if !kind_differs => Dst::Present {
                        same_meta: d.0.mode == s.0.mode
                            && (d.0.mtime, d.0.mtime_ns) == (s.0.mtime, s.0.mtime_ns),
                    },
                    _ => {
                        plan.mkdirs.push(rel.clone());
                        Dst::Absent
                    }
                };
                plan.subdirs.push(Pending {
                    rel: rel.clone(),
                    meta: s.0.meta(),
                    dst,
                });
            }
            EntryKind::File => {
                report.files_total += 1;
                report.bytes_total += s.0.size;
                if let Some(d) = d.filter(|_| !kind_differs) {
                    if unchanged(s, d, opts.checksum) {
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

/// What a dry run reports for one directory's plan; `deleted(rel, dir)`
/// counts the files a deletion would take away.
pub(super) fn dry_run_note(
    plan: &DirPlan,
    opts: &TransferOptions,
    report: &mut TransferReport,
    deleted: &mut dyn FnMut(&str, bool) -> u64,
) {
    report.dry_run = true;
    let v = opts.verbose;
    for (p, dir) in &plan.deletes {
        report.files_deleted += deleted(p, *dir);
        report.note(v, p, Action::Delete);
    }
    for p in &plan.mkdirs {
        report.note(v, p, Action::Mkdir);
    }
    for (p, e, _) in &plan.files {
        report.files_transferred += 1;
        report.bytes_transferred += e.size;
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

    fn item(path: &str, kind: EntryKind, size: u64, mtime: i64) -> Item {
        (
            Entry {
                path: path.into(),
                kind,
                size,
                mtime,
                mtime_ns: 0,
                mode: 0o644,
                target: None,
                hash: None,
            },
            None,
        )
    }

    fn ctx(delete: bool) -> TransferOptions {
        TransferOptions {
            delete,
            ..TransferOptions::default()
        }
    }

    #[test]
    fn one_directory_is_planned_from_both_sides() {
        let src = vec![
            item("a", EntryKind::File, 1, 5),
            item("b", EntryKind::File, 2, 5),
            item("d", EntryKind::Dir, 0, 5),
            item("n", EntryKind::Dir, 0, 5),
            item("x", EntryKind::File, 1, 5),
        ];
        let dst = vec![
            item("a", EntryKind::File, 1, 5),
            item("b", EntryKind::File, 2, 6),
            item("d", EntryKind::Dir, 0, 5),
            item("x", EntryKind::Dir, 0, 5),
            item("z", EntryKind::File, 1, 5),
        ];
        let ex = Excludes::new(&[]).unwrap();
        let mut report = TransferReport::default();
        let plan = plan_dir(&src, &dst, &ctx(true), &ex, &mut report);
        assert_eq!(plan.deletes, vec![("z".to_string(), false)]);
        assert_eq!(plan.replace, vec![("x".to_string(), true)]);
        assert_eq!(plan.mkdirs, vec!["n".to_string()]);
        let files: Vec<&str> = plan.files.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(files, vec!["b", "x"]);
        let subdirs: Vec<(&str, Dst)> = plan
            .subdirs
            .iter()
            .map(|p| (p.rel.as_str(), p.dst))
            .collect();
        assert_eq!(
            subdirs,
            vec![("d", Dst::Present { same_meta: true }), ("n", Dst::Absent)]
        );
        assert_eq!((report.files_total, report.files_skipped), (3, 1));
        assert!(needs_meta(&plan.subdirs[1], &DirPlan::default()));
        assert!(!needs_meta(&plan.subdirs[0], &DirPlan::default()));
        let unchanged =
            DirPlan::unchanged(&src, &Excludes::new(&["n".into()]).unwrap(), &mut report);
        assert!(!unchanged.touches_dir());
        assert_eq!(unchanged.subdirs.len(), 1);
        assert_eq!((report.files_total, report.files_skipped), (6, 4));
    }

    #[test]
    fn without_delete_extra_entries_stay_and_excluded_ones_always_do() {
        let src = vec![item("a", EntryKind::File, 1, 5)];
        let dst = vec![
            item("keep.log", EntryKind::File, 1, 5),
            item("z", EntryKind::File, 1, 5),
        ];
        let mut report = TransferReport::default();
        let none = Excludes::new(&[]).unwrap();
        assert!(plan_dir(&src, &dst, &ctx(false), &none, &mut report)
            .deletes
            .is_empty());
        let logs = Excludes::new(&["*.log".into()]).unwrap();
        let plan = plan_dir(&src, &dst, &ctx(true), &logs, &mut report);
        assert_eq!(plan.deletes, vec![("z".to_string(), false)]);
    }
}
