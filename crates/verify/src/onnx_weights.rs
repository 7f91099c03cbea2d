//! An ONNX release folder (`g4q convert --format onnx`: `config.json`, `model.onnx`,
//! `model.onnx.data`) as a [`Weights`] source, so `g4q forward` and `g4q verify` run it through
//! the reference forward pass.
//!
//! Initializers carry the canonical weight names. A dense weight is an f32 (or f16) initializer
//! under its own name (3-D expert stacks `[E, a, b]` come back as `[E*a, b]`). An int4 weight `W` is the
//! `MatMulNBits` triple `W.qweight` (uint8 `[N, k_blocks, block/2]`, two codes per byte, low
//! nibble first), `W.scales` (f32 `[N, k_blocks]`) and `W.zero_points` (uint8
//! `[N, ceil(k_blocks/2)]`, packed the same way), served as the matrix `W` dequantized as
//! onnxruntime defines it: `(q - zp) * scale` in f32. An int8 weight (its `qweight` carries the
//! metadata `bits: 8`) has one code per byte, `[N, k_blocks, block]`, and no zero points: the
//! default 128. A stacked expert weight is one such triple
//! per expert (`W.{e}.qweight`, ...), served as the whole stack.
//!
//! Everything read from the files is checked before use: the protobuf must parse, external data
//! must name `model.onnx.data` and lie inside it, and every byte count must match its dims.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use convert::onnx::onnx_protobuf::tensor_proto::{DataLocation, DataType};
use convert::onnx::onnx_protobuf::{Message, ModelProto, TensorProto};
use convert::onnx::{DATA_FILE, MODEL_FILE};
use convert::Gemma4Config;
use memmap2::Mmap;

use crate::error::{Result, VerifyError};
use crate::weights::{widen, DenseMatrix, Dims, ElemType, Matrix, RowSource, Weights};

/// Where an initializer's bytes are.
enum Bytes {
    Inline(Vec<u8>),
    External(Range<usize>),
}

/// One initializer: element type, dims, bytes and `bits` metadata (MatMulNBits weights).
struct Init {
    elem: i32,
    dims: Vec<usize>,
    bytes: Bytes,
    bits: Option<String>,
}

/// One initializer of an opened folder (see [`OnnxWeights::initializers`]).
#[derive(Clone, Debug)]
pub struct InitializerInfo<'a> {
    pub name: &'a str,
    pub dims: &'a [usize],
    pub bytes: usize,
    pub external: bool,
    pub bits: Option<&'a str>,
}

/// An opened ONNX release folder.
pub struct OnnxWeights {
    dir: PathBuf,
    config: Gemma4Config,
    data: Option<Mmap>,
    inits: HashMap<String, Init>,
}

fn err(dir: &Path, tensor: &str, message: impl Into<String>) -> VerifyError {
    VerifyError::Shape {
        tensor: format!("{tensor} in {}", dir.join(MODEL_FILE).display()),
        message: message.into(),
    }
}

fn elem_size(elem: i32) -> Option<usize> {
    match elem {
        x if x == DataType::FLOAT as i32 => Some(4),
        x if x == DataType::FLOAT16 as i32 => Some(2),
        x if x == DataType::UINT8 as i32 => Some(1),
        x if x == DataType::INT64 as i32 => Some(8),
        x if x == DataType::BOOL as i32 => Some(1),
        _ => None,
    }
}

impl OnnxWeights {
    /// Whether `dir` is an ONNX release folder.
    pub fn is_release(dir: &Path) -> bool {
        dir.join(MODEL_FILE).is_file()
    }

