//! `g4q inspect MODEL [--json]`: what a checkpoint is before any work is spent on it — variant,
//! parameter counts, the per-layer plan, every text tensor, and how much memory the forward
//! pass will need. Opening validates the whole tensor set, so a clean `inspect` means the
//! checkpoint is usable.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use convert::{Checkpoint, Gemma4Config, SkippedKind};
use serde_json::{json, Value};

/// Flags of `g4q inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// Model folder: config.json plus model.safetensors or a sharded index.
    pub model: PathBuf,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Sequence length the memory estimate assumes.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=16_777_216))]
    pub context: u32,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let ck = Checkpoint::open(&args.model)?;
    let report = build_report(&ck, args.context as usize);
    let text = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        render_text(&report)
    };
    // A reader that stops early (`| head`) is not an error.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `writeln!` into a `String` (which cannot fail).
macro_rules! out {
    ($o:expr, $($arg:tt)*) => {{
        let _ = writeln!($o, $($arg)*);
    }};
}

/// Sum of elements of the skipped tensors of one kind.
fn skipped_params(ck: &Checkpoint, kind: SkippedKind) -> u64 {
    ck.skipped()
        .iter()
        .filter(|s| s.kind == kind)
        .map(|s| s.numel() as u64)
        .sum()
}

/// The report as JSON; the text form is printed from this too, so both always agree.
fn build_report(ck: &Checkpoint, context: usize) -> Value {
    let cfg = ck.config();
    let mut tensors = Vec::new();
    let mut text_params = 0u64;
    let mut text_bytes = 0u64;
    for name in ck.text_tensors() {
        let t = ck.tensor(name).expect("listed tensors exist");
        text_params += t.numel() as u64;
        text_bytes += t.data.len() as u64;
        tensors.push(
            json!({"name": name, "dtype": t.dtype.to_string(), "shape": t.shape,
                            "file": t.file.file_name().map(|f| f.to_string_lossy().into_owned())}),
        );
    }
    let ple_table = if ck.has("embed_tokens_per_layer.weight") {
        ck.tensor("embed_tokens_per_layer.weight")
            .map(|t| t.numel() as u64)
            .unwrap_or(0)
    } else {
        0
    };
    let layers: Vec<Value> = (0..cfg.num_hidden_layers)
        .map(|l| {
            json!({
                "layer": l,
                "type": cfg.layer_type(l).hf_name(),
                "head_dim": cfg.head_dim_of(l),
                "q_heads": cfg.num_attention_heads,
                "kv_heads": cfg.num_kv_heads(l),
                "kv_source": cfg.kv_source_layer(l),
                "kv_store": cfg.is_kv_store(l),
                "v_is_k": cfg.v_is_k(l),
                "mlp": cfg.intermediate_size_of(l),
                "experts": if cfg.enable_moe_block {
                    json!({"count": cfg.num_experts, "top_k": cfg.top_k_experts,
                           "width": cfg.moe_intermediate_size})
                } else {
                    Value::Null
                },
                "rope_theta": cfg.rope_of(l).theta,
                "rotary_fraction": cfg.rope_of(l).partial_rotary_factor,
            })
        })
        .collect();
    let memory = memory_estimate(ck, cfg, text_params, context);
    json!({
        "model": ck.dir().display().to_string(),
        "architecture": cfg.architecture,
        "variant": cfg.variant().cli_name(),
        "files": ck.files().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "config": {
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.hidden_size,
            "num_hidden_layers": cfg.num_hidden_layers,
            "sliding_window": cfg.sliding_window,
            "hidden_size_per_layer_input": cfg.hidden_size_per_layer_input,
            "num_kv_shared_layers": cfg.num_kv_shared_layers,
            "final_logit_softcapping": cfg.final_logit_softcapping,
            "tie_word_embeddings": cfg.tie_word_embeddings,
            "unknown_keys": cfg.unknown_keys,
        },
        "parameters": {
            "text": text_params,
            "text_effective": text_params - ple_table,
            "vision": skipped_params(ck, SkippedKind::Vision),
            "audio": skipped_params(ck, SkippedKind::Audio),
            "unused_shared_kv": skipped_params(ck, SkippedKind::UnusedSharedKv),
        },
        "text_bytes_on_disk": text_bytes,
        "layers": layers,
        "tensors": tensors,
        "memory": memory,
    })
}

