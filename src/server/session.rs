//! One fts protocol connection: the version handshake, the login, and the
//! dispatch of each request to the room that handles it (`share` for the
//! files, `admin` for admin actions and chat). Notices and kicks from the
//! hub are slipped in between the frames the session writes.

use super::hub::{Hub, Inbox, Live};
use super::quota::Held;
use super::{LogEvent, ServerOptions, Shared, THROTTLED};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::AuthorizedKey;
use crate::model::Meta;
use crate::proto::{Frame, FrameReader, FrameWriter, KeyStatus, Msg, PROTOCOL_VERSION};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// Longest time replies wait in the buffer for more to go with them.
const HOLD_REPLIES: Duration = Duration::from_millis(5);

/// Serves one fts protocol connection (TLS done, ALPN `fts/1`): the
/// version handshake, the client's slot, then requests until it leaves,
/// is kicked or the server stops.
pub(super) async fn serve<S>(
    shared: Arc<Shared>,
    tls: S,
    peer: SocketAddr,
    key: Option<String>,
    stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let addr = peer.to_string();
    let (rh, wh) = tokio::io::split(tls);
    let (mut r, mut w) = crate::proto::frames(rh, wh, shared.opts.io_timeout);
    r.set_timeout(shared.opts.handshake_timeout);
    let Ok(_permit) = shared.slots.clone().try_acquire_owned() else {
        let e = Error::connect(format!(
            "server full: it already serves its maximum of {} clients, try again later",
            shared.opts.max_clients
        ));
        let _ = w.msg(&Msg::error(None, &e)).await;
        let _ = w.shutdown().await;
        shared.refused(&addr, "server full".into());
        return;
    };
    let id = shared.next_id();
    let access = Access::of(&shared, id, &addr, key);
    // Sessions that have yet to log in may wait for a person typing at a
    // prompt, so they get the full I/O timeout; one address may hold only
    // a few of them, so idling at the login cannot take every slot.
    let login_slot = match access.authed {
        false => match shared.logging_in.take(peer.ip()) {
            Ok(h) => Some(h),
            Err(why) => {
                let e = Error::connect(format!("{why}, try again later"));
                let _ = w.msg(&Msg::error(None, &e)).await;
                let _ = w.shutdown().await;
                shared.refused(&addr, why);
                return;
            }
        },
        true => None,
    };
    let (name, client_timeout) = match hello(&shared, &access, &mut r, &mut w).await {
        Ok(n) => n,
        Err(e) => {
            shared.log(LogEvent::Rejected {
                addr,
                reason: e.message,
            });
            return;
        }
    };
    let (live, inbox) = match &access.key {
        Some(k) => {
            let (live, inbox) = shared.hub.register(id, addr.clone(), &k.name);
            live.set_key(&k.fingerprint, &name, k.admin);
            (live, inbox)
        }
        None => shared.hub.register(id, addr.clone(), &name),
    };
    shared.log(LogEvent::Connect {
        client: id,
        addr: addr.clone(),
        name: live.name(),
        declared_name: access.key.as_ref().map(|_| name.clone()),
    });
    // Notices (warnings, chat) go out between whatever frames the session
    // is writing, so they arrive even in the middle of a transfer.
    let Inbox {
        notices: mut notice_rx,
        kick: mut kick_rx,
    } = inbox;
    // The client's timer runs while this side only reads (a long upload)
    // or works (hashing, listing, committing): keep proving we are here.
    let _keepalive = w.keepalive(crate::link::keepalive_interval(
        shared.opts.io_timeout,
        client_timeout,
    ));
    let mut pusher_w = w.handle();
    let pusher = tokio::spawn(async move {
        while let Some(notice) = notice_rx.recv().await {
            if pusher_w.msg(&Msg::Notice { notice }).await.is_err()
                || pusher_w.flush().await.is_err()
            {
                break;
            }
        }
    });
    let mut s = Session {
        shared: shared.clone(),
        id,
        peer,
        live: live.clone(),
        authed: access.authed,
        admin: access.key.as_ref().is_some_and(|k| k.admin),
        read_only: shared.opts.read_only || access.key.as_ref().is_some_and(|k| k.read_only),
        key: access.key,
        offered_key: access.offered,
        login_slot,
        held: super::acks::Held::default(),
    };
    let kick_w = w.handle();
    let kicked = async {
        let reason = loop {
            if let Some(r) = kick_rx.borrow_and_update().clone() {
                break r;
            }
            if kick_rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        // Take the writer between two frames before dropping the request in
        // hand, so the client reads a whole `Kicked` message.
        (reason, kick_w.exclusive().await)
    };
    let res = tokio::select! {
        res = s.run(&mut r, &mut w, stop) => {
            if res.is_ok() {
                let _ = w.shutdown().await;
            }
            res
        }
        (reason, mut ex) = kicked => {
            let _ = ex.msg(&Msg::Kicked { reason: reason.clone() }).await;
            let _ = ex.flush().await;
            // Keep reading (and dropping) what the client still sends for a
            // moment, so it reads the reason instead of a connection reset.
            r.drain(Duration::from_secs(2)).await;
            let _ = ex.shutdown().await;
            Err(Error::kicked(&reason))
        }
    };
    pusher.abort();
    shared.hub.unregister(id);
    shared.log(LogEvent::Disconnect {
        client: id,
        addr,
        error: res.err().map(|e| e.message),
    });
}

/// The version handshake; returns the client's display name and how long
/// it waits through silence.
async fn hello<R, W>(
    shared: &Shared,
    access: &Access,
    r: &mut Reader<R>,
    w: &mut Writer<W>,
) -> Result<(String, Option<Duration>)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let hello = match r.read_msg().await? {
        Msg::Hello {
            version,
            client,
            name,
            timeout_ms,
        } if version == PROTOCOL_VERSION => (
            name.unwrap_or(client),
            timeout_ms.map(Duration::from_millis),
        ),
        Msg::Hello { version, .. } => {
            let e = Error::other(format!(
                "unsupported protocol version {version} (this server speaks {PROTOCOL_VERSION})"
            ));
            w.msg(&Msg::error(None, &e)).await?;
            w.flush().await?;
            return Err(e);
        }
        _ => return Err(Error::protocol("expected hello")),
    };
    r.set_timeout(shared.opts.io_timeout);
    let key = access.key.as_ref();
    let key_admin = key.is_some_and(|k| k.admin);
    let key_read_only = key.is_some_and(|k| k.read_only);
    w.msg(&Msg::Welcome {
        version: PROTOCOL_VERSION,
        server: format!("fts {}", env!("CARGO_PKG_VERSION")),
        auth_required: !access.authed,
        admin_enabled: shared.opts.admin_password.is_some() || key_admin,
        read_only: shared.opts.read_only || key_read_only,
        timeout_ms: Some(shared.opts.io_timeout.as_millis() as u64),
        key: shared.opts.authorized_keys.as_ref().map(|_| KeyStatus {
            fingerprint: access.offered.clone(),
            name: key.map(|k| k.name.clone()),
            admin: key_admin,
            read_only: key_read_only,
            password: shared.opts.password.is_some(),
            admin_password: shared.opts.admin_password.is_some(),
        }),
    })
    .await?;
    w.flush().await?;
    Ok(hello)
}