    /// Opens `dir/config.json`, `dir/model.onnx` and (when present) `dir/model.onnx.data`.
    pub fn open(dir: &Path) -> Result<OnnxWeights> {
        let io = |p: &Path, e| VerifyError::Io {
            file: p.display().to_string(),
            source: e,
        };
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| io(&cfg_path, e))?;
        let config = Gemma4Config::from_json_str(&text, &cfg_path.display().to_string())?;
        let model_path = dir.join(MODEL_FILE);
        let bytes = std::fs::read(&model_path).map_err(|e| io(&model_path, e))?;
        let model = ModelProto::parse_from_bytes(&bytes).map_err(|e| {
            VerifyError::Input(format!("{}: not an ONNX model: {e}", model_path.display()))
        })?;
        drop(bytes);
        let data_path = dir.join(DATA_FILE);
        let data = if data_path.is_file() {
            let f = std::fs::File::open(&data_path).map_err(|e| io(&data_path, e))?;
            // SAFETY: read-only map; g4q never writes a file it is reading.
            Some(unsafe { Mmap::map(&f) }.map_err(|e| io(&data_path, e))?)
        } else {
            None
        };
        let data_len = data.as_ref().map_or(0, |m| m.len());
        let mut inits = HashMap::new();
        for t in model
            .graph
            .into_option()
            .map(|g| g.initializer)
            .unwrap_or_default()
        {
            let init = Self::check(dir, t.clone(), data_len)?;
            inits.insert(t.name, init);
        }
        Ok(OnnxWeights {
            dir: dir.to_path_buf(),
            config,
            data,
            inits,
        })
    }

    /// Validates an initializer's dims, type and byte location.
    fn check(dir: &Path, t: TensorProto, data_len: usize) -> Result<Init> {
        let name = t.name.as_str();
        let dims: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| err(dir, name, "negative dimension"))?;
        let numel = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| err(dir, name, "element count overflows"))?;
        let Some(es) = elem_size(t.data_type) else {
            return Err(err(
                dir,
                name,
                format!("unsupported element type {}", t.data_type),
            ));
        };
        let want = numel
            .checked_mul(es)
            .ok_or_else(|| err(dir, name, "byte count overflows"))?;
        let external = t.data_location.enum_value() == Ok(DataLocation::EXTERNAL);
        let bytes = if external {
            let get = |k: &str| {
                t.external_data
                    .iter()
                    .find(|e| e.key == k)
                    .map(|e| e.value.clone())
            };
            if get("location").as_deref() != Some(DATA_FILE) {
                return Err(err(
                    dir,
                    name,
                    format!("external data must be in {DATA_FILE}"),
                ));
            }
            let num = |k: &str| -> Result<usize> {
                get(k)
                    .ok_or_else(|| err(dir, name, format!("external data has no {k}")))?
                    .parse::<usize>()
                    .map_err(|_| err(dir, name, format!("external data {k} is not a number")))
            };
            let (off, len) = (num("offset")?, num("length")?);
            let end = off
                .checked_add(len)
                .filter(|&e| e <= data_len)
                .ok_or_else(|| err(dir, name, format!("external data lies outside {DATA_FILE}")))?;
            if len != want {
                return Err(err(dir, name, format!("{len} bytes do not hold {dims:?}")));
            }
            Bytes::External(off..end)
        } else {
            if t.raw_data.len() != want {
                return Err(err(
                    dir,
                    name,
                    format!("{} inline bytes do not hold {dims:?}", t.raw_data.len()),
                ));
            }
            Bytes::Inline(t.raw_data)
        };
        let bits = t
            .metadata_props
            .iter()
            .find(|e| e.key == "bits")
            .map(|e| e.value.clone());
        Ok(Init {
            elem: t.data_type,
            dims,
            bytes,
            bits,
        })
    }

    /// Every initializer (in name order): its name, dims, byte count, whether its data lies
    /// in `model.onnx.data`, and its `bits` metadata (what `g4q recommend` sizes a folder by).
    pub fn initializers(&self) -> Vec<InitializerInfo<'_>> {
        let mut v: Vec<InitializerInfo<'_>> = self
            .inits
            .iter()
            .map(|(name, i)| InitializerInfo {
                name,
                dims: &i.dims,
                bytes: match &i.bytes {
                    Bytes::Inline(b) => b.len(),
                    Bytes::External(r) => r.len(),
                },
                external: matches!(i.bytes, Bytes::External(_)),
                bits: i.bits.as_deref(),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(b.name));
        v
    }

    fn bytes<'a>(&'a self, init: &'a Init) -> &'a [u8] {
        match &init.bytes {
            Bytes::Inline(v) => v,
            // Ranges were checked against the map's length when the folder was opened.
            Bytes::External(r) => &self.data.as_ref().map_or(&[][..], |m| &m[..])[r.clone()],
        }
    }

    fn get(&self, name: &str, elem: DataType) -> Result<&Init> {
        let init = self
            .inits
            .get(name)
            .ok_or_else(|| err(&self.dir, name, "no such initializer"))?;
        if init.elem != elem as i32 {
            return Err(err(
                &self.dir,
                name,
                format!("element type {} is not {elem:?}", init.elem),
            ));
        }
        Ok(init)
    }

    /// The MatMulNBits weight under `prefix` (4 bits with packed zero points, or 8 bits with
    /// the default zero point 128), its parts checked against each other.
    fn int4(&self, prefix: &str) -> Result<Int4Part<'_>> {
        let q = self.get(&format!("{prefix}.qweight"), DataType::UINT8)?;
        let s = self.get(&format!("{prefix}.scales"), DataType::FLOAT)?;
        let bits = match q.bits.as_deref() {
            None | Some("4") => 4,
            Some("8") => 8,
            Some(other) => {
                return Err(err(
                    &self.dir,
                    prefix,
                    format!("{other} bits are not supported"),
                ))
            }
        };
        let &[n, kb, blob] = q.dims.as_slice() else {
            return Err(err(&self.dir, prefix, "qweight is not [N, k_blocks, blob]"));
        };
        let zp = if bits == 4 {
            let z = self.get(&format!("{prefix}.zero_points"), DataType::UINT8)?;
            if z.dims != [n, kb.div_ceil(2)] {
                return Err(err(
                    &self.dir,
                    prefix,
                    format!("zero points {:?} do not fit qweight {:?}", z.dims, q.dims),
                ));
            }
            Some(self.bytes(z))
        } else {
            None
        };
        if blob == 0 || s.dims != [n, kb] {
            return Err(err(
                &self.dir,
                prefix,
                format!("scales {:?} do not fit qweight {:?}", s.dims, q.dims),
            ));
        }
        let mut scales = vec![0f32; n * kb];
        if !widen(ElemType::F32, self.bytes(s), &mut scales) {
            return Err(VerifyError::non_finite(
                &format!("{prefix}.scales"),
                scales.iter().position(|v| !v.is_finite()).unwrap_or(0),
            ));
        }
        Ok(Int4Part {
            rows: n,
            blocks: kb,
            block: if bits == 8 { blob } else { blob * 2 },
            q: self.bytes(q),
            scales,
            zp,
        })
    }
}

