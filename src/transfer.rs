//! Streaming one file's content across a frame connection: whole (from an
//! offset, for resume) or as delta pieces, compressed per chunk where it
//! pays. Disk I/O, hashing, diffing, compression and applying run on
//! blocking threads that trade chunks with the async side through channels
//! of depth [`DEPTH`], so memory per transfer stays bounded whatever the
//! file size, and that work overlaps with TLS.

use crate::engine::blocks;
use crate::engine::compress::Compressor;
use crate::engine::delta::{self, Base};
use crate::engine::hash::WholeHash;
use crate::engine::io::{ReadAt, Source};
use crate::error::{Error, Result};
use crate::proto::{Body, Chunk, Decoded, Frame, FrameReader, FrameWriter, Msg, CHUNK};
use std::fs::File;
use std::io::{BufWriter, Read, SeekFrom, Write};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

const DEPTH: usize = 4;

/// What sending one file cost and saved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendStats {
    /// File bytes sent as data.
    pub literal: u64,
    /// File bytes the receiver already had (delta copies).
    pub matched: u64,
    /// Bytes compression kept off the wire.
    pub compressed_saved: u64,
}

/// How the sender treats content.
#[derive(Debug, Clone, Copy)]
pub struct SendOptions {
    /// zstd level, `None` for no compression.
    pub compress: Option<i32>,
}

enum Produced {
    Chunk(Chunk),
    Done(String, SendStats),
    Failed(Error),
}

/// Why sending stopped early.
#[derive(Debug)]
pub enum SendError {
    /// The local file could not be read, or changed while it was read: the
    /// peer should be told to discard what it got.
    Local(Error),
    /// The connection failed.
    Net(Error),
}

fn compressed(c: &mut Compressor, data: Vec<u8>, piece_out: Option<u64>) -> Chunk {
    let z = c.compress(&data);
    match (z, piece_out) {
        (Some(bytes), None) => Chunk {
            out_len: data.len() as u64,
            body: Body::Zstd {
                raw_len: data.len(),
                bytes,
            },
        },
        (None, None) => Chunk::raw(data),
        (Some(bytes), Some(out_len)) => Chunk {
            out_len,
            body: Body::PieceZstd {
                raw_len: data.len(),
                bytes,
            },
        },
        (None, Some(out_len)) => Chunk {
            out_len,
            body: Body::Piece(data),
        },
    }
}

/// Fails when `src` is no longer the `size`-byte version stamped `start`.
fn still_same(src: &impl Source, start: Option<(i64, i64, u64)>, size: u64) -> Result<()> {
    if start != src.version() || start.map(|s| s.2) != Some(size) {
        return Err(Error::other("file changed while it was being sent"));
    }
    Ok(())
}

/// Runs `produce` on a blocking thread and writes what it yields.
async fn pump<W: AsyncWrite + Unpin>(
    w: &mut FrameWriter<W>,
    progress: &(dyn Fn(&Chunk) + Sync),
    produce: impl FnOnce(&mpsc::Sender<Produced>) -> Result<(String, SendStats)> + Send + 'static,
) -> Result<(String, SendStats), SendError> {
    let (tx, mut rx) = mpsc::channel::<Produced>(DEPTH);
    let worker = tokio::task::spawn_blocking(move || {
        let item = match produce(&tx) {
            Ok((h, s)) => Produced::Done(h, s),
            Err(e) => Produced::Failed(e),
        };
        let _ = tx.blocking_send(item);
    });
    let mut out = Err(SendError::Local(Error::other("file reader stopped")));
    while let Some(item) = rx.recv().await {
        match item {
            Produced::Chunk(c) => {
                if let Err(e) = w.chunk(&c).await {
                    out = Err(SendError::Net(e));
                    break;
                }
                progress(&c);
            }
            Produced::Done(h, s) => {
                out = Ok((h, s));
                break;
            }
            Produced::Failed(e) => {
                out = Err(SendError::Local(e));
                break;
            }
        }
    }
    drop(rx);
    let _ = worker.await;
    out
}

fn closed() -> Error {
    Error::other("transfer cancelled")
}

