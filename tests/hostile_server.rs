//! A hostile SERVER against the real client: the other way round from
//! `tests/hostile.rs`. The client-side CVEs of scp and rsync
//! (CVE-2019-6111, CVE-2024-12087, CVE-2024-12088) are a malicious server
//! making the client write outside its destination. Here a fake fts server,
//! built from the library (a real TLS listener with a self-signed
//! certificate, the real frames and messages, the Hello/Welcome handshake),
//! answers `fts get`, `fts sync` and `fts ls` with lies: names that climb
//! out, absolute paths, NUL bytes, files "through" symlinks, entries that
//! change type, files longer than announced, listings that never end,
//! deltas that copy from outside their base, forged hashes.
//!
//! Every case runs the real binary and checks that it refuses with a clear
//! message and the documented exit code, and that nothing outside the
//! destination changed (a recursive snapshot of the scratch directory
//! around DEST, taken before and after, compared entry by entry, with
//! modes, times, contents and link targets, so a write or a chmod through
//! a symlink shows).

mod common;
use common::*;

use fts::model::{Entry, EntryKind, Meta};
use fts::proto::{
    Body, Chunk, Frame, FrameReader, FrameWriter, Msg, ALPN_FTS, CHUNK, PROTOCOL_VERSION,
};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type SrvTls = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

// ---------------------------------------------------------------------------
// The fake server

/// One frame of a scripted reply.
#[derive(Clone, Debug)]
enum Reply {
    Msg(Msg),
    Chunk(Chunk),
    /// Drop the connection here, without a goodbye.
    Hangup,
}

/// The reply to a `Get`: from the path, the request id and the client's
/// signature (if it sent one).
type GetFn =
    dyn Fn(&str, u64, Option<&[u8]>, Option<&fts::proto::GetResume>) -> Vec<Reply> + Send + Sync;

enum Listing {
    Entries(Vec<Entry>),
    /// Batches of entries forever, never a `ListEnd`.
    Endless,
}

/// What the fake server answers.
struct Script {
    /// `Stat` answers by requested path; any other path is a directory
    /// named as asked.
    stat: HashMap<String, Option<Entry>>,
    listing: Listing,
    get: Box<GetFn>,
}

impl Script {
    fn new(listing: Listing) -> Script {
        Script {
            stat: HashMap::new(),
            listing,
            get: Box::new(|path, id, _, _| honest(id, path.as_bytes())),
        }
    }
    fn stat(mut self, path: &str, entry: Option<Entry>) -> Script {
        self.stat.insert(path.to_string(), entry);
        self
    }
    fn get(
        mut self,
        f: impl Fn(&str, u64, Option<&[u8]>, Option<&fts::proto::GetResume>) -> Vec<Reply>
            + Send
            + Sync
            + 'static,
    ) -> Script {
        self.get = Box::new(f);
        self
    }
    fn stat_of(&self, path: &str) -> Option<Entry> {
        if let Some(e) = self.stat.get(path) {
            return e.clone();
        }
        let p = fts::paths::normalize(path).unwrap_or_else(|_| path.to_string());
        Some(dir(&p))
    }
}

/// A TLS listener on 127.0.0.1:0 speaking the fts protocol from a script.
/// Stopped (its runtime shut down) when dropped.
struct FakeServer {
    rt: Option<tokio::runtime::Runtime>,
    port: u16,
    fingerprint: String,
    _state: tempfile::TempDir,
}

