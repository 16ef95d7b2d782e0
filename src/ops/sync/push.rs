//! A sync whose destination is remote: each wave's plans carried out as
//! one pipelined series of upload steps.

use super::plan::{dry_run_note, needs_meta, DirPlan};
use super::{
    digest, local_dirs_streamed, mirror, next_local, sides, Asked, Dst, LocalDir, Mirror, Pending,
    Sides,
};
use crate::client::{Client, PutHow, PutOp};
use crate::error::{Error, Result};
use crate::model::EntryKind;
use crate::ops::put::run_put;
use crate::ops::report::TransferReport;
use crate::ops::{join_remote, Context, Excludes};
use crate::remote::Remote;
use std::collections::HashMap;
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
    let mut client = ctx.connect(dst).await?;
    client.syncing().await?;
    if client.info.read_only && !ctx.transfer.dry_run {
        return Err(Error::permission(format!(
            "{}: the share is read-only",
            client.server()
        )));
    }
    let base = crate::paths::normalize(&dst.path).map_err(|e| e.context(&dst.path))?;
    let top_meta = crate::fsutil::meta_of(&md);
    let top_dst = match client.stat(&dst.path).await? {
        None => Dst::Absent,
        Some(e) if e.kind == EntryKind::Dir => Dst::Present {
            same_meta: (e.mode, e.mtime, e.mtime_ns)
                == (top_meta.mode, top_meta.mtime, top_meta.mtime_ns),
        },
        Some(_) => {
            return Err(Error::usage(format!(
                "'{}' exists on the server and is not a directory",
                dst.path
            )))
        }
    };
    let top = Pending {
        rel: String::new(),
        meta: top_meta,
        dst: top_dst,
    };
    let mut push = Push {
        ctx,
        client,
        src,
        base,
        ahead: None,
    };
    mirror(&mut push, top, ctx, ex, &mut report).await?;
    report.relativize(&push.base);
    report.finish(Some(&push.client), start);
    let _ = push.client.close().await;
    Ok(report)
}

struct Push<'a> {
    ctx: &'a Context,
    client: Client,
    src: &'a Path,
    /// The remote directory that mirrors `src` (canonical).
    base: String,
    /// The local side of the next wave, being read while this one is
    /// applied (the directories it is for, and their listings).
    ahead: Option<(Vec<String>, tokio::sync::mpsc::Receiver<LocalDir>)>,
}

impl Push<'_> {
    fn at(&self, rel: &str) -> String {
        join_remote(&self.base, rel)
    }

    /// Files below a remote directory a dry run would delete.
    async fn files_below(&mut self, rel: &str) -> Result<u64> {
        let path = self.at(rel);
        let listing = self.client.list(&path, true, false).await?;
        Ok(listing.iter().filter(|e| e.kind != EntryKind::Dir).count() as u64)
    }
}

