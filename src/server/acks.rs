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
//! batch's, once it has ended), so the commits use the second core; up to
//! [`PASSES`] passes run at once, and they commit in the order they were
//! launched ([`CommitOrder`]): a later upload of a file wins, also where
//! two paths name it (a symlink inside the share). With
//! `--no-fsync` nothing is held. A store whose commits wait on the network (S3) has up
//! to [`crate::store::Store::commit_parallelism`] of a batch committed at
//! once, on threads of the pass.
//!
//! A small new file (up to [`HOLD_MAX`] bytes) is received into memory,
//! not into a file: the pass writes it ([`Staged::Held`]). Then the
//! session's thread only receives and checks, while the filesystem work
//! of every file of the batch (resolving, temp file, write, rename) runs
//! on the pass's thread, on the second core. Those bytes are bounded for
//! the whole process ([`HOLD_BUDGET`]); past it a small file is written
//! at once like a big one.

use super::session::{Session, Writer};
use super::share::Verified;
use super::LogEvent;
use crate::error::{Error, Result};
use crate::model::Meta;
use crate::proto::Msg;
use crate::store::{Store, Upload};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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

/// Passes of one session running at once. With one, the session waited
/// for the running pass whenever its next batch was full (0.67 s of a
/// 1.6 s first copy of 100,000 small files), and the pass waited for the
/// session in between.
const PASSES: usize = 2;

/// Largest new file held in memory until its durability pass.
pub(super) const HOLD_MAX: u64 = 64 * 1024;
/// Bytes of small files all sessions hold in memory at most (one more
/// batch than [`PASSES`], of [`MAX_FILES`] each, per session would
/// otherwise be up to 96 MiB).
const HOLD_BUDGET: u64 = 16 << 20;
static HELD_BYTES: AtomicU64 = AtomicU64::new(0);

/// A verified upload's content before its commit.
pub(super) enum Staged {
    /// In a temporary file of the store.
    Written(Box<dyn Upload>),
    /// In memory, written by the pass.
    Held(HeldBytes),
}

/// A small file's bytes, counted against [`HOLD_BUDGET`] while they live.
pub(super) struct HeldBytes {
    /// Shared with the writer that receives them.
    data: Arc<Mutex<Vec<u8>>>,
    reserved: u64,
}

impl HeldBytes {
    /// Room for a file of `size` bytes, if the budget has it.
    pub(super) fn reserve(size: u64) -> Option<HeldBytes> {
        if size > HOLD_MAX {
            return None;
        }
        HELD_BYTES
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held + size <= HOLD_BUDGET).then_some(held + size)
            })
            .ok()?;
        Some(HeldBytes {
            data: Arc::new(Mutex::new(Vec::with_capacity(size as usize))),
            reserved: size,
        })
    }

    /// Where the received bytes go.
    pub(super) fn writer(&self) -> impl std::io::Write + Send + 'static {
        struct Into(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Into {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        Into(self.data.clone())
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        HELD_BYTES.fetch_sub(self.reserved, Ordering::AcqRel);
    }
}

impl Staged {
    /// Writes (if held) and commits.
    pub(super) fn commit(self, store: &dyn Store, rel: &str, meta: &Meta) -> Result<()> {
        let up = into_store(store, &[rel.to_string()], &[*meta], vec![self]);
        up.into_iter()
            .next()
            .unwrap_or_else(|| Err(Error::other("nothing to commit")))?
            .commit(meta)
    }

    /// The content is wrong: keep none of it.
    pub(super) fn discard(&mut self) {
        if let Staged::Written(up) = self {
            up.discard();
        }
    }
}

/// The uploads' contents in the store, each ready to commit: written ones
/// as they are, held ones begun together (see
/// [`crate::store::Store::begin_many`]) and written now.
fn into_store(store: &dyn Store, rels: &[String], metas: &[Meta], staged: Vec<Staged>) -> Vec<Job> {
    let held: Vec<(&str, Meta)> = staged
        .iter()
        .zip(rels.iter().zip(metas))
        .filter(|(s, _)| matches!(s, Staged::Held(_)))
        .map(|(_, (rel, meta))| (rel.as_str(), *meta))
        .collect();
    let mut begun = store.begin_many(&held).into_iter();
    staged
        .into_iter()
        .map(|s| match s {
            Staged::Written(up) => Ok(up),
            Staged::Held(h) => {
                let up = begun
                    .next()
                    .unwrap_or_else(|| Err(Error::other("the store began too few uploads")))?;
                up.write_all(&h.data.lock().unwrap_or_else(|p| p.into_inner()))?;
                Ok(up)
            }
        })
        .collect()
}

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
    /// Oldest first.
    running: std::collections::VecDeque<Running>,
    /// The order the running passes commit in, and the next pass's
    /// ticket.
    order: Arc<CommitOrder>,
    tickets: u64,
}