impl FakeServer {
    fn start(script: Script) -> FakeServer {
        let state = tempfile::tempdir().unwrap();
        let id = fts::tls::Identity::load_or_create(state.path()).unwrap();
        let fingerprint = id.fingerprint();
        let acceptor = tokio_rustls::TlsAcceptor::from(
            fts::tls::server_config(&id, &[ALPN_FTS], None).unwrap(),
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = Arc::new(script);
        rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, script) = (acceptor.clone(), script.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = session(tls, &script).await;
                    }
                });
            }
        });
        FakeServer {
            rt: Some(rt),
            port,
            fingerprint,
            _state: state,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("fts://127.0.0.1:{}/{}", self.port, path)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// One connection: the real handshake, then scripted answers.
async fn session(tls: SrvTls, script: &Script) -> fts::Result<()> {
    let t = Duration::from_secs(30);
    let (rh, wh) = tokio::io::split(tls);
    let mut r = FrameReader::new(rh, t);
    let mut w = FrameWriter::new(wh, t);
    let Msg::Hello { version, .. } = r.read_msg().await? else {
        return Err(fts::Error::protocol("expected hello"));
    };
    assert_eq!(version, PROTOCOL_VERSION);
    w.msg(&Msg::Welcome {
        version: PROTOCOL_VERSION,
        server: "hostile".into(),
        auth_required: false,
        admin_enabled: false,
        read_only: true,
        timeout_ms: None,
        key: None,
    })
    .await?;
    w.flush().await?;
    // The client's keepalives are not part of any script.
    r.accept_pings();
    let mut orphans_sent = false;
    while let Some(frame) = r.read_opt().await? {
        let Frame::Control(m) = frame else {
            return Err(fts::Error::protocol("unexpected data frame"));
        };
        match m {
            Msg::Stat { path } => {
                w.msg(&Msg::StatReply {
                    entry: script.stat_of(&path),
                })
                .await?
            }
            Msg::List { .. } => match &script.listing {
                Listing::Entries(v) => {
                    for batch in v.chunks(50) {
                        w.msg(&Msg::ListBatch {
                            entries: batch.to_vec(),
                        })
                        .await?;
                    }
                    w.msg(&Msg::ListEnd).await?;
                }
                Listing::Endless => endless(&mut w).await?,
            },
            // A sync asks one directory at a time: each scripted entry goes
            // with the nearest directory above it that the script lists (so
            // an entry below a link comes with the link), and with the first
            // answer those below no listed directory at all (the top's own
            // entries, and lies).
            Msg::ListDir { path, .. } => match &script.listing {
                Listing::Entries(v) => {
                    let parent = |p: &str| p.rsplit_once('/').map_or("", |(d, _)| d).to_string();
                    let dirs: std::collections::HashSet<&str> = v
                        .iter()
                        .filter(|e| e.kind == EntryKind::Dir)
                        .map(|e| e.path.as_str())
                        .collect();
                    let home = |p: &str| {
                        let mut up = parent(p);
                        loop {
                            if dirs.contains(up.as_str()) {
                                return Some(up);
                            }
                            if up.is_empty() {
                                return None;
                            }
                            up = parent(&up);
                        }
                    };
                    let mine: Vec<Entry> = v
                        .iter()
                        .filter(|e| match home(&e.path) {
                            Some(d) => d == path,
                            None => !orphans_sent,
                        })
                        .cloned()
                        .collect();
                    orphans_sent = true;
                    w.msg(&Msg::ListBatch { entries: mine }).await?;
                    w.msg(&Msg::ListEnd).await?;
                }
                Listing::Endless => endless(&mut w).await?,
            },
            Msg::Get {
                id,
                path,
                signature,
                resume,
            } => {
                let sig = match signature {
                    Some(n) => Some(r.read_blob(n, 64 << 20).await?),
                    None => None,
                };
                for o in (script.get)(&path, id, sig.as_deref(), resume.as_ref()) {
                    match o {
                        Reply::Msg(m) => w.msg(&m).await?,
                        Reply::Chunk(c) => w.chunk(&c).await?,
                        Reply::Hangup => {
                            w.flush().await?;
                            return Ok(());
                        }
                    }
                }
            }
            Msg::Bye => break,
            // Syncing, Ping: no reply.
            _ => {}
        }
        w.flush().await?;
    }
    Ok(())
}

/// A listing that never ends: batches of entries with long names (so that
/// a client without a bound runs out of memory fast), until the client
/// hangs up.
async fn endless<W: tokio::io::AsyncWrite + Unpin>(w: &mut FrameWriter<W>) -> fts::Result<()> {
    let long = "x".repeat(4000);
    let mut n = 0u64;
    loop {
        let entries = (0..12)
            .map(|_| {
                n += 1;
                file(&format!("top/{n:010}{long}"), 1)
            })
            .collect();
        w.msg(&Msg::ListBatch { entries }).await?;
    }
}

// ---------------------------------------------------------------------------
// Entries and replies

fn entry(path: &str, kind: EntryKind, size: u64) -> Entry {
    Entry {
        path: path.into(),
        kind,
        size,
        mtime: 1_600_000_000,
        mtime_ns: 0,
        mode: if kind == EntryKind::Dir { 0o755 } else { 0o644 },
        target: None,
        hash: None,
    }
}

fn file(path: &str, size: u64) -> Entry {
    entry(path, EntryKind::File, size)
}

fn dir(path: &str) -> Entry {
    entry(path, EntryKind::Dir, 0)
}

fn link(path: &str, target: &str) -> Entry {
    Entry {
        target: Some(target.into()),
        ..entry(path, EntryKind::Symlink, 0)
    }
}

fn meta(size: u64) -> Meta {
    Meta {
        size,
        mtime: 1_600_000_000,
        mtime_ns: 0,
        mode: 0o644,
    }
}

fn b3(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

fn header(id: u64, size: u64) -> Reply {
    Reply::Msg(Msg::FileHeader {
        id,
        meta: meta(size),
        offset: 0,
        delta: false,
    })
}

fn delta_header(id: u64, size: u64) -> Reply {
    Reply::Msg(Msg::FileHeader {
        id,
        meta: meta(size),
        offset: 0,
        delta: true,
    })
}

fn data(bytes: &[u8]) -> Vec<Reply> {
    bytes
        .chunks(CHUNK)
        .map(|c| Reply::Chunk(Chunk::raw(c.to_vec())))
        .collect()
}

fn end(id: u64, hash: String) -> Reply {
    Reply::Msg(Msg::FileEnd {
        id,
        hash,
        literal: 0,
        matched: 0,
    })
}

/// A truthful answer: the whole of `content`.
fn honest(id: u64, content: &[u8]) -> Vec<Reply> {
    let mut v = vec![header(id, content.len() as u64)];
    v.extend(data(content));
    v.push(end(id, b3(content)));
    v
}

/// A delta piece announcing `out_len` bytes, made of COPY commands
/// (offset, length) and literals.
fn piece(out_len: u64, copies: &[(u64, u64)], literal: &[u8]) -> Reply {
    let mut d = 0x7273_0236u32.to_be_bytes().to_vec();
    for &(off, len) in copies {
        d.push(0x45 + 3 * 4 + 3); // COPY, 8-byte offset, 8-byte length
        d.extend_from_slice(&off.to_be_bytes());
        d.extend_from_slice(&len.to_be_bytes());
    }
    if !literal.is_empty() {
        d.push(0x41 + 3); // LITERAL, 8-byte length
        d.extend_from_slice(&(literal.len() as u64).to_be_bytes());
        d.extend_from_slice(literal);
    }
    d.push(0);
    Reply::Chunk(Chunk {
        out_len,
        body: Body::Piece(d),
    })
}

// ---------------------------------------------------------------------------
// The scene: DEST, something outside it, a snapshot of everything but DEST

struct Env {
    tmp: tempfile::TempDir,
    client: Client,
    server: FakeServer,
}

impl Env {
    fn new(script: Script) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("dest")).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(outside.join("sub")).unwrap();
        std::fs::write(outside.join("canary"), b"outside: do not touch").unwrap();
        std::fs::write(outside.join("secret"), b"a secret next to DEST").unwrap();
        Env {
            tmp,
            client: Client::new(),
            server: FakeServer::start(script),
        }
    }

    fn dest(&self) -> PathBuf {
        self.tmp.path().join("dest")
    }

    fn outside(&self) -> PathBuf {
        self.tmp.path().join("outside")
    }

    fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// `fts --json --fingerprint FP ARGS...` (the pin is explicit, so the
    /// client's HOME gets nothing either).
    fn run(&self, args: &[&str]) -> Out {
        let mut all = vec!["--json", "--fingerprint", &self.server.fingerprint];
        all.extend_from_slice(args);
        self.client.run(&all)
    }

    /// Everything below the scratch directory except DEST: path → kind,
    /// mode, mtime, size and content hash or link target.
    fn outside_snapshot(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let dest = self.dest();
        fn walk(p: &Path, base: &Path, dest: &Path, out: &mut BTreeMap<String, String>) {
            let md = std::fs::symlink_metadata(p).unwrap();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let stamp = format!("{:o} {}.{}", md.mode(), md.mtime(), md.mtime_nsec());
            let ft = md.file_type();
            let what = if ft.is_symlink() {
                format!("link -> {}", std::fs::read_link(p).unwrap().display())
            } else if ft.is_dir() {
                format!("dir {stamp}")
            } else {
                format!("file {stamp} {} {}", md.len(), hash(p))
            };
            out.insert(rel, what);
            if ft.is_dir() {
                for e in std::fs::read_dir(p).unwrap() {
                    let c = e.unwrap().path();
                    if c != dest {
                        walk(&c, base, dest, out);
                    }
                }
            }
        }
        walk(self.tmp.path(), self.tmp.path(), &dest, &mut out);
        out
    }

    /// Runs `args`, expects exit `code` with an error message containing
    /// `needle`, and nothing changed outside DEST.
    #[track_caller]
    fn refused(&self, args: &[&str], code: i32, needle: &str) -> Out {
        let before = self.outside_snapshot();
        let out = self.run(args);
        assert_unchanged(&before, &self.outside_snapshot(), &args);
        assert_eq!(
            out.code, code,
            "{args:?}: exit {} (want {code})\nstdout: {}\nstderr: {}",
            out.code, out.stdout, out.stderr
        );
        let msg = out.err_message();
        eprintln!("refused, exit {}: {msg}", out.code);
        assert!(
            msg.contains(needle),
            "{args:?}: message {msg:?} does not say {needle:?}\nstdout: {}",
            out.stdout
        );
        out
    }

    /// Paths below DEST (relative, sorted; directories end in `/`), temp
    /// files included, symlinks not followed.
    fn dest_tree(&self) -> Vec<String> {
        fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
            let mut items: Vec<_> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            items.sort();
            for p in items {
                let rel = p.strip_prefix(base).unwrap().display().to_string();
                if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                    out.push(format!("{rel}/"));
                    walk(base, &p, out);
                } else {
                    out.push(rel);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dest(), &self.dest(), &mut out);
        out
    }
}