/// How a connection starts out, before any password: what its key (if
/// the server has authorized keys and the client offered one) grants.
struct Access {
    authed: bool,
    /// The fingerprint the client offered.
    offered: Option<String>,
    /// Its line in the authorized keys file.
    key: Option<AuthorizedKey>,
}

impl Access {
    /// Looks the key up in the authorized keys file as it is now (so a
    /// removed line is refused at once) and logs the outcome.
    fn of(shared: &Shared, id: u64, addr: &str, offered: Option<String>) -> Access {
        let Some(keys) = &shared.opts.authorized_keys else {
            return Access {
                authed: shared.opts.password.is_none(),
                offered: None,
                key: None,
            };
        };
        let Some(fp) = offered else {
            return Access {
                authed: false,
                offered: None,
                key: None,
            };
        };
        let (key, reason) = match keys.lookup(&fp) {
            Ok(Some(k)) => (Some(k), None),
            Ok(None) => (None, Some("not in the authorized keys file".to_string())),
            // Fail closed: the file as it is now cannot be trusted.
            Err(e) => (None, Some(e.message)),
        };
        if key.is_none() {
            // Counted like a refused password (keys cannot be guessed, so
            // no backoff: a password may still follow on this connection).
            shared.hub.auth_failed();
        }
        shared.log(LogEvent::KeyAuth {
            client: id,
            addr: addr.to_string(),
            key: fp.clone(),
            name: key.as_ref().map(|k| k.name.clone()),
            ok: key.is_some(),
            reason,
        });
        Access {
            authed: key.is_some(),
            offered: Some(fp),
            key,
        }
    }
}

