//! Downloads: batches whose requests (with signatures and resume offsets)
//! go out while files stream back, each into a partial or temp file that
//! takes the target's name only once its hash checks out.

use super::{blocking, reply_error, Action, Client, FileOutcome, Observer};
use crate::engine::{blocks, partial};
use crate::error::{Error, ErrorKind, Result};
use crate::fsutil::TempFile;
use crate::model::Meta;
use crate::proto::{FrameReader, GetResume, Msg};
use crate::transfer::{self, Dest, Received, Sink};
use std::fs::File;
use std::path::PathBuf;
use tokio::sync::mpsc;

/// How one file of a download batch is fetched.
#[derive(Debug, Clone)]
pub enum GetHow {
    Full,
    /// Continue the local partial file if it belongs to `source`.
    Resume {
        source: Meta,
    },
    /// Send a block signature of the local copy and take a delta.
    Delta,
    /// Send an rsync signature of the local copy (data moved: the server
    /// answered the block signature with `Redo`) and take a delta.
    Rolling,
}

/// One file of a download batch.
#[derive(Debug, Clone)]
pub struct GetOp {
    pub remote: String,
    pub local: PathBuf,
    pub how: GetHow,
}

impl Client {
    /// Runs a download batch, pipelined: requests (with signatures and
    /// resume offsets) go out while files stream back. Each file lands in a
    /// partial or temp file beside its target and is renamed only after its
    /// hash checks out. With `durable`, the verified files are renamed
    /// only by one durability pass at the end (see [`commit_durably`]);
    /// the count of passes that took is returned with the outcomes.
    pub async fn get_batch(
        &mut self,
        ops: Vec<GetOp>,
        obs: &dyn Observer,
        durable: bool,
    ) -> Result<(Vec<FileOutcome>, u64)> {
        let first_id = self.ids(ops.len());
        // Per request: its id, the op, a resumed prefix, and whether a
        // signature went with it (only then may the reply be a delta).
        type Sent = (u64, GetOp, Option<(u64, blake3::Hasher)>, bool);
        let (tx, mut rx) = mpsc::unbounded_channel::<Sent>();
        let w = &mut self.w;
        let r = &mut self.r;
        let writer = async move {
            for (i, op) in ops.into_iter().enumerate() {
                let id = first_id + i as u64;
                let mut resume = None;
                let mut signature = None;
                match &op.how {
                    GetHow::Full => {}
                    GetHow::Resume { source } => {
                        let (local, source) = (op.local.clone(), *source);
                        resume = blocking(move || {
                            let Some(found) = partial::find(&local)
                                .filter(|f| f.manifest.matches(&source) && f.len > 0)
                            else {
                                return Ok(None);
                            };
                            let mut f = File::open(partial::part_path(&local))
                                .map_err(|e| Error::local_io(&local, e))?;
                            let (hex, h) = partial::hash_prefix(&mut f, found.len)
                                .map_err(|e| Error::local_io(&local, e))?;
                            Ok(Some((found.len, hex, h, source)))
                        })
                        .await
                        .unwrap_or(None);
                    }
                    GetHow::Delta | GetHow::Rolling => {
                        let (local, rolling) =
                            (op.local.clone(), matches!(op.how, GetHow::Rolling));
                        signature = blocking(move || {
                            let mut f =
                                File::open(&local).map_err(|e| Error::local_io(&local, e))?;
                            let len = f.metadata().map_err(|e| Error::local_io(&local, e))?.len();
                            blocks::sign(&mut f, len, rolling)
                        })
                        .await
                        .ok();
                    }
                }
                let prefix = resume.as_ref().map(|(off, _, h, _)| (*off, h.clone()));
                w.msg(&Msg::Get {
                    id,
                    path: op.remote.clone(),
                    resume: resume.map(|(offset, prefix_hash, _, source)| GetResume {
                        offset,
                        prefix_hash,
                        source,
                    }),
                    signature: signature.as_ref().map(|s| s.len() as u64),
                })
                .await?;
                if let Some(s) = &signature {
                    w.blob(s).await?;
                }
                let _ = tx.send((id, op, prefix, signature.is_some()));
            }
            drop(tx);
            w.flush().await?;
            Ok::<(), Error>(())
        };
        let reader = async move {
            let mut out = Vec::new();
            let mut held = Vec::new();
            while let Some((id, op, prefix, signed)) = rx.recv().await {
                let (mut o, verified) = receive_one(r, id, &op, prefix, signed, obs).await?;
                if let Some((sink, meta)) = verified {
                    if durable {
                        held.push(Held {
                            index: out.len(),
                            sink,
                            local: op.local.clone(),
                            meta,
                        });
                    } else {
                        o.result = sink
                            .commit(&op.local, &meta)
                            .map_err(|e| Error::local_io(&op.local, e));
                    }
                }
                obs.file_done(&op.remote, o.result.is_ok());
                out.push(o);
            }
            Ok::<_, Error>((out, held))
        };
        let res = tokio::try_join!(writer, reader);
        obs.batch_done();
        let (mut out, held) = res?.1;
        let passes = blocking(move || Ok(commit_durably(held)))
            .await?
            .into_iter()
            .fold(0, |passes, (index, result, p)| {
                out[index].result = result;
                passes.max(p)
            });
        Ok((out, passes))
    }
}

