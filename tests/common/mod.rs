//! Test fixture: a real `fts serve` on 127.0.0.1:0 in a temp dir, driven
//! through the real binary with an isolated HOME. The server is killed
//! when the fixture is dropped.
#![allow(dead_code)]

pub mod garage;
pub mod wan;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_fts");
/// How long tests wait for something that should happen soon.
pub const WAIT: Duration = Duration::from_secs(20);

/// A command with a clean, isolated environment and no stdin. Stored
/// passwords go to the file in HOME's config dir: the kernel keyring is
/// shared by every process of the user, so HOME would not isolate it
/// (tests of the keyring remove FTS_CREDENTIAL_STORE themselves).
pub fn fts_cmd(home: &Path) -> Command {
    fts_cmd_via(home, &[])
}

/// [`fts_cmd`] run through `wrapper` (a program and its arguments, with
/// the fts binary and its arguments appended), e.g. `unshare` and a shell.
pub fn fts_cmd_via(home: &Path, wrapper: &[&str]) -> Command {
    let mut c = match wrapper.split_first() {
        Some((prog, args)) => {
            let mut c = Command::new(prog);
            c.args(args).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    for (k, _) in std::env::vars() {
        if k.starts_with("FTS_") || k.starts_with("XDG_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", home)
        .env("FTS_CREDENTIAL_STORE", "file")
        .stdin(Stdio::null());
    c
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}): {:?}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
    pub fn err_json(&self) -> Value {
        let line = self.stderr.lines().last().unwrap_or("");
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stderr is not JSON ({e}): {:?}", self.stderr))
    }
    #[track_caller]
    /// The message of a failed `--json` command's error object.
    pub fn err_message(&self) -> String {
        self.err_json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

pub fn run(mut c: Command) -> Out {
    let o = c.output().expect("run fts");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A client: its own HOME (known_hosts) and helpers to run commands.
pub struct Client {
    pub home: tempfile::TempDir,
}

impl Client {
    pub fn new() -> Client {
        Client {
            home: tempfile::tempdir().unwrap(),
        }
    }
    pub fn cmd(&self) -> Command {
        fts_cmd(self.home.path())
    }
    pub fn run(&self, args: &[&str]) -> Out {
        let mut c = self.cmd();
        c.args(args);
        run(c)
    }
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut c = self.cmd();
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        run(c)
    }
}

pub struct Server {
    child: Child,
    pub addr: String,
    pub port: u16,
    pub fingerprint: String,
    pub root: PathBuf,
    pub home: PathBuf,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `fts serve --json ROOT --listen 127.0.0.1:0 EXTRA...`.
    pub fn start(root: &Path, home: &Path, extra: &[&str]) -> Server {
        Self::start_on(root, home, "127.0.0.1:0", extra)
    }

    pub fn start_on(root: &Path, home: &Path, listen: &str, extra: &[&str]) -> Server {
        let mut c = fts_cmd(home);
        c.args(["--json", "serve"])
            .arg(root)
            .args(["--listen", listen])
            .args(extra);
        Self::spawn(c, root, home)
    }

    /// Starts the server `c` prepared (which prints the JSON log on stdout).
    pub fn spawn(mut c: Command, root: &Path, home: &Path) -> Server {
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn fts serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        if first.is_empty() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("server did not start: {err}");
        }
        let v: Value = serde_json::from_str(&first).expect("listening line is JSON");
        assert_eq!(v["event"], "listening");
        let addr = v["addr"].as_str().unwrap().to_string();
        let port = addr.rsplit(':').next().unwrap().parse().unwrap();
        let lines = Arc::new(Mutex::new(vec![first.trim().to_string()]));
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                l2.lock().unwrap().push(line);
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = stderr.read_to_end(&mut sink);
        });
        Server {
            child,
            addr,
            port,
            fingerprint: v["fingerprint"].as_str().unwrap().to_string(),
            root: root.to_path_buf(),
            home: home.to_path_buf(),
            lines,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("fts://127.0.0.1:{}/{}", self.port, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's JSON log events so far.
    pub fn events(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until an event satisfies `pred`.
    #[track_caller]
    pub fn wait_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = self.events().into_iter().find(|v| pred(v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no '{what}' event; log: {:#?}",
                self.events()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak resident memory (VmHWM) of the server, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap()
    }

    /// SIGTERM, then wait for exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Writes `size` pseudo-random (incompressible) bytes.
pub fn random_file(path: &Path, size: usize, seed: u64) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut buf = vec![0u8; 1 << 16];
    let mut left = size;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        let n = left.min(buf.len());
        f.write_all(&buf[..n]).unwrap();
        left -= n;
    }
    f.flush().unwrap();
}

/// Overwrites `bytes` at offset `at` of the file at `path`, in place.
pub fn poke(path: &Path, at: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(bytes).unwrap();
}

pub fn hash(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut h = blake3::Hasher::new();
    std::io::copy(&mut f, &mut h).unwrap();
    h.finalize().to_hex().to_string()
}

pub fn mtime(path: &Path) -> (i64, i64) {
    let m = std::fs::metadata(path).unwrap();
    (m.mtime(), m.mtime_nsec())
}

pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o777
}

pub fn set_mtime(path: &Path, secs: i64) {
    filetime::set_file_mtime(path, filetime::FileTime::from_unix_time(secs, 123_456_789)).unwrap();
}

/// Every regular file below `dir`, relative, with its hash.
pub fn tree(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<(String, String)>) {
        let mut items: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        items.sort();
        for p in items {
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                out.push((format!("{rel}/"), String::new()));
                walk(base, &p, out);
            } else {
                out.push((rel, hash(&p)));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// No fts temp files anywhere below `dir`.
#[track_caller]
pub fn assert_no_temp_files(dir: &Path) {
    for (rel, _) in tree(dir) {
        assert!(!rel.contains(".fts-tmp"), "temp file left behind: {rel}");
    }
}

/// A fresh server environment: root dir, server HOME, one client.
pub struct Setup {
    pub tmp: tempfile::TempDir,
    pub server: Server,
    pub client: Client,
}

impl Setup {
    pub fn new(extra: &[&str]) -> Setup {
        Self::new_in(&std::env::temp_dir(), extra)
    }

    /// [`Setup::new`] with its files below `base` (e.g. tmpfs, for a test
    /// of many files).
    pub fn new_in(base: &Path, extra: &[&str]) -> Setup {
        let tmp = tempfile::tempdir_in(base).unwrap();
        let root = tmp.path().join("root");
        let shome = tmp.path().join("server-home");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&shome).unwrap();
        let server = Server::start(&root, &shome, extra);
        Setup {
            tmp,
            server,
            client: Client::new(),
        }
    }
    pub fn root(&self) -> &Path {
        &self.server.root
    }
    /// A path in the client's local scratch area.
    pub fn local(&self, rel: &str) -> PathBuf {
        let p = self.tmp.path().join("local").join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        p
    }
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }
    pub fn run(&self, args: &[&str]) -> Out {
        self.client.run(args)
    }
}

/// Writes a secret into a file and returns its path.
pub fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{secret}\n")).unwrap();
    p
}

use fts::proto::{FrameReader, FrameWriter, Msg, ALPN_FTS};

pub type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS connection to the server, pinned to its fingerprint, for
/// speaking the protocol by hand.
pub async fn raw_tls(s: &Setup) -> Tls {
    tls_with_alpn(s, ALPN_FTS).await
}

/// A pinned TLS connection asking for protocol `alpn`.
pub async fn tls_with_alpn(s: &Setup, alpn: &[u8]) -> Tls {
    tls_from(s, alpn, tcp_from(s, None).await).await
}

/// A TCP connection to the server, from `local` (any 127.x.y.z address
/// works on Linux loopback) or the default address.
pub async fn tcp_from(s: &Setup, local: Option<&str>) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(ip) = local {
        sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    }
    sock.connect(s.server.addr.parse().unwrap()).await.unwrap()
}

/// A pinned TLS session asking for `alpn` over `tcp`.
pub async fn tls_from(s: &Setup, alpn: &[u8], tcp: tokio::net::TcpStream) -> Tls {
    let (cfg, _) = fts::tls::client_config(
        fts::tls::PinPolicy {
            explicit: Some(s.server.fingerprint.clone()),
            known: None,
        },
        alpn,
        None,
    )
    .unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(fts::tls::server_name("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap()
}

pub type Halves = (
    FrameReader<tokio::io::ReadHalf<Tls>>,
    FrameWriter<tokio::io::WriteHalf<Tls>>,
);

/// A raw protocol session that has said hello with `version`; returns the
/// server's first reply too.
pub async fn raw_session(s: &Setup, version: u32) -> (Halves, Msg) {
    hello_over(raw_tls(s).await, version).await
}

/// Says hello with `version` over `tls`; the halves and the first reply.
pub async fn hello_over(tls: Tls, version: u32) -> (Halves, Msg) {
    let (r, w) = tokio::io::split(tls);
    let mut w = FrameWriter::new(w, Duration::from_secs(5));
    let mut r = FrameReader::new(r, Duration::from_secs(5));
    w.msg(&Msg::Hello {
        version,
        client: "raw".into(),
        name: None,
        timeout_ms: None,
    })
    .await
    .unwrap();
    w.flush().await.unwrap();
    let first = r.read_msg().await.unwrap();
    ((r, w), first)
}

/// An HTTP response read off the wire.
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Resp {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.head, self.text()))
    }
}

/// Undoes chunked transfer encoding.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_hex = String::from_utf8_lossy(&raw[..eol]);
        let size =
            usize::from_str_radix(size_hex.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&raw[start..(start + size).min(raw.len())]);
        raw = &raw[(start + size + 2).min(raw.len())..];
    }
}

