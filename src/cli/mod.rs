//! Command-line front-end: the clap definition, shared flag handling and
//! dispatch to one module per subcommand. Rendering lives in `output`.

mod admin;
mod chat;
mod creds;
mod docs;
mod get;
mod keygen;
mod login;
mod logout;
mod ls;
mod output;
mod put;
mod rm;
mod serve;
mod stats;
mod sync;

use clap::{Args, Parser, Subcommand};
use fts::client::ConnectOptions;
use fts::ops::{Context, TransferOptions};
use fts::{Error, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Secure, scriptable file transfer over TLS.
///
/// `fts serve` shares a directory (or one file) on one TLS port; `put`,
/// `get`, `sync`, `ls` and `rm` work against it; `login` stores a server's
/// password, `logout` forgets it. Remote locations are written
/// `HOST:PATH` (default port 7387; `HOST:` is the share root) or
/// `fts://HOST[:PORT]/PATH`; IPv6 as `[::1]:PATH`. A local path containing
/// `:` is written `./a:b`.
#[derive(Debug, Parser)]
#[command(name = "fts", version, about, long_about, propagate_version = true,
          after_help = docs::after_help(), after_long_help = docs::after_long_help())]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand understands.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Print exactly one JSON document on stdout (JSON Lines for streams);
    /// errors go to stderr as {"error":{…}}.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Say more (repeatable).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Never draw progress bars (they are drawn only when stderr is a terminal).
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Accept only the server certificate with this fingerprint (SHA256:…),
    /// instead of known_hosts.
    #[arg(long, global = true, value_name = "SHA256:…")]
    pub fingerprint: Option<String>,
    /// Read the access password from this file (first line). For `serve`:
    /// the password clients must give. Overrides FTS_PASSWORD.
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Read the admin password from this file (first line). For `serve`:
    /// enables deletes and admin actions. Overrides FTS_ADMIN_PASSWORD.
    #[arg(long, global = true, value_name = "FILE")]
    pub admin_password_file: Option<PathBuf>,
    /// The key to offer to servers with authorized keys (default:
    /// identity.pem in the config directory, made by `fts keygen`).
    /// Overrides FTS_IDENTITY.
    #[arg(long, global = true, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Your name in the server's client table and in chat (default:
    /// user@hostname). A client that logs in with a key is shown by the
    /// key's name, with this one beside it.
    #[arg(long, global = true, value_name = "NAME")]
    pub name: Option<String>,
    /// Give up when connecting, or when nothing has arrived from the peer
    /// for this long (a slow transfer that keeps moving never times out;
    /// both sides send keepalives while busy). `serve` waits twice as long.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Serve(serve::ServeArgs),
    Put(put::PutArgs),
    Get(get::GetArgs),
    Ls(ls::LsArgs),
    Rm(rm::RmArgs),
    Sync(sync::SyncArgs),
    Stats(stats::StatsArgs),
    Chat(chat::ChatArgs),
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    Login(login::LoginArgs),
    Logout(logout::LogoutArgs),
    Keygen(keygen::KeygenArgs),
    #[command(hide = true)]
    GenerateDocs(docs::DocsArgs),
}

/// Parses the command line, runs the command, returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    bounded_heap(matches!(cli.command, Command::Serve(_)));
    let out = output::Output::new(&cli.global);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return out.error(&Error::other(format!("cannot start runtime: {e}"))),
    };
    // These end on Ctrl-C by design (a server stops gracefully, `stats
    // --watch` and `chat` run until interrupted) and handle it themselves.
    let own_ctrl_c = matches!(
        cli.command,
        Command::Serve(_) | Command::Stats(_) | Command::Chat(_)
    );
    let work = async {
        match cli.command {
            Command::Serve(a) => serve::run(&cli.global, &out, a).await,
            Command::Put(a) => put::run(&cli.global, &out, a).await,
            Command::Get(a) => get::run(&cli.global, &out, a).await,
            Command::Ls(a) => ls::run(&cli.global, &out, a).await,
            Command::Rm(a) => rm::run(&cli.global, &out, a).await,
            Command::Sync(a) => sync::run(&cli.global, &out, a).await,
            Command::Stats(a) => stats::run(&cli.global, &out, a).await,
            Command::Chat(a) => chat::run(&cli.global, &out, a).await,
            Command::Admin(a) => admin::run(&cli.global, &out, a).await,
            Command::Login(a) => login::run(&cli.global, &out, a).await,
            Command::Logout(a) => logout::run(&cli.global, &out, a).await,
            Command::Keygen(a) => keygen::run(&cli.global, &out, a).await,
            Command::GenerateDocs(a) => docs::run(a),
        }
    };
    let result = rt.block_on(async {
        if own_ctrl_c {
            return work.await;
        }
        tokio::select! {
            r = work => r,
            _ = tokio::signal::ctrl_c() => Err(Error::new(
                fts::ErrorKind::Interrupted,
                "interrupted (Ctrl-C); a transfer that was cut resumes when run again",
            )),
        }
    });
    // Do not wait for blocking file threads of a failed transfer.
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => 0,
        Err(e) => out.error(&e),
    }
}

