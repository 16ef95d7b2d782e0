//! Helpers shared by the fuzz targets: one current-thread tokio runtime,
//! an in-memory peer that hands its bytes out in chosen slices (and can
//! answer every other poll with `Pending`), and a writer whose bytes can
//! be read back after a `FrameWriter` owns it.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One runtime for the whole run (building one per input would dominate).
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("tokio runtime")
    })
}

/// A peer that sends `data` at most `step` bytes per read, then EOF.
/// With `pending`, every other poll returns `Pending` (waking itself), so
/// a caller that gives up on a pending read cuts frames at every point.
pub struct Script {
    data: Vec<u8>,
    pos: usize,
    step: usize,
    pending: bool,
    flip: bool,
}

impl Script {
    pub fn new(data: &[u8], step: usize, pending: bool) -> Script {
        Script {
            data: data.to_vec(),
            pos: 0,
            step: step.max(1),
            pending,
            flip: false,
        }
    }
}

impl AsyncRead for Script {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pending {
            this.flip = !this.flip;
            if this.flip {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        let n = (this.data.len() - this.pos)
            .min(this.step)
            .min(buf.remaining());
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// An `AsyncWrite` into a shared buffer.
#[derive(Clone, Default)]
pub struct Sink(pub Arc<Mutex<Vec<u8>>>);

impl Sink {
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

impl AsyncWrite for Sink {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(b);
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Read sizes the first input byte picks from: single bytes (a peer that
/// trickles), odd sizes that split headers, and whole buffers.
pub fn step_for(b: u8) -> usize {
    [1, 2, 3, 5, 7, 64, 4096, usize::MAX][(b & 7) as usize]
}
