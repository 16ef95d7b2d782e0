//! The client side of a connection: dial, TLS with pinning, hello, login,
//! and typed calls. Batches of uploads and downloads are pipelined: one
//! half of the connection streams requests (and file data) while the other
//! half collects replies, so there is no round trip per file or per chunk.

use crate::error::{Error, ErrorKind, Result};
use crate::fsutil::TempFile;
use crate::proto::{
    Counted, Entry, FrameReader, FrameWriter, Meta, Msg, WireCounters, ALPN_FTS, PROTOCOL_VERSION,
};
use crate::remote::Remote;
use crate::tls::PinPolicy;
use crate::transfer::{self, Received, SendError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

type Tls = tokio_rustls::client::TlsStream<Counted<TcpStream>>;

/// How to reach and trust a server.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `--fingerprint`: the only certificate to accept.
    pub fingerprint: Option<String>,
    /// Where pins are kept (default: `known_hosts` in the config dir).
    pub known_hosts: Option<PathBuf>,
    /// Longest wait for connecting and for any single read or write.
    pub timeout: Duration,
    /// Display name sent to the server.
    pub client_name: String,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            fingerprint: None,
            known_hosts: None,
            timeout: Duration::from_secs(30),
            client_name: format!("fts {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Which password the server asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordKind {
    Access,
    Admin,
}

/// Supplies passwords when a server asks for one (flags, environment,
/// stored credentials, a prompt: the caller decides). Returning an error
/// aborts the command with that error.
pub trait Credentials: Send + Sync {
    fn password(&self, kind: PasswordKind, server: &str) -> Result<String>;
}

/// Receives progress and notices; the library itself never prints.
pub trait Observer: Send + Sync {
    fn notice(&self, _msg: &str) {}
    fn batch_start(&self, _files: u64, _bytes: u64) {}
    fn file_start(&self, _path: &str, _size: u64) {}
    fn bytes(&self, _n: u64) {}
    fn file_done(&self, _path: &str, _ok: bool) {}
    fn batch_done(&self) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// What the server said about itself.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub server: String,
    pub auth_required: bool,
    pub admin_enabled: bool,
    pub read_only: bool,
    pub fingerprint: String,
}

/// An open, logged-in connection.
pub struct Client {
    r: FrameReader<ReadHalf<Tls>>,
    w: FrameWriter<WriteHalf<Tls>>,
    counters: Arc<WireCounters>,
    pub info: ServerInfo,
    server: String,
    creds: Arc<dyn Credentials>,
    admin: bool,
    next_id: u64,
}

/// One step of an upload batch.
#[derive(Debug, Clone)]
pub enum PutOp {
    Mkdir { remote: String },
    File { local: PathBuf, remote: String },
    DirMeta { remote: String, meta: Meta },
}

/// One file of a download batch.
#[derive(Debug, Clone)]
pub struct GetOp {
    pub remote: String,
    pub local: PathBuf,
}

/// The fate of one file in a batch.
#[derive(Debug, Clone)]
pub struct FileOutcome {
    pub path: String,
    /// A file (as opposed to a directory step).
    pub is_file: bool,
    pub bytes: u64,
    pub result: Result<()>,
}

/// A request the writer has sent, waiting for its reply (or a local
/// failure that never reached the wire, when `id` is `None`).
struct Pending {
    id: Option<u64>,
    path: String,
    is_file: bool,
    bytes: u64,
    err: Option<Error>,
}

impl Pending {
    fn new(id: Option<u64>, path: &str, is_file: bool) -> Self {
        Pending {
            id,
            path: path.to_string(),
            is_file,
            bytes: 0,
            err: None,
        }
    }
}

fn reply_error(kind: ErrorKind, message: String) -> Error {
    Error::new(kind, message)
}

impl Client {
    /// Connects, verifies the server's identity, and logs in when the
    /// server wants a password.
    pub async fn connect(
        remote: &Remote,
        opts: &ConnectOptions,
        creds: Arc<dyn Credentials>,
        obs: &dyn Observer,
    ) -> Result<Client> {
        let server = remote.host_port();
        let known_hosts = crate::config::KnownHosts::at(match &opts.known_hosts {
            Some(p) => p.clone(),
            None => crate::config::config_dir()?.join("known_hosts"),
        });
        let explicit = opts
            .fingerprint
            .as_deref()
            .map(crate::tls::normalize_fingerprint)
            .transpose()?;
        let known = if explicit.is_some() {
            None
        } else {
            known_hosts.get(&server)?
        };
        let policy = PinPolicy {
            explicit: explicit.clone(),
            known: known.clone(),
        };
        let (cfg, observed) = crate::tls::client_config(policy, ALPN_FTS)?;
        let tcp = tokio::time::timeout(
            opts.timeout,
            TcpStream::connect((remote.host.as_str(), remote.port)),
        )
        .await
        .map_err(|_| Error::connect(format!("could not connect to {server}: timed out")))?
        .map_err(|e| Error::connect(format!("could not connect to {server}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let counters = Arc::new(WireCounters::default());
        let tcp = Counted::new(tcp, counters.clone());
        let connector = tokio_rustls::TlsConnector::from(cfg);
        let name = crate::tls::server_name(&remote.host)?;
        let handshake = tokio::time::timeout(opts.timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| Error::connect(format!("{server}: TLS handshake timed out")))?;
        let seen = observed.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let tls = match handshake {
            Ok(t) => t,
            Err(e) => {
                if let Some((expected, got)) = seen.mismatch {
                    let source = if explicit.is_some() {
                        "--fingerprint".to_string()
                    } else {
                        known_hosts.path().display().to_string()
                    };
                    return Err(Error::tls(format!(
                        "SERVER IDENTITY MISMATCH for {server}\n  \
                         expected ({source}): {expected}\n  \
                         presented by server: {got}\n\
                         Someone may be intercepting the connection, or the server's certificate was replaced.\n\
                         Nothing was transferred. If you trust the new certificate, remove the line for {server} \
                         from {} or pass --fingerprint {got}.",
                        known_hosts.path().display()
                    )));
                }
                return Err(match e.kind() {
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::Other => {
                        Error::tls(format!("{server}: TLS handshake failed: {e}"))
                    }
                    _ => Error::connect(format!(
                        "{server}: connection failed during TLS handshake: {e}"
                    )),
                });
            }
        };
        let fingerprint = seen.fingerprint.clone().unwrap_or_default();
        if explicit.is_none() && known.is_none() && !seen.ca_valid {
            known_hosts.set(&server, &fingerprint)?;
            obs.notice(&format!(
                "recorded the fingerprint of {server} ({fingerprint}) in {}",
                known_hosts.path().display()
            ));
        }
        let (rh, wh) = tokio::io::split(tls);
        let mut r = FrameReader::new(rh, opts.timeout);
        let mut w = FrameWriter::new(wh, opts.timeout);
        w.msg(&Msg::Hello {
            version: PROTOCOL_VERSION,
            client: opts.client_name.clone(),
        })
        .await?;
        w.flush().await?;
        let info = match r.read_msg().await? {
            Msg::Welcome {
                version,
                server: sname,
                auth_required,
                admin_enabled,
                read_only,
            } => {
                if version != PROTOCOL_VERSION {
                    return Err(Error::other(format!(
                        "{server} speaks protocol version {version}, this client {PROTOCOL_VERSION}"
                    )));
                }
                ServerInfo {
                    server: sname,
                    auth_required,
                    admin_enabled,
                    read_only,
                    fingerprint,
                }
            }
            Msg::Error { kind, message, .. } => return Err(reply_error(kind, message)),
            m => return Err(Error::protocol(format!("unexpected greeting {m:?}"))),
        };
        let mut c = Client {
            r,
            w,
            counters,
            info,
            server,
            creds,
            admin: false,
            next_id: 1,
        };
        if c.info.auth_required {
            let pw = c.creds.password(PasswordKind::Access, &c.server)?;
            c.login(Some(pw), None).await?;
        }
        Ok(c)
    }

    async fn login(&mut self, password: Option<String>, admin: Option<String>) -> Result<()> {
        self.w
            .msg(&Msg::Auth {
                password,
                admin_password: admin,
            })
            .await?;
        self.w.flush().await?;
        match self.r.read_msg().await? {
            Msg::AuthOk { admin } => {
                self.admin = admin;
                Ok(())
            }
            Msg::Error { kind, message, .. } => {
                Err(reply_error(kind, format!("{}: {message}", self.server)))
            }
            m => Err(Error::protocol(format!("unexpected reply to login: {m:?}"))),
        }
    }

    /// Logs in as admin (asks the credentials provider for the admin password).
    pub async fn elevate(&mut self) -> Result<()> {
        if self.admin {
            return Ok(());
        }
        if !self.info.admin_enabled {
            return Err(Error::permission(format!(
                "{}: admin actions are disabled on this server (it was started without --admin-password-file)",
                self.server
            )));
        }
        let pw = self.creds.password(PasswordKind::Admin, &self.server)?;
        self.login(None, Some(pw)).await
    }

    pub fn wire(&self) -> (u64, u64) {
        (self.counters.sent(), self.counters.received())
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    async fn call(&mut self, m: &Msg) -> Result<Msg> {
        self.w.msg(m).await?;
        self.w.flush().await?;
        match self.r.read_msg().await? {
            Msg::Error { kind, message, .. } => Err(reply_error(kind, message)),
            m => Ok(m),
        }
    }

    /// Metadata of a remote path, `None` if it does not exist.
    pub async fn stat(&mut self, path: &str) -> Result<Option<Entry>> {
        match self.call(&Msg::Stat { path: path.into() }).await? {
            Msg::StatReply { entry } => Ok(entry),
            m => Err(Error::protocol(format!("unexpected reply to stat: {m:?}"))),
        }
    }

    /// Entries below a remote directory (or the file itself).
    pub async fn list(&mut self, path: &str, recursive: bool) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let mut m = self
            .call(&Msg::List {
                path: path.into(),
                recursive,
            })
            .await?;
        loop {
            match m {
                Msg::ListBatch { entries } => out.extend(entries),
                Msg::ListEnd => return Ok(out),
                Msg::Error { kind, message, .. } => return Err(reply_error(kind, message)),
                m => return Err(Error::protocol(format!("unexpected reply to list: {m:?}"))),
            }
            m = self.r.read_msg().await?;
        }
    }

    /// Removes a remote file or (with `recursive`) directory; needs admin.
    pub async fn remove(&mut self, path: &str, recursive: bool) -> Result<(u64, u64)> {
        self.elevate().await?;
        match self
            .call(&Msg::Remove {
                path: path.into(),
                recursive,
            })
            .await?
        {
            Msg::Removed { files, dirs } => Ok((files, dirs)),
            m => Err(Error::protocol(format!(
                "unexpected reply to remove: {m:?}"
            ))),
        }
    }

    /// Runs an upload batch, pipelined. Returns one outcome per `File` op
    /// (and per failed `Mkdir`/`DirMeta`); only a connection failure is `Err`.
    pub async fn put_batch(
        &mut self,
        ops: Vec<PutOp>,
        obs: &dyn Observer,
    ) -> Result<Vec<FileOutcome>> {
        let first_id = self.next_id;
        self.next_id += ops.len() as u64;
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
        let w = &mut self.w;
        let r = &mut self.r;
        let writer = async move {
            for (i, op) in ops.into_iter().enumerate() {
                let id = first_id + i as u64;
                match op {
                    PutOp::Mkdir { remote } => {
                        let _ = tx.send(Pending::new(Some(id), &remote, false));
                        w.msg(&Msg::Mkdir { id, path: remote }).await?;
                    }
                    PutOp::DirMeta { remote, meta } => {
                        let _ = tx.send(Pending::new(Some(id), &remote, false));
                        w.msg(&Msg::SetMeta {
                            id,
                            path: remote,
                            mtime: meta.mtime,
                            mtime_ns: meta.mtime_ns,
                            mode: meta.mode,
                        })
                        .await?;
                    }
                    PutOp::File { local, remote } => {
                        let opened = std::fs::File::open(&local)
                            .and_then(|f| f.metadata().map(|m| (f, m)))
                            .map_err(|e| Error::local_io(&local, e));
                        let (file, md) = match opened {
                            Ok(x) => x,
                            Err(e) => {
                                // Nothing sent: the reader records it without a reply.
                                let _ = tx.send(Pending {
                                    err: Some(e),
                                    ..Pending::new(None, &remote, true)
                                });
                                continue;
                            }
                        };
                        let meta = crate::fsutil::meta_of(&md);
                        w.msg(&Msg::Put {
                            id,
                            path: remote.clone(),
                            meta,
                        })
                        .await?;
                        obs.file_start(&remote, meta.size);
                        match transfer::send_file(w, file, meta.size, &|n| obs.bytes(n)).await {
                            Ok(hash) => {
                                let _ = tx.send(Pending {
                                    bytes: meta.size,
                                    ..Pending::new(Some(id), &remote, true)
                                });
                                w.msg(&Msg::PutEnd { id, hash }).await?;
                            }
                            Err(SendError::Local(e)) => {
                                let e = e.context(local.display());
                                let _ = tx.send(Pending {
                                    bytes: meta.size,
                                    err: Some(e.clone()),
                                    ..Pending::new(Some(id), &remote, true)
                                });
                                w.msg(&Msg::PutAbort {
                                    id,
                                    reason: e.message,
                                })
                                .await?;
                            }
                            Err(SendError::Net(e)) => return Err(e),
                        }
                    }
                }
            }
            drop(tx);
            w.flush().await?;
            Ok::<(), Error>(())
        };
        let reader = async move {
            let mut out = Vec::new();
            while let Some(p) = rx.recv().await {
                let Some(id) = p.id else {
                    obs.file_done(&p.path, false);
                    out.push(FileOutcome {
                        path: p.path,
                        is_file: true,
                        bytes: 0,
                        result: Err(p.err.unwrap_or_else(|| Error::other("failed"))),
                    });
                    continue;
                };
                let result = match r.read_msg().await? {
                    Msg::Done { id: rid } if rid == id => Ok(()),
                    Msg::Error {
                        id: Some(rid),
                        kind,
                        message,
                    } if rid == id => Err(p.err.unwrap_or_else(|| reply_error(kind, message))),
                    Msg::Error {
                        id: None,
                        kind,
                        message,
                    } => return Err(reply_error(kind, message)),
                    m => return Err(Error::protocol(format!("unexpected reply {m:?}"))),
                };
                if p.is_file {
                    obs.file_done(&p.path, result.is_ok());
                }
                out.push(FileOutcome {
                    path: p.path,
                    is_file: p.is_file,
                    bytes: p.bytes,
                    result,
                });
            }
            Ok::<_, Error>(out)
        };
        let res = tokio::try_join!(writer, reader);
        obs.batch_done();
        Ok(res?.1)
    }

    /// Runs a download batch, pipelined: all requests go out while files
    /// stream back. Each file lands in a temp file beside its target and is
    /// renamed only after its hash checks out.
    pub async fn get_batch(
        &mut self,
        ops: Vec<GetOp>,
        obs: &dyn Observer,
    ) -> Result<Vec<FileOutcome>> {
        let first_id = self.next_id;
        self.next_id += ops.len() as u64;
        let paths: Vec<String> = ops.iter().map(|o| o.remote.clone()).collect();
        let w = &mut self.w;
        let r = &mut self.r;
        let writer = async move {
            for (i, p) in paths.into_iter().enumerate() {
                w.msg(&Msg::Get {
                    id: first_id + i as u64,
                    path: p,
                })
                .await?;
            }
            w.flush().await?;
            Ok::<(), Error>(())
        };
        let reader = async move {
            let mut out = Vec::new();
            for (i, op) in ops.into_iter().enumerate() {
                let id = first_id + i as u64;
                let (result, bytes) = receive_one(r, id, &op, obs).await?;
                obs.file_done(&op.remote, result.is_ok());
                out.push(FileOutcome {
                    path: op.remote,
                    is_file: true,
                    bytes,
                    result,
                });
            }
            Ok::<_, Error>(out)
        };
        let res = tokio::try_join!(writer, reader);
        obs.batch_done();
        Ok(res?.1)
    }

    /// Says goodbye and closes the connection cleanly.
    pub async fn close(mut self) -> Result<()> {
        self.w.msg(&Msg::Bye).await?;
        self.w.shutdown().await
    }
}

/// Receives the reply to one `Get`. Outer error: the connection failed.
async fn receive_one<R: tokio::io::AsyncRead + Unpin>(
    r: &mut FrameReader<R>,
    id: u64,
    op: &GetOp,
    obs: &dyn Observer,
) -> Result<(Result<()>, u64)> {
    let meta = match r.read_msg().await? {
        Msg::FileHeader { id: rid, meta } if rid == id => meta,
        Msg::Error {
            id: Some(rid),
            kind,
            message,
        } if rid == id => return Ok((Err(reply_error(kind, message)), 0)),
        m => return Err(Error::protocol(format!("unexpected reply {m:?}"))),
    };
    obs.file_start(&op.remote, meta.size);
    let tmp = TempFile::create_beside(&op.local).map_err(|e| Error::local_io(&op.local, e));
    let file = match &tmp {
        Ok(t) => Some(
            t.file()
                .try_clone()
                .map_err(|e| Error::local_io(&op.local, e))?,
        ),
        Err(_) => None,
    };
    let received = transfer::receive_file(r, file, meta.size, &|n| obs.bytes(n)).await?;
    let hash = match received {
        Received::Complete(h) => h,
        Received::Interrupted(Msg::Error { kind, message, .. }) => {
            return Ok((Err(reply_error(kind, message)), meta.size))
        }
        Received::Interrupted(m) => return Err(Error::protocol(format!("unexpected {m:?}"))),
    };
    let sent_hash = match r.read_msg().await? {
        Msg::FileEnd { id: rid, hash } if rid == id => hash,
        Msg::Error {
            id: Some(rid),
            kind,
            message,
        } if rid == id => return Ok((Err(reply_error(kind, message)), meta.size)),
        m => return Err(Error::protocol(format!("unexpected reply {m:?}"))),
    };
    let tmp = match tmp {
        Ok(t) => t,
        Err(e) => return Ok((Err(e), meta.size)),
    };
    let result = match hash {
        Err(e) => Err(e.context(op.local.display())),
        Ok(h) if h != sent_hash => Err(Error::integrity(format!(
            "{}: integrity check failed (BLAKE3 mismatch); the local file was left untouched",
            op.local.display()
        ))),
        Ok(_) => tmp
            .commit(&op.local, &meta)
            .map_err(|e| Error::local_io(&op.local, e)),
    };
    Ok((result, meta.size))
}
