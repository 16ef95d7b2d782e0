//! `fts put`: where each local source lands (scp rules), and the upload
//! rounds that `put` and a sync's push share: probe, choose resume, delta
//! or whole, send, and send again whole what the server could not rebuild.

use super::report::{not_utf8, FileError, TransferReport};
use super::{err_text, join_remote, Context};
use crate::client::{plan_blocks, Client, PutHow, PutOp};
use crate::engine::{blocks, partial};
use crate::error::{Error, Result};
use crate::model::{EntryKind, Meta};
use crate::remote::Remote;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// `fts put`: uploads local files (and with `recursive`, trees).
pub async fn put(
    ctx: &Context,
    sources: &[PathBuf],
    dest: &Remote,
    recursive: bool,
) -> Result<TransferReport> {
    ctx.with_retries(|| put_once(ctx, sources, dest, recursive))
        .await
}

async fn put_once(
    ctx: &Context,
    sources: &[PathBuf],
    dest: &Remote,
    recursive: bool,
) -> Result<TransferReport> {
    let start = Instant::now();
    let mut report = TransferReport::default();
    let mut ok_sources = Vec::new();
    for src in sources {
        match std::fs::metadata(src) {
            Err(e) => report.errors.push(FileError::new(
                src.display().to_string(),
                Error::local_io(src, e),
            )),
            Ok(md) if md.is_dir() && !recursive => report.errors.push(FileError::new(
                src.display().to_string(),
                Error::usage(format!("{}: is a directory (use -r)", src.display())),
            )),
            Ok(md) => ok_sources.push((src.clone(), md)),
        }
    }
    report.files_total = report.errors.len() as u64;
    if ok_sources.is_empty() {
        report.finish(None, start);
        return Ok(report);
    }
    let mut client = ctx.connect(dest).await?;
    if client.info.read_only {
        return Err(Error::permission(format!(
            "{}: the share is read-only",
            client.server()
        )));
    }
    let dest_entry = client.stat(&dest.path).await?;
    let dest_is_dir = matches!(&dest_entry, Some(e) if e.kind == EntryKind::Dir);
    if !dest_is_dir {
        if dest.path.ends_with('/') {
            return Err(Error::not_found(format!(
                "{}: no such directory on the server",
                dest.path
            )));
        }
        if ok_sources.len() > 1 || !report.errors.is_empty() {
            return Err(Error::usage(format!(
                "'{}': the target of several sources must be an existing directory",
                dest.path
            )));
        }
    }
    let mut ops = Vec::new();
    let mut dir_metas = Vec::new();
    for (src, md) in ok_sources {
        let target = if dest_is_dir {
            join_remote(&dest.path, &local_name(&src)?)
        } else {
            dest.path.clone()
        };
        if !md.is_dir() {
            report.files_total += 1;
            report.bytes_total += md.len();
            ops.push(PutOp::File {
                local: src,
                remote: target,
                how: PutHow::Full,
                listed: md.len(),
            });
            continue;
        }
        ops.push(PutOp::Mkdir {
            remote: target.clone(),
        });
        dir_metas.push((target.clone(), crate::fsutil::meta_of(&md)));
        let obs = ctx.observer.clone();
        let mut odd = Vec::new();
        crate::fsutil::walk(
            &src,
            "",
            true,
            &mut |path, e| {
                let remote = join_remote(&target, &e.path);
                match e.kind {
                    EntryKind::Dir => {
                        ops.push(PutOp::Mkdir {
                            remote: remote.clone(),
                        });
                        dir_metas.push((remote, e.meta()));
                    }
                    EntryKind::File => {
                        report.files_total += 1;
                        report.bytes_total += e.size;
                        ops.push(PutOp::File {
                            local: path,
                            remote,
                            how: PutHow::Full,
                            listed: e.size,
                        });
                    }
                    EntryKind::Symlink => obs.notice(&format!(
                        "skipping symlink {} (use sync to mirror links)",
                        path.display()
                    )),
                }
                Ok(())
            },
            &mut |p| {
                obs.notice(&format!("skipping {} (name is not UTF-8)", p.display()));
                odd.push(not_utf8(p));
            },
        )?;
        report.files_total += odd.len() as u64;
        report.errors.append(&mut odd);
    }
    // Directory times last, deepest first, so adding files does not undo them.
    ops.extend(
        dir_metas
            .into_iter()
            .rev()
            .map(|(remote, meta)| PutOp::DirMeta { remote, meta }),
    );
    ctx.observer
        .batch_start(report.files_total, report.bytes_total);
    run_put(&mut client, ctx, ops, &mut report).await?;
    report.finish(Some(&client), start);
    let _ = client.close().await;
    Ok(report)
}

