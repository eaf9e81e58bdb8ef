//! Text made safe to show: a JSON string literal (the status page's JSON, the access log's
//! JSON lines) and a URL without its password (logs and error messages). Pure.

use std::fmt::Write;

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `url` with its password (if any) replaced by `***`, for the log.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((auth, host)) => match auth.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => format!("{scheme}://***@{host}"),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_kept_out_of_the_log() {
        assert_eq!(
            redacted("redis://:secret@redis.internal/2"),
            "redis://:***@redis.internal/2"
        );
        assert_eq!(redacted("redis://app:pw@h:1/0"), "redis://app:***@h:1/0");
        assert_eq!(redacted("redis://h:1/0"), "redis://h:1/0");
    }
}
