//! Synthetic full-width checkpoints: a released variant's real config, names and tensor widths,
//! but only N layers of random bf16 weights, for memory and speed measurements at real sizes.
//!
//! The file is written tensor by tensor, chunk by chunk, to a temporary name and renamed at the
//! end, so even a 31B-wide checkpoint needs only a few tens of MB of memory to write. The
//! tokenizer is synthetic too ([`synthetic_tokenizer`]): Gemma's special tokens, the 256
//! byte-fallback tokens and filler tokens up to the real vocabulary size, so text encodes (byte
//! by byte) and converters that need a vocabulary have one.
//!
//! Values are deterministic for a seed whatever the thread count: every chunk of every tensor
//! draws from its own ChaCha8 stream position (stream = tensor index, word = element offset).

use std::path::{Path, PathBuf};

use rand::RngCore;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::{json, Value};

use crate::catalogue::{self, Need, TensorSpec};
use crate::checkpoint::SINGLE_FILE;
use crate::config::{Gemma4Config, Variant};
use crate::error::{ConvertError, Result};
use crate::output::{write_file, OutputDir, OutputFile};
use crate::stfile::writer::{StEntry, StWriter};

/// Standard deviation of matrix weights (the usual Gemma initializer range).
const WEIGHT_STD: f32 = 0.02;
/// Elements generated per chunk (one ChaCha stream segment, 2 MB of bf16).
const CHUNK: usize = 1 << 20;
/// Chunks generated in parallel before they are written in order.
const CHUNKS_PER_BATCH: usize = 8;

/// The real text hyperparameters of a released variant (its `config.json`'s `text_config`).
struct RealShape {
    hidden: usize,
    intermediate: usize,
    heads: usize,
    kv_heads: usize,
    global_kv_heads: Option<usize>,
    k_eq_v: bool,
    window: usize,
    /// One full layer every `period` layers.
    period: usize,
    max_positions: usize,
    per_layer_input: usize,
    real_layers: usize,
    real_kv_shared: usize,
    double_wide: bool,
    /// (experts, top k, expert width).
    moe: Option<(usize, usize, usize)>,
}

fn real_shape(v: Variant) -> RealShape {
    match v {
        Variant::E2B => RealShape {
            hidden: 1536,
            intermediate: 6144,
            heads: 8,
            kv_heads: 1,
            global_kv_heads: None,
            k_eq_v: false,
            window: 512,
            period: 5,
            max_positions: 131_072,
            per_layer_input: 256,
            real_layers: 35,
            real_kv_shared: 20,
            double_wide: true,
            moe: None,
        },
        Variant::E4B => RealShape {
            hidden: 2560,
            intermediate: 10240,
            heads: 8,
            kv_heads: 2,
            global_kv_heads: None,
            k_eq_v: false,
            window: 512,
            period: 6,
            max_positions: 131_072,
            per_layer_input: 256,
            real_layers: 42,
            real_kv_shared: 18,
            double_wide: false,
            moe: None,
        },
        Variant::A26B => RealShape {
            hidden: 2816,
            intermediate: 2112,
            heads: 16,
            kv_heads: 8,
            global_kv_heads: Some(2),
            k_eq_v: true,
            window: 1024,
            period: 6,
            max_positions: 262_144,
            per_layer_input: 0,
            real_layers: 30,
            real_kv_shared: 0,
            double_wide: false,
            moe: Some((128, 8, 704)),
        },
        Variant::B31 => RealShape {
            hidden: 5376,
            intermediate: 21504,
            heads: 32,
            kv_heads: 16,
            global_kv_heads: Some(4),
            k_eq_v: true,
            window: 1024,
            period: 6,
            max_positions: 262_144,
            per_layer_input: 0,
            real_layers: 60,
            real_kv_shared: 0,
            double_wide: false,
            moe: None,
        },
    }
}

