//! The AWQ parts of `g4q convert`: `--format awq` (the int4 compressed-tensors release, a
//! folder) and `--awq` (AWQ scales folded into the weights before the GGUF k-quant path).
//!
//! Both run the same search: the calibration text (`--data`) is tokenized with the model's
//! tokenizer, BOS first, and its first `--awq-tokens` tokens run once through the
//! layer-streaming reference forward pass while each layer's groups are searched
//! (`quantize::awq`). A progress bar with an ETA counts layers on a terminal.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use convert::Checkpoint;
use quantize::awq::export::{write_compressed_tensors, write_scaled_checkpoint};
use quantize::awq::{compute_awq, AwqOptions, AwqPlan};
use quantize::calibrate::calibration_tokens;

use super::{progress, usage};

/// AWQ flags of `g4q convert`.
#[derive(clap::Args, Debug, Clone)]
pub struct AwqArgs {
    /// AWQ: input columns per int4 scale/zero point (`--format awq`); the scale search
    /// evaluates int4 at this group size for `--awq` too.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub group_size: usize,
    /// AWQ: calibration tokens taken from the start of --data (one sequence).
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub awq_tokens: usize,
    /// AWQ: skip the per-group clip search (scales only).
    #[arg(long)]
    pub no_clip: bool,
}

/// Runs the AWQ search of `ckpt` on the start of `data`, with a progress bar; prints the
/// throughput.
pub fn search(
    model: &Path,
    ckpt: &Checkpoint,
    data: &Path,
    args: &AwqArgs,
    clip: bool,
    experts: bool,
) -> anyhow::Result<AwqPlan> {
    if args.awq_tokens < 2 {
        return Err(usage("--awq-tokens must be at least 2"));
    }
    let mut tokens = calibration_tokens(model, data, ckpt.config().bos_token_id)?;
    if tokens.len() < 2 {
        return Err(usage(format!(
            "{} holds too little text to calibrate on",
            data.display()
        )));
    }
    tokens.truncate(args.awq_tokens);
    let opts = AwqOptions {
        group: args.group_size,
        clip,
        experts,
    };
    let layers = ckpt.config().num_hidden_layers;
    let bar = progress::bar(layers as u64, "awq");
    let started = Instant::now();
    let run = compute_awq(ckpt, &tokens, &opts, &mut |done, _| {
        bar.set_position(done as u64)
    })
    .context("AWQ search")?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let scaled = run.groups.iter().filter(|g| g.alpha.is_some()).count();
    eprintln!(
        "g4q: AWQ search over {} tokens: {scaled}/{} groups scaled, {:.1} s ({:.2} s per layer, {:.1} tokens/s)",
        run.tokens,
        run.groups.len(),
        secs,
        secs / layers.max(1) as f64,
        run.tokens as f64 / secs.max(1e-9),
    );
    Ok(run.plan)
}

/// `--format awq`: writes the int4 release folder `out`.
pub fn write_int4(
    model: &Path,
    data: Option<&Path>,
    out: &Path,
    args: &AwqArgs,
) -> anyhow::Result<()> {
    let data = data.ok_or_else(|| usage("--format awq needs --data FILE.txt"))?;
    let ckpt = Checkpoint::open(model)?;
    let plan = search(model, &ckpt, data, args, !args.no_clip, false)?;
    let bar = progress::bar(0, "write");
    let s = write_compressed_tensors(&ckpt, &plan, out, &mut |done, all| {
        bar.set_length(all as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| format!("writing {}", out.display()))?;
    bar.finish_and_clear();
    eprintln!(
        "g4q: wrote {} (compressed-tensors pack-quantized, int4 g{}: {} linears int4, {} tensors dense)",
        out.display(),
        args.group_size,
        s.quantized,
        s.dense
    );
    Ok(())
}

/// A folder removed (with its contents) when dropped.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `--awq`: the checkpoint with AWQ scales folded in (no clipping: k-quants pick their own
/// ranges; the MoE experts are scaled too, since k-quants quantize them), written as F32 next to `out` under the source folder's name (GGUF `general.name`
/// comes from it) and opened; the folder goes when the guard drops.
pub fn scaled_checkpoint(
    model: &Path,
    ckpt: &Checkpoint,
    data: &Path,
    out: &Path,
    args: &AwqArgs,
) -> anyhow::Result<(TempDir, Checkpoint)> {
    let plan = search(model, ckpt, data, args, false, true)?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let guard = TempDir(parent.join(format!(".g4q-awq-{}", std::process::id())));
    let name = model
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_os_string()))
        .unwrap_or_else(|| "model".into());
    let dir = guard.0.join(name);
    write_scaled_checkpoint(ckpt, &plan, &dir, &mut |_, _| {})
        .with_context(|| format!("writing the AWQ-scaled checkpoint {}", dir.display()))?;
    let scaled = Checkpoint::open(&dir)?;
    Ok((guard, scaled))
}
