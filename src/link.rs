//! How a connection behaves over time: timeouts that measure silence
//! rather than length, keepalives that prove a busy side alive, and the
//! pacing behind `--bwlimit`.
//!
//! A transfer may take hours on a slow link; what must be bounded is how
//! long the peer may be *silent*. Each connection has one [`Activity`]
//! clock that its frame reader and writer stamp whenever bytes move. A
//! pending read fails once nothing has arrived for the timeout; a pending
//! write fails once nothing has moved either way for the timeout (a peer
//! that is busy hashing or applying a delta does not read, but its
//! keepalives still arrive). A side with nothing to say for a while — the
//! server during a long upload, either side while it hashes a big file —
//! sends [`crate::proto::Msg::Ping`] frames from a [`KeepAlive`] task, so
//! the peer's clock keeps being reset while the link itself is healthy. A
//! stalled link moves neither data nor pings, so it is still detected
//! within the timeout.

use crate::error::{Error, Result};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// When bytes last moved on a connection, each way.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Milliseconds since `start`.
    read: AtomicU64,
    wrote: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            read: AtomicU64::new(0),
            wrote: AtomicU64::new(0),
        })
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub fn read(&self) {
        self.read.store(self.now(), Ordering::Relaxed);
    }

    pub fn wrote(&self) {
        self.wrote.store(self.now(), Ordering::Relaxed);
    }

    pub fn since_read(&self) -> Duration {
        Duration::from_millis(self.now().saturating_sub(self.read.load(Ordering::Relaxed)))
    }

    pub fn since_wrote(&self) -> Duration {
        Duration::from_millis(
            self.now()
                .saturating_sub(self.wrote.load(Ordering::Relaxed)),
        )
    }

    /// Since bytes last moved either way.
    pub fn since_any(&self) -> Duration {
        self.since_read().min(self.since_wrote())
    }
}

/// The error of a wait that met only silence.
pub fn silent(limit: Duration) -> Error {
    Error::connect(format!(
        "timed out waiting for the peer (nothing received for {})",
        humantime::format_duration(Duration::from_secs(limit.as_secs().max(1)))
    ))
}

/// Runs `fut` to completion unless the connection stays silent for `limit`:
/// `quiet` says how long it has been silent. The clock of one wait starts
/// no earlier than the wait itself, so a connection that sat unused (and
/// unread) for a while is not cut the moment someone reads it again.
pub async fn until_silent<T>(
    limit: Duration,
    quiet: impl Fn() -> Duration,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::pin!(fut);
    // Most frames go into a buffer or come out of one at once: those need
    // no clock reading and no timer (a small file is three frames).
    if let Poll::Ready(r) = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        return r;
    }
    let started = Instant::now();
    loop {
        let idle = quiet().min(started.elapsed());
        if idle >= limit {
            return Err(silent(limit));
        }
        tokio::select! {
            biased;
            r = &mut fut => return r,
            () = tokio::time::sleep(limit - idle) => {}
        }
    }
}

/// How often a side with nothing to send proves it is alive: well within
/// the shorter of the two sides' timeouts, but not so often that a peer
/// announcing a tiny timeout makes us flood it.
pub fn keepalive_interval(ours: Duration, theirs: Option<Duration>) -> Duration {
    let shortest = theirs.map_or(ours, |t| t.min(ours));
    (shortest / 4).max(Duration::from_millis(250))
}

/// A background task that aborts when dropped.
pub struct KeepAlive(tokio::task::JoinHandle<()>);

