//! The folder candidates: the AWQ int4 compressed-tensors release (`g4q convert --format awq`)
//! and the ONNX int4 release (`g4q convert --format onnx --type int4`, `MatMulNBits`), each as
//! the text model's tensors with their exact bytes, named as GGUF names them so the estimate
//! reads them as it reads a GGUF file's.
//!
//! Speeds: an AWQ int4 linear is [`Format::AwqInt4`] at its group size (what `g4q bench`
//! measures). g4q has no `MatMulNBits` product of its own, and MatMulNBits int4 is the same
//! storage (4-bit codes, one scale and zero point per block of input columns; f32 scales where
//! AWQ has bf16), so an ONNX int4 linear is modelled with the AWQ int4 measurement of its block
//! size, and its Q8_0-coded embedding table (the tied head) with Q8_0's. The vision/audio
//! towers a folder carries are left out, as a GGUF text model leaves them to its `mmproj`.

use std::path::Path;

use convert::onnx::graph::GraphBuilder;
use convert::onnx::linear::{Experts, LinearWriter, Weight};
use convert::stfile::StFile;
use convert::tensor::DType;
use convert::Checkpoint;
use kernels::GgmlType;
use quantize::awq::export::plan_compressed_tensors;
use quantize::awq::AwqPlan;
use quantize::onnx_release::{self, block_for, NBitsWriter, OnnxOptions, OnnxType, Q8_BLOCK};

use verify::awq_weights::AwqWeights;
use verify::onnx_weights::OnnxWeights;
use verify::Weights;

use crate::estimate::ModelTensor;
use crate::formats::Format;

/// The name of the AWQ int4 folder candidate at `group` (as `g4q bench` names the format).
pub fn awq_name(group: usize) -> String {
    Format::AwqInt4 { group }.to_string()
}

/// The name of the ONNX int4 folder candidate at `block` input columns per block.
pub fn onnx_name(block: usize) -> String {
    format!("ONNX_INT4_B{block}")
}

/// The group (or block) size an `AWQ_INT4_G…` (`ONNX_INT4_B…`) name stands for.
pub fn parse_folder_name(name: &str) -> Option<(bool, usize)> {
    let upper = name.to_ascii_uppercase();
    if let Some(g) = upper.strip_prefix("AWQ_INT4_G") {
        return g.parse().ok().map(|g| (true, g));
    }
    upper
        .strip_prefix("ONNX_INT4_B")
        .and_then(|b| b.parse().ok())
        .map(|b| (false, b))
}

/// GGUF's name for canonical tensor `name` (its own name when GGUF has none: such a tensor is
/// counted in the bytes but is no matrix of the estimate).
fn gguf_name(name: &str) -> String {
    convert::llama::gguf_name(name).unwrap_or_else(|| name.to_string())
}

fn dense_format(dtype: DType) -> Format {
    Format::Ggml(match dtype {
        DType::F32 => GgmlType::F32,
        DType::F16 => GgmlType::F16,
        DType::BF16 => GgmlType::BF16,
    })
}

fn ggml_dims(shape: &[usize]) -> Vec<u64> {
    shape.iter().rev().map(|&d| d as u64).collect()
}

/// Bytes of one compressed-tensors int4 linear `[rows, cols]` at `group`: `weight_packed`
/// (i32, eight codes a word), `weight_scale` (bf16 per group), `weight_zero_point` (i32, eight
/// rows a word) and `weight_shape` (two i64).
pub fn awq_linear_bytes(rows: usize, cols: usize, group: usize) -> u64 {
    let groups = (cols / group) as u64;
    let (r, c) = (rows as u64, cols as u64);
    r * c.div_ceil(8) * 4 + r * groups * 2 + r.div_ceil(8) * groups * 4 + 16
}

