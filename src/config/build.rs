//! The merge of command line and file into a [`Config`]: the global settings, the access log
//! and the client limits. The pools and routes are in [`pools`](super::pools).

use super::defaults::*;
use super::error::{file_error, ConfigError};
use super::file::{self, At, Source};
use super::flags;
use super::pools::pools_and_routes;
use super::read::{as_bool, as_str, as_text, rate};
use super::spec::*;
use super::values;
use crate::http::Limits;
use clap::parser::ValueSource;
use clap::ArgMatches;
use std::net::SocketAddr;
use std::time::Duration;
use toml::Value;

/// Whether the flag whose field is `id` was given on the command line.
pub(super) fn given(m: &ArgMatches, id: &str) -> bool {
    // A key with no flag (`log_level`) is never given; asking clap about it would be a
    // debug-build assertion.
    m.try_contains_id(id).unwrap_or(false) && m.value_source(id) == Some(ValueSource::CommandLine)
}

/// The global settings: a flag given wins, then the file's key, then the flag's default.
struct Merge<'a> {
    matches: &'a ArgMatches,
    source: Option<&'a Source>,
}

impl Merge<'_> {
    /// `cli` if the flag `key` was given (or there is no file value), else the file's value
    /// parsed with `parse`.
    fn pick<T>(
        &self,
        key: &str,
        cli: T,
        value: &Option<At<Value>>,
        parse: impl Fn(&Value) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match (given(self.matches, key), value, self.source) {
            (false, Some(v), Some(src)) => parse(v.get_ref())
                .map_err(|e| file_error(src.error(&v.span(), format!("{key}: {e}")))),
            _ => Ok(cli),
        }
    }
}

