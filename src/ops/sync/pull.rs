//! A sync whose destination is local: each wave's deletions, directories
//! and links made here, its files fetched as one download run, and nothing
//! below the destination touched through a symlink.

use super::plan::{dry_run_note, needs_meta, DirPlan};
use super::{
    digest, local_dirs_streamed, mirror, next_local, sides, Asked, Dst, Mirror, Pending, Sides,
};
use crate::client::{Action, Client, GetOp};
use crate::error::{Error, Result};
use crate::guard;
use crate::model::EntryKind;
use crate::ops::get::{get_how, run_get};
use crate::ops::report::{FileError, TransferReport};
use crate::ops::{join_remote, Context, Excludes};
use crate::remote::Remote;
use std::path::{Path, PathBuf};
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
    let top_dst = match std::fs::metadata(dst) {
        Ok(md) if md.is_dir() => Dst::Present { same_meta: false },
        Ok(_) => {
            return Err(Error::usage(format!(
                "{}: exists and is not a directory",
                dst.display()
            )))
        }
        Err(_) => Dst::Absent,
    };
    let start_at = Pending {
        rel: String::new(),
        meta: top.meta(),
        dst: top_dst,
    };
    let mut pull = Pull {
        ctx,
        client,
        top: top.path.clone(),
        dst,
        made_top: false,
    };
    mirror(&mut pull, start_at, ctx, ex, &mut report).await?;
    if !ctx.transfer.dry_run {
        if let Err(e) = crate::fsutil::apply_meta_path(dst, &top.meta()) {
            report.errors.push(FileError::new(
                dst.display().to_string(),
                Error::local_io(dst, e),
            ));
        }
    }
    report.relativize(&top.path);
    report.finish(Some(&pull.client), start);
    let _ = pull.client.close().await;
    Ok(report)
}

struct Pull<'a> {
    ctx: &'a Context,
    client: Client,
    /// The remote directory being mirrored (as the server names it).
    top: String,
    dst: &'a Path,
    /// DEST itself is made only once the first listing checked out.
    made_top: bool,
}

impl Pull<'_> {
    fn at(&self, rel: &str) -> Result<PathBuf> {
        Ok(crate::paths::components(rel)?
            .iter()
            .fold(self.dst.to_path_buf(), |p, c| p.join(c)))
    }

    /// Does one wave's local work (deletions, directories, links) for
    /// `plan`, and returns its downloads.
    fn local_steps(&self, plan: &DirPlan, report: &mut TransferReport) -> Result<Vec<GetOp>> {
        let v = self.ctx.transfer.verbose;
        let fail = |rel: &str, e: Error, report: &mut TransferReport| {
            report.errors.push(FileError::new(rel, e))
        };
        // Nothing below DEST is written, removed or re-stamped through a
        // symlink, whether this sync made it or it was there before.
        let through_link = |rel: &str, last: bool| guard::no_symlink_below(self.dst, rel, last);
        let deletes = plan.deletes.iter().map(|d| (d, true));
        for ((rel, dir), counted) in deletes.chain(plan.replace.iter().map(|d| (d, false))) {
            let p = self.at(rel)?;
            if let Err(e) = through_link(rel, false) {
                fail(rel, e, report);
                continue;
            }
            let n = if *dir { files_below(&p) } else { 1 };
            let res = if *dir {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            match res {
                Ok(()) if counted => {
                    report.files_deleted += n;
                    report.note(v, rel, Action::Delete);
                }
                Ok(()) => {}
                Err(e) => fail(rel, Error::local_io(&p, e), report),
            }
        }
        for rel in &plan.mkdirs {
            let p = self.at(rel)?;
            if let Err(e) = through_link(rel, true) {
                fail(rel, e, report);
                continue;
            }
            match std::fs::create_dir_all(&p) {
                Ok(()) => report.note(v, rel, Action::Mkdir),
                Err(e) => fail(rel, Error::local_io(&p, e), report),
            }
        }
        for (rel, target) in &plan.links {
            let p = self.at(rel)?;
            if let Err(e) = through_link(rel, false) {
                fail(rel, e, report);
                continue;
            }
            match crate::fsutil::replace_with_symlink(&p, target) {
                Ok(()) => report.note(v, rel, Action::Symlink),
                Err(e) => fail(rel, Error::local_io(&p, e), report),
            }
        }
        let mut ops = Vec::new();
        for (rel, e, _) in &plan.files {
            let local = self.at(rel)?;
            if let Err(err) = through_link(rel, false) {
                fail(rel, err, report);
                continue;
            }
            let how = get_how(self.ctx, &local, e);
            ops.push(GetOp {
                remote: join_remote(&self.top, rel),
                local,
                how,
            });
        }
        Ok(ops)
    }
}