/// Number of decoder layers of the released `v` (`synth_config(v, real_layers(v), _)` is the
/// released model's own config).
pub fn real_layers(v: Variant) -> usize {
    real_shape(v).real_layers
}

/// Layer types for `n` layers: the variant's sliding/full period, and always full last (as in
/// every released config).
fn layer_types(period: usize, n: usize) -> Vec<&'static str> {
    (0..n)
        .map(|i| {
            if (i + 1) % period == 0 || i + 1 == n {
                "full_attention"
            } else {
                "sliding_attention"
            }
        })
        .collect()
}

/// KV-shared layers scaled from the real count to `n` layers, reduced until every shared layer
/// has an earlier non-shared layer of its type to read from.
fn kv_shared(types: &[&str], real: usize, real_layers: usize) -> usize {
    let n = types.len();
    let mut shared = n * real / real_layers;
    while shared > 0 {
        let first = n - shared;
        if (first..n).all(|l| types[..first].contains(&types[l])) {
            break;
        }
        shared -= 1;
    }
    shared
}

/// The released-layout `config.json` of a synthetic `variant` checkpoint with `layers` layers.
pub fn synth_config(variant: Variant, layers: usize, seed: u64) -> Value {
    let s = real_shape(variant);
    let types = layer_types(s.period, layers);
    let shared = kv_shared(&types, s.real_kv_shared, s.real_layers);
    let (experts, top_k, expert_width) = match s.moe {
        Some((e, k, w)) => (json!(e), json!(k), json!(w)),
        None => (Value::Null, Value::Null, Value::Null),
    };
    json!({
        "architectures": ["Gemma4ForConditionalGeneration"],
        "model_type": "gemma4",
        "dtype": "bfloat16",
        "tie_word_embeddings": true,
        "g4q_synth": {
            "variant": variant.cli_name(),
            "layers": layers,
            "seed": seed,
            "note": "random weights and a synthetic byte-level tokenizer (g4q synth)",
        },
        "text_config": {
            "model_type": "gemma4_text",
            "dtype": "bfloat16",
            "vocab_size": 262_144,
            "hidden_size": s.hidden,
            "intermediate_size": s.intermediate,
            "num_hidden_layers": layers,
            "num_attention_heads": s.heads,
            "num_key_value_heads": s.kv_heads,
            "num_global_key_value_heads": s.global_kv_heads,
            "head_dim": 256,
            "global_head_dim": 512,
            "attention_k_eq_v": s.k_eq_v,
            "attention_bias": false,
            "attention_dropout": 0.0,
            "sliding_window": s.window,
            "layer_types": types,
            "max_position_embeddings": s.max_positions,
            "rope_parameters": {
                "full_attention": {
                    "rope_type": "proportional",
                    "partial_rotary_factor": 0.25,
                    "rope_theta": 1_000_000.0,
                },
                "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
            },
            "rms_norm_eps": 1e-6,
            "final_logit_softcapping": 30.0,
            "hidden_activation": "gelu_pytorch_tanh",
            "tie_word_embeddings": true,
            "hidden_size_per_layer_input": s.per_layer_input,
            "vocab_size_per_layer_input": 262_144,
            "num_kv_shared_layers": shared,
            "use_double_wide_mlp": s.double_wide,
            "enable_moe_block": s.moe.is_some(),
            "num_experts": experts,
            "top_k_experts": top_k,
            "moe_intermediate_size": expert_width,
            "pad_token_id": 0,
            "bos_token_id": 2,
            "eos_token_id": [1, 106],
        },
    })
}

/// What `write_synth` produced.
#[derive(Clone, Debug)]
pub struct SynthSummary {
    pub weights: PathBuf,
    pub config: Gemma4Config,
    pub tensors: usize,
    pub bytes: u64,
}

