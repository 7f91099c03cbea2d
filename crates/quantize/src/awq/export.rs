//! Writing AWQ results:
//!
//! - [`write_compressed_tensors`]: the int4 release in compressed-tensors' `pack-quantized`
//!   layout (not AutoAWQ's GEMM layout, which interleaves nibbles as 0,2,4,6,1,3,5,7 and
//!   stores zero points without the +8 offset): per quantized linear
//!   `weight_packed` int32 `[out, in/8]` (code + 8, element k at bits `4·(k%8)` of word `k/8`,
//!   natural order), `weight_scale` bf16 `[out, in/G]`, `weight_zero_point` int32
//!   `[ceil(out/8), in/G]` (zero point + 8 packed along the *output* dim) and `weight_shape`
//!   `[2]` (int64: compressed-tensors stores `torch.tensor(weight.shape)`); `quantization_config` in config.json, so transformers (with
//!   compressed-tensors) and vLLM load it. Norms that absorbed `1/s` are stored as F32 (a bf16
//!   round of `w/s` would add error the search did not see); everything else is copied as is.
//! - [`write_scaled_checkpoint`]: the model with AWQ scales folded in (no clipping), as an F32
//!   safetensors checkpoint that the GGUF k-quant path reads like any other.
//!
//! Both stream tensor by tensor: the header is planned from shapes, then each tensor is
//! produced and written, so memory is one tensor (in f32) at a time.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use convert::output::TempOutput;
use convert::{Checkpoint, ConvertError, Gemma4Config};
use serde_json::{json, Map, Value};
use verify::Weights;

use crate::awq::int4::{quantize, Int4Matrix};
use crate::awq::plan::{quantized_linears, AwqPlan, ScaledWeights};
use crate::error::{QuantizeError, Result};

/// Files of a model folder copied next to the written weights when present.
pub const SIDE_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
    "processor_config.json",
    "preprocessor_config.json",
];

/// One tensor of a safetensors file being planned.
#[derive(Clone, Debug)]
struct Entry {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
    bytes: usize,
}

fn entry(name: String, dtype: &'static str, shape: Vec<usize>) -> Result<Entry> {
    let elem = match dtype {
        "I64" => 8,
        "F32" | "I32" => 4,
        _ => 2,
    };
    let bytes = shape
        .iter()
        .try_fold(elem, |a: usize, &d| a.checked_mul(d))
        .ok_or_else(|| QuantizeError::Options(format!("tensor '{name}': size overflows")))?;
    Ok(Entry {
        name,
        dtype,
        shape,
        bytes,
    })
}

/// What produces the bytes of one or more consecutive entries.
enum Source {
    /// A text tensor's stored bytes.
    Raw(String),
    /// A folded norm, as F32.
    Norm(String),
    /// A scaled matrix, as F32.
    Scaled(String),
    /// The four compressed-tensors entries of an int4 linear.
    Int4(String),
}

