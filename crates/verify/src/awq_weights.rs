//! An AWQ int4 release (compressed-tensors `pack-quantized` safetensors, as `g4q convert
//! --format awq` writes it) as a [`Weights`] source, so the reference forward pass, and through
//! it `g4q verify`, runs the quantized model.
//!
//! A quantized linear `M` is stored as `M.weight_packed` (int32 `[out, ceil(in/8)]`, code + 8
//! at bits `4·(k%8)` of word `k/8`), `M.weight_scale` (bf16/f16/f32 `[out, in/G]`),
//! `M.weight_zero_point` (int32 `[ceil(out/8), in/G]`, zero point + 8 packed along the rows)
//! and `M.weight_shape` (int64 or int32 `[2]`); it is served as the matrix `M.weight`, dequantized row
//! by row as `(q − zp) · scale` computed, as compressed-tensors' `_dequantize` does, in the
//! scale's dtype (the exact product rounded to bf16/f16; f32 scales stay f32). Every other tensor is served dense. Headers are
//! untrusted: offsets, shapes and packed sizes are checked with checked arithmetic before any
//! access, and errors name the file and tensor.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use convert::pack_quantized;
use convert::stfile::{RawTensor, StFile};
use convert::Gemma4Config;
use serde_json::Value;

use crate::error::{Result, VerifyError};
use crate::weights::{widen, DenseMatrix, Dims, ElemType, Matrix, RowSource, Weights};

/// An opened AWQ release folder (`config.json` + `model.safetensors`, mapped).
pub struct AwqWeights {
    file: PathBuf,
    config: Gemma4Config,
    st: StFile,
    /// Canonical name → index of its entry in `st` (dense tensors, and the parts of quantized
    /// ones).
    raw: HashMap<String, usize>,
}

fn tensor_error(file: &Path, tensor: &str, message: impl Into<String>) -> VerifyError {
    VerifyError::Shape {
        tensor: format!("{tensor} in {}", file.display()),
        message: message.into(),
    }
}

impl AwqWeights {
    /// Whether `dir` holds an int4 compressed-tensors release: its config.json carries a
    /// `quantization_config` with `quant_method` `compressed-tensors`.
    pub fn is_release(dir: &Path) -> bool {
        std::fs::read_to_string(dir.join("config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| {
                v.get("quantization_config")?
                    .get("quant_method")?
                    .as_str()
                    .map(|m| m == "compressed-tensors")
            })
            .unwrap_or(false)
    }

    /// Opens `dir/config.json` and `dir/model.safetensors`.
    pub fn open(dir: &Path) -> Result<AwqWeights> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|e| VerifyError::Io {
            file: config_path.display().to_string(),
            source: e,
        })?;
        let config = Gemma4Config::from_json_str(&text, &config_path.display().to_string())?;
        let file = dir.join("model.safetensors");
        let st = StFile::open(&file)?;
        let names = st.tensors().iter().map(|t| t.name.as_str());
        let prefix = convert::catalogue::text_prefix(names);
        let raw = st
            .tensors()
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.name.strip_prefix(prefix).map(|c| (c.to_string(), i)))
            .collect();
        Ok(AwqWeights {
            file,
            config,
            st,
            raw,
        })
    }

    fn part(&self, name: &str) -> Option<(&RawTensor, &[u8])> {
        self.raw.get(name).map(|&i| {
            let t = &self.st.tensors()[i];
            (t, self.st.bytes(t))
        })
    }

    /// Whether `name` (canonical, ending in `.weight`) is stored as int4.
    pub fn is_quantized(&self, name: &str) -> bool {
        name.strip_suffix(".weight")
            .is_some_and(|m| self.raw.contains_key(&format!("{m}.weight_packed")))
    }

    fn int4(&self, name: &str) -> Result<Int4Rows<'_>> {
        let module = name.strip_suffix(".weight").unwrap_or(name);
        let get = |suffix: &str| {
            self.part(&format!("{module}.{suffix}")).ok_or_else(|| {
                tensor_error(
                    &self.file,
                    name,
                    format!("int4 tensor lacks {module}.{suffix}"),
                )
            })
        };
        let (shape_raw, shape_bytes) = get("weight_shape")?;
        let (packed_raw, packed) = get("weight_packed")?;
        let (scale_raw, scale) = get("weight_scale")?;
        let (zp_raw, zp) = get("weight_zero_point")?;
        // compressed-tensors writes int64 (`torch.tensor(shape)`); int32 is accepted too.
        let dims: Vec<i64> = match shape_raw.dtype.as_str() {
            "I64" => shape_bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
            "I32" => shape_bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64)
                .collect(),
            _ => Vec::new(),
        };
        if dims.len() != 2 || dims.iter().any(|&d| d <= 0 || d > u32::MAX as i64) {
            return Err(tensor_error(
                &self.file,
                name,
                "weight_shape is not two positive integers",
            ));
        }
        let (rows, cols) = (dims[0] as usize, dims[1] as usize);
        let scale_type = match scale_raw.dtype.as_str() {
            "BF16" => ElemType::BF16,
            "F16" => ElemType::F16,
            "F32" => ElemType::F32,
            d => {
                return Err(tensor_error(
                    &self.file,
                    name,
                    format!("weight_scale dtype {d}"),
                ))
            }
        };
        let groups = match scale_raw.shape[..] {
            [r, g] if r == rows && g > 0 && cols % g == 0 => g,
            _ => {
                return Err(tensor_error(
                    &self.file,
                    name,
                    format!(
                        "weight_scale shape {:?} does not fit [{rows}, {cols}]",
                        scale_raw.shape
                    ),
                ))
            }
        };
        let words = cols.div_ceil(8);
        if packed_raw.dtype != "I32" || packed_raw.shape != [rows, words] {
            return Err(tensor_error(
                &self.file,
                name,
                "weight_packed is not int32 [out, ceil(in/8)]",
            ));
        }
        if zp_raw.dtype != "I32" || zp_raw.shape != [rows.div_ceil(8), groups] {
            return Err(tensor_error(
                &self.file,
                name,
                "weight_zero_point is not int32 [ceil(out/8), groups]",
            ));
        }
        Ok(Int4Rows {
            name: name.to_string(),
            rows,
            cols,
            group: cols / groups,
            packed,
            scale,
            scale_type,
            zero: zp,
        })
    }
}

