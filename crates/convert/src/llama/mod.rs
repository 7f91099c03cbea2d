//! What llama.cpp's converter (`convert_hf_to_gguf.py`, `Gemma4Model`) writes for a Gemma 4
//! checkpoint: the tensor list (names, order, shapes, the generated `rope_freqs`), the metadata
//! and the tokenizer. The quantizing pipeline reuses the plan; [`write_unquantized`] writes the
//! F32/F16/BF16 file directly.

mod authorship;
mod config;
mod metadata;
mod names;
mod vocab;

use std::path::Path;

use kernels::fp::{f32_to_bf16, f32_to_f16};
use kernels::GgmlType;

pub use authorship::{id_to_title, ModelCard};
pub use config::config_from_gguf;
pub(crate) use metadata::add_general;
pub use metadata::{gemma4_metadata, size_label, MetadataInputs, QUANTIZATION_VERSION};
pub use names::{canonical_name, gguf_name};

use crate::checkpoint::Checkpoint;
use crate::error::{ConvertError, Result};
use crate::gguf::{GgufWriter, TensorInfo};

/// Where a planned tensor's values come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A checkpoint tensor, by canonical name.
    Checkpoint(String),
    /// The generated proportional-RoPE frequency factors.
    RopeFreqs,
}

/// One tensor of the GGUF file, before a type is chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedTensor {
    pub gguf_name: String,
    pub source: Source,
    /// Shape in PyTorch order (outermost first).
    pub shape: Vec<usize>,
}

impl PlannedTensor {
    /// Number of dimensions.
    pub fn n_dims(&self) -> usize {
        self.shape.len()
    }

    /// The row length (`ne[0]` in ggml order).
    pub fn row_len(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }
}

/// The tensors llama.cpp's converter writes, in its order: `rope_freqs` first, then every text
/// tensor (the unused K/V of KV-shared layers included when the files carry them) in
/// [`crate::checkpoint::sort_in_converter_order`]: file by file, by name within a file, so a
/// sharded checkpoint is not in one global name order (`layers.10` of shard 2 follows
/// `layers.9` of shard 1). llama-quantize re-sorts by its own rule, so this order only shows in
/// F32, F16 and BF16 files.
pub fn tensor_plan(ckpt: &Checkpoint) -> Result<Vec<PlannedTensor>> {
    let cfg = ckpt.config();
    let mut names: Vec<String> = ckpt
        .text_tensors()
        .into_iter()
        .map(str::to_string)
        .collect();
    names.extend(ckpt.unused_shared_kv().map(str::to_string));
    // Canonical names share the checkpoint's text prefix, so their order within a file is that
    // of the names in the file.
    crate::checkpoint::sort_in_converter_order(&mut names, |n| {
        (ckpt.file_index(n).unwrap_or(usize::MAX), n.as_str())
    });
    let mut plan = vec![PlannedTensor {
        gguf_name: "rope_freqs.weight".into(),
        source: Source::RopeFreqs,
        shape: vec![cfg.global_head_dim / 2],
    }];
    for name in names {
        let Some(gguf) = gguf_name(&name) else {
            // lm_head is tied to the embedding; llama.cpp writes no output.weight for Gemma 4.
            continue;
        };
        let view = ckpt.tensor(&name)?;
        let mut shape = view.shape.clone();
        if shape.is_empty() {
            shape.push(1);
        }
        plan.push(PlannedTensor {
            gguf_name: gguf,
            source: Source::Checkpoint(name),
            shape,
        });
    }
    Ok(plan)
}

/// `rope_freqs`: 1 for the rotated pairs of the full-attention head, 1e30 (no rotation) for the
/// rest, which makes ggml's NEOX RoPE reproduce proportional RoPE.
pub fn rope_freqs(ckpt: &Checkpoint) -> Vec<f32> {
    let cfg = ckpt.config();
    let half = cfg.global_head_dim / 2;
    let n_rot = (cfg.global_head_dim as f64 * cfg.rope_full.partial_rotary_factor / 2.0) as usize;
    (0..half)
        .map(|i| if i < n_rot { 1.0 } else { 1e30 })
        .collect()
}

