//! A sync whose destination is local: deletions, directories and links
//! made here, files fetched as one download run, and nothing below the
//! destination touched through a symlink.

use super::plan::{dry_run_report, files_under, plan_sync};
use super::{local_tree, remote_tree};
use crate::client::{Action, GetOp};
use crate::error::{Error, Result};
use crate::guard;
use crate::model::EntryKind;
use crate::ops::get::{get_how, run_get};
use crate::ops::report::{FileError, TransferReport};
use crate::ops::{join_remote, Context, Excludes};
use crate::remote::Remote;
use std::path::Path;
use std::time::Instant;

pub(super) async fn pull_once(
    ctx: &Context,
    src: &Remote,
    dst: &Path,
    ex: &Excludes,
) -> Result<TransferReport> {
    let start = Instant::now();
    let mut report = TransferReport::default();
    let mut client = ctx.connect(src).await?;
    client.syncing().await?;
    let top = client.stat(&src.path).await?.ok_or_else(|| {
        Error::not_found(format!("{}: no such directory on the server", src.path))
    })?;
    guard::check_stat_reply(&src.path, &top)?;
    if top.kind != EntryKind::Dir {
        return Err(Error::usage(format!(
            "'{}' is not a directory (use get for one file)",
            src.path
        )));
    }
    let listing = client.list(&top.path, true, ctx.transfer.checksum).await?;
    guard::check_listing(&top.path, &listing, true)?;
    let remote = remote_tree(listing, &top.path, ex)?;
    if dst.exists() && !dst.is_dir() {
        return Err(Error::usage(format!(
            "{}: exists and is not a directory",
            dst.display()
        )));
    }
    // Local names that are not UTF-8 cannot match a remote one: left alone.
    let (local, _) = local_tree(dst, ex, &*ctx.observer)?;
    let plan = plan_sync(&remote, &local, ctx, &mut report);
    if ctx.transfer.dry_run {
        dry_run_report(&plan, ctx, &mut report);
        report.finish(Some(&client), start);
        let _ = client.close().await;
        return Ok(report);
    }
    let at = |rel: &str| {
        crate::paths::components(rel).map(|c| c.iter().fold(dst.to_path_buf(), |p, c| p.join(c)))
    };
    std::fs::create_dir_all(dst).map_err(|e| Error::local_io(dst, e))?;
    let local_fail = |rel: &str, e: Error, report: &mut TransferReport| {
        report.errors.push(FileError::new(rel, e))
    };
    // Nothing below DEST is written, removed or re-stamped through a
    // symlink, whether this sync made it or it was there before.
    let through_link = |rel: &str, last: bool| guard::no_symlink_below(dst, rel, last);
    for (rel, dir) in plan.deletes.iter().chain(&plan.replace) {
        let p = at(rel)?;
        if let Err(e) = through_link(rel, false) {
            local_fail(rel, e, &mut report);
            continue;
        }
        let n = files_under(&local, rel);
        let res = if *dir {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match res {
            Ok(()) if plan.deletes.iter().any(|(r, _)| r == rel) => {
                report.files_deleted += n;
                report.note(ctx.transfer.verbose, rel, Action::Delete);
            }
            Ok(()) => {}
            Err(e) => local_fail(rel, Error::local_io(&p, e), &mut report),
        }
    }
    for rel in &plan.mkdirs {
        let p = at(rel)?;
        if let Err(e) = through_link(rel, true) {
            local_fail(rel, e, &mut report);
            continue;
        }
        match std::fs::create_dir_all(&p) {
            Ok(()) => report.note(ctx.transfer.verbose, rel, Action::Mkdir),
            Err(e) => local_fail(rel, Error::local_io(&p, e), &mut report),
        }
    }
    for (rel, target) in &plan.links {
        let p = at(rel)?;
        if let Err(e) = through_link(rel, false) {
            local_fail(rel, e, &mut report);
            continue;
        }
        match crate::fsutil::replace_with_symlink(&p, target) {
            Ok(()) => report.note(ctx.transfer.verbose, rel, Action::Symlink),
            Err(e) => local_fail(rel, Error::local_io(&p, e), &mut report),
        }
    }
    let mut ops = Vec::new();
    for (rel, e, _) in plan.files {
        let local = at(&rel)?;
        if let Err(err) = through_link(&rel, false) {
            local_fail(&rel, err, &mut report);
            continue;
        }
        let how = get_how(ctx, &local, &e);
        ops.push(GetOp {
            remote: join_remote(&top.path, &rel),
            local,
            how,
        });
    }
    ctx.observer
        .batch_start(ops.len() as u64, report.bytes_total);
    run_get(&mut client, ctx, ops, &mut report).await?;
    for (rel, meta) in plan.dir_metas.into_iter().rev() {
        let p = at(&rel)?;
        // (A directory that is a symlink was reported when it was made.)
        if through_link(&rel, true).is_err() {
            continue;
        }
        if let Err(e) = crate::fsutil::apply_meta_path(&p, &meta) {
            report
                .errors
                .push(FileError::new(rel, Error::local_io(&p, e)));
        }
    }
    if let Err(e) = crate::fsutil::apply_meta_path(dst, &top.meta()) {
        report.errors.push(FileError::new(
            dst.display().to_string(),
            Error::local_io(dst, e),
        ));
    }
    report.relativize(&top.path);
    report.finish(Some(&client), start);
    let _ = client.close().await;
    Ok(report)
}