/// Sends bytes `offset..size` of `file` as chunks; `prefix` is the hash
/// state after the first `offset` bytes. Returns the whole file's BLAKE3.
/// A file that shrinks, grows or is modified while it is read is reported
/// as [`SendError::Local`], never sent as a mix. `opened` is the file's
/// version (see [`Source::version`]) as the caller saw it when it opened
/// it, if it looked (saves asking again); `None` asks the file now.
#[allow(clippy::too_many_arguments)]
pub async fn send_file<W: AsyncWrite + Unpin>(
    w: &mut FrameWriter<W>,
    file: impl Source,
    opened: Option<(i64, i64, u64)>,
    offset: u64,
    size: u64,
    prefix: blake3::Hasher,
    opts: SendOptions,
    progress: &(dyn Fn(&Chunk) + Sync),
) -> Result<(String, SendStats), SendError> {
    if size.saturating_sub(offset) <= CHUNK as u64 {
        // One chunk at most: a thread hand-off would cost more than the
        // read, and many small files are exactly where that shows.
        let mut chunks = Vec::new();
        let done = produce_file(file, opened, offset, size, prefix, opts, &mut |c| {
            chunks.push(c);
            Ok(())
        })
        .map_err(SendError::Local)?;
        for c in chunks {
            w.chunk(&c).await.map_err(SendError::Net)?;
            progress(&c);
        }
        return Ok(done);
    }
    pump(w, progress, move |tx| {
        produce_file(file, opened, offset, size, prefix, opts, &mut |c| {
            tx.blocking_send(Produced::Chunk(c)).map_err(|_| closed())
        })
    })
    .await
}

/// Reads bytes `offset..size` of `file` into (compressed) chunks.
fn produce_file(
    mut file: impl Source,
    opened: Option<(i64, i64, u64)>,
    offset: u64,
    size: u64,
    prefix: blake3::Hasher,
    opts: SendOptions,
    emit: &mut dyn FnMut(Chunk) -> Result<()>,
) -> Result<(String, SendStats)> {
    let start = opened.or_else(|| file.version());
    let mut comp = Compressor::new(opts.compress);
    let mut hasher = prefix;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| Error::other(format!("seek: {e}")))?;
    let mut left = size.saturating_sub(offset);
    let mut stats = SendStats::default();
    while left > 0 {
        let want = left.min(CHUNK as u64) as usize;
        // Read into fresh capacity, not a zeroed buffer (see FrameReader).
        let mut buf = Vec::with_capacity(want);
        let got = (&mut file)
            .take(want as u64)
            .read_to_end(&mut buf)
            .map_err(|e| Error::other(format!("read error: {e}")))?;
        if got < want {
            return Err(Error::other("file shrank while it was being sent"));
        }
        hasher.update(&buf);
        left -= want as u64;
        stats.literal += want as u64;
        emit(compressed(&mut comp, buf, None))?;
    }
    still_same(&file, start, size)?;
    stats.compressed_saved = comp.saved;
    Ok((hasher.finalize().to_hex().to_string(), stats))
}

/// Sends `file` (of `size` bytes) as delta pieces against `sig`, the
/// receiver's signature. Returns the file's BLAKE3 and what was saved.
pub async fn send_delta<W: AsyncWrite + Unpin>(
    w: &mut FrameWriter<W>,
    file: impl Source,
    size: u64,
    sig: fast_rsync::Signature,
    opts: SendOptions,
    progress: &(dyn Fn(&Chunk) + Sync),
) -> Result<(String, SendStats), SendError> {
    let start = file.version();
    send_pieces(w, file, size, start, opts, progress, move |f, emit| {
        delta::diff_file(f, size, &sig, emit)
    })
    .await
}

/// Sends `file` as delta pieces following a block plan made of it (see
/// [`crate::engine::blocks`]): copies for blocks the receiver has at the
/// same offset, literals for the rest. Returns the hash the plan computed
/// and what was saved. `planned` is the file's version taken before the
/// plan hashed it: the file must still be that version when all is sent,
/// or literals read now could mix with blocks hashed then.
pub async fn send_planned<W: AsyncWrite + Unpin, P: AsRef<blocks::Plan> + Send + Sync + 'static>(
    w: &mut FrameWriter<W>,
    file: impl Source,
    plan: std::sync::Arc<P>,
    planned: Option<(i64, i64, u64)>,
    opts: SendOptions,
    progress: &(dyn Fn(&Chunk) + Sync),
) -> Result<(String, SendStats), SendError> {
    let size = (*plan).as_ref().len;
    send_pieces(w, file, size, planned, opts, progress, move |f, emit| {
        let plan = (*plan).as_ref();
        blocks::send(f, plan, emit).map(|ds| (plan.hash.clone(), ds))
    })
    .await
}

