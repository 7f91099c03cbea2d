//! Whole-model estimates from the measurements: decode and prefill tokens per second and the
//! memory a model needs at a context length.
//!
//! The model's tensors come from a GGUF file or from the `--dry-run` plan of a variant and type
//! (exact bytes per tensor, without writing a file). A token's decode time is the sum, over the
//! matrices it multiplies, of their bytes at the decode speed measured for their type, plus
//! reading the KV cache at the measured streaming bandwidth; a token's prefill time is their
//! FLOPs at the prefill rate measured for their type. Memory is weights + KV cache + compute
//! buffers, with Gemma 4's cache layout (see [`kv_cache_bytes`]).

use std::collections::BTreeMap;
use std::path::Path;

use convert::{Gemma4Config, LayerType, Variant};
use serde::{Deserialize, Serialize};

use crate::formats::{Format, Measurement};

/// What `g4q bench --model`/`--variant --type` predicts for one model on this machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The GGUF file, or `<variant> <type> (plan)`.
    pub model: String,
    pub ctx: usize,
    pub threads: usize,
    pub decode_tokens_per_s: f64,
    pub prefill_tokens_per_s: f64,
    /// weights_bytes + kv_cache_bytes + compute_buffer_bytes.
    pub memory_bytes: u64,
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    pub compute_buffer_bytes: u64,
    /// Decode tokens/s of the same model measured through g4q's own forward pass, when run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_decode_tokens_per_s: Option<f64>,
}

/// One tensor of the model: GGUF name, weight format, dims in ggml order (row length first),
/// bytes. A GGUF file's tensors are [`Format::Ggml`]; an AWQ int4 folder's int4 linears are
/// [`Format::AwqInt4`] (the speeds are looked up by the format's name, as `g4q bench` reports it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelTensor {
    pub name: String,
    pub ty: Format,
    pub dims: Vec<u64>,
    pub bytes: u64,
}

/// Bytes per cached K or V value: llama.cpp's default cache type is F16.
pub const KV_VALUE_BYTES: u64 = 2;

/// Tokens per prefill batch (llama.cpp's default `n_ubatch`), which sizes the compute buffers.
pub const UBATCH: u64 = 512;

/// Positions layer `l` keeps in its cache at context `ctx`: sliding layers `min(ctx, window)`,
/// full layers `ctx`, KV-shared layers none (they read an earlier layer's cache).
pub fn cached_positions(cfg: &Gemma4Config, l: usize, ctx: usize) -> usize {
    if cfg.is_kv_shared(l) {
        0
    } else if cfg.layer_type(l) == LayerType::Sliding {
        ctx.min(cfg.sliding_window)
    } else {
        ctx
    }
}

/// Bytes per cached position of layer `l`: K and V of every KV head, or only K where V is K
/// (the full layers of 26B-A4B and 31B).
fn bytes_per_position(cfg: &Gemma4Config, l: usize) -> u64 {
    let per = (cfg.num_kv_heads(l) * cfg.head_dim_of(l)) as u64 * KV_VALUE_BYTES;
    if cfg.v_is_k(l) {
        per
    } else {
        2 * per
    }
}

/// The KV cache at context `ctx` (F16).
pub fn kv_cache_bytes(cfg: &Gemma4Config, ctx: usize) -> u64 {
    (0..cfg.num_hidden_layers)
        .map(|l| cached_positions(cfg, l, ctx) as u64 * bytes_per_position(cfg, l))
        .sum()
}

/// Bytes of cache one decoded token reads: every layer attends over its positions, KV-shared
/// layers over their source layer's.
pub fn kv_read_bytes(cfg: &Gemma4Config, ctx: usize) -> u64 {
    (0..cfg.num_hidden_layers)
        .map(|l| {
            let src = cfg.kv_source_layer(l).unwrap_or(l);
            cached_positions(cfg, src, ctx) as u64 * bytes_per_position(cfg, src)
        })
        .sum()
}

