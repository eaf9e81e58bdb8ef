//! `[tls]` and the `--tls-*` flags → a [`TlsSpec`]. Only the settings: the certificates are
//! loaded by `tls` (for `--check` too), which knows what a usable pair is.

use super::error::{file_error, ConfigError};
use super::file::{self, Source};
use super::flags;
use super::read::{as_bool, as_str};
use super::spec::{TlsSpec, TlsVersion};
use super::values::{parse_listen, parse_positive_duration};
use std::path::PathBuf;
use std::time::Duration;

/// How long a handshake may take by default, from the accept.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTPS listener from the flags over `[tls]`, or `None` when neither asks for one.
pub(super) fn tls(
    cli: &flags::Cli,
    file: &file::File,
    source: Option<&Source>,
) -> Result<Option<TlsSpec>, ConfigError> {
    let section = match (file.tls.as_ref(), source) {
        (Some(t), Some(src)) => Some((t, src)),
        _ => None,
    };
    if cli.tls_cert.len() != cli.tls_key.len() {
        return Err(ConfigError::Usage(format!(
            "--tls-cert and --tls-key go in pairs: {} certificates, {} keys",
            cli.tls_cert.len(),
            cli.tls_key.len()
        )));
    }
    let err =
        |src: &Source, span: std::ops::Range<usize>, m: String| file_error(src.error(&span, m));
    // With ACME the certificates may all be ordered: the listener needs none of its own.
    let acme = (file.acme.is_some() && source.is_some())
        || cli.acme_email.is_some()
        || !cli.acme_domain.is_empty()
        || cli.acme_directory.is_some();
    let listen = match (
        cli.tls_listen,
        section.and_then(|(t, s)| Some((t.get_ref().listen.as_ref()?, s))),
    ) {
        (Some(l), _) => Some(l),
        (None, Some((v, src))) => Some(
            as_str(v.get_ref())
                .and_then(parse_listen)
                .map_err(|e| err(src, v.span(), format!("tls listen: {e}")))?,
        ),
        (None, None) => None,
    };
    let Some((listen, dual_stack)) = listen else {
        if let Some((t, src)) = section {
            return Err(err(
                src,
                t.span(),
                "[tls] needs a listen address".to_string(),
            ));
        }
        if !cli.tls_cert.is_empty() || cli.redirect_http {
            return Err(ConfigError::Usage(
                "--tls-cert, --tls-key and --redirect-http need --tls-listen".to_string(),
            ));
        }
        return Ok(None);
    };
    let mut spec = TlsSpec {
        listen,
        dual_stack,
        certificates: cli
            .tls_cert
            .iter()
            .cloned()
            .zip(cli.tls_key.iter().cloned())
            .collect(),
        certificate_dir: None,
        min_version: TlsVersion::V1_2,
        handshake_timeout: HANDSHAKE_TIMEOUT,
        session_tickets: true,
        ticket_key_file: None,
        redirect_http: cli.redirect_http,
        hsts: None,
        bound: None,
    };
    if let Some((t, src)) = section {
        let t = t.get_ref();
        let path = |v: &file::At<toml::Value>, what: &str| -> Result<PathBuf, ConfigError> {
            as_str(v.get_ref())
                .map(PathBuf::from)
                .map_err(|e| err(src, v.span(), format!("{what}: {e}")))
        };
        // The flags' certificates come first (the default), then the file's.
        if let Some(list) = &t.certificates {
            for c in list.get_ref() {
                let c = c.get_ref();
                spec.certificates.push((
                    PathBuf::from(c.cert.get_ref()),
                    PathBuf::from(c.key.get_ref()),
                ));
            }
        }
        if let Some(v) = &t.certificate_dir {
            spec.certificate_dir = Some(path(v, "certificate_dir")?);
        }
        if let Some(v) = &t.min_version {
            spec.min_version = match v.get_ref() {
                toml::Value::String(s) if s == "1.2" => TlsVersion::V1_2,
                toml::Value::String(s) if s == "1.3" => TlsVersion::V1_3,
                toml::Value::Float(f) if *f == 1.2 => TlsVersion::V1_2,
                toml::Value::Float(f) if *f == 1.3 => TlsVersion::V1_3,
                _ => {
                    return Err(err(
                        src,
                        v.span(),
                        "min_version must be \"1.2\" or \"1.3\"".to_string(),
                    ))
                }
            };
        }
        if let Some(v) = &t.handshake_timeout {
            spec.handshake_timeout = as_str(v.get_ref())
                .and_then(parse_positive_duration)
                .map_err(|e| err(src, v.span(), format!("handshake_timeout: {e}")))?;
        }
        if let Some(v) = &t.session_tickets {
            spec.session_tickets = as_bool(v.get_ref())
                .map_err(|e| err(src, v.span(), format!("session_tickets: {e}")))?;
        }
        if let Some(v) = &t.ticket_key_file {
            spec.ticket_key_file = Some(path(v, "ticket_key_file")?);
        }
        if let Some(v) = &t.redirect_http {
            if !cli.redirect_http {
                spec.redirect_http = as_bool(v.get_ref())
                    .map_err(|e| err(src, v.span(), format!("redirect_http: {e}")))?;
            }
        }
        if let Some(v) = &t.hsts {
            let value =
                as_str(v.get_ref()).map_err(|e| err(src, v.span(), format!("hsts: {e}")))?;
            if value.is_empty()
                || !value
                    .bytes()
                    .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
            {
                return Err(err(
                    src,
                    v.span(),
                    "hsts must be a field value such as \"max-age=31536000\"".to_string(),
                ));
            }
            spec.hsts = Some(value.to_string());
        }
        if spec.certificates.is_empty() && spec.certificate_dir.is_none() && !acme {
            return Err(err(
                src,
                file.tls.as_ref().map_or(0..0, |t| t.span()),
                "[tls] needs certificates, a certificate_dir or [acme]".to_string(),
            ));
        }
    } else if spec.certificates.is_empty() && !acme {
        return Err(ConfigError::Usage(
            "--tls-listen needs at least one --tls-cert and --tls-key, or --acme-email".to_string(),
        ));
    }
    Ok(Some(spec))
}
