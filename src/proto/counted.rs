//! The stream under TLS that counts the bytes really crossing the socket
//! (for the `wire_*` figures of a report) and paces them for `--bwlimit`.

use crate::link::Pace;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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

/// A stream wrapper that counts bytes read and written and, with a
/// limit, paces them (`--bwlimit`): each direction gets `rate` bytes per
/// second, in slices of at most a tenth of a second's worth.
pub struct Counted<S> {
    inner: S,
    counters: Arc<WireCounters>,
    read_pace: Option<Pace>,
    write_pace: Option<Pace>,
}

impl<S> Counted<S> {
    pub fn new(inner: S, counters: Arc<WireCounters>) -> Self {
        Counted {
            inner,
            counters,
            read_pace: None,
            write_pace: None,
        }
    }
    /// Limits each direction to `rate` bytes per second.
    pub fn with_limit(mut self, rate: Option<u64>) -> Self {
        self.read_pace = rate.map(Pace::new);
        self.write_pace = rate.map(Pace::new);
        self
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
        let this = &mut *self;
        let Some(p) = this.read_pace.as_mut() else {
            let before = buf.filled().len();
            let r = Pin::new(&mut this.inner).poll_read(cx, buf);
            let n = buf.filled().len() - before;
            this.counters
                .received
                .fetch_add(n as u64, Ordering::Relaxed);
            return r;
        };
        let allowed = match p.allow(cx, buf.remaining()) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(n) => n,
        };
        let mut sub = ReadBuf::new(buf.initialize_unfilled_to(allowed));
        let r = Pin::new(&mut this.inner).poll_read(cx, &mut sub);
        let n = sub.filled().len();
        buf.advance(n);
        p.used(n);
        this.counters
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
        let this = &mut *self;
        let allowed = match this.write_pace.as_mut() {
            None => buf.len(),
            Some(p) => match p.allow(cx, buf.len()) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(n) => n,
            },
        };
        let r = Pin::new(&mut this.inner).poll_write(cx, &buf[..allowed.min(buf.len())]);
        if let Poll::Ready(Ok(n)) = &r {
            if let Some(p) = this.write_pace.as_mut() {
                p.used(*n);
            }
            this.counters.sent.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.write_pace.is_some() {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &**b);
            return self.poll_write(cx, first);
        }
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
