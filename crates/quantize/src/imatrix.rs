//! Importance matrices in llama.cpp's two file formats: the GGUF one `llama-imatrix` writes by
//! default (`<tensor>.in_sum2` Σx² per column and expert, `<tensor>.counts` tokens per expert)
//! and the legacy `.dat`. Both read into one [`Imatrix`]; quantizers take the per-column mean
//! of x² ([`Imatrix::weights`]) exactly as `llama-quantize` derives it.

use std::collections::BTreeMap;
use std::path::Path;

use convert::error::cut;
use convert::gguf::{Array, GgufFile, TensorInfo, Value};
use kernels::GgmlType;

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
        message: convert::error::bounded(message.into()),
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

    /// The GGUF format as `llama-imatrix` writes it and `llama-quantize` reads it: per weight,
    /// an F32 `<name>.in_sum2` (`[n_cols]` or `[n_cols, n_mat]`) and an F32 `<name>.counts`
    /// with `n_mat` values; an optional F32 `<name>.in_sum` (Σx, for statistics) of the same
    /// size is checked and not used. Any other type is an error, as in llama.cpp: values of
    /// another type must never be reinterpreted, nor dropped while the file is recorded as used.
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
            None => Vec::new(),
            Some(Value::Array(Array::String(v))) => v.clone(),
            Some(v) => {
                return Err(bad(
                    path,
                    format!(
                        "imatrix.datasets must be ARRAY[STRING], got {}",
                        v.type_name()
                    ),
                ))
            }
        };
        let u32_of = |k: &str| -> Result<u32> {
            match md.get(k) {
                None => Ok(0),
                Some(v) => v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        bad(
                            path,
                            format!(
                                "{k} must be an integer from 0 to 2^32-1, got {}",
                                cut(&v.to_string())
                            ),
                        )
                    }),
            }
        };
        // Group the tensors by weight; other tensors are ignored, as llama.cpp does.
        let mut parts: BTreeMap<&str, [Option<&TensorInfo>; 3]> = BTreeMap::new();
        for t in f.tensors() {
            for (i, suffix) in [".in_sum2", ".counts", ".in_sum"].iter().enumerate() {
                if let Some(name) = t.name.strip_suffix(suffix) {
                    parts.entry(name).or_default()[i] = Some(t);
                    break;
                }
            }
        }
        let mut entries = BTreeMap::new();
        for (name, [sums, counts, in_sum]) in parts {
            let (Some(sums), Some(counts)) = (sums, counts) else {
                return Err(bad(
                    path,
                    format!("'{name}' needs both '{name}.in_sum2' and '{name}.counts'"),
                ));
            };
            for t in [Some(sums), Some(counts), in_sum].into_iter().flatten() {
                if t.ty != GgmlType::F32 {
                    return Err(bad(
                        path,
                        format!(
                            "'{}' is {}, but importance matrices hold f32 values only (as llama.cpp writes them)",
                            t.name, t.ty
                        ),
                    ));
                }
            }
            let n_cols = sums.dims[0] as usize;
            let n_values = sums.checked_numel().unwrap_or(0) as usize;
            if n_cols == 0 || n_values == 0 {
                return Err(bad(path, format!("'{}' is empty", sums.name)));
            }
            let n_mat = n_values / n_cols;
            if counts.checked_numel() != Some(n_mat as u64) {
                return Err(bad(
                    path,
                    format!("'{}' does not have {n_mat} counts", counts.name),
                ));
            }
            if let Some(t) = in_sum.filter(|t| t.checked_numel() != Some(n_values as u64)) {
                return Err(bad(
                    path,
                    format!("'{}' does not have {n_values} values", t.name),
                ));
            }
            let floats = |t: &TensorInfo| -> Result<Vec<f32>> {
                Ok(f.tensor_data(&t.name)?
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect())
            };
            let sums = floats(sums)?;
            let counts = floats(counts)?;
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
            chunk_count: u32_of("imatrix.chunk_count")?,
            chunk_size: u32_of("imatrix.chunk_size")?,
        })
    }

    /// The legacy format as `llama-imatrix --output-format dat` writes it and llama.cpp's
    /// `common_imatrix_load_legacy` reads it (for `llama-quantize` and `llama-imatrix --in-file`
    /// alike): an entry count (at least 1), per entry the name (cut at a NUL, as a C string), the
    /// call count, the value count and mean(x²)·ncall, then an optional trailer of the chunk
    /// count and the dataset's name, which llama-quantize records in `quantize.imatrix.*`.
    /// A name that comes again replaces the earlier entry, as in llama.cpp's `std::map`.
    fn read_dat(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).map_err(|e| bad(path, format!("cannot read: {e}")))?;
        let mut r = DatReader {
            data: &data,
            pos: 0,
            path,
        };
        let n = r.i32("entry count")?;
        if n < 1 || n as usize > data.len() / 12 {
            return Err(bad(
                path,
                format!("entry count {n} is not plausible: not an imatrix .dat file?"),
            ));
        }
        let mut entries = BTreeMap::new();
        for _ in 0..n {
            let len = r.i32("name length")?;
            let len = usize::try_from(len).map_err(|_| bad(path, "negative name length"))?;
            let name = String::from_utf8(until_nul(r.bytes(len, "name")?).to_vec())
                .map_err(|_| bad(path, "name is not UTF-8"))?;
            let ncall = r.i32("call count")?;
            let nval = usize::try_from(r.i32("value count")?)
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad(path, format!("'{}': no values", cut(&name))))?;
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
                return Err(bad(path, format!("'{}' holds NaN or Inf", cut(&name))));
            }
            // Legacy values are mean(x²)·ncall; store them as sums over `ncall` "tokens" so
            // `weights` divides them back to the mean (llama-quantize takes them as they are
            // when ncall is not positive: a count of 1).
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
        let (chunk_count, datasets) = r.trailer()?;
        Ok(Imatrix {
            entries,
            datasets,
            chunk_count,
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

    /// The optional trailer after the entries: the chunk count (none, or not positive: 0, which
    /// llama-quantize leaves out of the metadata) and, when its length is positive, the
    /// dataset's name (cut at a NUL). A trailer cut short or followed by more bytes is an error.
    fn trailer(&mut self) -> Result<(u32, Vec<String>)> {
        if self.pos == self.data.len() {
            return Ok((0, Vec::new()));
        }
        let chunks = u32::try_from(self.i32("chunk count")?).unwrap_or(0);
        let mut datasets = Vec::new();
        if self.pos < self.data.len() {
            let len = self.i32("dataset name length")?;
            if let Ok(len) = usize::try_from(len) {
                let name = until_nul(self.bytes(len, "dataset name")?);
                let name = String::from_utf8(name.to_vec())
                    .map_err(|_| bad(self.path, "dataset name is not UTF-8"))?;
                if len > 0 {
                    datasets.push(name);
                }
            }
        }
        if self.pos != self.data.len() {
            return Err(bad(
                self.path,
                format!(
                    "{} bytes after the dataset name: not an imatrix .dat file?",
                    self.data.len() - self.pos
                ),
            ));
        }
        Ok((chunks, datasets))
    }
}

/// The bytes before the first NUL: what a C string of them holds.
fn until_nul(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |i| &b[..i])
}

