//! Shared helpers of the fixture tests: locating `../shared/fixtures` and reading
//! `reference.safetensors`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The fixtures folder: `G4Q_FIXTURES`, else `../shared/fixtures` from the workspace root.
pub fn fixtures_dir() -> PathBuf {
    testkit::fixtures_dir()
}

/// Fixture folders holding a `reference.safetensors`, sorted. Panics (test failure) when the
/// fixtures folder is missing or holds none.
pub fn fixture_folders() -> Vec<PathBuf> {
    let dir = fixtures_dir();
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fixtures folder {} unreadable: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("reference.safetensors").is_file())
        .collect();
    out.sort();
    assert!(
        !out.is_empty(),
        "no fixture with reference.safetensors under {}",
        dir.display()
    );
    out
}

/// A loaded `reference.safetensors`.
pub struct Reference {
    bytes: Vec<u8>,
}

impl Reference {
    pub fn open(folder: &Path) -> Reference {
        let p = folder.join("reference.safetensors");
        Reference {
            bytes: std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        }
    }

    fn view(&self, name: &str) -> Option<(Vec<usize>, safetensors::Dtype, Vec<u8>)> {
        let st = safetensors::SafeTensors::deserialize(&self.bytes).expect("reference parses");
        let t = st.tensor(name).ok()?;
        Some((t.shape().to_vec(), t.dtype(), t.data().to_vec()))
    }

    pub fn has(&self, name: &str) -> bool {
        self.view(name).is_some()
    }

    /// Sequence names `seq0`, `seq1`, … present.
    pub fn sequences(&self) -> Vec<String> {
        (0..)
            .map(|i| format!("seq{i}"))
            .take_while(|s| self.has(&format!("{s}.input_ids")))
            .collect()
    }

    pub fn ids(&self, name: &str) -> Vec<u32> {
        let (_, dt, data) = self.view(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(dt, safetensors::Dtype::I64, "{name}");
        data.chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect()
    }

    pub fn f32s(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let (shape, dt, data) = self.view(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(dt, safetensors::Dtype::F32, "{name}");
        let v = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        (shape, v)
    }
}

/// `||a - b|| / ||b||` in f64.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-300)).sqrt()
}

/// Index of the largest value of each `width`-wide row.
pub fn argmax_rows(x: &[f32], width: usize) -> Vec<usize> {
    x.chunks(width)
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv {
                        (i, v)
                    } else {
                        (bi, bv)
                    }
                })
                .0
        })
        .collect()
}

/// Model layouts the tests run when present.
pub const LAYOUTS: &[&str] = &["released-bf16", "causal-f32"];