/// Fails with the differences when a snapshot outside DEST changed.
#[track_caller]
fn assert_unchanged(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    what: &dyn std::fmt::Debug,
) {
    let mut diff = Vec::new();
    for (k, v) in after {
        match before.get(k) {
            None => diff.push(format!("+ {k}: {v}")),
            Some(b) if b != v => diff.push(format!("~ {k}: {b} => {v}")),
            _ => {}
        }
    }
    for k in before.keys().filter(|k| !after.contains_key(*k)) {
        diff.push(format!("- {k}"));
    }
    assert!(
        diff.is_empty(),
        "{what:?} changed things outside DEST:\n{}",
        diff.join("\n")
    );
}

/// A command against the fake server: `get -r`, a `sync` pull, or `ls -r`,
/// of the remote path `top`.
#[derive(Debug, Clone, Copy)]
enum Cmd {
    GetR,
    SyncPull,
    LsR,
}

impl Cmd {
    fn args(self, env: &Env, top: &str) -> Vec<String> {
        let url = env.url(top);
        let dest = env.dest();
        match self {
            Cmd::GetR => vec!["get".into(), "-r".into(), url, path_str(&dest)],
            Cmd::SyncPull => vec!["sync".into(), url, path_str(&dest)],
            Cmd::LsR => vec!["ls".into(), "-r".into(), url],
        }
    }
}

fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

// ---------------------------------------------------------------------------
// Cases 1-5: listings that lie about names and structure