impl Imatrix {
    /// Writes llama.cpp's GGUF imatrix format: the keys `llama-imatrix` writes and, per weight in
    /// name order, `<name>.in_sum2` ([n_cols, n_mat]) and `<name>.counts` ([1, n_mat]).
    pub fn write_gguf(&self, path: &Path) -> Result<()> {
        use convert::gguf::{GgufWriter, Metadata};
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

/// Per-tensor statistics of an importance matrix, as `llama-imatrix --show-statistics` prints
/// them for files without Σx (`in_sum`): all figures are over the per-column mean squares
/// E[x²] = Σx²/count of every expert that saw tokens. They show which tensors see large or
/// uneven activations (high σ, low entropy: a few columns dominate, so importance weighting
/// matters most there) and how much consecutive layers' inputs look alike.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorStats {
    /// GGUF tensor name.
    pub name: String,
    /// Σ E[x²] over the columns (of every expert with tokens).
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Sample standard deviation of E[x²].
    pub std_dev: f64,
    /// Values the figures cover: columns × experts with tokens.
    pub n: usize,
    /// Share of those values above 1e-5 (columns that carry signal), in %.
    pub active_pct: f64,
    /// Shannon entropy (bits) of E[x²] normalised to a distribution.
    pub entropy: f64,
    /// `entropy / log2(n)` in %: 100 means every column matters equally.
    pub entropy_norm_pct: f64,
    /// Share of values more than one σ from the mean, in %.
    pub z_outlier_pct: f64,
    /// Cosine similarity of E[x²] with the same tensor of the previous block, when it exists
    /// with the same shape.
    pub cos_prev: Option<f64>,
}

/// Threshold under which a column's mean square counts as inactive.
const ACTIVE_MIN: f64 = 1e-5;

impl Imatrix {
    /// Mean squares per column and expert, 0 for experts that saw no token.
    fn mean_squares(e: &Entry) -> Vec<f64> {
        let mut out = Vec::with_capacity(e.sums.len());
        for (m, &c) in e.counts.iter().enumerate() {
            let row = e.sums.get(m * e.n_cols..(m + 1) * e.n_cols).unwrap_or(&[]);
            if c > 0.0 {
                out.extend(row.iter().map(|&s| f64::from(s) / f64::from(c)));
            } else {
                out.extend(std::iter::repeat_n(0.0, row.len()));
            }
        }
        out
    }