/// The text tensors of the AWQ int4 folder `g4q convert --format awq` writes for `ckpt` at
/// `group` (the size `--dry-run` reports it chose): the int4 linears, and the dense tensors in
/// their checkpoint dtype except those AWQ scales (norms, stored F32). Exact: the layout is the
/// writer's own plan, and it does not depend on the searched scales.
pub fn awq_tensors(ckpt: &Checkpoint, group: usize) -> Result<Vec<ModelTensor>, String> {
    let s = plan_compressed_tensors(ckpt, group).map_err(|e| e.to_string())?;
    let cfg = ckpt.config();
    let scaled = AwqPlan::identity(cfg, group);
    let mut names: Vec<&str> = ckpt.text_tensors();
    names.extend(ckpt.unused_shared_kv());
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let view = ckpt.tensor(name).map_err(|e| e.to_string())?;
        let hf = ckpt.hf_name(name);
        let module = hf.strip_suffix(".weight").unwrap_or(&hf);
        let (ty, bytes) = match s.targets.iter().find(|t| t.module == module) {
            Some(t) => (
                Format::AwqInt4 { group: t.group },
                awq_linear_bytes(t.rows, t.cols, t.group),
            ),
            None => {
                let dtype = if scaled.touches(cfg, name) {
                    DType::F32
                } else {
                    view.dtype
                };
                let n: u64 = view.shape.iter().map(|&d| d as u64).product();
                (dense_format(dtype), n * dtype.size() as u64)
            }
        };
        out.push(ModelTensor {
            name: gguf_name(name),
            ty,
            dims: ggml_dims(&view.shape),
            bytes,
        });
    }
    Ok(out)
}

/// The options of the ONNX int4 folder candidate: `g4q convert --format onnx --type int4`'s
/// defaults at `block` (8-bit embedding tables, accuracy level 4, no AWQ clips).
pub fn onnx_options(block: usize) -> OnnxOptions {
    OnnxOptions {
        ty: OnnxType::Int4,
        block_size: block,
        accuracy_level: 4,
        embedding_bits: 8,
        clips: Default::default(),
    }
}

/// A [`LinearWriter`] that writes through `MatMulNBits` as the release does and notes each
/// weight's tensors and bytes.
struct Recording {
    inner: NBitsWriter,
    tensors: Vec<ModelTensor>,
}

impl Recording {
    /// Notes `count` matrices `[rows, cols]` under `name` at `bits` (the block the writer
    /// chooses, or f32 when none fits).
    fn note(&mut self, name: &str, count: usize, rows: usize, cols: usize, bits: u8) {
        let (r, c, n) = (rows as u64, cols as u64, count as u64);
        let block = if bits == 8 {
            cols.is_multiple_of(Q8_BLOCK).then_some(Q8_BLOCK)
        } else {
            block_for(cols, self.inner.block_size)
        };
        let (ty, bytes) = match block {
            None => (Format::Ggml(GgmlType::F32), r * c * 4),
            // Codes one per byte and an f32 scale per block of 32 (the default zero point).
            Some(b) if bits == 8 => (Format::Ggml(GgmlType::Q8_0), r * c + r * (c / b as u64) * 4),
            Some(b) => {
                let kb = c / b as u64;
                (
                    Format::AwqInt4 { group: b },
                    r * kb * (b as u64 / 2) + r * kb * 4 + r * kb.div_ceil(2),
                )
            }
        };
        let mut dims = vec![c, r];
        if count > 1 {
            dims.push(n);
        }
        self.tensors.push(ModelTensor {
            name: gguf_name(name),
            ty,
            dims,
            bytes: bytes * n,
        });
    }
}

impl LinearWriter for Recording {
    fn linear(
        &mut self,
        g: &mut GraphBuilder<'_>,
        x: &str,
        w: Weight<'_>,
    ) -> convert::Result<String> {
        self.note(w.name, 1, w.rows, w.cols, self.inner.bits);
        self.inner.linear(g, x, w)
    }

