//! Uploads: what the server has at each target ([`Client::probe`], which
//! also brings a signature when a delta pays), and upload batches whose
//! requests and file data stream out while the replies are read.

use super::{blocking, reply_error, Action, Client, FileOutcome, Observer, Tls};
use crate::engine::{blocks, delta, partial};
use crate::error::{Error, Result};
use crate::model::{Entry, Meta, PartialInfo};
use crate::proto::{Frame, FrameReader, FrameWriter, Msg, Resume};
use crate::transfer::{self, SendError, SendOptions};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::ReadHalf;
use tokio::sync::mpsc;

/// How one file is uploaded.
#[derive(Debug, Clone)]
pub enum PutHow {
    Full,
    /// The server holds the first `offset` bytes in a partial file.
    Resume {
        offset: u64,
    },
    /// The server's copy (`base`) has this signature. A block signature
    /// comes with the plan made from it (see [`crate::engine::blocks`]).
    Delta {
        base: Meta,
        signature: Vec<u8>,
        plan: Option<Arc<Planned>>,
    },
}

/// One step of an upload batch.
#[derive(Debug, Clone)]
pub enum PutOp {
    Mkdir {
        remote: String,
    },
    File {
        local: PathBuf,
        remote: String,
        how: PutHow,
        /// Its size when it was listed: files too small for a resume or
        /// a delta are not looked at again before they are sent.
        listed: u64,
    },
    Symlink {
        remote: String,
        target: String,
    },
    Remove {
        remote: String,
        recursive: bool,
    },
    DirMeta {
        remote: String,
        meta: Meta,
    },
}

/// What the server has at an upload target.
#[derive(Debug, Clone)]
pub struct Probed {
    pub entry: Option<Entry>,
    pub partial: Option<PartialInfo>,
    /// The base version and its signature, when the server sent one.
    pub signature: Option<(Meta, Vec<u8>)>,
}

/// What a delta upload is sent from.
enum DeltaWith {
    Rolling(fast_rsync::Signature),
    Blocks(Arc<Planned>),
}

/// A block-delta plan of a local file, and the version it was made of.
#[derive(Debug)]
pub struct Planned {
    pub version: Meta,
    pub plan: blocks::Plan,
}

impl AsRef<blocks::Plan> for Planned {
    fn as_ref(&self) -> &blocks::Plan {
        &self.plan
    }
}

/// Plans the upload of `local` against the server's block signature
/// `sig` (one BLAKE3 pass over the file, on both cores).
pub fn plan_blocks(local: &std::path::Path, sig: Vec<u8>) -> Result<Planned> {
    let sig = blocks::parse(sig)?;
    let mut f = File::open(local).map_err(|e| Error::local_io(local, e))?;
    let md = f.metadata().map_err(|e| Error::local_io(local, e))?;
    let version = crate::fsutil::meta_of(&md);
    let plan = blocks::plan(&mut f, version.size, &sig).map_err(|e| e.context(local.display()))?;
    Ok(Planned { version, plan })
}

/// A request the writer has sent, waiting for its reply, or (no `id`) a
/// local failure that never reached the wire.
struct Pending {
    id: Option<u64>,
    outcome: FileOutcome,
}

impl Client {
    /// Sends one request per item (ids in order) while reading the replies
    /// in the same order: `request` builds a request, `reply` turns the
    /// matching answer into a value (or hands back a message that is not
    /// an answer to this request). An error reply for an item is that
    /// item's `Err`.
    async fn pipelined<I, T>(
        &mut self,
        items: &[I],
        what: &str,
        request: impl Fn(u64, &I) -> Msg,
        mut reply: impl AsyncFnMut(
            &mut FrameReader<ReadHalf<Tls>>,
            u64,
            Msg,
        ) -> Result<std::result::Result<T, Msg>>,
    ) -> Result<Vec<Result<T>>> {
        let first = self.ids(items.len());
        let (w, r) = (&mut self.w, &mut self.r);
        let writer = async move {
            for (i, item) in items.iter().enumerate() {
                w.msg(&request(first + i as u64, item)).await?;
            }
            w.flush().await
        };
        let reader = async move {
            let mut out = Vec::with_capacity(items.len());
            for i in 0..items.len() {
                let id = first + i as u64;
                let m = r.read_msg().await?;
                if let Msg::Error {
                    id: Some(rid),
                    kind,
                    message,
                } = &m
                {
                    if *rid == id {
                        out.push(Err(reply_error(*kind, message.clone())));
                        continue;
                    }
                }
                match reply(r, id, m).await? {
                    Ok(v) => out.push(Ok(v)),
                    Err(m) => {
                        return Err(Error::protocol(format!(
                            "unexpected reply to {what}: {m:?}"
                        )))
                    }
                }
            }
            Ok(out)
        };
        Ok(tokio::try_join!(writer, reader)?.1)
    }

