//! Checkpoint → quantized GGUF in one streaming pass: llama.cpp's converter's tensors and
//! metadata (`convert::llama`), llama-quantize's per-tensor types ([`crate::mix`]) and order,
//! ggml-identical quantizers (`kernels`), written tensor by tensor through a temp file.
//!
//! The result is the file `convert_hf_to_gguf.py --outtype f32` followed by `llama-quantize`
//! would give, without the intermediate f32 file.

use std::path::Path;

use convert::gguf::finite::check_encoded;
use convert::gguf::{GgufWriter, Metadata, TensorInfo, Value};
use convert::llama::{self, PlannedTensor};
use convert::Checkpoint;
use kernels::GgmlType;

use crate::error::{QuantizeError, Result};
use crate::ftype::FileType;
use crate::imatrix::Imatrix;
use crate::mix::{choose_types, quantize_order, Choice, MixOptions, ModelFacts, TensorDesc};

/// Rows quantized per step: bounds memory to a few MiB of f32 per tensor in flight.
const CHUNK_VALUES: usize = 1 << 22;

/// What to write.
pub struct ReleaseOptions<'a> {
    pub ftype: FileType,
    pub mix: MixOptions,
    /// The importance matrix and the file name recorded in `quantize.imatrix.file`.
    pub imatrix: Option<(&'a Imatrix, String)>,
    /// Called after each tensor with (tensors done, tensors in all): drives a progress bar.
    pub progress: Option<&'a dyn Fn(usize, usize)>,
}

/// One tensor of the planned file.
#[derive(Clone, Debug)]
pub struct PlanRow {
    pub tensor: PlannedTensor,
    pub choice: Choice,
    pub bytes: u64,
    /// Whether importance weights will be used for it.
    pub weighted: bool,
}

/// The model facts the mix rules read, from the checkpoint's config.
pub fn model_facts(ckpt: &Checkpoint) -> ModelFacts {
    config_facts(ckpt.config())
}

/// The model facts the mix rules read from a validated config (whose KV-head counts are
/// positive).
pub fn config_facts(c: &convert::Gemma4Config) -> ModelFacts {
    ModelFacts {
        n_expert: c.num_experts,
        n_gqa: c.num_attention_heads / c.num_kv_heads(0),
        n_layer: c.num_hidden_layers,
    }
}

/// The per-tensor plan in file order: type, size, whether an imatrix entry applies.
pub fn plan(ckpt: &Checkpoint, opts: &ReleaseOptions<'_>) -> Result<Vec<PlanRow>> {
    let mut tensors = llama::tensor_plan(ckpt)?;
    if opts.ftype.default_type().is_quantized() {
        tensors.sort_by(|a, b| quantize_order(&a.gguf_name, &b.gguf_name));
    }
    let descs: Vec<TensorDesc> = tensors
        .iter()
        .map(|t| TensorDesc {
            name: t.gguf_name.clone(),
            dims: t.shape.iter().rev().map(|&d| d as u64).collect(),
            input_type: intermediate_type(t, &opts.mix),
        })
        .collect();
    let mut mix = opts.mix.clone();
    mix.has_imatrix = opts.imatrix.is_some();
    let choices: Vec<Choice> = if opts.ftype.default_type().is_quantized() {
        choose_types(&descs, &model_facts(ckpt), opts.ftype, &mix)
    } else {
        tensors
            .iter()
            .map(|t| Choice {
                ty: llama::unquantized_type(t, opts.ftype.default_type()),
                fallback_from: None,
            })
            .collect()
    };
    tensors
        .into_iter()
        .zip(choices)
        .map(|(tensor, choice)| {
            let info = TensorInfo::from_torch_shape(&tensor.gguf_name, &tensor.shape, choice.ty);
            let bytes = info.checked_n_bytes().ok_or_else(|| {
                QuantizeError::Options(format!(
                    "{}: shape {:?} does not fit {}",
                    tensor.gguf_name, tensor.shape, choice.ty
                ))
            })?;
            let weighted = choice.ty.is_quantized()
                && opts
                    .imatrix
                    .as_ref()
                    .is_some_and(|(im, _)| im.entries.contains_key(&tensor.gguf_name));
            Ok(PlanRow {
                tensor,
                choice,
                bytes,
                weighted,
            })
        })
        .collect()
}

/// The type `t` has in llama.cpp's intermediate file: what its converter writes for
/// `--outtype` = `mix.intermediate` (F32 by default). llama-quantize keeps this type for the
/// tensors it does not quantize (`per_layer_model_proj` among them) and quantizes the others
/// from these values.
pub fn intermediate_type(t: &PlannedTensor, mix: &MixOptions) -> GgmlType {
    llama::unquantized_type(t, mix.intermediate.unwrap_or(GgmlType::F32))
}

/// Rounds values through the intermediate type `ty` (F16 or BF16; F32 is exact), as the chain's
/// intermediate file stores them before llama-quantize reads them back.
fn through_intermediate(values: &mut [f32], ty: GgmlType) {
    match ty {
        GgmlType::BF16 => values
            .iter_mut()
            .for_each(|v| *v = kernels::fp::bf16_to_f32(kernels::fp::f32_to_bf16(*v))),
        GgmlType::F16 => values
            .iter_mut()
            .for_each(|v| *v = kernels::fp::f16_to_f32(kernels::fp::f32_to_f16(*v))),
        _ => {}
    }
}

