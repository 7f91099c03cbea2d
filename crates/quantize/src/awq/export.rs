//! Writing AWQ results:
//!
//! - [`write_compressed_tensors`]: the int4 release in compressed-tensors' `pack-quantized`
//!   layout (not AutoAWQ's GEMM layout, which interleaves nibbles as 0,2,4,6,1,3,5,7 and
//!   stores zero points without the +8 offset): per quantized linear
//!   `weight_packed` int32 `[out, in/8]` (code + 8, element k at bits `4·(k%8)` of word `k/8`,
//!   natural order), `weight_scale` bf16 `[out, in/G]`, `weight_zero_point` int32
//!   `[ceil(out/8), in/G]` (zero point + 8 packed along the *output* dim) and `weight_shape`
//!   `[2]` (int64: compressed-tensors stores `torch.tensor(weight.shape)`); `quantization_config` in config.json, so transformers (with
//!   compressed-tensors) and vLLM load it. Each linear's group divides its input width
//!   ([`crate::awq::plan::dividing_group`]); one config group per group size lists its
//!   modules. Norms that absorbed `1/s` are stored as F32 (a bf16 round of `w/s` would add
//!   error the search did not see); everything else is copied as is, the vision and audio
//!   towers and projectors included (listed in `ignore`), so a multimodal model keeps them.
//! - [`write_scaled_checkpoint`]: the model with AWQ scales folded in (no clipping), as an F32
//!   safetensors checkpoint that the GGUF k-quant path reads like any other.
//!
//! Both stream tensor by tensor: the header is planned from shapes, then each tensor is
//! produced and written, so memory is one tensor (in f32) at a time.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashSet};
use std::io::BufWriter;
use std::path::Path;

use convert::output::{write_file, OutputDir, OutputFile};
use convert::pack_quantized::{pack_rows, pack_zero_points};
use convert::stfile::writer::{StEntry, StWriter};
use convert::stfile::StFile;
use convert::{Checkpoint, ConvertError, Gemma4Config, SkippedKind};
use serde_json::{json, Map, Value};
use verify::Weights;

use crate::awq::int4::{quantize, Int4Matrix};
use crate::awq::plan::{quantized_linears, AwqPlan, ScaledWeights};
use crate::awq::search::Dense;
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

/// What produces the bytes of one or more consecutive entries.
enum Source {
    /// A text tensor's stored bytes.
    Raw(String),
    /// A folded norm, as F32.
    Norm(String),
    /// A scaled matrix, as F32.
    Scaled(String),
    /// The four compressed-tensors entries of an int4 linear, at its group size.
    Int4(String, usize),
    /// A vision/audio tower or projector tensor (index into [`Towers`]), bytes as stored.
    Tower(usize),
}

/// The vision and audio towers and projectors of a checkpoint, as its files store them
/// (the text model's [`Checkpoint`] recognises and skips them).
struct Towers {
    files: Vec<StFile>,
    /// (file, tensor) of each tower tensor, in file and header order.
    at: Vec<(usize, usize)>,
}

impl Towers {
    fn open(ckpt: &Checkpoint) -> Result<Towers> {
        let names: HashSet<&str> = ckpt
            .skipped()
            .iter()
            .filter(|t| matches!(t.kind, SkippedKind::Vision | SkippedKind::Audio))
            .map(|t| t.name.as_str())
            .collect();
        let mut files = Vec::new();
        let mut at = Vec::new();
        if !names.is_empty() {
            for (fi, path) in ckpt.files().enumerate() {
                let f = StFile::open(path)?;
                at.extend(
                    (f.tensors().iter().enumerate())
                        .filter(|(_, t)| names.contains(t.name.as_str()))
                        .map(|(ti, _)| (fi, ti)),
                );
                files.push(f);
            }
        }
        Ok(Towers { files, at })
    }

    fn entry(&self, i: usize) -> (&StFile, &convert::stfile::RawTensor) {
        let (fi, ti) = self.at[i];
        (&self.files[fi], &self.files[fi].tensors()[ti])
    }

    /// `ignore` entries of the quantization config: one regex per tower or projector module
    /// prefix (`model.vision_tower`, `model.embed_vision`, ...), in first-seen order.
    fn ignore(&self) -> Vec<String> {
        let mut prefixes: Vec<String> = Vec::new();
        for i in 0..self.at.len() {
            let name = &self.entry(i).1.name;
            let prefix: Vec<&str> = name.splitn(3, '.').take(2).collect();
            let re = format!("re:^{}\\.", prefix.join("\\."));
            if !prefixes.contains(&re) {
                prefixes.push(re);
            }
        }
        prefixes
    }
}