/// Runs `diff` on a blocking thread, compressing and sending the pieces it
/// emits; the file must still be version `start` (of `size` bytes) at the
/// end.
async fn send_pieces<W: AsyncWrite + Unpin, S: Source>(
    w: &mut FrameWriter<W>,
    mut file: S,
    size: u64,
    start: Option<(i64, i64, u64)>,
    opts: SendOptions,
    progress: &(dyn Fn(&Chunk) + Sync),
    diff: impl FnOnce(
            &mut S,
            &mut dyn FnMut(delta::Piece) -> std::io::Result<()>,
        ) -> Result<(String, delta::DeltaStats)>
        + Send
        + 'static,
) -> Result<(String, SendStats), SendError> {
    pump(w, progress, move |tx| {
        let mut comp = Compressor::new(opts.compress);
        let (hash, ds) = diff(&mut file, &mut |p| {
            let c = compressed(&mut comp, p.delta, Some(p.out_len));
            tx.blocking_send(Produced::Chunk(c))
                .map_err(|_| std::io::Error::other("transfer cancelled"))
        })?;
        still_same(&file, start, size)?;
        Ok((
            hash,
            SendStats {
                literal: ds.literal,
                matched: ds.matched,
                compressed_saved: comp.saved,
            },
        ))
    })
    .await
}

/// Where received content goes.
pub struct Dest {
    /// Positioned where the new bytes start.
    pub out: Box<dyn Write + Send>,
    /// Hash state of what the file already holds (a resumed prefix).
    pub hasher: WholeHash,
    /// The old copy that delta pieces refer to.
    pub base: Option<Box<dyn ReadAt>>,
    /// The file `out` writes, when it is one (sharing its position): the
    /// kernel can then copy unchanged ranges of a local base into it.
    pub out_file: Option<File>,
}

impl Dest {
    pub fn new(out: impl Write + Send + 'static) -> Dest {
        Dest {
            out: Box::new(out),
            hasher: WholeHash::default(),
            base: None,
            out_file: None,
        }
    }

    /// Writes into `file` at its current position.
    pub fn for_file(file: File) -> std::io::Result<Dest> {
        Ok(Dest {
            out_file: Some(file.try_clone()?),
            ..Dest::new(file)
        })
    }

    /// Delta pieces copy from `base`.
    pub fn with_base(mut self, base: impl ReadAt) -> Dest {
        self.base = Some(Box::new(base));
        self
    }
}

/// How receiving ended.
#[derive(Debug)]
pub enum Received {
    /// All bytes arrived; the BLAKE3 of the whole resulting file, or the
    /// local error (disk full, bad piece) that made us discard the rest.
    Complete(Result<String>),
    /// The peer sent a control message before all bytes arrived (e.g. an
    /// abort); whatever was written must be discarded.
    Interrupted(Msg),
}

/// The whole-file BLAKE3 of what is written, computed on another core for
/// large files: written bytes are batched into blocks of [`HASH_BLOCK`]
/// handed (through a channel of fixed depth, so memory stays bounded) to
/// a thread that hashes them while this one applies and writes.
struct HashingWriter<W: Write> {
    inner: W,
    hash: Hash,
    /// Where the kernel copies ranges of the base, while it accepts to.
    kernel: Option<KernelCopy>,
}

/// The output file for in-kernel copies, and a buffer to read back what
/// they wrote: the whole-file hash is of the bytes in the output, never of
/// a second read of the base, which could have changed in between.
struct KernelCopy {
    file: File,
    buf: Vec<u8>,
    copied: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W, hash: Hash) -> Self {
        HashingWriter {
            inner,
            hash,
            kernel: None,
        }
    }
}

