//! `g4q recommend`: the quantization to ship to each device. Every candidate mix is sized
//! exactly (its `--dry-run` plan, or the release file), scored (verify reports, or all of them
//! here against one reference pass with `--evaluate`), fitted to each device's memory at the
//! context with Gemma 4's cache layout, given a predicted decode and prefill speed, and the
//! most accurate acceptable one is picked (KLD ties within two standard errors go to the
//! faster). Exit 0: a pick for every device; 1: some device has none; 2: bad input.
//! The logic lives in `bench::recommend`; this file reads flags, shows progress and writes.

use std::path::{Path, PathBuf};

use ::bench::recommend::{self, candidates, choose::Constraints, config, evaluate, evidence};
use anyhow::Context;
use convert::output::{check_target, write_file, Kind};
use convert::Checkpoint;

use super::{progress, usage};

/// The configuration read when `--config` is not given and the file exists.
const DEFAULT_CONFIG: &str = "g4q.toml";

/// Flags of `g4q recommend`.
#[derive(clap::Args)]
#[command(long_about = "Recommend the quantization to ship to each device.\n\n\
Candidates are every GGUF mix g4q writes (F32 … IQ4_XS; with --imatrix also each quantized mix \
made with it, named like Q4_K_M-imatrix; with --awq CALIB.txt each quantized mix made with \
`g4q convert --awq` (Q4_K_M-awq, Q4_K_M-awq-imatrix) and the AWQ int4 folder of `--format awq` \
(AWQ_INT4_G128)), and the ONNX int4 folder of `--format onnx --type int4` (ONNX_INT4_B32), sized \
exactly from the `g4q convert --dry-run` plan of MODEL, or the *.gguf files and AWQ/ONNX \
folders of a release folder. For each device and candidate: bytes, bits per \
weight, memory at --ctx (weights + KV cache + compute buffers, Gemma 4's cache layout), whether \
it fits in the device's memory less its headroom, predicted decode and prefill tokens/s, and \
the accuracy evidence: mean KLD ± standard error, top-1 agreement, PPL ratio (from --reports or \
--evaluate; a candidate without evidence is \"not measured\" and never picked).\n\n\
The pick is the most accurate candidate that fits and meets every constraint; KLDs within two \
standard errors of each other are ties, which go to the faster decode. The Pareto frontier over \
(memory, KLD, decode speed) is marked.\n\n\
Exit codes: 0 a pick for every device, 1 some device has no acceptable candidate, 2 bad input.\n\n\
Example: g4q recommend ./gemma-4-e2b --device apple-m2 --device nvidia-rtx-4090 --ctx 8192 \
--evaluate --data eval.txt --max-kld 0.01 --json rec.json --markdown rec.md --plot rec.svg")]
pub struct Args {
    /// The checkpoint folder (candidates planned from it), or a release folder of *.gguf files
    /// and AWQ int4 / ONNX folders.
    #[arg(required_unless_present = "variant")]
    pub model: Option<PathBuf>,
    /// Instead of MODEL: the released variant (e2b, e4b, 26b-a4b, 31b) planned at its real
    /// widths from its config alone (no download, no disk space); accuracy then needs --reports.
    #[arg(long, conflicts_with = "model")]
    pub variant: Option<String>,
    /// A device: a bundled profile (devices/*.toml, e.g. nvidia-rtx-4090, apple-m2), `this`
    /// (measured now, as `g4q bench --quick`), or a `g4q bench --json` file of another machine.
    /// Repeatable: one recommendation per device.
    #[arg(long = "device", required = true)]
    pub devices: Vec<String>,
    /// Context length the memory and speeds are for.
    #[arg(long, default_value_t = recommend::DEFAULT_CTX as u64, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub ctx: u64,
    /// Only these candidates, comma-separated (Q8_0,Q4_K_M,Q4_K_M-imatrix,…).
    #[arg(long)]
    pub candidates: Option<String>,
    /// An importance matrix (llama.cpp's GGUF imatrix or legacy .dat): adds each quantized mix
    /// made with it as a candidate (`-imatrix`).
    #[arg(long)]
    pub imatrix: Option<PathBuf>,
    /// AWQ calibration text (`g4q convert --awq --data`): adds each quantized mix made with
    /// `--awq` (`Q4_K_M-awq`, and `-awq-imatrix` with --imatrix) and the AWQ int4 folder of
    /// `--format awq` (`AWQ_INT4_G128`, at the group size `--dry-run` chooses) as candidates.
    #[arg(long, value_name = "FILE.txt")]
    pub awq: Option<PathBuf>,
    #[command(flatten)]
    pub awq_args: super::awq::AwqArgs,
    /// The ONNX int4 candidate's input columns per MatMulNBits block (`g4q convert --format
    /// onnx --type int4 --block-size`): 32, 64 or 128.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub block_size: usize,
    /// Accuracy from the `g4q verify --json` reports in this folder, matched to candidates by
    /// the candidate file's sha256, else by the type in its file name (gemma-Q4_K_M.gguf).
    #[arg(long, conflicts_with = "evaluate")]
    pub reports: Option<PathBuf>,
    /// Accuracy measured here: every candidate quantized as `g4q convert` writes it (into a
    /// scratch folder) and scored against the reference in one pass, as `g4q verify` scores.
    #[arg(long, requires = "data")]
    pub evaluate: bool,
    /// With --evaluate: the evaluation text (tokenized with the reference's tokenizer.json).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// With --evaluate: tokens per chunk (`g4q verify --ctx`).
    #[arg(long, default_value_t = 512)]
    pub eval_ctx: usize,
    /// With --evaluate: at most this many chunks (`g4q verify --chunks`).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// With --evaluate on a release folder: the reference checkpoint folder.
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Constraint: mean KLD at most this.
    #[arg(long)]
    pub max_kld: Option<f64>,
    /// Constraint: candidate / reference perplexity at most this.
    #[arg(long)]
    pub max_ppl_ratio: Option<f64>,
    /// Constraint: top-1 agreement at least this fraction (0..1).
    #[arg(long)]
    pub min_top1: Option<f64>,
    /// Constraint: predicted decode tokens/s at least this.
    #[arg(long)]
    pub min_decode_tps: Option<f64>,
    /// Constraint: memory at --ctx at most this (bytes, or e.g. 20GiB, 16GB).
    #[arg(long)]
    pub max_memory: Option<String>,
    /// Share of each device's memory kept free (OS, runtime, other processes), 0..1; default:
    /// the profile's `headroom`, else 0.1.
    #[arg(long)]
    pub headroom: Option<f64>,
    /// g4q.toml with a `[recommend]` section (default: ./g4q.toml when it exists); flags
    /// override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Write the report as JSON (schemas/recommend-report.schema.json).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the picks and tables as Markdown, ready for a model card.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Write an SVG plot of memory against KLD with the frontier and each device's memory.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Worker threads for --evaluate (default: all cores). The figures do not depend on it.
    #[arg(long, value_parser = super::threads::parse)]
    pub threads: Option<usize>,
}

