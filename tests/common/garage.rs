//! A real S3 engine for the tests: one single-node Garage per test
//! process, on loopback ports in a temp dir, with one bucket and one key.
//! Each test takes a prefix of its own in that bucket. The `garage` binary
//! comes from `cargo install --locked garage` (tests/run.sh installs it
//! when missing); without it the S3 tests skip, saying so, except under
//! `CI=true`, where they fail.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Garage {
    pub endpoint: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
    pub region: String,
    _dir: PathBuf,
}

fn binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("FTS_TEST_GARAGE") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cargo_bin = PathBuf::from(home).join(".cargo/bin/garage");
    if cargo_bin.is_file() {
        return Some(cargo_bin);
    }
    std::env::var("PATH").ok().and_then(|path| {
        path.split(':')
            .map(|d| Path::new(d).join("garage"))
            .find(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn garage(bin: &Path, config: &Path, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(bin)
            .arg("-c")
            .arg(config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run garage");
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        // The first commands race the server's start.
        if Instant::now() > deadline {
            panic!(
                "garage {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start(bin: PathBuf) -> Garage {
    let dir = tempfile::Builder::new()
        .prefix("fts-garage-")
        .tempdir()
        .unwrap()
        .keep();
    let (rpc, s3, admin) = (free_port(), free_port(), free_port());
    let config = dir.join("garage.toml");
    let secret: String = (0..32)
        .map(|i| format!("{:02x}", (i * 37 + std::process::id() as usize) % 256))
        .collect();
    // LMDB, Garage's default: with SQLite, concurrent multipart uploads
    // under the whole suite's load once stalled a part PUT for 30 s
    // ("database is locked" in Garage's log; tests/scale_out.rs failed).
    std::fs::write(
        &config,
        format!(
            "metadata_dir = \"{d}/meta\"\n\
             data_dir = \"{d}/data\"\n\
             db_engine = \"lmdb\"\n\
             replication_factor = 1\n\
             rpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_secret = \"{secret}\"\n\
             [s3_api]\n\
             s3_region = \"garage\"\n\
             api_bind_addr = \"127.0.0.1:{s3}\"\n\
             root_domain = \".s3.garage.localhost\"\n\
             [admin]\n\
             api_bind_addr = \"127.0.0.1:{admin}\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    // The server runs from a thread that never ends, so that the parent-
    // death signal (sent when the spawning thread ends) comes only when
    // the test process exits: no Garage outlives its tests.
    let (bin2, config2, log) = (bin.clone(), config.clone(), dir.join("garage.log"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(log).unwrap();
        let mut c = Command::new(bin2);
        c.arg("-c")
            .arg(&config2)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        unsafe {
            c.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = c.spawn().expect("start garage server");
        tx.send(child.id()).unwrap();
        let _child = child;
        loop {
            std::thread::park();
        }
    });
    rx.recv().unwrap();
    let id = garage(&bin, &config, &["node", "id", "-q"]);
    let id = id.trim().split('@').next().unwrap().to_string();
    garage(
        &bin,
        &config,
        &["layout", "assign", "-z", "dc1", "-c", "1G", &id],
    );
    garage(&bin, &config, &["layout", "apply", "--version", "1"]);
    let key = garage(&bin, &config, &["key", "create", "fts-test"]);
    let field = |name: &str| {
        key.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no {name} in garage key create output:\n{key}"))
    };
    let (key_id, secret_key) = (field("Key ID"), field("Secret key"));
    garage(&bin, &config, &["bucket", "create", "fts"]);
    garage(
        &bin,
        &config,
        &[
            "bucket", "allow", "--read", "--write", "--owner", "fts", "--key", "fts-test",
        ],
    );
    Garage {
        endpoint: format!("http://127.0.0.1:{s3}"),
        bucket: "fts".into(),
        key_id,
        secret: secret_key,
        region: "garage".into(),
        _dir: dir,
    }
}

/// The process's Garage, started on first use; `None` (after saying why)
/// when there is no `garage` binary and this is not CI.
pub fn get() -> Option<&'static Garage> {
    static G: OnceLock<Option<Garage>> = OnceLock::new();
    G.get_or_init(|| match binary() {
        Some(bin) => Some(start(bin)),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but no garage binary: tests/run.sh installs it (cargo install --locked garage)")
        }
        None => {
            eprintln!("skipping S3 tests: no garage binary (cargo install --locked garage)");
            None
        }
    })
    .as_ref()
}

impl Garage {
    /// A prefix no other test uses.
    pub fn fresh_prefix(&self, name: &str) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        format!(
            "{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The variables `fts serve s3://…` reads its credentials from.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
            ("AWS_REGION", self.region.clone()),
        ]
    }

    /// The object at `key`, read without fts; `None` if there is none.
    pub fn read(&self, key: &str) -> Option<Vec<u8>> {
        use object_store::ObjectStoreExt;
        let key = object_store::path::Path::from(key);
        super::block_on(async {
            match self.client().get(&key).await {
                Ok(r) => Some(r.bytes().await.unwrap().to_vec()),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => panic!("S3 read of {key}: {e}"),
            }
        })
    }

    /// Parts recorded in the resumable state of an upload of `rel` to the
    /// share at `prefix` (0 when there is none).
    pub fn uploaded_parts(&self, prefix: &str, rel: &str) -> usize {
        self.read(&format!(".fts-store/uploads/{prefix}/{rel}"))
            .map_or(0, |b| {
                let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
                v["parts"].as_array().map_or(0, |p| p.len())
            })
    }

    /// A client of the bucket that does not go through fts, for checking
    /// what is stored.
    pub fn client(&self) -> object_store::aws::AmazonS3 {
        // What fts's main does; the S3 client's TLS has no provider of its own.
        let _ = rustls::crypto::ring::default_provider().install_default();
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(&self.bucket)
            .with_access_key_id(&self.key_id)
            .with_secret_access_key(&self.secret)
            .with_region(&self.region)
            .build()
            .unwrap()
    }
}