/// Memory estimate in bytes for a forward pass over `context` tokens.
///
/// - `bf16_weights`: the text weights at 2 bytes each (the released storage).
/// - `f32_forward`: every text weight widened to f32 plus the activations — the in-memory mode.
/// - `streaming_peak`: the largest layer's weights at their stored size (they stay bf16 and
///   widen inside the GEMM) plus the activations: the layer-streaming mode, whatever the depth.
///
/// Activations: the residual stream and three scratch copies (f32, `T x hidden`), the largest
/// layer's q/k/v and attention scores (one head at a time over at most `T` keys) and MLP
/// gate/up, the per-layer inputs of PLE models, the K/V kept for shared layers, and the logits.
fn memory_estimate(ck: &Checkpoint, cfg: &Gemma4Config, text_params: u64, context: usize) -> Value {
    let t = context as u64;
    let h = cfg.hidden_size as u64;
    let mut largest_layer = 0u64;
    let mut per_layer_scratch = 0u64;
    let mut kv_kept = 0u64;
    for l in 0..cfg.num_hidden_layers {
        let prefix = format!("layers.{l}.");
        let bytes: u64 = ck
            .text_tensors()
            .iter()
            .filter(|n| n.starts_with(&prefix))
            .filter_map(|n| ck.tensor(n).ok())
            .map(|v| v.data.len() as u64)
            .sum();
        largest_layer = largest_layer.max(bytes);
        let hd = cfg.head_dim_of(l) as u64;
        let q = cfg.num_attention_heads as u64 * hd;
        let kv = cfg.num_kv_heads(l) as u64 * hd;
        let mlp = if cfg.enable_moe_block {
            cfg.intermediate_size_of(l).max(cfg.moe_intermediate_size) as u64
        } else {
            cfg.intermediate_size_of(l) as u64
        };
        // Scores of one head over all T keys (masked, not skipped, on sliding layers).
        let attn = t * (q + 2 * kv) + t * t;
        per_layer_scratch = per_layer_scratch.max(4 * (attn.max(t * 2 * mlp)));
        if cfg.is_kv_store(l) {
            kv_kept += 4 * t * 2 * kv;
        }
    }
    let ple = 4 * t * (cfg.num_hidden_layers * cfg.hidden_size_per_layer_input) as u64;
    let logits = 4 * t * cfg.vocab_size as u64;
    let activations = 4 * 4 * t * h + per_layer_scratch + ple + kv_kept + logits;
    json!({
        "context": context,
        "bf16_weights": 2 * text_params,
        "f32_forward": 4 * text_params + activations,
        "streaming_peak": largest_layer + activations,
        "activations": activations,
        "largest_layer": largest_layer,
    })
}

fn render_text(r: &Value) -> String {
    let mut o = String::new();
    let p = &r["parameters"];
    let c = &r["config"];
    out!(o, "model         {}", r["model"].as_str().unwrap_or(""));
    out!(
        o,
        "architecture  {}",
        r["architecture"].as_str().unwrap_or("")
    );
    out!(
        o,
        "variant       {} (hidden {}, {} layers, vocab {}, window {})",
        r["variant"].as_str().unwrap_or(""),
        c["hidden_size"],
        c["num_hidden_layers"],
        c["vocab_size"],
        c["sliding_window"]
    );
    for f in r["files"].as_array().into_iter().flatten() {
        out!(o, "file          {}", f.as_str().unwrap_or(""));
    }
    if let Some(keys) = c["unknown_keys"].as_array().filter(|k| !k.is_empty()) {
        out!(o, "unknown keys  {}", Value::Array(keys.clone()));
    }
    o.push('\n');
    out!(o, "parameters");
    let n = |v: &Value| count(v.as_u64().unwrap_or(0));
    out!(o, "  text        {}", n(&p["text"]));
    out!(
        o,
        "  effective   {}  (text without the per-layer embedding table)",
        n(&p["text_effective"])
    );
    out!(o, "  vision      {}", n(&p["vision"]));
    out!(o, "  audio       {}", n(&p["audio"]));
    if p["unused_shared_kv"].as_u64().unwrap_or(0) > 0 {
        out!(
            o,
            "  skipped     {}  (unused K/V of KV-shared layers)",
            n(&p["unused_shared_kv"])
        );
    }
    o.push('\n');
    out!(o, "layer plan");
    out!(
        o,
        "  layer  type     head_dim  q/kv heads  kv           v=k  mlp     experts"
    );
    for l in r["layers"].as_array().into_iter().flatten() {
        let kv = match l["kv_source"].as_u64() {
            Some(s) => format!("from {s}"),
            None if l["kv_store"].as_bool() == Some(true) => "own, shared".into(),
            None => "own".into(),
        };
        let experts = match &l["experts"] {
            Value::Null => "-".to_string(),
            e => format!("{} top {} x {}", e["count"], e["top_k"], e["width"]),
        };
        let kind = if l["type"] == "full_attention" {
            "full"
        } else {
            "sliding"
        };
        out!(
            o,
            "  {:<5}  {:<7}  {:<8}  {:<10}  {:<11}  {:<3}  {:<6}  {}",
            l["layer"].to_string(),
            kind,
            l["head_dim"].to_string(),
            format!("{}/{}", l["q_heads"], l["kv_heads"]),
            kv,
            if l["v_is_k"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            l["mlp"].to_string(),
            experts
        );
    }
    o.push('\n');
    out!(o, "tensors");
    for t in r["tensors"].as_array().into_iter().flatten() {
        let shape: Vec<String> = t["shape"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| d.to_string())
            .collect();
        out!(
            o,
            "  {:<48} {:<5} [{}]",
            t["name"].as_str().unwrap_or(""),
            t["dtype"].as_str().unwrap_or(""),
            shape.join(", ")
        );
    }
    let m = &r["memory"];
    let b = |v: &Value| bytes(v.as_u64().unwrap_or(0));
    o.push('\n');
    out!(o, "memory estimate ({} tokens)", m["context"]);
    out!(o, "  bf16 weights      {}", b(&m["bf16_weights"]));
    out!(
        o,
        "  f32 forward       {}  (all weights widened + activations)",
        b(&m["f32_forward"])
    );
    out!(
        o,
        "  streaming peak    {}  (largest layer {} + activations {})",
        b(&m["streaming_peak"]),
        b(&m["largest_layer"]),
        b(&m["activations"])
    );
    o
}

/// `4650123456` → `4.65 B (4650123456)`.
fn count(n: u64) -> String {
    let (v, unit) = match n {
        n if n >= 1_000_000_000 => (n as f64 / 1e9, " B"),
        n if n >= 1_000_000 => (n as f64 / 1e6, " M"),
        n if n >= 1_000 => (n as f64 / 1e3, " K"),
        n => return n.to_string(),
    };
    format!("{v:.2}{unit} ({n})")
}

/// Bytes in binary units.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.2} {unit}")
}