/// Writes the release to `out` and returns its plan.
pub fn write(ckpt: &Checkpoint, out: &Path, opts: &ReleaseOptions<'_>) -> Result<Vec<PlanRow>> {
    let rows = plan(ckpt, opts)?;
    let infos: Vec<TensorInfo> = rows
        .iter()
        .map(|r| TensorInfo::from_torch_shape(&r.tensor.gguf_name, &r.tensor.shape, r.choice.ty))
        .collect();
    let quantized = opts.ftype.default_type().is_quantized();
    // llama-quantize copies the converter's keys (written with file type 0 for its f32 input)
    // and then re-sets the quantization version and file type, which moves them to the end.
    let mut md = llama::gemma4_metadata(&llama::MetadataInputs {
        config: ckpt.config(),
        dir: ckpt.dir(),
        tensors: &infos,
        file_type: if quantized { 0 } else { opts.ftype.id() },
    })?;
    if quantized {
        set_quantized_keys(&mut md, opts);
    }
    let mut writer = GgufWriter::create(out, &md, infos)?;
    let imatrix = opts.imatrix.as_ref().map(|(im, _)| *im);
    for (i, row) in rows.iter().enumerate() {
        let t = &row.tensor;
        let via = intermediate_type(t, &opts.mix);
        let weights = if row.weighted {
            imatrix.and_then(|im| im.weights(&t.gguf_name))
        } else {
            None
        };
        write_tensor(
            &mut writer,
            &t.gguf_name,
            row.choice.ty,
            &t.shape,
            weights.as_deref(),
            |r0, n, out| {
                llama::source_rows(ckpt, t, r0, n, out)?;
                through_intermediate(out, via);
                // Keep only the chunk in flight resident, however large the tensor.
                if let llama::Source::Checkpoint(name) = &t.source {
                    ckpt.release_rows(name, r0, n);
                }
                Ok(())
            },
        )?;
        if let Some(p) = opts.progress {
            p(i + 1, rows.len());
        }
    }
    writer.finish()?;
    Ok(rows)
}

/// What llama-quantize sets after copying the input's keys: the quantization version and file
/// type (re-set, so they move to the end) and, with an importance matrix, its provenance.
pub(crate) fn set_quantized_keys(md: &mut Metadata, opts: &ReleaseOptions<'_>) {
    md.set(
        "general.quantization_version",
        Value::U32(llama::QUANTIZATION_VERSION),
    );
    md.set("general.file_type", Value::U32(opts.ftype.id()));
    if let Some((im, file)) = &opts.imatrix {
        md.set("quantize.imatrix.file", Value::String(file.clone()));
        if let Some(first) = im.datasets.first() {
            md.set("quantize.imatrix.dataset", Value::String(first.clone()));
        }
        md.set(
            "quantize.imatrix.entries_count",
            Value::U32(im.entries.len() as u32),
        );
        // llama-quantize records the chunk count only when it is positive.
        if im.chunk_count > 0 {
            md.set("quantize.imatrix.chunks_count", Value::U32(im.chunk_count));
        }
    }
}

/// Converts and writes one tensor of `shape` (PyTorch order) as `ty`, reading its rows a chunk
/// at a time through `read_rows(row0, n, out)`, so memory stays at one chunk however large the
/// tensor. `weights` are the importance weights (one vector per expert for 3-D tensors).
pub(crate) fn write_tensor(
    w: &mut GgufWriter,
    name: &str,
    ty: GgmlType,
    shape: &[usize],
    weights: Option<&[f32]>,
    mut read_rows: impl FnMut(usize, usize, &mut [f32]) -> Result<()>,
) -> Result<()> {
    let n_per_row = shape.last().copied().unwrap_or(1).max(1);
    let n_rows = shape.iter().product::<usize>() / n_per_row;
    // 3-D expert tensors carry one importance vector per expert (the outermost dimension), so
    // chunks never straddle two experts.
    let n_mat = if shape.len() == 3 { shape[0] } else { 1 };
    if let Some(w) = weights {
        if w.len() != n_per_row * n_mat {
            return Err(QuantizeError::Options(format!(
                "{name}: the importance matrix has {} values, the tensor needs {} ({n_mat} × {n_per_row})",
                w.len(),
                n_per_row * n_mat
            )));
        }
    }
    let rows_per_mat = n_rows / n_mat.max(1);
    let rows_per_chunk = (CHUNK_VALUES / n_per_row).clamp(1, rows_per_mat.max(1));
    let row_bytes = ty.row_bytes(n_per_row).unwrap_or(0);
    let mut values = Vec::new();
    let mut buf = Vec::new();
    w.begin_tensor(name)?;
    for m in 0..n_mat {
        let qw = weights.map(|w| &w[m * n_per_row..(m + 1) * n_per_row]);
        let mut r = 0;
        while r < rows_per_mat {
            let n = rows_per_chunk.min(rows_per_mat - r);
            values.resize(n * n_per_row, 0.0);
            read_rows(m * rows_per_mat + r, n, &mut values)?;
            if ty.is_quantized() {
                buf.resize(n * row_bytes, 0);
                kernels::quantize_rows(ty, &values, n_per_row, qw, &mut buf).map_err(|source| {
                    QuantizeError::Kernel {
                        tensor: name.to_string(),
                        source,
                    }
                })?;
            } else {
                buf = llama::encode_unquantized(&values, ty);
            }
            check_encoded(ty, &values, &buf, n_per_row).map_err(|message| {
                QuantizeError::Value {
                    tensor: name.to_string(),
                    message,
                }
            })?;
            w.write_data(&buf)?;
            r += n;
        }
    }
    Ok(w.end_tensor()?)
}