/// Parses a whole HTTP/1.1 response.
pub fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw.get(split + 4..).unwrap_or(&[]).to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut r = Resp { status, head, body };
    if r.header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        r.body = dechunk(&r.body);
    }
    r
}

/// Runs `f` to completion on a fresh single-threaded runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// One HTTP/1.1 request over TLS on the fts port (Connection: close).
pub fn https(s: &Setup, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    block_on(async {
        let mut t = tls_with_alpn(s, b"http/1.1").await;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n",
            s.server.port
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "PUT" || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        t.write_all(req.as_bytes()).await.unwrap();
        t.write_all(body).await.unwrap();
        t.flush().await.unwrap();
        let mut raw = Vec::new();
        let _ = t.read_to_end(&mut raw).await;
        parse_response(&raw)
    })
}

/// `Authorization: Basic` for `user:password`.
pub fn basic(user_pass: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

/// One HTTP/1.1 GET over TLS on the fts port: (status, headers, body).
pub fn https_get(s: &Setup, path: &str, basic_auth: Option<&str>) -> (u16, String, String) {
    let auth = basic_auth.map(basic);
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let r = https(s, "GET", path, &headers, b"");
    let body = r.text();
    (r.status, r.head, body)
}

/// A background fts command whose stderr lines are collected as they come.
pub struct Bg {
    pub child: Child,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    /// The threads collecting stdout and stderr, joined once it exited so
    /// that its last words are in.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Bg {
    pub fn start(s: &Setup, args: &[&str], env: &[(&str, &str)], stdin: bool) -> Bg {
        let mut c = s.client.cmd();
        c.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() });
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let mut readers = Vec::new();
        let mut collect = |mut r: Box<dyn Read + Send>| {
            let buf = Arc::new(Mutex::new(String::new()));
            let b2 = buf.clone();
            readers.push(std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = r.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    b2.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            }));
            buf
        };
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        Bg {
            child,
            stderr,
            stdout,
            readers,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    #[track_caller]
    pub fn wait_stdout(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let o = self.stdout();
            if pred(&o) {
                return o;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; stdout: {o}\nstderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the exit code, at most `limit`.
    #[track_caller]
    pub fn wait(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // The pipes are at EOF now that it is gone.
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return st.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "still running after {limit:?}; stderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `fts --name NAME put --bwlimit RATE FILE ROOT` in the background.
pub fn slow_put(s: &Setup, name: &str, rate: &str, file: &std::path::Path) -> Bg {
    let url = s.url("");
    let args = [
        "--name",
        name,
        "put",
        "--bwlimit",
        rate,
        file.to_str().unwrap(),
        &url,
    ];
    Bg::start(s, &args, &[], false)
}

/// Writes one summary JSON line to `target/hardening/NAME` (or under
/// `$CARGO_TARGET_DIR`), where `bench/hardening.sh` collects it.
pub fn write_hardening_report(name: &str, summary: &Value) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("hardening");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("{summary}\n")).unwrap();
    path
}

/// splitmix64: a seeded generator, so a failing randomized run can be
/// replayed with its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A numeric setting from the environment, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// Waits for `child` at most `limit`, polling with a short backoff (a few
/// hundred threads each blocked in a timed wait would need a helper thread
/// apiece); kills it and returns `None` past that.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st.code().unwrap_or(-1));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Runs one fts command for at most `limit` (exit -2 past that), with its
/// output in files under `scratch` (no reader threads needed).
pub fn run_bounded<S: AsRef<std::ffi::OsStr>>(
    c: &Client,
    args: &[S],
    scratch: &Path,
    limit: Duration,
) -> Out {
    let out_p = scratch.join("cmd.out");
    let err_p = scratch.join("cmd.err");
    let mut cmd = c.cmd();
    cmd.args(args)
        .stdout(std::fs::File::create(&out_p).unwrap())
        .stderr(std::fs::File::create(&err_p).unwrap());
    let mut child = cmd.spawn().expect("spawn fts");
    let code = wait_bounded(&mut child, limit).unwrap_or(-2);
    Out {
        code,
        stdout: std::fs::read_to_string(&out_p).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_p).unwrap_or_default(),
    }
}