/// Listings no fts server sends, refused by `get -r`, a `sync` pull and
/// `ls -r` alike, before any file is written (DEST stays empty, but for
/// the directories a sync made above the lie).
#[test]
fn lying_listings_are_refused_before_anything_is_written() {
    let outside_abs = format!("{}/evil", "/tmp/fts-hostile-outside");
    let cases: Vec<(&str, &str, Vec<Entry>, &str)> = vec![
        // 1. `..` components
        (
            "dotdot",
            "top",
            vec![dir("top/a"), file("top/../evil", 5)],
            "unsafe path",
        ),
        (
            "dotdot deep",
            "top",
            vec![dir("top/a"), file("top/a/../../evil", 5)],
            "unsafe path",
        ),
        ("dotdot alone", "", vec![dir("..")], "unsafe path"),
        // 2. absolute paths
        ("absolute", "", vec![file(&outside_abs, 5)], "unsafe path"),
        (
            "absolute below the top",
            "top",
            vec![file("top//etc/evil", 5)],
            "unsafe path",
        ),
        // 3. NUL and empty components inside names
        ("NUL", "top", vec![file("top/a\0b", 5)], "unsafe path"),
        (
            "NUL in a directory",
            "top",
            vec![dir("top/d\0"), file("top/d\0/f", 5)],
            "unsafe path",
        ),
        (
            "empty component",
            "top",
            vec![dir("top/a"), file("top/a//b", 5)],
            "unsafe path",
        ),
        (
            "dot component",
            "top",
            vec![file("top/./c", 5)],
            "unsafe path",
        ),
        ("trailing slash", "top", vec![dir("top/a/")], "unsafe path"),
        (
            "fts temp name",
            "top",
            vec![file("top/.x.fts-part.json", 5)],
            "unsafe path",
        ),
        (
            "outside the listed directory",
            "top",
            vec![file("other/evil", 5)],
            "unsafe path",
        ),
        (
            "the directory itself",
            "top",
            vec![file("top", 5)],
            "unsafe path",
        ),
        // 4. a file "through" a symlink the listing just made
        (
            "file through a symlink out",
            "top",
            vec![link("top/link", "/tmp"), file("top/link/evil", 5)],
            "which it listed as a symlink",
        ),
        (
            "file through a 'safe' link chain",
            "top",
            vec![
                dir("top/a"),
                link("top/a/b", ".."),
                link("top/c", "a/b/.."),
                file("top/c/evil", 5),
            ],
            "which it listed as a symlink",
        ),
        // 5. entries that change type
        (
            "file with a child",
            "top",
            vec![file("top/x", 5), file("top/x/y", 5)],
            "which it listed as a file",
        ),
        (
            "listed twice, dir then file",
            "top",
            vec![dir("top/x"), file("top/x", 5)],
            "twice",
        ),
        (
            "listed twice, file then dir",
            "top",
            vec![file("top/x", 5), dir("top/x"), file("top/x/y", 5)],
            "twice",
        ),
        (
            "file in a directory never listed",
            "top",
            vec![file("top/nodir/f", 5)],
            "not its directory",
        ),
    ];
    for (name, top, entries, needle) in cases {
        let env = Env::new(Script::new(Listing::Entries(entries)));
        for cmd in [Cmd::GetR, Cmd::LsR, Cmd::SyncPull] {
            let args = cmd.args(&env, top);
            let out = env.refused(&strs(&args), 1, needle);
            assert_eq!(out.err_json()["error"]["kind"], "other", "{name} / {cmd:?}");
            // A sync reads the tree a directory at a time (as rsync's
            // incremental recursion does), so it may already have made the
            // directories of an honest part above the lie; never a file.
            let written = env.dest_tree();
            let ok = match cmd {
                Cmd::SyncPull => written.iter().all(|p| p.ends_with('/')),
                _ => written.is_empty(),
            };
            assert!(ok, "{name} / {cmd:?} wrote into DEST: {written:?}");
        }
    }
}

/// `Stat` is how `get` names what it writes (`get -r HOST:top DEST`
/// writes DEST/top): an answer about another path than the one asked, or
/// a name like `..`, would aim the whole transfer elsewhere.
#[test]
fn stat_answers_about_another_path_are_refused() {
    for (name, answer) in [
        ("dotdot", dir("..")),
        ("dotdot below", dir("top/..")),
        ("root instead", dir("")),
        ("absolute", dir("/tmp")),
        ("another name", dir("elsewhere")),
        ("NUL", dir("to\0p")),
    ] {
        let script = Script::new(Listing::Entries(vec![file(
            &format!("{}/evil", answer.path),
            5,
        )]))
        .stat("top", Some(answer));
        let env = Env::new(script);
        for cmd in [Cmd::GetR, Cmd::LsR, Cmd::SyncPull] {
            let args = cmd.args(&env, "top");
            env.refused(&strs(&args), 1, "the server answered for");
            assert!(env.dest_tree().is_empty(), "{name} / {cmd:?}");
        }
        // A single file, too.
        let out = path_str(&env.dest());
        env.refused(
            &["get", &env.url("top"), &out],
            1,
            "the server answered for",
        );
        assert!(env.dest_tree().is_empty(), "{name} / get");
    }
}

// ---------------------------------------------------------------------------
// Case 4: symlinks, the server's and DEST's own

