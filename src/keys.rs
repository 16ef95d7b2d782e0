//! Key login: the client's identity (an Ed25519 key and a self-signed
//! certificate in one 0600 PEM file, made by `fts keygen`), the server's
//! authorized keys file, and the rustls verifier that checks the
//! certificate a client offers.
//!
//! A key is named by the fingerprint of its public key (`SHA256:` of the
//! DER SubjectPublicKeyInfo), so a new certificate for the same key keeps
//! its name. The verifier accepts a client certificate only when it is an
//! Ed25519 certificate signed by the very key it carries and the TLS
//! handshake signature verifies with that key: holding the private key is
//! the proof. Whether the key is authorized is decided after the
//! handshake, against the file as it is at that moment (re-read whenever it
//! changed), so a removed key is refused on its next connection; the fts
//! TLS config sends no session tickets, and even a resumed session would
//! be looked up again.

use crate::error::{Error, Result};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Largest authorized keys file read (a line per key: ~100 bytes each).
const MAX_AUTHORIZED_KEYS: u64 = 1 << 20;
/// Longest key name.
const MAX_NAME: usize = 64;
/// The DER AlgorithmIdentifier of Ed25519 (OID 1.3.101.112, no parameters).
const ED25519_ALG_ID: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];

/// Client certificates and handshake signatures: Ed25519 only.
static ED25519_ONLY: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[webpki::ring::ED25519],
    mapping: &[(SignatureScheme::ED25519, &[webpki::ring::ED25519])],
};

/// `SHA256:…` of the public key a certificate carries.
pub fn key_fingerprint(cert: &CertificateDer<'_>) -> Result<String> {
    let ee = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| Error::tls(format!("unreadable certificate: {e:?}")))?;
    Ok(crate::tls::fingerprint(
        ee.subject_public_key_info().as_ref(),
    ))
}

/// Is `cert` an Ed25519 certificate signed by its own key?
fn self_signed(cert: &CertificateDer<'_>) -> std::result::Result<(), &'static str> {
    let (tbs, alg, sig) = yasna::parse_der(cert.as_ref(), |r| {
        r.read_sequence(|r| {
            let tbs = r.next().read_der()?;
            let alg = r.next().read_der()?;
            let (sig, bits) = r.next().read_bitvec_bytes()?;
            Ok((tbs, alg, sig, bits))
        })
    })
    .ok()
    .filter(|(_, _, sig, bits)| bits % 8 == 0 && *bits / 8 == sig.len())
    .map(|(tbs, alg, sig, _)| (tbs, alg, sig))
    .ok_or("not a DER certificate")?;
    if alg != ED25519_ALG_ID {
        return Err("not an Ed25519 certificate (make one with `fts keygen`)");
    }
    let ee = webpki::EndEntityCert::try_from(cert).map_err(|_| "unreadable certificate")?;
    ee.verify_signature(webpki::ring::ED25519, &tbs, &sig)
        .map_err(|_| "certificate not signed by its own key")
}

/// What the server asks of a client certificate during the handshake
/// (see the module doc). Offering one is optional: password logins and
/// clients without a key go on as before.
#[derive(Debug, Default)]
pub struct KeyVerifier;

impl ClientCertVerifier for KeyVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::General(
                "client key: expected one self-signed certificate".into(),
            ));
        }
        self_signed(end_entity)
            .map_err(|why| rustls::Error::General(format!("client key: {why}")))?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &ED25519_ONLY)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &ED25519_ONLY)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ED25519_ONLY.supported_schemes()
    }
}

/// The client's key and certificate.
pub struct ClientIdentity {
    pub path: PathBuf,
    /// The certificate and signing key the TLS client offers.
    pub certified: Arc<CertifiedKey>,
    pub fingerprint: String,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClientIdentity({}, {})",
            self.path.display(),
            self.fingerprint
        )
    }
}