/// A verified download waiting for the durability pass.
struct Held {
    index: usize,
    sink: Sink,
    local: PathBuf,
    meta: Meta,
}

/// The durability pass of a download batch (blocking): the verified files'
/// data made durable while they are still temporary files beside their
/// targets, then each renamed onto its target, then the new names made
/// durable; so after a power cut a target holds its old version or the
/// whole new one. Returns per file its index, result and the passes made.
fn commit_durably(held: Vec<Held>) -> Vec<(usize, Result<()>, u64)> {
    if held.is_empty() {
        return Vec::new();
    }
    let locals: Vec<PathBuf> = held.iter().map(|h| h.local.clone()).collect();
    let at = locals[0].clone();
    let durable_err =
        |e: std::io::Error| Error::local_io(&at, e).context("making the downloaded files durable");
    let data = crate::fsutil::make_durable(&locals).map_err(durable_err);
    let mut out: Vec<(usize, Result<()>, u64)> = held
        .into_iter()
        .map(|h| {
            let result = match &data {
                Err(e) => Err(e.clone()),
                Ok(_) => h
                    .sink
                    .commit(&h.local, &h.meta)
                    .map_err(|e| Error::local_io(&h.local, e)),
            };
            (h.index, result, 0)
        })
        .collect();
    let Ok(first) = data else {
        return out;
    };
    let committed: Vec<PathBuf> = out
        .iter()
        .zip(&locals)
        .filter(|((_, r, _), _)| r.is_ok())
        .map(|(_, l)| l.clone())
        .collect();
    let names = crate::fsutil::make_durable(&committed).map_err(durable_err);
    for (_, r, p) in out.iter_mut() {
        match &names {
            Ok(second) => *p = first + second,
            // Renamed, but not durable: not reported as done.
            Err(e) if r.is_ok() => *r = Err(e.clone()),
            Err(_) => {}
        }
    }
    out
}

