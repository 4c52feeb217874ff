//! Durations (`cache_ttl`) and sizes (`staging_size_limit`, `chunk_size`).

use std::time::Duration;

/// `"0"`, `"<N>"` seconds or `"<N>s|m|h|d"`. Units are case-insensitive; a space may separate
/// number and unit.
pub(crate) fn parse_duration(input: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(input, "duration")?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "invalid duration '{input}': the unit '{unit}' is not one of s, m, h, d"
            ));
        }
    };
    number
        .checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("invalid duration '{input}': too large"))
}

/// `"0"`, `"<N>"` bytes or `"<N>B|KB|MB|GB|TB"` (SI, powers of 1000) or `"<N>KiB|MiB|GiB|TiB"`
/// (powers of 1024). Units are case-insensitive; a space may separate number and unit.
pub(crate) fn parse_size(input: &str) -> Result<u64, String> {
    let (number, unit) = split_number(input, "size")?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000_u64.pow(2),
        "gb" => 1000_u64.pow(3),
        "tb" => 1000_u64.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "invalid size '{input}': the unit '{unit}' is not one of B, KB, MB, GB, TB (or KiB, MiB, GiB, TiB)"
            ));
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("invalid size '{input}': too large"))
}

fn split_number<'a>(input: &'a str, what: &str) -> Result<(u64, &'a str), String> {
    let trimmed = input.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    if digits == 0 {
        return Err(format!(
            "invalid {what} '{input}': expected a whole number followed by an optional unit"
        ));
    }
    let number = trimmed[..digits]
        .parse::<u64>()
        .map_err(|_| format!("invalid {what} '{input}': the number is too large"))?;
    let unit = trimmed[digits..]
        .strip_prefix(' ')
        .unwrap_or(&trimmed[digits..]);
    Ok((number, unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("0", 0),
            ("300", 300),
            ("30s", 30),
            ("15m", 900),
            ("12h", 43_200),
            ("7d", 604_800),
            ("2 H", 7_200),
            (" 5m ", 300),
        ];
        for (input, secs) in ok {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_secs(secs)),
                "{input}"
            );
        }
        for bad in [
            "",
            "h",
            "-1h",
            "1.5h",
            "12w",
            "12hours",
            "1h30m",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(
            parse_duration("1w")
                .unwrap_err()
                .contains("'w' is not one of s, m, h, d")
        );
    }

    #[test]
    fn sizes() {
        let ok = [
            ("0", 0),
            ("512", 512),
            ("512B", 512),
            ("16MB", 16_000_000),
            ("16 mb", 16_000_000),
            ("2GB", 2_000_000_000),
            ("1TB", 1_000_000_000_000),
            ("4KB", 4_000),
            ("16MiB", 16 << 20),
        ];
        for (input, bytes) in ok {
            assert_eq!(parse_size(input), Ok(bytes), "{input}");
        }
        for bad in ["", "MB", "1.5GB", "-1MB", "10XB", "99999999999TB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