/// The settings from g4q.toml overridden by the flags.
fn settings(args: &Args) -> anyhow::Result<config::Settings> {
    let file = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            config::from_toml(&text, &p.display().to_string()).map_err(usage)?
        }
        None if Path::new(DEFAULT_CONFIG).is_file() => {
            let text = std::fs::read_to_string(DEFAULT_CONFIG)
                .with_context(|| format!("reading {DEFAULT_CONFIG}"))?;
            config::from_toml(&text, DEFAULT_CONFIG).map_err(usage)?
        }
        None => config::Settings::default(),
    };
    let max_memory = args
        .max_memory
        .as_deref()
        .map(|s| verify::size::parse_size(s).map_err(|e| usage(format!("--max-memory: {e}"))))
        .transpose()?;
    let flags = Constraints {
        max_kld: args.max_kld,
        max_ppl_ratio: args.max_ppl_ratio,
        min_top1: args.min_top1,
        min_decode_tps: args.min_decode_tps,
        max_memory,
    };
    flags.validate("flags").map_err(usage)?;
    config::check_headroom(args.headroom, "--headroom").map_err(usage)?;
    Ok(config::Settings {
        constraints: file.constraints.overridden_by(flags),
        headroom: args.headroom.or(file.headroom),
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let inputs: Vec<&Path> = [
        args.model.as_deref(),
        args.imatrix.as_deref(),
        args.awq.as_deref(),
        args.reports.as_deref(),
        args.data.as_deref(),
        args.reference.as_deref(),
        args.config.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    for out in [&args.json, &args.markdown, &args.plot]
        .into_iter()
        .flatten()
    {
        check_target(out, Kind::File, &inputs)?;
    }
    let settings = settings(&args)?;
    let imatrix = match &args.imatrix {
        Some(p) => Some((
            quantize::Imatrix::read(p)?,
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        )),
        None => None,
    };

    // The candidates, and the checkpoint they are planned from (none for a release folder).
    let _sparse;
    let (model_name, ckpt, cfg, mut cands) = match (&args.model, &args.variant) {
        (Some(dir), _) if dir.is_dir() && candidates::is_release_folder(dir) => {
            let (cfg, all) = candidates::from_release(dir, &|p| {
                verify::candidate::fingerprint(p).map_err(|e| e.to_string())
            })
            .map_err(usage)?;
            let names: Vec<String> = all.iter().map(|c| c.name.clone()).collect();
            let keep = candidates::narrow(&names, args.candidates.as_deref()).map_err(usage)?;
            let cands = keep
                .iter()
                .filter_map(|n| all.iter().find(|c| &c.name == n).cloned())
                .collect();
            (dir.display().to_string(), None, cfg, cands)
        }
        (Some(dir), _) => {
            let ckpt = Checkpoint::open(dir)?;
            let cfg = ckpt.config().clone();
            (dir.display().to_string(), Some(ckpt), cfg, Vec::new())
        }
        (None, Some(v)) => {
            let variant = ::bench::formats::parse_variant(v).map_err(usage)?;
            let dir = ::bench::estimate::sparse_checkpoint(variant).map_err(usage)?;
            let ckpt = Checkpoint::open(dir.path())?;
            _sparse = dir;
            let cfg = ckpt.config().clone();
            (
                format!("{} (real-width plan)", variant.cli_name()),
                Some(ckpt),
                cfg,
                Vec::new(),
            )
        }
        (None, None) => return Err(usage("give MODEL or --variant")),
    };
    if !quantize::onnx_release::BLOCK_SIZES.contains(&args.block_size) {
        return Err(usage(format!(
            "--block-size {} is not one of 32, 64, 128",
            args.block_size
        )));
    }
    if let Some(ckpt) = &ckpt {
        let offer = candidates::Offer {
            imatrix: imatrix.is_some(),
            awq_group: match &args.awq {
                Some(_) => Some(super::awq::release_group(ckpt, &args.awq_args)?),
                None => None,
            },
            // A real-width plan has no weights to plan the ONNX folder from (its plan
            // quantizes them).
            onnx_block: args.model.as_ref().map(|_| args.block_size),
        };
        let names = candidates::all_names(offer);
        for name in candidates::narrow(&names, args.candidates.as_deref()).map_err(usage)? {
            cands.push(candidates::plan(ckpt, &name, imatrix.as_ref()).map_err(usage)?);
        }
    } else if args.awq.is_some() {
        return Err(usage(
            "--awq plans candidates from a checkpoint, not a release folder",
        ));
    }

    // The evidence.
    let (how, found): (&str, Vec<Option<evidence::Evidence>>) = if let Some(dir) = &args.reports {
        let reports = evidence::read_reports(dir).map_err(usage)?;
        let found = evidence::match_reports(&cands, &reports).map_err(usage)?;
        ("reports", found)
    } else if args.evaluate {
        (
            "evaluated",
            evaluate_all(&args, ckpt.as_ref(), &mut cands, imatrix.as_ref())?,
        )
    } else {
        ("none", vec![None; cands.len()])
    };

    let mut devices = Vec::new();
    for d in &args.devices {
        let target = if d == "this" {
            let mut types: Vec<::bench::formats::Format> = cands
                .iter()
                .flat_map(|c| ::bench::estimate::matrix_types(&cfg, &c.tensors))
                .collect();
            types.sort();
            types.dedup();
            eprintln!("g4q recommend: measuring this machine…");
            recommend::target::measure_here(&cfg, &types).map_err(anyhow::Error::msg)?
        } else {
            recommend::target::open(d).map_err(usage)?
        };
        devices.push(
            recommend::recommend_for(
                &target,
                &cfg,
                &cands,
                &found,
                args.ctx as usize,
                settings.headroom,
                &settings.constraints,
            )
            .map_err(usage)?,
        );
    }
    let report = recommend::Report {
        schema: recommend::SCHEMA.into(),
        g4q_version: env!("CARGO_PKG_VERSION").into(),
        model: model_name,
        ctx: args.ctx as usize,
        constraints: settings.constraints,
        evidence: how.into(),
        devices,
    };
    print!("{}", recommend::render::text(&report));
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(&report)? + "\n";
        write_file(p, text.as_bytes()).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.markdown {
        write_file(p, recommend::render::markdown(&report).as_bytes())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.plot {
        write_file(p, recommend::plot::svg(&report).as_bytes())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let missing: Vec<String> = report
        .devices
        .iter()
        .filter(|d| d.pick.is_none())
        .map(|d| format!("{}: no acceptable candidate", d.name))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(verify::gates::GateFailed { failed: missing }.into())
    }
}

/// `--evaluate`: the reference (MODEL's checkpoint, or --reference for a release folder), the
/// chunks of --data, every candidate written as `g4q convert` writes it (the AWQ ones through
/// convert's own AWQ search and writers, on --awq), and all scored in one pass. A candidate
/// that cannot be scored (not finite) is left without evidence, with its reason.
fn evaluate_all(
    args: &Args,
    ckpt: Option<&Checkpoint>,
    cands: &mut [candidates::Candidate],
    imatrix: Option<&(quantize::Imatrix, String)>,
) -> anyhow::Result<Vec<Option<evidence::Evidence>>> {
    let data = args
        .data
        .as_deref()
        .ok_or_else(|| usage("--evaluate needs --data"))?;
    let (ref_dir, reference_ckpt) = match (&args.reference, &args.model, ckpt) {
        (Some(r), _, _) => (r.clone(), Checkpoint::open(r)?),
        (None, Some(m), Some(_)) => (m.clone(), Checkpoint::open(m)?),
        _ => {
            return Err(usage(
                "--evaluate needs a checkpoint: MODEL, or --reference with a release folder",
            ))
        }
    };
    let text =
        std::fs::read_to_string(data).with_context(|| format!("reading {}", data.display()))?;
    let bos = reference_ckpt.config().bos_token_id;
    let chunks =
        evaluate::chunks(&ref_dir, bos, &text, args.eval_ctx, args.chunks).map_err(usage)?;
    let scratch_target = std::env::temp_dir().join("g4q-recommend");
    let scratch = convert::output::ScratchDir::beside(&scratch_target)?;
    let pool = super::threads::pool(args.threads)?;

    // The AWQ sources, made by `g4q convert`'s own code: the AWQ-scaled checkpoint the `-awq`
    // mixes quantize (`--awq`), and the int4 folder (`--format awq`).
    let wants =
        |f: fn(&candidates::Candidate) -> bool| cands.iter().any(|c| c.file.is_none() && f(c));
    let needs_scaled = wants(|c| c.awq && c.folder.is_none());
    let needs_folder = wants(|c| matches!(c.folder, Some(candidates::Folder::AwqInt4 { .. })));
    let mut _scaled_guard = None;
    let mut awq_scaled = None;
    let mut awq_folder = None;
    if needs_scaled || needs_folder {
        let (Some(model), Some(ckpt), Some(calib)) = (&args.model, ckpt, &args.awq) else {
            return Err(usage("AWQ candidates need MODEL and --awq FILE.txt"));
        };
        if needs_scaled {
            let target = scratch.path().join("awq-scaled");
            let (guard, scaled) = pool.install(|| {
                super::awq::scaled_checkpoint(model, ckpt, calib, &target, &args.awq_args)
            })?;
            _scaled_guard = Some(guard);
            awq_scaled = Some(scaled);
        }
        if needs_folder {
            let out = scratch.path().join("awq-int4");
            pool.install(|| super::awq::write_int4(model, Some(calib), &out, &args.awq_args))?;
            awq_folder = Some(out);
        }
    }
    let sources = evaluate::Sources {
        ckpt,
        awq_scaled: awq_scaled.as_ref(),
        imatrix,
        awq_folder: awq_folder.as_deref(),
    };
    let bar = progress::bar(chunks.len() as u64, "evaluate");
    let found = pool
        .install(|| {
            evaluate::evaluate(
                &reference_ckpt,
                &sources,
                cands,
                &chunks,
                scratch.path(),
                &mut |done, _| bar.set_position(done as u64),
            )
        })
        .map_err(usage)?;
    bar.finish_and_clear();
    Ok(found
        .into_iter()
        .zip(cands.iter_mut())
        .map(|(r, c)| match r {
            Ok(e) => Some(e),
            Err(why) => {
                c.unscored = Some(why);
                None
            }
        })
        .collect())
}
