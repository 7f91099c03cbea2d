//! The AWQ parts of `g4q convert`: `--format awq` (the int4 compressed-tensors release, a
//! folder) and `--awq` (AWQ scales folded into the weights before the GGUF k-quant path).
//!
//! Both run the same search: the calibration text (`--data`) is tokenized with the model's
//! tokenizer, BOS first, and its first `--awq-tokens` tokens run once through the
//! layer-streaming reference forward pass while each layer's groups are searched
//! (`quantize::awq`). A progress bar with an ETA counts layers on a terminal.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use convert::output::{check_target, Kind, ScratchDir};
use convert::Checkpoint;
use quantize::awq::export::{
    plan_compressed_tensors, uniform_group, write_compressed_tensors, write_scaled_checkpoint,
    ExportSummary,
};
use quantize::awq::{compute_awq_with_fit, AwqOptions, AwqPlan, GroupFit};
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
    /// `--format awq`: let each linear take its own group size (--group-size where it divides
    /// the linear's input width, else the largest of 128, 64, 32 below it that does) instead of
    /// one size for the whole model. vLLM loads such a folder; transformers 5.24 does not (it
    /// dequantizes every linear with the first group's size).
    #[arg(long)]
    pub mixed_groups: bool,
}

/// Runs the AWQ search of `ckpt` on the start of `data`, with a progress bar; prints the
/// throughput. `fit` says how each weight's int4 group follows from `--group-size`.
pub fn search(
    model: &Path,
    ckpt: &Checkpoint,
    data: &Path,
    args: &AwqArgs,
    clip: bool,
    experts: bool,
    fit: GroupFit,
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
    let run = compute_awq_with_fit(ckpt, &tokens, &opts, fit, &mut |done, _| {
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

/// The `--group-size` a compressed-tensors release is planned with: as given with
/// `--mixed-groups` (each linear then falls back on its own), else the one size that divides
/// every int4 linear ([`uniform_group`]).
pub fn release_group(ckpt: &Checkpoint, args: &AwqArgs) -> anyhow::Result<usize> {
    let g = args.group_size;
    if args.mixed_groups {
        return Ok(g);
    }
    uniform_group(ckpt, g).ok_or_else(|| {
        usage(format!(
            "--format awq: neither --group-size {g} nor any of 128, 64, 32 below it divides the input width of every linear of {}; try --mixed-groups",
            ckpt.dir().display()
        ))
    })
}

/// `--format awq`: writes the int4 release folder `out`.
pub fn write_int4(
    model: &Path,
    data: Option<&Path>,
    out: &Path,
    args: &AwqArgs,
) -> anyhow::Result<()> {
    let data = data.ok_or_else(|| usage("--format awq needs --data FILE.txt"))?;
    check_target(out, Kind::Folder, &[model, data])?;
    let ckpt = Checkpoint::open(model)?;
    let args = &AwqArgs {
        group_size: release_group(&ckpt, args)?,
        ..args.clone()
    };
    // The layout is checked (every width has a group) before the search runs.
    plan_compressed_tensors(&ckpt, args.group_size).map_err(|e| usage(e.to_string()))?;
    let plan = search(
        model,
        &ckpt,
        data,
        args,
        !args.no_clip,
        false,
        GroupFit::Divide,
    )?;
    let bar = progress::bar(0, "write");
    let s = write_compressed_tensors(&ckpt, &plan, out, &mut |done, all| {
        bar.set_length(all as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| format!("writing {}", out.display()))?;
    bar.finish_and_clear();
    eprintln!(
        "g4q: wrote {} (compressed-tensors pack-quantized, int4 {}: {} linears int4, {} tensors dense, {} of them vision/audio)",
        out.display(),
        group_counts(&s),
        s.quantized,
        s.dense,
        s.towers
    );
    Ok(())
}

/// "g128 ×31, g64 ×6": the group sizes of a release and how many linears use each.
fn group_counts(s: &ExportSummary) -> String {
    let mut counts: Vec<(usize, usize)> = Vec::new();
    for t in &s.targets {
        match counts.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, n)) => *n += 1,
            None => counts.push((t.group, 1)),
        }
    }
    counts.sort_by_key(|&(g, _)| std::cmp::Reverse(g));
    let parts: Vec<String> = counts.iter().map(|(g, n)| format!("g{g} ×{n}")).collect();
    parts.join(", ")
}

/// `--format awq --dry-run`: the int4 linears and the group size each gets, and why a size
/// other than `--group-size` was chosen, without searching or writing.
pub fn dry_run_int4(model: &Path, args: &AwqArgs, json: bool) -> anyhow::Result<()> {
    let ckpt = Checkpoint::open(model)?;
    let requested = args.group_size;
    let chosen = release_group(&ckpt, args)?;
    let s = plan_compressed_tensors(&ckpt, chosen).map_err(|e| usage(e.to_string()))?;
    // The linears whose width --group-size does not divide: why another size was chosen.
    let odd: Vec<_> = (plan_compressed_tensors(&ckpt, requested).ok())
        .map(|p| p.targets.into_iter().filter(|t| t.group != requested))
        .into_iter()
        .flatten()
        .collect();
    if json {
        let targets: Vec<serde_json::Value> = s
            .targets
            .iter()
            .map(|t| {
                serde_json::json!({
                    "module": t.module,
                    "shape": [t.rows, t.cols],
                    "group_size": t.group,
                })
            })
            .collect();
        let v = serde_json::json!({
            "format": "compressed-tensors pack-quantized int4",
            "requested_group_size": requested,
            "mixed_groups": args.mixed_groups,
            "not_divided_by_requested": odd.iter().map(|t| &t.module).collect::<Vec<_>>(),
            "targets": targets,
            "dense_tensors": s.dense,
            "tower_tensors": s.towers,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "compressed-tensors int4, --group-size {requested}: {} linears int4 ({}), {} tensors dense ({} vision/audio, as released)",
        s.quantized,
        group_counts(&s),
        s.dense,
        s.towers
    );
    for t in &odd {
        let got = s
            .targets
            .iter()
            .find(|x| x.module == t.module)
            .map_or(t.group, |x| x.group);
        println!(
            "  {}: {} input columns, not a multiple of {requested}: group {got}",
            t.module, t.cols
        );
    }
    if chosen != requested {
        println!(
            "  one group size for the whole model (what transformers loads): {chosen}; --mixed-groups keeps {requested} where it divides"
        );
    }
    Ok(())
}

/// `--awq --dry-run`: what the search will do about widths the group does not divide (their
/// last group per row is shorter in the scale search; the GGUF types keep their own blocks).
pub fn dry_run_note(ckpt: &Checkpoint, args: &AwqArgs) {
    let cfg = ckpt.config();
    let g = args.group_size;
    let mut widths: Vec<(usize, &str)> = vec![(cfg.hidden_size, "hidden")];
    for l in 0..cfg.num_hidden_layers {
        widths.push((
            cfg.num_attention_heads * cfg.head_dim_of(l),
            "attention output",
        ));
        widths.push((cfg.intermediate_size_of(l), "MLP"));
    }
    if cfg.enable_moe_block {
        widths.push((cfg.moe_intermediate_size, "expert"));
    }
    widths.sort();
    widths.dedup();
    let odd: Vec<String> = widths
        .iter()
        .filter(|(w, _)| !w.is_multiple_of(g))
        .map(|(w, what)| format!("{what} width {w} (last group {} wide)", w % g))
        .collect();
    if odd.is_empty() {
        eprintln!("g4q: --awq: the scale search evaluates int4 in groups of {g}");
    } else {
        eprintln!(
            "g4q: --awq: the scale search evaluates int4 in groups of {g}; {g} does not divide the {}",
            odd.join(", ")
        );
    }
}

/// `--awq`: the checkpoint with AWQ scales folded in (no clipping: k-quants pick their own
/// ranges; the MoE experts are scaled too, since k-quants quantize them), written as F32 in a
/// scratch folder beside `out`, under the source folder's name (GGUF `general.name` comes from
/// it), and opened; the scratch folder goes when the guard drops.
pub fn scaled_checkpoint(
    model: &Path,
    ckpt: &Checkpoint,
    data: &Path,
    out: &Path,
    args: &AwqArgs,
) -> anyhow::Result<(ScratchDir, Checkpoint)> {
    let plan = search(model, ckpt, data, args, false, true, GroupFit::Partial)?;
    let guard = ScratchDir::beside(out)?;
    let name = model
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_os_string()))
        .unwrap_or_else(|| "model".into());
    let dir = guard.path().join(name);
    write_scaled_checkpoint(ckpt, &plan, &dir, &mut |_, _| {})
        .with_context(|| format!("writing the AWQ-scaled checkpoint {}", dir.display()))?;
    // The model card too: GGUF's authorship keys (license, base model, tags) are read from it.
    let card = model.join("README.md");
    if card.is_file() {
        std::fs::copy(&card, dir.join("README.md"))
            .with_context(|| format!("copying {} into {}", card.display(), dir.display()))?;
    }
    let scaled = Checkpoint::open(&dir)?;
    Ok((guard, scaled))
}
