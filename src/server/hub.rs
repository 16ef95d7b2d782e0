//! The server's live picture of itself: who is connected and what each
//! client is doing, the lifetime totals (kept in the state directory so
//! they survive restarts), and the routing of chat messages, warnings and
//! kicks between sessions. Sessions report into the hub; `stats`, `admin`
//! and `chat` requests read from it.
//!
//! Everything here is bounded: a client's notice queue, each mailbox of
//! unread chat messages, the number of mailboxes, the length of a name and
//! of a message.

use crate::error::{Error, Result};
use crate::model::{
    clean_message, printable, ClientRow, ClientState, Notice, NoticeKind, ServerStatus, Stats,
    Totals, MAX_MESSAGE, MAX_NAME,
};
use crate::proto::Chunk;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch};

/// Unread messages kept per recipient; older ones are dropped.
pub const MAILBOX_LEN: usize = 100;
/// Recipients with unread messages kept at once.
pub const MAILBOXES: usize = 256;
/// Notices queued for one connection before new ones are dropped.
pub const NOTICE_QUEUE: usize = 64;
/// Chat flood control: a burst of this many messages, then one per second.
pub const CHAT_BURST: f64 = 5.0;
/// The mailbox of messages from clients while no admin was in chat.
const ADMINS: &str = "@admins";
/// How often the throughput history takes a sample, and how many it keeps
/// (an hour's worth).
pub const HISTORY_EVERY: Duration = Duration::from_secs(10);
pub const HISTORY_LEN: usize = 360;

/// The totals at one moment, for the dashboard's charts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the Unix epoch.
    pub t: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub saved_by_delta_bytes: u64,
    pub saved_by_compression_bytes: u64,
}

/// A connected client, as its session reports it.
pub struct Live {
    pub id: u64,
    pub addr: String,
    connected: Instant,
    inner: Mutex<LiveInner>,
    /// File bytes moved by this connection, for the rate.
    moved: AtomicU64,
    bytes_done: AtomicU64,
    notices: mpsc::Sender<Notice>,
    kick: watch::Sender<Option<String>>,
}

#[derive(Default)]
struct LiveInner {
    name: String,
    /// For a key login: the key's fingerprint and the name the client
    /// gave itself (`name` is the key's).
    key: Option<(String, String)>,
    admin: bool,
    syncing: bool,
    /// `Some(admin)` while in chat mode.
    chat: Option<bool>,
    transfer: Option<(ClientState, String, u64)>,
    rate: f64,
    sampled: Option<(Instant, u64)>,
    tokens: f64,
    tokens_at: Option<Instant>,
}

/// What a session keeps to hear from the hub.
pub struct Inbox {
    pub notices: mpsc::Receiver<Notice>,
    pub kick: watch::Receiver<Option<String>>,
}

impl Live {
    fn new(id: u64, addr: String, name: &str) -> (Arc<Live>, Inbox) {
        let (ntx, nrx) = mpsc::channel(NOTICE_QUEUE);
        let (ktx, krx) = watch::channel(None);
        let live = Arc::new(Live {
            id,
            addr,
            connected: Instant::now(),
            inner: Mutex::new(LiveInner {
                name: clean_name(name),
                ..LiveInner::default()
            }),
            moved: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            notices: ntx,
            kick: ktx,
        });
        (
            live,
            Inbox {
                notices: nrx,
                kick: krx,
            },
        )
    }