impl KeepAlive {
    pub fn spawn(fut: impl Future<Output = ()> + Send + 'static) -> KeepAlive {
        KeepAlive(tokio::spawn(fut))
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A stream that stamps an [`Activity`] whenever bytes move through it.
pub struct Tracked<S> {
    inner: S,
    act: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, act: Arc<Activity>) -> Self {
        Tracked { inner, act }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.act.read();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.act.wrote();
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.act.wrote();
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

/// A token bucket for one direction of `--bwlimit`.
///
/// Bytes are released in quanta and the stream sleeps until a whole
/// quantum is due, so a paced transfer costs a few dozen wake-ups a second
/// instead of a busy loop of tiny writes.
pub struct Pace {
    rate: f64,
    quantum: f64,
    burst: f64,
    budget: f64,
    at: tokio::time::Instant,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Pace {
    pub fn new(rate: u64) -> Pace {
        let rate = rate.max(1) as f64;
        // About 50 releases a second, within what one TLS record holds.
        let quantum = (rate / 50.0).clamp(512.0, 64.0 * 1024.0);
        Pace {
            rate,
            quantum,
            // A tenth of a second's worth may go at once after a pause,
            // so the rate over any second stays within a few percent.
            burst: (rate / 10.0).max(quantum),
            budget: 0.0,
            at: tokio::time::Instant::now(),
            sleep: None,
        }
    }

    /// How many bytes may move now (at least 1), or Pending until some may.
    pub fn allow(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<usize> {
        loop {
            if let Some(s) = self.sleep.as_mut() {
                if s.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            let now = tokio::time::Instant::now();
            self.budget = (self.budget + now.duration_since(self.at).as_secs_f64() * self.rate)
                .min(self.burst);
            self.at = now;
            let need = (want.max(1) as f64).min(self.quantum);
            if self.budget >= need {
                return Poll::Ready((self.budget as usize).clamp(1, want.max(1)));
            }
            let wait = (need - self.budget) / self.rate;
            self.sleep = Some(Box::pin(tokio::time::sleep(Duration::from_secs_f64(wait))));
        }
    }

    pub fn used(&mut self, n: usize) {
        self.budget -= n as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn silence_is_what_times_out_not_length() {
        let act = Activity::new();
        let a2 = act.clone();
        // Bytes keep moving every 50 ms for 600 ms: a 200 ms limit is not hit.
        let busy = async move {
            for _ in 0..12 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                a2.read();
            }
            Ok(())
        };
        let a3 = act.clone();
        until_silent(Duration::from_millis(200), move || a3.since_read(), busy)
            .await
            .unwrap();
        // Then nothing moves: cut after the limit, not much later.
        let t = Instant::now();
        let a4 = act.clone();
        let e = until_silent(Duration::from_millis(200), move || a4.since_read(), async {
            std::future::pending::<Result<()>>().await
        })
        .await
        .unwrap_err();
        assert!(e.message.contains("timed out"), "{}", e.message);
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(190) && took < Duration::from_millis(600));
    }

    #[tokio::test]
    async fn an_old_silence_does_not_cut_a_new_wait() {
        let act = Activity::new();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let a = act.clone();
        let r = until_silent(Duration::from_millis(200), move || a.since_read(), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(7)
        })
        .await;
        assert_eq!(r.unwrap(), 7);
    }

    #[test]
    fn keepalive_interval_follows_the_shorter_timeout_with_a_floor() {
        let s = Duration::from_secs;
        assert_eq!(
            keepalive_interval(s(60), Some(s(2))),
            Duration::from_millis(500)
        );
        assert_eq!(keepalive_interval(s(8), None), s(2));
        assert_eq!(
            keepalive_interval(s(60), Some(Duration::from_millis(1))),
            Duration::from_millis(250)
        );
    }

    /// Drives a pace for `secs` of (real) time, asking for 1 MiB each time.
    async fn paced(rate: u64, secs: f64) -> (u64, u64) {
        let mut p = Pace::new(rate);
        let (mut moved, mut releases) = (0u64, 0u64);
        let t = Instant::now();
        while t.elapsed().as_secs_f64() < secs {
            let n = std::future::poll_fn(|cx| p.allow(cx, 1 << 20)).await;
            p.used(n);
            moved += n as u64;
            releases += 1;
        }
        (moved, releases)
    }

    #[tokio::test]
    async fn pace_keeps_the_rate_in_few_releases() {
        let (moved, releases) = paced(2_000_000, 1.0).await;
        // Within 10% of the rate (plus the first burst of a tenth).
        assert!((1_800_000..=2_400_000).contains(&moved), "{moved}");
        // Not a busy loop of tiny releases: about 50 a second.
        assert!(releases < 200, "{releases} releases");
    }
}
