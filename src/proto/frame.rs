//! Frames on a byte stream: the bounded, cancel-safe [`FrameReader`], the
//! [`FrameWriter`] whose frames interleave whole between several handles,
//! and the chunk codec (raw or zstd data, delta pieces) inside data frames.

use super::{Msg, CHUNK, MAX_CONTROL, MAX_DATA};
use crate::error::{Error, Result};
use crate::link::{until_silent, Activity, KeepAlive, Tracked};
use crate::model::Notice;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};

const KIND_CONTROL: u8 = 1;
const KIND_DATA: u8 = 2;
const KIND_DATA_ZSTD: u8 = 3;
const KIND_PIECE: u8 = 4;
const KIND_PIECE_ZSTD: u8 = 5;

/// One decoded frame.
#[derive(Debug)]
pub enum Frame {
    Control(Msg),
    Chunk(Chunk),
}

/// A piece of file content as it travels: raw or zstd-compressed bytes, or
/// a delta piece (see `engine::delta`), raw or compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Bytes of the file this chunk produces.
    pub out_len: u64,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Raw(Vec<u8>),
    Zstd { raw_len: usize, bytes: Vec<u8> },
    Piece(Vec<u8>),
    PieceZstd { raw_len: usize, bytes: Vec<u8> },
}

/// A chunk after decompression.
#[derive(Debug)]
pub enum Decoded {
    Data(Vec<u8>),
    Piece { out_len: u64, delta: Vec<u8> },
}

impl Chunk {
    pub fn raw(data: Vec<u8>) -> Chunk {
        Chunk {
            out_len: data.len() as u64,
            body: Body::Raw(data),
        }
    }

    /// Bytes this chunk's payload takes on the wire.
    pub fn payload_len(&self) -> usize {
        match &self.body {
            Body::Raw(b) | Body::Piece(b) => b.len(),
            Body::Zstd { bytes, .. } | Body::PieceZstd { bytes, .. } => bytes.len(),
        }
    }

    /// Bytes of payload before compression: the data itself, or for a
    /// delta piece its instructions and literal bytes.
    pub fn raw_len(&self) -> u64 {
        match &self.body {
            Body::Raw(b) | Body::Piece(b) => b.len() as u64,
            Body::Zstd { raw_len, .. } | Body::PieceZstd { raw_len, .. } => *raw_len as u64,
        }
    }

    /// File bytes this chunk produces that did not travel (delta copies).
    pub fn delta_saved(&self) -> u64 {
        match &self.body {
            Body::Piece(_) | Body::PieceZstd { .. } => self.out_len.saturating_sub(self.raw_len()),
            _ => 0,
        }
    }

    /// Bytes saved by compression in this chunk.
    pub fn compression_saved(&self) -> u64 {
        match &self.body {
            Body::Zstd { raw_len, bytes } | Body::PieceZstd { raw_len, bytes } => {
                raw_len.saturating_sub(bytes.len()) as u64
            }
            _ => 0,
        }
    }

    /// Decompresses (bounded) and hands out the content.
    pub fn decode(self) -> Result<Decoded> {
        use crate::engine::compress::decompress;
        Ok(match self.body {
            Body::Raw(b) => Decoded::Data(b),
            Body::Zstd { raw_len, bytes } => Decoded::Data(decompress(&bytes, raw_len)?),
            Body::Piece(delta) => Decoded::Piece {
                out_len: self.out_len,
                delta,
            },
            Body::PieceZstd { raw_len, bytes } => Decoded::Piece {
                out_len: self.out_len,
                delta: decompress(&bytes, raw_len)?,
            },
        })
    }
}

/// Handles notices that arrive between frames (see [`FrameReader::on_notice`]).
pub type NoticeHandler = Arc<dyn Fn(Notice) + Send + Sync>;

/// Reads frames with bounded lengths; a read fails when the peer has sent
/// nothing for the timeout (see [`crate::link`]).
pub struct FrameReader<R> {
    r: Tracked<R>,
    act: Arc<Activity>,
    timeout: Duration,
    notices: Option<NoticeHandler>,
    pings: bool,
    partial: PartialFrame,
}

