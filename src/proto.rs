//! The wire protocol: frame codec, message types and the byte-counting
//! stream wrapper.
//!
//! A frame is `[kind: u8][len: u32 BE][payload]`. Kind 1 is a control
//! message (JSON-encoded [`Msg`], at most [`MAX_CONTROL`] bytes), kind 2 is a
//! raw data chunk (at most [`MAX_DATA`] bytes). Lengths are checked against
//! those bounds before anything is allocated, and every read and write is
//! bounded by a timeout, so a hostile or stalled peer costs at most one
//! buffer and one timeout.
//!
//! File data is pipelined: a sender writes `Put`, the data frames and
//! `PutEnd` back to back without waiting; replies carry the request id.

use crate::error::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter, ReadBuf};

/// Bumped on any incompatible change; checked in `Hello`/`Welcome`.
pub const PROTOCOL_VERSION: u32 = 1;
/// ALPN id of the fts protocol on the shared TLS port.
pub const ALPN_FTS: &[u8] = b"fts/1";
/// Largest control message accepted from a peer.
pub const MAX_CONTROL: usize = 64 * 1024;
/// Largest data frame accepted from a peer.
pub const MAX_DATA: usize = 1 << 20;
/// Size of the data chunks fts itself sends (compressed one by one: 1 MiB
/// chunks compress about as well as one zstd stream).
pub const CHUNK: usize = MAX_DATA;
/// Longest remote path accepted, in bytes (Linux PATH_MAX).
pub const MAX_PATH: usize = 4096;

const KIND_CONTROL: u8 = 1;
const KIND_DATA: u8 = 2;
const KIND_DATA_ZSTD: u8 = 3;
const KIND_PIECE: u8 = 4;
const KIND_PIECE_ZSTD: u8 = 5;

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

/// One file, directory or symlink below the share root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the share root, `/`-separated; `""` is the root itself.
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    pub mtime_ns: u32,
    /// Permission bits (`mode & 0o777`).
    pub mode: u32,
    /// For a symlink: where it points (as stored in the link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// BLAKE3 of a file's contents, when asked for (`--checksum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl Entry {
    pub fn meta(&self) -> Meta {
        Meta {
            size: self.size,
            mtime: self.mtime,
            mtime_ns: self.mtime_ns,
            mode: self.mode,
        }
    }
}

/// File metadata carried with a file's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub size: u64,
    pub mtime: i64,
    pub mtime_ns: u32,
    pub mode: u32,
}

/// Continue an upload after the first `offset` bytes the receiver already
/// holds in its partial file; `prefix_hash` is the sender's BLAKE3 of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    pub offset: u64,
    pub prefix_hash: String,
}

/// A partial file the receiver holds for a target, and the source version
/// it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialInfo {
    pub len: u64,
    pub source: Meta,
}