    fn embedding(
        &mut self,
        g: &mut GraphBuilder<'_>,
        ids: &str,
        e: Weight<'_>,
    ) -> convert::Result<String> {
        self.note(e.name, 1, e.rows, e.cols, self.inner.embedding_bits);
        self.inner.embedding(g, ids, e)
    }

    fn experts(
        &mut self,
        g: &mut GraphBuilder<'_>,
        x: &str,
        w: Experts<'_>,
    ) -> convert::Result<String> {
        let bits = self.inner.bits;
        self.note(w.weight.name, w.count, w.weight.rows, w.weight.cols, bits);
        self.inner.experts(g, x, w)
    }

    fn head(&mut self, g: &mut GraphBuilder<'_>, x: &str, name: &str) -> convert::Result<String> {
        self.inner.head(g, x, name)
    }
}

/// The text tensors of the ONNX int4 folder `g4q convert --format onnx --type int4
/// --block-size block` writes for `ckpt`, from its plan (every weight quantized and counted,
/// nothing written): each weight's `MatMulNBits` tensors, and the norms and scalars as one
/// F32 entry, so the bytes total the external data file exactly.
pub fn onnx_tensors(ckpt: &Checkpoint, block: usize) -> Result<Vec<ModelTensor>, String> {
    let opts = onnx_options(block);
    let mut rec = Recording {
        inner: NBitsWriter {
            bits: 4,
            embedding_bits: opts.embedding_bits,
            block_size: opts.block_size,
            accuracy_level: opts.accuracy_level,
            clips: opts.clips.clone(),
            fallbacks: Vec::new(),
        },
        tensors: Vec::new(),
    };
    let summary = convert::onnx::plan(ckpt, &mut rec).map_err(|e| e.to_string())?;
    let weights: u64 = rec.tensors.iter().map(|t| t.bytes).sum();
    let rest = summary.data_bytes.checked_sub(weights).ok_or_else(|| {
        format!(
            "{}: the ONNX plan's {} bytes of data are fewer than its weights' {weights}",
            ckpt.dir().display(),
            summary.data_bytes
        )
    })?;
    rec.tensors.push(ModelTensor {
        name: "norms and scalars".into(),
        ty: Format::Ggml(GgmlType::F32),
        dims: vec![rest / 4],
        bytes: rest,
    });
    Ok(rec.tensors)
}

/// Writes the ONNX int4 folder candidate at `block` into `out`, as `g4q convert --format onnx
/// --type int4 --block-size block` does.
pub fn write_onnx(ckpt: &Checkpoint, block: usize, out: &Path) -> Result<(), String> {
    onnx_release::write(ckpt, Some(out), &onnx_options(block))
        .map(|_| ())
        .map_err(|e| format!("writing {}: {e}", out.display()))
}

/// A folder of a release read back: its config, which folder it is, and its text tensors.
pub struct ReadFolder {
    pub config: convert::Gemma4Config,
    /// `AWQ_INT4_G…` / `ONNX_INT4_B…` (the largest group or block the folder uses), or the
    /// folder's own name when it holds no int4 weight (an ONNX f32 folder).
    pub name: String,
    pub awq: bool,
    pub tensors: Vec<ModelTensor>,
}

/// Whether `dir` is an AWQ int4 or ONNX release folder (as `g4q verify` opens it).
pub fn is_folder_release(dir: &Path) -> bool {
    dir.is_dir() && (AwqWeights::is_release(dir) || OnnxWeights::is_release(dir))
}

/// Reads an AWQ int4 or ONNX release folder's tensors from its headers (no weight data is
/// read): the same entries [`awq_tensors`] and [`onnx_tensors`] plan.
pub fn read_folder(dir: &Path) -> Result<ReadFolder, String> {
    if OnnxWeights::is_release(dir) {
        read_onnx(dir)
    } else {
        read_awq(dir)
    }
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned())
}

