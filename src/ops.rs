//! The operations behind the client subcommands: resolve what goes where
//! (scp rules), run it over one connection, and return a typed report.
//!
//! Target rules, as in scp: a source lands *inside* an existing remote (or
//! local) directory under its own name; otherwise the target names the new
//! file or directory. Several sources need an existing directory. A
//! directory source needs `-r`. `HOST:` alone is the share root; getting it
//! with `-r` copies its contents into the local target.

use crate::client::{
    Action, Client, ConnectOptions, Credentials, FileOutcome, GetHow, GetOp, Observer, PutHow,
    PutOp,
};
use crate::engine::partial;
use crate::error::{Error, ErrorKind, Result};
use crate::guard;
use crate::model::{Entry, EntryKind, Meta};
use crate::remote::Remote;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How transfers behave (flags shared by put, get and sync).
#[derive(Debug, Clone)]
pub struct TransferOptions {
    /// Send deltas for files the receiver already has a version of.
    pub delta: bool,
    /// sync: compare contents by hash instead of size + mtime.
    pub checksum: bool,
    /// sync: remove what the source does not have.
    pub delete: bool,
    /// sync: report what would change, change nothing.
    pub dry_run: bool,
    /// sync: glob patterns to leave alone (a pattern without `/` matches a
    /// name at any depth, one with `/` the path from the top).
    pub excludes: Vec<String>,
    /// Retry a lost connection this many times (resuming each time).
    pub retries: u32,
    /// Record one entry per path in the report (`files`).
    pub verbose: bool,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            delta: true,
            checksum: false,
            delete: false,
            dry_run: false,
            excludes: Vec::new(),
            retries: 0,
            verbose: false,
        }
    }
}

/// What every client operation needs.
#[derive(Clone)]
pub struct Context {
    pub connect: ConnectOptions,
    pub creds: Arc<dyn Credentials>,
    pub observer: Arc<dyn Observer>,
    pub transfer: TransferOptions,
}

impl Context {
    /// Connects and logs in, with this context's options and credentials.
    pub async fn connect(&self, remote: &Remote) -> Result<Client> {
        Client::connect(remote, &self.connect, self.creds.clone(), &*self.observer).await
    }