/// Flags shared by the commands that move file contents.
#[derive(Debug, Args, Clone)]
pub struct TransferArgs {
    /// Always send whole files, never deltas against the receiver's copy.
    #[arg(long)]
    pub no_delta: bool,
    /// Do not compress data on the wire.
    #[arg(long)]
    pub no_compress: bool,
    /// zstd level for data on the wire (1 fast … 19 small).
    #[arg(long, value_name = "N", default_value_t = fts::engine::compress::DEFAULT_LEVEL,
          value_parser = clap::value_parser!(i32).range(1..=19))]
    pub compress_level: i32,
    /// After a lost connection or timeout, try again this many times
    /// (pausing 1 s, 2 s, 4 s … up to 30 s), resuming where it stopped.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retries: u32,
    /// Limit socket I/O to RATE bytes per second in each direction
    /// (suffixes K, M, G for KiB, MiB, GiB: 500K, 10M); paced by sleeping,
    /// within 10% over any 5 s.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub bwlimit: Option<u64>,
    /// Keep up to N files in flight at once, each on its own connection
    /// (like rclone's --transfers): faster over links with a long round
    /// trip, or when one connection cannot fill the link.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
}

/// `10M` → 10 MiB/s.
fn parse_rate(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a rate (e.g. 500K, 10M)"))?;
    let rate = n * mult as f64;
    if !(1.0..1e15).contains(&rate) {
        return Err(format!(
            "'{s}': the rate must be at least 1 byte per second"
        ));
    }
    Ok(rate as u64)
}

impl TransferArgs {
    pub fn compress(&self) -> Option<i32> {
        (!self.no_compress).then_some(self.compress_level)
    }
}

/// The shared client context built from global flags.
pub fn context(g: &Global, out: &output::Output, t: Option<&TransferArgs>) -> Result<Context> {
    let mut transfer = TransferOptions {
        verbose: g.verbose > 0,
        ..TransferOptions::default()
    };
    let mut connect = ConnectOptions {
        fingerprint: g.fingerprint.clone(),
        known_hosts: None,
        timeout: Duration::from_secs(g.timeout.max(1)),
        ..ConnectOptions::default()
    };
    if let Some(n) = &g.name {
        connect.name = n.clone();
    }
    connect.identity = keygen::client_identity(g)?.map(Arc::new);
    let observer = out.observer();
    let shown = observer.clone();
    connect.notices = Some(Arc::new(move |n| shown.server_notice(&n)));
    if let Some(t) = t {
        transfer.delta = !t.no_delta;
        transfer.retries = t.retries;
        transfer.parallel = usize::from(t.parallel);
        connect.send.compress = t.compress();
        connect.bwlimit = t.bwlimit;
    }
    Ok(Context {
        connect,
        creds: Arc::new(creds::CliCredentials::new(g)),
        observer,
        transfer,
    })
}

/// glibc raises its mmap threshold to the size of each large block freed,
/// after which the server's multi-MiB transfer buffers come from per-thread
/// arenas that keep the memory once it is free: a few transfers on a few
/// threads then hold far more than they use (a 1 GiB put through the S3
/// store peaked at 63–78 MiB, 41 MiB with this). A fixed threshold keeps
/// every block of 2 MiB or more (the S3 store's parts and windows; not the
/// 1 MiB chunk buffers, reused in the hot path) in its own mapping,
/// returned when freed. Fixing it also fixes the trim threshold, at 128
/// KiB unless set: each freed 1 MiB chunk buffer at the top of a heap was
/// then handed back to the kernel and faulted in again for the next one.
/// The server keeps up to 4 MiB free per heap (55,000–73,000 page faults
/// per 1 GiB put at 128 KiB, 14,000–40,000 at 4 MiB; more would be
/// faster, but at 16 MiB a 1 GiB put and get through the S3 store peaked
/// at 67 MiB, over the 64 MiB bound). A client keeps up to 16 MiB free
/// per heap and makes at most 4 heaps, so what it keeps free stays under
/// 64 MiB however many connections it opens: a 1 GiB get took 90,000
/// page faults at 128 KiB, ~40,000 at 4 MiB, ~3,200 so, with the same
/// peak RSS.
fn bounded_heap(server: bool) {
    // `server` picks among glibc's tunables; other C libraries have none.
    let _ = server;
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator tunables; called first thing,
    // before any thread allocates a buffer.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 2 << 20);
        if server {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
        } else {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
            libc::mallopt(libc::M_ARENA_MAX, 4);
        }
    }
}
