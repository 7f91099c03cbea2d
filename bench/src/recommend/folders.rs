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

use convert::onnx::graph::GraphBuilder;
use convert::onnx::linear::{Experts, LinearWriter, Weight};
use convert::tensor::DType;
use convert::Checkpoint;
use kernels::GgmlType;
use quantize::awq::export::plan_compressed_tensors;
use quantize::awq::AwqPlan;
use quantize::onnx_release::{self, block_for, NBitsWriter, OnnxOptions, OnnxType, Q8_BLOCK};

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
pub fn write_onnx(ckpt: &Checkpoint, block: usize, out: &std::path::Path) -> Result<(), String> {
    onnx_release::write(ckpt, Some(out), &onnx_options(block))
        .map(|_| ())
        .map_err(|e| format!("writing {}: {e}", out.display()))
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