/// Every control message, in both directions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Msg {
    // ---- client → server
    Hello {
        version: u32,
        client: String,
    },
    Auth {
        password: Option<String>,
        admin_password: Option<String>,
    },
    Stat {
        path: String,
    },
    List {
        path: String,
        recursive: bool,
        /// Include each file's BLAKE3 (expensive: reads every file).
        #[serde(default)]
        hashes: bool,
    },
    /// What is at a target path: the entry and a partial file.
    Probe {
        id: u64,
        path: String,
    },
    /// Ask for the signature of a file, to send it a delta.
    SigReq {
        id: u64,
        path: String,
    },
    Symlink {
        id: u64,
        path: String,
        target: String,
    },
    Mkdir {
        id: u64,
        path: String,
    },
    SetMeta {
        id: u64,
        path: String,
        mtime: i64,
        mtime_ns: u32,
        mode: u32,
    },
    /// Followed by chunks producing `meta.size` bytes (less the resumed
    /// prefix), then `PutEnd` or `PutAbort`. With `delta_base`, the chunks
    /// are delta pieces against the receiver's current file, which must
    /// still have that metadata.
    Put {
        id: u64,
        path: String,
        meta: Meta,
        #[serde(default)]
        resume: Option<Resume>,
        #[serde(default)]
        delta_base: Option<Meta>,
    },
    PutEnd {
        id: u64,
        hash: String,
    },
    PutAbort {
        id: u64,
        reason: String,
    },
    /// With `signature`, that many bytes of the client's signature follow
    /// as chunks, and the server may answer with delta pieces. With
    /// `resume`, the server may skip the prefix the client already has, if
    /// its file is still `source`.
    Get {
        id: u64,
        path: String,
        #[serde(default)]
        resume: Option<GetResume>,
        #[serde(default)]
        signature: Option<u64>,
    },
    Remove {
        id: u64,
        path: String,
        recursive: bool,
    },
    Bye,

    // ---- server → client
    Welcome {
        version: u32,
        server: String,
        auth_required: bool,
        admin_enabled: bool,
        read_only: bool,
    },
    AuthOk {
        admin: bool,
    },
    StatReply {
        entry: Option<Entry>,
    },
    ListBatch {
        entries: Vec<Entry>,
    },
    ListEnd,
    ProbeReply {
        id: u64,
        entry: Option<Entry>,
        partial: Option<PartialInfo>,
    },
    /// Followed by `len` bytes of signature as chunks.
    SigReply {
        id: u64,
        base: Meta,
        len: u64,
    },
    /// A `Mkdir`, `SetMeta`, `Symlink` or `Put` with this id succeeded.
    Done {
        id: u64,
    },
    /// The upload with this id could not be used as sent (its delta base
    /// changed, its rebuilt file did not verify, its resume prefix did not
    /// match): send the whole file again.
    Redo {
        id: u64,
        reason: String,
    },
    /// Followed by chunks producing `meta.size - offset` bytes (delta
    /// pieces when `delta`), then `FileEnd` (or an `Error` with the same id
    /// if reading fails half-way).
    FileHeader {
        id: u64,
        meta: Meta,
        #[serde(default)]
        offset: u64,
        #[serde(default)]
        delta: bool,
    },
    FileEnd {
        id: u64,
        hash: String,
        #[serde(default)]
        literal: u64,
        #[serde(default)]
        matched: u64,
    },
    Removed {
        id: u64,
        files: u64,
        dirs: u64,
    },
    Error {
        id: Option<u64>,
        kind: ErrorKind,
        message: String,
    },
}

/// A download resume request: skip `offset` bytes if the server's file is
/// still `source` and its prefix hashes to `prefix_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetResume {
    pub offset: u64,
    pub prefix_hash: String,
    pub source: Meta,
}

impl Msg {
    pub fn error(id: Option<u64>, e: &Error) -> Msg {
        Msg::Error {
            id,
            kind: e.kind,
            message: e.message.clone(),
        }
    }
}

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