pub(super) struct Session {
    pub(super) shared: Arc<Shared>,
    pub(super) id: u64,
    pub(super) peer: SocketAddr,
    pub(super) live: Arc<Live>,
    pub(super) authed: bool,
    pub(super) admin: bool,
    /// The share or the key allows no writes.
    pub(super) read_only: bool,
    /// The authorized key this session logged in with.
    pub(super) key: Option<AuthorizedKey>,
    /// The fingerprint of the key the client offered, listed or not.
    pub(super) offered_key: Option<String>,
    /// Held until the session has logged in.
    pub(super) login_slot: Option<Held>,
    /// Upload acknowledgements waiting for a durability pass.
    pub(super) held: super::acks::Held,
}

pub(super) type Reader<R> = FrameReader<R>;
pub(super) type Writer<W> = FrameWriter<W>;

impl Session {
    pub(super) fn opts(&self) -> &ServerOptions {
        &self.shared.opts
    }

    pub(super) fn log(&self, e: LogEvent) {
        self.shared.log(e)
    }

    pub(super) fn hub(&self) -> &Hub {
        &self.shared.hub
    }

    pub(super) async fn run<R, W>(
        &mut self,
        r: &mut Reader<R>,
        w: &mut Writer<W>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.authed {
            self.announce_unread(false);
            r.accept_pings();
        }
        // An admin key is an admin from the start.
        if self.admin {
            self.announce_unread(true);
        }
        // Since when replies wait unsent in the buffer.
        let mut unflushed: Option<Instant> = None;
        loop {
            let frame = if !self.held.is_empty() {
                // Acknowledgements are waiting for a durability pass: go on
                // only with a request that is already (nearly) here;
                // otherwise the input ran dry and they go out now.
                tokio::select! {
                    f = tokio::time::timeout(super::acks::LINGER, r.read_opt()) => match f {
                        Ok(f) => f?,
                        Err(_) => {
                            self.release(w).await?;
                            w.flush().await?;
                            unflushed = None;
                            continue;
                        }
                    },
                    _ = stop.changed() => {
                        self.release(w).await?;
                        return Ok(());
                    }
                }
            } else {
                // Other replies wait in the buffer while the next request
                // is already here (a pipelined batch), and go out once the
                // client has nothing more queued: one write for many
                // replies instead of one each. (Reads are cancel-safe, so
                // the first poll may be dropped.)
                let ready = if unflushed.is_some() {
                    tokio::select! {
                        biased;
                        f = r.read_opt() => Some(f?),
                        _ = std::future::ready(()) => None,
                    }
                } else {
                    None
                };
                match ready {
                    Some(f) => f,
                    None => {
                        if unflushed.take().is_some() {
                            w.flush().await?;
                        }
                        tokio::select! {
                            f = r.read_opt() => f?,
                            _ = stop.changed() => return Ok(()),
                        }
                    }
                }
            };
            let msg = match frame {
                None => {
                    self.release(w).await?;
                    w.flush().await?;
                    return Ok(());
                }
                Some(Frame::Chunk(_)) => return Err(Error::protocol("unexpected data frame")),
                Some(Frame::Control(m)) => m,
            };
            // Replies go out in request order: whatever is not a put waits
            // until the held acknowledgements are out.
            if !matches!(msg, Msg::Put { .. }) {
                self.release(w).await?;
            }
            // The client waits for the replies, and its timeout counts
            // silence: they go out before anything that takes long (a big
            // upload to receive) and at least every few milliseconds.
            let long = matches!(&msg, Msg::Put { meta, .. } if meta.size >= 256 * 1024);
            if long && self.held.running() {
                self.finish(w).await?;
            }
            if unflushed.is_some_and(|t| long || t.elapsed() >= HOLD_REPLIES) {
                unflushed = None;
                w.flush().await?;
            }
            if !self.dispatch(r, w, msg).await? {
                w.flush().await?;
                return Ok(());
            }
            if self.held.full() {
                self.launch(w).await?;
            }
            unflushed.get_or_insert_with(Instant::now);
        }
    }

