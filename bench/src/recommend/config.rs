//! `[recommend]` in `g4q.toml`: the constraints and the headroom, read like verify's gates
//! (`[verify.gates]` may sit in the same file). Unknown keys are errors: a misspelt constraint
//! that never applies is worse than none.
//!
//! ```toml
//! [recommend]
//! max_kld = 0.01         # mean KL divergence at most this
//! max_ppl_ratio = 1.05   # candidate / reference perplexity at most this
//! min_top1 = 0.9         # top-1 agreement at least this (0..1)
//! min_decode_tps = 20    # predicted decode tokens/s at least this
//! max_memory = "20GiB"   # memory at the context at most this (bytes, or KiB/MiB/GiB/TiB, KB/MB/GB/TB)
//! headroom = 0.1         # share of each device's memory kept free (default: the profile's, else 0.1)
//! ```

use serde::Deserialize;

use super::choose::Constraints;

/// What `[recommend]` sets.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Settings {
    pub constraints: Constraints,
    pub headroom: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Read and checked by `verify::gates`.
    #[allow(dead_code)]
    verify: Option<toml::Value>,
    recommend: Option<Section>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    max_kld: Option<f64>,
    max_ppl_ratio: Option<f64>,
    min_top1: Option<f64>,
    min_decode_tps: Option<f64>,
    max_memory: Option<Size>,
    headroom: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

/// Reads `[recommend]` from a `g4q.toml` text (`file` names it in errors); a file without it
/// sets nothing. The `[verify]` part is checked too, by verify's own reader.
pub fn from_toml(text: &str, file: &str) -> Result<Settings, String> {
    verify::gates::Thresholds::from_toml(text, file).map_err(|e| e.to_string())?;
    let f: File = toml::from_str(text)
        .map_err(|e| format!("{file}: {}", e.message().trim().replace('\n', " ")))?;
    let Some(s) = f.recommend else {
        return Ok(Settings::default());
    };
    let max_memory = match s.max_memory {
        None => None,
        Some(Size::Bytes(b)) => Some(b),
        Some(Size::Text(t)) => {
            Some(verify::size::parse_size(&t).map_err(|e| format!("{file}: max_memory: {e}"))?)
        }
    };
    let constraints = Constraints {
        max_kld: s.max_kld,
        max_ppl_ratio: s.max_ppl_ratio,
        min_top1: s.min_top1,
        min_decode_tps: s.min_decode_tps,
        max_memory,
    };
    constraints.validate(file)?;
    check_headroom(s.headroom, file)?;
    Ok(Settings {
        constraints,
        headroom: s.headroom,
    })
}

/// Rejects a headroom outside `0..1`.
pub fn check_headroom(h: Option<f64>, origin: &str) -> Result<(), String> {
    match h {
        Some(v) if !(0.0..1.0).contains(&v) => Err(format!(
            "{origin}: headroom = {v} must be a fraction in 0..1"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_reads_and_rejects_typos() {
        let s = from_toml(
            "[verify.gates]\nmax_kld = 0.5\n[recommend]\nmax_kld = 0.01\nmax_memory = \"2GiB\"\nheadroom = 0.2\n",
            "g4q.toml",
        )
        .unwrap();
        assert_eq!(s.constraints.max_kld, Some(0.01));
        assert_eq!(s.constraints.max_memory, Some(2 << 30));
        assert_eq!(s.headroom, Some(0.2));
        let s = from_toml("[recommend]\nmax_memory = 1000\n", "g").unwrap();
        assert_eq!(s.constraints.max_memory, Some(1000));
        let e = from_toml("[recommend]\nmax_kdl = 0.01\n", "g4q.toml").unwrap_err();
        assert!(e.starts_with("g4q.toml: unknown field `max_kdl`"), "{e}");
        let e = from_toml("[recommend]\nmin_top1 = 2\n", "g4q.toml").unwrap_err();
        assert!(e.contains("min_top1"), "{e}");
        let e = from_toml("[recommend]\nheadroom = 1.0\n", "g4q.toml").unwrap_err();
        assert!(e.contains("headroom"), "{e}");
        assert!(from_toml("[recomend]\n", "g4q.toml").is_err());
        assert_eq!(from_toml("", "g").unwrap(), Settings::default());
        println!("checked 7 config cases");
    }
}