/// Writes `config.json`, `model.safetensors` and a synthetic tokenizer of a `variant`
/// checkpoint with `layers` layers as the folder `dir`, atomically (an [`OutputDir`]): files of
/// the same names in an existing `dir` are replaced, nothing is left on failure.
/// `progress(done, total)` is called with bytes of tensor data written so far.
pub fn write_synth(
    dir: &Path,
    variant: Variant,
    layers: usize,
    seed: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SynthSummary> {
    if layers == 0 {
        return Err(ConvertError::config(
            "--layers",
            "a checkpoint needs at least 1 layer",
        ));
    }
    let out = OutputDir::create(dir)?;
    let summary = (|| {
        let summary = write_checkpoint_files(
            out.path(),
            &synth_config(variant, layers, seed),
            seed,
            progress,
        )?;
        let (tokenizer, tokenizer_config) = synthetic_tokenizer(summary.config.vocab_size);
        for (name, value) in [
            ("tokenizer.json", tokenizer),
            ("tokenizer_config.json", tokenizer_config),
        ] {
            let path = out.path().join(name);
            let text = serde_json::to_string(&value)
                .map_err(|e| ConvertError::format(&path, e.to_string()))?;
            write_file(&path, text.as_bytes())?;
        }
        Ok(summary)
    })()
    .map_err(|e| out.retarget(e))?;
    out.commit()?;
    Ok(SynthSummary {
        weights: dir.join(SINGLE_FILE),
        ..summary
    })
}

/// A Gemma-style BPE tokenizer of `vocab_size` tokens for synthetic checkpoints: `<pad>`,
/// `<eos>`, `<bos>`, `<unk>`, `<mask>` (ids 0–4, as in the released tokenizer), the byte tokens
/// `<0x00>`…`<0xFF>` (ids 5–260), then filler tokens. With byte fallback and no merges every
/// text encodes to its UTF-8 bytes.
pub fn synthetic_tokenizer(vocab_size: usize) -> (Value, Value) {
    let specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"];
    let mut vocab = serde_json::Map::with_capacity(vocab_size);
    for (id, t) in specials.iter().enumerate() {
        vocab.insert((*t).to_string(), Value::from(id));
    }
    for b in 0..256usize {
        vocab.insert(format!("<0x{b:02X}>"), Value::from(specials.len() + b));
    }
    for id in specials.len() + 256..vocab_size {
        vocab.insert(format!("\u{2581}t{id}"), Value::from(id));
    }
    let added: Vec<Value> = specials
        .iter()
        .enumerate()
        .map(|(id, t)| {
            serde_json::json!({"id": id, "content": t, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"},
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"}
        ]},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab, "merges": []}
    });
    let config = serde_json::json!({
        "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>",
        "mask_token": "<mask>", "tokenizer_class": "GemmaTokenizer"
    });
    (tokenizer, config)
}