/// Writes a safetensors file: the header from `units`' entries, then each unit's bytes.
fn write_safetensors(
    path: &Path,
    units: &[(Vec<Entry>, Source)],
    mut produce: impl FnMut(&Source) -> Result<Vec<Vec<u8>>>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let io = |e| io_error(path, e);
    let mut header = Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0usize;
    for e in units.iter().flat_map(|u| &u.0) {
        let end = offset
            .checked_add(e.bytes)
            .ok_or_else(|| QuantizeError::Options("safetensors file size overflows".into()))?;
        header.insert(
            e.name.clone(),
            json!({"dtype": e.dtype, "shape": e.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut head = serde_json::to_vec(&Value::Object(header)).expect("JSON value serialises");
    head.resize(head.len().next_multiple_of(8), b' ');
    let out = TempOutput::new(path)?;
    let file = out.create()?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(&(head.len() as u64).to_le_bytes())
        .map_err(io)?;
    w.write_all(&head).map_err(io)?;
    for (i, (entries, source)) in units.iter().enumerate() {
        let parts = produce(source)?;
        for (e, bytes) in entries.iter().zip(&parts) {
            if bytes.len() != e.bytes {
                return Err(QuantizeError::Options(format!(
                    "tensor '{}': produced {} bytes, planned {}",
                    e.name,
                    bytes.len(),
                    e.bytes
                )));
            }
            w.write_all(bytes).map_err(io)?;
        }
        progress(i + 1, units.len());
    }
    let file: File = w.into_inner().map_err(|e| io(e.into_error()))?;
    out.commit(file)?;
    Ok(())
}

/// Packs `[rows, cols]` int4 codes (−8..7) into int32 words of 8 along the columns, +8 offset,
/// natural order, zero-padded: compressed-tensors' `weight_packed`.
pub fn pack_rows(q: &[i8], rows: usize, cols: usize) -> Vec<u8> {
    let words = cols.div_ceil(8);
    let mut out = Vec::with_capacity(rows * words * 4);
    for r in 0..rows {
        let row = &q[r * cols..(r + 1) * cols];
        for w in 0..words {
            let mut v = 0u32;
            for (i, &c) in row[w * 8..(w * 8 + 8).min(cols)].iter().enumerate() {
                v |= (((c as i32 + 8) as u32) & 0xF) << (4 * i);
            }
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Packs `[rows, groups]` zero points (−8..7) into `[ceil(rows/8), groups]` int32 words along
/// the rows (the output dim), +8 offset: compressed-tensors' `weight_zero_point`.
pub fn pack_zero_points(z: &[i8], rows: usize, groups: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.div_ceil(8) * groups * 4);
    for rb in 0..rows.div_ceil(8) {
        for j in 0..groups {
            let mut v = 0u32;
            for i in 0..8 {
                let r = rb * 8 + i;
                if r < rows {
                    v |= (((z[r * groups + j] as i32 + 8) as u32) & 0xF) << (4 * i);
                }
            }
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The compressed-tensors byte blobs of one int4 matrix: packed, scale, zero point, shape.
pub fn int4_tensors(m: &Int4Matrix) -> Vec<Vec<u8>> {
    vec![
        pack_rows(&m.q, m.rows, m.cols),
        m.scale.iter().flat_map(|s| s.to_le_bytes()).collect(),
        pack_zero_points(&m.zero, m.rows, m.groups()),
        [m.rows as i64, m.cols as i64]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    ]
}

/// Canonical layer index of a per-layer tensor name.
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("layers.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// Whether the plan quantizes canonical tensor `name` to int4.
pub fn is_quantized(cfg: &Gemma4Config, name: &str) -> bool {
    layer_of(name).is_some_and(|l| quantized_linears(cfg, l).iter().any(|n| n == name))
}

/// The `quantization_config` of config.json for `targets` (module names).
pub fn quantization_config(group: usize, targets: &[String]) -> Value {
    json!({
        "quant_method": "compressed-tensors",
        "format": "pack-quantized",
        "quantization_status": "compressed",
        "config_groups": {
            "group_0": {
                "targets": targets,
                "weights": {
                    "num_bits": 4,
                    "type": "int",
                    "symmetric": false,
                    "strategy": "group",
                    "group_size": group,
                    "dynamic": false,
                    "actorder": null,
                    "observer": "minmax",
                    "observer_kwargs": {}
                },
                "input_activations": null,
                "output_activations": null,
                "format": "pack-quantized"
            }
        },
        "ignore": ["lm_head"],
        "kv_cache_scheme": null,
        "global_compression_ratio": null
    })
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let out = TempOutput::new(path)?;
    let mut f = out.create()?;
    let text = serde_json::to_string_pretty(v).expect("JSON value serialises") + "\n";
    f.write_all(text.as_bytes())
        .map_err(|e| io_error(path, e))?;
    out.commit(f)?;
    Ok(())
}

fn read_config(ckpt: &Checkpoint) -> Result<Value> {
    let path = ckpt.dir().join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| QuantizeError::Options(format!("{}: not valid JSON: {e}", path.display())))
}

fn copy_side_files(ckpt: &Checkpoint, out_dir: &Path) -> Result<()> {
    for f in SIDE_FILES {
        let src = ckpt.dir().join(f);
        if src.is_file() {
            let dst = out_dir.join(f);
            // Written afresh (not `fs::copy`), so a read-only source's mode does not make a
            // second run fail to overwrite it.
            let bytes = std::fs::read(&src).map_err(|e| io_error(&src, e))?;
            let _ = std::fs::remove_file(&dst);
            std::fs::write(&dst, bytes).map_err(|e| io_error(&dst, e))?;
        }
    }
    Ok(())
}

/// Every text tensor of `ckpt` in file order, the unused shared K/V included.
fn all_names(ckpt: &Checkpoint) -> Vec<String> {
    let mut names: Vec<String> = ckpt.text_tensors().into_iter().map(String::from).collect();
    names.extend(ckpt.unused_shared_kv().map(String::from));
    names
}

/// What an export wrote.
#[derive(Clone, Debug)]
pub struct ExportSummary {
    /// Linears stored as int4.
    pub quantized: usize,
    /// Tensors stored dense.
    pub dense: usize,
}

/// Writes the int4 release of `ckpt` under `plan` into `out_dir` (created if needed):
/// `model.safetensors`, `config.json` with `quantization_config`, and the tokenizer files.
pub fn write_compressed_tensors(
    ckpt: &Checkpoint,
    plan: &AwqPlan,
    out_dir: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ExportSummary> {
    let cfg = ckpt.config();
    let g = plan.group;
    let scaled = ScaledWeights {
        base: ckpt,
        plan,
        clip: true,
    };
    let mut units = Vec::new();
    let mut targets = Vec::new();
    for name in all_names(ckpt) {
        let view = ckpt.tensor(&name)?;
        let hf = ckpt.hf_name(&name);
        if is_quantized(cfg, &name) {
            let [rows, cols] = view.shape[..] else {
                return Err(QuantizeError::Options(format!(
                    "tensor '{hf}': expected a matrix, found shape {:?}",
                    view.shape
                )));
            };
            if cols % g != 0 {
                return Err(QuantizeError::Options(format!(
                    "tensor '{hf}': group size {g} does not divide its {cols} columns"
                )));
            }
            let module = hf.strip_suffix(".weight").unwrap_or(&hf).to_string();
            units.push((
                vec![
                    entry(
                        format!("{module}.weight_packed"),
                        "I32",
                        vec![rows, cols.div_ceil(8)],
                    )?,
                    entry(
                        format!("{module}.weight_scale"),
                        "BF16",
                        vec![rows, cols / g],
                    )?,
                    entry(
                        format!("{module}.weight_zero_point"),
                        "I32",
                        vec![rows.div_ceil(8), cols / g],
                    )?,
                    entry(format!("{module}.weight_shape"), "I64", vec![2])?,
                ],
                Source::Int4(name.clone()),
            ));
            targets.push(module);
        } else if plan.touches(cfg, &name) && view.shape.len() == 1 {
            units.push((
                vec![entry(hf, "F32", view.shape.clone())?],
                Source::Norm(name.clone()),
            ));
        } else if plan.touches(cfg, &name) {
            // Scaled MoE expert stacks (a plan searched with `experts`) stay dense, in F32.
            units.push((
                vec![entry(hf, "F32", view.shape.clone())?],
                Source::Scaled(name.clone()),
            ));
        } else {
            units.push((
                vec![entry(
                    hf,
                    view.dtype.safetensors_name(),
                    view.shape.clone(),
                )?],
                Source::Raw(name.clone()),
            ));
        }
    }
    std::fs::create_dir_all(out_dir).map_err(|e| io_error(out_dir, e))?;
    let summary = ExportSummary {
        quantized: targets.len(),
        dense: units.len() - targets.len(),
    };
    write_safetensors(
        &out_dir.join("model.safetensors"),
        &units,
        |source| {
            Ok(match source {
                Source::Raw(n) => vec![ckpt.tensor(n)?.data.to_vec()],
                Source::Norm(n) => vec![f32_bytes(&scaled.vector(n)?)],
                Source::Scaled(n) => vec![f32_bytes(&dense_f32(&scaled, n)?.0)],
                Source::Int4(n) => {
                    let (w, r, c) = dense_f32(&scaled, n)?;
                    let m = quantize(&w, r, c, g, None);
                    Weights::release(ckpt, n);
                    int4_tensors(&m)
                }
            })
        },
        progress,
    )?;
    let mut config = read_config(ckpt)?;
    if let Some(obj) = config.as_object_mut() {
        obj.insert(
            "quantization_config".into(),
            quantization_config(g, &targets),
        );
    }
    write_json(&out_dir.join("config.json"), &config)?;
    copy_side_files(ckpt, out_dir)?;
    Ok(summary)
}

/// `name` through `w` as row-major f32 with its shape.
fn dense_f32(w: &ScaledWeights<'_>, name: &str) -> Result<(Vec<f32>, usize, usize)> {
    if let Some(t) = w.transformed(name)? {
        return Ok(t);
    }
    let m = w.base.matrix(name)?;
    let (r, c) = (m.rows(), m.cols());
    let mut v = vec![0f32; r * c];
    m.rows_to_f32(0, r, &mut v)?;
    Ok((v, r, c))
}

/// Writes `ckpt` with the AWQ scales of `plan` folded in (no clipping) as an F32 safetensors
/// checkpoint in `out_dir`, with its config and tokenizer files: the input of `--awq` GGUF
/// releases.
pub fn write_scaled_checkpoint(
    ckpt: &Checkpoint,
    plan: &AwqPlan,
    out_dir: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let cfg = ckpt.config();
    let scaled = ScaledWeights {
        base: ckpt,
        plan,
        clip: false,
    };
    let mut units = Vec::new();
    for name in all_names(ckpt) {
        let view = ckpt.tensor(&name)?;
        let hf = ckpt.hf_name(&name);
        let source = if !plan.touches(cfg, &name) {
            Source::Raw(name.clone())
        } else if view.shape.len() == 1 {
            Source::Norm(name.clone())
        } else {
            Source::Scaled(name.clone())
        };
        let dtype = match source {
            Source::Raw(_) => view.dtype.safetensors_name(),
            _ => "F32",
        };
        units.push((vec![entry(hf, dtype, view.shape.clone())?], source));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| io_error(out_dir, e))?;
    write_safetensors(
        &out_dir.join("model.safetensors"),
        &units,
        |source| {
            Ok(match source {
                Source::Raw(n) => vec![ckpt.tensor(n)?.data.to_vec()],
                Source::Norm(n) => vec![f32_bytes(&scaled.vector(n)?)],
                Source::Scaled(n) | Source::Int4(n) => {
                    vec![f32_bytes(&dense_f32(&scaled, n)?.0)]
                }
            })
        },
        progress,
    )?;
    write_json(&out_dir.join("config.json"), &read_config(ckpt)?)?;
    copy_side_files(ckpt, out_dir)?;
    Ok(())
}

/// An I/O failure on `file`, as the convert crate reports it.
fn io_error(file: &Path, source: std::io::Error) -> QuantizeError {
    QuantizeError::Convert(ConvertError::Io {
        file: file.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_pack_in_natural_order_with_offset_8() {
        let codes: Vec<i8> = (-8..8).collect();
        let b = pack_rows(&codes, 1, 16);
        assert_eq!(
            b,
            [0x76543210u32, 0xFEDCBA98].map(u32::to_le_bytes).concat()
        );
        // A row of 10 codes takes two words, the second zero-padded above its two codes.
        let b = pack_rows(&[0i8; 10], 1, 10);
        assert_eq!(
            b,
            [0x88888888u32, 0x00000088].map(u32::to_le_bytes).concat()
        );
    }

    #[test]
    fn zero_points_pack_along_the_output_dim() {
        // 9 rows, 2 groups: row r, group j has zero point r - 4 + j (within -8..7).
        let z: Vec<i8> = (0..9)
            .flat_map(|r| (0..2).map(move |j| (r - 4 + j) as i8))
            .collect();
        let b = pack_zero_points(&z, 9, 2);
        let words: Vec<u32> = b
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(words.len(), 4);
        // Word (0, 0): rows 0..8 of group 0, zero point + 8 = r + 4.
        assert_eq!(words[0], 0xBA987654);
        assert_eq!(words[1], 0xCBA98765);
        // Word (1, j): row 8 alone.
        assert_eq!(words[2], 12);
        assert_eq!(words[3], 13);
    }
}