/// The name a local source is known by (`.` and `..` resolved).
fn local_name(p: &Path) -> Result<String> {
    let name = match p.file_name() {
        Some(n) => n.to_os_string(),
        None => std::fs::canonicalize(p)
            .map_err(|e| Error::local_io(p, e))?
            .file_name()
            .map(|n| n.to_os_string())
            .ok_or_else(|| {
                Error::usage(format!("{}: cannot copy the filesystem root", p.display()))
            })?,
    };
    name.into_string()
        .map_err(|_| Error::usage(format!("{}: file name is not UTF-8", p.display())))
}

fn same_version(a: &Meta, b: &Meta) -> bool {
    (a.size, a.mtime, a.mtime_ns) == (b.size, b.mtime, b.mtime_ns)
}

/// Files probed per round at most: each round costs one probe round trip
/// (which brings the signatures too), and holds at most this many
/// signatures in memory. Small files are not probed: a round of them is
/// only bounded by [`ROUND_STEPS`], as a round ends by waiting for all its
/// acknowledgements.
const ROUND: usize = 4096;
const ROUND_STEPS: usize = 65_536;

/// Runs upload steps. With `--parallel`, directories, links and removals
/// go first and in order on one connection, the files are shared out over
/// the connections, and directory times come last.
pub(super) async fn run_put(
    client: &mut Client,
    ctx: &Context,
    ops: Vec<PutOp>,
    report: &mut TransferReport,
) -> Result<()> {
    if ctx.transfer.parallel <= 1 {
        return run_put_on(client, ctx, ops, report).await;
    }
    let (mut first, mut files, mut last) = (Vec::new(), Vec::new(), Vec::new());
    for op in ops {
        match op {
            PutOp::File { .. } => files.push(op),
            PutOp::DirMeta { .. } => last.push(op),
            _ => first.push(op),
        }
    }
    run_put_on(client, ctx, first, report).await?;
    super::parallel::share_out(client, ctx, files, report, async |c, share, rep| {
        run_put_on(c, ctx, share, rep).await
    })
    .await?;
    run_put_on(client, ctx, last, report).await
}