/// A sync pull mirrors symlinks, but only ones that stay inside: absolute
/// targets, targets that climb above the tree, and targets that climb
/// after descending (`a/b/..`, which leaves the tree when `a/b` is itself
/// a link to `..`: the --safe-links bypass of CVE-2024-12088) are refused,
/// one by one (exit 5), and the rest of the tree still lands.
#[test]
fn sync_refuses_symlinks_that_could_lead_out() {
    let env = Env::new(Script::new(Listing::Entries(vec![
        dir("top/a"),
        link("top/a/b", ".."),
        link("top/abs", "/tmp"),
        link("top/up", "../outside"),
        link("top/c", "a/b/.."),
        link("top/ok", "a/b"),
        file("top/f", 5),
    ])));
    let mirror = env.dest();
    let out = env.refused(&["sync", &env.url("top"), &path_str(&mirror)], 9, "failed");
    let errors = out.json()["errors"].clone();
    let failed: Vec<&str> = errors
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["abs", "c", "up"], "{errors}");
    for e in errors.as_array().unwrap() {
        assert!(
            e["message"].as_str().unwrap().contains("leads outside"),
            "{e}"
        );
        assert_eq!(e["kind"], "permission");
    }
    assert_eq!(
        std::fs::read_link(mirror.join("a/b")).unwrap(),
        Path::new("..")
    );
    assert_eq!(
        std::fs::read_link(mirror.join("ok")).unwrap(),
        Path::new("a/b")
    );
    assert!(std::fs::symlink_metadata(mirror.join("c")).is_err());
    assert_eq!(std::fs::read(mirror.join("f")).unwrap(), b"top/f");
}

/// The links fts made in one sync are never followed by the next: a
/// listing that puts a file below one of them is refused as a whole.
#[test]
fn sync_never_writes_through_a_symlink_it_made() {
    let mut listing = vec![dir("top/a"), link("top/a/b", "..")];
    let env = Env::new(Script::new(Listing::Entries(listing.clone())));
    let mirror = env.dest();
    let m = path_str(&mirror);
    env.run(&["sync", &env.url("top"), &m]).ok();
    assert_eq!(
        std::fs::read_link(mirror.join("a/b")).unwrap(),
        Path::new("..")
    );
    // Now the same tree, with files below the link.
    listing.push(file("top/a/b/evil", 5));
    listing.push(file("top/a/b/a/b/evil2", 5));
    let env2 = Env {
        server: FakeServer::start(Script::new(Listing::Entries(listing))),
        ..env
    };
    env2.refused(
        &["sync", &env2.url("top"), &m],
        1,
        "which it listed as a symlink",
    );
    assert_eq!(env2.dest_tree(), ["a/", "a/b"]);
}

/// DEST's own symlinks (rsync CVE-2024-12088 style: a symlink already in
/// DEST where the server's tree has a directory). `get -r` refuses to
/// write through it (like `cp -r`: "cannot overwrite non-directory"), per
/// path, and copies the rest; a sync pull mirrors, so the link is replaced
/// by a real directory, never written through; a file's own place being a
/// symlink is replaced by the file (rename), never written through either.
#[test]
fn symlinks_already_in_dest_are_never_written_through() {
    let listing = vec![
        dir("top/link"),
        file("top/link/evil", 5),
        dir("top/link/deeper"),
        file("top/ok", 5),
        file("top/flink", 5),
    ];
    let plant = |env: &Env, base: &Path| {
        std::fs::create_dir_all(base).unwrap();
        std::os::unix::fs::symlink(env.outside(), base.join("link")).unwrap();
        std::os::unix::fs::symlink(env.outside().join("canary"), base.join("flink")).unwrap();
    };

    // get -r HOST:top DEST writes DEST/top/...
    let env = Env::new(Script::new(Listing::Entries(listing.clone())));
    let top = env.dest().join("top");
    plant(&env, &top);
    let out = env.refused(
        &["get", "-r", &env.url("top"), &path_str(&env.dest())],
        9,
        "failed",
    );
    let j = out.json();
    assert_eq!(j["files_transferred"], 2, "{j}");
    let errors = j["errors"].as_array().unwrap();
    assert!(!errors.is_empty());
    for e in errors {
        assert!(e["path"].as_str().unwrap().starts_with("top/link"), "{e}");
        assert!(
            e["message"].as_str().unwrap().contains("is a symlink"),
            "{e}"
        );
        assert_eq!(e["kind"], "permission");
    }
    assert_eq!(std::fs::read(top.join("ok")).unwrap(), b"top/ok");
    // The file's own place: the link was replaced, the canary is intact.
    assert!(std::fs::symlink_metadata(top.join("flink"))
        .unwrap()
        .is_file());
    assert_eq!(std::fs::read(top.join("flink")).unwrap(), b"top/flink");
    assert!(std::fs::symlink_metadata(top.join("link"))
        .unwrap()
        .is_symlink());

    // sync HOST:top DEST: the mirror replaces the link with a directory.
    let env = Env::new(Script::new(Listing::Entries(listing)));
    let dest = env.dest();
    plant(&env, &dest);
    let before = env.outside_snapshot();
    env.run(&["sync", &env.url("top"), &path_str(&dest)]).ok();
    assert_unchanged(&before, &env.outside_snapshot(), &"sync");
    assert!(std::fs::symlink_metadata(dest.join("link"))
        .unwrap()
        .is_dir());
    assert_eq!(
        std::fs::read(dest.join("link/evil")).unwrap(),
        b"top/link/evil"
    );
    assert!(dest.join("link/deeper").is_dir());
    assert_eq!(std::fs::read(dest.join("flink")).unwrap(), b"top/flink");
}