/// The compute buffers of a [`UBATCH`]-token batch at context `ctx`, modelled on what
/// llama.cpp's CPU backend reserves: f32 activations for the batch (logits over the vocabulary,
/// the widest MLP's gate and up outputs, three hidden-size buffers and the widest query) plus
/// one layer's attention scores over the context.
pub fn compute_buffer_bytes(cfg: &Gemma4Config, ctx: usize) -> u64 {
    let layers = 0..cfg.num_hidden_layers;
    let ffn = layers
        .clone()
        .map(|l| cfg.intermediate_size_of(l))
        .max()
        .unwrap_or(0)
        .max(cfg.moe_intermediate_size * cfg.top_k_experts);
    let q = layers
        .map(|l| cfg.num_attention_heads * cfg.head_dim_of(l))
        .max()
        .unwrap_or(0);
    let acts = cfg.vocab_size + 2 * ffn + 3 * cfg.hidden_size + q;
    4 * UBATCH * acts as u64 + 4 * UBATCH * (cfg.num_attention_heads * ctx) as u64
}

/// Measured speeds by type: decode weight GB/s and prefill GFLOP/s, plus the read bandwidth.
#[derive(Clone, Debug, Default)]
pub struct Speeds {
    pub decode_gbs: BTreeMap<String, f64>,
    pub prefill_gflops: BTreeMap<String, f64>,
    pub read_gbs: f64,
}

/// Share of the memory bandwidth a device profile's decode is modelled at (the share this
/// issue's CPU kernels are held to; measured figures replace it on machines we can run).
pub const PROFILE_DECODE_EFFICIENCY: f64 = 0.7;
/// Share of the fp16 peak a device profile's prefill is modelled at.
pub const PROFILE_PREFILL_EFFICIENCY: f64 = 0.5;

impl Speeds {
    /// Modelled speeds of a device profile for `types`: decode at
    /// [`PROFILE_DECODE_EFFICIENCY`] of its bandwidth, prefill at
    /// [`PROFILE_PREFILL_EFFICIENCY`] of its fp16 peak, whatever the format.
    pub fn from_device(d: &crate::devices::Device, types: &[Format]) -> Speeds {
        let mut s = Speeds {
            read_gbs: d.memory_bandwidth_gbs,
            ..Speeds::default()
        };
        for t in types {
            let name = t.to_string();
            s.decode_gbs.insert(
                name.clone(),
                d.memory_bandwidth_gbs * PROFILE_DECODE_EFFICIENCY,
            );
            s.prefill_gflops
                .insert(name, d.peak_fp16_tflops * 1e3 * PROFILE_PREFILL_EFFICIENCY);
        }
        s
    }

    /// Speeds at `threads` from measurements: per type, the mean over shapes of the fastest
    /// path's figure (prefill512 where measured, else prefill128).
    pub fn from_results(results: &[Measurement], threads: usize, read_gbs: f64) -> Speeds {
        let mut best: BTreeMap<(String, String, String), f64> = BTreeMap::new();
        for m in results.iter().filter(|m| m.threads == threads) {
            let v = if m.op == "decode" {
                m.weight_gbs
            } else {
                m.gflops
            };
            let e = best
                .entry((m.ty.clone(), m.op.clone(), m.shape.clone()))
                .or_insert(0.0);
            *e = e.max(v);
        }
        let mean = |op: &str| -> BTreeMap<String, f64> {
            let mut acc: BTreeMap<String, (f64, usize)> = BTreeMap::new();
            for ((ty, o, _), v) in &best {
                if o == op {
                    let e = acc.entry(ty.clone()).or_default();
                    e.0 += v;
                    e.1 += 1;
                }
            }
            acc.into_iter()
                .map(|(k, (s, n))| (k, s / n as f64))
                .collect()
        };
        let mut prefill = mean("prefill128");
        prefill.extend(mean("prefill512"));
        Speeds {
            decode_gbs: mean("decode"),
            prefill_gflops: prefill,
            read_gbs,
        }
    }
}