/// Where the identity lives unless `--identity` / `FTS_IDENTITY` say
/// otherwise: `identity.pem` in the config directory.
pub fn default_identity_path() -> Result<PathBuf> {
    Ok(crate::config::config_dir()?.join("identity.pem"))
}

impl ClientIdentity {
    /// Makes a new identity at `path`; refuses to replace one.
    pub fn create(path: &Path) -> Result<ClientIdentity> {
        if path.symlink_metadata().is_ok() {
            return Err(Error::usage(format!(
                "{} already exists: fts keygen never replaces a key",
                path.display()
            )));
        }
        let fail = |e: rcgen::Error| Error::other(format!("key generation failed: {e}"));
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(fail)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("fts client key of {}", crate::client::default_name()),
        );
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.self_signed(&kp).map_err(fail)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::fsutil::create_private_dir(dir)?;
        }
        let pem = format!("{}{}", kp.serialize_pem(), cert.pem());
        crate::fsutil::write_private(path, pem.as_bytes())?;
        Self::load(path)
    }

    /// Reads an identity, refusing one that others may read (like ssh).
    pub fn load(path: &Path) -> Result<ClientIdentity> {
        let damaged = |why: String| {
            Error::usage(format!(
                "identity file {} is damaged ({why}); move it away and run `fts keygen` for a new key",
                path.display()
            ))
        };
        let meta = std::fs::metadata(path).map_err(|e| Error::local_io(path, e))?;
        if meta.mode() & 0o077 != 0 {
            return Err(Error::usage(format!(
                "identity file {} has mode {:04o}: a private key must be readable by you alone \
                 (chmod 600 {})",
                path.display(),
                meta.mode() & 0o7777,
                path.display()
            )));
        }
        if meta.len() > 64 * 1024 {
            return Err(damaged("too large".into()));
        }
        let pem = std::fs::read(path).map_err(|e| Error::local_io(path, e))?;
        let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| damaged(e.to_string()))?;
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| damaged(e.to_string()))?;
        if certs.len() != 1 {
            return Err(damaged(format!(
                "{} certificates, expected one",
                certs.len()
            )));
        }
        self_signed(&certs[0]).map_err(|why| damaged(why.into()))?;
        let fingerprint = key_fingerprint(&certs[0])?;
        let certified =
            CertifiedKey::from_der(certs, key, &crate::tls::provider()).map_err(|e| {
                damaged(match e {
                    rustls::Error::InconsistentKeys(_) => {
                        "the certificate does not belong to the key".into()
                    }
                    e => format!("private key: {e}"),
                })
            })?;
        Ok(ClientIdentity {
            path: path.to_path_buf(),
            certified: Arc::new(certified),
            fingerprint,
        })
    }
}

/// One line of the authorized keys file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedKey {
    pub fingerprint: String,
    pub name: String,
    /// Replaces the admin password (rm, kick, warn, log, chat --admin).
    pub admin: bool,
    /// No writes with this key.
    pub read_only: bool,
}

/// Parses the file's text: `SHA256:… NAME [admin] [read-only]` per line,
/// `#` comments and blank lines ignored.
pub fn parse_authorized_keys(text: &str) -> std::result::Result<Vec<AuthorizedKey>, String> {
    let mut keys: Vec<AuthorizedKey> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = |why: String| format!("line {}: {why}", n + 1);
        let mut words = line.split_whitespace();
        let fp = words.next().unwrap_or_default();
        let fingerprint = crate::tls::normalize_fingerprint(fp).map_err(|e| at(e.message))?;
        let name = words
            .next()
            .ok_or_else(|| at(format!("{fp} has no name (write `{fp} NAME`)")))?;
        if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(at(format!(
                "name '{name}' is not a printable name of at most {MAX_NAME} characters"
            )));
        }
        let mut key = AuthorizedKey {
            fingerprint,
            name: name.to_string(),
            admin: false,
            read_only: false,
        };
        for flag in words {
            match flag {
                "admin" => key.admin = true,
                "read-only" => key.read_only = true,
                other => {
                    return Err(at(format!(
                        "unknown option '{other}' (expected admin or read-only)"
                    )))
                }
            }
        }
        if keys.iter().any(|k| k.fingerprint == key.fingerprint) {
            return Err(at(format!("{} is listed twice", key.fingerprint)));
        }
        keys.push(key);
    }
    Ok(keys)
}

