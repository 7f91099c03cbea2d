//! `g4q quantize IN.gguf`: re-quantizes an existing GGUF (F32, F16, BF16 or Q8_0 tensors) the way
//! `llama-quantize` does: every key copied in order, `general.quantization_version` and
//! `general.file_type` re-set (so they move to the end), tensors visited and written in
//! llama.cpp's loader order, each dequantized exactly to f32 and quantized with the mix.

use std::path::Path;

use convert::gguf::{GgufFile, TensorInfo};
use kernels::GgmlType;

use crate::error::{QuantizeError, Result};
use crate::gguf_release::{
    config_facts, set_quantized_keys, write_tensor, PlanRow, ReleaseOptions,
};
use crate::mix::{choose_types, quantize_order, Choice, ModelFacts, TensorDesc};

/// Input types that can be re-quantized without compounding error beyond 8 bits.
const REQUANTIZABLE: [GgmlType; 4] = [GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0];

/// The model facts the mix rules read, from the config of a `gemma4` GGUF file. Reading the
/// whole config refuses a file of another architecture, one without tensors, and one whose
/// metadata disagrees with its tensors, before anything is planned or written.
pub fn model_facts(f: &GgufFile) -> Result<ModelFacts> {
    if f.tensors().is_empty() {
        return Err(QuantizeError::Options(format!(
            "{}: the file has no tensors to quantize",
            f.path().display()
        )));
    }
    Ok(config_facts(&convert::llama::config_from_gguf(f)?))
}

/// Plans and writes `out` from the GGUF `input`.
pub fn write(input: &GgufFile, out: &Path, opts: &ReleaseOptions<'_>) -> Result<Vec<PlanRow>> {
    let facts = model_facts(input)?;
    let mut infos: Vec<TensorInfo> = input.tensors().to_vec();
    infos.sort_by(|a, b| quantize_order(&a.name, &b.name));
    for t in &infos {
        if !REQUANTIZABLE.contains(&t.ty) {
            return Err(QuantizeError::Options(format!(
                "{}: tensor '{}' is {}; only F32, F16, BF16 and Q8_0 inputs can be re-quantized",
                input.path().display(),
                t.name,
                t.ty
            )));
        }
    }
    let descs: Vec<TensorDesc> = infos
        .iter()
        .map(|t| TensorDesc {
            name: t.name.clone(),
            dims: t.dims.clone(),
            input_type: t.ty,
        })
        .collect();
    let mut mix = opts.mix.clone();
    mix.has_imatrix = opts.imatrix.is_some();
    let choices: Vec<Choice> = choose_types(&descs, &facts, opts.ftype, &mix);
    let mut md = input.metadata().clone();
    set_quantized_keys(&mut md, opts);
    let out_infos: Vec<TensorInfo> = infos
        .iter()
        .zip(&choices)
        .map(|(t, c)| TensorInfo {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ty: c.ty,
            offset: 0,
        })
        .collect();
    let mut writer = convert::gguf::GgufWriter::create(out, &md, out_infos.clone())?;
    let imatrix = opts.imatrix.as_ref().map(|(im, _)| *im);
    let mut rows = Vec::with_capacity(infos.len());
    for ((t, c), o) in infos.iter().zip(&choices).zip(&out_infos) {
        let shape: Vec<usize> = t.dims.iter().rev().map(|&d| d as usize).collect();
        let weights = if c.ty.is_quantized() {
            imatrix.and_then(|im| im.weights(&t.name))
        } else {
            None
        };
        let data = input.tensor_data(&t.name)?;
        let row_len = t.dims[0] as usize;
        let in_row_bytes = t.ty.row_bytes(row_len).unwrap_or(0);
        write_tensor(
            &mut writer,
            &t.name,
            c.ty,
            &shape,
            weights.as_deref(),
            |r0, n, out| {
                let bytes = &data[r0 * in_row_bytes..(r0 + n) * in_row_bytes];
                kernels::dequantize_row_ref(t.ty, bytes, out).map_err(|source| {
                    QuantizeError::Kernel {
                        tensor: t.name.clone(),
                        source,
                    }
                })
            },
        )?;
        rows.push(PlanRow {
            tensor: convert::llama::PlannedTensor {
                gguf_name: t.name.clone(),
                source: convert::llama::Source::Checkpoint(t.name.clone()),
                shape,
            },
            choice: *c,
            bytes: o.n_bytes(),
            weighted: weights.is_some(),
        });
        if let Some(p) = opts.progress {
            p(rows.len(), infos.len());
        }
    }
    writer.finish()?;
    Ok(rows)
}
