//! A userspace WAN simulator: a TCP proxy that adds one-way delay, a rate
//! cap and scripted faults between a client and a server on loopback (this
//! kernel has no netem).
//!
//! Shared by the integration tests (`tests/common/mod.rs` declares it as
//! `common::wan`; [`WanProxy::start`] runs it in-process on a thread of its
//! own) and by `examples/wanproxy.rs`, which wraps it in a command line for
//! bench/bench.sh.
//!
//! What it does, per direction (client→server is "up", server→client is
//! "down"), independently:
//!
//! - **One-way delay.** A byte read from one side at time `t` is written to
//!   the other at `t + delay` (plus its serialization time when a rate is
//!   set). Chunks are queued with their departure time, so the link is
//!   pipelined: a bulk stream reaches the rate cap, it does not stop for a
//!   delay per chunk. The queue holds up to `max(4 MiB, 2 × rate × delay)`
//!   bytes (8 MiB without a rate); beyond that the proxy stops reading, so
//!   TCP backpressure reaches the sender and memory stays bounded.
//! - **Rate cap.** One link per direction, shared by all connections of the
//!   proxy: every chunk books the link for `len / rate` seconds after the
//!   previous one. Readers sleep while more than a few milliseconds of data
//!   are waiting for the link (a small bottleneck buffer, then backpressure);
//!   nothing spins.
//! - **Per-connection cap** (`conn_rate_*`, off by default). Each
//!   connection on its own is held to that rate as well, on top of the
//!   shared link: what limits a single TCP flow on a long fat pipe (its
//!   window over the round trip, per-flow shaping). With it, several
//!   connections get more through than one, as on such links.
//! - **Half-close.** A FIN is forwarded after the data queued before it
//!   (with the same delay). When either side fails (reset, write error),
//!   both sides of that connection are closed.
//! - **Faults.** `stall_*_after`: once that many bytes (over the proxy's
//!   life, all connections) have been forwarded in that direction, nothing
//!   more is forwarded in either direction, connections stay open and
//!   silent, until [`WanProxy::unstall`]. `cut_after`: once that many bytes
//!   have been forwarded in both directions together, every connection open
//!   at that moment is reset (RST to both ends); it fires once, and new
//!   connections are then forwarded normally. Both limits are exact: the
//!   chunk that crosses one is split at it.
//!
//! What it does not do: it is a stream proxy, not a packet network. There
//! is no packet loss, reordering, duplication, jitter or MTU; TCP on each
//! side of the proxy runs over loopback with its own windows and
//! retransmission. The rate cap replaces the bottleneck link, so a sender's
//! congestion control never sees loss, only backpressure and the delay.
//! The TCP handshake is answered locally by the proxy's listener, so
//! `connect()` returns at once and a connection costs one round trip less
//! than on a real link (the proxy connects to the target when it accepts).
//! Bytes count as forwarded when they are handed to the outgoing socket.
#![allow(dead_code)]

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::{sleep_until, Instant};

/// Link parameters and scripted faults; see the module documentation.
#[derive(Clone, Debug, Default)]
pub struct WanOpts {
    /// One-way delay client→server.
    pub delay_up: Duration,
    /// One-way delay server→client.
    pub delay_down: Duration,
    /// Bytes per second cap client→server (`None`: unlimited).
    pub rate_up: Option<u64>,
    /// Bytes per second cap server→client.
    pub rate_down: Option<u64>,
    /// Bytes per second cap of each connection on its own client→server,
    /// on top of `rate_up` (`None`: none).
    pub conn_rate_up: Option<u64>,
    /// The same server→client.
    pub conn_rate_down: Option<u64>,
    /// After this many bytes (total over the proxy's life, all connections)
    /// have gone client→server, stop forwarding in both directions until
    /// [`WanProxy::unstall`].
    pub stall_up_after: Option<u64>,
    /// The same, counted server→client.
    pub stall_down_after: Option<u64>,
    /// After this many bytes in both directions together, reset every
    /// connection open at that moment, once; later connections work.
    pub cut_after: Option<u64>,
}