/// A reader and a writer for the two halves of one connection, sharing
/// one [`Activity`] clock: a write blocked by a peer that is busy is not
/// silence as long as the peer's keepalives arrive.
pub fn frames<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    r: R,
    w: W,
    timeout: Duration,
) -> (FrameReader<R>, FrameWriter<W>) {
    let act = Activity::new();
    (
        FrameReader::with_activity(r, timeout, act.clone()),
        FrameWriter::with_activity(w, timeout, act),
    )
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(r: R, timeout: Duration) -> Self {
        Self::with_activity(r, timeout, Activity::new())
    }

    fn with_activity(r: R, timeout: Duration, act: Arc<Activity>) -> Self {
        FrameReader {
            r: Tracked::new(r, act.clone()),
            act,
            timeout,
            notices: None,
            pings: false,
            partial: PartialFrame::default(),
        }
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// From now on `Ping` frames are keepalives: they reset the silence
    /// clock and are dropped here, wherever they arrive (even between the
    /// chunks of a file). The server turns this on only after the login,
    /// so pings cannot hold a connection that never logs in.
    pub fn accept_pings(&mut self) {
        self.pings = true;
    }

    /// Client side: the server may slip a `Notice` or `Kicked` between any
    /// two frames, even inside a file's data. From now on notices go to
    /// `handler` instead of the caller, and `Kicked` becomes an error of
    /// kind [`crate::error::ErrorKind::Kicked`], whatever the caller was
    /// waiting for.
    pub fn on_notice(&mut self, handler: NoticeHandler) {
        self.notices = Some(handler);
    }

    /// The next frame, or `None` when the peer closed cleanly between frames.
    pub async fn read_opt(&mut self) -> Result<Option<Frame>> {
        loop {
            let act = self.act.clone();
            let frame = until_silent(self.timeout, || act.since_read(), self.read_inner()).await?;
            if self.pings && matches!(frame, Some(Frame::Control(Msg::Ping))) {
                continue;
            }
            let Some(handler) = &self.notices else {
                return Ok(frame);
            };
            match frame {
                Some(Frame::Control(Msg::Notice { notice })) => handler(notice),
                Some(Frame::Control(Msg::Kicked { reason })) => return Err(Error::kicked(&reason)),
                other => return Ok(other),
            }
        }
    }

    /// The next frame; a close is an error.
    pub async fn read(&mut self) -> Result<Frame> {
        self.read_opt()
            .await?
            .ok_or_else(|| Error::connect("connection closed by peer"))
    }

    /// The next frame, which must be a control message.
    pub async fn read_msg(&mut self) -> Result<Msg> {
        match self.read().await? {
            Frame::Control(m) => Ok(m),
            Frame::Chunk(_) => Err(Error::protocol("unexpected data frame")),
        }
    }

    /// Reads chunks of raw bytes (e.g. a signature) totalling exactly
    /// `len`, refusing more than `limit`.
    pub async fn read_blob(&mut self, len: u64, limit: u64) -> Result<Vec<u8>> {
        if len > limit {
            return Err(Error::protocol(format!(
                "blob of {len} bytes exceeds the limit of {limit}"
            )));
        }
        let mut out = Vec::with_capacity(len.min(1 << 20) as usize);
        while (out.len() as u64) < len {
            match self.read().await? {
                Frame::Chunk(c) if c.out_len <= len - out.len() as u64 => match c.decode()? {
                    Decoded::Data(d) => out.extend_from_slice(&d),
                    Decoded::Piece { .. } => return Err(Error::protocol("unexpected delta piece")),
                },
                _ => return Err(Error::protocol("blob data expected")),
            }
        }
        Ok(out)
    }

    /// Reads and drops whatever the peer still sends, for up to `limit`
    /// or until it closes (so it can read a last message of ours instead
    /// of running into a reset).
    pub async fn drain(&mut self, limit: Duration) {
        let mut scratch = vec![0u8; 64 * 1024];
        let _ = tokio::time::timeout(limit, async {
            while let Ok(n) = self.r.read(&mut scratch).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }

    /// Cancel-safe: a frame read half-way is kept in `self.partial` and
    /// finished by the next call, so a read may lose a `select!`.
    async fn read_inner(&mut self) -> Result<Option<Frame>> {
        let p = &mut self.partial;
        while p.hdr_got < 5 {
            match self.r.read(&mut p.hdr[p.hdr_got..]).await {
                Ok(0) if p.hdr_got == 0 => return Ok(None),
                Ok(0) => return Err(Error::connect("connection closed by peer")),
                Ok(n) => p.hdr_got += n,
                // A peer that hangs up between frames without a TLS
                // close_notify (a process that exited on an error) has
                // still closed cleanly as far as the protocol is concerned.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && p.hdr_got == 0 => {
                    return Ok(None)
                }
                Err(e) => return Err(e.into()),
            }
        }
        let hdr = p.hdr;
        if p.body.is_none() {
            let len = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize;
            let limit = match hdr[0] {
                KIND_CONTROL => MAX_CONTROL,
                KIND_DATA | KIND_DATA_ZSTD | KIND_PIECE | KIND_PIECE_ZSTD => MAX_DATA + 16,
                k => return Err(Error::protocol(format!("unknown frame type {k}"))),
            };
            if len > limit {
                return Err(Error::protocol(format!(
                    "frame of {len} bytes exceeds the limit of {limit}"
                )));
            }
            // Filled from the socket as it comes, never zeroed first: a
            // fresh zeroed 1 MiB per data frame was a measurable share of
            // a large transfer's time.
            p.body = Some(Vec::with_capacity(len));
            p.body_len = len;
        }
        let body = p.body.as_mut().expect("set above");
        while body.len() < p.body_len {
            // Never past the frame: what follows belongs to the next one.
            let want = (p.body_len - body.len()) as u64;
            match (&mut self.r).take(want).read_buf(body).await {
                Ok(0) => return Err(Error::connect("connection closed by peer")),
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let buf = p.body.take().unwrap_or_default();
        p.hdr_got = 0;
        if hdr[0] == KIND_CONTROL {
            let msg = serde_json::from_slice(&buf)
                .map_err(|e| Error::protocol(format!("bad control message: {e}")))?;
            return Ok(Some(Frame::Control(msg)));
        }
        decode_chunk(hdr[0], buf).map(|c| Some(Frame::Chunk(c)))
    }
}

/// A frame read so far.
#[derive(Default)]
struct PartialFrame {
    hdr: [u8; 5],
    hdr_got: usize,
    body: Option<Vec<u8>>,
    /// The length of the body being read (its header said so).
    body_len: usize,
}

fn take_u32(b: &[u8]) -> usize {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
}

fn take_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Checks a chunk frame's header fields against the bounds.
fn decode_chunk(kind: u8, mut buf: Vec<u8>) -> Result<Chunk> {
    let short = || Error::protocol("truncated chunk header");
    let chunk = match kind {
        KIND_DATA => {
            if buf.len() > MAX_DATA {
                return Err(Error::protocol("data frame too large"));
            }
            Chunk::raw(buf)
        }
        KIND_DATA_ZSTD => {
            if buf.len() < 4 {
                return Err(short());
            }
            let raw_len = take_u32(&buf);
            buf.drain(..4);
            Chunk {
                out_len: raw_len as u64,
                body: Body::Zstd {
                    raw_len,
                    bytes: buf,
                },
            }
        }
        KIND_PIECE => {
            if buf.len() < 8 {
                return Err(short());
            }
            let out_len = take_u64(&buf);
            buf.drain(..8);
            Chunk {
                out_len,
                body: Body::Piece(buf),
            }
        }
        _ => {
            if buf.len() < 12 {
                return Err(short());
            }
            let out_len = take_u64(&buf);
            let raw_len = take_u32(&buf[8..]);
            buf.drain(..12);
            Chunk {
                out_len,
                body: Body::PieceZstd {
                    raw_len,
                    bytes: buf,
                },
            }
        }
    };
    match &chunk.body {
        Body::Zstd { raw_len, .. } | Body::PieceZstd { raw_len, .. } if *raw_len > MAX_DATA => {
            Err(Error::protocol("compressed chunk claims too many bytes"))
        }
        Body::Piece(_) | Body::PieceZstd { .. }
            if chunk.out_len > crate::engine::delta::PIECE_OUT =>
        {
            Err(Error::protocol("delta piece produces too many bytes"))
        }
        _ => Ok(chunk),
    }
}

/// Writes frames through a buffer; call [`FrameWriter::flush`] when the
/// peer must see what was written.
///
/// The buffer sits behind a lock taken per frame, so a [`FrameWriter::handle`]
/// can slip a notice in between the frames of a file being sent. A frame
/// cut off half-way (its future dropped) marks the stream broken: nothing
/// more is written to it, so the peer never sees a torn frame followed by
/// another one.
pub struct FrameWriter<W: AsyncWrite> {
    inner: Arc<tokio::sync::Mutex<WriterInner<W>>>,
    act: Arc<Activity>,
    timeout: Duration,
}

struct WriterInner<W> {
    w: BufWriter<Tracked<W>>,
    act: Arc<Activity>,
    /// Set while a frame is being written; still set if that was cut off.
    in_frame: bool,
}

/// The writer held exclusively, for a last word (see [`FrameWriter::exclusive`]).
pub struct Exclusive<W: AsyncWrite> {
    guard: tokio::sync::OwnedMutexGuard<WriterInner<W>>,
    timeout: Duration,
}

impl<W: AsyncWrite + Unpin> WriterInner<W> {
    async fn frame(&mut self, timeout: Duration, kind: u8, head: &[u8], body: &[u8]) -> Result<()> {
        if self.in_frame {
            return Err(Error::connect("connection broken by an interrupted write"));
        }
        let mut hdr = [0u8; 5];
        hdr[0] = kind;
        hdr[1..].copy_from_slice(&((head.len() + body.len()) as u32).to_be_bytes());
        self.in_frame = true;
        let (w, act) = (&mut self.w, &self.act);
        until_silent(timeout, || act.since_any(), async move {
            w.write_all(&hdr).await?;
            w.write_all(head).await?;
            Ok(w.write_all(body).await?)
        })
        .await?;
        self.in_frame = false;
        Ok(())
    }

    async fn msg(&mut self, timeout: Duration, m: &Msg) -> Result<()> {
        let body = serde_json::to_vec(m).map_err(|e| Error::other(e.to_string()))?;
        if body.len() > MAX_CONTROL {
            return Err(Error::other("control message too large"));
        }
        self.frame(timeout, KIND_CONTROL, &[], &body).await
    }

    async fn flush(&mut self, timeout: Duration) -> Result<()> {
        if self.in_frame {
            return Err(Error::connect("connection broken by an interrupted write"));
        }
        let (w, act) = (&mut self.w, &self.act);
        until_silent(
            timeout,
            || act.since_any(),
            async move { Ok(w.flush().await?) },
        )
        .await
    }

    async fn shutdown(&mut self, timeout: Duration) -> Result<()> {
        if self.in_frame {
            // Do not flush the torn frame; just end the stream.
            tokio::time::timeout(timeout, self.w.get_mut().shutdown()).await??;
            return Ok(());
        }
        let (w, act) = (&mut self.w, &self.act);
        until_silent(timeout, || act.since_any(), async move {
            Ok(w.shutdown().await?)
        })
        .await
    }
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(w: W, timeout: Duration) -> Self {
        Self::with_activity(w, timeout, Activity::new())
    }

    fn with_activity(w: W, timeout: Duration, act: Arc<Activity>) -> Self {
        FrameWriter {
            inner: Arc::new(tokio::sync::Mutex::new(WriterInner {
                w: BufWriter::with_capacity(64 * 1024, Tracked::new(w, act.clone())),
                act: act.clone(),
                in_frame: false,
            })),
            act,
            timeout,
        }
    }

    /// Sends a `Ping` whenever nothing has been written for `every`, until
    /// the returned guard is dropped, so the peer knows this side is alive
    /// while it works (hashing, applying, listing) or only receives.
    pub fn keepalive(&self, every: Duration) -> KeepAlive
    where
        W: Send + 'static,
    {
        let (inner, act, timeout) = (self.inner.clone(), self.act.clone(), self.timeout);
        KeepAlive::spawn(async move {
            loop {
                let idle = act.since_wrote();
                if idle < every {
                    tokio::time::sleep(every - idle).await;
                    continue;
                }
                let mut g = inner.lock().await;
                // Whatever held the writer may have just written.
                if act.since_wrote() < every {
                    continue;
                }
                if g.msg(timeout, &Msg::Ping).await.is_err() || g.flush(timeout).await.is_err() {
                    return;
                }
            }
        })
    }

    /// Another writer onto the same stream; frames from both interleave
    /// whole.
    pub fn handle(&self) -> FrameWriter<W> {
        FrameWriter {
            inner: self.inner.clone(),
            act: self.act.clone(),
            timeout: self.timeout,
        }
    }

    /// Waits until no frame is being written and keeps every other writer
    /// out from then on, so whatever was writing can be cancelled without
    /// tearing a frame.
    pub async fn exclusive(&self) -> Exclusive<W> {
        Exclusive {
            guard: self.inner.clone().lock_owned().await,
            timeout: self.timeout,
        }
    }

    pub async fn msg(&mut self, m: &Msg) -> Result<()> {
        self.inner.lock().await.msg(self.timeout, m).await
    }

    /// A raw data chunk.
    pub async fn data(&mut self, d: &[u8]) -> Result<()> {
        debug_assert!(d.len() <= MAX_DATA);
        self.frame(KIND_DATA, &[], d).await
    }

    /// Raw bytes (e.g. a signature) as a series of chunks.
    pub async fn blob(&mut self, b: &[u8]) -> Result<()> {
        for c in b.chunks(CHUNK) {
            self.data(c).await?;
        }
        Ok(())
    }

    pub async fn chunk(&mut self, c: &Chunk) -> Result<()> {
        let mut head = [0u8; 12];
        match &c.body {
            Body::Raw(b) => self.frame(KIND_DATA, &[], b).await,
            Body::Zstd { raw_len, bytes } => {
                head[..4].copy_from_slice(&(*raw_len as u32).to_be_bytes());
                self.frame(KIND_DATA_ZSTD, &head[..4], bytes).await
            }
            Body::Piece(d) => {
                head[..8].copy_from_slice(&c.out_len.to_be_bytes());
                self.frame(KIND_PIECE, &head[..8], d).await
            }
            Body::PieceZstd { raw_len, bytes } => {
                head[..8].copy_from_slice(&c.out_len.to_be_bytes());
                head[8..].copy_from_slice(&(*raw_len as u32).to_be_bytes());
                self.frame(KIND_PIECE_ZSTD, &head, bytes).await
            }
        }
    }

    async fn frame(&mut self, kind: u8, head: &[u8], body: &[u8]) -> Result<()> {
        self.inner
            .lock()
            .await
            .frame(self.timeout, kind, head, body)
            .await
    }

    pub async fn flush(&mut self) -> Result<()> {
        self.inner.lock().await.flush(self.timeout).await
    }

    /// Flush and shut the write side down (TLS close_notify).
    pub async fn shutdown(&mut self) -> Result<()> {
        self.inner.lock().await.shutdown(self.timeout).await
    }
}

impl<W: AsyncWrite + Unpin> Exclusive<W> {
    pub async fn msg(&mut self, m: &Msg) -> Result<()> {
        self.guard.msg(self.timeout, m).await
    }

    pub async fn flush(&mut self) -> Result<()> {
        self.guard.flush(self.timeout).await
    }

    pub async fn shutdown(&mut self) -> Result<()> {
        self.guard.shutdown(self.timeout).await
    }
}