impl Mirror for Push<'_> {
    async fn read(
        &mut self,
        wave: &[Pending],
        report: &mut TransferReport,
    ) -> Result<Vec<Result<Sides>>> {
        let rels: Vec<String> = wave.iter().map(|p| p.rel.clone()).collect();
        let mut rx = match self.ahead.take() {
            Some((read, rx)) if read == rels => rx,
            _ => local_dirs_streamed(self.src, rels, self.ctx.observer.clone()),
        };
        let checksum = self.ctx.transfer.checksum;
        // Each directory the server has is asked about as soon as its local
        // side is read (its digest needs it): the server answers the first
        // while this side still reads the rest, instead of the two taking
        // turns.
        let mut locals = Vec::with_capacity(wave.len());
        let mut asked = Asked::default();
        for p in wave {
            let (local, mut odd) = next_local(&mut rx).await?;
            report.files_total += odd.len() as u64;
            report.errors.append(&mut odd);
            if let (Ok(l), false) = (&local, p.dst == Dst::Absent) {
                let d = (!checksum).then(|| digest(l));
                let dir = self.at(&p.rel);
                asked.ask(&mut self.client, &dir, d, checksum).await?;
            }
            locals.push(local);
        }
        let mut replies = asked.answers(&mut self.client).await?.into_iter();
        let mut out = Vec::with_capacity(wave.len());
        for (p, local) in wave.iter().zip(locals) {
            let src = match local {
                Ok(src) => src,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            if p.dst == Dst::Absent {
                out.push(Ok(Sides {
                    src,
                    dst: Some(Vec::new()),
                }));
                continue;
            }
            let reply = replies
                .next()
                .ok_or_else(|| Error::other("a directory listing went missing"))?;
            out.push(sides(src, reply, &self.at(&p.rel), &p.rel, false)?);
        }
        Ok(out)
    }

    /// Reads the next wave's local directories while this one's uploads
    /// run: the time between two waves (the last acknowledgements of one,
    /// then reading the next) was a quarter of a first copy of many small
    /// files with both cores partly idle.
    fn upcoming(&mut self, wave: &[Pending]) {
        if wave.is_empty() {
            return;
        }
        let rels: Vec<String> = wave.iter().map(|p| p.rel.clone()).collect();
        let rx = local_dirs_streamed(self.src, rels.clone(), self.ctx.observer.clone());
        self.ahead = Some((rels, rx));
    }

    async fn apply(
        &mut self,
        plans: Vec<(Pending, DirPlan)>,
        report: &mut TransferReport,
    ) -> Result<()> {
        let ctx = self.ctx;
        if ctx.transfer.dry_run {
            for (_, plan) in &plans {
                let mut below = HashMap::new();
                for (rel, dir) in &plan.deletes {
                    let n = if *dir {
                        self.files_below(rel).await?
                    } else {
                        1
                    };
                    below.insert(rel.clone(), n);
                }
                dry_run_note(plan, &ctx.transfer, report, &mut |rel, _| {
                    below.get(rel).copied().unwrap_or(0)
                });
            }
            return Ok(());
        }
        if plans
            .iter()
            .any(|(_, p)| !p.deletes.is_empty() || !p.replace.is_empty())
        {
            self.client.elevate().await?;
        }
        let mut ops = Vec::new();
        let (mut files, mut bytes) = (0, 0);
        for (p, plan) in &plans {
            if p.rel.is_empty() && p.dst == Dst::Absent {
                ops.push(PutOp::Mkdir {
                    remote: self.base.clone(),
                });
            }
            ops.extend(
                plan.deletes
                    .iter()
                    .chain(&plan.replace)
                    .map(|(rel, dir)| PutOp::Remove {
                        remote: self.at(rel),
                        recursive: *dir,
                    }),
            );
            ops.extend(plan.mkdirs.iter().map(|rel| PutOp::Mkdir {
                remote: self.at(rel),
            }));
            for (rel, e, local) in &plan.files {
                if let Some(local) = local {
                    files += 1;
                    bytes += e.size;
                    ops.push(PutOp::File {
                        local: local.clone(),
                        remote: self.at(rel),
                        how: PutHow::Full,
                        listed: e.size,
                    });
                }
            }
            ops.extend(plan.links.iter().map(|(rel, target)| PutOp::Symlink {
                remote: self.at(rel),
                target: target.clone(),
            }));
        }
        // A directory's own times last: what was done in it changed them.
        // (The share root's own mode and times are the server owner's.)
        for (p, plan) in &plans {
            if needs_meta(p, plan) && !(p.rel.is_empty() && self.base.is_empty()) {
                ops.push(PutOp::DirMeta {
                    remote: self.at(&p.rel),
                    meta: p.meta,
                });
            }
        }
        if ops.is_empty() {
            return Ok(());
        }
        ctx.observer.batch_grow(files, bytes);
        run_put(&mut self.client, ctx, ops, report).await
    }
}