fn read_awq(dir: &Path) -> Result<ReadFolder, String> {
    let cfg_path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&cfg_path).map_err(|e| format!("{}: {e}", cfg_path.display()))?;
    let config = convert::Gemma4Config::from_json_str(&text, &cfg_path.display().to_string())
        .map_err(|e| e.to_string())?;
    let path = dir.join("model.safetensors");
    let st = StFile::open(&path).map_err(|e| e.to_string())?;
    let label = path.display().to_string();
    let prefix = convert::catalogue::text_prefix(st.tensors().iter().map(|t| t.name.as_str()));
    let find = |n: &str| st.tensors().iter().find(|t| t.name == n);
    let mut tensors = Vec::new();
    let mut largest = 0;
    for t in st.tensors() {
        let canonical = match t.name.strip_prefix(prefix) {
            Some(c) => c,
            None if t.name == convert::catalogue::LM_HEAD => t.name.as_str(),
            None => continue, // a vision/audio tower tensor
        };
        let part = [".weight_scale", ".weight_zero_point", ".weight_shape"];
        if part.iter().any(|p| canonical.ends_with(p)) {
            continue;
        }
        let bytes = (t.end - t.start) as u64;
        if let Some(module) = t.name.strip_suffix(".weight_packed") {
            let entry = |suffix: &str| {
                find(&format!("{module}{suffix}"))
                    .ok_or_else(|| format!("{label}: tensor '{module}{suffix}' is missing"))
            };
            let (scale, zero, shape) = (
                entry(".weight_scale")?,
                entry(".weight_zero_point")?,
                entry(".weight_shape")?,
            );
            // weight_shape holds [rows, cols] as I64 (or I32).
            let data = st.bytes(shape);
            let dims: Vec<u64> = match (shape.dtype.as_str(), data.len()) {
                ("I64", 16) => data
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
                ("I32", 8) => data
                    .chunks_exact(4)
                    .map(|c| u64::from(u32::from_le_bytes(c.try_into().expect("4 bytes"))))
                    .collect(),
                _ => {
                    return Err(format!(
                        "{label}: tensor '{module}.weight_shape' is not two integers"
                    ))
                }
            };
            let (rows, cols) = (dims[0], dims[1]);
            let groups = scale.shape.get(1).copied().unwrap_or(0) as u64;
            if groups == 0 || cols % groups != 0 || scale.shape[0] as u64 != rows {
                return Err(format!(
                    "{label}: tensor '{module}.weight_scale' {:?} does not fit the weight [{rows}, {cols}]",
                    scale.shape
                ));
            }
            let group = (cols / groups) as usize;
            largest = largest.max(group);
            let all = [t, scale, zero, shape];
            tensors.push(ModelTensor {
                name: gguf_name(&format!(
                    "{}.weight",
                    canonical
                        .strip_suffix(".weight_packed")
                        .unwrap_or(canonical)
                )),
                ty: Format::AwqInt4 { group },
                dims: vec![cols, rows],
                bytes: all.iter().map(|e| (e.end - e.start) as u64).sum(),
            });
        } else {
            let dtype = DType::from_safetensors_name(&t.dtype)
                .ok_or_else(|| format!("{label}: tensor '{}' has dtype {}", t.name, t.dtype))?;
            tensors.push(ModelTensor {
                name: gguf_name(canonical),
                ty: dense_format(dtype),
                dims: ggml_dims(&t.shape),
                bytes,
            });
        }
    }
    let name = if largest > 0 {
        awq_name(largest)
    } else {
        dir_name(dir)
    };
    Ok(ReadFolder {
        config,
        name,
        awq: true,
        tensors,
    })
}

