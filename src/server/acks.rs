//! Upload acknowledgements held until the files they confirm are durable.
//!
//! A put's `Done` promises the file is stored, so it may go out only once
//! the file's data and its directory entry survive a power cut. One
//! durability pass per file would make small files pay a disk flush each;
//! instead, while a client keeps pipelining requests, the session holds
//! the uploads it has received and verified, and one pass makes the whole
//! batch durable (data, then the renames onto the targets, then the names:
//! two [`crate::store::Store::make_durable`] calls) before it sends any of
//! their replies: when the input runs dry (nothing more arrives within
//! [`LINGER`]), before any request that is not a put, or when the batch
//! reaches [`MAX_FILES`], [`MAX_BYTES`] or [`MAX_AGE`]. A batch that is
//! full while requests keep coming has its pass run in the background
//! while the next batch is received (its replies go out before the next
//! batch's, once it has ended), so the commits use the second core. With
//! `--no-fsync` nothing is held. A store whose commits wait on the network (S3) has up
//! to [`crate::store::Store::commit_parallelism`] of a batch committed at
//! once, on threads of the pass.

use super::session::{Session, Writer};
use super::share::Verified;
use super::LogEvent;
use crate::error::{Error, Result};
use crate::model::Meta;
use crate::proto::Msg;
use crate::store::{Store, Upload};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::AsyncWrite;

/// Files one pass covers at most, so a long run of tiny files still sees
/// its acknowledgements (and progress) flow.
const MAX_FILES: usize = 500;
/// Bytes one pass covers at most: beyond this the flush is long anyway,
/// and waiting for more only delays the acknowledgements.
const MAX_BYTES: u64 = 64 << 20;
/// The oldest held acknowledgement waits at most about this long.
const MAX_AGE: Duration = Duration::from_millis(200);
/// How long a session with held acknowledgements waits for the next
/// request before it takes the input as dry. A pipelining client's next
/// put is usually already on its way; a pass costs milliseconds on a
/// disk, so waiting a little for more work to share it with is cheaper
/// than flushing at every gap between two frames.
pub(super) const LINGER: Duration = Duration::from_millis(2);

/// What waits for the next durability pass, in the order the replies
/// must go out.
enum Pending {
    /// A reply that acknowledges nothing (an error, a redo), held only to
    /// keep the order.
    Reply(Msg),
    /// A verified upload, committed and acknowledged by the pass.
    Upload(Verified),
}

/// Replies and uploads waiting for a durability pass, and the pass that
/// runs over the batch before them, if one does.
#[derive(Default)]
pub(super) struct Held {
    pending: Vec<Pending>,
    files: usize,
    bytes: u64,
    since: Option<Instant>,
    running: Option<Running>,
}

/// A pass running on a blocking thread while the session receives the
/// next batch (so the commits and flushes of one batch overlap the next
/// one's transfer), and the replies that wait for it, in order (`None`:
/// the next upload's outcome).
struct Running {
    task: tokio::task::JoinHandle<(Vec<Outcome>, u64)>,
    ids: Vec<u64>,
    order: Vec<Option<Msg>>,
}

impl Held {
    /// Nothing waits: no reply held, no pass running.
    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.running.is_none()
    }

    /// A pass is running in the background.
    pub(super) fn running(&self) -> bool {
        self.running.is_some()
    }

    fn push(&mut self, p: Pending) {
        self.since.get_or_insert_with(Instant::now);
        if let Pending::Upload(v) = &p {
            self.files += 1;
            self.bytes += v.meta.size;
        }
        self.pending.push(p);
    }

    /// The batch is big or old enough to make durable now.
    pub(super) fn full(&self) -> bool {
        self.files >= MAX_FILES
            || self.bytes >= MAX_BYTES
            || self.since.is_some_and(|t| t.elapsed() >= MAX_AGE)
    }
}

/// What became of one held upload in a pass.
struct Outcome {
    id: u64,
    shown: String,
    bytes: u64,
    result: Result<()>,
}

/// One durability pass over `uploads` (blocking): their data made durable
/// while they are still temporary files, then each renamed over its
/// target, then the new names made durable. So after a power cut a target
/// holds either its old version or the whole new one, never a name whose
/// data did not reach the disk.
fn pass(store: &dyn Store, uploads: Vec<Verified>) -> (Vec<Outcome>, u64) {
    let rels: Vec<String> = uploads.iter().map(|v| v.rel.clone()).collect();
    let data = store.make_durable(&rels);
    let mut out = Vec::with_capacity(uploads.len());
    let mut jobs = Vec::with_capacity(uploads.len());
    for v in uploads {
        out.push(Outcome {
            id: v.id,
            shown: v.shown,
            bytes: v.meta.size,
            result: Ok(()),
        });
        jobs.push((v.up, v.meta));
    }
    let results = match &data {
        // Not committed: the uploads are dropped and the old versions
        // stay (a resumable one keeps its partial data).
        Err(e) => jobs.iter().map(|_| Err(e.clone())).collect(),
        Ok(()) => commit_all(store.commit_parallelism(), &rels, jobs),
    };
    for (o, r) in out.iter_mut().zip(results) {
        o.result = r;
    }
    if data.is_err() {
        return (out, 1);
    }
    let committed: Vec<String> = out
        .iter()
        .zip(&rels)
        .filter(|(o, _)| o.result.is_ok())
        .map(|(_, r)| r.clone())
        .collect();
    if let Err(e) = store.make_durable(&committed) {
        // Visible, but not durable: not acknowledged as stored.
        for o in out.iter_mut().filter(|o| o.result.is_ok()) {
            o.result = Err(e.clone());
        }
    }
    (out, 2)
}

