//! `fts get`: where each remote source lands, checked against what the
//! server may not make the client do, and the download runs that `get` and
//! a sync's pull share.

use super::report::{FileError, TransferReport};
use super::{err_text, Context};
use crate::client::{Client, GetHow, GetOp};
use crate::engine::partial;
use crate::error::{Error, ErrorKind, Result};
use crate::guard;
use crate::model::{Entry, EntryKind};
use crate::remote::Remote;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `fts get`: downloads remote files (and with `recursive`, trees).
pub async fn get(
    ctx: &Context,
    sources: &[Remote],
    dest: &Path,
    recursive: bool,
) -> Result<TransferReport> {
    ctx.with_retries(|| get_once(ctx, sources, dest, recursive))
        .await
}

/// Maps a listed remote path below `prefix` to a local path below `target`,
/// refusing anything that would leave it (the listing is the peer's word).
fn local_below(target: &Path, prefix: &str, path: &str) -> Result<PathBuf> {
    let rel = if prefix.is_empty() {
        Some(path)
    } else {
        path.strip_prefix(prefix).and_then(|r| r.strip_prefix('/'))
    };
    let unsafe_path = || Error::protocol(format!("server sent unsafe path {path:?}"));
    let comps =
        crate::paths::components(rel.ok_or_else(unsafe_path)?).map_err(|_| unsafe_path())?;
    if comps.is_empty() {
        return Err(unsafe_path());
    }
    Ok(comps.iter().fold(target.to_path_buf(), |p, c| p.join(c)))
}

async fn get_once(
    ctx: &Context,
    sources: &[Remote],
    dest: &Path,
    recursive: bool,
) -> Result<TransferReport> {
    let start = Instant::now();
    let first = sources
        .first()
        .ok_or_else(|| Error::usage("nothing to get"))?;
    if sources.iter().any(|s| s.host_port() != first.host_port()) {
        return Err(Error::usage(
            "all remote sources must be on the same server",
        ));
    }
    let dest_is_dir = dest.is_dir();
    // `dir/` names a directory, like in scp; one that is not there is an
    // error before anything moves, not a failed rename at the end.
    if !dest_is_dir && dest.as_os_str().as_encoded_bytes().ends_with(b"/") {
        return Err(Error::not_found(format!(
            "{}: no such directory",
            dest.display()
        )));
    }
    if sources.len() > 1 && !dest_is_dir {
        return Err(Error::usage(format!(
            "{}: the target of several sources must be an existing directory",
            dest.display()
        )));
    }
    let mut report = TransferReport::default();
    let mut client = ctx.connect(first).await?;
    let mut ops = Vec::new();
    let mut dir_metas = Vec::new();
    for src in sources {
        let entry = match client.stat(&src.path).await {
            Ok(Some(e)) => e,
            Ok(None) => {
                report.files_total += 1;
                report.errors.push(FileError::new(
                    &src.path,
                    Error::not_found(format!(
                        "{}: no such file or directory on the server",
                        src.path
                    )),
                ));
                continue;
            }
            Err(e) if matches!(e.kind, ErrorKind::Connect | ErrorKind::Auth) => return Err(e),
            Err(e) => {
                report.files_total += 1;
                report.errors.push(FileError::new(&src.path, e));
                continue;
            }
        };
        // The answer names the local target: it must be about what we asked.
        guard::check_stat_reply(&src.path, &entry)?;
        let name = entry.path.rsplit('/').next().filter(|n| !n.is_empty());
        let target = match (dest_is_dir, name) {
            (true, Some(n)) => dest.join(n),
            _ => dest.to_path_buf(),
        };
        match entry.kind {
            EntryKind::Dir => {
                if !recursive {
                    report.files_total += 1;
                    report.errors.push(FileError::new(
                        &src.path,
                        Error::usage(format!("{}: is a directory (use -r)", src.path)),
                    ));
                    continue;
                }
                // The whole listing is checked before anything is written.
                let listing = client.list(&entry.path, true, false).await?;
                guard::check_listing(&entry.path, &listing, true)?;
                std::fs::create_dir_all(&target).map_err(|e| Error::local_io(&target, e))?;
                dir_metas.push((target.clone(), entry.meta()));
                for e in listing {
                    let local = local_below(&target, &entry.path, &e.path)?;
                    let through_link = match e.kind {
                        EntryKind::Symlink => Ok(()),
                        kind => guard::listed_rel(&entry.path, &e.path).and_then(|rel| {
                            guard::no_symlink_below(&target, rel, kind == EntryKind::Dir)
                        }),
                    };
                    if let Err(err) = through_link {
                        if e.kind == EntryKind::File {
                            report.files_total += 1;
                            report.bytes_total += e.size;
                        }
                        report.errors.push(FileError::new(&e.path, err));
                        continue;
                    }
                    match e.kind {
                        EntryKind::Dir => {
                            std::fs::create_dir_all(&local)
                                .map_err(|err| Error::local_io(&local, err))?;
                            dir_metas.push((local, e.meta()));
                        }
                        EntryKind::File => {
                            report.files_total += 1;
                            report.bytes_total += e.size;
                            let how = get_how(ctx, &local, &e);
                            ops.push(GetOp {
                                remote: e.path,
                                local,
                                how,
                            });
                        }
                        EntryKind::Symlink => ctx.observer.notice(&format!(
                            "skipping symlink {} (use sync to mirror links)",
                            e.path
                        )),
                    }
                }
            }
            EntryKind::File => {
                report.files_total += 1;
                report.bytes_total += entry.size;
                let how = get_how(ctx, &target, &entry);
                ops.push(GetOp {
                    remote: entry.path,
                    local: target,
                    how,
                });
            }
            EntryKind::Symlink => ctx
                .observer
                .notice(&format!("skipping symlink {}", entry.path)),
        }
    }
    ctx.observer
        .batch_start(report.files_total, report.bytes_total);
    run_get(&mut client, ctx, ops, &mut report).await?;
    for (dir, meta) in dir_metas.into_iter().rev() {
        if let Err(e) = crate::fsutil::apply_meta_path(&dir, &meta) {
            report.errors.push(FileError::new(
                dir.display().to_string(),
                Error::local_io(&dir, e),
            ));
        }
    }
    report.finish(Some(&client), start);
    let _ = client.close().await;
    Ok(report)
}