/// Build the config from the parsed command line and, with `--config`, the file.
/// `text` replaces reading the file (tests).
pub(super) fn build(
    cli: flags::Cli,
    matches: &ArgMatches,
    text: Option<&str>,
) -> Result<Config, ConfigError> {
    let (file, source) = match &cli.config {
        Some(path) => {
            if !cli.upstreams.is_empty() {
                return Err(ConfigError::Usage(
                    "--upstream cannot be used with --config: put the upstreams in a pool of the file"
                        .to_string(),
                ));
            }
            let (file, source) = match text {
                Some(text) => {
                    let source = Source {
                        path: path.clone(),
                        text: text.to_string(),
                    };
                    (file::parse(&source).map_err(file_error)?, source)
                }
                None => file::read(path).map_err(file_error)?,
            };
            (file, Some(source))
        }
        None => (file::File::default(), None),
    };
    let m = Merge {
        matches,
        source: source.as_ref(),
    };
    use values::*;
    let positive = |v: &Value| as_str(v).and_then(parse_positive_duration);
    let (listen, dual_stack) = m.pick("listen", cli.listen, &file.listen, |v| {
        as_str(v).and_then(parse_listen)
    })?;
    let workers = m.pick("workers", cli.workers, &file.workers, |v| {
        as_text(v).and_then(|t| parse_count(&t))
    })?;
    let health_interval = m.pick(
        "health_interval",
        cli.health_interval,
        &file.health_interval,
        positive,
    )?;
    let health_timeout = m.pick(
        "health_timeout",
        cli.health_timeout,
        &file.health_timeout,
        positive,
    )?;
    let connect_timeout = m.pick(
        "connect_timeout",
        cli.connect_timeout,
        &file.connect_timeout,
        positive,
    )?;
    let client_header_timeout = m.pick(
        "client_header_timeout",
        cli.client_header_timeout,
        &file.client_header_timeout,
        positive,
    )?;
    let keepalive_timeout = m.pick(
        "keepalive_timeout",
        cli.keepalive_timeout,
        &file.keepalive_timeout,
        positive,
    )?;
    let read_timeout = m.pick(
        "read_timeout",
        cli.read_timeout,
        &file.read_timeout,
        positive,
    )?;
    let write_timeout = m.pick(
        "write_timeout",
        cli.write_timeout,
        &file.write_timeout,
        positive,
    )?;
    let shutdown_timeout = m.pick(
        "shutdown_timeout",
        cli.shutdown_timeout,
        &file.shutdown_timeout,
        |v| as_str(v).and_then(parse_duration),
    )?;
    let backlog = m.pick("backlog", cli.backlog, &file.backlog, |v| {
        as_text(v).and_then(|t| parse_backlog(&t))
    })?;
    let size = |v: &Value| as_text(v).and_then(|t| parse_size(&t));
    let size_or_zero = |v: &Value| as_text(v).and_then(|t| parse_size_or_zero(&t));
    let max_request_line = m.pick(
        "max_request_line",
        cli.max_request_line,
        &file.max_request_line,
        size,
    )?;
    let max_head = m.pick("max_head", cli.max_head, &file.max_head, |v| {
        as_text(v).and_then(|t| values::parse_head_size(&t))
    })?;
    let max_fields = m.pick("max_fields", cli.max_fields, &file.max_fields, |v| {
        as_text(v).and_then(|t| parse_count(&t))
    })?;
    let upstream_idle = m.pick(
        "upstream_idle",
        cli.upstream_idle,
        &file.upstream_idle,
        |v| {
            as_text(v).and_then(|t| {
                t.parse::<u32>()
                    .map(Some)
                    .map_err(|_| format!("'{t}' is not a whole number"))
            })
        },
    )?;
    let upstream_idle_timeout = m.pick(
        "upstream_idle_timeout",
        cli.upstream_idle_timeout,
        &file.upstream_idle_timeout,
        positive,
    )?;
    let upstream_max_requests = m.pick(
        "upstream_max_requests",
        cli.upstream_max_requests,
        &file.upstream_max_requests,
        |v| {
            as_text(v).and_then(|t| match t.parse::<u32>() {
                Ok(0) | Err(_) => Err(format!("'{t}' is not a whole number of at least 1")),
                Ok(n) => Ok(n),
            })
        },
    )?;
    let splice_min = m.pick("splice_min", cli.splice_min, &file.splice_min, |v| {
        size_or_zero(v).map(Some)
    })?;
    let request_buffer = m.pick(
        "request_buffer",
        cli.request_buffer,
        &file.request_buffer,
        |v| as_text(v).and_then(|t| values::parse_request_buffer(&t)),
    )?;
    let max_connections = m.pick(
        "max_connections",
        cli.max_connections,
        &file.max_connections,
        |v| as_text(v).and_then(|t| parse_count(&t)).map(Some),
    )?;
    let forwarded_for = m.pick(
        "forwarded_for",
        cli.forwarded_for,
        &file.forwarded_for,
        |v| as_str(v).and_then(parse_forwarded_for),
    )?;
    let underscores_in_headers = m.pick(
        "underscores_in_headers",
        cli.underscores_in_headers,
        &file.underscores_in_headers,
        as_bool,
    )?;
    let cli_level = log_level(cli.verbose, cli.quiet);
    let log_level = if cli.verbose > 0 || cli.quiet > 0 {
        cli_level
    } else {
        m.pick("log_level", cli_level, &file.log_level, |v| {
            as_str(v).and_then(parse_log_level)
        })?
    };
    if max_request_line > max_head {
        let message = format!(
            "--max-request-line ({max_request_line}) must not exceed --max-head ({max_head})"
        );
        return Err(match (&source, &file.max_request_line) {
            (Some(src), Some(v)) if !given(matches, "max_request_line") => {
                file_error(src.error(&v.span(), message))
            }
            _ => ConfigError::Usage(message),
        });
    }
    // A probe that outlived the interval would overlap the next one.
    let health_timeout = health_timeout.min(health_interval);
    let proxy_protocol = m.pick(
        "proxy_protocol",
        cli.proxy_protocol,
        &file.proxy_protocol,
        as_bool,
    )?;
    let proxy_protocol_from = match (&file.proxy_protocol_from, &source) {
        (Some(list), Some(src)) if cli.proxy_protocol_from.is_empty() => {
            let mut blocks = Vec::new();
            for c in list.get_ref() {
                blocks.push(
                    crate::proxy_protocol::Cidr::parse(c.get_ref()).map_err(|e| {
                        file_error(src.error(&c.span(), format!("proxy_protocol_from: {e}")))
                    })?,
                );
            }
            blocks
        }
        _ => cli.proxy_protocol_from.clone(),
    };
    let file_admin = file
        .admin
        .as_ref()
        .and_then(|a| a.get_ref().listen.as_ref());
    let admin = match (cli.admin, file_admin, &source) {
        (Some((addr, _)), _, _) => Some(addr),
        (None, Some(v), Some(src)) => Some(
            as_str(v.get_ref())
                .and_then(parse_listen)
                .map(|(a, _)| a)
                .map_err(|e| file_error(src.error(&v.span(), format!("admin listen: {e}"))))?,
        ),
        _ if cli.demo => Some(SocketAddr::from(([127, 0, 0, 1], DEMO_ADMIN_PORT))),
        _ => None,
    };
    let admin_token = match (
        file.admin
            .as_ref()
            .and_then(|a| a.get_ref().token_file.as_ref()),
        &source,
    ) {
        (Some(v), Some(src)) => Some(
            as_str(v.get_ref())
                .and_then(read_token)
                .map_err(|e| file_error(src.error(&v.span(), format!("token_file: {e}"))))?,
        ),
        _ => None,
    };
    let tls = super::tls::tls(&cli, &file, source.as_ref())?;
    let acme_flags = super::acme::Flags {
        email: cli.acme_email.clone(),
        domains: cli.acme_domain.clone(),
        directory: cli.acme_directory.clone(),
    };
    let access_log = access_log(&cli, matches, &file, source.as_ref())?;
    let client_limits = match (&file.client_limits, &source) {
        (Some(l), Some(src)) => client_limits(l.get_ref(), src)?,
        _ => ClientLimits {
            rate: None,
            connections: None,
            max_clients: MAX_CLIENTS,
            shared: None,
        },
    };

    let mut notices = Vec::new();
    let mut warnings = Vec::new();
    if proxy_protocol && proxy_protocol_from.is_empty() {
        warnings.push(
            "proxy_protocol is on and proxy_protocol_from is empty: any peer that can reach the \
             listener can claim any client address (set proxy_protocol_from to the load \
             balancers' addresses)"
                .to_string(),
        );
    }
    let defaults = HealthSpec {
        check: Check::Tcp,
        path: "/".to_string(),
        host: None,
        expect: StatusRanges(vec![(200, 399)]),
        interval: health_interval,
        timeout: health_timeout,
        rise: 1,
        fall: 1,
        send_proxy: None,
        tls: false,
    };
    let (pools, routes) = match &source {
        Some(src) => pools_and_routes(&file, src, &defaults, &mut notices, &mut warnings)?,
        None => {
            let upstreams: Vec<Address> = if cli.upstreams.is_empty() {
                if !cli.demo {
                    return Err(ConfigError::Usage(
                        "at least one --upstream is required (or --demo, or --config)".to_string(),
                    ));
                }
                DEMO_PORTS
                    .iter()
                    .map(|&port| {
                        let addr = SocketAddr::from(([127, 0, 0, 1], port));
                        Address {
                            name: addr.to_string(),
                            addr,
                        }
                    })
                    .collect()
            } else {
                let mut list = Vec::with_capacity(cli.upstreams.len());
                for (address, notice) in cli.upstreams {
                    notices.extend(notice);
                    list.push(address);
                }
                list
            };
            let count = upstreams.len();
            let pool = PoolSpec {
                name: DEFAULT_POOL.to_string(),
                strategy: Strategy::RoundRobin,
                hash_key: None,
                upstreams: upstreams
                    .into_iter()
                    .map(|address| UpstreamSpec {
                        address,
                        weight: 1,
                        backup: false,
                        max_conns: None,
                    })
                    .collect(),
                health: defaults.clone(),
                retries: default_retries(count),
                slow_start: Duration::ZERO,
                queue_timeout: QUEUE_TIMEOUT,
                client_rate: None,
                send_proxy: None,
                tls: None,
                names: Vec::new(),
                discover: None,
                outlier: OUTLIER,
                retry_budget: RETRY_BUDGET,
            };
            let route = RouteSpec {
                host: None,
                path: None,
                pool: 0,
            };
            (vec![pool], vec![route])
        }
    };
    let acme = super::acme::acme(&acme_flags, &file, source.as_ref(), tls.as_ref(), &routes)?;
    let dns = super::pools::dns_spec(file.dns.as_ref(), source.as_ref())?;
    let tcp = match &source {
        Some(src) => {
            let mut taken = vec![listen];
            taken.extend(tls.as_ref().map(|t| t.listen));
            super::tcp::tcp_listeners(&file, src, &pools, &routes, &taken)?
        }
        None => Vec::new(),
    };

    Ok(Config {
        listen,
        dual_stack,
        workers,
        health_interval,
        health_timeout,
        connect_timeout,
        client_header_timeout,
        keepalive_timeout,
        read_timeout,
        write_timeout,
        shutdown_timeout,
        backlog,
        limits: Limits {
            max_request_line,
            max_head,
            max_fields,
            ..Limits::DEFAULT
        },
        demo: cli.demo,
        upstream_idle: upstream_idle.map(|n| n as usize),
        upstream_idle_timeout,
        upstream_max_requests,
        splice_min: splice_min.unwrap_or(SPLICE_MIN),
        splice_min_response: splice_min.unwrap_or(SPLICE_MIN_RESPONSE),
        request_buffer,
        max_connections,
        forwarded_for,
        underscores_in_headers,
        log_level,
        proxy_protocol,
        proxy_protocol_from,
        tls,
        acme,
        admin,
        admin_token,
        access_log,
        client_limits,
        pools,
        dns,
        tcp,
        routes,
        file: cli.config.clone(),
        notices,
        warnings,
    })
}