/// The order a session's passes commit in: the one launched first goes
/// first. Each pass holds a [`Turn`]; it writes and flushes its files
/// whenever it runs, and waits for its turn only to commit.
#[derive(Default)]
pub(super) struct CommitOrder {
    next: Mutex<Next>,
    turn: std::sync::Condvar,
}

/// The ticket whose turn it is, and later tickets given up out of order.
#[derive(Default)]
struct Next {
    ticket: u64,
    given_up: std::collections::BTreeSet<u64>,
}

impl Next {
    /// `ticket` is done (committed, or given up before it could commit).
    fn done(&mut self, ticket: u64) {
        if ticket < self.ticket {
            return;
        }
        self.given_up.insert(ticket);
        while self.given_up.remove(&self.ticket) {
            self.ticket += 1;
        }
    }
}

/// Longest a pass waits for the one before it to commit. Passes take
/// milliseconds to seconds; past this the one before is taken as lost (its
/// thread never ran) rather than holding every later pass forever.
const TURN_WAIT: Duration = Duration::from_secs(120);

/// A pass's place in its session's [`CommitOrder`]: taken before it
/// commits, done when it is dropped (also without committing, or in a
/// panic), so the next pass's commits follow.
pub(super) struct Turn {
    order: Arc<CommitOrder>,
    ticket: u64,
}