/// Receives the reply to one `Get` (`signed`: a signature went with it).
/// Outer error: the connection failed, or the server broke the protocol.
async fn receive_one<R: tokio::io::AsyncRead + Unpin>(
    r: &mut FrameReader<R>,
    id: u64,
    op: &GetOp,
    prefix: Option<(u64, blake3::Hasher)>,
    signed: bool,
    obs: &dyn Observer,
) -> Result<(FileOutcome, Option<(Sink, Meta)>)> {
    let mut o = FileOutcome::new(op.remote.clone(), Action::Copy);
    let (meta, offset, is_delta) = match r.read_msg().await? {
        Msg::FileHeader {
            id: rid,
            meta,
            offset,
            delta,
        } if rid == id => (meta, offset, delta),
        Msg::Error {
            id: Some(rid),
            kind,
            message,
        } if rid == id => {
            o.result = Err(reply_error(kind, message));
            return Ok((o, None));
        }
        // Only an answer to a signature we sent.
        Msg::Redo { id: rid, reason } if rid == id && signed => {
            o.rolling = true;
            o.result = Err(Error::other(reason));
            return Ok((o, None));
        }
        m => return Err(Error::protocol(format!("unexpected reply {m:?}"))),
    };
    // A delta applies to the local file: only to one whose signature we
    // sent, not to whatever the server picks (a symlink's target, say).
    if is_delta && !signed {
        return Err(Error::protocol(format!(
            "server sent a delta for {:?}, but no signature was sent",
            op.remote
        )));
    }
    if !is_delta && offset > meta.size {
        return Err(Error::protocol(format!(
            "server resumed {:?} at {offset}, past its end ({})",
            op.remote, meta.size
        )));
    }
    o.bytes = meta.size;
    obs.file_start(&op.remote, meta.size);
    let local = &op.local;
    let io = |e: std::io::Error| Error::local_io(local, e);
    // Where the bytes go depends on what the server chose to send.
    let prepared: Result<(Sink, Dest)> = (|| {
        if is_delta {
            o.action = Action::Delta;
            let tmp = TempFile::create_beside(local).map_err(io)?;
            let dest = Dest::for_file(tmp.file().try_clone().map_err(io)?)
                .map_err(io)?
                .with_base(File::open(local).map_err(io)?);
            return Ok((Sink::Temp(tmp), dest));
        }
        if offset > 0 {
            let (have, hasher) = prefix
                .clone()
                .ok_or_else(|| Error::protocol("resume offset without a request"))?;
            if have != offset {
                return Err(Error::protocol("server resumed at another offset"));
            }
            let part = partial::PartFile::resume(local, offset)
                .map_err(io)?
                .ok_or_else(|| {
                    Error::other(format!("{}: partial file is busy", local.display()))
                })?;
            let mut dest = Dest::new(part.file().try_clone().map_err(io)?);
            dest.hasher = hasher.into();
            o.action = Action::Resume;
            o.resumed = offset;
            obs.bytes(offset);
            return Ok((Sink::Part(part), dest));
        }
        let sink = Sink::fresh(local, &meta).map_err(io)?;
        let dest = sink.dest().map_err(io)?;
        Ok((sink, dest))
    })();
    let (mut sink, dest) = match prepared {
        Ok((s, d)) => (Some(s), Some(d)),
        Err(e) => {
            o.result = Err(e);
            (None, None)
        }
    };
    let expect = if is_delta {
        meta.size
    } else {
        meta.size - offset
    };
    // A cut connection keeps a partial file for the next attempt; bytes
    // from a server that broke the protocol are not worth resuming.
    let broken = |e: Error, sink: &mut Option<Sink>| {
        if e.kind != ErrorKind::Other {
            return e;
        }
        if let Some(s) = sink.as_mut() {
            s.discard();
        }
        e.context(&op.remote)
    };
    let mut saved = 0;
    let received = transfer::receive(r, dest, expect, &|c| obs.bytes(c.out_len), &mut saved)
        .await
        .map_err(|e| broken(e, &mut sink))?;
    o.stats.compressed_saved = saved;
    let hash = match received {
        Received::Complete(h) => h,
        Received::Interrupted(Msg::Error { kind, message, .. }) => {
            o.result = Err(reply_error(kind, message));
            return Ok((o, None));
        }
        Received::Interrupted(m) => {
            let e = match m {
                Msg::FileEnd { .. } => Error::protocol(format!(
                    "the file ended before the {expect} bytes announced"
                )),
                m => Error::protocol(format!("unexpected {m:?}")),
            };
            return Err(broken(e, &mut sink));
        }
    };
    let end = r.read_msg().await.map_err(|e| broken(e, &mut sink))?;
    let (sent_hash, literal, matched) = match end {
        Msg::FileEnd {
            id: rid,
            hash,
            literal,
            matched,
        } if rid == id => (hash, literal, matched),
        Msg::Error {
            id: Some(rid),
            kind,
            message,
        } if rid == id => {
            o.result = Err(reply_error(kind, message));
            return Ok((o, None));
        }
        m => {
            let e = Error::protocol(format!("unexpected reply {m:?}"));
            return Err(broken(e, &mut sink));
        }
    };
    o.stats.literal = literal;
    o.stats.matched = matched;
    let Some(mut sink) = sink.take() else {
        return Ok((o, None));
    };
    o.result = match hash {
        Ok(h) if h == sent_hash => return Ok((o, Some((sink, meta)))),
        Err(e) => {
            sink.discard();
            Err(e.context(local.display()))
        }
        Ok(_) => {
            sink.discard();
            if is_delta {
                o.redo = true;
                Err(Error::other(
                    "the file rebuilt from the delta did not verify",
                ))
            } else {
                Err(Error::integrity(format!(
                    "{}: integrity check failed (BLAKE3 mismatch); the local file was left untouched",
                    local.display()
                )))
            }
        }
    };
    Ok((o, None))
}