fn read_onnx(dir: &Path) -> Result<ReadFolder, String> {
    let w = OnnxWeights::open(dir).map_err(|e| e.to_string())?;
    let inits = w.initializers();
    let get = |n: &str| inits.iter().find(|i| i.name == n);
    let mut tensors: Vec<ModelTensor> = Vec::new();
    let mut largest = 0;
    // As the plan counts them: every weight (a small one's data may lie inline in model.onnx),
    // and the rest of the external data file as norms and scalars.
    let data: u64 = inits
        .iter()
        .filter(|i| i.external)
        .map(|i| i.bytes as u64)
        .sum();
    for i in &inits {
        if i.name.ends_with(".scales") || i.name.ends_with(".zero_points") {
            continue;
        }
        let Some(prefix) = i.name.strip_suffix(".qweight") else {
            // A dense weight under its own name, or a norm or scalar.
            if i.dims.len() >= 2 {
                tensors.push(ModelTensor {
                    name: gguf_name(i.name),
                    ty: Format::Ggml(GgmlType::F32),
                    dims: ggml_dims(i.dims),
                    bytes: i.bytes as u64,
                });
            }
            continue;
        };
        let &[rows, kb, width] = i.dims else {
            return Err(format!(
                "{}: '{}' is not [N, blocks, bytes]",
                dir.display(),
                i.name
            ));
        };
        let bits8 = i.bits == Some("8");
        let block = if bits8 { width } else { 2 * width };
        let (ty, cols) = if bits8 {
            (Format::Ggml(GgmlType::Q8_0), kb * block)
        } else {
            largest = largest.max(block);
            (Format::AwqInt4 { group: block }, kb * block)
        };
        let extra: usize = [".scales", ".zero_points"]
            .iter()
            .filter_map(|s| get(&format!("{prefix}{s}")))
            .map(|e| e.bytes)
            .sum();
        // A stacked expert weight is one triple per expert, `W.{e}.qweight`.
        let (weight, expert) = match prefix.rsplit_once('.') {
            Some((w, e)) if e.parse::<usize>().is_ok() => (w, true),
            _ => (prefix, false),
        };
        let name = gguf_name(weight);
        match tensors.iter_mut().find(|t| expert && t.name == name) {
            Some(t) => {
                t.bytes += (i.bytes + extra) as u64;
                t.dims[2] += 1;
            }
            None => tensors.push(ModelTensor {
                name,
                ty,
                dims: if expert {
                    vec![cols as u64, rows as u64, 1]
                } else {
                    vec![cols as u64, rows as u64]
                },
                bytes: (i.bytes + extra) as u64,
            }),
        }
    }
    let weights: u64 = tensors.iter().map(|t| t.bytes).sum();
    let rest = data.checked_sub(weights).ok_or_else(|| {
        format!(
            "{}: its {data} bytes of external data are fewer than its weights' {weights}",
            dir.display()
        )
    })?;
    tensors.push(ModelTensor {
        name: "norms and scalars".into(),
        ty: Format::Ggml(GgmlType::F32),
        dims: vec![rest / 4],
        bytes: rest,
    });
    let name = if largest > 0 {
        onnx_name(largest)
    } else {
        dir_name(dir)
    };
    Ok(ReadFolder {
        config: w.config().clone(),
        name,
        awq: false,
        tensors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names() {
        assert_eq!(awq_name(128), "AWQ_INT4_G128");
        assert_eq!(onnx_name(32), "ONNX_INT4_B32");
        assert_eq!(parse_folder_name("awq_int4_g64"), Some((true, 64)));
        assert_eq!(parse_folder_name("ONNX_INT4_B32"), Some((false, 32)));
        assert_eq!(parse_folder_name("Q4_K_M"), None);
        assert_eq!(parse_folder_name("AWQ_INT4_Gx"), None);
        // 8 rows × 256 columns at group 128: 8·32·4 packed + 8·2·2 scales + 1·2·4 zero points
        // + 16 shape bytes.
        assert_eq!(awq_linear_bytes(8, 256, 128), 1024 + 32 + 8 + 16);
        println!("checked 7 folder cases");
    }
}