impl Weights for AwqWeights {
    fn config(&self) -> &Gemma4Config {
        &self.config
    }

    fn has(&self, name: &str) -> bool {
        self.raw.contains_key(name) || self.is_quantized(name)
    }

    fn matrix(&self, name: &str) -> Result<Matrix<'_>> {
        if self.is_quantized(name) {
            return Ok(Box::new(self.int4(name)?));
        }
        let (raw, bytes) = self
            .part(name)
            .ok_or_else(|| tensor_error(&self.file, name, "not in this file"))?;
        let (rows, cols) = match raw.shape[..] {
            [r, c] => (r, c),
            [e, r, c] => (
                e.checked_mul(r)
                    .ok_or_else(|| tensor_error(&self.file, name, "element count overflows"))?,
                c,
            ),
            _ => {
                return Err(tensor_error(
                    &self.file,
                    name,
                    format!("shape {:?} is not a matrix", raw.shape),
                ))
            }
        };
        Ok(Box::new(DenseMatrix::new(
            name,
            dense_type(&self.file, name, &raw.dtype)?,
            rows,
            cols,
            Cow::Borrowed(bytes),
        )?))
    }

    fn vector(&self, name: &str) -> Result<Vec<f32>> {
        let (raw, bytes) = self
            .part(name)
            .ok_or_else(|| tensor_error(&self.file, name, "not in this file"))?;
        let t = dense_type(&self.file, name, &raw.dtype)?;
        let mut out = vec![0f32; bytes.len() / t.size()];
        if !widen(t, bytes, &mut out) {
            return Err(VerifyError::non_finite(
                name,
                out.iter().position(|v| !v.is_finite()).unwrap_or(0),
            ));
        }
        Ok(out)
    }
}

fn dense_type(file: &Path, name: &str, dtype: &str) -> Result<ElemType> {
    match dtype {
        "F32" => Ok(ElemType::F32),
        "F16" => Ok(ElemType::F16),
        "BF16" => Ok(ElemType::BF16),
        d => Err(tensor_error(
            file,
            name,
            format!("dtype {d} is not a float type"),
        )),
    }
}

/// An int4 matrix borrowed from the file, dequantized a row at a time.
struct Int4Rows<'a> {
    name: String,
    rows: usize,
    cols: usize,
    group: usize,
    packed: &'a [u8],
    scale: &'a [u8],
    scale_type: ElemType,
    zero: &'a [u8],
}

/// Rounds `x` to the precision of `t` (nearest even), as a multiply in that dtype does.
fn round_to(t: ElemType, x: f32) -> f32 {
    match t {
        ElemType::F32 => x,
        ElemType::BF16 => half::bf16::from_f32(x).to_f32(),
        ElemType::F16 => half::f16::from_f32(x).to_f32(),
    }
}

impl RowSource for Int4Rows<'_> {
    fn dims(&self) -> Dims<'_> {
        Dims::new(&self.name, self.rows, self.cols)
    }

    fn read_rows(&self, row0: usize, _n: usize, out: &mut [f32]) -> Result<()> {
        let ng = self.cols / self.group;
        let es = self.scale_type.size();
        let mut scales = vec![0f32; ng];
        for (i, dst) in out.chunks_exact_mut(self.cols).enumerate() {
            let r = row0 + i;
            if !widen(
                self.scale_type,
                &self.scale[r * ng * es..(r + 1) * ng * es],
                &mut scales,
            ) {
                return Err(VerifyError::non_finite(
                    &format!("{}.weight_scale", self.name),
                    r * ng,
                ));
            }
            for (j, &s) in scales.iter().enumerate() {
                let z = pack_quantized::zero_point(self.zero, ng, r, j);
                let k0 = j * self.group;
                for (k, d) in (k0..).zip(&mut dst[k0..k0 + self.group]) {
                    let q = pack_quantized::code(self.packed, self.cols, r, k);
                    *d = round_to(self.scale_type, (q - z) as f32 * s);
                }
            }
        }
        Ok(())
    }
}