/// Reads frames with bounded lengths and a timeout per frame.
pub struct FrameReader<R> {
    r: R,
    timeout: Duration,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(r: R, timeout: Duration) -> Self {
        FrameReader { r, timeout }
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The next frame, or `None` when the peer closed cleanly between frames.
    pub async fn read_opt(&mut self) -> Result<Option<Frame>> {
        tokio::time::timeout(self.timeout, self.read_inner()).await?
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

    async fn read_inner(&mut self) -> Result<Option<Frame>> {
        let mut hdr = [0u8; 5];
        match self.r.read(&mut hdr[..1]).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            // A peer that hangs up between frames without a TLS close_notify
            // (a process that exited on an error) has still closed cleanly
            // as far as the protocol is concerned.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        self.r.read_exact(&mut hdr[1..]).await?;
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
        let mut buf = vec![0u8; len];
        self.r.read_exact(&mut buf).await?;
        if hdr[0] == KIND_CONTROL {
            let msg = serde_json::from_slice(&buf)
                .map_err(|e| Error::protocol(format!("bad control message: {e}")))?;
            return Ok(Some(Frame::Control(msg)));
        }
        decode_chunk(hdr[0], buf).map(|c| Some(Frame::Chunk(c)))
    }
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
pub struct FrameWriter<W: AsyncWrite> {
    w: BufWriter<W>,
    timeout: Duration,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(w: W, timeout: Duration) -> Self {
        FrameWriter {
            w: BufWriter::with_capacity(64 * 1024, w),
            timeout,
        }
    }

    pub async fn msg(&mut self, m: &Msg) -> Result<()> {
        let body = serde_json::to_vec(m).map_err(|e| Error::other(e.to_string()))?;
        if body.len() > MAX_CONTROL {
            return Err(Error::other("control message too large"));
        }
        self.frame(KIND_CONTROL, &[], &body).await
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
        let mut hdr = [0u8; 5];
        hdr[0] = kind;
        hdr[1..].copy_from_slice(&((head.len() + body.len()) as u32).to_be_bytes());
        let w = &mut self.w;
        tokio::time::timeout(self.timeout, async move {
            w.write_all(&hdr).await?;
            w.write_all(head).await?;
            w.write_all(body).await
        })
        .await??;
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<()> {
        tokio::time::timeout(self.timeout, self.w.flush()).await??;
        Ok(())
    }

    /// Flush and shut the write side down (TLS close_notify).
    pub async fn shutdown(&mut self) -> Result<()> {
        tokio::time::timeout(self.timeout, self.w.shutdown()).await??;
        Ok(())
    }
}

/// Bytes that really crossed the socket (TLS records included).
#[derive(Debug, Default)]
pub struct WireCounters {
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

impl WireCounters {
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// A stream wrapper that counts bytes read and written.
pub struct Counted<S> {
    inner: S,
    counters: Arc<WireCounters>,
}

impl<S> Counted<S> {
    pub fn new(inner: S, counters: Arc<WireCounters>) -> Self {
        Counted { inner, counters }
    }
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.counters
            .received
            .fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.counters.sent.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r {
            self.counters.sent.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn roundtrip_control_and_data() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = FrameWriter::new(a, Duration::from_secs(5));
        let mut r = FrameReader::new(b, Duration::from_secs(5));
        let m = Msg::Stat { path: "a/b".into() };
        w.msg(&m).await.unwrap();
        w.data(b"hello").await.unwrap();
        w.flush().await.unwrap();
        assert_eq!(r.read_msg().await.unwrap(), m);
        match r.read().await.unwrap() {
            Frame::Chunk(c) => assert_eq!(c, Chunk::raw(b"hello".to_vec())),
            f => panic!("{f:?}"),
        }
        drop(w);
        assert!(r.read_opt().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn every_chunk_kind_roundtrips() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = FrameWriter::new(a, Duration::from_secs(5));
        let mut r = FrameReader::new(b, Duration::from_secs(5));
        let chunks = vec![
            Chunk::raw(vec![1, 2, 3]),
            Chunk {
                out_len: 7,
                body: Body::Zstd {
                    raw_len: 7,
                    bytes: vec![9; 5],
                },
            },
            Chunk {
                out_len: 1 << 20,
                body: Body::Piece(vec![4; 10]),
            },
            Chunk {
                out_len: 99,
                body: Body::PieceZstd {
                    raw_len: 30,
                    bytes: vec![5; 6],
                },
            },
        ];
        for c in &chunks {
            w.chunk(c).await.unwrap();
        }
        w.flush().await.unwrap();
        for c in chunks {
            match r.read().await.unwrap() {
                Frame::Chunk(got) => assert_eq!(got, c),
                f => panic!("{f:?}"),
            }
        }
    }

    #[tokio::test]
    async fn hostile_chunk_headers_are_refused() {
        for (kind, payload) in [
            (KIND_DATA_ZSTD, vec![0xff, 0xff, 0xff, 0xff, 1]),
            (KIND_PIECE, vec![0xff; 9]),
            (
                KIND_PIECE_ZSTD,
                vec![0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff],
            ),
            (KIND_PIECE, vec![1, 2]),
        ] {
            let (mut a, b) = tokio::io::duplex(1024);
            a.write_all(&[kind]).await.unwrap();
            a.write_all(&(payload.len() as u32).to_be_bytes())
                .await
                .unwrap();
            a.write_all(&payload).await.unwrap();
            let mut r = FrameReader::new(b, Duration::from_secs(5));
            assert!(r.read().await.is_err(), "kind {kind}");
        }
    }

    #[tokio::test]
    async fn oversized_length_is_refused_before_allocation() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(&[KIND_DATA, 0xff, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        let mut r = FrameReader::new(b, Duration::from_secs(5));
        let e = r.read().await.unwrap_err();
        assert!(e.message.contains("exceeds the limit"), "{e}");
    }

    #[tokio::test]
    async fn garbage_is_a_protocol_error() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(&[KIND_CONTROL, 0, 0, 0, 3, b'x', b'y', b'z'])
            .await
            .unwrap();
        let mut r = FrameReader::new(b, Duration::from_secs(5));
        assert!(r.read().await.unwrap_err().message.contains("bad control"));
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(&[9, 0, 0, 0, 0]).await.unwrap();
        let mut r = FrameReader::new(b, Duration::from_secs(5));
        assert!(r
            .read()
            .await
            .unwrap_err()
            .message
            .contains("unknown frame"));
    }

    #[tokio::test]
    async fn stalled_peer_times_out() {
        let (_a, b) = tokio::io::duplex(64);
        let mut r = FrameReader::new(b, Duration::from_millis(50));
        assert_eq!(r.read().await.unwrap_err().kind, ErrorKind::Connect);
    }
}