/// Rows `row0 .. row0 + n` of a planned tensor (rows of `row_len` values, leading dimensions
/// flattened) as f32 into `out`; NaN/Inf are rejected with the tensor's name. Reading a chunk
/// at a time keeps memory bounded for tensors as large as the 31B embedding.
pub fn source_rows(
    ckpt: &Checkpoint,
    t: &PlannedTensor,
    row0: usize,
    n: usize,
    out: &mut [f32],
) -> Result<()> {
    match &t.source {
        Source::RopeFreqs => {
            let all = rope_freqs(ckpt);
            let len = t.row_len();
            let src = all
                .get(row0 * len..(row0 + n) * len)
                .filter(|s| s.len() == out.len())
                .ok_or_else(|| {
                    ConvertError::tensor(ckpt.dir(), &t.gguf_name, "row range out of bounds")
                })?;
            out.copy_from_slice(src);
            Ok(())
        }
        Source::Checkpoint(name) => ckpt.tensor(name)?.rows_to_f32(row0, n, out),
    }
}

/// The type llama.cpp's converter gives a tensor for `--outtype` `out`: 1-D tensors, norms,
/// names not ending in `.weight` and the MoE router (`ffn_gate_inp.weight`, which its
/// `prepare_tensors` always keeps in F32) stay F32.
pub fn unquantized_type(t: &PlannedTensor, out: GgmlType) -> GgmlType {
    let n = &t.gguf_name;
    if t.n_dims() <= 1
        || n.ends_with("_norm.weight")
        || !n.ends_with(".weight")
        || (n.starts_with("blk.") && n.ends_with(".ffn_gate_inp.weight"))
    {
        GgmlType::F32
    } else {
        out
    }
}

/// llama_ftype of an unquantized output type.
fn unquantized_file_type(ty: GgmlType) -> Result<u32> {
    match ty {
        GgmlType::F32 => Ok(0),
        GgmlType::F16 => Ok(1),
        GgmlType::BF16 => Ok(32),
        other => Err(ConvertError::config(
            "--type",
            format!("{other} is a quantized type"),
        )),
    }
}

/// Encodes f32 values as `ty` (F32, F16 or BF16), little-endian.
pub fn encode_unquantized(values: &[f32], ty: GgmlType) -> Vec<u8> {
    match ty {
        GgmlType::F16 => values
            .iter()
            .flat_map(|&v| f32_to_f16(v).to_le_bytes())
            .collect(),
        GgmlType::BF16 => values
            .iter()
            .flat_map(|&v| f32_to_bf16(v).to_le_bytes())
            .collect(),
        _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// Converts a checkpoint to an unquantized GGUF file (`out_type` F32, F16 or BF16) in one
/// streaming pass: one tensor in memory at a time, temp file renamed at the end.
pub fn write_unquantized(ckpt: &Checkpoint, out: &Path, out_type: GgmlType) -> Result<()> {
    let file_type = unquantized_file_type(out_type)?;
    let plan = tensor_plan(ckpt)?;
    let infos: Vec<TensorInfo> = plan
        .iter()
        .map(|t| {
            TensorInfo::from_torch_shape(&t.gguf_name, &t.shape, unquantized_type(t, out_type))
        })
        .collect();
    let md = gemma4_metadata(&MetadataInputs {
        config: ckpt.config(),
        dir: ckpt.dir(),
        tensors: &infos,
        file_type,
    })?;
    let mut writer = GgufWriter::create(out, &md, infos.clone())?;
    for (t, info) in plan.iter().zip(&infos) {
        let n_rows = t.shape.iter().product::<usize>() / t.row_len().max(1);
        let mut values = vec![0f32; t.shape.iter().product()];
        source_rows(ckpt, t, 0, n_rows, &mut values)?;
        let bytes = encode_unquantized(&values, info.ty);
        crate::gguf::finite::check_encoded(info.ty, &values, &bytes, t.row_len().max(1))
            .map_err(|message| ConvertError::tensor(out, &info.name, message))?;
        writer.write_tensor(&info.name, &bytes)?;
        if let Source::Checkpoint(name) = &t.source {
            ckpt.release(name);
        }
    }
    writer.finish()
}
