//! `fts serve`: share a directory or one file over TLS.

use super::{creds::from_flag_or_env, output::Output, Global};
use clap::Args;
use fts::auth::Secret;
use fts::model::printable;
use fts::server::{LogEvent, ServerOptions};
use fts::store::{LocalStore, S3Store, Store};
use fts::tls::Identity;
use fts::{Error, Result};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Share a directory (or a single file) over TLS.
///
/// On first start a self-signed certificate is created in the state
/// directory (~/.local/state/fts) and reused afterwards, so the fingerprint
/// printed at start stays the same; --cert/--key use a real one. The access
/// password comes from --password-file or FTS_PASSWORD (without one the
/// share is open to anyone who can reach the port); the admin password,
/// needed for `rm`, from --admin-password-file or FTS_ADMIN_PASSWORD
/// (without one, removals are refused). A file holding an argon2 PHC string
/// ($argon2id$…) is used as the hash itself. SIGINT/SIGTERM stop the server
/// gracefully: transfers in flight get --shutdown-grace seconds, and an
/// unfinished upload never appears under its real name.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory or file to share, or an S3 bucket: `s3://BUCKET[/PREFIX]`
    /// (credentials and region from AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION; see --s3-endpoint). Several
    /// servers may share one bucket.
    #[arg(default_value = ".")]
    pub root: PathBuf,
    /// This server's name in stats and /metrics (the `node` label), to tell
    /// apart the servers of one bucket; default: the host name.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// URL of an S3-compatible store other than AWS (Garage, MinIO, …),
    /// addressed path-style; `http://` is allowed for a local one.
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Address and port to listen on (port 0 picks a free port).
    #[arg(long, default_value = "0.0.0.0:7387", value_name = "ADDR:PORT")]
    pub listen: String,
    /// Most clients served at once; more get a "server full" error.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_clients: u32,
    /// Refuse uploads, directory changes and removals.
    #[arg(long)]
    pub read_only: bool,
    /// Let fts clients log in with the keys listed in FILE, one per line:
    /// `SHA256:… NAME [admin] [read-only]` (the fingerprint `fts keygen`
    /// prints; `#` starts a comment). A key replaces the access password;
    /// `admin` also the admin password; `read-only` refuses its writes.
    /// Every fts client must then log in, with a key or (when there is one)
    /// the access password; the web side keeps passwords. FILE is read
    /// again whenever it changes, so a removed line is refused on that
    /// key's next connection; a FILE others may write is refused.
    #[arg(long, value_name = "FILE")]
    pub authorized_keys: Option<PathBuf>,
    /// PEM certificate chain to use instead of the self-signed one.
    #[arg(long, requires = "key", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// PEM private key for --cert.
    #[arg(long, requires = "cert", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Where the server keeps its certificate, lifetime totals
    /// (totals.json) and event log (logs/events.jsonl, rotated at 10 MiB,
    /// 5 old files kept); default: the user's state dir. One server per
    /// state directory.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Do not compress downloads on the wire.
    #[arg(long)]
    pub no_compress: bool,
    /// zstd level for downloads (1 fast … 19 small).
    #[arg(long, value_name = "N", default_value_t = fts::engine::compress::DEFAULT_LEVEL,
          value_parser = clap::value_parser!(i32).range(1..=19))]
    pub compress_level: i32,
    /// Acknowledge uploads without first making them durable (no fsync):
    /// faster, but a power cut may lose files a client was told are stored.
    #[arg(long)]
    pub no_fsync: bool,
    /// Seconds in-flight transfers may run on after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub shutdown_grace: u64,
    /// Seconds a browser or HTTP tool may take to send a request's headers
    /// (and an idle keep-alive HTTP connection stays open). Slower requests
    /// are cut, so slow or silent connections cannot pile up.
    #[arg(long, default_value_t = 10, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_timeout: u64,
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn human(e: &LogEvent) -> String {
    match e {
        LogEvent::Listening { .. } => String::new(),
        LogEvent::Connect {
            client,
            addr,
            name,
            declared_name: None,
        } => format!("connect #{client} from {addr} ({})", printable(name, 64)),
        LogEvent::Connect {
            client,
            addr,
            name,
            declared_name: Some(says),
        } => format!(
            "connect #{client} from {addr} (key {}, calls itself {})",
            printable(name, 64),
            printable(says, 64)
        ),
        LogEvent::Disconnect {
            client,
            addr,
            error: None,
        } => format!("disconnect #{client} ({addr})"),
        LogEvent::Disconnect {
            client,
            addr,
            error: Some(err),
        } => {
            format!("disconnect #{client} ({addr}): {err}")
        }
        LogEvent::Rejected { addr, reason } => format!("rejected {addr}: {reason}"),
        LogEvent::Auth {
            client,
            addr,
            admin,
            ok,
        } => format!(
            "auth #{client} ({addr}) {}: {}",
            if *admin { "admin" } else { "access" },
            if *ok { "ok" } else { "FAILED" }
        ),
        LogEvent::KeyAuth {
            client,
            addr,
            key,
            name,
            ok,
            reason,
        } => match (ok, name, reason) {
            (true, Some(name), _) => format!("auth #{client} ({addr}) key {name} ({key}): ok"),
            (_, _, Some(why)) => format!("auth #{client} ({addr}) key {key}: REFUSED ({why})"),
            _ => format!("auth #{client} ({addr}) key {key}: REFUSED"),
        },
        LogEvent::Upload {
            client,
            path,
            bytes,
        } => format!("upload #{client} {path} ({bytes} bytes)"),
        LogEvent::Download {
            client,
            path,
            bytes,
        } => format!("download #{client} {path} ({bytes} bytes)"),
        LogEvent::WebDownload {
            addr,
            path,
            bytes,
            complete,
        } => format!(
            "web download {path} to {addr} ({bytes} bytes{})",
            if *complete { "" } else { ", cut short" }
        ),
        LogEvent::WebUpload { addr, path, bytes } => {
            format!("web upload {path} from {addr} ({bytes} bytes)")
        }
        LogEvent::Delete {
            client,
            path,
            files,
            dirs,
        } => {
            format!("delete #{client} {path} ({files} files, {dirs} dirs)")
        }
        LogEvent::Chat {
            client,
            from,
            to,
            text,
            live,
            stored,
        } => format!(
            "chat #{client} {} → {}: {} ({})",
            printable(from, 64),
            printable(to, 64),
            printable(text, 200),
            if *stored {
                "kept as unread".to_string()
            } else {
                format!("{live} live")
            }
        ),
        LogEvent::Admin {
            client,
            action,
            target,
            ok,
            detail,
        } => format!(
            "admin #{client} {action}{}{}: {}",
            target.map(|t| format!(" #{t}")).unwrap_or_default(),
            if *ok { "" } else { " REFUSED" },
            printable(detail, 200)
        ),
        LogEvent::Error { client, message } => format!("error #{client}: {message}"),
        LogEvent::Shutdown { sessions } => format!("shutting down ({sessions} sessions open)"),
        LogEvent::Stopped => "stopped".into(),
    }
}