/// The matrices one token multiplies, as (type, bytes read, FLOPs): every 2-D or 3-D layer
/// weight (experts scaled by top-k / experts; the unused K/V of KV-shared layers left out),
/// `per_layer_model_proj`, and the output head (`output.weight`, or the tied `token_embd`).
/// Embedding lookups read one row and are left out.
pub fn per_token_matrices(cfg: &Gemma4Config, tensors: &[ModelTensor]) -> Vec<(Format, f64, f64)> {
    let has_output = tensors.iter().any(|t| t.name == "output.weight");
    let mut out = Vec::new();
    for t in tensors.iter().filter(|t| t.dims.len() >= 2) {
        let head = if has_output {
            t.name == "output.weight"
        } else {
            t.name == "token_embd.weight"
        };
        let layer: Option<usize> = t
            .name
            .strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|n| n.parse().ok());
        let used = head
            || t.name == "per_layer_model_proj.weight"
            || layer.is_some_and(|l| {
                let unused_kv = cfg.is_kv_shared(l)
                    && (t.name.ends_with(".attn_k.weight") || t.name.ends_with(".attn_v.weight"));
                !unused_kv
            });
        if !used {
            continue;
        }
        let frac = if t.name.contains("_exps.") && cfg.num_experts > 0 {
            cfg.top_k_experts as f64 / cfg.num_experts as f64
        } else {
            1.0
        };
        let values: f64 = t.dims.iter().map(|&d| d as f64).product();
        out.push((t.ty, t.bytes as f64 * frac, 2.0 * values * frac));
    }
    out
}

/// Decode and prefill tokens per second of `tensors` at context `ctx` from `speeds`. Fails
/// naming a type that has no measurement.
pub fn tokens_per_s(
    cfg: &Gemma4Config,
    tensors: &[ModelTensor],
    ctx: usize,
    speeds: &Speeds,
) -> Result<(f64, f64), String> {
    let (mut decode_s, mut prefill_s) = (0.0, 0.0);
    for (ty, bytes, flops) in per_token_matrices(cfg, tensors) {
        let name = ty.to_string();
        let gbs = speeds.decode_gbs.get(&name).copied().filter(|v| *v > 0.0);
        let gfl = speeds
            .prefill_gflops
            .get(&name)
            .copied()
            .filter(|v| *v > 0.0);
        let (Some(gbs), Some(gfl)) = (gbs, gfl) else {
            return Err(format!("no decode and prefill measurement of {name}"));
        };
        decode_s += bytes / (gbs * 1e9);
        prefill_s += flops / (gfl * 1e9);
    }
    if speeds.read_gbs > 0.0 {
        decode_s += kv_read_bytes(cfg, ctx) as f64 / (speeds.read_gbs * 1e9);
    }
    Ok((1.0 / decode_s, 1.0 / prefill_s))
}

