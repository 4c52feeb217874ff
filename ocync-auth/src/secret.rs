//! [`Secret`]: a string that never shows up in logs, error messages or `Debug` output.

use std::fmt;

/// A password, token or other credential material.
///
/// `Debug` and `Display` print `[REDACTED]`; the value is reachable only through
/// [`Secret::expose`], so every place that reveals it is easy to find. It deliberately has no
/// `Serialize` implementation.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_reveals_the_value() {
        let secret = Secret::new("hunter2");
        for shown in [
            format!("{secret}"),
            format!("{secret:?}"),
            format!("{secret:#?}"),
            format!("{:?}", Some(secret.clone())),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("[REDACTED]"), "{shown}");
        }
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn conversions_keep_the_value() {
        assert_eq!(Secret::from("a"), Secret::new("a".to_owned()));
        assert_eq!(Secret::from(String::from("b")).expose(), "b");
        assert_ne!(Secret::from("a"), Secret::from("b"));
    }
}