/// Writes a random bf16 checkpoint for any Gemma 4 `config.json` value (released or causal
/// form; tensors are named in the released layout): every required text tensor of its
/// catalogue, matrices ~N(0, 0.02²), vectors (norms, scales) ~N(1, 0.02²).
pub fn write_random_checkpoint(
    dir: &Path,
    config_json: &Value,
    seed: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SynthSummary> {
    let out = OutputDir::create(dir)?;
    let summary = write_checkpoint_files(out.path(), config_json, seed, progress)
        .map_err(|e| out.retarget(e))?;
    out.commit()?;
    Ok(SynthSummary {
        weights: dir.join(SINGLE_FILE),
        ..summary
    })
}

/// Writes `model.safetensors` and `config.json` for `config_json` into `dir`.
fn write_checkpoint_files(
    dir: &Path,
    config_json: &Value,
    seed: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SynthSummary> {
    let config_text = serde_json::to_string_pretty(config_json).expect("JSON value serialises");
    let config = Gemma4Config::from_json_str(&config_text, "synthetic config.json")?;
    let specs: Vec<TensorSpec> = catalogue::text_catalogue(&config)?
        .into_iter()
        .filter(|s| s.need == Need::Required)
        .collect();
    let weights = dir.join(SINGLE_FILE);
    let bytes = write_weights(&weights, &specs, seed, progress)?;
    write_file(&dir.join("config.json"), (config_text + "\n").as_bytes())?;
    Ok(SynthSummary {
        weights,
        config,
        tensors: specs.len(),
        bytes,
    })
}

/// Streams the safetensors file: header, then each tensor's bf16 values in order.
fn write_weights(
    path: &Path,
    specs: &[TensorSpec],
    seed: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64> {
    let prefix = catalogue::RELEASED_PREFIX;
    let mut metadata = serde_json::Map::new();
    metadata.insert("format".into(), json!("pt"));
    let entries = specs
        .iter()
        .map(|spec| StEntry::new(format!("{prefix}{}", spec.name), "BF16", spec.shape.clone()))
        .collect();
    // Chunks are 2 MB already: written straight to the file, no buffer in between.
    let mut out = StWriter::new(path, OutputFile::create(path)?, Some(&metadata), entries)?;
    let total = out.data_len();
    // Every chunk of every tensor, in file order: (tensor index, first element, length, mean).
    let mut jobs = Vec::new();
    for (index, spec) in specs.iter().enumerate() {
        let numel: usize = spec.shape.iter().product();
        // Norm weights, scales and the layer scalar sit around 1; matrices around 0.
        let mean = if spec.shape.len() <= 1 { 1.0 } else { 0.0 };
        for start in (0..numel).step_by(CHUNK) {
            jobs.push((index as u64, start, CHUNK.min(numel - start), mean));
        }
    }
    // Generation (all cores) overlaps writing (one thread): at most two batches in flight.
    let (send, receive) = std::sync::mpsc::sync_channel::<Vec<Vec<u8>>>(1);
    let (done, written) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<()> {
            for batch in receive {
                for bytes in &batch {
                    out.write(bytes)?;
                }
            }
            out.finish()?.commit()
        });
        let mut done = 0u64;
        for batch in jobs.chunks(CHUNKS_PER_BATCH) {
            let generated: Vec<Vec<u8>> = batch
                .par_iter()
                .map(|&(stream, start, len, mean)| gaussian_bf16(seed, stream, start, len, mean))
                .collect();
            done += generated.iter().map(|b| b.len() as u64).sum::<u64>();
            if send.send(generated).is_err() {
                break; // the writer stopped on an error, which join returns
            }
            progress(done, total);
        }
        drop(send);
        let written = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (done, written)
    });
    written?;
    debug_assert_eq!(done, total);
    Ok(total)
}

/// Buckets of the tabulated inverse normal CDF (top bits of each random word).
const TABLE_BITS: u32 = 12;

/// The inverse normal CDF at `TABLE_BITS`-bit bucket edges, for sampling by linear
/// interpolation: one random word and one multiply-add per value instead of Box–Muller's
/// logarithm and sine, which made generation the bottleneck of a 4.8 GB synth. The outermost
/// edges sit at the 1/4 bucket quantile (±3.9σ), so the tails are clipped there.
fn inverse_cdf_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let n = 1usize << TABLE_BITS;
        (0..=n)
            .map(|j| {
                let p = (j as f64 / n as f64).clamp(0.25 / n as f64, 1.0 - 0.25 / n as f64);
                inverse_normal_cdf(p) as f32
            })
            .collect()
    })
}