    /// Statistics of every entry, in name order; entries without any token are left out.
    pub fn statistics(&self) -> Vec<TensorStats> {
        let mut out = Vec::with_capacity(self.entries.len());
        for (name, e) in &self.entries {
            let mut v = Vec::with_capacity(e.sums.len());
            for (m, &c) in e.counts.iter().enumerate() {
                if c <= 0.0 {
                    continue;
                }
                let row = e.sums.get(m * e.n_cols..(m + 1) * e.n_cols).unwrap_or(&[]);
                v.extend(row.iter().map(|&s| f64::from(s) / f64::from(c)));
            }
            let n = v.len();
            if n == 0 {
                continue;
            }
            let sum: f64 = v.iter().sum();
            let mean = sum / n as f64;
            let var = if n > 1 {
                v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
            } else {
                0.0
            };
            let std_dev = var.sqrt();
            let energy: f64 = v.iter().map(|x| x.max(0.0)).sum();
            let entropy = if energy > 0.0 {
                v.iter()
                    .map(|x| x.max(0.0) / energy)
                    .filter(|&p| p > 0.0)
                    .map(|p| -p * p.log2())
                    .sum()
            } else {
                0.0
            };
            let entropy_norm_pct = if n > 1 {
                100.0 * entropy / (n as f64).log2()
            } else {
                0.0
            };
            let outliers = if std_dev > 0.0 {
                v.iter()
                    .filter(|x| ((*x - mean) / std_dev).abs() > 1.0)
                    .count()
            } else {
                0
            };
            let active = v.iter().filter(|&&x| x > ACTIVE_MIN).count();
            out.push(TensorStats {
                name: name.clone(),
                sum,
                min: v.iter().copied().fold(f64::INFINITY, f64::min),
                max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                mean,
                std_dev,
                n,
                active_pct: 100.0 * active as f64 / n as f64,
                entropy,
                entropy_norm_pct,
                z_outlier_pct: 100.0 * outliers as f64 / n as f64,
                cos_prev: self.cos_with_previous_block(name, e),
            });
        }
        out
    }

    /// Cosine similarity between the mean squares of `name` and of the same tensor one block
    /// earlier (`blk.N.x` against `blk.N-1.x`).
    fn cos_with_previous_block(&self, name: &str, e: &Entry) -> Option<f64> {
        let rest = name.strip_prefix("blk.")?;
        let (layer, part) = rest.split_once('.')?;
        let prev_layer = layer.parse::<usize>().ok()?.checked_sub(1)?;
        let prev = self.entries.get(&format!("blk.{prev_layer}.{part}"))?;
        if prev.sums.len() != e.sums.len() || prev.counts.len() != e.counts.len() {
            return None;
        }
        let (a, b) = (Self::mean_squares(e), Self::mean_squares(prev));
        let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
        Some(match (na > 0.0, nb > 0.0) {
            (true, true) => (dot / (na * nb)).clamp(-1.0, 1.0),
            (false, false) => 1.0,
            _ => 0.0,
        })
    }
}

#[cfg(test)]
mod stats_tests {
    use super::*;

    fn entry(sums: Vec<f32>, counts: Vec<f32>) -> Entry {
        Entry {
            n_cols: sums.len() / counts.len(),
            sums,
            counts,
        }
    }

    #[test]
    fn statistics_of_known_values() {
        let mut im = Imatrix::default();
        // Mean squares [1, 1, 1, 1]: uniform, so maximal entropy and no outlier.
        im.entries
            .insert("blk.0.ffn_up.weight".into(), entry(vec![2.0; 4], vec![2.0]));
        // Mean squares [4, 0, 0, 0] plus an expert without tokens, which is skipped.
        im.entries.insert(
            "blk.1.ffn_up.weight".into(),
            entry(vec![8.0, 0.0, 0.0, 0.0, 5.0, 5.0, 5.0, 5.0], vec![2.0, 0.0]),
        );
        let s = im.statistics();
        assert_eq!(s.len(), 2);
        let (a, b) = (&s[0], &s[1]);
        assert_eq!(
            (a.sum, a.min, a.max, a.mean, a.std_dev, a.n),
            (4.0, 1.0, 1.0, 1.0, 0.0, 4)
        );
        assert_eq!(
            (a.entropy, a.entropy_norm_pct, a.active_pct),
            (2.0, 100.0, 100.0)
        );
        assert_eq!(a.cos_prev, None);
        assert_eq!((b.sum, b.min, b.max, b.mean, b.n), (4.0, 0.0, 4.0, 1.0, 4));
        assert_eq!(
            (b.entropy, b.active_pct, b.z_outlier_pct),
            (0.0, 25.0, 25.0)
        );
        assert!((b.std_dev - 2.0).abs() < 1e-12);
        // Different expert counts: no comparison with block 0.
        assert_eq!(b.cos_prev, None);
    }