    /// What the server has at each target (pipelined). A target given with
    /// the version we would upload also brings the server's signature when
    /// the server sees a delta is the way to go.
    pub async fn probe(
        &mut self,
        targets: &[(String, Option<Meta>)],
        rolling: bool,
    ) -> Result<Vec<Result<Probed>>> {
        self.pipelined(
            targets,
            "probe",
            |id, (path, source)| Msg::Probe {
                id,
                path: path.clone(),
                source: *source,
                rolling,
            },
            async |r, id, m| {
                let Msg::ProbeReply {
                    id: rid,
                    entry,
                    partial,
                    signature,
                } = m
                else {
                    return Ok(Err(m));
                };
                if rid != id {
                    return Ok(Err(Msg::ProbeReply {
                        id: rid,
                        entry,
                        partial,
                        signature,
                    }));
                }
                let signature = if signature {
                    // A signature the server could not make just means no delta.
                    match r.read_msg().await? {
                        Msg::SigReply { id: rid, base, len } if rid == id => {
                            Some((base, r.read_blob(len, delta::MAX_SIGNATURE).await?))
                        }
                        Msg::Error { id: Some(rid), .. } if rid == id => None,
                        m => return Ok(Err(m)),
                    }
                } else {
                    None
                };
                Ok(Ok(Probed {
                    entry,
                    partial,
                    signature,
                }))
            },
        )
        .await
    }

    /// Runs an upload batch, pipelined. Returns one outcome per op; only a
    /// connection failure is `Err`.
    pub async fn put_batch(
        &mut self,
        ops: Vec<PutOp>,
        obs: &dyn Observer,
    ) -> Result<Vec<FileOutcome>> {
        let first_id = self.ids(ops.len());
        let send = self.send;
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
        let w = &mut self.w;
        let r = &mut self.r;
        let writer = async move {
            let mut opener = crate::fsutil::Opener::default();
            for (i, op) in ops.into_iter().enumerate() {
                let id = first_id + i as u64;
                let pend = |action, path: &str| Pending {
                    id: Some(id),
                    outcome: FileOutcome::new(path.to_string(), action),
                };
                let (action, path, msg) = match op {
                    PutOp::Mkdir { remote } => (
                        Action::Mkdir,
                        remote.clone(),
                        Msg::Mkdir { id, path: remote },
                    ),
                    PutOp::Symlink { remote, target } => (
                        Action::Symlink,
                        remote.clone(),
                        Msg::Symlink {
                            id,
                            path: remote,
                            target,
                        },
                    ),
                    PutOp::Remove { remote, recursive } => (
                        Action::Delete,
                        remote.clone(),
                        Msg::Remove {
                            id,
                            path: remote,
                            recursive,
                        },
                    ),
                    PutOp::DirMeta { remote, meta } => (
                        Action::Meta,
                        remote.clone(),
                        Msg::SetMeta {
                            id,
                            path: remote,
                            mtime: meta.mtime,
                            mtime_ns: meta.mtime_ns,
                            mode: meta.mode,
                        },
                    ),
                    PutOp::File {
                        local, remote, how, ..
                    } => {
                        let file = opener.open(&local);
                        let p = put_one(w, id, (local, file), remote, how, send, obs).await?;
                        let _ = tx.send(p);
                        continue;
                    }
                };
                let _ = tx.send(pend(action, &path));
                w.msg(&msg).await?;
            }
            drop(tx);
            w.flush().await?;
            Ok::<(), Error>(())
        };
        let reader = async move {
            let mut out = Vec::new();
            while let Some(Pending { id, mut outcome }) = next_pending(&mut rx, r).await? {
                let Some(id) = id else {
                    obs.file_done(&outcome.path, false);
                    out.push(outcome);
                    continue;
                };
                match r.read_msg().await? {
                    Msg::Done { id: rid } if rid == id => {}
                    Msg::Removed {
                        id: rid,
                        files,
                        dirs,
                    } if rid == id => outcome.deleted = (files, dirs),
                    Msg::Redo { id: rid, reason } if rid == id => {
                        outcome.redo = true;
                        outcome.result = Err(Error::other(reason));
                    }
                    Msg::Error {
                        id: Some(rid),
                        kind,
                        message,
                    } if rid == id => {
                        if outcome.result.is_ok() {
                            outcome.result = Err(reply_error(kind, message));
                        }
                    }
                    Msg::Error {
                        id: None,
                        kind,
                        message,
                    } => return Err(reply_error(kind, message)),
                    m => return Err(Error::protocol(format!("unexpected reply {m:?}"))),
                }
                if outcome.is_file() {
                    obs.file_done(&outcome.path, outcome.result.is_ok());
                }
                out.push(outcome);
            }
            Ok::<_, Error>(out)
        };
        let res = tokio::try_join!(writer, reader);
        obs.batch_done();
        Ok(res?.1)
    }
}

