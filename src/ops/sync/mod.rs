//! `fts sync SRC DST`: DST becomes a mirror of SRC's contents, one side
//! remote. Like rsync's incremental recursion, the trees are never held
//! whole: the sync walks them a wave of directories at a time. For each
//! directory it reads both sides' direct entries (a remote directory whose
//! [`crate::model::DirDigest`] matches the local copy costs one digest, not
//! a listing), decides what changes there (`plan`), and carries that out
//! (`push` uploads to a remote DST, `pull` downloads into a local one)
//! before the next wave. Memory is bounded by the widest directory and the
//! directories waiting to be visited, not by the file count.

mod plan;
mod pull;
mod push;

use super::report::{not_utf8, FileError, TransferReport};
use super::{Context, Excludes};
use crate::client::{Client, Observer};
use crate::error::{Error, Result};
use crate::model::{DirDigest, Entry, Meta};
use plan::DirPlan;
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

/// One entry of a directory on one side, its path relative to the top of
/// the sync, and (on the local side) where it is on disk.
pub(super) type Item = (Entry, Option<PathBuf>);

/// A directory still to visit.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    /// Relative to the top of the sync; `""` is the top.
    pub(super) rel: String,
    /// The source's metadata for it, given to the destination's copy once
    /// its contents are in place.
    pub(super) meta: Meta,
    pub(super) dst: Dst,
}

/// What the destination has where a directory is to be mirrored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dst {
    /// Nothing (or it is being made now): everything below is new, and
    /// there is nothing to read on the destination side.
    Absent,
    /// A directory; `same_meta` when its mode and mtime already match.
    Present { same_meta: bool },
}

/// Both sides of one directory, as read for a wave. `dst` is `None` when
/// the two are known to be the same (the digests matched).
pub(super) struct Sides {
    pub(super) src: Vec<Item>,
    pub(super) dst: Option<Vec<Item>>,
}

/// Directories visited per wave at least: one round trip lists them all.
const WAVE: usize = 64;
/// Entries a wave aims at: small directories make longer waves, so the
/// pause between two waves (the last acknowledgements of one) comes less
/// often. A wave is sized from the one before it, at most twice as long
/// and never more than [`WAVE_MAX`] directories, so wide directories after
/// many small ones hold at most 4 × what 64 of them did.
const WAVE_ENTRIES: usize = 16_384;
const WAVE_MAX: usize = 4 * WAVE;

/// The two ends of a sync, as the walk sees them.
trait Mirror {
    /// Reads both sides of each directory of the wave (in order); an error
    /// for one directory leaves that directory and what is below it out.
    async fn read(
        &mut self,
        wave: &[Pending],
        report: &mut TransferReport,
    ) -> Result<Vec<Result<Sides>>>;
    /// The wave after the one about to be applied (the same one `read`
    /// gets next, unless applying fails): a side may start reading it.
    fn upcoming(&mut self, _wave: &[Pending]) {}
    /// Carries out (or, in a dry run, reports) the wave's plans.
    async fn apply(
        &mut self,
        plans: Vec<(Pending, DirPlan)>,
        report: &mut TransferReport,
    ) -> Result<()>;
}

/// Walks both trees from `top`, one wave of directories at a time, in
/// name order (depth first, as `fsutil::walk` lists).
async fn mirror(
    m: &mut impl Mirror,
    top: Pending,
    ctx: &Context,
    ex: &Excludes,
    report: &mut TransferReport,
) -> Result<()> {
    let mut stack = vec![top];
    let mut wave_len = WAVE;
    while !stack.is_empty() {
        let n = stack.len().saturating_sub(wave_len);
        let wave: Vec<Pending> = stack.drain(n..).rev().collect();
        let sides = m.read(&wave, report).await?;
        let entries: usize = sides.iter().flatten().map(|s| s.src.len()).sum();
        wave_len = (WAVE_ENTRIES * wave.len() / entries.max(1))
            .min(2 * wave_len)
            .clamp(WAVE, WAVE_MAX);
        let mut plans = Vec::with_capacity(wave.len());
        let mut next = Vec::new();
        for (p, side) in wave.into_iter().zip(sides) {
            match side {
                Err(e) => report.errors.push(FileError::new(shown(&p.rel), e)),
                Ok(Sides { src, dst }) => {
                    let mut plan = match dst {
                        None => DirPlan::unchanged(&src, ex, report),
                        Some(dst) => plan::plan_dir(&src, &dst, &ctx.transfer, ex, report),
                    };
                    next.append(&mut plan.subdirs);
                    plans.push((p, plan));
                }
            }
        }
        stack.extend(next.into_iter().rev());
        let n = stack.len().saturating_sub(wave_len);
        let upcoming: Vec<Pending> = stack[n..].iter().rev().cloned().collect();
        m.upcoming(&upcoming);
        m.apply(plans, report).await?;
    }
    Ok(())
}

/// How a relative path is named in errors (`.` for the top).
fn shown(rel: &str) -> String {
    if rel.is_empty() {
        ".".into()
    } else {
        rel.to_string()
    }
}