    #[test]
    fn cosine_with_the_previous_block() {
        let mut im = Imatrix::default();
        im.entries.insert(
            "blk.0.attn_q.weight".into(),
            entry(vec![1.0, 0.0], vec![1.0]),
        );
        im.entries.insert(
            "blk.1.attn_q.weight".into(),
            entry(vec![3.0, 3.0], vec![3.0]),
        );
        let s = im.statistics();
        assert!((s[1].cos_prev.unwrap() - 0.5f64.sqrt()).abs() < 1e-12);
    }
}

#[cfg(test)]
mod dat_tests {
    use super::*;

    /// A `.dat` body: the entry count, then per entry name, ncall and values.
    fn dat(entries: &[(&[u8], i32, &[f32])]) -> Vec<u8> {
        let mut out = (entries.len() as i32).to_le_bytes().to_vec();
        for (name, ncall, values) in entries {
            out.extend((name.len() as i32).to_le_bytes());
            out.extend(*name);
            out.extend(ncall.to_le_bytes());
            out.extend((values.len() as i32).to_le_bytes());
            values.iter().for_each(|v| out.extend(v.to_le_bytes()));
        }
        out
    }

    fn read(bytes: &[u8]) -> Result<Imatrix> {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.dat");
        std::fs::write(&path, bytes).unwrap();
        Imatrix::read(&path)
    }

    fn err(bytes: &[u8], needle: &str) {
        let msg = read(bytes).unwrap_err().to_string();
        assert!(msg.contains("m.dat") && msg.contains(needle), "{msg}");
    }

    /// The parts of the format llama.cpp's `common_imatrix_load_legacy` reads that the fixture
    /// tests do not reach: repeated names (the last wins), names and dataset cut at a NUL, the
    /// trailer's forms, and what it refuses.
    #[test]
    fn legacy_names_and_trailer() {
        let body = dat(&[
            (b"a.weight", 2, &[4.0, 8.0]),
            (b"b.weight\0junk", 1, &[1.0]),
            (b"a.weight", 4, &[2.0, 2.0, 6.0]),
        ]);
        let im = read(&body).unwrap();
        let names: Vec<&str> = im.entries.keys().map(String::as_str).collect();
        assert_eq!(names, ["a.weight", "b.weight"]);
        assert_eq!(im.weights("a.weight"), Some(vec![0.5, 0.5, 1.5]));
        assert_eq!((im.chunk_count, im.datasets.len()), (0, 0));

        let with = |tail: &[u8]| [body.as_slice(), tail].concat();
        let trailer = |chunks: i32, len: i32, name: &[u8]| {
            [&chunks.to_le_bytes()[..], &len.to_le_bytes(), name].concat()
        };
        let im = read(&with(&trailer(8, 9, b"calib.txt"))).unwrap();
        assert_eq!((im.chunk_count, im.datasets), (8, vec!["calib.txt".into()]));
        let im = read(&with(&8i32.to_le_bytes())).unwrap();
        assert_eq!((im.chunk_count, im.datasets.len()), (8, 0));
        let im = read(&with(&trailer(-3, 4, b"d\0xy"))).unwrap();
        assert_eq!((im.chunk_count, im.datasets), (0, vec!["d".into()]));
        let im = read(&with(&trailer(5, 0, b""))).unwrap();
        assert_eq!((im.chunk_count, im.datasets.len()), (5, 0));
        let im = read(&with(&trailer(5, -1, b""))).unwrap();
        assert_eq!((im.chunk_count, im.datasets.len()), (5, 0));

        err(&with(&[1, 2]), "chunk count");
        err(&with(&trailer(8, 9, b"calib")), "dataset name");
        err(
            &with(&trailer(8, 2, b"abc")),
            "1 bytes after the dataset name",
        );
        err(&dat(&[]), "entry count 0");
        let mut cases = 9;
        for cut in 1..body.len() {
            // Cut anywhere: an error naming the file (short ones fail the magic read or the
            // count check before the entries).
            err(&body[..cut], "");
            cases += 1;
        }
        println!("legacy .dat: {cases} cases");
    }
}