impl<W: Write> delta::Rebuild for HashingWriter<BufWriter<W>> {
    fn copy_range(&mut self, base: &File, offset: u64, n: u64) -> std::io::Result<u64> {
        let Some(k) = self.kernel.as_mut() else {
            return Ok(0);
        };
        self.inner.flush()?;
        let at = std::io::Seek::stream_position(&mut &k.file)?;
        let done = match crate::engine::io::copy_range(base, offset, &k.file, n) {
            Ok(done) => done,
            Err(e) if crate::engine::io::copy_refused(&e) => {
                self.kernel = None;
                return Ok(0);
            }
            Err(e) => return Err(e),
        };
        k.copied += done;
        // The hashing thread, when there is one, reads the copy back while
        // this one goes on copying.
        if let Hash::Thread { .. } = self.hash {
            let file = k.file.try_clone()?;
            return self.hash.read_back(file, at, done).map(|()| done);
        }
        if k.buf.is_empty() {
            k.buf = vec![0; 256 * 1024];
        }
        let hash = &mut self.hash;
        read_range(&k.file, at, done, &mut k.buf, |b| hash.update(b))?;
        Ok(done)
    }
}

/// Reads `len` bytes at `offset` of `file` through `buf`, a bufferful at
/// a time, handing each to `each`.
fn read_range(
    file: &File,
    offset: u64,
    len: u64,
    buf: &mut [u8],
    mut each: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut pos = offset;
    while pos < offset + len {
        let m = (offset + len - pos).min(buf.len() as u64) as usize;
        std::os::unix::fs::FileExt::read_exact_at(file, &mut buf[..m], pos)?;
        each(&buf[..m])?;
        pos += m as u64;
    }
    Ok(())
}

const HASH_BLOCK: usize = 1 << 20;
/// Files smaller than this are hashed inline (a thread is not worth it).
const HASH_THREAD_MIN: u64 = 16 << 20;

enum Hash {
    Inline(WholeHash),
    Thread {
        pending: Vec<u8>,
        blocks: std::sync::mpsc::SyncSender<ToHash>,
        spare: std::sync::mpsc::Receiver<Vec<u8>>,
        done: std::thread::JoinHandle<std::io::Result<WholeHash>>,
    },
}

/// What the hashing thread hashes next, in output order.
enum ToHash {
    Bytes(Vec<u8>),
    /// `len` bytes at `offset` of the output, which the kernel wrote.
    ReadBack {
        file: File,
        offset: u64,
        len: u64,
    },
}