/// One MatMulNBits weight `[rows, blocks * block]`.
struct Int4Part<'a> {
    rows: usize,
    blocks: usize,
    block: usize,
    q: &'a [u8],
    scales: Vec<f32>,
    /// Packed 4-bit zero points; `None` for 8-bit codes (zero point 128).
    zp: Option<&'a [u8]>,
}

impl Int4Part<'_> {
    fn cols(&self) -> usize {
        self.blocks * self.block
    }

    /// Row `r` dequantized as onnxruntime does: `(q - zp) * scale`.
    fn row(&self, r: usize, out: &mut [f32]) {
        let cols = self.cols();
        let Some(zp) = self.zp else {
            let q = &self.q[r * cols..(r + 1) * cols];
            for (b, dst) in out.chunks_mut(self.block).enumerate() {
                let s = self.scales[r * self.blocks + b];
                let codes = &q[b * self.block..(b + 1) * self.block];
                for (o, &c) in dst.iter_mut().zip(codes) {
                    *o = (c as f32 - 128.0) * s;
                }
            }
            return;
        };
        let q = &self.q[r * cols / 2..(r + 1) * cols / 2];
        let zrow = &zp[r * self.blocks.div_ceil(2)..(r + 1) * self.blocks.div_ceil(2)];
        for (b, dst) in out.chunks_mut(self.block).enumerate() {
            let zp = ((zrow[b / 2] >> (4 * (b % 2))) & 0xF) as f32;
            let s = self.scales[r * self.blocks + b];
            for (i, o) in dst.iter_mut().enumerate() {
                let c = b * self.block + i;
                let code = ((q[c / 2] >> (4 * (c % 2))) & 0xF) as f32;
                *o = (code - zp) * s;
            }
        }
    }
}