/// The access log from `--access-log`/`--access-log-format` over `[access_log]`.
fn access_log(
    cli: &flags::Cli,
    matches: &ArgMatches,
    file: &file::File,
    source: Option<&Source>,
) -> Result<Option<AccessLogSpec>, ConfigError> {
    let section = file.access_log.as_ref().map(|a| a.get_ref());
    let path = match (
        &cli.access_log,
        section.and_then(|a| a.path.as_ref()),
        source,
    ) {
        (Some(p), _, _) => Some(LogTarget::parse(p).map_err(ConfigError::Usage)?),
        (None, Some(v), Some(src)) => Some(
            as_str(v.get_ref())
                .and_then(LogTarget::parse)
                .map_err(|e| file_error(src.error(&v.span(), format!("access_log path: {e}"))))?,
        ),
        _ => None,
    };
    let format = match (section.and_then(|a| a.format.as_ref()), source) {
        (Some(v), Some(src)) if !given(matches, "access_log_format") => as_str(v.get_ref())
            .and_then(LogFormat::parse)
            .map_err(|e| file_error(src.error(&v.span(), format!("access_log format: {e}"))))?,
        _ => cli.access_log_format,
    };
    if path.is_none() {
        if let (Some(a), Some(src)) = (&file.access_log, source) {
            return Err(file_error(src.error(
                &a.span(),
                "[access_log] needs a path (\"stdout\" or a file)",
            )));
        }
    }
    Ok(path.map(|path| AccessLogSpec { path, format }))
}

