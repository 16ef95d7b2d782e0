//! TLS: the server's identity (a self-signed certificate made with rcgen
//! and kept in the state directory, or a real one from PEM files), TLS 1.3
//! configs for both sides, and the client's pinning verifier.
//!
//! The verifier accepts a certificate when (in this order) it matches an
//! explicit `--fingerprint` pin; or it chains to a webpki root for the host
//! name; or it matches the fingerprint recorded in known_hosts; or nothing is
//! recorded yet (trust on first use; the caller records it after the
//! handshake). Handshake signatures are always checked against the
//! presented certificate, so a pinned fingerprint cannot be replayed
//! without the private key.

use crate::error::{Error, Result};
use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The one crypto provider fts uses (ring), passed explicitly to every
/// config so that no process-wide default is needed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `SHA256:<base64 without padding>` of a DER certificate, like OpenSSH.
pub fn fingerprint(cert_der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, cert_der);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(d.as_ref())
    )
}

/// Normalises a user-given pin (accepts a missing `SHA256:` prefix and
/// trailing `=` padding).
pub fn normalize_fingerprint(s: &str) -> Result<String> {
    let body = s.trim().strip_prefix("SHA256:").unwrap_or(s.trim());
    let body = body.trim_end_matches('=');
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(body)
        .map_err(|_| Error::usage(format!("invalid fingerprint '{s}' (expected SHA256:…)")))?;
    if raw.len() != 32 {
        return Err(Error::usage(format!(
            "invalid fingerprint '{s}' (not a SHA-256 digest)"
        )));
    }
    Ok(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(raw)
    ))
}

/// A certificate chain and its key.
pub struct Identity {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.certs[0])
    }

    /// Loads PEM files given with `--cert/--key`.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Identity> {
        let certs: Vec<_> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| Error::usage(format!("{}: {e}", cert.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| Error::usage(format!("{}: {e}", cert.display())))?;
        if certs.is_empty() {
            return Err(Error::usage(format!(
                "{}: no certificate found",
                cert.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| Error::usage(format!("{}: {e}", key.display())))?;
        Ok(Identity { certs, key })
    }

    /// Loads `cert.pem`/`key.pem` from the state directory, creating a new
    /// self-signed pair on first start so the fingerprint stays stable.
    pub fn load_or_create(state_dir: &Path) -> Result<Identity> {
        let cert_path = state_dir.join("cert.pem");
        let key_path = state_dir.join("key.pem");
        if cert_path.exists() && key_path.exists() {
            return Self::from_pem_files(&cert_path, &key_path);
        }
        std::fs::create_dir_all(state_dir).map_err(|e| Error::local_io(state_dir, e))?;
        let host = hostname();
        let names = vec!["localhost".to_string(), host];
        let ck = rcgen::generate_simple_self_signed(names)
            .map_err(|e| Error::other(format!("certificate generation failed: {e}")))?;
        crate::fsutil::write_private(&key_path, ck.key_pair.serialize_pem().as_bytes())?;
        crate::fsutil::write_private(&cert_path, ck.cert.pem().as_bytes())?;
        Self::from_pem_files(&cert_path, &key_path)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "fts-server".into())
}

/// TLS 1.3 server config offering the given ALPN protocols; with
/// `client_keys`, clients may offer a key (see [`crate::keys`]). That
/// config sends no session tickets: every connection with a key proves it
/// again.
pub fn server_config(
    id: &Identity,
    alpn: &[&[u8]],
    client_keys: Option<Arc<crate::keys::KeyVerifier>>,
) -> Result<Arc<rustls::ServerConfig>> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::tls(e.to_string()))?;
    let builder = match &client_keys {
        Some(v) => builder.with_client_cert_verifier(v.clone()),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(id.certs.clone(), id.key.clone_key())
        .map_err(|e| Error::usage(format!("unusable certificate/key: {e}")))?;
    if client_keys.is_some() {
        cfg.send_tls13_tickets = 0;
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    }
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// What the client knows about the server it is about to trust.
#[derive(Debug, Clone, Default)]
pub struct PinPolicy {
    /// `--fingerprint`: must match, nothing else is accepted.
    pub explicit: Option<String>,
    /// From known_hosts.
    pub known: Option<String>,
}

/// What the verifier saw during the handshake.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub fingerprint: Option<String>,
    /// The certificate chained to a webpki root.
    pub ca_valid: bool,
    /// Set when a pin did not match: (expected, presented).
    pub mismatch: Option<(String, String)>,
}

#[derive(Debug)]
struct PinVerifier {
    policy: PinPolicy,
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    observed: Arc<Mutex<Observed>>,
}

fn ct_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity);
        let mut obs = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        obs.fingerprint = Some(fp.clone());
        if let Some(pin) = &self.policy.explicit {
            if ct_eq(pin, &fp) {
                return Ok(ServerCertVerified::assertion());
            }
            obs.mismatch = Some((pin.clone(), fp));
            return Err(rustls::Error::General(
                "certificate fingerprint mismatch".into(),
            ));
        }
        if let Some(w) = &self.webpki {
            if w.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                .is_ok()
            {
                obs.ca_valid = true;
                return Ok(ServerCertVerified::assertion());
            }
        }
        match &self.policy.known {
            Some(pin) if !ct_eq(pin, &fp) => {
                obs.mismatch = Some((pin.clone(), fp));
                Err(rustls::Error::General(
                    "certificate fingerprint mismatch".into(),
                ))
            }
            // Matches known_hosts, or first use: the caller records it.
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Offers the one client key, whatever the server asks for (the server's
/// verifier says what it accepts).
#[derive(Debug)]
struct OneKey(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for OneKey {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A TLS 1.3 client config with the pinning verifier, offering `key` (the
/// client's identity, see [`crate::keys`]) to servers that ask for one;
/// the returned handle tells what was seen once the handshake is over.
pub fn client_config(
    policy: PinPolicy,
    alpn: &[u8],
    key: Option<Arc<CertifiedKey>>,
) -> Result<(Arc<rustls::ClientConfig>, Arc<Mutex<Observed>>)> {
    let provider = provider();
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .ok();
    let observed = Arc::new(Mutex::new(Observed::default()));
    let verifier = PinVerifier {
        policy,
        webpki,
        provider: provider.clone(),
        observed: observed.clone(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut cfg = match key {
        Some(k) => builder.with_client_cert_resolver(Arc::new(OneKey(k))),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok((Arc::new(cfg), observed))
}

/// The TLS server name for a host string (IP literal or DNS name).
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_string())
        .map_err(|_| Error::usage(format!("invalid host name '{host}'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_format_and_normalize() {
        let fp = fingerprint(b"abc");
        assert!(fp.starts_with("SHA256:"));
        assert_eq!(fp.len(), 7 + 43);
        assert_eq!(normalize_fingerprint(&fp).unwrap(), fp);
        assert_eq!(
            normalize_fingerprint(&format!("{}=", &fp[7..])).unwrap(),
            fp
        );
        assert!(normalize_fingerprint("SHA256:abc").is_err());
    }

    #[test]
    fn self_signed_identity_is_reused() {
        let d = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(d.path()).unwrap();
        let b = Identity::load_or_create(d.path()).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        server_config(&a, &[crate::proto::ALPN_FTS], None).unwrap();
    }
}