/// Φ⁻¹(p) for 0 < p < 1 (Acklam's rational approximation, relative error below 1.2e-9).
fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    const P_LOW: f64 = 0.02425;
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - P_LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// `len` bf16 values of N(mean, 0.02²), little-endian, for elements `start .. start + len` of
/// tensor number `stream`. Element i uses word i of the stream, so any chunking of a tensor
/// gives the same values.
fn gaussian_bf16(seed: u64, stream: u64, start: usize, len: usize, mean: f32) -> Vec<u8> {
    let table = inverse_cdf_table();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng.set_word_pos(start as u128);
    let frac_bits = 32 - TABLE_BITS;
    let frac_scale = 1.0 / (1u32 << frac_bits) as f32;
    let mut out = Vec::with_capacity(len * 2);
    for _ in 0..len {
        let w = rng.next_u32();
        let k = (w >> frac_bits) as usize;
        let frac = (w & ((1 << frac_bits) - 1)) as f32 * frac_scale;
        let z = table[k] + frac * (table[k + 1] - table[k]);
        out.extend_from_slice(&half::bf16::from_f32(mean + WEIGHT_STD * z).to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_plans_are_valid_for_any_depth() {
        for v in [Variant::E2B, Variant::E4B, Variant::A26B, Variant::B31] {
            for n in 1..=12 {
                let text = synth_config(v, n, 0).to_string();
                let cfg = Gemma4Config::from_json_str(&text, "synth").unwrap();
                assert_eq!(cfg.num_hidden_layers, n);
                assert_eq!(cfg.layer_types.last(), Some(&crate::LayerType::Full));
                assert_eq!(cfg.variant(), v, "{v:?} with {n} layers");
            }
        }
    }

    #[test]
    fn full_depth_configs_match_the_released_models() {
        // The released E2B has 540 text tensors (without the unused shared-layer K/V) and about
        // 4.65 B text parameters (the shapes give 4.63 B), 2.35 B of them in the per-layer
        // embedding table.
        let cfg =
            Gemma4Config::from_json_str(&synth_config(Variant::E2B, 35, 0).to_string(), "e2b")
                .unwrap();
        let specs: Vec<TensorSpec> = catalogue::text_catalogue(&cfg)
            .unwrap()
            .into_iter()
            .filter(|s| s.need == Need::Required)
            .collect();
        assert_eq!(specs.len(), 540);
        let numel = |s: &TensorSpec| s.shape.iter().product::<usize>() as f64;
        let total: f64 = specs.iter().map(numel).sum();
        let ple: f64 = specs
            .iter()
            .filter(|s| s.name == "embed_tokens_per_layer.weight")
            .map(numel)
            .sum();
        assert!((total / 1e9 - 4.65).abs() < 0.03, "{total}");
        assert!((ple / 1e9 - 2.35).abs() < 0.01, "{ple}");
        assert_eq!(cfg.num_kv_shared_layers, 20);
        assert_eq!(cfg.intermediate_size_of(15), 12288);
        assert_eq!(cfg.intermediate_size_of(14), 6144);
    }

    #[test]
    fn chunks_are_seekable_and_seeded() {
        let whole = gaussian_bf16(7, 3, 0, 64, 0.0);
        let tail = gaussian_bf16(7, 3, 31, 33, 0.0);
        assert_eq!(&whole[62..], &tail[..]);
        assert_ne!(whole, gaussian_bf16(8, 3, 0, 64, 0.0));
        let vals: Vec<f32> = gaussian_bf16(1, 0, 0, 400_000, 0.0)
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        let mean = vals.iter().sum::<f32>() / vals.len() as f32;
        let std = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / vals.len() as f32).sqrt();
        assert!(
            mean.abs() < 5e-4 && (std - WEIGHT_STD).abs() < 5e-4,
            "{mean} {std}"
        );
        // Shaped like a normal, not just scaled right: 68.3% within one sigma.
        let within = vals.iter().filter(|v| v.abs() < WEIGHT_STD).count() as f64;
        assert!((within / vals.len() as f64 - 0.6827).abs() < 0.01);
    }

    #[test]
    fn inverse_normal_cdf_matches_known_quantiles() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959_963_985),
            (0.001, -3.090_232_306),
            (0.8413447461, 1.0),
        ] {
            assert!((inverse_normal_cdf(p) - z).abs() < 1e-7, "{p}");
        }
    }
}
