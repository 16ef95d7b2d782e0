//! Opening a connection: where to dial and whom to trust
//! ([`ConnectOptions`]), the TLS handshake with fingerprint pinning, the
//! protocol greeting, and logging in (as admin too, on demand).

use super::{reply_error, Client, Credentials, Observer, PasswordKind, ServerInfo};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::ClientIdentity;
use crate::proto::{
    Counted, KeyStatus, Msg, NoticeHandler, WireCounters, ALPN_FTS, PROTOCOL_VERSION,
};
use crate::remote::Remote;
use crate::tls::PinPolicy;
use crate::transfer::SendOptions;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// How to reach and trust a server.
#[derive(Clone)]
pub struct ConnectOptions {
    /// `--fingerprint`: the only certificate to accept.
    pub fingerprint: Option<String>,
    /// Where pins are kept (default: `known_hosts` in the config dir).
    pub known_hosts: Option<PathBuf>,
    /// Longest wait for connecting and for any single read or write.
    pub timeout: Duration,
    /// Software name and version sent to the server.
    pub client_name: String,
    /// Display name shown in the server's client table (`--name`).
    pub name: String,
    /// Where warnings, chat messages and system notices from the server go
    /// when they arrive; without one they are dropped.
    pub notices: Option<NoticeHandler>,
    /// How uploads are sent (compression).
    pub send: SendOptions,
    /// `--bwlimit`: bytes per second in each direction on the socket.
    pub bwlimit: Option<u64>,
    /// The key offered to servers that take keys (`fts keygen`).
    pub identity: Option<Arc<ClientIdentity>>,
}

/// Why a server with authorized keys does not let us in, and what to do.
fn unknown_key(server: &str, k: &KeyStatus) -> String {
    match &k.fingerprint {
        Some(fp) => format!(
            "{server} does not know your key {fp}: ask its admin to add the line \
             `{fp} NAME` to the server's authorized keys file (NAME of your choice, \
             then `admin` or `read-only` if wanted)"
        ),
        None => format!(
            "{server} admits authorized keys and you offered none: run `fts keygen` and have \
             the fingerprint it prints added to the server's authorized keys file"
        ),
    }
}

/// `user@hostname`, the default display name.
pub fn default_name() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "user".into());
    format!("{user}@{}", crate::config::hostname())
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            fingerprint: None,
            known_hosts: None,
            timeout: Duration::from_secs(30),
            client_name: format!("fts {}", env!("CARGO_PKG_VERSION")),
            name: default_name(),
            notices: None,
            bwlimit: None,
            identity: None,
            send: SendOptions {
                compress: Some(crate::engine::compress::DEFAULT_LEVEL),
            },
        }
    }
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
        let offered = opts.identity.as_ref().map(|id| id.certified.clone());
        let (cfg, observed) = crate::tls::client_config(policy, ALPN_FTS, offered)?;
        let tcp = tokio::time::timeout(
            opts.timeout,
            TcpStream::connect((remote.host.as_str(), remote.port)),
        )
        .await
        .map_err(|_| Error::connect(format!("could not connect to {server}: timed out")))?
        .map_err(|e| Error::connect(format!("could not connect to {server}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let counters = Arc::new(WireCounters::default());
        let tcp = Counted::new(tcp, counters.clone()).with_limit(opts.bwlimit);
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
                    // Where the expectation came from decides the advice.
                    let fix = if explicit.is_some() {
                        "Check the fingerprint you passed with --fingerprint against the server's \
                         (`fts serve` prints it when it starts)."
                            .to_string()
                    } else {
                        format!(
                            "If you trust the new certificate, remove the line for {server} from {} \
                             or pass --fingerprint {got}.",
                            known_hosts.path().display()
                        )
                    };
                    return Err(Error::tls(format!(
                        "SERVER IDENTITY MISMATCH for {server}\n  \
                         expected ({source}): {expected}\n  \
                         presented by server: {got}\n\
                         Someone may be intercepting the connection, or the server's certificate was replaced.\n\
                         Nothing was transferred. {fix}"
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
        let (mut r, mut w) = crate::proto::frames(rh, wh, opts.timeout);
        if let Some(h) = &opts.notices {
            r.on_notice(h.clone());
        }
        r.accept_pings();
        w.msg(&Msg::Hello {
            version: PROTOCOL_VERSION,
            client: opts.client_name.clone(),
            name: Some(opts.name.clone()),
            timeout_ms: Some(opts.timeout.as_millis() as u64),
        })
        .await?;
        w.flush().await?;
        let (info, server_timeout) = match r.read_msg().await? {
            Msg::Welcome {
                version,
                server: sname,
                auth_required,
                admin_enabled,
                read_only,
                timeout_ms,
                key,
            } => {
                if version != PROTOCOL_VERSION {
                    return Err(Error::other(format!(
                        "{server} speaks protocol version {version}, this client {PROTOCOL_VERSION}"
                    )));
                }
                let info = ServerInfo {
                    server: sname,
                    auth_required,
                    admin_enabled,
                    read_only,
                    fingerprint,
                    key,
                };
                (info, timeout_ms.map(Duration::from_millis))
            }
            Msg::Error { kind, message, .. } => return Err(reply_error(kind, message)),
            m => return Err(Error::protocol(format!("unexpected greeting {m:?}"))),
        };
        let mut c = Client {
            _keepalive: None,
            r,
            w,
            counters,
            info,
            server,
            creds,
            admin: false,
            next_id: 1,
            send: opts.send,
            remote: remote.clone(),
            extra: Vec::new(),
        };
        c.admin = c.info.key.as_ref().is_some_and(|k| k.admin);
        if c.info.auth_required {
            match c.info.key.clone() {
                None => {
                    let pw = c.creds.password(PasswordKind::Access, &c.server)?;
                    c.login(Some(pw), None).await?;
                }
                Some(k) if !k.password => return Err(Error::auth(unknown_key(&c.server, &k))),
                Some(k) => {
                    // A password may stand in for the unknown key; without
                    // one, say both ways in.
                    let or_key = |e: Error| match e.kind {
                        ErrorKind::Auth => Error::auth(format!(
                            "{}\nor: {}",
                            e.message,
                            unknown_key(&c.server, &k)
                        )),
                        _ => e,
                    };
                    let pw = c
                        .creds
                        .password(PasswordKind::Access, &c.server)
                        .map_err(or_key)?;
                    c.login(Some(pw), None).await?;
                }
            }
        }
        // Only once logged in: the server takes pings from then on.
        let every = crate::link::keepalive_interval(opts.timeout, server_timeout);
        c._keepalive = Some(c.w.keepalive(every));
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
        if let Some(k) = self.info.key.as_ref().filter(|k| !k.admin_password) {
            let why = match (&k.name, &k.fingerprint) {
                (Some(name), _) => format!(
                    "the key '{name}' you logged in with is not one (the server's admin can add \
                     `admin` to its line in the authorized keys file)"
                ),
                (None, Some(fp)) => {
                    format!("add the line `{fp} NAME admin` to the server's authorized keys file")
                }
                (None, None) => {
                    "run `fts keygen` and have the server's admin add your key with `admin`".into()
                }
            };
            return Err(Error::auth(format!(
                "{}: admin actions need an admin key: {why}",
                self.server
            )));
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
}