    fn lock(&self) -> MutexGuard<'_, LiveInner> {
        lock(&self.inner)
    }

    pub fn name(&self) -> String {
        self.lock().name.clone()
    }

    pub fn set_admin(&self) {
        self.lock().admin = true;
    }

    /// The client logged in with an authorized key: it is shown by the
    /// key's name (given to [`Hub::register`]), with what it calls itself
    /// beside it.
    pub fn set_key(&self, fingerprint: &str, declared: &str, admin: bool) {
        let mut g = self.lock();
        g.key = Some((fingerprint.to_string(), clean_name(declared)));
        g.admin |= admin;
    }

    pub fn set_syncing(&self) {
        self.lock().syncing = true;
    }

    /// A file transfer starts: `done` bytes of `total` are already there
    /// (a resume).
    pub fn begin(&self, state: ClientState, path: &str, total: u64, done: u64) {
        self.bytes_done.store(done, Ordering::Relaxed);
        self.lock().transfer = Some((state, path.to_string(), total));
    }

    pub fn end(&self) {
        self.lock().transfer = None;
        self.bytes_done.store(0, Ordering::Relaxed);
    }

    fn row(&self) -> ClientRow {
        let g = self.lock();
        let state = match (&g.chat, g.syncing, &g.transfer) {
            (Some(_), _, _) => ClientState::Chatting,
            (_, true, _) => ClientState::Syncing,
            (_, _, Some((s, _, _))) => *s,
            _ => ClientState::Idle,
        };
        let (file, total) = match &g.transfer {
            Some((_, f, t)) => (Some(f.clone()), *t),
            None => (None, 0),
        };
        ClientRow {
            id: self.id,
            addr: self.addr.clone(),
            name: g.name.clone(),
            connected_s: self.connected.elapsed().as_secs(),
            state,
            bytes_done: if file.is_some() {
                self.bytes_done.load(Ordering::Relaxed)
            } else {
                0
            },
            file,
            bytes_total: total,
            rate_bps: g.rate as u64,
            admin: g.admin,
            key: g.key.as_ref().map(|k| k.0.clone()),
            declared_name: g.key.as_ref().map(|k| k.1.clone()),
        }
    }

    /// Updates the moving rate; called about once a second.
    fn sample(&self, now: Instant) {
        let moved = self.moved.load(Ordering::Relaxed);
        let mut g = self.lock();
        if let Some((at, before)) = g.sampled {
            let dt = now.duration_since(at).as_secs_f64();
            if dt > 0.0 {
                let inst = moved.saturating_sub(before) as f64 / dt;
                // Smooth over a few seconds so the table does not flicker.
                g.rate = if g.rate == 0.0 {
                    inst
                } else {
                    0.5 * g.rate + 0.5 * inst
                };
                if g.rate < 1.0 {
                    g.rate = 0.0;
                }
            }
        }
        g.sampled = Some((now, moved));
    }

    /// Flood control for chat: true if this message may go out.
    fn take_token(&self, now: Instant) -> bool {
        let mut g = self.lock();
        let t = match g.tokens_at {
            None => CHAT_BURST,
            Some(at) => (g.tokens + now.duration_since(at).as_secs_f64()).min(CHAT_BURST),
        };
        g.tokens_at = Some(now);
        if t >= 1.0 {
            g.tokens = t - 1.0;
            true
        } else {
            g.tokens = t;
            false
        }
    }

    fn deliver(&self, n: Notice) -> bool {
        self.notices.try_send(n).is_ok()
    }
}

/// Accounting for data one session moves, handed to the transfer code.
pub struct Meter<'a> {
    hub: &'a Hub,
    live: &'a Live,
    sending: bool,
}