/// Writes the bytes of one unit, in order, in as many pieces as the source likes.
type Sink<'a> = dyn FnMut(&[u8]) -> Result<()> + 'a;

/// Writes a safetensors file: the header from `units`' entries, then each unit's bytes, which
/// `produce` hands to its sink (whole, or piece by piece for the expert stacks).
fn write_safetensors(
    path: &Path,
    units: &[(Vec<StEntry>, Source)],
    mut produce: impl FnMut(&Source, &mut Sink<'_>) -> Result<()>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let mut metadata = Map::new();
    metadata.insert("format".into(), json!("pt"));
    let entries = units.iter().flat_map(|u| u.0.iter().cloned()).collect();
    let out = BufWriter::with_capacity(1 << 20, OutputFile::create(path)?);
    let mut w = StWriter::new(path, out, Some(&metadata), entries)?;
    for (i, (entries, source)) in units.iter().enumerate() {
        let planned: u64 = entries
            .iter()
            .map(|e| {
                convert::stfile::dtype_size(&e.dtype).unwrap_or(0) as u64
                    * e.shape.iter().product::<usize>() as u64
            })
            .sum();
        let mut written = 0u64;
        produce(source, &mut |bytes: &[u8]| {
            written += bytes.len() as u64;
            Ok(w.write(bytes)?)
        })?;
        if written != planned {
            return Err(QuantizeError::Options(format!(
                "tensor '{}': produced {written} bytes, planned {planned}",
                entries[0].name
            )));
        }
        progress(i + 1, units.len());
    }
    w.finish()?
        .into_inner()
        .map_err(|e| io_error(path, e.into_error()))?
        .commit()?;
    Ok(())
}

/// Hands `name` through `w`, scaled, to `sink` as F32 bytes: an expert stack one expert at a
/// time, anything else whole.
fn scaled_bytes(w: &ScaledWeights<'_>, name: &str, sink: &mut Sink<'_>) -> Result<()> {
    match w.expert_blocks(name) {
        Some(ne) => (0..ne).try_for_each(|e| sink(&f32_bytes(&w.expert_block(name, e)?.values))),
        None => sink(&f32_bytes(&dense_f32(w, name)?.values)),
    }
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

/// The one group size of a compressed-tensors release of `ckpt` whose every int4 linear it
/// divides: `requested`, else the largest of [`crate::awq::plan::FALLBACK_GROUPS`] below it
/// that divides every input width; `None` when none does. transformers (5.24, compressed-tensors
/// 0.20) dequantizes every dense module with the first config group's scheme, so a folder with
/// one group size is the one it loads.
pub fn uniform_group(ckpt: &Checkpoint, requested: usize) -> Option<usize> {
    let cfg = ckpt.config();
    let widths: Vec<usize> = all_names(ckpt)
        .iter()
        .filter(|n| is_quantized(cfg, n))
        .filter_map(|n| ckpt.tensor(n).ok()?.shape.get(1).copied())
        .collect();
    crate::awq::plan::group_candidates(requested)
        .find(|&g| widths.iter().all(|w| w.is_multiple_of(g)))
}

/// Whether the plan quantizes canonical tensor `name` to int4.
pub fn is_quantized(cfg: &Gemma4Config, name: &str) -> bool {
    layer_of(name).is_some_and(|l| quantized_linears(cfg, l).iter().any(|n| n == name))
}

/// The `quantization_config` of config.json: one config group per int4 group size (largest
/// first, `group_0`), each listing its modules (`targets`); `ignore` names the modules left
/// dense besides the head (regexes, as compressed-tensors matches `re:` entries).
pub fn quantization_config(groups: &[(usize, Vec<String>)], ignore: &[String]) -> Value {
    let config_groups: Map<String, Value> = groups
        .iter()
        .enumerate()
        .map(|(i, (group, targets))| {
            let g = json!({
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
            });
            (format!("group_{i}"), g)
        })
        .collect();
    let mut ignore_all = vec!["lm_head".to_string()];
    ignore_all.extend(ignore.iter().cloned());
    json!({
        "quant_method": "compressed-tensors",
        "format": "pack-quantized",
        "quantization_status": "compressed",
        "config_groups": config_groups,
        "ignore": ignore_all,
        "kv_cache_scheme": null,
        "global_compression_ratio": null
    })
}

/// Writes the folder `out_dir` atomically: `fill` writes into a temporary folder, which then
/// moves into place; errors name files under `out_dir`, not the temporary folder.
fn write_folder(out_dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let out = OutputDir::create(out_dir)?;
    fill(out.path()).map_err(|e| match e {
        QuantizeError::Convert(c) => QuantizeError::Convert(out.retarget(c)),
        other => other,
    })?;
    Ok(out.commit()?)
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).expect("JSON value serialises") + "\n";
    Ok(write_file(path, text.as_bytes())?)
}

fn read_config(ckpt: &Checkpoint) -> Result<Value> {
    let path = ckpt.dir().join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| QuantizeError::Options(format!("{}: not valid JSON: {e}", path.display())))
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
    /// Tensors stored dense (the towers included).
    pub dense: usize,
    /// Of those, vision/audio tower and projector tensors carried over as released.
    pub towers: usize,
    /// Each int4 linear: module name, `[rows, cols]`, group size.
    pub targets: Vec<Int4Target>,
}