/// `[client_limits]`.
fn client_limits(l: &file::LimitsFile, src: &Source) -> Result<ClientLimits, ConfigError> {
    let err = |span: std::ops::Range<usize>, message: String| file_error(src.error(&span, message));
    let rate = rate(&l.requests_per_second, &l.burst, src)?;
    let connections = match &l.connections {
        Some(c) => match c.get_ref().as_integer() {
            Some(n) if (1..=i64::from(u32::MAX)).contains(&n) => Some(n as u32),
            _ => {
                return Err(err(
                    c.span(),
                    "connections must be a whole number of at least 1".to_string(),
                ))
            }
        },
        None => None,
    };
    let max_clients = match &l.max_clients {
        Some(m) => match m.get_ref().as_integer() {
            Some(n) if (1..=100_000_000).contains(&n) => n as usize,
            _ => {
                return Err(err(
                    m.span(),
                    "max_clients must be a whole number from 1 to 100000000".to_string(),
                ))
            }
        },
        None => MAX_CLIENTS,
    };
    let shared = match &l.shared {
        Some(url) => {
            values::check_redis_url(url.get_ref())
                .map_err(|e| err(url.span(), format!("shared: {e}")))?;
            Some(url.get_ref().clone())
        }
        None => None,
    };
    Ok(ClientLimits {
        rate,
        connections,
        max_clients,
        shared,
    })
}

/// The admin token in the file at `path`: its first line, at least 16 characters, printable
/// ASCII without spaces (what a Bearer token may be, RFC 6750 §2.1).
fn read_token(path: &str) -> Result<(std::path::PathBuf, String), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.len() < 16 {
        return Err(format!(
            "{path}: the token must be at least 16 characters (openssl rand -hex 32)"
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{path}: the token must be printable ASCII without spaces"
        ));
    }
    Ok((std::path::PathBuf::from(path), token.to_string()))
}
