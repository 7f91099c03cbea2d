//! Importance matrices in llama.cpp's two file formats: the GGUF one `llama-imatrix` writes by
//! default (`<tensor>.in_sum2` Σx² per column and expert, `<tensor>.counts` tokens per expert)
//! and the legacy `.dat`. Both read into one [`Imatrix`]; quantizers take the per-column mean
//! of x² ([`Imatrix::weights`]) exactly as `llama-quantize` derives it.

use std::collections::BTreeMap;
use std::path::Path;

use convert::gguf::{Array, GgufFile, Value};

use crate::error::{QuantizeError, Result};

/// Σx² and token counts for one weight matrix (per expert for MoE experts).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Row length of the weight (input columns).
    pub n_cols: usize,
    /// `n_mat × n_cols` sums of squared activations, expert-major.
    pub sums: Vec<f32>,
    /// Tokens seen per matrix (expert); one entry for dense weights.
    pub counts: Vec<f32>,
}

/// A whole importance matrix, keyed by GGUF tensor name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imatrix {
    pub entries: BTreeMap<String, Entry>,
    pub datasets: Vec<String>,
    pub chunk_count: u32,
    pub chunk_size: u32,
}

fn bad(path: &Path, message: impl Into<String>) -> QuantizeError {
    QuantizeError::Imatrix {
        file: path.to_path_buf(),
        message: message.into(),
    }
}

impl Imatrix {
    /// Reads either format, by content (GGUF magic) rather than by extension.
    pub fn read(path: &Path) -> Result<Self> {
        let mut magic = [0u8; 4];
        let head = std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .map_err(|e| bad(path, format!("cannot read: {e}")));
        match head {
            Ok(()) if magic == *b"GGUF" => Self::read_gguf(path),
            Ok(()) => Self::read_dat(path),
            Err(e) => Err(e),
        }
    }

    fn read_gguf(path: &Path) -> Result<Self> {
        let f = GgufFile::open(path)?;
        let md = f.metadata();
        if md.get("general.type").and_then(Value::as_str) != Some("imatrix") {
            return Err(bad(
                path,
                "GGUF file is not an importance matrix (general.type != imatrix)",
            ));
        }
        let datasets = match md.get("imatrix.datasets") {
            Some(Value::Array(Array::String(v))) => v.clone(),
            _ => Vec::new(),
        };
        let u32_of = |k: &str| md.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
        let mut entries = BTreeMap::new();
        for t in f.tensors() {
            let Some(name) = t.name.strip_suffix(".in_sum2") else {
                continue;
            };
            let counts_name = format!("{name}.counts");
            let counts_info = f
                .header()
                .tensor(&counts_name)
                .ok_or_else(|| bad(path, format!("'{}' has no '{counts_name}'", t.name)))?;
            let n_cols = t.dims[0] as usize;
            let n_mat = t.dims.get(1).copied().unwrap_or(1) as usize;
            if counts_info.checked_numel() != Some(n_mat as u64) {
                return Err(bad(
                    path,
                    format!("'{counts_name}' does not have {n_mat} counts"),
                ));
            }
            let floats = |n: &str| -> Result<Vec<f32>> {
                let bytes = f.tensor_data(n)?;
                Ok(bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect())
            };
            let sums = floats(&t.name)?;
            let counts = floats(&counts_name)?;
            if sums.iter().chain(&counts).any(|v| !v.is_finite()) {
                return Err(bad(path, format!("'{name}' holds NaN or Inf")));
            }
            entries.insert(
                name.to_string(),
                Entry {
                    n_cols,
                    sums,
                    counts,
                },
            );
        }
        Ok(Imatrix {
            entries,
            datasets,
            chunk_count: u32_of("imatrix.chunk_count"),
            chunk_size: u32_of("imatrix.chunk_size"),
        })
    }