impl WanOpts {
    /// A symmetric link: `delay_ms` each way, `rate_bytes_per_s` each way
    /// (0: unlimited).
    pub fn wan(delay_ms: u64, rate_bytes_per_s: u64) -> WanOpts {
        let rate = (rate_bytes_per_s > 0).then_some(rate_bytes_per_s);
        WanOpts {
            delay_up: Duration::from_millis(delay_ms),
            delay_down: Duration::from_millis(delay_ms),
            rate_up: rate,
            rate_down: rate,
            ..WanOpts::default()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Up,
    Down,
}

/// Fault state, changed under one lock so that limits are exact even with
/// several connections writing at once.
struct Ctl {
    stall_up_after: Option<u64>,
    stall_down_after: Option<u64>,
    cut_after: Option<u64>,
    stalled: bool,
    /// Bumped by every cut; a connection belongs to the epoch it was
    /// accepted in and is reset when the epoch moves on.
    epoch: u64,
}

struct Shared {
    opts: WanOpts,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    connections: AtomicU64,
    ctl: Mutex<Ctl>,
    /// Mirrors `Ctl::stalled`, for waiting on it.
    stalled_tx: watch::Sender<bool>,
    /// Mirrors `Ctl::epoch`.
    epoch_tx: watch::Sender<u64>,
    /// When each direction's link is next free (rate cap only).
    link_up: Mutex<Instant>,
    link_down: Mutex<Instant>,
}

/// What a writer may do with the bytes it holds.
enum Grant {
    /// Write this many; `cut`: this write reaches `cut_after`, reset after it.
    Write {
        n: usize,
        cut: bool,
    },
    Stall,
    Cut,
}

impl Shared {
    fn counter(&self, dir: Dir) -> &AtomicU64 {
        match dir {
            Dir::Up => &self.bytes_up,
            Dir::Down => &self.bytes_down,
        }
    }

    fn link(&self, dir: Dir) -> &Mutex<Instant> {
        match dir {
            Dir::Up => &self.link_up,
            Dir::Down => &self.link_down,
        }
    }

    fn delay(&self, dir: Dir) -> Duration {
        match dir {
            Dir::Up => self.opts.delay_up,
            Dir::Down => self.opts.delay_down,
        }
    }

    fn rate(&self, dir: Dir) -> Option<u64> {
        match dir {
            Dir::Up => self.opts.rate_up,
            Dir::Down => self.opts.rate_down,
        }
        .filter(|&r| r > 0)
    }

    fn conn_rate(&self, dir: Dir) -> Option<u64> {
        match dir {
            Dir::Up => self.opts.conn_rate_up,
            Dir::Down => self.opts.conn_rate_down,
        }
        .filter(|&r| r > 0)
    }

    /// Books up to `want` bytes of forwarding in `dir` for a connection of
    /// `epoch`, counting them as forwarded.
    fn grant(&self, dir: Dir, want: usize, epoch: u64) -> Grant {
        let mut c = self.ctl.lock().unwrap();
        if c.epoch != epoch {
            return Grant::Cut;
        }
        if c.stalled {
            return Grant::Stall;
        }
        let up = self.bytes_up.load(Ordering::Relaxed);
        let down = self.bytes_down.load(Ordering::Relaxed);
        let mut n = want as u64;
        let mut cut = false;
        if let Some(lim) = c.cut_after {
            let left = lim.saturating_sub(up + down);
            if left == 0 {
                Self::fire_cut(&mut c, &self.epoch_tx);
                return Grant::Cut;
            }
            if n >= left {
                n = left;
                cut = true;
            }
        }
        let (mine, stall_after) = match dir {
            Dir::Up => (up, c.stall_up_after),
            Dir::Down => (down, c.stall_down_after),
        };
        if let Some(lim) = stall_after {
            let left = lim.saturating_sub(mine);
            if left == 0 {
                Self::set_stalled(&mut c, &self.stalled_tx, true);
                return Grant::Stall;
            }
            if n >= left {
                n = left;
                // Reached: stop everyone else now, this write still goes.
                Self::set_stalled(&mut c, &self.stalled_tx, true);
            }
        }
        self.counter(dir).fetch_add(n, Ordering::Relaxed);
        Grant::Write { n: n as usize, cut }
    }

    /// Resets every connection of the current epoch (once: the trigger is
    /// cleared).
    fn fire_cut(c: &mut Ctl, epoch_tx: &watch::Sender<u64>) {
        c.cut_after = None;
        c.epoch += 1;
        epoch_tx.send_replace(c.epoch);
    }

    fn set_stalled(c: &mut Ctl, tx: &watch::Sender<bool>, on: bool) {
        c.stalled = on;
        tx.send_replace(on);
    }

    async fn wait_unstalled(&self) {
        let mut rx = self.stalled_tx.subscribe();
        let _ = rx.wait_for(|s| !*s).await;
    }
}

/// A running proxy; dropping it stops it and closes every connection.
pub struct WanProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl WanProxy {
    /// Starts on 127.0.0.1:0 in a background thread with its own tokio
    /// runtime. Panics if it cannot bind.
    pub fn start(target: SocketAddr, opts: WanOpts) -> WanProxy {
        WanProxy::start_on("127.0.0.1:0", target, opts).expect("wan proxy: bind 127.0.0.1:0")
    }

    /// Starts on `listen` (e.g. "127.0.0.1:0"), forwarding to `target`.
    pub fn start_on(listen: &str, target: SocketAddr, opts: WanOpts) -> io::Result<WanProxy> {
        let std_listener = StdListener::bind(listen)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let ctl = Ctl {
            stall_up_after: opts.stall_up_after,
            stall_down_after: opts.stall_down_after,
            cut_after: opts.cut_after,
            stalled: false,
            epoch: 0,
        };
        let now = Instant::now();
        let shared = Arc::new(Shared {
            opts,
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            ctl: Mutex::new(ctl),
            stalled_tx: watch::Sender::new(false),
            epoch_tx: watch::Sender::new(0),
            link_up: Mutex::new(now),
            link_down: Mutex::new(now),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("wanproxy".into())
            .spawn(move || {
                rt.block_on(async move {
                    match TcpListener::from_std(std_listener) {
                        Ok(l) => accept_loop(l, target, sh, shutdown_rx).await,
                        Err(e) => eprintln!("wanproxy: {e}"),
                    }
                });
                // Dropping the runtime drops every connection task, which
                // closes their sockets.
                drop(rt);
            })?;
        Ok(WanProxy {
            addr,
            shared,
            shutdown,
            thread: Some(thread),
        })
    }

    /// "127.0.0.1:PORT".
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Bytes forwarded client→server so far.
    pub fn bytes_up(&self) -> u64 {
        self.shared.bytes_up.load(Ordering::Relaxed)
    }

    /// Bytes forwarded server→client so far.
    pub fn bytes_down(&self) -> u64 {
        self.shared.bytes_down.load(Ordering::Relaxed)
    }

    /// Stops forwarding in both directions, now.
    pub fn stall_now(&self) {
        let mut c = self.shared.ctl.lock().unwrap();
        Shared::set_stalled(&mut c, &self.shared.stalled_tx, true);
    }

    /// Resumes forwarding and clears the `stall_*_after` triggers.
    pub fn unstall(&self) {
        let mut c = self.shared.ctl.lock().unwrap();
        c.stall_up_after = None;
        c.stall_down_after = None;
        Shared::set_stalled(&mut c, &self.shared.stalled_tx, false);
    }

    pub fn stalled(&self) -> bool {
        self.shared.ctl.lock().unwrap().stalled
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Resets every open connection now (as `cut_after` does when it
    /// fires); later connections work.
    pub fn cut_now(&self) {
        let mut c = self.shared.ctl.lock().unwrap();
        c.epoch += 1;
        self.shared.epoch_tx.send_replace(c.epoch);
    }
}

impl Drop for WanProxy {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let client = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let client = match client {
            Ok((c, _)) => c,
            Err(_) => {
                // EMFILE and the like: don't spin on it.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let epoch = shared.ctl.lock().unwrap().epoch;
        tokio::spawn(connection(client, target, shared.clone(), epoch));
    }
}

/// One proxied connection: connect to the target, pump both directions
/// until both are shut down, one fails, or a cut resets it.
async fn connection(mut client: TcpStream, target: SocketAddr, shared: Arc<Shared>, epoch: u64) {
    let mut epoch_rx = shared.epoch_tx.subscribe();
    let mut server = tokio::select! {
        r = TcpStream::connect(target) => match r {
            Ok(s) => s,
            Err(_) => return,
        },
        _ = epoch_rx.wait_for(|e| *e != epoch) => {
            let _ = client.set_zero_linger();
            return;
        }
    };
    // Chunks leave at their departure time; Nagle must not hold them back.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let cut = {
        let (cr, cw) = client.split();
        let (sr, sw) = server.split();
        let up = direction(cr, sw, Dir::Up, &shared, epoch);
        let down = direction(sr, cw, Dir::Down, &shared, epoch);
        tokio::select! {
            r = async { tokio::try_join!(up, down) } => matches!(r, Err(Stop::Cut)),
            _ = epoch_rx.wait_for(|e| *e != epoch) => true,
        }
    };
    if cut {
        // RST to both ends rather than an orderly FIN.
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
}

enum Stop {
    Io,
    Cut,
}

impl From<io::Error> for Stop {
    fn from(_: io::Error) -> Stop {
        Stop::Io
    }
}

enum Item {
    Data { at: Instant, data: Vec<u8> },
    Eof { at: Instant },
}

/// One direction: a reader that stamps chunks with their departure time
/// and a writer that sends them at that time, joined by a queue bounded in
/// bytes.
async fn direction<R, W>(r: R, w: W, dir: Dir, shared: &Shared, epoch: u64) -> Result<(), Stop>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let rate = shared.rate(dir);
    let conn_rate = shared.conn_rate(dir);
    // What one connection gets at most, for sizing chunks and buffers.
    let eff = match (rate, conn_rate) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let delay = shared.delay(dir);
    // Chunks of about 10 ms of link time (at least 4 KiB, at most 64 KiB),
    // so that pacing stays smooth on slow links.
    let chunk = match eff {
        Some(r) => (r / 100).clamp(4096, 65536) as usize,
        None => 65536,
    };
    // The bottleneck buffer: how far ahead of the link a reader may book.
    let budget = match eff {
        Some(r) => {
            Duration::from_secs_f64(2.0 * chunk as f64 / r as f64) + Duration::from_millis(2)
        }
        None => Duration::ZERO,
    };
    let base: u64 = if eff.is_some() { 4 << 20 } else { 8 << 20 };
    let bdp = eff.map_or(0, |r| (2.0 * r as f64 * delay.as_secs_f64()) as u64);
    let cap = base.max(bdp).max(chunk as u64).min(u32::MAX as u64 / 2) as usize;
    let permits = Semaphore::new(cap);
    let (tx, rx) = mpsc::unbounded_channel();
    let rates = Rates {
        link: rate,
        conn: conn_rate,
    };
    let reader = read_side(r, tx, dir, shared, &permits, rates, delay, chunk, budget);
    let writer = write_side(w, rx, dir, shared, &permits, epoch);
    tokio::try_join!(reader, writer)?;
    Ok(())
}

/// The caps one direction of a connection is held to.
#[derive(Clone, Copy)]
struct Rates {
    /// The shared link's.
    link: Option<u64>,
    /// This connection's own.
    conn: Option<u64>,
}

#[allow(clippy::too_many_arguments)]
async fn read_side<R: tokio::io::AsyncRead + Unpin>(
    mut r: R,
    tx: mpsc::UnboundedSender<Item>,
    dir: Dir,
    shared: &Shared,
    permits: &Semaphore,
    rates: Rates,
    delay: Duration,
    chunk: usize,
    budget: Duration,
) -> Result<(), Stop> {
    // When this connection's own cap is next free.
    let mut conn_free = Instant::now();
    loop {
        if rates.link.is_some() || rates.conn.is_some() {
            // Wait while the link (or this connection) has more than
            // `budget` booked ahead.
            loop {
                let mut free = conn_free;
                if rates.link.is_some() {
                    free = free.max(*shared.link(dir).lock().unwrap());
                }
                if free <= Instant::now() + budget {
                    break;
                }
                sleep_until(free - budget).await;
            }
        }
        // Room in the queue for a whole chunk, or no reading (backpressure).
        permits
            .acquire_many(chunk as u32)
            .await
            .expect("semaphore never closed")
            .forget();
        let mut buf = vec![0u8; chunk];
        let n = r.read(&mut buf).await?;
        permits.add_permits(chunk - n);
        let now = Instant::now();
        let secs = |rate: u64| Duration::from_secs_f64(n as f64 / rate as f64);
        let mut sent = now;
        if let Some(rate) = rates.link {
            let mut link = shared.link(dir).lock().unwrap();
            let start = (*link).max(now);
            *link = start + secs(rate);
            sent = *link;
        }
        if let Some(rate) = rates.conn {
            conn_free = conn_free.max(now) + secs(rate);
            sent = sent.max(conn_free);
        }
        let at = sent + delay;
        if n == 0 {
            let _ = tx.send(Item::Eof { at });
            return Ok(());
        }
        buf.truncate(n);
        if tx.send(Item::Data { at, data: buf }).is_err() {
            return Ok(());
        }
    }
}

async fn write_side<W: tokio::io::AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::UnboundedReceiver<Item>,
    dir: Dir,
    shared: &Shared,
    permits: &Semaphore,
    epoch: u64,
) -> Result<(), Stop> {
    while let Some(item) = rx.recv().await {
        match item {
            Item::Data { at, data } => {
                sleep_until(at).await;
                let mut off = 0;
                while off < data.len() {
                    match shared.grant(dir, data.len() - off, epoch) {
                        Grant::Write { n, cut } => {
                            w.write_all(&data[off..off + n]).await?;
                            off += n;
                            if cut {
                                w.flush().await?;
                                let mut c = shared.ctl.lock().unwrap();
                                if c.epoch == epoch {
                                    Shared::fire_cut(&mut c, &shared.epoch_tx);
                                }
                                return Err(Stop::Cut);
                            }
                        }
                        Grant::Stall => shared.wait_unstalled().await,
                        Grant::Cut => return Err(Stop::Cut),
                    }
                }
                permits.add_permits(data.len());
            }
            Item::Eof { at } => {
                sleep_until(at).await;
                shared.wait_unstalled().await;
                w.shutdown().await?;
                return Ok(());
            }
        }
    }
    Ok(())
}