/// One int4 linear of a compressed-tensors release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Int4Target {
    /// Module name (the tensor name without `.weight`).
    pub module: String,
    pub rows: usize,
    pub cols: usize,
    /// Input columns per scale: divides `cols`.
    pub group: usize,
}

/// The layout of a compressed-tensors release: the safetensors entries and their sources, the
/// int4 targets, the tower tensors and the config's `ignore` entries.
struct Layout {
    units: Vec<(Vec<StEntry>, Source)>,
    targets: Vec<Int4Target>,
    towers: Towers,
}

fn layout(ckpt: &Checkpoint, plan: &AwqPlan) -> Result<Layout> {
    let cfg = ckpt.config();
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
            let g = plan.group_of(cols).ok_or_else(|| {
                QuantizeError::Options(format!(
                    "tensor '{hf}': neither group size {} nor any of {:?} below it divides its {cols} columns (try --group-size 32)",
                    plan.group,
                    crate::awq::plan::FALLBACK_GROUPS
                ))
            })?;
            let module = hf.strip_suffix(".weight").unwrap_or(&hf).to_string();
            units.push((
                vec![
                    StEntry::new(
                        format!("{module}.weight_packed"),
                        "I32",
                        vec![rows, cols.div_ceil(8)],
                    ),
                    StEntry::new(
                        format!("{module}.weight_scale"),
                        "BF16",
                        vec![rows, cols / g],
                    ),
                    StEntry::new(
                        format!("{module}.weight_zero_point"),
                        "I32",
                        vec![rows.div_ceil(8), cols / g],
                    ),
                    StEntry::new(format!("{module}.weight_shape"), "I64", vec![2]),
                ],
                Source::Int4(name.clone(), g),
            ));
            targets.push(Int4Target {
                module,
                rows,
                cols,
                group: g,
            });
        } else if plan.touches(cfg, &name) && view.shape.len() == 1 {
            units.push((
                vec![StEntry::new(hf, "F32", view.shape.clone())],
                Source::Norm(name.clone()),
            ));
        } else if plan.touches(cfg, &name) {
            // Scaled MoE expert stacks (a plan searched with `experts`) stay dense, in F32.
            units.push((
                vec![StEntry::new(hf, "F32", view.shape.clone())],
                Source::Scaled(name.clone()),
            ));
        } else {
            units.push((
                vec![StEntry::new(
                    hf,
                    view.dtype.safetensors_name(),
                    view.shape.clone(),
                )],
                Source::Raw(name.clone()),
            ));
        }
    }
    let towers = Towers::open(ckpt)?;
    for i in 0..towers.at.len() {
        let t = towers.entry(i).1;
        units.push((
            vec![StEntry::new(&t.name, &t.dtype, t.shape.clone())],
            Source::Tower(i),
        ));
    }
    Ok(Layout {
        units,
        targets,
        towers,
    })
}

impl Layout {
    fn summary(&self) -> ExportSummary {
        ExportSummary {
            quantized: self.targets.len(),
            dense: self.units.len() - self.targets.len(),
            towers: self.towers.at.len(),
            targets: self.targets.clone(),
        }
    }

    /// The config groups: modules by group size, largest first.
    fn config_groups(&self) -> Vec<(usize, Vec<String>)> {
        let mut by: BTreeMap<Reverse<usize>, Vec<String>> = BTreeMap::new();
        for t in &self.targets {
            by.entry(Reverse(t.group))
                .or_default()
                .push(t.module.clone());
        }
        by.into_iter().map(|(Reverse(g), m)| (g, m)).collect()
    }
}