impl Hash {
    fn new(mut hasher: WholeHash, expect: u64) -> Hash {
        if expect < HASH_THREAD_MIN {
            return Hash::Inline(hasher);
        }
        let (blocks, rx) = std::sync::mpsc::sync_channel::<ToHash>(2);
        let (back, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(3);
        let done = std::thread::spawn(move || {
            let mut buf = Vec::new();
            for item in rx {
                match item {
                    ToHash::Bytes(mut b) => {
                        hasher.update(&b);
                        b.clear();
                        // The writer may be gone or have enough spares: drop it then.
                        let _ = back.try_send(b);
                    }
                    ToHash::ReadBack { file, offset, len } => {
                        buf.resize(HASH_BLOCK, 0);
                        read_range(&file, offset, len, &mut buf, |b| {
                            hasher.update(b);
                            Ok(())
                        })?;
                    }
                }
            }
            Ok(hasher)
        });
        Hash::Thread {
            pending: Vec::with_capacity(HASH_BLOCK),
            blocks,
            spare,
            done,
        }
    }

    fn update(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        match self {
            Hash::Inline(h) => {
                h.update(data);
            }
            Hash::Thread {
                pending,
                blocks,
                spare,
                ..
            } => {
                while !data.is_empty() {
                    let take = (HASH_BLOCK - pending.len()).min(data.len());
                    pending.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if pending.len() == HASH_BLOCK {
                        let next = spare
                            .try_recv()
                            .unwrap_or_else(|_| Vec::with_capacity(HASH_BLOCK));
                        let full = std::mem::replace(pending, next);
                        blocks
                            .send(ToHash::Bytes(full))
                            .map_err(|_| std::io::Error::other("hashing thread ended"))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// [`Hash::update`] with bytes the caller has no more use for: handed
    /// to the hashing thread as they are when nothing is pending before
    /// them (the usual case: data arrives in whole chunks).
    fn update_owned(&mut self, data: Vec<u8>) -> std::io::Result<()> {
        match self {
            Hash::Thread {
                pending, blocks, ..
            } if pending.is_empty() => blocks
                .send(ToHash::Bytes(data))
                .map_err(|_| std::io::Error::other("hashing thread ended")),
            _ => self.update(&data),
        }
    }

    /// Hashes `len` bytes at `offset` of `file` (the output) on the
    /// hashing thread, after everything given before.
    fn read_back(&mut self, file: File, offset: u64, len: u64) -> std::io::Result<()> {
        let Hash::Thread {
            pending,
            blocks,
            spare,
            ..
        } = self
        else {
            return Err(std::io::Error::other("no hashing thread"));
        };
        let gone = |_| std::io::Error::other("hashing thread ended");
        if !pending.is_empty() {
            let next = spare
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(HASH_BLOCK));
            let full = std::mem::replace(pending, next);
            blocks.send(ToHash::Bytes(full)).map_err(gone)?;
        }
        blocks
            .send(ToHash::ReadBack { file, offset, len })
            .map_err(gone)
    }

    fn finish(self) -> Result<blake3::Hash> {
        match self {
            Hash::Inline(h) => Ok(h.finalize()),
            Hash::Thread {
                pending,
                blocks,
                done,
                ..
            } => {
                if !pending.is_empty() {
                    blocks
                        .send(ToHash::Bytes(pending))
                        .map_err(|_| Error::other("hashing thread ended"))?;
                }
                drop(blocks);
                let h = done
                    .join()
                    .map_err(|_| Error::other("hashing thread panicked"))?
                    .map_err(write_err)?;
                Ok(h.finalize())
            }
        }
    }
}

impl<W: Write> HashingWriter<W> {
    /// Writes `data` and hashes it without a copy of it where it can: a
    /// whole received chunk goes to the hashing thread as it is.
    fn write_owned(&mut self, data: Vec<u8>) -> std::io::Result<()> {
        self.inner.write_all(&data)?;
        self.hash.update_owned(data)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n])?;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes decoded chunks and delta pieces to a file, hashing as it goes.
struct ContentWriter {
    out: HashingWriter<BufWriter<Box<dyn Write + Send>>>,
    base: Option<Base>,
}

impl ContentWriter {
    fn new(d: Dest, expect: u64) -> Result<ContentWriter> {
        // Never more buffer than the whole output: a small file's 8 KiB
        // buffer was an allocation large enough to make glibc consolidate
        // its fast bins on every upload.
        let cap = expect.min(1 << 20) as usize;
        let mut out = HashingWriter::new(
            BufWriter::with_capacity(cap, d.out),
            Hash::new(d.hasher, expect),
        );
        if d.base.is_some() {
            let readable = d.out_file.filter(crate::engine::io::read_write);
            out.kernel = readable.map(|file| KernelCopy {
                file,
                buf: Vec::new(),
                copied: 0,
            });
        }
        Ok(ContentWriter {
            out,
            base: d.base.map(Base::boxed).transpose()?,
        })
    }

    fn chunk(&mut self, chunk: Chunk) -> Result<()> {
        match chunk.decode()? {
            Decoded::Data(b) => self.out.write_owned(b).map_err(write_err),
            Decoded::Piece { out_len, delta } => match self.base.as_mut() {
                Some(b) => b.apply(&delta, out_len, &mut self.out),
                None => Err(Error::protocol("delta piece without a base file")),
            },
        }
    }

    fn finish(mut self) -> Result<String> {
        self.out.flush().map_err(write_err)?;
        Ok(self.out.hash.finish()?.to_hex().to_string())
    }
}

fn write_err(e: std::io::Error) -> Error {
    Error::other(format!("write error: {e}"))
}

/// Receives chunks producing exactly `expect` bytes into `dest` (or
/// discards them when `dest` is `None`, to keep the stream in step after a
/// local error). A network or protocol error is returned as `Err`. Bytes
/// saved by compression are added to `saved`.
pub async fn receive<R: AsyncRead + Unpin>(
    r: &mut FrameReader<R>,
    dest: Option<Dest>,
    expect: u64,
    progress: &(dyn Fn(&Chunk) + Sync),
    saved: &mut u64,
) -> Result<Received> {
    // A file of one chunk is written right here; bigger ones by a thread
    // that overlaps disk writes (and delta application) with the network.
    let small = expect <= CHUNK as u64 && dest.as_ref().is_none_or(|d| d.base.is_none());
    let mut inline: Option<Result<ContentWriter>> = None;
    let mut tx = None;
    let mut writer = None;
    if let Some(d) = dest {
        if small {
            inline = Some(ContentWriter::new(d, expect));
        } else {
            let (t, mut rx) = mpsc::channel::<Chunk>(DEPTH);
            tx = Some(t);
            writer = Some(tokio::task::spawn_blocking(move || -> Result<String> {
                let mut w = ContentWriter::new(d, expect)?;
                while let Some(chunk) = rx.blocking_recv() {
                    w.chunk(chunk)?;
                }
                w.finish()
            }));
        }
    }
    let mut left = expect;
    let outcome: Result<Option<Msg>> = loop {
        if left == 0 {
            break Ok(None);
        }
        match r.read().await {
            Err(e) => break Err(e),
            Ok(Frame::Control(m)) => break Ok(Some(m)),
            Ok(Frame::Chunk(c)) => {
                if c.out_len > left {
                    break Err(Error::protocol("more data than announced"));
                }
                left -= c.out_len;
                *saved += c.compression_saved();
                progress(&c);
                if let Some(Ok(w)) = inline.as_mut() {
                    if let Err(e) = w.chunk(c) {
                        inline = Some(Err(e)); // drain the rest
                    }
                } else if let Some(t) = &tx {
                    if t.send(c).await.is_err() {
                        tx = None; // the writer failed: drain the rest
                    }
                }
            }
        }
    };
    // Always wait for the writer, so no thread still writes to the file
    // once the caller decides its fate.
    drop(tx);
    let written = match (inline, writer) {
        (Some(w), _) => w.and_then(ContentWriter::finish),
        (None, Some(w)) => w
            .await
            .unwrap_or_else(|e| Err(Error::other(format!("writer failed: {e}")))),
        (None, None) => Err(Error::other("discarded")),
    };
    match outcome? {
        Some(m) => Ok(Received::Interrupted(m)),
        None => Ok(Received::Complete(written)),
    }
}

/// Where a received file is being written: a plain temp file, or a
/// resumable partial file. Either way the target only ever sees the
/// complete, verified file, by rename.
pub enum Sink {
    Temp(crate::fsutil::TempFile),
    Part(crate::engine::partial::PartFile),
}

impl Sink {
    /// A resumable part for `target` if it is worth one (the file is at
    /// least [`crate::engine::partial::RESUME_MIN`] bytes and no other
    /// transfer writes it), else a plain temp file.
    pub fn fresh(target: &std::path::Path, source: &crate::model::Meta) -> std::io::Result<Sink> {
        if source.size >= crate::engine::partial::RESUME_MIN {
            if let Some(p) = crate::engine::partial::PartFile::create(target, source)? {
                return Ok(Sink::Part(p));
            }
        }
        crate::fsutil::TempFile::create_beside(target).map(Sink::Temp)
    }

    pub fn file(&self) -> &File {
        match self {
            Sink::Temp(t) => t.file(),
            Sink::Part(p) => p.file(),
        }
    }

    /// A destination writing into this sink.
    pub fn dest(&self) -> std::io::Result<Dest> {
        self.file().try_clone().map(Dest::new)
    }

    /// The data is wrong: do not keep it for a resume.
    pub fn discard(&mut self) {
        if let Sink::Part(p) = self {
            p.discard();
        }
    }

    pub fn commit(
        self,
        target: &std::path::Path,
        meta: &crate::model::Meta,
    ) -> std::io::Result<()> {
        match self {
            Sink::Temp(t) => t.commit(target, meta),
            Sink::Part(p) => p.commit(meta),
        }
    }
}

/// BLAKE3 of a whole local file, streamed.
pub fn hash_file(path: &std::path::Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::local_io(path, e))?;
    let len = f.metadata().map_err(|e| Error::local_io(path, e))?.len();
    crate::engine::partial::hash_prefix(&mut f, len)
        .map(|(h, _)| h)
        .map_err(|e| Error::local_io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::engine::delta::tests::rand_bytes as data;

    async fn pipe(
        send: impl FnOnce(FrameWriter<tokio::io::DuplexStream>) -> tokio::task::JoinHandle<String>,
        dest: Dest,
        expect: u64,
    ) -> (String, Result<String>, u64) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let w = FrameWriter::new(a, Duration::from_secs(5));
        let mut r = FrameReader::new(b, Duration::from_secs(5));
        let h = send(w);
        let mut saved = 0;
        let got = receive(&mut r, Some(dest), expect, &|_| {}, &mut saved)
            .await
            .unwrap();
        let sent = h.await.unwrap();
        match got {
            Received::Complete(x) => (sent, x, saved),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn full_resumed_compressed_and_delta_roundtrips() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        // Text first: after a chunk that does not compress, the next ones are not tried.
        let mut content = "compressible text line\n".repeat(100_000).into_bytes();
        content.extend_from_slice(&data(CHUNK * 3 + 17, 1));
        std::fs::write(&src, &content).unwrap();
        let size = content.len() as u64;
        let opts = SendOptions { compress: Some(3) };

        // Whole file, compressed where it pays.
        let dst = d.path().join("dst");
        let s2 = src.clone();
        let (sent, got, saved) = pipe(
            move |mut w| {
                tokio::spawn(async move {
                    let f = File::open(&s2).unwrap();
                    let (h, st) = send_file(
                        &mut w,
                        f,
                        None,
                        0,
                        size,
                        blake3::Hasher::new(),
                        opts,
                        &|_| {},
                    )
                    .await
                    .unwrap();
                    assert!(st.compressed_saved > 0);
                    w.flush().await.unwrap();
                    h
                })
            },
            Dest::new(File::create(&dst).unwrap()),
            size,
        )
        .await;
        assert_eq!(got.unwrap(), sent);
        assert!(saved > 300_000, "saved {saved}");
        assert_eq!(std::fs::read(&dst).unwrap(), content);
        assert_eq!(hash_file(&src).unwrap(), sent);

        // Resume after 100,000 bytes.
        let part = d.path().join("part");
        std::fs::write(&part, &content[..100_000]).unwrap();
        let mut pf = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&part)
            .unwrap();
        let (_, prefix) = crate::engine::partial::hash_prefix(&mut pf, 100_000).unwrap();
        std::io::Seek::seek(&mut pf, SeekFrom::End(0)).unwrap();
        let s2 = src.clone();
        let p2 = prefix.clone();
        let (sent, got, _) = pipe(
            move |mut w| {
                tokio::spawn(async move {
                    let f = File::open(&s2).unwrap();
                    let (h, _) = send_file(&mut w, f, None, 100_000, size, p2, opts, &|_| {})
                        .await
                        .unwrap();
                    w.flush().await.unwrap();
                    h
                })
            },
            Dest {
                hasher: prefix.into(),
                ..Dest::new(pf)
            },
            size - 100_000,
        )
        .await;
        assert_eq!(got.unwrap(), sent);
        assert_eq!(std::fs::read(&part).unwrap(), content);

        // Delta against an edited old copy.
        let old = d.path().join("old");
        let mut old_content = content.clone();
        old_content[5000..5010].copy_from_slice(b"XXXXXXXXXX");
        std::fs::write(&old, &old_content).unwrap();
        let sig =
            delta::signature(&mut File::open(&old).unwrap(), old_content.len() as u64).unwrap();
        let sig = delta::parse_signature(sig).unwrap();
        let out = d.path().join("rebuilt");
        let s2 = src.clone();
        let (sent, got, _) = pipe(
            move |mut w| {
                tokio::spawn(async move {
                    let f = File::open(&s2).unwrap();
                    let (h, st) = send_delta(&mut w, f, size, sig, opts, &|_| {})
                        .await
                        .unwrap();
                    assert!(st.matched > size / 2, "{st:?}");
                    w.flush().await.unwrap();
                    h
                })
            },
            Dest::new(File::create(&out).unwrap()).with_base(File::open(&old).unwrap()),
            size,
        )
        .await;
        assert_eq!(got.unwrap(), sent);
        assert_eq!(std::fs::read(&out).unwrap(), content);
    }

    /// Rebuilds `new` from `old` (files in `old_dir`, output in `out_dir`)
    /// the way a receiver does; returns the bytes the kernel copied.
    /// `len` bytes: from [`HASH_THREAD_MIN`] on, the hashing thread reads
    /// the kernel's copies back.
    fn rebuild_in(old_dir: &std::path::Path, out_dir: &std::path::Path, len: usize) -> u64 {
        let old = data(len, 31);
        let mut new = old.clone();
        new[1_000_000..1_000_010].copy_from_slice(b"0123456789");
        new.splice(2_000_000..2_000_000, *b"inserted");
        let old_path = old_dir.join("old");
        std::fs::write(&old_path, &old).unwrap();
        let sig = delta::signature(&mut File::open(&old_path).unwrap(), old.len() as u64).unwrap();
        let sig = delta::parse_signature(sig).unwrap();
        let mut pieces = Vec::new();
        let (sent, _) = delta::diff_file(
            &mut std::io::Cursor::new(&new),
            new.len() as u64,
            &sig,
            |p| {
                pieces.push(p);
                Ok(())
            },
        )
        .unwrap();
        let out = out_dir.join("rebuilt");
        let out_file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&out)
            .unwrap();
        let dest = Dest::for_file(out_file)
            .unwrap()
            .with_base(File::open(&old_path).unwrap());
        let mut w = ContentWriter::new(dest, new.len() as u64).unwrap();
        for p in pieces {
            let base = w.base.as_mut().unwrap();
            base.apply(&p.delta, p.out_len, &mut w.out).unwrap();
        }
        let copied = w.out.kernel.as_ref().map_or(0, |k| k.copied);
        assert_eq!(w.finish().unwrap(), sent);
        assert_eq!(std::fs::read(&out).unwrap(), new);
        copied
    }

    #[test]
    fn unchanged_ranges_are_copied_by_the_kernel_within_a_filesystem() {
        for len in [3 << 20, HASH_THREAD_MIN as usize + (5 << 20)] {
            let d = tempfile::tempdir().unwrap();
            let copied = rebuild_in(d.path(), d.path(), len);
            assert!(
                copied > len as u64 - (1 << 20),
                "only {copied} bytes copied in the kernel"
            );
        }
    }

    #[test]
    fn a_refused_kernel_copy_falls_back_to_a_plain_copy() {
        use std::os::unix::fs::MetadataExt;
        // The receiver's base and output always share a directory; across
        // filesystems (tmpfs and the temp dir's disk) the kernel refuses.
        let shm = std::path::Path::new("/dev/shm");
        let a = tempfile::tempdir_in(shm).expect("this test needs /dev/shm (tmpfs)");
        let b = tempfile::tempdir().unwrap();
        let dev = |p: &std::path::Path| std::fs::metadata(p).unwrap().dev();
        assert_ne!(
            dev(a.path()),
            dev(b.path()),
            "the temp dir must not be on /dev/shm for this test (unset TMPDIR)"
        );
        assert_eq!(rebuild_in(a.path(), b.path(), 3 << 20), 0);
    }

    #[test]
    fn hashing_on_another_core_equals_hashing_inline() {
        let content = data(HASH_THREAD_MIN as usize + 3 * HASH_BLOCK + 12_345, 21);
        // A resumed prefix already in the hasher, then odd-sized writes.
        let mut prefix = blake3::Hasher::new();
        prefix.update(&content[..1000]);
        let mut w = HashingWriter::new(Vec::new(), Hash::new(prefix.into(), content.len() as u64));
        assert!(matches!(w.hash, Hash::Thread { .. }));
        for part in content[1000..].chunks(777_777) {
            w.write_all(part).unwrap();
        }
        assert_eq!(w.inner, content[1000..]);
        assert_eq!(w.hash.finish().unwrap(), blake3::hash(&content));
    }

    #[tokio::test]
    async fn shrinking_file_is_a_local_error() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::write(&src, b"short").unwrap();
        let (a, _b) = tokio::io::duplex(1 << 20);
        let mut w = FrameWriter::new(a, Duration::from_secs(5));
        let f = File::open(&src).unwrap();
        let r = send_file(
            &mut w,
            f,
            None,
            0,
            100,
            blake3::Hasher::new(),
            SendOptions { compress: None },
            &|_| {},
        )
        .await;
        assert!(matches!(r, Err(SendError::Local(_))));
    }
}