/// Commits every upload, up to `parallel` at once when their targets are
/// distinct (two of one path keep their order: the later one wins); the
/// results in the uploads' order.
fn commit_all(
    parallel: usize,
    rels: &[String],
    jobs: Vec<(Box<dyn Upload>, Meta)>,
) -> Vec<Result<()>> {
    let distinct = rels.iter().collect::<std::collections::HashSet<_>>().len() == rels.len();
    let threads = parallel.min(jobs.len());
    if threads <= 1 || !distinct {
        return jobs
            .into_iter()
            .map(|(up, meta)| up.commit(&meta))
            .collect();
    }
    type Slot = Mutex<(Option<(Box<dyn Upload>, Meta)>, Option<Result<()>>)>;
    let slots: Vec<Slot> = jobs
        .into_iter()
        .map(|j| Mutex::new((Some(j), None)))
        .collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(slot) = slots.get(i) else { break };
                let job = slot.lock().unwrap_or_else(|p| p.into_inner()).0.take();
                if let Some((up, meta)) = job {
                    let r = up.commit(&meta);
                    slot.lock().unwrap_or_else(|p| p.into_inner()).1 = Some(r);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .1
                .unwrap_or_else(|| Err(Error::other("commit did not run")))
        })
        .collect()
}

impl Session {
    /// Answers a put: a verified upload is held for the next durability
    /// pass (or, with `--no-fsync`, committed and acknowledged at once);
    /// any other reply goes out at once unless replies are held before it.
    pub(super) async fn put_reply<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut Writer<W>,
        got: std::result::Result<Verified, Msg>,
    ) -> Result<()> {
        match got {
            Ok(v) if self.opts().fsync => self.held.push(Pending::Upload(v)),
            Ok(v) => {
                let reply = match v.up.commit(&v.meta) {
                    Ok(()) => {
                        self.uploaded(v.shown, v.meta.size);
                        Msg::Done { id: v.id }
                    }
                    Err(e) => self.failed(v.id, &e),
                };
                w.msg(&reply).await?;
            }
            Err(m) if self.held.is_empty() => w.msg(&m).await?,
            Err(m) => self.held.push(Pending::Reply(m)),
        }
        Ok(())
    }

    fn failed(&self, id: u64, e: &Error) -> Msg {
        self.log(LogEvent::Error {
            client: self.id,
            message: e.message.clone(),
        });
        Msg::error(Some(id), e)
    }

    /// Runs the durability pass over the held uploads and sends every held
    /// reply in order: `Done` for each upload the pass committed and made
    /// durable, the error for each it could not.
    pub(super) async fn release<W: AsyncWrite + Unpin>(&mut self, w: &mut Writer<W>) -> Result<()> {
        self.launch(w).await?;
        self.finish(w).await
    }

    /// Starts the durability pass over the held uploads in the background,
    /// once the pass before it has ended and its replies are sent; its own
    /// replies go out with the next `launch` or `release`. Two batches at
    /// most are open at once, so a session holds at most 2 × [`MAX_FILES`]
    /// unnamed files.
    pub(super) async fn launch<W: AsyncWrite + Unpin>(&mut self, w: &mut Writer<W>) -> Result<()> {
        self.finish(w).await?;
        let Held { pending, files, .. } = std::mem::take(&mut self.held);
        let mut uploads = Vec::with_capacity(files);
        let mut order = Vec::with_capacity(pending.len());
        for p in pending {
            match p {
                Pending::Reply(m) => order.push(Some(m)),
                Pending::Upload(v) => {
                    uploads.push(v);
                    order.push(None);
                }
            }
        }
        if uploads.is_empty() {
            for m in order.into_iter().flatten() {
                w.msg(&m).await?;
            }
            return Ok(());
        }
        let store = self.opts().store.clone();
        let ids = uploads.iter().map(|v| v.id).collect();
        // A pass can take a while (a big file's writeback): not on the
        // reactor, which keeps serving this and every other client.
        let task = tokio::task::spawn_blocking(move || pass(&*store, uploads));
        self.held.running = Some(Running { task, ids, order });
        Ok(())
    }

    /// Waits for the running pass, if any, and sends the replies held
    /// behind it.
    pub(super) async fn finish<W: AsyncWrite + Unpin>(&mut self, w: &mut Writer<W>) -> Result<()> {
        let Some(Running { task, ids, order }) = self.held.running.take() else {
            return Ok(());
        };
        let (done, passes) = match task.await {
            Ok(r) => r,
            Err(e) => {
                let e = Error::other(format!("durability pass failed: {e}"));
                let lost = ids.into_iter().map(|id| Outcome {
                    id,
                    shown: String::new(),
                    bytes: 0,
                    result: Err(e.clone()),
                });
                (lost.collect(), 0)
            }
        };
        let durable = done.iter().filter(|o| o.result.is_ok()).count() as u64;
        if durable > 0 {
            self.hub().fsynced(passes, durable);
        }
        let mut outcomes = done.into_iter();
        for slot in order {
            let reply = match slot {
                Some(m) => m,
                None => match outcomes.next() {
                    Some(Outcome {
                        id,
                        shown,
                        bytes,
                        result: Ok(()),
                    }) => {
                        self.uploaded(shown, bytes);
                        Msg::Done { id }
                    }
                    Some(Outcome {
                        id, result: Err(e), ..
                    }) => self.failed(id, &e),
                    None => continue,
                },
            };
            w.msg(&reply).await?;
        }
        Ok(())
    }
}