/// The same, when the server leaves the directory out of its listing and
/// names only the file below DEST's symlink: refused as a whole.
#[test]
fn a_file_below_dests_symlink_without_its_directory_is_refused() {
    let listing = vec![file("top/link/evil", 5)];
    let env = Env::new(Script::new(Listing::Entries(listing.clone())));
    std::os::unix::fs::symlink(env.outside(), env.dest().join("link")).unwrap();
    env.refused(
        &["sync", &env.url("top"), &path_str(&env.dest())],
        1,
        "not its directory",
    );
    let env = Env::new(Script::new(Listing::Entries(listing)));
    let top = env.dest().join("top");
    std::fs::create_dir_all(&top).unwrap();
    std::os::unix::fs::symlink(env.outside(), top.join("link")).unwrap();
    env.refused(
        &["get", "-r", &env.url("top"), &path_str(&env.dest())],
        1,
        "not its directory",
    );
}

// ---------------------------------------------------------------------------
// Case 5: a local directory replaced

/// A sync pull makes DEST a mirror: a local directory where the server has
/// a file is replaced by the file. The removal stays inside DEST: it does
/// not follow a symlink inside the directory.
#[test]
fn sync_replacing_a_local_directory_stays_inside_dest() {
    let env = Env::new(Script::new(Listing::Entries(vec![file("top/x", 5)])));
    let mirror = env.dest();
    std::fs::create_dir_all(mirror.join("x/deep")).unwrap();
    std::fs::write(mirror.join("x/deep/inner"), b"inner").unwrap();
    std::os::unix::fs::symlink(env.outside(), mirror.join("x/out")).unwrap();
    std::os::unix::fs::symlink(env.outside(), mirror.join("x/deep/out")).unwrap();
    let before = env.outside_snapshot();
    env.run(&["sync", &env.url("top"), &path_str(&mirror)]).ok();
    assert_unchanged(&before, &env.outside_snapshot(), &"sync");
    assert_eq!(std::fs::read(mirror.join("x")).unwrap(), b"top/x");
}

// ---------------------------------------------------------------------------
// Case 6: more data than announced

#[test]
fn a_file_longer_than_announced_is_refused() {
    // Big enough for a resumable partial file, and not a whole number of
    // chunks, so the chunk that overflows straddles the announced end.
    let big = (2u64 << 20) + 100;
    for (name, size, reply, needle) in [
        (
            "one chunk too long",
            10u64,
            {
                let mut v = vec![header(1, 10)];
                v.extend(data(&[7u8; 20]));
                v.push(end(1, b3(&[7u8; 20])));
                v
            },
            "more data than announced",
        ),
        (
            "a chunk after the last",
            10,
            {
                let mut v = vec![header(1, 10)];
                v.extend(data(&[7u8; 10]));
                v.extend(data(&[7u8; 10]));
                v.push(end(1, b3(&[7u8; 20])));
                v
            },
            "unexpected data frame",
        ),
        (
            "a big file, a megabyte more",
            big,
            {
                let body = vec![9u8; (big + (1 << 20)) as usize];
                let mut v = vec![header(1, big)];
                v.extend(data(&body));
                v.push(end(1, b3(&body)));
                v
            },
            "more data than announced",
        ),
        (
            "less, then the end",
            10,
            {
                let mut v = vec![header(1, 10)];
                v.extend(data(&[7u8; 5]));
                v.push(end(1, b3(&[7u8; 5])));
                v
            },
            "ended before the 10 bytes announced",
        ),
    ] {
        let script = Script::new(Listing::Entries(vec![]))
            .stat("f", Some(file("f", size)))
            .get(move |_, id, _, _| {
                assert_eq!(id, 1);
                reply.clone()
            });
        let env = Env::new(script);
        let target = env.dest().join("f");
        env.refused(&["get", &env.url("f"), &path_str(&target)], 1, needle);
        assert!(!target.exists(), "{name}: the target was written");
        // Not even a partial file: bytes from a server that broke the
        // protocol are not kept for a resume.
        assert!(env.dest_tree().is_empty(), "{name}: {:?}", env.dest_tree());
    }
}

// ---------------------------------------------------------------------------
// Case 7: a listing that never ends

/// Peak resident memory (VmHWM, KiB) of a running process, 0 once gone.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn an_endless_listing_stops_with_a_clear_error_and_bounded_memory() {
    let env = Env::new(Script::new(Listing::Endless));
    let scratch = tempfile::tempdir().unwrap();
    for cmd in [Cmd::LsR, Cmd::GetR, Cmd::SyncPull] {
        let before = env.outside_snapshot();
        let mut args = vec![
            "--json".to_string(),
            "--fingerprint".into(),
            env.server.fingerprint.clone(),
        ];
        args.extend(cmd.args(&env, "top"));
        let (out_p, err_p) = (scratch.path().join("out"), scratch.path().join("err"));
        let mut c = env.client.cmd();
        c.args(&args)
            .stdout(std::fs::File::create(&out_p).unwrap())
            .stderr(std::fs::File::create(&err_p).unwrap());
        let start = Instant::now();
        let mut child = c.spawn().unwrap();
        let pid = child.id();
        let mut peak = 0;
        let code = loop {
            peak = peak.max(peak_rss_kib(pid));
            if let Some(st) = child.try_wait().unwrap() {
                break st.code().unwrap_or(-1);
            }
            if start.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{cmd:?}: still reading the listing after 2 minutes");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = Out {
            code,
            stdout: std::fs::read_to_string(&out_p).unwrap(),
            stderr: std::fs::read_to_string(&err_p).unwrap(),
        };
        out.code(1);
        let msg = out.err_message();
        assert!(msg.contains("listing is larger than"), "{cmd:?}: {msg}");
        // The bound is 512 MiB of entries; allow for the allocator.
        assert!(peak < 1536 * 1024, "{cmd:?}: peak RSS {} MiB", peak / 1024);
        eprintln!(
            "{cmd:?}: refused after {:.1} s, peak RSS {} MiB: {msg}",
            start.elapsed().as_secs_f64(),
            peak / 1024
        );
        assert_unchanged(&before, &env.outside_snapshot(), &cmd);
        assert!(env.dest_tree().is_empty(), "{:?}", env.dest_tree());
    }
}

