//! The requests of an fts session on the share: stat, list, probe (with
//! the signature for a delta), mkdir, symlink, metadata, put, get and
//! remove. Everything that touches the share goes through the
//! [`crate::store::Store`]; what is policy (read-only, admin) is checked
//! here, content is verified by `transfer`.

use super::acks::{HeldBytes, Staged};
use super::session::{msg_name, Reader, Session, Writer};
use super::LogEvent;
use crate::engine::blocks::{self, AnySig};
use crate::engine::{delta, partial};
use crate::error::{Error, Result};
use crate::model::{ClientState, Entry, EntryKind, Meta};
use crate::proto::{GetResume, Msg, Resume};
use crate::store::{Begin, Store, Upload};
use crate::transfer::{self, Dest, Received, SendError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};

/// What `ls` shows for `rel`: the entry itself for a file, else the
/// directory's entries (the whole tree when `recursive`), with content
/// hashes when `hashes`. Blocking.
pub(crate) fn listing(
    store: &dyn Store,
    rel: &str,
    recursive: bool,
    hashes: bool,
) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    store.list(rel, recursive, hashes, &mut |e| {
        out.push(e);
        Ok(())
    })?;
    Ok(out)
}

/// An upload that arrived whole and checked out, not yet committed: its
/// target still shows the old version.
pub(super) struct Verified {
    pub(super) id: u64,
    pub(super) rel: String,
    /// The path as logs and the client table show it.
    pub(super) shown: String,
    pub(super) meta: Meta,
    pub(super) up: Staged,
}

impl Session {
    pub(super) fn store(&self) -> &dyn Store {
        &*self.opts().store
    }

    pub(super) fn stat(&self, rel: &str) -> Msg {
        match self.store().stat(rel) {
            Ok(entry) => Msg::StatReply { entry },
            Err(e) => Msg::error(None, &e),
        }
    }

    pub(super) fn writable(&self) -> Result<()> {
        if self.opts().read_only {
            return Err(Error::permission("this share is read-only"));
        }
        if let Some(k) = self.key.as_ref().filter(|_| self.read_only) {
            return Err(Error::permission(format!(
                "the key '{}' is read-only on this server",
                k.name
            )));
        }
        Ok(())
    }

    pub(super) async fn list<W: AsyncWrite + Unpin>(
        &self,
        w: &mut Writer<W>,
        rel: &str,
        recursive: bool,
        hashes: bool,
    ) -> Result<()> {
        let store = self.opts().store.clone();
        let rel_s = rel.to_string();
        // Walking (and hashing) a big tree is blocking work; entries come
        // through a short channel and go out in batches as they come, so
        // a huge tree costs the server one batch of memory, not the tree.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<crate::model::Entry>(1024);
        let walker = tokio::task::spawn_blocking(move || {
            store.list(&rel_s, recursive, hashes, &mut |e| {
                tx.blocking_send(e)
                    .map_err(|_| Error::other("listing cancelled"))
            })
        });
        // Batches stay well under MAX_CONTROL: paths are at most MAX_PATH.
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(e) = rx.recv().await {
            bytes += e.path.len() + e.target.as_ref().map_or(0, |t| t.len()) + 200;
            batch.push(e);
            if bytes > 24 * 1024 {
                w.msg(&Msg::ListBatch {
                    entries: std::mem::take(&mut batch),
                })
                .await?;
                bytes = 0;
            }
        }
        let walked = walker
            .await
            .map_err(|e| Error::other(format!("listing failed: {e}")))?;
        if !batch.is_empty() {
            w.msg(&Msg::ListBatch { entries: batch }).await?;
        }
        if let Err(e) = walked {
            return w.msg(&Msg::error(None, &e)).await;
        }
        w.msg(&Msg::ListEnd).await
    }

    /// One directory for a sync: `DirSame` when the client's digest of
    /// its copy matches ours, else the directory's entries. The digest is
    /// computed in a first pass that keeps nothing, so a huge directory
    /// costs no memory either way.
    pub(super) async fn list_dir<W: AsyncWrite + Unpin>(
        &self,
        w: &mut Writer<W>,
        rel: &str,
        digest: Option<String>,
        hashes: bool,
    ) -> Result<()> {
        if let Some(theirs) = digest.filter(|_| !hashes) {
            let store = self.opts().store.clone();
            let rel_s = rel.to_string();
            let ours = tokio::task::spawn_blocking(move || {
                let mut d = crate::model::DirDigest::default();
                store
                    .list_dir(&rel_s, &mut |e| {
                        d.add(&e);
                        Ok(())
                    })
                    .map(|()| d.finish())
            })
            .await
            .map_err(|e| Error::other(format!("listing failed: {e}")))?;
            match ours {
                Ok(ours) if ours == theirs => return w.msg(&Msg::DirSame).await,
                Ok(_) => {}
                Err(e) => return w.msg(&Msg::error(None, &e)).await,
            }
        }
        if let Err(e) = self.store().require_dir(rel) {
            return w.msg(&Msg::error(None, &e)).await;
        }
        self.list(w, rel, false, hashes).await
    }

