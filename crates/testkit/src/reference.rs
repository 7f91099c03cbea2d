//! Reading transformers' `reference.safetensors` (and the files `g4q forward` writes, which hold
//! the same kinds of tensors), and the two comparisons the forward-pass tests make with it.

use std::path::Path;

use safetensors::{Dtype, SafeTensors};

/// The layouts a fixture folder may hold its checkpoint in; tests run the ones present.
pub const LAYOUTS: &[&str] = &["released-bf16", "causal-f32"];

/// A loaded safetensors file of f32 and i64 tensors.
pub struct Reference {
    bytes: Vec<u8>,
}

impl Reference {
    /// `folder/reference.safetensors`.
    pub fn open(folder: &Path) -> Reference {
        let p = folder.join("reference.safetensors");
        Reference::from_bytes(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
    }

    /// The file's bytes, e.g. read back from `g4q forward --out`.
    pub fn from_bytes(bytes: Vec<u8>) -> Reference {
        Reference { bytes }
    }

    fn view(&self, name: &str) -> Option<(Vec<usize>, Dtype, Vec<u8>)> {
        let st = SafeTensors::deserialize(&self.bytes).expect("safetensors parses");
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

    /// An int64 tensor of token ids.
    pub fn ids(&self, name: &str) -> Vec<u32> {
        let (_, dt, data) = self.view(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(dt, Dtype::I64, "{name}");
        data.chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect()
    }

    /// An f32 tensor: shape and values.
    pub fn f32s(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let (shape, dt, data) = self.view(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(dt, Dtype::F32, "{name}");
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

/// Index of the largest value of each `width`-wide row (the first one on ties).
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