// ---------------------------------------------------------------------------
// Case 8: deltas that copy from outside their base or say more than announced

/// The local copy a delta applies to: 1.5 MiB, so the client asks for a
/// delta (files of 1 MiB and more) and sends its signature.
const BASE: u64 = 3 << 19;

#[test]
fn hostile_deltas_are_refused_and_the_old_copy_stays() {
    let size = 2u64 << 20;
    for (name, reply, needle) in [
        (
            "copy past the end of the base",
            vec![
                delta_header(1, size),
                piece(size, &[(BASE - 100, size)], b""),
                end(1, "00".repeat(32)),
            ],
            "copy out of range",
        ),
        (
            "copy at an offset far past the base",
            vec![
                delta_header(1, 100),
                piece(100, &[(1 << 40, 100)], b""),
                end(1, "00".repeat(32)),
            ],
            "copy out of range",
        ),
        (
            "pieces announcing more than the file",
            vec![
                delta_header(1, 1000),
                piece(2000, &[(0, 2000)], b""),
                end(1, "00".repeat(32)),
            ],
            "more data than announced",
        ),
        (
            "a piece producing more than it announces",
            vec![
                delta_header(1, 100),
                piece(100, &[(0, 100)], &[1u8; 200]),
                end(1, "00".repeat(32)),
            ],
            "runs past the announced output",
        ),
    ] {
        let signed = Arc::new(AtomicBool::new(false));
        let s2 = signed.clone();
        let script = Script::new(Listing::Entries(vec![]))
            .stat("f", Some(file("f", size)))
            .get(move |_, _, sig, _| {
                s2.store(sig.is_some(), Ordering::SeqCst);
                reply.clone()
            });
        let env = Env::new(script);
        let target = env.dest().join("f");
        random_file(&target, BASE as usize, 5);
        let old = hash(&target);
        env.refused(&["get", &env.url("f"), &path_str(&target)], 1, needle);
        assert!(signed.load(Ordering::SeqCst), "{name}: no signature sent");
        assert_eq!(hash(&target), old, "{name}: the old copy changed");
        assert_eq!(env.dest_tree(), ["f"], "{name}");
    }
}

/// A delta the client did not ask for (it sent no signature): the server
/// would be choosing the client's base file, for example whatever a
/// symlink at the target points to, and learn from the client's retry
/// whether its guess of that file's contents was right.
#[test]
fn a_delta_without_a_signature_is_refused() {
    // What Env puts in outside/secret, guessed right.
    let guess = b"a secret next to DEST".to_vec();
    let n = guess.len() as u64;
    let script = Script::new(Listing::Entries(vec![]))
        .stat("f", Some(file("f", n)))
        .get(move |_, id, sig, _| {
            assert!(sig.is_none(), "the client sent a signature");
            vec![
                delta_header(id, n),
                piece(n, &[(0, n)], b""),
                end(id, b3(&guess)),
            ]
        });
    let env = Env::new(script);
    let target = env.dest().join("f");
    std::os::unix::fs::symlink(env.outside().join("secret"), &target).unwrap();
    env.refused(
        &["get", &env.url("f"), &path_str(&target)],
        1,
        "no signature was sent",
    );
    assert!(std::fs::symlink_metadata(&target).unwrap().is_symlink());
}

/// "Data moved, send an rsync signature" (`Redo`) in answer to a download
/// that sent no signature: only a block signature can be answered so.
#[test]
fn a_redo_for_an_unsigned_download_is_refused() {
    let script = Script::new(Listing::Entries(vec![]))
        .stat("f", Some(file("f", 10)))
        .get(move |_, id, sig, _| {
            assert!(sig.is_none(), "the client sent a signature");
            vec![Reply::Msg(Msg::Redo {
                id,
                reason: "data moved".into(),
            })]
        });
    let env = Env::new(script);
    let target = env.dest().join("f");
    env.refused(
        &["get", &env.url("f"), &path_str(&target)],
        1,
        "unexpected reply",
    );
    assert!(!target.exists());
}

/// A server that answers every signed download with "data moved": the
/// client asks once more with an rsync signature, then gives the file up
/// (no endless rounds) and leaves its copy as it was.
#[test]
fn endless_redo_answers_end_after_the_rsync_signature() {
    let size = 2u64 << 20;
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let script = Script::new(Listing::Entries(vec![]))
        .stat("f", Some(file("f", size)))
        .get(move |_, id, sig, _| {
            assert!(sig.is_some(), "no signature sent");
            c2.fetch_add(1, Ordering::SeqCst);
            vec![Reply::Msg(Msg::Redo {
                id,
                reason: "data moved".into(),
            })]
        });
    let env = Env::new(script);
    let target = env.dest().join("f");
    let mine = vec![5u8; size as usize];
    std::fs::write(&target, &mine).unwrap();
    let out = env.run(&["get", &env.url("f"), &path_str(&target)]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.err_message().contains("data moved"), "{}", out.stderr);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "block, then rsync signature"
    );
    assert_eq!(std::fs::read(&target).unwrap(), mine);
}