/// The weight types the matrices of `tensors` use (what must be measured for an estimate).
pub fn matrix_types(cfg: &Gemma4Config, tensors: &[ModelTensor]) -> Vec<Format> {
    let mut v: Vec<Format> = per_token_matrices(cfg, tensors)
        .into_iter()
        .map(|(t, _, _)| t)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The config and tensors of a GGUF file (header only; no tensor data is read).
pub fn from_gguf(path: &Path) -> Result<(Gemma4Config, Vec<ModelTensor>), String> {
    let file = convert::gguf::GgufFile::open(path).map_err(|e| e.to_string())?;
    let cfg = convert::llama::config_from_gguf(&file).map_err(|e| e.to_string())?;
    let tensors = file
        .tensors()
        .iter()
        .map(|t| {
            let bytes = t
                .checked_n_bytes()
                .ok_or_else(|| format!("{}: tensor '{}' size overflows", path.display(), t.name))?;
            Ok(ModelTensor {
                name: t.name.clone(),
                ty: Format::Ggml(t.ty),
                dims: t.dims.clone(),
                bytes,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok((cfg, tensors))
}

/// The config and tensors `g4q convert --dry-run --type ftype` plans for the released
/// `variant`: the plan is made on a sparse checkpoint (header and config only; its data is a
/// hole in a temporary file), so even 31B needs no disk space and no download.
pub fn from_plan(
    variant: Variant,
    ftype: &str,
) -> Result<(Gemma4Config, Vec<ModelTensor>), String> {
    let ftype: quantize::ftype::FileType =
        ftype.parse().map_err(|e: String| format!("--type: {e}"))?;
    let dir = sparse_checkpoint(variant)?;
    let ckpt = convert::Checkpoint::open(dir.path()).map_err(|e| e.to_string())?;
    let opts = quantize::gguf_release::ReleaseOptions {
        ftype,
        mix: Default::default(),
        imatrix: None,
        progress: None,
    };
    let tensors = plan_tensors(&ckpt, &opts)?;
    Ok((ckpt.config().clone(), tensors))
}

/// The tensors `g4q convert --dry-run` plans for `ckpt` with `opts` (exact bytes per tensor).
pub fn plan_tensors(
    ckpt: &convert::Checkpoint,
    opts: &quantize::gguf_release::ReleaseOptions<'_>,
) -> Result<Vec<ModelTensor>, String> {
    let rows = quantize::gguf_release::plan(ckpt, opts).map_err(|e| e.to_string())?;
    Ok(rows
        .into_iter()
        .map(|r| ModelTensor {
            dims: r.tensor.shape.iter().rev().map(|&d| d as u64).collect(),
            name: r.tensor.gguf_name,
            ty: Format::Ggml(r.choice.ty),
            bytes: r.bytes,
        })
        .collect())
}

/// A temporary folder holding the released `variant`'s real-width checkpoint as a header only
/// (`config.json` and a `model.safetensors` whose data is a hole): enough to plan any release
/// of it without disk space or a download. Removed when dropped.
pub fn sparse_checkpoint(variant: Variant) -> Result<tempfile::TempDir, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
    write_sparse_checkpoint(dir.path(), variant)?;
    Ok(dir)
}

/// Writes `config.json` and a sparse `model.safetensors` (a real header, data left as a hole)
/// of the released `variant` into `dir`.
fn write_sparse_checkpoint(dir: &Path, variant: Variant) -> Result<(), String> {
    use std::io::Write;
    let layers = convert::synth::real_layers(variant);
    let config = convert::synth::synth_config(variant, layers, 0);
    let cfg = Gemma4Config::from_json_str(&config.to_string(), variant.cli_name())
        .map_err(|e| e.to_string())?;
    let specs = convert::catalogue::text_catalogue(&cfg).map_err(|e| e.to_string())?;
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for spec in specs.iter().filter(|s| s.need == convert::Need::Required) {
        let n = spec.shape.iter().map(|&d| d as u64).product::<u64>() * 2;
        header.insert(
            format!("{}{}", convert::catalogue::RELEASED_PREFIX, spec.name),
            serde_json::json!({"dtype": "BF16", "shape": spec.shape, "data_offsets": [offset, offset + n]}),
        );
        offset += n;
    }
    let mut header =
        serde_json::to_vec(&serde_json::Value::Object(header)).map_err(|e| e.to_string())?;
    header.resize(header.len().next_multiple_of(8), b' ');
    let io = |e: std::io::Error| format!("{}: {e}", dir.display());
    std::fs::write(dir.join("config.json"), config.to_string()).map_err(io)?;
    let mut f = std::fs::File::create(dir.join("model.safetensors")).map_err(io)?;
    f.write_all(&(header.len() as u64).to_le_bytes())
        .map_err(io)?;
    f.write_all(&header).map_err(io)?;
    f.set_len(8 + header.len() as u64 + offset).map_err(io)?;
    Ok(())
}

/// The full estimate for `tensors` at `ctx` with `speeds` measured on `threads` threads.
pub fn estimate(
    model: String,
    cfg: &Gemma4Config,
    tensors: &[ModelTensor],
    ctx: usize,
    threads: usize,
    speeds: &Speeds,
) -> Result<Estimate, String> {
    let (decode, prefill) = tokens_per_s(cfg, tensors, ctx, speeds)?;
    let weights: u64 = tensors.iter().map(|t| t.bytes).sum();
    let kv = kv_cache_bytes(cfg, ctx);
    let compute = compute_buffer_bytes(cfg, ctx);
    Ok(Estimate {
        model,
        ctx,
        threads,
        decode_tokens_per_s: decode,
        prefill_tokens_per_s: prefill,
        memory_bytes: weights + kv + compute,
        weights_bytes: weights,
        kv_cache_bytes: kv,
        compute_buffer_bytes: compute,
        measured_decode_tokens_per_s: None,
    })
}