/// Binds `--listen`. An address that does not parse or resolve is a usage
/// error (2). A port already in use is not: the command line is fine, the
/// machine is busy, so it is "other" (1), like the state directory being
/// taken. It is not 6 either, which is the client's "could not reach the
/// server / connection lost", the class `--retries` and scripts retry.
/// Binding a privileged port without the right is a permission error (5).
async fn listen(spec: &str) -> Result<tokio::net::TcpListener> {
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(spec)
        .await
        .map_err(|e| {
            Error::usage(format!(
                "--listen {spec}: not an address to listen on ({e}); give ADDR:PORT, e.g. 0.0.0.0:7387"
            ))
        })?
        .collect();
    let mut last = None;
    for addr in &addrs {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    let Some(e) = last else {
        return Err(Error::usage(format!(
            "--listen {spec}: no address to listen on"
        )));
    };
    Err(match e.kind() {
        std::io::ErrorKind::AddrInUse => Error::other(format!(
            "cannot listen on {spec}: the port is already in use (another fts serve, or another \
             program, is listening there); stop it or choose another port with --listen"
        )),
        std::io::ErrorKind::PermissionDenied => Error::permission(format!(
            "cannot listen on {spec}: {e} (ports below 1024 need privileges; choose another with --listen)"
        )),
        _ => Error::other(format!("cannot listen on {spec}: {e}")),
    })
}

pub async fn run(g: &Global, out: &Output, a: ServeArgs) -> Result<()> {
    let store: Arc<dyn Store> = match a.root.to_str().filter(|r| r.starts_with("s3://")) {
        Some(url) => Arc::new(S3Store::open(url, a.s3_endpoint.as_deref())?),
        None if a.s3_endpoint.is_some() => {
            return Err(Error::usage(
                "--s3-endpoint needs an s3://BUCKET[/PREFIX] to serve",
            ))
        }
        None => Arc::new(LocalStore::open(&a.root)?),
    };
    let state_dir = match &a.state_dir {
        Some(d) => d.clone(),
        None => fts::config::state_dir()?,
    };
    // One server per state directory: a second one would overwrite the
    // first one's totals and interleave their event logs. Held until this
    // function returns; the kernel drops it if the process dies.
    let _lock = fts::config::StateLock::acquire(&state_dir)?;
    let identity = match (&a.cert, &a.key) {
        (Some(c), Some(k)) => Identity::from_pem_files(c, k)?,
        _ => Identity::load_or_create(&state_dir)?,
    };
    let password = from_flag_or_env(g.password_file.as_ref(), "FTS_PASSWORD")?
        .map(|p| Secret::new(&p))
        .transpose()?;
    let admin_password = from_flag_or_env(g.admin_password_file.as_ref(), "FTS_ADMIN_PASSWORD")?
        .map(|p| Secret::new(&p))
        .transpose()?;
    // Each client, pending handshake and web connection holds descriptors;
    // the usual soft limit of 1024 is below what the caps allow in total.
    // Best effort: the accept loop backs off when descriptors run out.
    let authorized_keys = a
        .authorized_keys
        .as_deref()
        .map(fts::keys::AuthorizedKeys::open)
        .transpose()?
        .map(Arc::new);
    let _ = rlimit::increase_nofile_limit(65_536);
    let listener = listen(&a.listen).await?;
    let mut opts = ServerOptions::new(store);
    opts.read_only = a.read_only;
    if let Some(n) = &a.node {
        opts.node = n.clone();
    }
    opts.max_clients = a.max_clients as usize;
    opts.password = password;
    opts.admin_password = admin_password;
    opts.authorized_keys = authorized_keys;
    opts.io_timeout = Duration::from_secs(g.timeout.max(1) * 2);
    opts.shutdown_grace = Duration::from_secs(a.shutdown_grace);
    opts.http_timeout = Duration::from_secs(a.http_timeout);
    opts.send.compress = (!a.no_compress).then_some(a.compress_level);
    opts.fsync = !a.no_fsync;
    opts.state_dir = Some(state_dir);
    let json = out.json;
    let quiet = out.quiet;
    // A batch of events (what the server's log thread found queued) goes
    // out in one write per stream: a busy server logs a line per file.
    let log: fts::server::LogSink = Arc::new(move |batch: &[fts::server::Logged]| {
        let (mut so, mut se) = (String::new(), String::new());
        for l in batch {
            if json {
                so.push_str(&l.record);
                so.push('\n');
                continue;
            }
            match &l.event {
                LogEvent::Listening {
                    addr,
                    fingerprint,
                    root,
                    read_only,
                    password_required,
                    admin_enabled,
                    authorized_keys,
                    ..
                } => {
                    let login = match (password_required, authorized_keys) {
                        (true, Some(_)) => "password or authorized key required",
                        (false, Some(_)) => "authorized key required",
                        (true, None) => "password required",
                        (false, None) => "no password: open to anyone who can connect",
                    };
                    let admin = match (admin_enabled, authorized_keys) {
                        (true, _) => "admin enabled",
                        (false, Some(_)) => "admin only with admin keys",
                        (false, None) => "no admin password (rm and admin actions disabled)",
                    };
                    so.push_str(&format!(
                        "fts {} serving {root} on {addr} ({}, {}, {})\nfingerprint {fingerprint}\n",
                        env!("CARGO_PKG_VERSION"),
                        if *read_only {
                            "read-only"
                        } else {
                            "read-write"
                        },
                        login,
                        admin,
                    ));
                }
                other if !quiet => se.push_str(&format!("{} {}\n", now(), human(other))),
                _ => {}
            }
        }
        if !so.is_empty() {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(so.as_bytes());
            let _ = out.flush();
        }
        if !se.is_empty() {
            let _ = std::io::stderr().lock().write_all(se.as_bytes());
        }
    });
    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    };
    fts::server::run(listener, opts, &identity, log, shutdown).await
}