impl Meter<'_> {
    pub fn chunk(&self, c: &Chunk) {
        self.live.bytes_done.fetch_add(c.out_len, Ordering::Relaxed);
        self.live.moved.fetch_add(c.out_len, Ordering::Relaxed);
        let t = &self.hub.counters;
        if self.sending {
            t.bytes_sent.fetch_add(c.raw_len(), Ordering::Relaxed);
        } else {
            t.bytes_received.fetch_add(c.raw_len(), Ordering::Relaxed);
        }
        t.saved_delta.fetch_add(c.delta_saved(), Ordering::Relaxed);
        t.saved_compression
            .fetch_add(c.compression_saved(), Ordering::Relaxed);
        self.hub.dirty.store(true, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Counters {
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    files_sent: AtomicU64,
    files_received: AtomicU64,
    saved_delta: AtomicU64,
    saved_compression: AtomicU64,
    connections: AtomicU64,
    auth_failures: AtomicU64,
    fsync_passes: AtomicU64,
    files_fsynced: AtomicU64,
}

impl Counters {
    fn load(&self) -> Totals {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Totals {
            bytes_sent: l(&self.bytes_sent),
            bytes_received: l(&self.bytes_received),
            files_sent: l(&self.files_sent),
            files_received: l(&self.files_received),
            saved_by_delta_bytes: l(&self.saved_delta),
            saved_by_compression_bytes: l(&self.saved_compression),
            connections: l(&self.connections),
            auth_failures: l(&self.auth_failures),
            fsync_passes: l(&self.fsync_passes),
            files_fsynced: l(&self.files_fsynced),
        }
    }

    fn from(t: &Totals) -> Counters {
        let a = AtomicU64::new;
        Counters {
            bytes_sent: a(t.bytes_sent),
            bytes_received: a(t.bytes_received),
            files_sent: a(t.files_sent),
            files_received: a(t.files_received),
            saved_delta: a(t.saved_by_delta_bytes),
            saved_compression: a(t.saved_by_compression_bytes),
            connections: a(t.connections),
            auth_failures: a(t.auth_failures),
            fsync_passes: a(t.fsync_passes),
            files_fsynced: a(t.files_fsynced),
        }
    }
}

/// Who is connected, the totals and the mailboxes.
pub struct Hub {
    started: Instant,
    started_at: SystemTime,
    root: String,
    node: String,
    max_clients: u64,
    read_only: bool,
    clients: Mutex<BTreeMap<u64, Arc<Live>>>,
    /// Web admins listening to chat; not clients.
    watchers: Mutex<BTreeMap<u64, Arc<Live>>>,
    history: Mutex<VecDeque<Sample>>,
    counters: Counters,
    dirty: AtomicBool,
    totals_path: Option<PathBuf>,
    mail: Mutex<HashMap<String, VecDeque<Notice>>>,
}

/// A lock that a panicked holder did not poison for good: every value
/// guarded here stays consistent between statements.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// RFC 3339 time of now, UTC, to the second.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

impl Hub {
    /// A hub for a server sharing `root`; with `state_dir`, totals are
    /// loaded from and saved to `totals.json` there.
    pub fn new(
        root: String,
        node: String,
        max_clients: u64,
        read_only: bool,
        state_dir: Option<PathBuf>,
    ) -> Hub {
        let totals_path = state_dir.map(|d| d.join("totals.json"));
        let saved = totals_path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice::<Totals>(&b).ok())
            .unwrap_or_default();
        Hub {
            started: Instant::now(),
            started_at: SystemTime::now(),
            root,
            node,
            max_clients,
            read_only,
            clients: Mutex::new(BTreeMap::new()),
            watchers: Mutex::new(BTreeMap::new()),
            history: Mutex::new(VecDeque::new()),
            counters: Counters::from(&saved),
            dirty: AtomicBool::new(false),
            totals_path,
            mail: Mutex::new(HashMap::new()),
        }
    }

    fn clients(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Live>>> {
        lock(&self.clients)
    }

    fn watchers(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Live>>> {
        lock(&self.watchers)
    }

    fn mail(&self) -> MutexGuard<'_, HashMap<String, VecDeque<Notice>>> {
        lock(&self.mail)
    }

    /// A new connection says who it is.
    pub fn register(&self, id: u64, addr: String, name: &str) -> (Arc<Live>, Inbox) {
        let (live, inbox) = Live::new(id, addr, name);
        self.clients().insert(id, live.clone());
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
        (live, inbox)
    }

    pub fn unregister(&self, id: u64) {
        self.clients().remove(&id);
        self.watchers().remove(&id);
    }

    /// A sender of admin chat messages that is not a connection (the web
    /// dashboard's admin session): it has a name and flood control, and
    /// is in no table.
    pub fn detached(&self, id: u64, name: &str) -> Arc<Live> {
        Live::new(id, "web".into(), name).0
    }

    /// An admin in the web dashboard starts listening to chat: it gets the
    /// admins' waiting messages now and every new one through the inbox,
    /// without showing up as a client. [`Hub::unregister`] ends it.
    pub fn watch_chat(&self, id: u64, name: &str) -> (Arc<Live>, Inbox, Vec<Notice>) {
        let (live, inbox) = Live::new(id, "web".into(), name);
        let waiting = self.join_chat(&live, true);
        self.watchers().insert(id, live.clone());
        (live, inbox, waiting)
    }

    /// Bytes moved over HTTPS (browser downloads and uploads).
    pub fn web_bytes(&self, sending: bool, n: u64) {
        let c = if sending {
            &self.counters.bytes_sent
        } else {
            &self.counters.bytes_received
        };
        c.fetch_add(n, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// The samples of the last hour, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        lock(&self.history).iter().cloned().collect()
    }

    fn take_sample(&self) {
        let t = self.counters.load();
        let mut h = lock(&self.history);
        if h.len() >= HISTORY_LEN {
            h.pop_front();
        }
        h.push_back(Sample {
            t: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            bytes_sent: t.bytes_sent,
            bytes_received: t.bytes_received,
            saved_by_delta_bytes: t.saved_by_delta_bytes,
            saved_by_compression_bytes: t.saved_by_compression_bytes,
        });
    }

    pub fn auth_failed(&self) {
        self.counters.auth_failures.fetch_add(1, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    pub fn meter<'a>(&'a self, live: &'a Live, sending: bool) -> Meter<'a> {
        Meter {
            hub: self,
            live,
            sending,
        }
    }

    /// A whole file went out (`sending`) or came in.
    pub fn file_done(&self, sending: bool) {
        let c = if sending {
            &self.counters.files_sent
        } else {
            &self.counters.files_received
        };
        c.fetch_add(1, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// `passes` durability passes of the store made `files` uploads durable.
    pub fn fsynced(&self, passes: u64, files: u64) {
        self.counters
            .fsync_passes
            .fetch_add(passes, Ordering::Relaxed);
        self.counters
            .files_fsynced
            .fetch_add(files, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    pub fn stats(&self) -> Stats {
        let clients: Vec<ClientRow> = self.clients().values().map(|l| l.row()).collect();
        Stats {
            server: ServerStatus {
                version: env!("CARGO_PKG_VERSION").into(),
                uptime_s: self.started.elapsed().as_secs(),
                started: humantime::format_rfc3339_seconds(self.started_at).to_string(),
                root: self.root.clone(),
                node: self.node.clone(),
                clients_connected: clients.len() as u64,
                max_clients: self.max_clients,
                read_only: self.read_only,
            },
            totals: self.counters.load(),
            clients,
        }
    }

    /// Once a second: rates; every few seconds: totals to disk.
    pub async fn tick(self: Arc<Self>) {
        let mut n = 0u64;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = Instant::now();
            let lives: Vec<Arc<Live>> = self.clients().values().cloned().collect();
            for l in lives {
                l.sample(now);
            }
            if n % HISTORY_EVERY.as_secs() == 0 {
                self.take_sample();
            }
            n += 1;
            if n % 2 == 0 {
                self.save();
            }
        }
    }

    /// Writes the totals if they changed (atomically: temp file + rename).
    pub fn save(&self) {
        let Some(p) = &self.totals_path else { return };
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return;
        }
        let body = serde_json::to_vec_pretty(&self.counters.load()).unwrap_or_default();
        if crate::fsutil::write_private(p, &body).is_err() {
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    fn find(&self, id: u64) -> Result<Arc<Live>> {
        self.clients()
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("no client #{id} is connected")))
    }

    /// Disconnects client `id`, telling it why.
    pub fn kick(&self, id: u64, reason: &str) -> Result<()> {
        let l = self.find(id)?;
        let _ = l.kick.send(Some(printable(reason, MAX_MESSAGE)));
        Ok(())
    }

    /// Shows `text` as a warning on one client's (or every client's)
    /// terminal at once. Returns how many it reached.
    pub fn warn(&self, to: Option<u64>, text: &str, from: &str) -> Result<u64> {
        let text = clean_message(text)?;
        let targets: Vec<Arc<Live>> = match to {
            Some(id) => vec![self.find(id)?],
            None => self.clients().values().cloned().collect(),
        };
        let mut n = 0;
        for l in targets {
            let note = Notice {
                time: now_rfc3339(),
                from: from.into(),
                to: l.name(),
                kind: NoticeKind::Warning,
                text: text.clone(),
                from_id: None,
            };
            if l.deliver(note) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Queues a notice for one session; false if its queue is full.
    pub fn notify(&self, live: &Live, n: Notice) -> bool {
        live.deliver(n)
    }

    /// Unread messages waiting for `name`.
    pub fn unread(&self, name: &str) -> u64 {
        self.mail().get(name).map_or(0, |b| b.len() as u64)
    }

    /// Unread messages for the admins.
    pub fn unread_admin(&self) -> u64 {
        self.unread(ADMINS)
    }

    /// `live` enters chat mode; its waiting messages are handed over.
    pub fn join_chat(&self, live: &Live, admin: bool) -> Vec<Notice> {
        let key = if admin {
            ADMINS.to_string()
        } else {
            live.name()
        };
        live.lock().chat = Some(admin);
        self.mail().remove(&key).map(Vec::from).unwrap_or_default()
    }

    fn store(&self, key: &str, n: Notice) {
        let mut mail = self.mail();
        if !mail.contains_key(key) && mail.len() >= MAILBOXES {
            // Make room: forget the mailbox whose newest message is oldest.
            if let Some(old) = mail
                .iter()
                .min_by(|a, b| {
                    let t = |v: &VecDeque<Notice>| v.back().map(|n| n.time.clone());
                    t(a.1).cmp(&t(b.1))
                })
                .map(|(k, _)| k.clone())
            {
                mail.remove(&old);
            }
        }
        let b = mail.entry(key.to_string()).or_default();
        if b.len() >= MAILBOX_LEN {
            b.pop_front();
        }
        b.push_back(n);
    }

    /// Sends a chat message from `from`: a client's goes to every admin in
    /// chat; an admin's to the client `to` (an id or a name) and is echoed
    /// to the other admins. Messages nobody is there to read are kept.
    /// Returns the message as sent, how many live sessions got it and
    /// whether it was kept for later.
    pub fn chat(
        &self,
        from: &Live,
        admin: bool,
        to: Option<&str>,
        text: &str,
    ) -> Result<(Notice, u64, bool)> {
        if !from.take_token(Instant::now()) {
            return Err(Error::other(
                "slow down: chat allows a burst of 5 messages, then 1 per second",
            ));
        }
        let text = clean_message(text)?;
        let mut lives: Vec<Arc<Live>> = self.clients().values().cloned().collect();
        let clients = lives.len();
        lives.extend(self.watchers().values().cloned());
        let admins_in_chat = |except: u64| {
            lives
                .iter()
                .filter(move |l| l.id != except && l.lock().chat == Some(true))
                .cloned()
                .collect::<Vec<_>>()
        };
        let mut note = Notice {
            time: now_rfc3339(),
            from: from.name(),
            to: "admins".into(),
            kind: NoticeKind::Chat,
            text,
            from_id: Some(from.id),
        };
        if !admin {
            let mut live = 0;
            for a in admins_in_chat(from.id) {
                live += a.deliver(note.clone()) as u64;
            }
            let stored = live == 0;
            if stored {
                self.store(ADMINS, note.clone());
            }
            return Ok((note, live, stored));
        }
        let to = to.ok_or_else(|| {
            Error::usage("say whom the message is for: a client id or name (--to or /to)")
        })?;
        let name = match to.parse::<u64>() {
            Ok(id) => self.find(id)?.name(),
            Err(_) => clean_name(to),
        };
        note.from = format!("admin ({})", from.name());
        note.to = name.clone();
        let mut live = 0;
        for l in lives[..clients]
            .iter()
            .filter(|l| l.lock().chat == Some(false))
        {
            if l.name() == name {
                live += l.deliver(note.clone()) as u64;
            }
        }
        for a in admins_in_chat(from.id) {
            a.deliver(note.clone());
        }
        let stored = live == 0;
        if stored {
            self.store(&name, note.clone());
        }
        Ok((note, live, stored))
    }
}

fn clean_name(name: &str) -> String {
    let n = printable(name.trim(), MAX_NAME);
    if n.is_empty() {
        "anonymous".into()
    } else {
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Hub {
        Hub::new("/srv".into(), "n".into(), 8, false, None)
    }

    #[tokio::test]
    async fn chat_routes_and_keeps_unread() {
        let h = hub();
        let (alice, mut a_in) = h.register(1, "a".into(), "alice@box");
        let (admin, mut ad_in) = h.register(2, "b".into(), "root@srv");
        // No admin in chat: kept for the admins.
        let (_, live, stored) = h.chat(&alice, false, None, "hello").unwrap();
        assert_eq!((live, stored), (0, true));
        assert_eq!(h.unread_admin(), 1);
        let waiting = h.join_chat(&admin, true);
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].from_id, Some(1));
        assert_eq!(h.unread_admin(), 0);
        // Now live.
        let (_, live, _) = h.chat(&alice, false, None, "again").unwrap();
        assert_eq!(live, 1);
        assert_eq!(ad_in.notices.try_recv().unwrap().text, "again");
        // Admin answers by id; alice is not in chat, so it waits for her.
        let (n, live, stored) = h.chat(&admin, true, Some("1"), "hi alice").unwrap();
        assert_eq!((live, stored, n.to.as_str()), (0, true, "alice@box"));
        assert!(a_in.notices.try_recv().is_err());
        assert_eq!(h.unread("alice@box"), 1);
        // An admin must say whom to; an unknown id is not found.
        assert!(h.chat(&admin, true, None, "x").is_err());
        assert!(h.chat(&admin, true, Some("99"), "x").is_err());
    }

    #[tokio::test]
    async fn floods_and_mailboxes_are_bounded() {
        let h = hub();
        let (c, _in) = h.register(1, "a".into(), "c");
        let sent = (0..20)
            .filter(|_| h.chat(&c, false, None, "x").is_ok())
            .count();
        assert_eq!(sent, CHAT_BURST as usize);
        let (admin, _ain) = h.register(2, "b".into(), "admin");
        for i in 0..(MAILBOX_LEN + 10) {
            admin.lock().tokens_at = None;
            h.chat(&admin, true, Some("bob"), &format!("m{i}")).unwrap();
        }
        assert_eq!(h.unread("bob"), MAILBOX_LEN as u64);
        for i in 0..(MAILBOXES + 5) {
            admin.lock().tokens_at = None;
            h.chat(&admin, true, Some(&format!("u{i}")), "m").unwrap();
        }
        assert!(h.mail().len() <= MAILBOXES);
    }

    #[tokio::test]
    async fn kick_and_warn_reach_the_session() {
        let h = hub();
        let (_c, mut inbox) = h.register(7, "a".into(), "c");
        assert_eq!(h.warn(Some(7), "careful", "admin").unwrap(), 1);
        let n = inbox.notices.try_recv().unwrap();
        assert_eq!((n.kind, n.text.as_str()), (NoticeKind::Warning, "careful"));
        h.kick(7, "bye\x1b[31m").unwrap();
        assert_eq!(inbox.kick.borrow().as_deref(), Some("bye^[[31m"));
        assert!(h.kick(8, "x").is_err());
        h.unregister(7);
        assert!(h.stats().clients.is_empty());
    }

    #[test]
    fn totals_persist() {
        let d = tempfile::tempdir().unwrap();
        let h = Hub::new(
            "/r".into(),
            "n".into(),
            1,
            false,
            Some(d.path().to_path_buf()),
        );
        h.file_done(true);
        h.auth_failed();
        h.save();
        let h2 = Hub::new(
            "/r".into(),
            "n".into(),
            1,
            false,
            Some(d.path().to_path_buf()),
        );
        let t = h2.stats().totals;
        assert_eq!((t.files_sent, t.auth_failures), (1, 1));
    }
}