/// Runs upload steps on one connection: probes the targets of big files
/// (pipelined), picks resume, delta or whole for each, fetches
/// signatures, sends, and sends whole again whatever the server could not
/// rebuild.
async fn run_put_on(
    client: &mut Client,
    ctx: &Context,
    ops: Vec<PutOp>,
    report: &mut TransferReport,
) -> Result<()> {
    let mut ops = ops.into_iter().peekable();
    while ops.peek().is_some() {
        let mut probed = 0;
        let mut round: Vec<PutOp> = Vec::new();
        while probed < ROUND && round.len() < ROUND_STEPS {
            let Some(op) = ops.next() else { break };
            if matches!(op, PutOp::File { listed, .. } if listed >= partial::RESUME_MIN) {
                probed += 1;
            }
            round.push(op);
        }
        // Only files big enough for a partial file or a delta to pay off
        // are probed; small ones just go whole.
        let autos: Vec<(usize, Meta)> = (0..round.len())
            .filter_map(|i| match &round[i] {
                PutOp::File {
                    how: PutHow::Full,
                    local,
                    listed,
                    ..
                } if *listed >= partial::RESUME_MIN => std::fs::metadata(local)
                    .ok()
                    .filter(|m| m.len() >= partial::RESUME_MIN)
                    .map(|m| (i, crate::fsutil::meta_of(&m))),
                _ => None,
            })
            .collect();
        // The server sends its signature with the probe's answer when it
        // has a version to delta against: no round trip of its own.
        let targets: Vec<(String, Option<Meta>)> = autos
            .iter()
            .map(|(i, mine)| (file_remote(&round[*i]), ctx.transfer.delta.then_some(*mine)))
            .collect();
        let probes = client.probe(&targets, false).await?;
        let mut deltas = Vec::new();
        for ((i, mine), probe) in autos.into_iter().zip(probes) {
            let (PutOp::File { how, .. }, Ok(probe)) = (&mut round[i], probe) else {
                continue;
            };
            if let Some(p) = probe
                .partial
                .filter(|p| p.len > 0 && same_version(&p.source, &mine))
            {
                *how = PutHow::Resume { offset: p.len };
            } else if let Some((base, signature)) = probe.signature {
                let is_file = probe.entry.is_some_and(|e| e.kind == EntryKind::File);
                if ctx.transfer.delta && is_file && base.size > 0 && mine.size > 0 {
                    *how = PutHow::Delta {
                        base,
                        signature,
                        plan: None,
                    };
                    deltas.push((i, mine));
                }
            }
        }
        plan_deltas(client, &mut round, deltas).await?;
        let locals: Vec<Option<PathBuf>> = round
            .iter()
            .map(|op| match op {
                PutOp::File { local, .. } => Some(local.clone()),
                _ => None,
            })
            .collect();
        let outcomes = client.put_batch(round, &*ctx.observer).await?;
        let mut redo = Vec::new();
        let mut done = Vec::new();
        for (o, local) in outcomes.into_iter().zip(locals) {
            match (o.redo, local) {
                (true, Some(local)) => {
                    ctx.observer.notice(&format!(
                        "{}: {}; sending the whole file",
                        o.path,
                        err_text(&o)
                    ));
                    report.files_redone += 1;
                    redo.push(PutOp::File {
                        local,
                        remote: o.path,
                        how: PutHow::Full,
                        listed: o.bytes,
                    });
                }
                _ => done.push(o),
            }
        }
        report.absorb(done, ctx.transfer.verbose);
        if !redo.is_empty() {
            let again = client.put_batch(redo, &*ctx.observer).await?;
            report.absorb(again, ctx.transfer.verbose);
        }
    }
    Ok(())
}

/// Plans the deltas of a round (`deltas`: their steps and our versions)
/// made against block signatures. Files whose data moved are probed again
/// for a rolling signature, one more round trip for those only; a file
/// that cannot be planned goes whole (a read error shows when it is sent).
async fn plan_deltas(
    client: &mut Client,
    round: &mut [PutOp],
    deltas: Vec<(usize, Meta)>,
) -> Result<()> {
    let mut moved = Vec::new();
    for (i, mine) in deltas {
        let PutOp::File { local, how, .. } = &mut round[i] else {
            continue;
        };
        let PutHow::Delta {
            signature, plan, ..
        } = how
        else {
            continue;
        };
        if !blocks::is_blocks(signature) {
            continue;
        }
        let (path, sig) = (local.clone(), std::mem::take(signature));
        let planned = tokio::task::spawn_blocking(move || plan_blocks(&path, sig)).await;
        match planned {
            Ok(Ok(p)) if !p.plan.needs_search => *plan = Some(Arc::new(p)),
            Ok(Ok(_)) => moved.push((i, mine)),
            _ => *how = PutHow::Full,
        }
    }
    if moved.is_empty() {
        return Ok(());
    }
    let targets: Vec<(String, Option<Meta>)> = moved
        .iter()
        .map(|(i, mine)| (file_remote(&round[*i]), Some(*mine)))
        .collect();
    let probes = client.probe(&targets, true).await?;
    for ((i, _), probe) in moved.into_iter().zip(probes) {
        let PutOp::File { how, .. } = &mut round[i] else {
            continue;
        };
        *how = match probe.ok().and_then(|p| p.signature) {
            Some((base, signature)) if base.size > 0 => PutHow::Delta {
                base,
                signature,
                plan: None,
            },
            _ => PutHow::Full,
        };
    }
    Ok(())
}

/// The remote path of a file step (only file steps are probed).
fn file_remote(op: &PutOp) -> String {
    match op {
        PutOp::File { remote, .. } => remote.clone(),
        _ => String::new(),
    }
}