/// The next upload whose reply is due. While the writer is still busy
/// with a big file, keeps reading the connection, so a warning or a kick
/// from the server shows at once instead of after the file.
async fn next_pending<R: tokio::io::AsyncRead + Unpin>(
    rx: &mut mpsc::UnboundedReceiver<Pending>,
    r: &mut FrameReader<R>,
) -> Result<Option<Pending>> {
    tokio::select! {
        biased;
        p = rx.recv() => Ok(p),
        // Reads are cancel-safe: a frame half-read here is finished by the
        // next read. Notices are handled inside; anything else before its
        // request was sent is out of step.
        f = r.read_opt() => match f? {
            None => Err(Error::connect("connection closed by the server")),
            Some(Frame::Control(Msg::Error { id: None, kind, message })) => {
                Err(reply_error(kind, message))
            }
            Some(f) => Err(Error::protocol(format!("reply before its request: {f:?}"))),
        },
    }
}

/// Sends one file of an upload batch (the reply comes later).
async fn put_one<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut FrameWriter<W>,
    id: u64,
    (local, opened): (PathBuf, std::io::Result<File>),
    remote: String,
    how: PutHow,
    send: SendOptions,
    obs: &dyn Observer,
) -> Result<Pending> {
    let mut outcome = FileOutcome::new(remote.clone(), Action::Copy);
    let opened = opened
        .and_then(|f| f.metadata().map(|m| (f, m)))
        .map_err(|e| Error::local_io(&local, e));
    let (file, md) = match opened {
        Ok(x) => x,
        Err(e) => {
            // Nothing sent: the reader records it without a reply.
            outcome.result = Err(e);
            return Ok(Pending { id: None, outcome });
        }
    };
    let meta = crate::fsutil::meta_of(&md);
    outcome.bytes = meta.size;
    // Work out how to send: a resume needs our hash of the prefix, a delta
    // a signature that survives validation; otherwise the whole file.
    let mut plan: (Option<Resume>, Option<(Meta, DeltaWith)>, blake3::Hasher) =
        (None, None, blake3::Hasher::new());
    match how {
        PutHow::Resume { offset } if offset > 0 && offset <= meta.size => {
            let mut f2 = file.try_clone().map_err(|e| Error::local_io(&local, e))?;
            let l2 = local.clone();
            if let Ok((hex, h)) = blocking(move || {
                partial::hash_prefix(&mut f2, offset).map_err(|e| Error::local_io(&l2, e))
            })
            .await
            {
                plan = (
                    Some(Resume {
                        offset,
                        prefix_hash: hex,
                    }),
                    None,
                    h,
                );
                outcome.action = Action::Resume;
                outcome.resumed = offset;
            }
        }
        PutHow::Delta {
            base,
            signature,
            plan: blocks,
        } => {
            let with = match blocks {
                // Planned on the file as it is now (same size and mtime).
                Some(p) if p.version == meta => Some(DeltaWith::Blocks(p)),
                Some(_) => None,
                None => delta::parse_signature(signature)
                    .ok()
                    .map(DeltaWith::Rolling),
            };
            if let Some(with) = with {
                plan.1 = Some((base, with));
                outcome.action = Action::Delta;
            }
        }
        _ => {}
    }
    let (resume, delta_plan, prefix) = plan;
    let offset = resume.as_ref().map_or(0, |r| r.offset);
    w.msg(&Msg::Put {
        id,
        path: remote.clone(),
        meta,
        resume,
        delta_base: delta_plan.as_ref().map(|(b, _)| *b),
    })
    .await?;
    obs.file_start(&remote, meta.size);
    if offset > 0 {
        obs.bytes(offset);
    }
    let sent = match delta_plan {
        Some((_, DeltaWith::Rolling(sig))) => {
            transfer::send_delta(w, file, meta.size, sig, send, &|c| obs.bytes(c.out_len)).await
        }
        Some((_, DeltaWith::Blocks(p))) => {
            // Opened as the planned version (checked above).
            let planned = crate::engine::io::Source::version(&file);
            transfer::send_planned(w, file, p, planned, send, &|c| obs.bytes(c.out_len)).await
        }
        None => {
            let opened = Some((md.mtime(), md.mtime_nsec(), md.len()));
            transfer::send_file(w, file, opened, offset, meta.size, prefix, send, &|c| {
                obs.bytes(c.out_len)
            })
            .await
        }
    };
    match sent {
        Ok((hash, stats)) => {
            outcome.stats = stats;
            w.msg(&Msg::PutEnd { id, hash }).await?;
        }
        Err(SendError::Local(e)) => {
            let e = e.context(local.display());
            outcome.result = Err(e.clone());
            w.msg(&Msg::PutAbort {
                id,
                reason: e.message,
            })
            .await?;
        }
        Err(SendError::Net(e)) => return Err(e),
    }
    Ok(Pending {
        id: Some(id),
        outcome,
    })
}
