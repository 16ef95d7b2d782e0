//! A sync whose destination is remote: the plan carried out as one
//! pipelined series of upload steps.

use super::plan::{dry_run_report, plan_sync};
use super::{local_tree, remote_tree, Tree};
use crate::client::{PutHow, PutOp};
use crate::error::{Error, Result};
use crate::model::EntryKind;
use crate::ops::put::run_put;
use crate::ops::report::{not_utf8, TransferReport};
use crate::ops::{join_remote, Context, Excludes};
use crate::remote::Remote;
use std::path::Path;
use std::time::Instant;

pub(super) async fn push_once(
    ctx: &Context,
    src: &Path,
    dst: &Remote,
    ex: &Excludes,
) -> Result<TransferReport> {
    let start = Instant::now();
    let mut report = TransferReport::default();
    let md = std::fs::metadata(src).map_err(|e| Error::local_io(src, e))?;
    if !md.is_dir() {
        return Err(Error::usage(format!(
            "{}: sync mirrors a directory (use put for one file)",
            src.display()
        )));
    }
    let (local, odd) = local_tree(src, ex, &*ctx.observer)?;
    report.files_total += odd.len() as u64;
    report.errors.extend(odd.iter().map(|p| not_utf8(p)));
    let mut client = ctx.connect(dst).await?;
    client.syncing().await?;
    if client.info.read_only && !ctx.transfer.dry_run {
        return Err(Error::permission(format!(
            "{}: the share is read-only",
            client.server()
        )));
    }
    let base = crate::paths::normalize(&dst.path).map_err(|e| e.context(&dst.path))?;
    let dst_entry = client.stat(&dst.path).await?;
    let remote = match &dst_entry {
        None => Tree::new(),
        Some(e) if e.kind == EntryKind::Dir => remote_tree(
            client.list(&dst.path, true, ctx.transfer.checksum).await?,
            &e.path,
            ex,
        )?,
        Some(_) => {
            return Err(Error::usage(format!(
                "'{}' exists on the server and is not a directory",
                dst.path
            )))
        }
    };
    let plan = plan_sync(&local, &remote, ctx, &mut report);
    if ctx.transfer.dry_run {
        dry_run_report(&plan, ctx, &mut report);
        report.finish(Some(&client), start);
        let _ = client.close().await;
        return Ok(report);
    }
    if !plan.deletes.is_empty() || !plan.replace.is_empty() {
        client.elevate().await?;
    }
    let at = |rel: &str| join_remote(&base, rel);
    let mut ops = Vec::new();
    if dst_entry.is_none() {
        ops.push(PutOp::Mkdir {
            remote: base.clone(),
        });
    }
    ops.extend(
        plan.deletes
            .iter()
            .chain(&plan.replace)
            .map(|(rel, dir)| PutOp::Remove {
                remote: at(rel),
                recursive: *dir,
            }),
    );
    ops.extend(
        plan.mkdirs
            .iter()
            .map(|rel| PutOp::Mkdir { remote: at(rel) }),
    );
    ops.extend(plan.files.into_iter().filter_map(|(rel, _, local)| {
        local.map(|local| PutOp::File {
            local,
            remote: at(&rel),
            how: PutHow::Full,
        })
    }));
    ops.extend(plan.links.into_iter().map(|(rel, target)| PutOp::Symlink {
        remote: at(&rel),
        target,
    }));
    ops.extend(
        plan.dir_metas
            .into_iter()
            .rev()
            .map(|(rel, meta)| PutOp::DirMeta {
                remote: at(&rel),
                meta,
            }),
    );
    // The share root's own mode and times are the server owner's business.
    if !base.is_empty() && !ops.is_empty() {
        ops.push(PutOp::DirMeta {
            remote: base.clone(),
            meta: crate::fsutil::meta_of(&md),
        });
    }
    ctx.observer.batch_start(
        report.files_total - report.files_skipped,
        report.bytes_total,
    );
    run_put(&mut client, ctx, ops, &mut report).await?;
    report.relativize(&base);
    report.finish(Some(&client), start);
    let _ = client.close().await;
    Ok(report)
}
