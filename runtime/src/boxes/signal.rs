//! Signal names as Docker takes them (`KILL`, `SIGTERM`, `15`), for `kill`, `stop`,
//! `--stop-signal` and the image's `StopSignal`.

use nix::sys::signal::Signal;

/// A signal that is neither a known name nor a valid number.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid signal {0:?}: use a name like TERM, SIGQUIT or KILL, or a number")]
pub struct BadSignal(pub String);

/// Parses a signal name (with or without `SIG`, any case) or number.
///
/// # Errors
/// [`BadSignal`].
pub fn parse_signal(s: &str) -> Result<i32, BadSignal> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n)
            .map(|sig| sig as i32)
            .map_err(|_| BadSignal(s.to_owned()));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| BadSignal(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_garbage() {
        assert_eq!(parse_signal("KILL"), Ok(9));
        assert_eq!(parse_signal("sigquit"), Ok(3));
        assert_eq!(parse_signal("SIGTERM"), Ok(15));
        assert_eq!(parse_signal("2"), Ok(2));
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("99").is_err());
        assert!(parse_signal("NOPE").is_err());
    }
}