/// A stack of MatMulNBits weights served as one `[sum of rows, cols]` matrix.
struct Int4Matrix<'a> {
    name: String,
    parts: Vec<Int4Part<'a>>,
    rows: usize,
    cols: usize,
}

impl RowSource for Int4Matrix<'_> {
    fn dims(&self) -> Dims<'_> {
        Dims::new(&self.name, self.rows, self.cols)
    }

    fn read_rows(&self, row0: usize, _n: usize, out: &mut [f32]) -> Result<()> {
        for (i, dst) in out.chunks_mut(self.cols).enumerate() {
            let mut r = row0 + i;
            let part = self
                .parts
                .iter()
                .find(|p| {
                    let inside = r < p.rows;
                    if !inside {
                        r -= p.rows;
                    }
                    inside
                })
                .expect("row inside the checked range");
            part.row(r, dst);
        }
        Ok(())
    }
}

impl Weights for OnnxWeights {
    fn config(&self) -> &Gemma4Config {
        &self.config
    }

    fn has(&self, name: &str) -> bool {
        self.inits.contains_key(name)
            || self.inits.contains_key(&format!("{name}.qweight"))
            || self.inits.contains_key(&format!("{name}.0.qweight"))
    }

    fn matrix(&self, name: &str) -> Result<Matrix<'_>> {
        if let Some(init) = self.inits.get(name) {
            let (rows, cols) = match init.dims.as_slice() {
                [r, c] => (*r, *c),
                [e, r, c] => (e * r, *c),
                other => {
                    return Err(err(
                        &self.dir,
                        name,
                        format!("dims {other:?} are not a matrix"),
                    ))
                }
            };
            let elem = if init.elem == DataType::FLOAT16 as i32 {
                ElemType::F16
            } else {
                self.get(name, DataType::FLOAT)?;
                ElemType::F32
            };
            let m = DenseMatrix::new(
                name,
                elem,
                rows,
                cols,
                std::borrow::Cow::Borrowed(self.bytes(init)),
            )?;
            return Ok(Box::new(m));
        }
        let parts = if self.inits.contains_key(&format!("{name}.qweight")) {
            vec![self.int4(name)?]
        } else {
            let mut parts = Vec::new();
            while self
                .inits
                .contains_key(&format!("{name}.{}.qweight", parts.len()))
            {
                parts.push(self.int4(&format!("{name}.{}", parts.len()))?);
            }
            if parts.is_empty() {
                return Err(err(&self.dir, name, "no such weight"));
            }
            parts
        };
        let cols = parts[0].cols();
        if parts.iter().any(|p| p.cols() != cols) {
            return Err(err(&self.dir, name, "experts differ in width"));
        }
        let rows = parts.iter().map(|p| p.rows).sum();
        Ok(Box::new(Int4Matrix {
            name: name.to_string(),
            parts,
            rows,
            cols,
        }))
    }

    fn vector(&self, name: &str) -> Result<Vec<f32>> {
        let init = self.get(name, DataType::FLOAT)?;
        let n: usize = init.dims.iter().product();
        let mut out = vec![0f32; n];
        widen(ElemType::F32, self.bytes(init), &mut out);
        Ok(out)
    }
}
