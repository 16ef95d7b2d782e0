//! The operations behind the client subcommands: resolve what goes where
//! (scp rules), run it over one connection, and return a typed report.
//!
//! Target rules, as in scp: a source lands *inside* an existing remote (or
//! local) directory under its own name; otherwise the target names the new
//! file or directory. Several sources need an existing directory. A
//! directory source needs `-r`. `HOST:` alone is the share root; getting it
//! with `-r` copies its contents into the local target.

use crate::client::{Client, ConnectOptions, Credentials, FileOutcome, GetOp, Observer, PutOp};
use crate::error::{Error, ErrorKind, Result};
use crate::proto::{Entry, EntryKind, Meta};
use crate::remote::Remote;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// What every client operation needs.
#[derive(Clone)]
pub struct Context {
    pub connect: ConnectOptions,
    pub creds: Arc<dyn Credentials>,
    pub observer: Arc<dyn Observer>,
}

impl Context {
    async fn connect(&self, remote: &Remote) -> Result<Client> {
        Client::connect(remote, &self.connect, self.creds.clone(), &*self.observer).await
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

/// The result of `put`, `get` (and later `sync`), as printed by `--json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TransferReport {
    pub files_total: u64,
    pub files_transferred: u64,
    pub files_skipped: u64,
    pub files_deleted: u64,
    pub bytes_total: u64,
    pub bytes_transferred: u64,
    pub wire_bytes_sent: u64,
    pub wire_bytes_received: u64,
    /// Bytes sent as literal data (everything, until delta transfer lands).
    pub literal_bytes: u64,
    /// Bytes the receiver already had (saved by delta).
    pub matched_bytes: u64,
    pub elapsed_s: f64,
    pub dry_run: bool,
    pub errors: Vec<FileError>,
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
        Err(Error::new(
            ErrorKind::Partial,
            format!(
                "{} of {} files failed; the rest were transferred",
                self.errors.len(),
                self.files_total
            ),
        ))
    }

    fn absorb(&mut self, outcomes: Vec<FileOutcome>) {
        for o in outcomes {
            match o.result {
                Ok(()) if o.is_file => {
                    self.files_transferred += 1;
                    self.bytes_transferred += o.bytes;
                    self.literal_bytes += o.bytes;
                }
                Ok(()) => {}
                Err(e) => self.errors.push(FileError::new(o.path, e)),
            }
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

/// `fts put`: uploads local files (and with `recursive`, trees).
pub async fn put(
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
            });
            continue;
        }
        ops.push(PutOp::Mkdir {
            remote: target.clone(),
        });
        dir_metas.push((target.clone(), crate::fsutil::meta_of(&md)));
        let obs = ctx.observer.clone();
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
                        dir_metas.push((remote, entry_meta(&e)));
                    }
                    EntryKind::File => {
                        report.files_total += 1;
                        report.bytes_total += e.size;
                        ops.push(PutOp::File {
                            local: path.to_path_buf(),
                            remote,
                        });
                    }
                    EntryKind::Symlink => {
                        obs.notice(&format!("skipping symlink {}", path.display()))
                    }
                }
                Ok(())
            },
            &mut |p| obs.notice(&format!("skipping {} (name is not UTF-8)", p.display())),
        )?;
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
    let outcomes = client.put_batch(ops, &*ctx.observer).await?;
    report.absorb(outcomes);
    report.finish(Some(&client), start);
    let _ = client.close().await;
    Ok(report)
}

fn entry_meta(e: &Entry) -> Meta {
    Meta {
        size: e.size,
        mtime: e.mtime,
        mtime_ns: e.mtime_ns,
        mode: e.mode,
    }
}

/// `fts get`: downloads remote files (and with `recursive`, trees).
pub async fn get(
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
                std::fs::create_dir_all(&target).map_err(|e| Error::local_io(&target, e))?;
                dir_metas.push((target.clone(), entry_meta(&entry)));
                for e in client.list(&entry.path, true).await? {
                    let rel = if entry.path.is_empty() {
                        e.path.as_str()
                    } else {
                        match e
                            .path
                            .strip_prefix(&entry.path)
                            .and_then(|r| r.strip_prefix('/'))
                        {
                            Some(r) => r,
                            None => {
                                return Err(Error::protocol(format!(
                                    "listing returned foreign path {}",
                                    e.path
                                )))
                            }
                        }
                    };
                    // The listing is the peer's word: never let it leave `target`.
                    let comps = crate::root::components(rel).map_err(|_| {
                        Error::protocol(format!("server sent unsafe path {:?}", e.path))
                    })?;
                    if comps.is_empty() {
                        return Err(Error::protocol(format!(
                            "server sent unsafe path {:?}",
                            e.path
                        )));
                    }
                    let local = comps.iter().fold(target.clone(), |p, c| p.join(c));
                    match e.kind {
                        EntryKind::Dir => {
                            std::fs::create_dir_all(&local)
                                .map_err(|err| Error::local_io(&local, err))?;
                            dir_metas.push((local, entry_meta(&e)));
                        }
                        EntryKind::File => {
                            report.files_total += 1;
                            report.bytes_total += e.size;
                            ops.push(GetOp {
                                remote: e.path,
                                local,
                            });
                        }
                        EntryKind::Symlink => {
                            ctx.observer.notice(&format!("skipping symlink {}", e.path))
                        }
                    }
                }
            }
            EntryKind::File => {
                report.files_total += 1;
                report.bytes_total += entry.size;
                ops.push(GetOp {
                    remote: entry.path,
                    local: target,
                });
            }
            EntryKind::Symlink => ctx
                .observer
                .notice(&format!("skipping symlink {}", entry.path)),
        }
    }
    ctx.observer
        .batch_start(report.files_total, report.bytes_total);
    let outcomes = client.get_batch(ops, &*ctx.observer).await?;
    report.absorb(outcomes);
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
    let out = if entry.kind == EntryKind::Dir {
        client.list(&remote.path, recursive).await?
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