/// What [`write_compressed_tensors`] would write for `ckpt` at `group`, without searching:
/// the int4 targets with their group sizes, and the dense tensors (for `--dry-run`).
pub fn plan_compressed_tensors(ckpt: &Checkpoint, group: usize) -> Result<ExportSummary> {
    Ok(layout(ckpt, &AwqPlan::identity(ckpt.config(), group))?.summary())
}

/// Writes the int4 release of `ckpt` under `plan` as the folder `out_dir`, atomically (files of
/// the same names in an existing folder are replaced, nothing is left on failure):
/// `model.safetensors`, `config.json` with `quantization_config`, and the tokenizer files.
pub fn write_compressed_tensors(
    ckpt: &Checkpoint,
    plan: &AwqPlan,
    out_dir: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ExportSummary> {
    let scaled = ScaledWeights {
        base: ckpt,
        plan,
        clip: true,
    };
    let layout = layout(ckpt, plan)?;
    let summary = layout.summary();
    let mut config = read_config(ckpt)?;
    if let Some(obj) = config.as_object_mut() {
        obj.insert(
            "quantization_config".into(),
            quantization_config(&layout.config_groups(), &layout.towers.ignore()),
        );
    }
    let towers = &layout.towers;
    let bytes = |source: &Source, sink: &mut Sink<'_>| match source {
        Source::Raw(n) => copied(ckpt, n, sink),
        Source::Norm(n) => sink(&f32_bytes(&scaled.vector(n)?)),
        Source::Scaled(n) => {
            scaled_bytes(&scaled, n, sink)?;
            Weights::release(ckpt, n);
            Ok(())
        }
        Source::Int4(n, g) => {
            let d = dense_f32(&scaled, n)?;
            let m = quantize(&d.values, d.rows, d.cols, *g, None);
            Weights::release(ckpt, n);
            int4_tensors(&m).iter().try_for_each(|part| sink(part))
        }
        Source::Tower(i) => {
            let (f, t) = towers.entry(*i);
            sink(f.bytes(t))
        }
    };
    write_release(ckpt, out_dir, &layout.units, &config, bytes, progress)?;
    Ok(summary)
}

/// Writes the release folder `out_dir` atomically: `model.safetensors` of `units` (the bytes of
/// each source from `bytes`), `config.json` and the tokenizer files of `ckpt`.
fn write_release(
    ckpt: &Checkpoint,
    out_dir: &Path,
    units: &[(Vec<StEntry>, Source)],
    config: &Value,
    bytes: impl FnMut(&Source, &mut Sink<'_>) -> Result<()>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    write_folder(out_dir, |dir| {
        write_safetensors(&dir.join("model.safetensors"), units, bytes, progress)?;
        write_json(&dir.join("config.json"), config)?;
        Ok(ckpt.copy_side_files(SIDE_FILES, dir)?)
    })
}

/// Copies tensor `name` as stored, then drops its pages: a folder written tensor by tensor keeps
/// about one tensor of the checkpoint resident (the experts of a 26B-A4B layer are gigabytes).
fn copied(ckpt: &Checkpoint, name: &str, sink: &mut Sink<'_>) -> Result<()> {
    sink(ckpt.tensor(name)?.data)?;
    Weights::release(ckpt, name);
    Ok(())
}

/// `name` through `w` as row-major f32 with its shape.
fn dense_f32(w: &ScaledWeights<'_>, name: &str) -> Result<Dense> {
    match w.transformed(name)? {
        Some(t) => Ok(t),
        None => Ok(Dense::read(w.base, name)?),
    }
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
        units.push((vec![StEntry::new(hf, dtype, view.shape.clone())], source));
    }
    let config = read_config(ckpt)?;
    let bytes = |source: &Source, sink: &mut Sink<'_>| match source {
        Source::Raw(n) => copied(ckpt, n, sink),
        Source::Norm(n) => sink(&f32_bytes(&scaled.vector(n)?)),
        Source::Scaled(n) | Source::Int4(n, _) => {
            scaled_bytes(&scaled, n, sink)?;
            Weights::release(ckpt, n);
            Ok(())
        }
        Source::Tower(_) => Err(QuantizeError::Options(
            "internal: the scaled checkpoint plans no tower tensors".into(),
        )),
    };
    write_release(ckpt, out_dir, &units, &config, bytes, progress)
}

/// An I/O failure on `file`, as the convert crate reports it.
fn io_error(file: &Path, source: std::io::Error) -> QuantizeError {
    QuantizeError::Convert(ConvertError::Io {
        file: file.to_path_buf(),
        source,
    })
}