/// Files (not directories) at or below a local path, for the count of a
/// deletion.
fn files_below(p: &Path) -> u64 {
    let (mut n, mut odd) = (0, 0);
    let _ = crate::fsutil::walk(
        p,
        "",
        true,
        &mut |_, e| {
            n += u64::from(e.kind != EntryKind::Dir);
            Ok(())
        },
        &mut |_| odd += 1,
    );
    n + odd
}

impl Mirror for Pull<'_> {
    async fn read(
        &mut self,
        wave: &[Pending],
        _report: &mut TransferReport,
    ) -> Result<Vec<Result<Sides>>> {
        // Local copies are read where they exist; names that are not UTF-8
        // cannot match a remote one and are left alone.
        let rels = wave
            .iter()
            .filter(|p| p.dst != Dst::Absent)
            .map(|p| p.rel.clone())
            .collect();
        let mut rx = local_dirs_streamed(self.dst, rels, self.ctx.observer.clone());
        let checksum = self.ctx.transfer.checksum;
        // As for a push: each directory is asked about once its local side
        // is read, so the server lists while this side still reads.
        let mut locals = Vec::with_capacity(wave.len());
        let mut asked = Asked::default();
        for p in wave {
            let local = match p.dst {
                Dst::Absent => Ok(Vec::new()),
                Dst::Present { .. } => next_local(&mut rx).await?.0,
            };
            if let Ok(l) = &local {
                let d = (p.dst != Dst::Absent && !checksum).then(|| digest(l));
                let dir = join_remote(&self.top, &p.rel);
                asked.ask(&mut self.client, &dir, d, checksum).await?;
            }
            locals.push(local);
        }
        let mut replies = asked.answers(&mut self.client).await?.into_iter();
        let mut out = Vec::with_capacity(wave.len());
        for (p, local) in wave.iter().zip(locals) {
            let local = match local {
                Ok(l) => l,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            let reply = replies
                .next()
                .ok_or_else(|| Error::other("a directory listing went missing"))?;
            let dir = join_remote(&self.top, &p.rel);
            out.push(sides(local, reply, &dir, &p.rel, true)?);
        }
        Ok(out)
    }

    async fn apply(
        &mut self,
        plans: Vec<(Pending, DirPlan)>,
        report: &mut TransferReport,
    ) -> Result<()> {
        let ctx = self.ctx;
        if ctx.transfer.dry_run {
            for (_, plan) in &plans {
                dry_run_note(
                    plan,
                    &ctx.transfer,
                    report,
                    &mut |rel, dir| match (dir, self.at(rel)) {
                        (true, Ok(p)) => files_below(&p),
                        _ => 1,
                    },
                );
            }
            return Ok(());
        }
        if !self.made_top {
            std::fs::create_dir_all(self.dst).map_err(|e| Error::local_io(self.dst, e))?;
            self.made_top = true;
        }
        let mut ops = Vec::new();
        for (_, plan) in &plans {
            ops.append(&mut self.local_steps(plan, report)?);
        }
        if !ops.is_empty() {
            let files = ops.len() as u64;
            let size = plans
                .iter()
                .flat_map(|(_, p)| &p.files)
                .map(|(_, e, _)| e.size)
                .sum();
            ctx.observer.batch_grow(files, size);
            run_get(&mut self.client, ctx, ops, report).await?;
        }
        // A directory's own times last: what was done in it changed them.
        for (p, plan) in &plans {
            if p.rel.is_empty() || !needs_meta(p, plan) {
                continue;
            }
            // (A directory that is a symlink was reported when it was made.)
            if guard::no_symlink_below(self.dst, &p.rel, true).is_err() {
                continue;
            }
            let path = self.at(&p.rel)?;
            if let Err(e) = crate::fsutil::apply_meta_path(&path, &p.meta) {
                report
                    .errors
                    .push(FileError::new(p.rel.clone(), Error::local_io(&path, e)));
            }
        }
        Ok(())
    }
}