/// What identifies one version of the file: a change to its contents,
/// owner or mode moves one of these.
type Stamp = (u64, u64, u64, i64, i64, i64, i64);

fn stamp(m: &std::fs::Metadata) -> Stamp {
    (
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

/// How much older than its reading a file version must be for its stamp to
/// be trusted. File times are only as fine as the kernel's clock tick: a
/// same-length rewrite within the tick of the last read would keep the
/// stamp (git's "racily clean" problem), so a version that recent is read
/// again every time.
const RACY: std::time::Duration = std::time::Duration::from_secs(2);

/// Was the version last changed at `changed` (seconds, nanoseconds) read
/// (at `read_at`) late enough that any later change must move the stamp?
fn settled(changed: (i64, i64), read_at: std::time::SystemTime) -> bool {
    let changed = std::time::UNIX_EPOCH
        + std::time::Duration::new(
            changed.0.max(0) as u64,
            changed.1.clamp(0, 999_999_999) as u32,
        );
    read_at.duration_since(changed).is_ok_and(|age| age >= RACY)
}

/// The server's authorized keys file, re-read when it changes. A file that
/// has become unusable (unreadable, writable by others, malformed) admits
/// no key until it is fixed: keys fail closed.
#[derive(Debug)]
pub struct AuthorizedKeys {
    path: PathBuf,
    cache: Mutex<Cached>,
}

/// The file as last read: its stamp, when it was read, and its keys.
#[derive(Debug)]
struct Cached {
    stamp: Stamp,
    read_at: std::time::SystemTime,
    keys: Arc<Vec<AuthorizedKey>>,
}

impl AuthorizedKeys {
    /// Reads the file now, so that `fts serve` refuses to start with one it
    /// could not use.
    pub fn open(path: &Path) -> Result<AuthorizedKeys> {
        let cached = Self::read(path)?;
        Ok(AuthorizedKeys {
            path: path.to_path_buf(),
            cache: Mutex::new(cached),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(path: &Path) -> Result<Cached> {
        let read_at = std::time::SystemTime::now();
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| Error::local_io(path, e))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me && meta.uid() != 0 {
            return Err(Error::usage(format!(
                "{shown} belongs to another user (uid {}): fts trusts only your own or root's \
                 authorized keys file",
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(Error::usage(format!(
                "{shown} is writable by group or others (mode {:04o}), so anyone could add a key: \
                 fts will not use it (chmod go-w {shown})",
                meta.mode() & 0o7777
            )));
        }
        if !meta.is_file() || meta.len() > MAX_AUTHORIZED_KEYS {
            return Err(Error::usage(format!(
                "{shown}: not a regular file of at most {MAX_AUTHORIZED_KEYS} bytes"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::local_io(path, e))?;
        let keys =
            parse_authorized_keys(&text).map_err(|e| Error::usage(format!("{shown}: {e}")))?;
        Ok(Cached {
            stamp: stamp(&meta),
            read_at,
            keys: Arc::new(keys),
        })
    }

    /// The key with this fingerprint, from the file as it is now. `Err`
    /// when the file cannot be used (the caller refuses the login and
    /// reports why).
    pub fn lookup(&self, fingerprint: &str) -> Result<Option<AuthorizedKey>> {
        let keys = self.current()?;
        Ok(keys
            .iter()
            .find(|k| ct_eq(&k.fingerprint, fingerprint))
            .cloned())
    }

    fn current(&self) -> Result<Arc<Vec<AuthorizedKey>>> {
        let meta = std::fs::metadata(&self.path).map_err(|e| Error::local_io(&self.path, e))?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let same = cache.stamp == stamp(&meta)
            && settled((meta.ctime(), meta.ctime_nsec()), cache.read_at);
        if !same {
            *cache = Self::read(&self.path)?;
        }
        Ok(cache.keys.clone())
    }
}

fn ct_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keygen_makes_a_private_loadable_identity() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/identity.pem");
        let id = ClientIdentity::create(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert!(id.fingerprint.starts_with("SHA256:"));
        assert_eq!(
            ClientIdentity::load(&p).unwrap().fingerprint,
            id.fingerprint
        );
        assert!(ClientIdentity::create(&p).is_err(), "never replaces a key");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = ClientIdentity::load(&p).unwrap_err();
        assert!(e.message.contains("chmod 600"), "{e}");
    }

    #[test]
    fn a_damaged_identity_says_so() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("identity.pem");
        let id = ClientIdentity::create(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        for broken in [
            "garbage".to_string(),
            text[..text.len() / 2].to_string(),
            text.replace("CERTIFICATE", "NOTHING"),
        ] {
            std::fs::write(&p, broken).unwrap();
            let e = ClientIdentity::load(&p).unwrap_err();
            assert!(e.message.contains("is damaged"), "{e}");
        }
        // Another key's certificate beside this key.
        let other = d.path().join("other.pem");
        ClientIdentity::create(&other).unwrap();
        let other_text = std::fs::read_to_string(&other).unwrap();
        let key_part = &text[..text.find("-----BEGIN CERTIFICATE").unwrap()];
        let cert_part = &other_text[other_text.find("-----BEGIN CERTIFICATE").unwrap()..];
        std::fs::write(&p, format!("{key_part}{cert_part}")).unwrap();
        let e = ClientIdentity::load(&p).unwrap_err();
        assert!(e.message.contains("does not belong"), "{e}");
        assert_ne!(
            id.fingerprint,
            key_fingerprint(&CertificateDer::from_pem_slice(cert_part.as_bytes()).unwrap())
                .unwrap()
        );
    }

    #[test]
    fn authorized_keys_lines() {
        let fp = crate::tls::fingerprint(b"k1");
        let fp2 = crate::tls::fingerprint(b"k2");
        let text = format!("# backups\n\n{fp} backup admin\n  {fp2} reader read-only # ro\n");
        let keys = parse_authorized_keys(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys[0].admin && !keys[0].read_only && keys[0].name == "backup");
        assert!(!keys[1].admin && keys[1].read_only && keys[1].name == "reader");
        for (bad, why) in [
            (fp.clone(), "has no name"),
            (format!("{fp} a root"), "unknown option 'root'"),
            ("SHA256:nope x".to_string(), "invalid fingerprint"),
            (format!("{fp} a\n{fp} b"), "line 2"),
        ] {
            let e = parse_authorized_keys(&bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn authorized_keys_are_reread_and_fail_closed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("keys");
        let fp = crate::tls::fingerprint(b"k1");
        std::fs::write(&p, format!("{fp} one\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let keys = AuthorizedKeys::open(&p).unwrap();
        assert_eq!(keys.lookup(&fp).unwrap().unwrap().name, "one");
        std::fs::write(&p, "# nobody\n").unwrap();
        assert_eq!(keys.lookup(&fp).unwrap(), None);
        std::fs::write(&p, format!("{fp} two admin\n")).unwrap();
        assert_eq!(keys.lookup(&fp).unwrap().unwrap().name, "two");
        // A same-length rewrite right after a read (within one tick of the
        // file clock) is still seen: a version that recent is read again.
        let fp2 = crate::tls::fingerprint(b"k2");
        std::fs::write(&p, format!("{fp2} two admin\n")).unwrap();
        assert_eq!(keys.lookup(&fp).unwrap(), None);
        assert_eq!(keys.lookup(&fp2).unwrap().unwrap().name, "two");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = keys.lookup(&fp).unwrap_err();
        assert!(e.message.contains("writable by group or others"), "{e}");
        assert!(AuthorizedKeys::open(&p).is_err());
    }
}
