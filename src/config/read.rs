//! A value of the file as what the configuration needs: a string, a number, a flag or a rate,
//! or the error that says where in the file it is wrong.

use super::error::{file_error, ConfigError};
use super::file::{self, At, Source};
use super::spec::Rate;
use toml::Value;

/// A string value, or an error naming what was expected.
pub fn as_str(v: &Value) -> Result<&str, String> {
    v.as_str()
        .ok_or_else(|| format!("expected a string, found {}", v.type_str()))
}

/// A whole number given as an integer or a string.
pub fn as_text(v: &Value) -> Result<String, String> {
    match v {
        Value::Integer(i) => Ok(i.to_string()),
        Value::String(s) => Ok(s.clone()),
        other => Err(format!(
            "expected a number or a string, found {}",
            other.type_str()
        )),
    }
}

pub fn as_bool(v: &Value) -> Result<bool, String> {
    v.as_bool()
        .ok_or_else(|| format!("expected true or false, found {}", v.type_str()))
}

/// A rate from `requests_per_second` and `burst` (none without a rate; a burst alone is an
/// error).
pub fn rate(
    per_second: &Option<At<Value>>,
    burst: &Option<At<Value>>,
    src: &Source,
) -> Result<Option<Rate>, ConfigError> {
    let err = |span: std::ops::Range<usize>, message: String| file_error(src.error(&span, message));
    let Some(r) = per_second else {
        if let Some(b) = burst {
            return Err(err(
                b.span(),
                "burst without requests_per_second".to_string(),
            ));
        }
        return Ok(None);
    };
    // The bounds keep the limiter's arithmetic exact: one request per 1,000 s at the least
    // (an emission interval of 10^12 ns, which a burst of 10^6 cannot push past u64), a
    // billion per second at the most (1 ns).
    let bounds = "requests_per_second must be a number from 0.001 to 1000000000";
    let per_second = match r.get_ref() {
        Value::Integer(n) => *n as f64,
        Value::Float(f) if f.is_finite() => *f,
        _ => return Err(err(r.span(), bounds.to_string())),
    };
    if !(0.001..=1e9).contains(&per_second) {
        return Err(err(r.span(), bounds.to_string()));
    }
    let burst = match burst {
        Some(b) => match b.get_ref().as_integer() {
            Some(n) if (0..=1_000_000).contains(&n) => n as u32,
            _ => {
                return Err(err(
                    b.span(),
                    "burst must be a whole number from 0 to 1000000".to_string(),
                ))
            }
        },
        None => 0,
    };
    Ok(Some(Rate { per_second, burst }))
}

/// `PATH:LINE:COL` of a span, for warnings.
pub fn position(src: &Source, span: &std::ops::Range<usize>) -> String {
    let (line, col) = file::line_col(&src.text, span.start);
    format!("{}:{line}:{col}", src.path.display())
}
