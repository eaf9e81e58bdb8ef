//! Certificates: PEM files loaded into rustls' `CertifiedKey`s with the names they cover and
//! when they expire, and the choice of one by SNI.
//!
//! SNI picks by the names in a certificate (its SubjectAltNames, RFC 6125): an exact name
//! first, then a wildcard of one label (`*.example.com` covers `a.example.com`, not
//! `a.b.example.com` nor `example.com`). A client without SNI, or with a name no certificate
//! covers, gets the default certificate: the first configured.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One certificate chain and its key, ready to serve.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// The chain and the signing key.
    pub key: Arc<CertifiedKey>,
    /// The DNS names it covers, lowercase, as written (`*.example.com` included).
    pub names: Vec<String>,
    /// When it expires, Unix seconds.
    pub not_after: i64,
    /// The files it came from (for logs and reloads).
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// The files' modification times when loaded (the watcher reloads a file that changed).
    pub stamps: (Option<std::time::SystemTime>, Option<std::time::SystemTime>),
    /// Made here and self-signed, served for an ACME name until its order completes.
    pub placeholder: bool,
}

/// A file's modification time, if it can be read.
pub fn mtime(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Load a certificate chain (PEM, leaf first) and its private key (PEM: PKCS#8, PKCS#1 or
/// SEC1). Errors read `PATH: message`.
pub fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<Certificate, String> {
    let at = |p: &Path, m: String| format!("{}: {m}", p.display());
    let stamps = (mtime(cert_path), mtime(key_path));
    let bytes = std::fs::read(cert_path).map_err(|e| at(cert_path, format!("cannot read: {e}")))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| at(cert_path, format!("not a PEM certificate chain ({e})")))?;
    if chain.is_empty() {
        return Err(at(cert_path, "holds no certificate".to_string()));
    }
    let key_bytes =
        std::fs::read(key_path).map_err(|e| at(key_path, format!("cannot read: {e}")))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_bytes)
        .map_err(|e| at(key_path, format!("holds no PEM private key ({e})")))?;
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| at(key_path, format!("unusable private key ({e})")))?;
    let key = CertifiedKey::new(chain, signing);
    key.keys_match().map_err(|_| {
        at(
            key_path,
            format!("does not match the certificate {}", cert_path.display()),
        )
    })?;
    let (names, not_after) = names_and_expiry(&key.cert[0]).map_err(|m| at(cert_path, m))?;
    Ok(Certificate {
        key: Arc::new(key),
        names,
        not_after,
        cert_path: cert_path.to_path_buf(),
        key_path: key_path.to_path_buf(),
        stamps,
        placeholder: false,
    })
}

/// Every `*.pem` of `dir` holding a certificate, with its key in the same file or in
/// `NAME.key` beside it, in the order of their names. A file that cannot be used is an error;
/// a directory with nothing usable is one too.
pub fn load_dir(dir: &Path, provider: &CryptoProvider) -> Result<Vec<Certificate>, String> {
    let at = |m: String| format!("{}: {m}", dir.display());
    let mut pems: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| at(format!("cannot read the directory: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pem") && p.is_file())
        .collect();
    pems.sort();
    let mut out = Vec::with_capacity(pems.len());
    for pem in pems {
        let beside = pem.with_extension("key");
        let key = if beside.is_file() {
            beside
        } else {
            pem.clone()
        };
        out.push(load_pair(&pem, &key, provider)?);
    }
    if out.is_empty() {
        return Err(at("no usable certificate (*.pem) in it".to_string()));
    }
    Ok(out)
}

/// Days before expiry under which a certificate is worth a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// Every pair and every `*.pem` of `dir`, loaded; the first error ends it (`--check`, start).
pub fn load_all(
    pairs: &[(PathBuf, PathBuf)],
    dir: Option<&Path>,
    provider: &CryptoProvider,
) -> Result<Vec<Certificate>, String> {
    let mut out = Vec::new();
    for (cert, key) in pairs {
        out.push(load_pair(cert, key, provider)?);
    }
    if let Some(dir) = dir {
        out.extend(load_dir(dir, provider)?);
    }
    Ok(out)
}

/// What is worth a warning about loaded certificates: one that has expired or expires within
/// `EXPIRY_WARNING_DAYS`, and an exact host of the routes that none covers.
pub fn warnings(certs: &[Certificate], routed_hosts: &[&str], now_unix: i64) -> Vec<String> {
    let mut out = Vec::new();
    for c in certs {
        let days = (c.not_after - now_unix).div_euclid(86_400);
        if c.not_after <= now_unix {
            out.push(format!(
                "{}: the certificate has expired",
                c.cert_path.display()
            ));
        } else if days < EXPIRY_WARNING_DAYS {
            out.push(format!(
                "{}: the certificate expires in {days} days",
                c.cert_path.display()
            ));
        }
    }
    for host in routed_hosts {
        if !certs
            .iter()
            .any(|c| c.names.iter().any(|n| name_covers(n, host)))
        {
            out.push(format!(
                "no certificate covers {host}, which a route names: its HTTPS clients get the \
                 default certificate"
            ));
        }
    }
    out
}