    /// What is at an upload target: the file, and a resumable partial file.
    /// Answers a probe; with the client's `source` version, also sends the
    /// signature of our file when the client will want to send a delta.
    pub(super) async fn probe<W: AsyncWrite + Unpin>(
        &self,
        w: &mut Writer<W>,
        id: u64,
        rel: &str,
        source: Option<Meta>,
        rolling: bool,
    ) -> Result<()> {
        let reply = self.probe_reply(id, rel, source).await;
        let sign = matches!(
            reply,
            Msg::ProbeReply {
                signature: true,
                ..
            }
        );
        w.msg(&reply).await?;
        if sign {
            self.signature(w, id, rel, rolling).await?;
        }
        Ok(())
    }

    pub(super) async fn probe_reply(&self, id: u64, rel: &str, source: Option<Meta>) -> Msg {
        let store = self.opts().store.clone();
        let rel = rel.to_string();
        let writable = self.writable().is_ok();
        let res = tokio::task::spawn_blocking(move || store.probe(&rel)).await;
        let probe = match res {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Msg::error(Some(id), &e),
            Err(e) => return Msg::error(Some(id), &Error::other(e.to_string())),
        };
        // Same rule as the client's: a partial file of this version means a
        // resume; otherwise an existing file means a delta.
        let resumable = |src: &Meta| {
            probe.partial.as_ref().is_some_and(|p| {
                p.len > 0
                    && (p.source.size, p.source.mtime, p.source.mtime_ns)
                        == (src.size, src.mtime, src.mtime_ns)
            })
        };
        let signature = source.is_some_and(|src| {
            writable
                && src.size > 0
                && !resumable(&src)
                && probe
                    .entry
                    .as_ref()
                    .is_some_and(|e| e.kind == EntryKind::File && e.size > 0)
        });
        Msg::ProbeReply {
            id,
            entry: probe.entry,
            partial: probe.partial,
            signature,
        }
    }

    /// Sends the signature of a file (`SigReply` and the blob, or an
    /// error for `id`) so the client can upload a delta: a block signature,
    /// or with `rolling` fast_rsync's.
    pub(super) async fn signature<W: AsyncWrite + Unpin>(
        &self,
        w: &mut Writer<W>,
        id: u64,
        rel: &str,
        rolling: bool,
    ) -> Result<()> {
        let opened = self.writable().and_then(|()| self.store().open(rel));
        let sig = match opened {
            Ok((mut f, meta)) => tokio::task::spawn_blocking(move || {
                blocks::sign(&mut f, meta.size, rolling).map(|s| (s, meta))
            })
            .await
            .map_err(|e| Error::other(e.to_string()))
            .and_then(|r| r),
            Err(e) => Err(e),
        };
        match sig {
            Ok((bytes, base)) => {
                w.msg(&Msg::SigReply {
                    id,
                    base,
                    len: bytes.len() as u64,
                })
                .await?;
                w.blob(&bytes).await
            }
            Err(e) => w.msg(&Msg::error(Some(id), &e)).await,
        }
    }

    pub(super) fn mkdir(&self, rel: &str) -> Result<()> {
        self.writable()?;
        self.store().mkdir(rel)
    }

    pub(super) fn symlink(&self, rel: &str, link_target: &str) -> Result<()> {
        self.writable()?;
        self.store().symlink(rel, link_target)
    }

    pub(super) fn set_meta(&self, rel: &str, meta: &Meta) -> Result<()> {
        self.writable()?;
        self.store().set_meta(rel, meta)
    }

