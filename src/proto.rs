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
/// Size of the data chunks fts itself sends.
pub const CHUNK: usize = 256 * 1024;
/// Longest remote path accepted, in bytes (Linux PATH_MAX).
pub const MAX_PATH: usize = 4096;

const KIND_CONTROL: u8 = 1;
const KIND_DATA: u8 = 2;

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
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
}

/// File metadata carried with a file's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub size: u64,
    pub mtime: i64,
    pub mtime_ns: u32,
    pub mode: u32,
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
    /// Followed by data frames summing to `meta.size`, then `PutEnd` or `PutAbort`.
    Put {
        id: u64,
        path: String,
        meta: Meta,
    },
    PutEnd {
        id: u64,
        hash: String,
    },
    PutAbort {
        id: u64,
        reason: String,
    },
    Get {
        id: u64,
        path: String,
    },
    Remove {
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
    /// A `Mkdir`, `SetMeta` or `Put` with this id succeeded.
    Done {
        id: u64,
    },
    /// Followed by data frames summing to `meta.size`, then `FileEnd`
    /// (or an `Error` with the same id if reading fails half-way).
    FileHeader {
        id: u64,
        meta: Meta,
    },
    FileEnd {
        id: u64,
        hash: String,
    },
    Removed {
        files: u64,
        dirs: u64,
    },
    Error {
        id: Option<u64>,
        kind: ErrorKind,
        message: String,
    },
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
    Data(Vec<u8>),
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
            Frame::Data(_) => Err(Error::protocol("unexpected data frame")),
        }
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
            KIND_DATA => MAX_DATA,
            k => return Err(Error::protocol(format!("unknown frame type {k}"))),
        };
        if len > limit {
            return Err(Error::protocol(format!(
                "frame of {len} bytes exceeds the limit of {limit}"
            )));
        }
        let mut buf = vec![0u8; len];
        self.r.read_exact(&mut buf).await?;
        if hdr[0] == KIND_DATA {
            return Ok(Some(Frame::Data(buf)));
        }
        let msg = serde_json::from_slice(&buf)
            .map_err(|e| Error::protocol(format!("bad control message: {e}")))?;
        Ok(Some(Frame::Control(msg)))
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
        self.frame(KIND_CONTROL, &body).await
    }

    pub async fn data(&mut self, d: &[u8]) -> Result<()> {
        debug_assert!(d.len() <= MAX_DATA);
        self.frame(KIND_DATA, d).await
    }

    async fn frame(&mut self, kind: u8, body: &[u8]) -> Result<()> {
        let mut hdr = [0u8; 5];
        hdr[0] = kind;
        hdr[1..].copy_from_slice(&(body.len() as u32).to_be_bytes());
        let w = &mut self.w;
        tokio::time::timeout(self.timeout, async move {
            w.write_all(&hdr).await?;
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
            Frame::Data(d) => assert_eq!(d, b"hello"),
            f => panic!("{f:?}"),
        }
        drop(w);
        assert!(r.read_opt().await.unwrap().is_none());
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