/// Runs downloads, shared out over the connections of `--parallel`.
pub(super) async fn run_get(
    client: &mut Client,
    ctx: &Context,
    ops: Vec<GetOp>,
    report: &mut TransferReport,
) -> Result<()> {
    super::parallel::share_out(client, ctx, ops, report, async |c, share, rep| {
        run_get_on(c, ctx, share, rep).await
    })
    .await
}

/// Runs a download batch on one connection, and fetches whole again what
/// did not verify as a delta or resume; unless `--no-fsync`, every file is
/// made durable before it counts as done.
async fn run_get_on(
    client: &mut Client,
    ctx: &Context,
    ops: Vec<GetOp>,
    report: &mut TransferReport,
) -> Result<()> {
    let durable = ctx.transfer.fsync;
    let fsynced = |outcomes: &[crate::client::FileOutcome]| {
        let n = outcomes.iter().filter(|o| o.result.is_ok() && o.is_file());
        if durable {
            n.count() as u64
        } else {
            0
        }
    };
    // At most two more rounds: a block delta the server answered with
    // "data moved" asks again with an rsync signature, and a delta or
    // resume that did not verify is fetched whole.
    let mut ops = ops;
    for round in 0..3 {
        let (outcomes, passes) = client
            .get_batch(ops.clone(), &*ctx.observer, durable)
            .await?;
        report.fsync_passes += passes;
        let mut again = Vec::new();
        let mut done = Vec::new();
        for (o, op) in outcomes.into_iter().zip(ops) {
            // Only a block signature may be answered with "data moved".
            if o.rolling && matches!(op.how, GetHow::Delta) && round < 2 {
                again.push(GetOp {
                    how: GetHow::Rolling,
                    ..op
                });
            } else if o.redo && round < 2 {
                ctx.observer.notice(&format!(
                    "{}: {}; fetching the whole file",
                    o.path,
                    err_text(&o)
                ));
                report.files_redone += 1;
                again.push(GetOp {
                    how: GetHow::Full,
                    ..op
                });
            } else {
                done.push(o);
            }
        }
        report.files_fsynced += fsynced(&done);
        report.absorb(done, ctx.transfer.verbose);
        if again.is_empty() {
            break;
        }
        ops = again;
    }
    Ok(())
}

/// How to fetch a remote file into `local`: continue a partial download of
/// this version, take a delta against an older local copy, or all of it.
pub(super) fn get_how(ctx: &Context, local: &Path, remote: &Entry) -> GetHow {
    if remote.size < partial::RESUME_MIN {
        return GetHow::Full;
    }
    match std::fs::symlink_metadata(local) {
        Ok(md) if md.is_file() && md.len() > 0 && ctx.transfer.delta => GetHow::Delta,
        _ => GetHow::Resume {
            source: remote.meta(),
        },
    }
}
