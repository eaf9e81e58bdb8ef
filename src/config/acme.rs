//! `[acme]` and the `--acme-*` flags → an [`AcmeSpec`]. Only the settings: the orders are
//! made by `acme`, on a thread of its own.

use super::error::{file_error, ConfigError};
use super::file::{self, Source};
use super::read::as_str;
use super::spec::{AcmeChallenge, AcmeSpec, RouteSpec, TlsSpec};
use super::values::parse_positive_duration;
use std::path::PathBuf;
use std::time::Duration;

/// Let's Encrypt's production directory.
pub const ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Where the account and the certificates are kept unless `storage` says otherwise.
pub const ACME_STORAGE: &str = "/var/lib/goround/acme";
/// How long before expiry a certificate is renewed: a third of a 90-day certificate's life.
pub const ACME_RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);

/// The `--acme-*` flags.
pub(super) struct Flags {
    pub email: Option<String>,
    pub domains: Vec<String>,
    pub directory: Option<String>,
}

/// The ACME settings from the flags over `[acme]`, or `None` when neither asks for them.
/// `routes` gives the default domains (every exact host routed); `tls` must be on.
pub(super) fn acme(
    cli: &Flags,
    file: &file::File,
    source: Option<&Source>,
    tls: Option<&TlsSpec>,
    routes: &[RouteSpec],
) -> Result<Option<AcmeSpec>, ConfigError> {
    let section = match (file.acme.as_ref(), source) {
        (Some(a), Some(src)) => Some((a, src)),
        _ => None,
    };
    let flags_given = cli.email.is_some() || !cli.domains.is_empty() || cli.directory.is_some();
    if section.is_none() && !flags_given {
        return Ok(None);
    }
    let err =
        |src: &Source, span: std::ops::Range<usize>, m: String| file_error(src.error(&span, m));
    let mut spec = AcmeSpec {
        email: cli.email.clone(),
        directory: cli
            .directory
            .clone()
            .unwrap_or_else(|| ACME_DIRECTORY.to_string()),
        domains: Vec::new(),
        storage: PathBuf::from(ACME_STORAGE),
        challenge: AcmeChallenge::Http01,
        renew_before: ACME_RENEW_BEFORE,
        ca_bundle: None,
    };
    for d in &cli.domains {
        let name = domain(d).map_err(|e| ConfigError::Usage(format!("--acme-domain: {e}")))?;
        spec.domains.push(name);
    }
    if let Some((a, src)) = section {
        let at = a.get_ref();
        let text = |v: &file::At<toml::Value>, what: &str| -> Result<String, ConfigError> {
            as_str(v.get_ref())
                .map(str::to_string)
                .map_err(|e| err(src, v.span(), format!("{what}: {e}")))
        };
        if let (Some(v), None) = (&at.email, &cli.email) {
            let email = text(v, "email")?;
            if !email.contains('@') || email.bytes().any(|b| b <= b' ' || b == b',') {
                return Err(err(
                    src,
                    v.span(),
                    format!("email: '{email}' is not an address"),
                ));
            }
            spec.email = Some(email);
        }
        if let (Some(v), None) = (&at.directory, &cli.directory) {
            spec.directory = text(v, "directory")?;
            if !spec.directory.starts_with("https://") {
                return Err(err(
                    src,
                    v.span(),
                    "directory: the CA's directory must be an https:// URL".to_string(),
                ));
            }
        }
        if let (Some(list), true) = (&at.domains, cli.domains.is_empty()) {
            for v in list.get_ref() {
                let name = as_str(v.get_ref())
                    .and_then(domain)
                    .map_err(|e| err(src, v.span(), format!("domains: {e}")))?;
                spec.domains.push(name);
            }
        }
        if let Some(v) = &at.storage {
            spec.storage = PathBuf::from(text(v, "storage")?);
        }
        if let Some(v) = &at.challenge {
            spec.challenge = match text(v, "challenge")?.as_str() {
                "http-01" => AcmeChallenge::Http01,
                "tls-alpn-01" => AcmeChallenge::TlsAlpn01,
                other => {
                    return Err(err(
                        src,
                        v.span(),
                        format!("challenge: '{other}' is not http-01 or tls-alpn-01"),
                    ))
                }
            };
        }
        if let Some(v) = &at.renew_before {
            spec.renew_before = as_str(v.get_ref())
                .and_then(parse_positive_duration)
                .map_err(|e| err(src, v.span(), format!("renew_before: {e}")))?;
        }
        if let Some(v) = &at.ca_bundle {
            spec.ca_bundle = Some(PathBuf::from(text(v, "ca_bundle")?));
        }
    }
    if !spec.directory.starts_with("https://") {
        return Err(ConfigError::Usage(
            "--acme-directory: the CA's directory must be an https:// URL".to_string(),
        ));
    }
    if spec.domains.is_empty() {
        // Every exact host a route names: the sites this proxy serves.
        let mut hosts: Vec<String> = routes
            .iter()
            .filter_map(|r| r.host.as_deref())
            .filter(|h| !h.starts_with("*."))
            .filter_map(|h| domain(h).ok())
            .collect();
        hosts.sort_unstable();
        hosts.dedup();
        spec.domains = hosts;
    }
    let where_ = |m: String| match section {
        Some((a, src)) => err(src, a.span(), m),
        None => ConfigError::Usage(m),
    };
    if spec.domains.is_empty() {
        return Err(where_(
            "[acme] has no domain: list them in domains (or --acme-domain), or route exact hosts"
                .to_string(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(d) = spec.domains.iter().find(|d| !seen.insert(d.as_str())) {
        return Err(where_(format!("[acme] domains: '{d}' is listed twice")));
    }
    if tls.is_none() {
        return Err(where_(
            "[acme] needs the HTTPS listener: [tls] listen (or --tls-listen)".to_string(),
        ));
    }
    Ok(Some(spec))
}

/// A name a certificate can be ordered for by http-01 or tls-alpn-01: a DNS name of letters,
/// digits and hyphens, lowercase, no wildcard (those need dns-01), no IP address.
fn domain(raw: &str) -> Result<String, String> {
    let name = raw.trim_end_matches('.').to_ascii_lowercase();
    if name.starts_with("*.") {
        return Err(format!(
            "'{raw}': a wildcard needs the dns-01 challenge, which is not supported"
        ));
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("'{raw}': an IP address, not a domain name"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.len() > 253 || !name.contains('.') || !name.split('.').all(label_ok) {
        return Err(format!("'{raw}' is not a domain name"));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::domain;

    #[test]
    fn domains_are_dns_names_without_wildcards() {
        assert_eq!(domain("Example.COM."), Ok("example.com".to_string()));
        assert_eq!(domain("a-b.example.com"), Ok("a-b.example.com".to_string()));
        for bad in [
            "*.example.com",
            "127.0.0.1",
            "::1",
            "localhost",
            "-a.example.com",
            "a..example.com",
            "a_b.example.com",
            "",
        ] {
            assert!(domain(bad).is_err(), "{bad}");
        }
    }
}