/// The direct entries of local directory `rel` below `root`, in name
/// order, with their paths relative to `root`. Names that are not UTF-8
/// (the protocol carries UTF-8 names only) are reported and left out.
fn local_dir(
    root: &Path,
    rel: &str,
    obs: &dyn Observer,
    report: &mut Vec<FileError>,
) -> Result<Vec<Item>> {
    let dir = crate::paths::components(rel)?
        .iter()
        .fold(root.to_path_buf(), |p, c| p.join(c));
    let mut out = Vec::new();
    crate::fsutil::walk(
        &dir,
        rel,
        false,
        &mut |p, e| {
            out.push((e, Some(p)));
            Ok(())
        },
        &mut |p| {
            obs.notice(&format!("skipping {} (name is not UTF-8)", p.display()));
            report.push(not_utf8(p));
        },
    )?;
    Ok(out)
}

/// One local directory of a wave: its entries (or the error that leaves
/// it out), and the non-UTF-8 names met in it (errors of the run).
type LocalDir = (Result<Vec<Item>>, Vec<FileError>);

/// The local directories of a wave, read one after the other on a blocking
/// thread and handed over as each is done, so that the caller can act on
/// the first (ask the server about it) while the rest are being read.
fn local_dirs_streamed(
    root: &Path,
    rels: Vec<String>,
    obs: std::sync::Arc<dyn Observer>,
) -> tokio::sync::mpsc::Receiver<LocalDir> {
    let root = root.to_path_buf();
    let (tx, rx) = tokio::sync::mpsc::channel(WAVE);
    tokio::task::spawn_blocking(move || {
        for rel in rels {
            let mut odd = Vec::new();
            let dir = local_dir(&root, &rel, &*obs, &mut odd);
            if tx.blocking_send((dir, odd)).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next directory from [`local_dirs_streamed`].
async fn next_local(rx: &mut tokio::sync::mpsc::Receiver<LocalDir>) -> Result<LocalDir> {
    rx.recv()
        .await
        .ok_or_else(|| Error::other("reading local directories failed"))
}

/// Longest an answer about a directory waits unread while this side
/// reads further local directories. An answer bigger than the socket
/// buffers blocks the server until it is read, and a blocked server hears
/// nothing (not even keepalives) from this side: reading what has come
/// every so often keeps that far below the server's I/O timeout.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Questions about remote directories in flight on one connection (see
/// [`Client::ask_dir`]), answered in the order asked.
#[derive(Default)]
struct Asked {
    /// Asked and not read yet.
    waiting: usize,
    /// Since when the oldest of them waits.
    since: Option<std::time::Instant>,
    answers: Vec<Result<Option<Vec<Entry>>>>,
}

impl Asked {
    /// Asks about `dir` and sends the question at once.
    async fn ask(
        &mut self,
        client: &mut Client,
        dir: &str,
        digest: Option<String>,
        hashes: bool,
    ) -> Result<()> {
        self.catch_up(client).await?;
        client.ask_dir(dir, digest, hashes).await?;
        client.flush().await?;
        self.waiting += 1;
        self.since.get_or_insert_with(std::time::Instant::now);
        Ok(())
    }

    /// Reads the answers that have waited long enough (see
    /// [`ANSWER_WITHIN`]).
    async fn catch_up(&mut self, client: &mut Client) -> Result<()> {
        if self.since.is_some_and(|t| t.elapsed() >= ANSWER_WITHIN) {
            self.answers.extend(client.dir_answers(self.waiting).await?);
            (self.waiting, self.since) = (0, None);
        }
        Ok(())
    }

    /// Every answer, in the order asked.
    async fn answers(mut self, client: &mut Client) -> Result<Vec<Result<Option<Vec<Entry>>>>> {
        self.answers.extend(client.dir_answers(self.waiting).await?);
        Ok(self.answers)
    }
}

/// The digest of one side's directory, as the server computes its own.
fn digest(items: &[Item]) -> String {
    let mut d = DirDigest::default();
    items.iter().for_each(|(e, _)| d.add(e));
    d.finish()
}

/// One directory's two sides, from its local entries and the server's
/// answer about the same directory `dir` (`None`: the digests matched).
/// `remote_is_src` for a pull. A listing that breaks the rules is an error
/// of the whole sync; an error the server gave is the directory's own.
fn sides(
    local: Vec<Item>,
    reply: Result<Option<Vec<Entry>>>,
    dir: &str,
    rel: &str,
    remote_is_src: bool,
) -> Result<Result<Sides>> {
    Ok(match reply {
        Ok(None) => Ok(Sides {
            src: local,
            dst: None,
        }),
        Ok(Some(entries)) => {
            let remote = remote_dir(entries, dir, rel)?;
            Ok(if remote_is_src {
                Sides {
                    src: remote,
                    dst: Some(local),
                }
            } else {
                Sides {
                    src: local,
                    dst: Some(remote),
                }
            })
        }
        Err(e) => Err(e),
    })
}

/// A remote directory's listing, checked (every entry canonical, directly
/// in `dir`, once) and renamed relative to the top of the sync (`rel` is
/// `dir`'s own relative name).
fn remote_dir(entries: Vec<Entry>, dir: &str, rel: &str) -> Result<Vec<Item>> {
    // The recursive check first: it names what is wrong with an entry
    // below a file or a link more precisely than "not directly in".
    crate::guard::check_listing(dir, &entries, true)?;
    crate::guard::check_listing(dir, &entries, false)?;
    let mut out: Vec<Item> = entries
        .into_iter()
        .map(|mut e| {
            let name = crate::guard::listed_rel(dir, &e.path)?.to_string();
            e.path = crate::fsutil::join_rel(rel, &name);
            Ok((e, None))
        })
        .collect::<Result<_>>()?;
    out.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    Ok(out)
}