/// A resumed download whose header puts the resume point past the end of
/// the file (the client would compute a negative length).
#[test]
fn a_resume_past_the_end_is_refused() {
    let size = 3u64 << 20;
    let body = vec![3u8; size as usize];
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let script = Script::new(Listing::Entries(vec![]))
        .stat("f", Some(file("f", size)))
        .get(move |_, id, _, resume| {
            match c2.fetch_add(1, Ordering::SeqCst) {
                // First: half the file, then the connection drops.
                0 => {
                    let mut v = vec![header(id, size)];
                    v.extend(data(&body[..(size / 2) as usize]));
                    v.push(Reply::Hangup);
                    v
                }
                // Then: "resume" at the client's offset, of a file shorter than that.
                _ => {
                    let r = resume.expect("the client asks to resume");
                    vec![Reply::Msg(Msg::FileHeader {
                        id,
                        meta: meta(r.offset - 1),
                        offset: r.offset,
                        delta: false,
                    })]
                }
            }
        });
    let env = Env::new(script);
    let target = env.dest().join("f");
    let t = path_str(&target);
    env.refused(&["get", &env.url("f"), &t], 6, "");
    env.refused(&["get", &env.url("f"), &t], 1, "past its end");
    assert!(!target.exists());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------
// Case 9: forged hashes

#[test]
fn a_forged_hash_is_an_integrity_failure() {
    let content = b"the real bytes".to_vec();
    let c2 = content.clone();
    let script = Script::new(Listing::Entries(vec![dir("top/d"), file("top/d/f", 14)]))
        .stat("f", Some(file("f", 14)))
        .get(move |_, id, _, _| {
            let mut v = vec![header(id, c2.len() as u64)];
            v.extend(data(&c2));
            v.push(end(id, b3(b"other bytes")));
            v
        });
    let env = Env::new(script);
    let target = env.dest().join("f");
    std::fs::write(&target, b"old").unwrap();
    env.refused(
        &["get", &env.url("f"), &path_str(&target)],
        8,
        "integrity check failed",
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"old");
    let args = Cmd::GetR.args(&env, "top");
    env.refused(&strs(&args), 8, "integrity check failed");
    let args = Cmd::SyncPull.args(&env, "top");
    env.refused(&strs(&args), 8, "integrity check failed");
    assert!(!env.dest().join("top/d/f").exists());
    assert!(!env.dest().join("d/f").exists());
    assert_no_temp_files(&env.dest());
}

/// A forged hash after a delta: the client fetches the whole file again
/// (a delta that does not verify may be fast_rsync's MD4), and when that
/// does not verify either, it is an integrity failure.
#[test]
fn a_forged_hash_after_a_delta_is_retried_whole_then_refused() {
    let size = 2u64 << 20;
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let script = Script::new(Listing::Entries(vec![]))
        .stat("f", Some(file("f", size)))
        .get(move |_, id, sig, _| {
            let n = c2.fetch_add(1, Ordering::SeqCst);
            if n == 0 {
                assert!(sig.is_some());
                vec![
                    delta_header(id, size),
                    piece(size, &[(0, BASE)], &vec![1u8; (size - BASE) as usize]),
                    end(id, "ab".repeat(32)),
                ]
            } else {
                assert!(sig.is_none(), "the retry is a whole-file get");
                let body = vec![2u8; size as usize];
                let mut v = vec![header(id, size)];
                v.extend(data(&body));
                v.push(end(id, "cd".repeat(32)));
                v
            }
        });
    let env = Env::new(script);
    let target = env.dest().join("f");
    random_file(&target, BASE as usize, 8);
    let old = hash(&target);
    let out = env.refused(
        &["get", &env.url("f"), &path_str(&target)],
        8,
        "integrity check failed",
    );
    assert_eq!(out.json()["files_redone"], 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(hash(&target), old);
}

// ---------------------------------------------------------------------------
// And the fake server itself tells the truth when asked to.

#[test]
fn the_fake_server_serves_an_honest_tree() {
    let env = Env::new(Script::new(Listing::Entries(vec![
        dir("top/a"),
        file("top/a/f", 7),
        link("top/l", "a/f"),
        file("top/g", 5),
    ])));
    let out = env.run(&["ls", "-r", &env.url("top")]);
    out.ok();
    assert_eq!(out.json().as_array().unwrap().len(), 4);
    env.run(&["get", "-r", &env.url("top"), &path_str(&env.dest())])
        .ok();
    assert_eq!(
        std::fs::read(env.dest().join("top/a/f")).unwrap(),
        b"top/a/f"
    );
    let mirror = env.dest().join("mirror");
    std::fs::create_dir_all(&mirror).unwrap();
    env.run(&["sync", &env.url("top"), &path_str(&mirror)]).ok();
    assert_eq!(std::fs::read(mirror.join("g")).unwrap(), b"top/g");
    assert_eq!(
        std::fs::read_link(mirror.join("l")).unwrap(),
        Path::new("a/f")
    );
}