/// The DNS names a leaf certificate covers (its SubjectAltNames; the subject's CN only when
/// it has none, as older certificates do) and its expiry.
fn names_and_expiry(der: &CertificateDer<'_>) -> Result<(Vec<String>, i64), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("cannot read the certificate ({e})"))?;
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.trim_end_matches('.').to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = cert.subject().iter_common_name().next() {
            if let Ok(cn) = cn.as_str() {
                names.push(cn.trim_end_matches('.').to_ascii_lowercase());
            }
        }
    }
    Ok((names, cert.validity().not_after.timestamp()))
}

/// Whether `name` (a certificate's name, maybe `*.example.com`) covers `host` (lowercase, no
/// port, no trailing dot), per RFC 6125: a wildcard stands for exactly one whole label.
pub fn name_covers(name: &str, host: &str) -> bool {
    match name.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => name == host,
    }
}

/// The certificates in force, indexed for SNI.
#[derive(Debug)]
pub struct CertSet {
    /// In configuration order; the first is the default.
    pub certs: Vec<Arc<Certificate>>,
    /// Exact name → index.
    exact: HashMap<String, usize>,
    /// A wildcard's suffix (`example.com` for `*.example.com`) → index.
    wildcard: HashMap<String, usize>,
}

/// What SNI chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// The certificate's index in the set.
    pub index: usize,
    /// It covers the name asked for (false: the default, for no SNI or a name none covers).
    pub matched: bool,
}

impl CertSet {
    /// The set of `certs` (at least one; the first is the default). A name two certificates
    /// cover goes to the one that expires last (a renewal left beside the certificate it
    /// renews, in a `certificate_dir`), the first on a tie.
    pub fn new(certs: Vec<Arc<Certificate>>) -> CertSet {
        let mut exact: HashMap<String, usize> = HashMap::new();
        let mut wildcard: HashMap<String, usize> = HashMap::new();
        for (i, c) in certs.iter().enumerate() {
            for n in &c.names {
                let (map, key) = match n.strip_prefix("*.") {
                    Some(suffix) => (&mut wildcard, suffix),
                    None => (&mut exact, n.as_str()),
                };
                let slot = map.entry(key.to_string()).or_insert(i);
                if certs[*slot].not_after < c.not_after {
                    *slot = i;
                }
            }
        }
        CertSet {
            certs,
            exact,
            wildcard,
        }
    }

    /// The certificate for SNI `name` (lowercase or not; a trailing dot is ignored).
    pub fn pick(&self, name: Option<&str>) -> Pick {
        let default = Pick {
            index: 0,
            matched: false,
        };
        let Some(name) = name else {
            return default;
        };
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) || name.ends_with('.') {
            lower = name.trim_end_matches('.').to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        if let Some(&index) = self.exact.get(name) {
            return Pick {
                index,
                matched: true,
            };
        }
        if let Some((_, rest)) = name.split_once('.') {
            if let Some(&index) = self.wildcard.get(rest) {
                return Pick {
                    index,
                    matched: true,
                };
            }
        }
        default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_covers_one_label_and_only_one() {
        assert!(name_covers("*.example.com", "a.example.com"));
        assert!(!name_covers("*.example.com", "a.b.example.com"));
        assert!(!name_covers("*.example.com", "example.com"));
        assert!(!name_covers("*.example.com", ".example.com"));
        assert!(name_covers("example.com", "example.com"));
        assert!(!name_covers("example.com", "a.example.com"));
    }

    fn cert(names: &[&str]) -> Arc<Certificate> {
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("a key");
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let key = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(
                rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec()),
            ))
            .expect("the test key");
        Arc::new(Certificate {
            key: Arc::new(CertifiedKey::new(vec![], key)),
            names: names.iter().map(|s| s.to_string()).collect(),
            not_after: 0,
            cert_path: PathBuf::new(),
            key_path: PathBuf::new(),
            stamps: (None, None),
            placeholder: false,
        })
    }

    #[test]
    fn sni_picks_an_exact_name_then_a_wildcard_then_the_default() {
        let set = CertSet::new(vec![
            cert(&["default.test"]),
            cert(&["*.example.com"]),
            cert(&["api.example.com", "other.org"]),
        ]);
        let pick = |n| {
            let p = set.pick(n);
            (p.index, p.matched)
        };
        assert_eq!(pick(Some("api.example.com")), (2, true));
        assert_eq!(pick(Some("API.Example.COM.")), (2, true));
        assert_eq!(pick(Some("www.example.com")), (1, true));
        assert_eq!(pick(Some("a.b.example.com")), (0, false));
        assert_eq!(pick(Some("example.com")), (0, false));
        assert_eq!(pick(None), (0, false));
    }
}
