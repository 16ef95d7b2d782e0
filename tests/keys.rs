//! Key login (`fts keygen`, `fts serve --authorized-keys`): unattended
//! clients with no terminal, no password variable and no password file
//! use the server with their key alone; the file decides, line by line and
//! as it is at each connection, who gets in and with which rights. The raw
//! tests offer certificates a real client would not: a handshake signed
//! by the wrong key, and a known public key in a certificate another key
//! signed.

mod common;

use common::wan::{WanOpts, WanProxy};
use common::*;
use fts::proto::{FrameReader, FrameWriter, Msg, ALPN_FTS, PROTOCOL_VERSION};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A server with access and admin passwords (which the key clients never
/// give) and an authorized keys file, initially empty.
struct Keyed {
    s: Setup,
    keys: PathBuf,
    _dir: tempfile::TempDir,
}

impl Keyed {
    fn new(extra: &[&str]) -> Keyed {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let keys = dir.join("authorized_keys");
        write_keys(&keys, "# fts keys\n");
        let pw = secret_file(dir, "pw", "access-secret");
        let admin = secret_file(dir, "admin", "admin-secret");
        let mut args = vec![
            "--authorized-keys".to_string(),
            keys.display().to_string(),
            "--password-file".to_string(),
            pw.display().to_string(),
            "--admin-password-file".to_string(),
            admin.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Keyed {
            s: Setup::new(&args),
            keys,
            _dir: tmp,
        }
    }
}

fn write_keys(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// `fts keygen --json` for this client: its fingerprint.
fn keygen(c: &Client) -> String {
    let out = c.run(&["--json", "keygen"]);
    out.ok();
    let v = out.json();
    assert_eq!(v["created"], true, "{v}");
    v["fingerprint"].as_str().unwrap().to_string()
}

fn identity_path(c: &Client) -> PathBuf {
    c.home.path().join(".config/fts/identity.pem")
}

#[test]
fn keygen_creates_once_and_shows() {
    let c = Client::new();
    let out = c.run(&["keygen", "--show"]);
    out.code(3);
    assert!(out.stderr.contains("fts keygen"), "{}", out.stderr);
    let fp = keygen(&c);
    assert!(fp.starts_with("SHA256:") && fp.len() == 50, "{fp}");
    let mode = std::fs::metadata(identity_path(&c))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Again: the same key, not a new one.
    let again = c.run(&["--json", "keygen"]);
    again.ok();
    assert_eq!(again.json()["created"], false);
    assert_eq!(again.json()["fingerprint"], fp.as_str());
    let shown = c.run(&["--json", "keygen", "--show"]);
    shown.ok();
    assert_eq!(shown.json()["fingerprint"], fp.as_str());
    // Text mode: the fingerprint alone on stdout, for scripts.
    let text = c.run(&["keygen", "--show"]);
    text.ok();
    assert_eq!(text.stdout.trim(), fp);
    // FTS_IDENTITY and --identity pick another file.
    let other = c.home.path().join("other.pem");
    let o = c.run_env(
        &["--json", "keygen"],
        &[("FTS_IDENTITY", other.to_str().unwrap())],
    );
    o.ok();
    let ofp = o.json()["fingerprint"].as_str().unwrap().to_string();
    assert_ne!(ofp, fp);
    let shown = c.run(&[
        "--json",
        "keygen",
        "--show",
        "--identity",
        other.to_str().unwrap(),
    ]);
    shown.ok();
    assert_eq!(shown.json()["fingerprint"], ofp.as_str());
}

#[test]
fn an_authorized_key_replaces_both_passwords() {
    let k = Keyed::new(&[]);
    let c = &k.s.client;
    let fp = keygen(c);
    write_keys(&k.keys, &format!("{fp} backup-bot admin\n"));

    let src = k.s.local("a.bin");
    random_file(&src, 300_000, 1);
    c.run(&["put", src.to_str().unwrap(), &k.s.url("a.bin")])
        .ok();
    assert_eq!(hash(&k.s.root().join("a.bin")), hash(&src));
    let back = k.s.local("back.bin");
    c.run(&["get", &k.s.url("a.bin"), back.to_str().unwrap()])
        .ok();
    assert_eq!(hash(&back), hash(&src));
    let tree = k.s.local("tree");
    std::fs::create_dir_all(tree.join("d")).unwrap();
    std::fs::write(tree.join("d/x.txt"), b"x").unwrap();
    let out = c.run(&["--json", "sync", tree.to_str().unwrap(), &k.s.url("tree")]);
    out.ok();
    assert_eq!(
        std::fs::read(k.s.root().join("tree/d/x.txt")).unwrap(),
        b"x"
    );
    // rm needs admin: the key's `admin` flag stands for the admin password.
    c.run(&["rm", &k.s.url("a.bin")]).ok();
    assert!(!k.s.root().join("a.bin").exists());

    // The authenticated name is what stats shows; the self-declared one
    // is beside it, marked as such.
    let out = c.run(&["--json", "--name", "i-say-alice", "stats", &k.s.url("")]);
    out.ok();
    let v = out.json();
    let me = v["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == fp.as_str())
        .unwrap_or_else(|| panic!("no key client in {v}"))
        .clone();
    assert_eq!(me["name"], "backup-bot", "{me}");
    assert_eq!(me["declared_name"], "i-say-alice", "{me}");
    assert_eq!(me["admin"], true, "{me}");
    let text = c.run(&["--name", "i-say-alice", "stats", &k.s.url("")]);
    text.ok();
    assert!(
        text.stdout.contains("backup-bot") && text.stdout.contains("i-say-alice"),
        "{}",
        text.stdout
    );
    // The server's log names the key.
    let ev = k.s.server.wait_event("key login", |e| {
        e["event"] == "key_auth" && e["ok"] == true && e["name"] == "backup-bot"
    });
    assert_eq!(ev["key"], fp.as_str());
    k.s.server.wait_event("connect by key name", |e| {
        e["event"] == "connect" && e["name"] == "backup-bot" && e["declared_name"] == "i-say-alice"
    });

    // Removed from the file: refused on the next connection, with the line
    // to add in the message.
    write_keys(&k.keys, "# nobody\n");
    let out = c.run(&["--json", "ls", &k.s.url("")]);
    out.code(4);
    let msg = out.err_message();
    assert!(msg.contains(&fp), "{msg}");
    assert!(msg.contains("authorized keys"), "{msg}");
    let ev = k.s.server.wait_event("refused key", |e| {
        e["event"] == "key_auth" && e["ok"] == false
    });
    assert_eq!(ev["key"], fp.as_str());
    // Back in: works again without a restart; the refusal is counted.
    write_keys(&k.keys, &format!("{fp} backup-bot\n"));
    c.run(&["ls", &k.s.url("")]).ok();
    let out = c.run(&["--json", "stats", &k.s.url("")]);
    out.ok();
    assert!(
        out.json()["totals"]["auth_failures"].as_u64().unwrap() >= 1,
        "{}",
        out.stdout
    );
}

#[test]
fn read_only_and_non_admin_keys_are_held_to_their_line() {
    let k = Keyed::new(&[]);
    let writer = Client::new();
    let reader = Client::new();
    let wfp = keygen(&writer);
    let rfp = keygen(&reader);
    write_keys(
        &k.keys,
        &format!("{wfp} writer\n{rfp} reader read-only # may only read\n"),
    );
    let src = k.s.local("f.txt");
    std::fs::write(&src, b"hello").unwrap();
    writer
        .run(&["put", src.to_str().unwrap(), &k.s.url("f.txt")])
        .ok();

    // read-only: no put (exit 5), but get works.
    let out = reader.run(&["--json", "put", src.to_str().unwrap(), &k.s.url("g.txt")]);
    out.code(5);
    assert!(out.err_message().contains("read-only"), "{}", out.stderr);
    assert!(!k.s.root().join("g.txt").exists());
    let back = k.s.local("back.txt");
    reader
        .run(&["get", &k.s.url("f.txt"), back.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read(&back).unwrap(), b"hello");

    // Not admin: no rm (exit 4), the file stays.
    let out = writer.run(&["--json", "rm", &k.s.url("f.txt")]);
    out.code(4);
    assert!(out.err_message().contains("admin"), "{}", out.stderr);
    assert!(k.s.root().join("f.txt").exists());
    let out = writer.run(&["--json", "admin", "clients", &k.s.url("")]);
    out.code(4);
}

#[test]
fn unknown_keys_and_key_only_servers() {
    // A key-only server (no access password): an unknown key, or none,
    // is refused (exit 4) with the fingerprint to add.
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    write_keys(&keys, "");
    let s = Setup::new(&["--authorized-keys", keys.to_str().unwrap()]);
    let out = s.run(&["--json", "ls", &s.url("")]);
    out.code(4);
    assert!(out.err_message().contains("fts keygen"), "{}", out.stderr);
    let fp = keygen(&s.client);
    let out = s.run(&["--json", "ls", &s.url("")]);
    out.code(4);
    let msg = out.err_message();
    assert!(msg.contains(&format!("{fp} NAME")), "{msg}");
    // A password does not stand in for a key there.
    let out = s
        .client
        .run_env(&["--json", "ls", &s.url("")], &[("FTS_PASSWORD", "guess")]);
    out.code(4);
    write_keys(&keys, &format!("{fp} me\n"));
    s.run(&["ls", &s.url("")]).ok();
    // Its web side has no password to ask for, so it is closed: no
    // dashboard, no download, no upload.
    std::fs::write(s.root().join("secret.txt"), b"s").unwrap();
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/files/secret.txt"),
        ("GET", "/api/stats"),
    ] {
        let r = https(&s, method, path, &[], b"");
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
    }
    let r = https(&s, "PUT", "/files/new.txt", &[], b"data");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(!s.root().join("new.txt").exists());

    // A server with a password: an unknown key may still log in with it.
    let k = Keyed::new(&[]);
    let c = &k.s.client;
    let fp = keygen(c);
    let out = c.run(&["--json", "ls", &k.s.url("")]);
    out.code(4);
    assert!(out.err_message().contains(&fp), "{}", out.stderr);
    c.run_env(&["ls", &k.s.url("")], &[("FTS_PASSWORD", "access-secret")])
        .ok();

    // A server without --authorized-keys never asks for the key.
    let plain = Setup::new(&[]);
    let c2 = &plain.client;
    keygen(c2);
    c2.run(&["ls", &plain.url("")]).ok();
}

#[test]
fn bad_files_get_clear_errors() {
    // An authorized keys file others may write: serve refuses to start.
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "").unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o666)).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    // `fts serve` with that file: it must refuse to start (exit 2).
    let serve_refuses = || {
        let mut c = fts_cmd(dir.path());
        c.arg("serve")
            .arg(&root)
            .args(["--listen", "127.0.0.1:0", "--authorized-keys"])
            .arg(&keys);
        let out = run(c);
        out.code(2);
        out.stderr
    };
    let err = serve_refuses();
    assert!(err.contains("writable by group or others"), "{err}");
    // A malformed one names the line.
    write_keys(&keys, "SHA256:short bob\n");
    let err = serve_refuses();
    assert!(err.contains("line 1"), "{err}");

    // A damaged identity: a clear error, not a silent password fallback.
    let s = Setup::new(&[]);
    keygen(&s.client);
    let id = identity_path(&s.client);
    std::fs::write(
        &id,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = s.run(&["--json", "ls", &s.url("")]);
    out.code(2);
    assert!(out.err_message().contains("is damaged"), "{}", out.stderr);
    // One others may read: refused like ssh does.
    std::fs::remove_file(&id).unwrap();
    keygen(&s.client);
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = s.run(&["--json", "ls", &s.url("")]);
    out.code(2);
    assert!(out.err_message().contains("chmod 600"), "{}", out.stderr);
    // A named identity that does not exist.
    let out = s.run(&[
        "--json",
        "--identity",
        "/nonexistent/id.pem",
        "ls",
        &s.url(""),
    ]);
    assert_ne!(out.code, 0);
    assert!(
        out.err_message().contains("/nonexistent/id.pem"),
        "{}",
        out.stderr
    );
}

#[test]
fn key_login_through_a_slow_link() {
    let k = Keyed::new(&[]);
    let c = &k.s.client;
    let fp = keygen(c);
    write_keys(&k.keys, &format!("{fp} wan-bot\n"));
    let proxy = WanProxy::start(k.s.server.addr.parse().unwrap(), WanOpts::wan(25, 2 << 20));
    let url = |p: &str| format!("fts://{}/{p}", proxy.host_port());
    let src = k.s.local("w.bin");
    random_file(&src, 1 << 20, 5);
    c.run(&["put", src.to_str().unwrap(), &url("w.bin")]).ok();
    assert_eq!(hash(&k.s.root().join("w.bin")), hash(&src));
    let back = k.s.local("w.back");
    c.run(&["get", &url("w.bin"), back.to_str().unwrap()]).ok();
    assert_eq!(hash(&back), hash(&src));
}

// ---- raw protocol: certificates a real client would not offer ----

/// A TLS session to the server offering `cert` (or none), pinned to the
/// server's fingerprint, with `cfg` reused when given (session
/// resumption).
async fn connect_with(s: &Setup, cfg: &Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let tcp = tcp_from(s, None).await;
    tokio_rustls::TlsConnector::from(cfg.clone())
        .connect(fts::tls::server_name("127.0.0.1").unwrap(), tcp)
        .await
}

fn config_offering(s: &Setup, cert: Option<Arc<CertifiedKey>>) -> Arc<rustls::ClientConfig> {
    let policy = fts::tls::PinPolicy {
        explicit: Some(s.server.fingerprint.clone()),
        known: None,
    };
    fts::tls::client_config(policy, ALPN_FTS, cert).unwrap().0
}

/// What the server says to hello over `tls`: its welcome, or why there
/// is none (the handshake or the session failed).
async fn welcome(tls: Tls) -> Result<Msg, String> {
    let (r, w) = tokio::io::split(tls);
    let mut w = FrameWriter::new(w, Duration::from_secs(5));
    let mut r = FrameReader::new(r, Duration::from_secs(5));
    w.msg(&Msg::Hello {
        version: PROTOCOL_VERSION,
        client: "raw".into(),
        name: None,
        timeout_ms: None,
    })
    .await
    .map_err(|e| e.message)?;
    w.flush().await.map_err(|e| e.message)?;
    r.read_msg().await.map_err(|e| e.message)
}

async fn try_session(s: &Setup, cfg: &Arc<rustls::ClientConfig>) -> Result<Msg, String> {
    match connect_with(s, cfg).await {
        Ok(tls) => welcome(tls).await,
        Err(e) => Err(e.to_string()),
    }
}

fn signing_key(pem: &str) -> Arc<dyn rustls::sign::SigningKey> {
    let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap();
    fts::tls::provider()
        .key_provider
        .load_private_key(der)
        .unwrap()
}

fn cert_of(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// The certificate and key of an identity file's text, as a client offers
/// them.
fn own(pem: &str) -> Arc<CertifiedKey> {
    Arc::new(CertifiedKey::new(vec![cert_of(pem)], signing_key(pem)))
}

/// A welcome that still asks for a login (the key did not do it).
fn needs_login(m: &Msg) -> bool {
    matches!(
        m,
        Msg::Welcome {
            auth_required: true,
            ..
        }
    )
}

fn key_accepted(m: &Msg) -> bool {
    matches!(m, Msg::Welcome { auth_required: false, key: Some(k), .. } if k.name.is_some())
}

#[test]
fn forged_client_certificates_are_refused() {
    let k = Keyed::new(&[]);
    let alice = Client::new();
    let mallory = Client::new();
    let afp = keygen(&alice);
    keygen(&mallory);
    write_keys(&k.keys, &format!("{afp} alice admin\n"));
    let apem = std::fs::read_to_string(identity_path(&alice)).unwrap();
    let mpem = std::fs::read_to_string(identity_path(&mallory)).unwrap();

    block_on(async {
        // Control: alice's own certificate and key get in.
        let real = own(&apem);
        let m = try_session(&k.s, &config_offering(&k.s, Some(real))).await;
        assert!(m.as_ref().is_ok_and(key_accepted), "{m:?}");

        // Alice's certificate, but the handshake signed with mallory's
        // key: the signature does not verify.
        let forged = Arc::new(CertifiedKey::new(vec![cert_of(&apem)], signing_key(&mpem)));
        let m = try_session(&k.s, &config_offering(&k.s, Some(forged))).await;
        assert!(m.is_err(), "a bad handshake signature got {m:?}");
        let why = |what: &str| {
            k.s.server.wait_event(what, |e| {
                e["event"] == "rejected" && e["reason"].as_str().is_some_and(|r| r.contains(what))
            })
        };
        // rustls reports a handshake signature that does not verify as a
        // bad certificate signature.
        why("TLS handshake failed: invalid peer certificate: BadSignature");

        // Mallory's own key in a certificate with alice's name that
        // mallory signed: a valid handshake, an unknown key.
        let m = try_session(&k.s, &config_offering(&k.s, Some(own(&mpem))))
            .await
            .unwrap();
        assert!(needs_login(&m), "{m:?}");

        // Alice's public key in a certificate signed by mallory's key
        // (issuer and subject alike, so it looks self-signed), offered
        // with alice's key for the handshake: refused, for the
        // certificate is not signed by the key it carries.
        let alice_kp = rcgen::KeyPair::from_pem(&apem).unwrap();
        let mallory_kp = rcgen::KeyPair::from_pem(&mpem).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let issuer = params.clone().self_signed(&mallory_kp).unwrap();
        let crossed = params.signed_by(&alice_kp, &issuer, &mallory_kp).unwrap();
        let crossed = Arc::new(CertifiedKey::new(
            vec![crossed.der().clone()],
            signing_key(&apem),
        ));
        // Refusals are logged at most once a second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let m = try_session(&k.s, &config_offering(&k.s, Some(crossed))).await;
        assert!(m.is_err(), "a cross-signed certificate got {m:?}");
        why("certificate not signed by its own key");

        // One config, two sessions (a resumption would be allowed to
        // reuse the first): the second is looked up again and refused
        // once the line is gone.
        let cfg = config_offering(&k.s, Some(own(&apem)));
        let m = try_session(&k.s, &cfg).await;
        assert!(m.as_ref().is_ok_and(key_accepted), "{m:?}");
        write_keys(&k.keys, "");
        let m = try_session(&k.s, &cfg).await.unwrap();
        assert!(needs_login(&m), "{m:?}");
        // Not logged in, that session gets nothing, not even stats.
        let ((mut r, mut w), first) =
            hello_over(connect_with(&k.s, &cfg).await.unwrap(), PROTOCOL_VERSION).await;
        assert!(matches!(first, Msg::Welcome { .. }), "{first:?}");
        w.msg(&Msg::StatsReq).await.unwrap();
        w.flush().await.unwrap();
        assert!(matches!(r.read_msg().await, Ok(Msg::Error { .. })));
    });
}