    /// Hands one request to the room that serves it; `false` when the
    /// client said goodbye.
    async fn dispatch<R, W>(
        &mut self,
        r: &mut Reader<R>,
        w: &mut Writer<W>,
        msg: Msg,
    ) -> Result<bool>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let done = |id, res: Result<()>| match res {
            Ok(()) => Msg::Done { id },
            Err(e) => Msg::error(Some(id), &e),
        };
        match msg {
            Msg::Bye => return Ok(false),
            Msg::Auth {
                password,
                admin_password,
            } => self.login(r, w, password, admin_password).await?,
            _ if !self.authed => {
                let e = Error::auth("authentication required");
                w.msg(&Msg::error(None, &e)).await?;
                w.flush().await?;
                return Err(e);
            }
            Msg::Ping => {}
            Msg::Syncing => self.live.set_syncing(),
            Msg::StatsReq => {
                let stats = Box::new(self.hub().stats());
                w.msg(&Msg::StatsReply { stats }).await?
            }
            Msg::Admin { action } => self.admin_action(w, action).await?,
            Msg::ChatJoin { admin } => self.chat_join(w, admin).await?,
            Msg::ChatSend { id, to, text } => w.msg(&self.chat_send(id, to, &text)).await?,
            Msg::Stat { path } => w.msg(&self.stat(&path)).await?,
            Msg::List {
                path,
                recursive,
                hashes,
            } => self.list(w, &path, recursive, hashes).await?,
            Msg::ListDir {
                path,
                digest,
                hashes,
            } => self.list_dir(w, &path, digest, hashes).await?,
            Msg::Probe {
                id,
                path,
                source,
                rolling,
            } => self.probe(w, id, &path, source, rolling).await?,
            Msg::Mkdir { id, path } => w.msg(&done(id, self.mkdir(&path))).await?,
            Msg::Symlink { id, path, target } => {
                w.msg(&done(id, self.symlink(&path, &target))).await?
            }
            Msg::SetMeta {
                id,
                path,
                mtime,
                mtime_ns,
                mode,
            } => {
                let meta = Meta {
                    size: 0,
                    mtime,
                    mtime_ns,
                    mode,
                };
                w.msg(&done(id, self.set_meta(&path, &meta))).await?
            }
            Msg::Put {
                id,
                path,
                meta,
                resume,
                delta_base,
            } => {
                let got = self.put(r, id, &path, &meta, resume, delta_base).await?;
                self.put_reply(w, got).await?
            }
            Msg::Get {
                id,
                path,
                resume,
                signature,
            } => self.get(r, w, id, &path, resume, signature).await?,
            Msg::Remove {
                id,
                path,
                recursive,
            } => w.msg(&self.remove(id, &path, recursive)).await?,
            other => {
                return Err(Error::protocol(format!(
                    "unexpected message from client: {}",
                    msg_name(&other)
                )))
            }
        }
        Ok(true)
    }

    /// A login attempt; only idling at the login counts against the
    /// address, a login in the queue for its password check does not.
    async fn login<R, W>(
        &mut self,
        r: &mut Reader<R>,
        w: &mut Writer<W>,
        password: Option<String>,
        admin_password: Option<String>,
    ) -> Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        self.login_slot = None;
        self.auth(w, password, admin_password).await?;
        if self.authed {
            r.accept_pings();
            return Ok(());
        }
        match self.shared.logging_in.take(self.peer.ip()) {
            Ok(h) => self.login_slot = Some(h),
            Err(why) => return Err(Error::auth(why)),
        }
        Ok(())
    }

    pub(super) async fn auth<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut Writer<W>,
        password: Option<String>,
        admin_password: Option<String>,
    ) -> Result<()> {
        let (authed_before, admin_before) = (self.authed, self.admin);
        let ip = self.peer.ip();
        let shared = self.shared.clone();
        let mut failure: Option<Error> = None;
        let throttled = (password.is_some() || admin_password.is_some())
            && !shared.wait_backoff(self.peer).await;
        if throttled {
            failure = Some(Error::auth(THROTTLED));
        } else if !self.authed {
            match (&shared.opts.password, password) {
                (Some(secret), Some(p)) => {
                    self.authed = shared
                        .check_password(secret, p, self.id, self.peer, false)
                        .await;
                    if !self.authed {
                        failure = Some(Error::auth("wrong password"));
                    }
                }
                (Some(_), None) => {
                    failure = Some(Error::auth("this server requires a password"));
                    self.log(LogEvent::Auth {
                        client: self.id,
                        addr: self.peer.to_string(),
                        admin: false,
                        ok: false,
                    });
                }
                // Only a server with authorized keys and no password
                // leaves a session unauthenticated without one.
                (None, _) => failure = Some(Error::auth(self.keys_only())),
            }
        }
        // An admin key is admin already: an admin password adds nothing
        // (and a wrong one takes nothing away).
        if let (None, Some(p), false) = (&failure, admin_password, self.admin) {
            match &shared.opts.admin_password {
                None => failure = Some(self.admin_needed("admin login")),
                Some(secret) => {
                    self.admin = shared
                        .check_password(secret, p, self.id, self.peer, true)
                        .await;
                    if !self.admin {
                        failure = Some(Error::auth("wrong admin password"));
                    }
                }
            }
        }
        let was_authed = self.authed && !authed_before;
        match failure {
            Some(e) => {
                if e.kind == ErrorKind::Auth && !throttled {
                    shared.login_outcome(ip, false);
                }
                w.msg(&Msg::error(None, &e)).await?;
            }
            None => {
                shared.login_outcome(ip, true);
                w.msg(&Msg::AuthOk { admin: self.admin }).await?;
                if self.admin {
                    self.live.set_admin();
                }
                if was_authed {
                    self.announce_unread(false);
                }
                if self.admin && !admin_before {
                    self.announce_unread(true);
                }
            }
        }
        Ok(())
    }
}

impl Session {
    /// Why a key-only server does not let this session in.
    fn keys_only(&self) -> String {
        match &self.offered_key {
            Some(fp) => format!(
                "this server admits only authorized keys, and the key {fp} is not one of them"
            ),
            None => "this server admits only authorized keys, and none was offered".into(),
        }
    }

    /// Why this session cannot do `what`, an admin action.
    pub(super) fn admin_needed(&self, what: &str) -> Error {
        match (&self.key, &self.opts().admin_password) {
            (Some(k), None) => Error::auth(format!(
                "{what} needs an admin key: the key '{}' is not one (the server's admin can \
                 add `admin` to its line in the authorized keys file)",
                k.name
            )),
            (Some(k), Some(_)) => Error::auth(format!(
                "{what} needs the admin password (the key '{}' is not an admin key)",
                k.name
            )),
            (None, None) if self.opts().authorized_keys.is_some() => Error::auth(format!(
                "{what} needs an admin key (a line marked `admin` in the server's authorized keys file)"
            )),
            _ => self.shared.admin_needed(what),
        }
    }
}

pub(super) fn msg_name(m: &Msg) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.get("t").and_then(|t| t.as_str()).map(str::to_string))
        .unwrap_or_else(|| "?".into())
}