    /// Prepares where an upload goes. `Err(Ok(reason))` asks the client to
    /// send the whole file again; `Err(Err(e))` fails this file.
    pub(super) async fn prepare_put(
        &self,
        rel: &str,
        meta: &Meta,
        resume: Option<Resume>,
        delta_base: Option<Meta>,
    ) -> Result<(Box<dyn Upload>, Dest, u64), Result<String, Error>> {
        self.writable().map_err(Err)?;
        let store = self.store();
        let begun = |how| -> Result<Box<dyn Upload>, Result<String, Error>> {
            store
                .begin(rel, how)
                .map_err(Err)?
                .ok_or_else(|| Ok("the partial file is busy".to_string()))
        };
        let dest = |up: &dyn Upload| -> Result<Dest, Result<String, Error>> {
            up.writer().map(Dest::new).map_err(Err)
        };
        if let Some(base_meta) = delta_base {
            let (base, now) = store.open(rel).map_err(Err)?;
            if (now.size, now.mtime, now.mtime_ns)
                != (base_meta.size, base_meta.mtime, base_meta.mtime_ns)
            {
                return Err(Ok(
                    "the server's copy changed since its signature was taken".into(),
                ));
            }
            let up = begun(Begin::Temp)?;
            // Unchanged ranges of the base may be copied by the kernel
            // into the file itself.
            let d = Dest {
                out_file: up.file().map_err(Err)?,
                ..dest(&*up)?
            }
            .with_base(base);
            return Ok((up, d, meta.size));
        }
        let Some(res) = resume else {
            let up = begun(Begin::Fresh(*meta))?;
            let d = dest(&*up)?;
            return Ok((up, d, meta.size));
        };
        let found = store.probe(rel).map_err(Err)?.partial;
        let usable = found.is_some_and(|p| {
            (p.source.size, p.source.mtime, p.source.mtime_ns)
                == (meta.size, meta.mtime, meta.mtime_ns)
                && p.len >= res.offset
                && res.offset <= meta.size
        });
        if !usable {
            return Err(Ok("no matching partial file to resume".into()));
        }
        let (store2, rel2, offset) = (self.opts().store.clone(), rel.to_string(), res.offset);
        let prefix = tokio::task::spawn_blocking(move || store2.hash_partial(&rel2, offset))
            .await
            .map_err(|e| Err(Error::other(e.to_string())))?
            .map_err(Err)?;
        if prefix.0 != res.prefix_hash {
            return Err(Ok(
                "the partial file's prefix does not match the source".into()
            ));
        }
        // A session cut off by a stalled link holds its part until its own
        // read times out, within the I/O timeout: a client that retries at
        // once waits for it instead of sending it all again.
        let deadline = Instant::now() + self.opts().io_timeout + Duration::from_secs(1);
        loop {
            if let Some(up) = store
                .begin(
                    rel,
                    Begin::Resume {
                        offset,
                        source: *meta,
                    },
                )
                .map_err(Err)?
            {
                let mut d = dest(&*up)?;
                d.hasher = prefix.1;
                return Ok((up, d, meta.size - offset));
            }
            if Instant::now() >= deadline {
                return Err(Ok("the partial file is busy".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Receives one uploaded file: `Ok` when it arrived whole and checked
    /// out, to be committed (see `acks`), else the reply that says why not
    /// (a failure is logged too).
    pub(super) async fn put<R: AsyncRead + Unpin>(
        &self,
        r: &mut Reader<R>,
        id: u64,
        rel: &str,
        meta: &Meta,
        resume: Option<Resume>,
        delta_base: Option<Meta>,
    ) -> Result<Result<Verified, Msg>> {
        let got = self
            .receive_put(r, id, rel, meta, resume, delta_base)
            .await?;
        if let Err(Msg::Error { message, .. }) = &got {
            self.log(LogEvent::Error {
                client: self.id,
                message: message.clone(),
            });
        }
        Ok(got)
    }

    /// A verified upload has replaced its target: count and log it.
    pub(super) fn uploaded(&self, shown: String, bytes: u64) {
        self.hub().file_done(false);
        self.log(LogEvent::Upload {
            client: self.id,
            path: shown,
            bytes,
        });
    }

    async fn receive_put<R: AsyncRead + Unpin>(
        &self,
        r: &mut Reader<R>,
        id: u64,
        rel: &str,
        meta: &Meta,
        resume: Option<Resume>,
        delta_base: Option<Meta>,
    ) -> Result<Result<Verified, Msg>> {
        let answer = |m: Msg| Ok(Err(m));
        let offset = resume.as_ref().map_or(0, |r| r.offset);
        let is_delta = delta_base.is_some();
        // A small new file waits in memory for its batch's pass (see acks);
        // with --no-fsync there is no pass, it is committed at once.
        let held = match (&resume, &delta_base) {
            (None, None) if self.opts().fsync && self.writable().is_ok() => {
                HeldBytes::reserve(meta.size)
            }
            _ => None,
        };
        let prepared = match held {
            Some(h) => {
                let d = Dest::new(h.writer());
                Ok((Staged::Held(h), d, meta.size))
            }
            None => self
                .prepare_put(rel, meta, resume, delta_base)
                .await
                .map(|(up, d, e)| (Staged::Written(up), d, e)),
        };
        // On failure the chunks still arrive: read them to keep the stream in step.
        let (mut prepared, dest, expect) = match prepared {
            Ok((up, d, e)) => (Ok(up), Some(d), e),
            Err(x) => {
                let expect = if is_delta {
                    meta.size
                } else {
                    meta.size.saturating_sub(offset)
                };
                (Err(x), None, expect)
            }
        };
        let shown = self
            .store()
            .display(rel)
            .unwrap_or_else(|_| rel.to_string());
        self.live.begin(
            ClientState::Uploading,
            &shown,
            meta.size,
            if is_delta { 0 } else { offset },
        );
        let meter = self.hub().meter(&self.live, false);
        let mut saved = 0;
        let received = transfer::receive(r, dest, expect, &|c| meter.chunk(c), &mut saved).await;
        self.live.end();
        let received = received?;
        let computed = match received {
            Received::Interrupted(Msg::PutAbort { id: aid, reason }) if aid == id => {
                if let Ok(up) = &mut prepared {
                    up.discard();
                }
                return answer(match prepared {
                    Err(Err(e)) => Msg::error(Some(id), &e),
                    _ => Msg::error(
                        Some(id),
                        &Error::other(format!("upload aborted by the client: {reason}")),
                    ),
                });
            }
            Received::Interrupted(m) => {
                return Err(Error::protocol(format!(
                    "expected file data, got {}",
                    msg_name(&m)
                )))
            }
            Received::Complete(h) => h,
        };
        let sent_hash = match r.read_msg().await? {
            Msg::PutEnd { id: eid, hash } if eid == id => hash,
            Msg::PutAbort { id: aid, reason } if aid == id => {
                if let Ok(up) = &mut prepared {
                    up.discard();
                }
                return answer(Msg::error(
                    Some(id),
                    &Error::other(format!("upload aborted by the client: {reason}")),
                ));
            }
            m => {
                return Err(Error::protocol(format!(
                    "expected end of file, got {}",
                    msg_name(&m)
                )))
            }
        };
        let mut up = match prepared {
            Ok(p) => p,
            Err(Ok(reason)) => return answer(Msg::Redo { id, reason }),
            Err(Err(e)) => return answer(Msg::error(Some(id), &e)),
        };
        let got_hash = match computed {
            Ok(h) => h,
            Err(e) => {
                up.discard();
                return answer(Msg::error(Some(id), &e.context(format!("'{rel}'"))));
            }
        };
        if got_hash != sent_hash {
            up.discard();
            if is_delta {
                return answer(Msg::Redo {
                    id,
                    reason: "the file rebuilt from the delta did not verify".into(),
                });
            }
            return answer(Msg::error(
                Some(id),
                &Error::integrity(format!(
                    "'{rel}': integrity check failed (BLAKE3 of received data does not match the sender's); the old file is untouched"
                )),
            ));
        }
        Ok(Ok(Verified {
            id,
            rel: rel.to_string(),
            shown,
            meta: *meta,
            up,
        }))
    }

    pub(super) async fn get<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &self,
        r: &mut Reader<R>,
        w: &mut Writer<W>,
        id: u64,
        rel: &str,
        resume: Option<GetResume>,
        signature: Option<u64>,
    ) -> Result<()> {
        // The client's signature comes first, whatever happens next.
        let sig = match signature {
            Some(len) => Some(r.read_blob(len, delta::MAX_SIGNATURE).await?),
            None => None,
        };
        let (mut file, meta) = match self.store().open(rel) {
            Ok(x) => x,
            Err(e) => return self.refuse_get(w, id, e).await,
        };
        // A block signature (what clients send first) or an rsync one.
        let sig = match sig.map(blocks::parse_any).transpose() {
            Ok(s) => s,
            Err(e) => return self.refuse_get(w, id, e).await,
        };
        // Resume only from a prefix of this very version of the file.
        let mut start = (0, blake3::Hasher::new());
        if let Some(res) = resume {
            let same = (res.source.size, res.source.mtime, res.source.mtime_ns)
                == (meta.size, meta.mtime, meta.mtime_ns);
            if same && res.offset <= meta.size {
                let off = res.offset;
                let (f, prefix) = tokio::task::spawn_blocking(move || {
                    let prefix = partial::hash_prefix(&mut file, off);
                    (file, prefix)
                })
                .await
                .map_err(|e| Error::other(e.to_string()))?;
                file = f;
                if let Ok((hex, hasher)) = prefix {
                    if hex == res.prefix_hash {
                        start = (off, hasher);
                    }
                }
            }
        }
        let delta = start.0 == 0 && sig.is_some();
        // A block delta is planned before anything is sent: when data
        // moved, the client is asked for an rsync signature instead.
        let mut plan = None;
        let (sig, bsig) = match sig {
            Some(AnySig::Blocks(b)) => (None, Some(b)),
            s => (s, None),
        };
        if let (true, Some(bsig)) = (delta, bsig) {
            let (size, version) = (meta.size, file.version());
            let (f, planned) = tokio::task::spawn_blocking(move || {
                let p = blocks::plan(&mut file, size, &bsig);
                (file, p)
            })
            .await
            .map_err(|e| Error::other(e.to_string()))?;
            file = f;
            match planned {
                Ok(p) if p.needs_search => {
                    return w
                        .msg(&Msg::Redo {
                            id,
                            reason: "data moved; an rsync signature finds it".into(),
                        })
                        .await;
                }
                Ok(p) => plan = Some((std::sync::Arc::new(p), version)),
                Err(e) => return self.refuse_get(w, id, e.context(format!("'{rel}'"))).await,
            }
        }
        w.msg(&Msg::FileHeader {
            id,
            meta,
            offset: start.0,
            delta,
        })
        .await?;
        let opts = self.opts().send;
        let shown = self
            .store()
            .display(rel)
            .unwrap_or_else(|_| rel.to_string());
        self.live.begin(
            ClientState::Downloading,
            &shown,
            meta.size,
            if delta { 0 } else { start.0 },
        );
        let meter = self.hub().meter(&self.live, true);
        let progress = |c: &crate::proto::Chunk| meter.chunk(c);
        let sent = match (sig, plan) {
            (Some(AnySig::Rolling(sig)), _) if delta => {
                transfer::send_delta(w, file, meta.size, sig, opts, &progress).await
            }
            (_, Some((plan, version))) => {
                transfer::send_planned(w, file, plan, version, opts, &progress).await
            }
            _ => {
                transfer::send_file(w, file, None, start.0, meta.size, start.1, opts, &progress)
                    .await
            }
        };
        self.live.end();
        match sent {
            Ok((hash, st)) => {
                w.msg(&Msg::FileEnd {
                    id,
                    hash,
                    literal: st.literal,
                    matched: st.matched,
                })
                .await?;
                self.hub().file_done(true);
                self.log(LogEvent::Download {
                    client: self.id,
                    path: shown,
                    bytes: meta.size,
                });
                Ok(())
            }
            Err(SendError::Local(e)) => self.refuse_get(w, id, e.context(format!("'{rel}'"))).await,
            Err(SendError::Net(e)) => Err(e),
        }
    }

    /// A download that failed on our side (not found, permission, not a
    /// regular file, a read error…): logged like a failed upload, then
    /// told to the client, whose session goes on.
    async fn refuse_get<W: AsyncWrite + Unpin>(
        &self,
        w: &mut Writer<W>,
        id: u64,
        e: Error,
    ) -> Result<()> {
        self.log(LogEvent::Error {
            client: self.id,
            message: e.message.clone(),
        });
        w.msg(&Msg::error(Some(id), &e)).await
    }

    pub(super) fn remove(&self, id: u64, rel: &str, recursive: bool) -> Msg {
        let removed = self.writable().and_then(|()| {
            if !self.admin {
                return Err(self.admin_needed("removing files"));
            }
            self.store().remove(rel, recursive)
        });
        match removed {
            Ok((files, dirs)) => {
                self.log(LogEvent::Delete {
                    client: self.id,
                    path: rel.into(),
                    files,
                    dirs,
                });
                Msg::Removed { id, files, dirs }
            }
            Err(e) => Msg::error(Some(id), &e),
        }
    }
}