    /// Runs `op` again after a lost connection, up to `--retries` times,
    /// with doubling pauses (1 s … 30 s). Each attempt resumes where the
    /// last one was cut off.
    async fn with_retries<F, Fut>(&self, mut op: F) -> Result<TransferReport>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<TransferReport>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if e.kind == ErrorKind::Connect && attempt <= self.transfer.retries => {
                    let pause = Duration::from_secs(1u64 << (attempt - 1).min(5))
                        .min(Duration::from_secs(30));
                    self.observer.notice(&format!(
                        "{}; retrying in {}s (retry {attempt} of {})",
                        e.message,
                        pause.as_secs(),
                        self.transfer.retries
                    ));
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                Ok(mut r) => {
                    r.attempts = attempt;
                    return Ok(r);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// One file that failed.
#[derive(Debug, Clone, Serialize)]
pub struct FileError {
    pub path: String,
    pub kind: ErrorKind,
    pub message: String,
}

impl FileError {
    fn new(path: impl Into<String>, e: Error) -> Self {
        FileError {
            path: path.into(),
            kind: e.kind,
            message: e.message,
        }
    }
}

/// One path's action, listed with `-v`.
#[derive(Debug, Clone, Serialize)]
pub struct FileAction {
    pub path: String,
    pub action: Action,
    pub bytes: u64,
    pub literal_bytes: u64,
    pub matched_bytes: u64,
}

/// The result of `put`, `get` and `sync`, as printed by `--json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TransferReport {
    pub files_total: u64,
    pub files_transferred: u64,
    /// Unchanged files left alone (sync's quick check or --checksum).
    pub files_skipped: u64,
    pub files_deleted: u64,
    pub bytes_total: u64,
    /// Size of the files transferred.
    pub bytes_transferred: u64,
    pub wire_bytes_sent: u64,
    pub wire_bytes_received: u64,
    /// File bytes sent as data.
    pub literal_bytes: u64,
    /// File bytes the receiver already had (saved by delta).
    pub matched_bytes: u64,
    /// File bytes not sent again because a cut transfer was resumed.
    pub resumed_bytes: u64,
    /// Bytes zstd kept off the wire.
    pub saved_by_compression_bytes: u64,
    /// Files sent whole again after their delta or resume did not verify.
    pub files_redone: u64,
    pub elapsed_s: f64,
    pub dry_run: bool,
    /// Connection attempts (more than 1 after --retries kicked in).
    pub attempts: u32,
    pub errors: Vec<FileError>,
    /// Per-path actions (only with -v).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileAction>,
}

impl TransferReport {
    /// `Ok` when everything went through; otherwise the error that decides
    /// the exit code: the failure's own kind when nothing was transferred
    /// (and all failures agree), else "partial" (exit 9).
    pub fn status(&self) -> Result<()> {
        let Some(first) = self.errors.first() else {
            return Ok(());
        };
        let same_kind = self.errors.iter().all(|e| e.kind == first.kind);
        if self.files_transferred == 0 && same_kind {
            return Err(Error::new(first.kind, first.message.clone()));
        }
        // Errors may be directories and links as well as files.
        let n = self.errors.len();
        Err(Error::new(
            ErrorKind::Partial,
            format!(
                "{n} {} failed; {} of {} files were transferred",
                if n == 1 { "path" } else { "paths" },
                self.files_transferred,
                self.files_total
            ),
        ))
    }

    fn absorb(&mut self, outcomes: Vec<FileOutcome>, verbose: bool) {
        for o in outcomes {
            self.saved_by_compression_bytes += o.stats.compressed_saved;
            if verbose && o.action != Action::Meta {
                self.files.push(FileAction {
                    path: o.path.clone(),
                    action: o.action,
                    bytes: o.bytes,
                    literal_bytes: o.stats.literal,
                    matched_bytes: o.stats.matched,
                });
            }
            match o.result {
                Ok(()) if o.is_file() => {
                    self.files_transferred += 1;
                    self.bytes_transferred += o.bytes;
                    self.literal_bytes += o.stats.literal;
                    self.matched_bytes += o.stats.matched;
                    self.resumed_bytes += o.resumed;
                }
                Ok(()) if o.action == Action::Delete => self.files_deleted += o.deleted.0,
                Ok(()) => {}
                Err(e) => self.errors.push(FileError::new(o.path, e)),
            }
        }
    }

    /// Makes paths relative to the top of a sync (`prefix`), dropping the
    /// entry for the top itself.
    fn relativize(&mut self, prefix: &str) {
        if prefix.is_empty() {
            return;
        }
        let strip = |p: &mut String| {
            if let Some(r) = p.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) {
                *p = r.to_string();
            } else if p == prefix {
                p.clear();
            }
        };
        self.files.iter_mut().for_each(|f| strip(&mut f.path));
        self.files.retain(|f| !f.path.is_empty());
        self.errors.iter_mut().for_each(|e| strip(&mut e.path));
    }

    fn note(&mut self, verbose: bool, path: &str, action: Action) {
        if verbose {
            self.files.push(FileAction {
                path: path.to_string(),
                action,
                bytes: 0,
                literal_bytes: 0,
                matched_bytes: 0,
            });
        }
    }

    /// Share of the transferred bytes that delta transfer did not send.
    pub fn delta_saved_percent(&self) -> f64 {
        let moved = self.literal_bytes + self.matched_bytes;
        if moved == 0 {
            0.0
        } else {
            100.0 * self.matched_bytes as f64 / moved as f64
        }
    }

    fn finish(&mut self, client: Option<&Client>, start: Instant) {
        if let Some(c) = client {
            let (s, r) = c.wire();
            self.wire_bytes_sent = s;
            self.wire_bytes_received = r;
        }
        self.elapsed_s = (start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    }
}

/// Joins a remote directory path and a name.
fn join_remote(base: &str, name: &str) -> String {
    if name.is_empty() {
        return base.trim_end_matches('/').to_string();
    }
    if base.is_empty() || base.ends_with('/') {
        format!("{base}{name}")
    } else {
        format!("{base}/{name}")
    }
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

/// Upload steps per round: each round costs one probe round trip (which
/// brings the signatures too), and holds at most this many signatures in
/// memory.
const ROUND: usize = 512;

/// Runs upload steps: probes the targets of `Auto` files (pipelined),
/// picks resume, delta or whole for each, fetches signatures, sends, and
/// sends whole again whatever the server could not rebuild.
async fn run_put(
    client: &mut Client,
    ctx: &Context,
    ops: Vec<PutOp>,
    report: &mut TransferReport,
) -> Result<()> {
    let mut ops = ops.into_iter().peekable();
    while ops.peek().is_some() {
        let mut round: Vec<PutOp> = ops.by_ref().take(ROUND).collect();
        // Only files big enough for a partial file or a delta to pay off
        // are probed; small ones just go whole.
        let autos: Vec<(usize, Meta)> = (0..round.len())
            .filter_map(|i| match &round[i] {
                PutOp::File {
                    how: PutHow::Full,
                    local,
                    ..
                } => std::fs::metadata(local)
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
        let probes = client.probe(&targets).await?;
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
                    *how = PutHow::Delta { base, signature };
                }
            }
        }
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

/// The remote path of a file step (only file steps are probed).
fn file_remote(op: &PutOp) -> String {
    match op {
        PutOp::File { remote, .. } => remote.clone(),
        _ => String::new(),
    }
}

fn err_text(o: &FileOutcome) -> String {
    o.result
        .as_ref()
        .err()
        .map(|e| e.message.clone())
        .unwrap_or_default()
}

/// Runs downloads, sending whole again what could not be rebuilt.
async fn run_get(
    client: &mut Client,
    ctx: &Context,
    ops: Vec<GetOp>,
    report: &mut TransferReport,
) -> Result<()> {
    let outcomes = client.get_batch(ops.clone(), &*ctx.observer).await?;
    let mut redo = Vec::new();
    let mut done = Vec::new();
    for (o, op) in outcomes.into_iter().zip(ops) {
        if o.redo {
            ctx.observer.notice(&format!(
                "{}: {}; fetching the whole file",
                o.path,
                err_text(&o)
            ));
            report.files_redone += 1;
            redo.push(GetOp {
                how: GetHow::Full,
                ..op
            });
        } else {
            done.push(o);
        }
    }
    report.absorb(done, ctx.transfer.verbose);
    if !redo.is_empty() {
        let again = client.get_batch(redo, &*ctx.observer).await?;
        report.absorb(again, ctx.transfer.verbose);
    }
    Ok(())
}

/// How to fetch a remote file into `local`: continue a partial download of
/// this version, take a delta against an older local copy, or all of it.
fn get_how(ctx: &Context, local: &Path, remote: &Entry) -> GetHow {
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
                            local: path.to_path_buf(),
                            remote,
                            how: PutHow::Full,
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
    let comps = crate::root::components(rel.ok_or_else(unsafe_path)?).map_err(|_| unsafe_path())?;
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

/// `fts ls`: the entries at a remote path.
pub async fn ls(ctx: &Context, remote: &Remote, recursive: bool) -> Result<Vec<Entry>> {
    let mut client = ctx.connect(remote).await?;
    let entry = client.stat(&remote.path).await?.ok_or_else(|| {
        Error::not_found(format!(
            "{}: no such file or directory on the server",
            remote.path
        ))
    })?;
    guard::check_stat_reply(&remote.path, &entry)?;
    let out = if entry.kind == EntryKind::Dir {
        let listing = client.list(&remote.path, recursive, false).await?;
        guard::check_listing(&entry.path, &listing, recursive)?;
        listing
    } else {
        vec![entry]
    };
    let _ = client.close().await;
    Ok(out)
}

/// The result of `fts rm`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RemoveReport {
    pub files_deleted: u64,
    pub dirs_deleted: u64,
    pub errors: Vec<FileError>,
}

impl RemoveReport {
    pub fn status(&self) -> Result<()> {
        match self.errors.as_slice() {
            [] => Ok(()),
            [only] if self.files_deleted + self.dirs_deleted == 0 => {
                Err(Error::new(only.kind, only.message.clone()))
            }
            errs => Err(Error::new(
                ErrorKind::Partial,
                format!("{} of the paths could not be removed", errs.len()),
            )),
        }
    }
}

/// `fts rm`: removes remote paths (admin password required).
pub async fn rm(ctx: &Context, targets: &[Remote], recursive: bool) -> Result<RemoveReport> {
    let first = targets
        .first()
        .ok_or_else(|| Error::usage("nothing to remove"))?;
    if targets.iter().any(|s| s.host_port() != first.host_port()) {
        return Err(Error::usage("all remote paths must be on the same server"));
    }
    let mut client = ctx.connect(first).await?;
    client.elevate().await?;
    let mut report = RemoveReport::default();
    for t in targets {
        match client.remove(&t.path, recursive).await {
            Ok((f, d)) => {
                report.files_deleted += f;
                report.dirs_deleted += d;
            }
            Err(e) if e.kind == ErrorKind::Connect => return Err(e),
            Err(e) => report.errors.push(FileError::new(&t.path, e)),
        }
    }
    let _ = client.close().await;
    Ok(report)
}

/// `--exclude` patterns: one without `/` matches a name at any depth, one
/// with `/` matches the path from the top of the transfer (a leading `/` is
/// ignored). An excluded directory excludes everything below it, and
/// excluded paths on the receiving side are never deleted.
pub struct Excludes {
    names: globset::GlobSet,
    paths: globset::GlobSet,
}

impl Excludes {
    pub fn new(patterns: &[String]) -> Result<Excludes> {
        let mut names = globset::GlobSetBuilder::new();
        let mut paths = globset::GlobSetBuilder::new();
        for p in patterns {
            let p = p.trim_end_matches('/');
            let glob = |s: &str| {
                globset::GlobBuilder::new(s)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| Error::usage(format!("--exclude '{p}': {e}")))
            };
            if p.contains('/') {
                paths.add(glob(p.trim_start_matches('/'))?);
            } else {
                names.add(glob(p)?);
            }
        }
        let build = |b: globset::GlobSetBuilder| b.build().map_err(|e| Error::usage(e.to_string()));
        Ok(Excludes {
            names: build(names)?,
            paths: build(paths)?,
        })
    }

    /// Is `rel` (relative to the top of the transfer) or one of its parents excluded?
    pub fn excluded(&self, rel: &str) -> bool {
        let mut end = 0;
        loop {
            let next = rel[end..].find('/').map(|i| end + i);
            let prefix = &rel[..next.unwrap_or(rel.len())];
            let name = prefix.rsplit('/').next().unwrap_or(prefix);
            if self.names.is_match(name) || self.paths.is_match(prefix) {
                return true;
            }
            match next {
                Some(i) => end = i + 1,
                None => return false,
            }
        }
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

/// A source file left out because its name is not UTF-8: an error of the
/// run (exit 9), not a silent skip.
fn not_utf8(p: &Path) -> FileError {
    FileError::new(
        p.to_string_lossy(),
        Error::other("file name is not UTF-8 (fts transfers UTF-8 names only); not sent"),
    )
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
        crate::root::components(&rel)
            .map_err(|_| Error::protocol(format!("server sent unsafe path {:?}", e.path)))?;
        if !ex.excluded(&rel) {
            e.path = rel.clone();
            t.insert(rel, (e, None));
        }
    }
    Ok(t)
}

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
fn files_under(tree: &Tree, rel: &str) -> u64 {
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
struct SyncPlan {
    /// Topmost paths to delete, and whether each is a directory.
    deletes: Vec<(String, bool)>,
    /// Paths whose type changes: removed before being written anew.
    replace: Vec<(String, bool)>,
    mkdirs: Vec<String>,
    /// Source files to send (relative path, source entry).
    files: Vec<(String, Entry, Option<PathBuf>)>,
    links: Vec<(String, String)>,
    dir_metas: Vec<(String, Meta)>,
    /// Files the deletions take away (what a dry run reports).
    files_deleted: u64,
}

fn plan_sync(src: &Tree, dst: &Tree, ctx: &Context, report: &mut TransferReport) -> SyncPlan {
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

fn dry_run_report(plan: &SyncPlan, ctx: &Context, report: &mut TransferReport) {
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
        (Local(s), R(d)) => ctx.with_retries(|| push_once(ctx, s, d, &ex)).await,
        (R(s), Local(d)) => ctx.with_retries(|| pull_once(ctx, s, d, &ex)).await,
        _ => Err(Error::usage(
            "sync needs exactly one remote side (HOST:PATH or fts://…)",
        )),
    }
}

async fn push_once(
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
    let base = crate::root::normalize(&dst.path).map_err(|e| e.context(&dst.path))?;
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

async fn pull_once(
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
        crate::root::components(rel).map(|c| c.iter().fold(dst.to_path_buf(), |p, c| p.join(c)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_match_names_paths_and_subtrees() {
        let ex = Excludes::new(&[
            "*.log".into(),
            "/build/".into(),
            "cache".into(),
            "a/*/c".into(),
        ])
        .unwrap();
        assert!(ex.excluded("x.log"));
        assert!(ex.excluded("deep/down/x.log"));
        assert!(ex.excluded("build"));
        assert!(ex.excluded("build/out.o"));
        assert!(!ex.excluded("src/build"), "anchored pattern");
        assert!(ex.excluded("cache/x"));
        assert!(ex.excluded("src/cache"));
        assert!(ex.excluded("a/b/c/d"));
        assert!(!ex.excluded("a/b/d"));
        assert!(!ex.excluded("main.rs"));
        assert!(Excludes::new(&["[".into()]).is_err());
    }

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
