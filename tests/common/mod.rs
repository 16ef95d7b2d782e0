//! Test fixture: a real `fts serve` on 127.0.0.1:0 in a temp dir, driven
//! through the real binary with an isolated HOME. The server is killed
//! when the fixture is dropped.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_fts");

/// A command with a clean, isolated environment and no stdin. Stored
/// passwords go to the file in HOME's config dir: the kernel keyring is
/// shared by every process of the user, so HOME would not isolate it
/// (tests of the keyring remove FTS_CREDENTIAL_STORE themselves).
pub fn fts_cmd(home: &Path) -> Command {
    let mut c = Command::new(BIN);
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
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
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
        let tmp = tempfile::tempdir().unwrap();
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
    let (cfg, _) = fts::tls::client_config(
        fts::tls::PinPolicy {
            explicit: Some(s.server.fingerprint.clone()),
            known: None,
        },
        alpn,
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(&s.server.addr)
        .await
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
    let (r, w) = tokio::io::split(raw_tls(s).await);
    let mut w = FrameWriter::new(w, Duration::from_secs(5));
    let mut r = FrameReader::new(r, Duration::from_secs(5));
    w.msg(&Msg::Hello {
        version,
        client: "raw".into(),
        name: None,
    })
    .await
    .unwrap();
    w.flush().await.unwrap();
    let first = r.read_msg().await.unwrap();
    ((r, w), first)
}

/// One HTTP/1.1 GET over TLS on the fts port: (status, headers, body).
pub fn https_get(s: &Setup, path: &str, basic: Option<&str>) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut t = tls_with_alpn(s, b"http/1.1").await;
        let auth = basic
            .map(|b| {
                use base64::Engine;
                format!(
                    "Authorization: Basic {}\r\n",
                    base64::engine::general_purpose::STANDARD.encode(b)
                )
            })
            .unwrap_or_default();
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n");
        t.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let _ = t.read_to_end(&mut raw).await;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, head.to_string(), body.to_string())
    })
}
