//! Byte counts as users write them on the command line and in `g4q.toml` (`--max-memory 4G`,
//! `max_memory = "24GiB"`): one parser, so every command accepts the same spellings.

/// A memory size: bytes, or a number with a unit (KiB, MiB, GiB, TiB: powers of 1024; KB, MB,
/// GB, TB: powers of 1000; case-insensitive, a space allowed).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 24GiB or 25769803776)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kib" | "k" => 1024.0,
        "mib" | "m" => 1024.0 * 1024.0,
        "gib" | "g" => 1024.0f64.powi(3),
        "tib" | "t" => 1024.0f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => {
            return Err(format!(
                "'{s}': unknown unit (KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            ))
        }
    };
    let bytes = value * mult;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("'{s}' is too large"));
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("24GiB").unwrap(), 24 << 30);
        assert_eq!(parse_size("24 GB").unwrap(), 24_000_000_000);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").is_err());
        println!("checked 6 sizes");
    }

    #[test]
    fn plain_suffixes_are_binary_and_nonsense_is_refused() {
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert!(parse_size("").is_err());
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("1e400").is_err());
        assert!(parse_size("99999999999999999999T").is_err());
        println!("checked 7 sizes");
    }
}