    fn read_dat(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).map_err(|e| bad(path, format!("cannot read: {e}")))?;
        let mut r = DatReader {
            data: &data,
            pos: 0,
            path,
        };
        let n = r.i32("entry count")?;
        if n < 0 || n as usize > data.len() / 12 {
            return Err(bad(
                path,
                format!("entry count {n} is not plausible: not an imatrix .dat file?"),
            ));
        }
        let mut entries = BTreeMap::new();
        for _ in 0..n {
            let len = r.i32("name length")?;
            let len = usize::try_from(len).map_err(|_| bad(path, "negative name length"))?;
            let name = String::from_utf8(r.bytes(len, "name")?.to_vec())
                .map_err(|_| bad(path, "name is not UTF-8"))?;
            let ncall = r.i32("call count")?;
            let nval = usize::try_from(r.i32("value count")?)
                .map_err(|_| bad(path, format!("'{name}': negative value count")))?;
            let raw = r.bytes(
                nval.checked_mul(4)
                    .ok_or_else(|| bad(path, "value count overflows"))?,
                "values",
            )?;
            let values: Vec<f32> = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if values.iter().any(|v| !v.is_finite()) {
                return Err(bad(path, format!("'{name}' holds NaN or Inf")));
            }
            // Legacy values are mean(x²)·ncall; store them as sums over `ncall` "tokens" so
            // `weights` divides them back to the mean.
            let count = ncall.max(1) as f32;
            entries.insert(
                name,
                Entry {
                    n_cols: nval,
                    sums: values,
                    counts: vec![count],
                },
            );
        }
        Ok(Imatrix {
            entries,
            datasets: Vec::new(),
            chunk_count: 0,
            chunk_size: 0,
        })
    }

    /// The importance weights of tensor `name` as `llama-quantize` computes them: Σx²/count per
    /// column and expert, and 1 for experts that never saw a token. `None` when the matrix has no
    /// entry for the tensor (it is then quantized without weights).
    pub fn weights(&self, name: &str) -> Option<Vec<f32>> {
        let e = self.entries.get(name)?;
        let mut out = Vec::with_capacity(e.sums.len());
        for (m, &count) in e.counts.iter().enumerate() {
            let row = e.sums.get(m * e.n_cols..(m + 1) * e.n_cols)?;
            if count > 0.0 {
                out.extend(row.iter().map(|&s| s / count));
            } else {
                out.extend(std::iter::repeat_n(1.0, e.n_cols));
            }
        }
        Some(out)
    }
}

/// A bounds-checked little-endian cursor over a legacy `.dat` file.
struct DatReader<'a> {
    data: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> DatReader<'a> {
    fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| bad(self.path, format!("truncated in the {what}")))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn i32(&mut self, what: &str) -> Result<i32> {
        let b = self.bytes(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

impl Imatrix {
    /// Writes llama.cpp's GGUF imatrix format: the keys `llama-imatrix` writes and, per weight in
    /// name order, `<name>.in_sum2` ([n_cols, n_mat]) and `<name>.counts` ([1, n_mat]).
    pub fn write_gguf(&self, path: &Path) -> Result<()> {
        use convert::gguf::{GgufWriter, Metadata, TensorInfo};
        use kernels::GgmlType;
        let mut md = Metadata::new();
        md.set("general.type", Value::String("imatrix".into()));
        md.set(
            "imatrix.datasets",
            Value::Array(Array::String(self.datasets.clone())),
        );
        md.set("imatrix.chunk_count", Value::U32(self.chunk_count));
        md.set("imatrix.chunk_size", Value::U32(self.chunk_size));
        let mut infos = Vec::with_capacity(self.entries.len() * 2);
        for (name, e) in &self.entries {
            // ggml writes only up to the last dimension that is not 1.
            let n_mat = e.counts.len() as u64;
            let (sum_dims, count_dims) = if n_mat == 1 {
                (vec![e.n_cols as u64], vec![1])
            } else {
                (vec![e.n_cols as u64, n_mat], vec![1, n_mat])
            };
            infos.push(TensorInfo {
                name: format!("{name}.in_sum2"),
                dims: sum_dims,
                ty: GgmlType::F32,
                offset: 0,
            });
            infos.push(TensorInfo {
                name: format!("{name}.counts"),
                dims: count_dims,
                ty: GgmlType::F32,
                offset: 0,
            });
        }
        let mut w = GgufWriter::create(path, &md, infos)?;
        for (name, e) in &self.entries {
            let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
            w.write_tensor(&format!("{name}.in_sum2"), &bytes(&e.sums))?;
            w.write_tensor(&format!("{name}.counts"), &bytes(&e.counts))?;
        }
        Ok(w.finish()?)
    }
}