impl Turn {
    /// Waits until the passes before this one have committed.
    fn take(&self) {
        let start = Instant::now();
        let mut next = self.order.next.lock().unwrap_or_else(|p| p.into_inner());
        while next.ticket < self.ticket {
            let Some(left) = TURN_WAIT.checked_sub(start.elapsed()) else {
                break;
            };
            next = self
                .order
                .turn
                .wait_timeout(next, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
impl Turn {
    /// The turn of a pass that runs alone.
    fn first() -> Turn {
        Turn {
            order: Arc::default(),
            ticket: 0,
        }
    }
}

impl Drop for Turn {
    /// A pass that never took its turn committed nothing: it does not wait
    /// (a runtime dropping queued passes one by one would otherwise wait
    /// on itself), it only lets the later ones go once the earlier are done.
    fn drop(&mut self) {
        let mut next = self.order.next.lock().unwrap_or_else(|p| p.into_inner());
        next.done(self.ticket);
        self.order.turn.notify_all();
    }
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
        self.pending.is_empty() && self.running.is_empty()
    }

    /// A pass is running in the background.
    pub(super) fn running(&self) -> bool {
        !self.running.is_empty()
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
fn pass(store: &dyn Store, uploads: Vec<Verified>, turn: Turn) -> (Vec<Outcome>, u64) {
    let n = uploads.len();
    let (mut rels, mut metas, mut staged, mut out) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for v in uploads {
        out.push(Outcome {
            id: v.id,
            shown: v.shown,
            bytes: v.meta.size,
            result: Ok(()),
        });
        rels.push(v.rel);
        metas.push(v.meta);
        staged.push(v.up);
    }
    let jobs: Vec<(Job, Meta)> = into_store(store, &rels, &metas, staged)
        .into_iter()
        .zip(metas)
        .collect();
    // Only what is in the store: a held file it refused has no name to
    // make durable (its parent may not even exist).
    let written: Vec<String> = rels
        .iter()
        .zip(&jobs)
        .filter(|(_, (up, _))| up.is_ok())
        .map(|(r, _)| r.clone())
        .collect();
    let data = store.make_durable(&written);
    turn.take();
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

/// An upload in the store, or why it could not be written there.
type Job = Result<Box<dyn Upload>>;

/// Commits every upload, up to `parallel` at once when their targets are
/// distinct (two of one path keep their order: the later one wins); the
/// results in the uploads' order.
fn commit_all(parallel: usize, rels: &[String], jobs: Vec<(Job, Meta)>) -> Vec<Result<()>> {
    // Compared as the store sees them: `a` and `./a` are one target.
    let distinct = rels
        .iter()
        .map(|r| as_stored(r))
        .collect::<HashSet<_>>()
        .len()
        == rels.len();
    let threads = parallel.min(jobs.len());
    if threads <= 1 || !distinct {
        return jobs
            .into_iter()
            .map(|(up, meta)| up?.commit(&meta))
            .collect();
    }
    type Slot = Mutex<(Option<(Job, Meta)>, Option<Result<()>>)>;
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
                    let r = up.and_then(|up| up.commit(&meta));
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

/// A target as the store sees it: `a` and `./a` are one.
fn as_stored(rel: &str) -> String {
    crate::paths::normalize(rel).unwrap_or_else(|_| rel.to_string())
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
                let reply = match v.up.commit(self.store(), &v.rel, &v.meta) {
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
    /// once fewer than [`PASSES`] run (the oldest ends first, its replies
    /// sent); its own replies go out after theirs, with a later `launch`
    /// or `release`, and its commits after theirs ([`CommitOrder`]). At
    /// most `PASSES` + 1 batches are open at once, so a session holds at
    /// most 3 × [`MAX_FILES`] unnamed files.
    pub(super) async fn launch<W: AsyncWrite + Unpin>(&mut self, w: &mut Writer<W>) -> Result<()> {
        // The passes outlive the batch.
        let passes = (
            std::mem::take(&mut self.held.running),
            self.held.order.clone(),
            self.held.tickets,
        );
        let Held { pending, files, .. } = std::mem::take(&mut self.held);
        (self.held.running, self.held.order, self.held.tickets) = passes;
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
            self.finish(w).await?;
            for m in order.into_iter().flatten() {
                w.msg(&m).await?;
            }
            return Ok(());
        }
        while self.held.running.len() >= PASSES {
            self.finish_one(w).await?;
        }
        let turn = Turn {
            order: self.held.order.clone(),
            ticket: self.held.tickets,
        };
        self.held.tickets += 1;
        let store = self.opts().store.clone();
        let ids = uploads.iter().map(|v| v.id).collect();
        // A pass can take a while (a big file's writeback): not on the
        // reactor, which keeps serving this and every other client.
        let task = tokio::task::spawn_blocking(move || pass(&*store, uploads, turn));
        self.held.running.push_back(Running { task, ids, order });
        Ok(())
    }

    /// Waits for the running passes, oldest first, and sends the replies
    /// held behind each.
    pub(super) async fn finish<W: AsyncWrite + Unpin>(&mut self, w: &mut Writer<W>) -> Result<()> {
        while self.held.running() {
            self.finish_one(w).await?;
        }
        Ok(())
    }

    /// Waits for the oldest running pass, if any, and sends the replies
    /// held behind it.
    async fn finish_one<W: AsyncWrite + Unpin>(&mut self, w: &mut Writer<W>) -> Result<()> {
        let Some(Running { task, ids, order }) = self.held.running.pop_front() else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;
    use std::io::Write;

    #[test]
    fn turns_go_in_ticket_order_even_when_one_is_given_up() {
        let order = Arc::new(CommitOrder::default());
        let turn = |ticket| Turn {
            order: order.clone(),
            ticket,
        };
        let (t0, t1, t2, t3) = (turn(0), turn(1), turn(2), turn(3));
        // Given up out of order (a queued pass dropped before it ran): it
        // does not wait, and does not let the next go before the earlier.
        drop(t1);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let later = {
            let seen = seen.clone();
            std::thread::spawn(move || {
                t2.take();
                seen.lock().unwrap().push(2);
                drop(t2);
                t3.take();
                seen.lock().unwrap().push(3);
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        seen.lock().unwrap().push(0);
        drop(t0);
        later.join().unwrap();
        assert_eq!(*seen.lock().unwrap(), [0, 2, 3]);
    }

    /// The budget is the process's: a test that fills it runs alone.
    static BUDGET: Mutex<()> = Mutex::new(());

    fn held(id: u64, rel: &str, data: &[u8]) -> Verified {
        let h = HeldBytes::reserve(data.len() as u64).unwrap();
        h.writer().write_all(data).unwrap();
        Verified {
            id,
            rel: rel.into(),
            shown: rel.into(),
            meta: Meta {
                size: data.len() as u64,
                mtime: 1_700_000_000,
                mtime_ns: 5,
                mode: 0o640,
            },
            up: Staged::Held(h),
        }
    }

    /// Files held in memory are written by the pass; one the store
    /// refuses (its parent is missing, its target a directory, a symlink
    /// out of the share on the way) fails alone, and the others of the
    /// batch are stored and durable: new names, a replaced file, a
    /// symlink inside the share replaced by the file.
    #[test]
    fn a_pass_writes_held_files_and_fails_only_the_refused_ones() {
        let _one = BUDGET.lock().unwrap_or_else(|p| p.into_inner());
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = |p: &str| dir.path().join(p);
        std::fs::create_dir(d("sub")).unwrap();
        std::fs::write(d("sub/old"), b"old version").unwrap();
        std::os::unix::fs::symlink(outside.path(), d("out")).unwrap();
        std::os::unix::fs::symlink("sub/old", d("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), d("sub/away")).unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let batch = vec![
            held(1, "a", b"first"),
            held(2, "nodir/x", b"lost"),
            held(3, "sub", b"on a directory"),
            held(4, "b", b""),
            held(5, "sub/old", b"new version"),
            held(6, "out/x", b"escaped"),
            held(7, "link", b"over the link"),
            held(8, "sub/away", b"through the link"),
            held(9, "twice", b"first of two"),
            held(10, "twice", b"second of two"),
        ];
        let (out, passes) = pass(&store, batch, Turn::first());
        assert_eq!(passes, 2);
        let ok: Vec<(u64, bool)> = out.iter().map(|o| (o.id, o.result.is_ok())).collect();
        assert_eq!(
            ok,
            [
                (1, true),
                (2, false),
                (3, false),
                (4, true),
                (5, true),
                (6, false),
                (7, true),
                (8, false),
                (9, true),
                (10, true)
            ]
        );
        assert_eq!(std::fs::read(d("twice")).unwrap(), b"second of two");
        assert_eq!(std::fs::read(d("a")).unwrap(), b"first");
        assert_eq!(std::fs::read(d("b")).unwrap(), b"");
        assert_eq!(std::fs::read(d("sub/old")).unwrap(), b"new version");
        assert!(!d("link").is_symlink());
        assert_eq!(std::fs::read(d("link")).unwrap(), b"over the link");
        assert!(d("sub").is_dir());
        assert!(!d("nodir").exists());
        assert!(d("sub/away").is_symlink());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        let md = std::fs::metadata(dir.path().join("a")).unwrap();
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!(md.permissions().mode() & 0o777, 0o640);
        assert_eq!((md.mtime(), md.mtime_nsec()), (1_700_000_000, 5));
        let names = |p: &str| {
            let mut n: Vec<String> = std::fs::read_dir(d(p))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            n.sort();
            n
        };
        let no_temp = "nothing else, no temp file";
        assert_eq!(
            names(""),
            ["a", "b", "link", "out", "sub", "twice"],
            "{no_temp}"
        );
        assert_eq!(names("sub"), ["away", "old"], "{no_temp}");
    }

    /// An upload that notes when it is committed, after a pause.
    struct Slow(u64, Duration, Arc<Mutex<Vec<u64>>>);

    impl Upload for Slow {
        fn writer(&self) -> Result<Box<dyn std::io::Write + Send>> {
            Ok(Box::new(std::io::sink()))
        }
        fn commit(self: Box<Self>, _: &Meta) -> Result<()> {
            std::thread::sleep(self.1);
            self.2.lock().unwrap().push(self.0);
            Ok(())
        }
        fn discard(&mut self) {}
    }

    /// Two spellings of one target in a batch commit one after the other,
    /// in order, even where commits run in parallel (S3): the later wins.
    #[test]
    fn one_target_spelled_twice_commits_in_order() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let meta = Meta {
            size: 0,
            mtime: 0,
            mtime_ns: 0,
            mode: 0o644,
        };
        let job = |id, ms| -> (Job, Meta) {
            let up: Box<dyn Upload> = Box::new(Slow(id, Duration::from_millis(ms), order.clone()));
            (Ok(up), meta)
        };
        let rels = ["./a".to_string(), "a".to_string()];
        let results = commit_all(16, &rels, vec![job(1, 100), job(2, 0)]);
        assert!(results.iter().all(|r| r.is_ok()));
        assert_eq!(*order.lock().unwrap(), [1, 2]);
    }

    /// The bytes held in memory are bounded for the whole process and
    /// given back when a held file goes.
    #[test]
    fn held_bytes_are_bounded_and_given_back() {
        let _one = BUDGET.lock().unwrap_or_else(|p| p.into_inner());
        assert!(HeldBytes::reserve(HOLD_MAX + 1).is_none());
        let mut many = Vec::new();
        while let Some(h) = HeldBytes::reserve(HOLD_MAX) {
            many.push(h);
            assert!(many.len() as u64 * HOLD_MAX <= HOLD_BUDGET);
        }
        assert!(!many.is_empty());
        drop(many);
        assert!(HeldBytes::reserve(HOLD_MAX).is_some());
    }
}
