//! `g4q bench`: the decode and prefill products of every format at Gemma 4's real shapes on
//! this machine, against its measured memory bandwidth; `--merge` puts many machines' results
//! side by side; `--model` / `--type` turn the measurements into a whole-model estimate.
//! The machinery lives in the `bench` crate; this file reads flags, shows progress and prints.

use std::path::PathBuf;
use std::time::Instant;

use ::bench::estimate::{self, Estimate, ModelTensor, Speeds};
use ::bench::formats::{self, Budget, Format, Measurement, Op, Shape};
use ::bench::host::{self, Host};
use ::bench::limits::{self, Limits};
use ::bench::report::{self, Report};
use convert::Gemma4Config;
use kernels::simd::{self, Path};

use super::{progress, usage};

/// Flags of `g4q bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Released variant whose shapes to measure: e2b, e4b, 26b-a4b or 31b.
    #[arg(long, default_value = "e2b")]
    pub variant: String,
    /// Formats, comma-separated (ggml names such as Q4_K, IQ4_XS, BF16; AWQ_INT4_G128). Default:
    /// all (with --quick: Q4_K, Q8_0, F16, IQ4_XS, AWQ_INT4_G128).
    #[arg(long)]
    pub types: Option<String>,
    /// Shapes, comma-separated (attn_q, attn_kv, attn_o, their _full forms, ffn_up, ffn_down,
    /// ffn_up_wide, ffn_down_wide, expert_gate_up, expert_down, output). Default: all of the
    /// variant (with --quick: ffn_up, attn_q).
    #[arg(long)]
    pub shapes: Option<String>,
    /// Products, comma-separated: decode, prefill128, prefill512. Default: all (with --quick:
    /// decode, prefill128).
    #[arg(long)]
    pub ops: Option<String>,
    /// Thread counts, comma-separated; `all` is every logical core. Default: 1,all.
    #[arg(long, default_value = "1,all")]
    pub threads: String,
    /// Kernel paths, comma-separated (scalar, avx2, avx512, neon, neon-emulated). Default:
    /// every native path this CPU has (with --quick: the best one and scalar).
    #[arg(long)]
    pub paths: Option<String>,
    /// A short run: fewer formats, shapes and products and a 128 MiB working set.
    #[arg(long)]
    pub quick: bool,
    /// Working set in MiB the matrix copies add up to (default: four times the last-level
    /// cache, at least 256 MiB, at most an eighth of memory; 128 with --quick).
    #[arg(long)]
    pub working_set_mib: Option<u64>,
    /// Write the fingerprint, limits and results as JSON (schemas/bench-report.schema.json).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Merge the `--json` files of a folder into one Markdown table (rows: format; columns:
    /// machines) on stdout; measures nothing.
    #[arg(long, conflicts_with_all = ["json", "quick", "model", "type"])]
    pub merge: Option<PathBuf>,
    /// Estimate decode and prefill tokens/s and memory of this GGUF file at --ctx (its
    /// per-tensor types are measured at the model's MLP shape first).
    #[arg(long, conflicts_with = "type")]
    pub model: Option<PathBuf>,
    /// Estimate for the `g4q convert --dry-run` plan of --variant in this mix (Q4_K_M, Q8_0, …)
    /// instead of a file.
    #[arg(long = "type")]
    pub ftype: Option<String>,
    /// Context length of the estimate.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub ctx: u64,
    /// With --model: also time one decoded token through g4q's own quantized forward pass
    /// (ggml math) and report it beside the estimate (at context 1, which the pass runs).
    #[arg(long, requires = "model")]
    pub measure_forward: bool,
    /// With --model or --type: estimate for this bundled device profile (devices/*.toml, e.g.
    /// nvidia-h100-sxm) from its modelled figures instead of measuring here.
    #[arg(long, conflicts_with = "measure_forward")]
    pub device: Option<String>,
}

/// Splits a comma-separated flag value into trimmed, non-empty items.
fn items(s: &str) -> Vec<&str> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The selections the flags make, checked before anything is measured.
struct Plan {
    formats: Vec<Format>,
    shapes: Vec<Shape>,
    ops: Vec<Op>,
    threads: Vec<usize>,
    paths: Vec<Path>,
    variant: String,
    /// --quick without --paths: prefill runs on the best path only (scalar prefill alone
    /// would take minutes).
    prefill_best_only: bool,
    /// The path estimates measure on: the first of --paths, else the best one.
    estimate_path: Path,
}

fn plan(args: &Args, logical: usize) -> anyhow::Result<Plan> {
    let variant = formats::parse_variant(&args.variant).map_err(usage)?;
    let cfg = formats::variant_config(variant);
    let all_shapes = formats::shapes(&cfg);
    let formats: Vec<Format> = match (&args.types, args.quick) {
        (Some(t), _) => items(t)
            .into_iter()
            .map(|s| {
                s.parse::<Format>()
                    .map_err(|e| usage(format!("--types: {e}")))
            })
            .collect::<anyhow::Result<_>>()?,
        (None, true) => ["Q4_K", "Q8_0", "F16", "IQ4_XS", "AWQ_INT4_G128"]
            .iter()
            .map(|s| s.parse().expect("known format"))
            .collect(),
        (None, false) => Format::all(),
    };
    let shapes: Vec<Shape> = match (&args.shapes, args.quick) {
        (Some(s), _) => items(s)
            .into_iter()
            .map(|n| {
                all_shapes
                    .iter()
                    .find(|s| s.name == n)
                    .cloned()
                    .ok_or_else(|| {
                        let names: Vec<&str> = all_shapes.iter().map(|s| s.name.as_str()).collect();
                        usage(format!(
                            "--shapes: unknown shape '{n}' for {} (expected one of {})",
                            variant.cli_name(),
                            names.join(", ")
                        ))
                    })
            })
            .collect::<anyhow::Result<_>>()?,
        (None, true) => all_shapes
            .iter()
            .filter(|s| s.name == "ffn_up" || s.name == "attn_q")
            .cloned()
            .collect(),
        (None, false) => all_shapes,
    };
    let ops: Vec<Op> = match (&args.ops, args.quick) {
        (Some(o), _) => items(o)
            .into_iter()
            .map(|s| s.parse::<Op>().map_err(|e| usage(format!("--ops: {e}"))))
            .collect::<anyhow::Result<_>>()?,
        (None, true) => vec![Op::Decode, Op::Prefill(128)],
        (None, false) => vec![Op::Decode, Op::Prefill(128), Op::Prefill(512)],
    };
    let threads: Vec<usize> = items(&args.threads)
        .into_iter()
        .map(|s| match s {
            "all" => Ok(logical),
            n => n
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=4096).contains(n))
                .ok_or_else(|| usage(format!("--threads: '{n}' is not 'all' or 1..4096"))),
        })
        .collect::<anyhow::Result<_>>()?;
    let mut threads = threads;
    threads.dedup();
    let native: Vec<Path> = simd::available_paths()
        .into_iter()
        .filter(|p| *p != Path::Neon || cfg!(target_arch = "aarch64"))
        .collect();
    let paths: Vec<Path> = match (&args.paths, args.quick) {
        (Some(p), _) => items(p)
            .into_iter()
            .map(|s| simd::path_from_setting(Some(s)).map_err(|e| usage(format!("--paths: {e}"))))
            .collect::<anyhow::Result<_>>()?,
        (None, true) => {
            let mut v = vec![simd::best_path(), Path::Scalar];
            v.dedup();
            v
        }
        (None, false) => native,
    };
    for (what, empty) in [
        ("--types", formats.is_empty()),
        ("--shapes", shapes.is_empty()),
        ("--ops", ops.is_empty()),
        ("--threads", threads.is_empty()),
        ("--paths", paths.is_empty()),
    ] {
        if empty {
            return Err(usage(format!("{what}: nothing selected")));
        }
    }
    let estimate_path = if args.paths.is_some() {
        paths[0]
    } else {
        simd::best_path()
    };
    Ok(Plan {
        formats,
        shapes,
        ops,
        threads,
        paths,
        variant: variant.cli_name().to_string(),
        prefill_best_only: args.quick && args.paths.is_none(),
        estimate_path,
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(dir) = &args.merge {
        let reports = report::read_dir(dir).map_err(usage)?;
        print!("{}", report::merge_markdown(&reports));
        return Ok(());
    }
    if let Some(json) = &args.json {
        let inputs: Vec<&std::path::Path> = args.model.iter().map(|p| p.as_path()).collect();
        convert::output::check_target(json, convert::output::Kind::File, &inputs)?;
    }
    let host = host::detect();
    let plan = plan(&args, host.logical_cores)?;
    let model = if let Some(path) = &args.model {
        let (cfg, tensors) = estimate::from_gguf(path).map_err(usage)?;
        Some((path.display().to_string(), cfg, tensors))
    } else if let Some(ft) = &args.ftype {
        let v = formats::parse_variant(&args.variant).map_err(usage)?;
        let (cfg, tensors) = estimate::from_plan(v, ft).map_err(usage)?;
        Some((format!("{} {ft} (plan)", v.cli_name()), cfg, tensors))
    } else {
        None
    };
    if let Some(name) = &args.device {
        let Some((model_name, cfg, tensors)) = &model else {
            return Err(usage("--device needs --model or --type"));
        };
        let device = ::bench::devices::find(name).map_err(usage)?;
        let speeds = Speeds::from_device(&device, &estimate::matrix_types(cfg, tensors));
        let e = estimate::estimate(
            format!("{model_name} on {} (profile)", device.display),
            cfg,
            tensors,
            args.ctx as usize,
            device.threads as usize,
            &speeds,
        )
        .map_err(anyhow::Error::msg)?;
        print_estimate(&e);
        if e.memory_bytes > device.memory_bytes {
            println!(
                "does not fit: {:.2} GiB needed, {:.2} GiB on the device",
                e.memory_bytes as f64 / (1u64 << 30) as f64,
                device.memory_bytes as f64 / (1u64 << 30) as f64
            );
        }
        if let Some(path) = &args.json {
            write_json(path, &serde_json::json!({"device": device, "estimate": e}))?;
        }
        return Ok(());
    }
    let ws_bytes = match (args.working_set_mib, args.quick) {
        (Some(m), _) => m.max(1) << 20,
        (None, true) => 128 << 20,
        (None, false) => {
            limits::buffer_bytes(host.caches.last_level_bytes(), host.memory_bytes, 256 << 20)
        }
    };
    let start = Instant::now();
    let all = *plan.threads.iter().max().unwrap_or(&1);
    eprintln!(
        "g4q bench: {} ({}), {} cores / {} threads, measuring limits over {} MiB…",
        host.cpu_model,
        host.features.join(" "),
        host.physical_cores,
        host.logical_cores,
        ws_bytes >> 20
    );
    let lim = rayon::ThreadPoolBuilder::new()
        .num_threads(all)
        .build()?
        .install(|| limits::measure(ws_bytes, all, if args.quick { 3 } else { 5 }));
    print_limits(&host, &lim);
    let budget = Budget {
        working_set_bytes: ws_bytes,
        min_round_s: if args.quick { 0.05 } else { 0.3 },
        rounds: if args.quick { 2 } else { 3 },
    };
    let jobs = match &model {
        None => jobs(&plan),
        Some((_, cfg, tensors)) => estimate_jobs(&plan, cfg, tensors),
    };
    let bar = progress::bar(jobs.len() as u64, "bench");
    let mut results = Vec::new();
    let mut skipped = Vec::new();
    for (format, shape, op, path, threads) in jobs {
        bar.inc(1);
        if format.matrix_bytes(shape.rows, shape.cols).is_none() {
            skipped.push(format!("{format} {}", shape.name));
            continue;
        }
        let bw = if threads == 1 {
            lim.read_bandwidth_1t_gbs
        } else {
            lim.read_bandwidth_gbs
        };
        let m = formats::measure(format, &shape, op, path, threads, budget, bw)
            .map_err(|e| anyhow::anyhow!("{format} {} {op}: {e}", shape.name))?;
        bar.suspend(|| print_row(&m));
        results.push(m);
    }
    bar.finish_and_clear();
    skipped.dedup();
    for s in &skipped {
        eprintln!("skipped {s}: the width is not a whole number of the format's blocks");
    }
    eprintln!(
        "{} measurements in {:.0} s",
        results.len(),
        start.elapsed().as_secs_f64()
    );
    let estimate = match &model {
        None => None,
        Some((name, cfg, tensors)) => {
            let read = if all == 1 {
                lim.read_bandwidth_1t_gbs
            } else {
                lim.read_bandwidth_gbs
            };
            let speeds = Speeds::from_results(&results, all, read);
            let mut e =
                estimate::estimate(name.clone(), cfg, tensors, args.ctx as usize, all, &speeds)
                    .map_err(anyhow::Error::msg)?;
            if args.measure_forward {
                let at1 = estimate::estimate(name.clone(), cfg, tensors, 1, all, &speeds)
                    .map_err(anyhow::Error::msg)?;
                let path = args
                    .model
                    .as_deref()
                    .expect("--measure-forward requires --model");
                let tps = measure_forward(path, all)?;
                println!(
                    "forward pass: {tps:.2} tokens/s measured at context 1; estimate at context 1: {:.2} ({:+.0}%)",
                    at1.decode_tokens_per_s,
                    100.0 * (at1.decode_tokens_per_s / tps - 1.0)
                );
                e.measured_decode_tokens_per_s = Some(tps);
            }
            print_estimate(&e);
            Some(e)
        }
    };
    if let Some(path) = &args.json {
        let report = Report {
            schema: report::SCHEMA.to_string(),
            g4q_version: env!("CARGO_PKG_VERSION").to_string(),
            host,
            limits: lim,
            variant: plan.variant.clone(),
            quick: args.quick,
            results,
            estimate,
        };
        write_json(path, &report)?;
    }
    Ok(())
}

/// Every (format, shape, op, path, threads) to measure, in table order. AWQ has one path.
fn jobs(plan: &Plan) -> Vec<(Format, Shape, Op, Path, usize)> {
    let mut v = Vec::new();
    for &format in &plan.formats {
        for shape in &plan.shapes {
            for &op in &plan.ops {
                let paths: &[Path] = match format {
                    Format::Ggml(_) if op == Op::Decode || !plan.prefill_best_only => &plan.paths,
                    _ => &plan.paths[..1],
                };
                for &path in paths {
                    for &t in &plan.threads {
                        v.push((format, shape.clone(), op, path, t));
                    }
                }
            }
        }
    }
    v
}

/// For an estimate: decode and prefill of every matrix type of the model at its MLP shape
/// (`ffn_up`), on [`Plan::estimate_path`] and the most threads.
fn estimate_jobs(
    plan: &Plan,
    cfg: &Gemma4Config,
    tensors: &[ModelTensor],
) -> Vec<(Format, Shape, Op, Path, usize)> {
    let shape = formats::shapes(cfg)
        .into_iter()
        .find(|s| s.name == "ffn_up")
        .expect("every Gemma 4 config has an MLP");
    let threads = *plan.threads.iter().max().unwrap_or(&1);
    let mut v = Vec::new();
    for format in estimate::matrix_types(cfg, tensors) {
        for op in [Op::Decode, Op::Prefill(128)] {
            v.push((format, shape.clone(), op, plan.estimate_path, threads));
        }
    }
    v
}

/// Decode tokens/s of one token through g4q's forward pass on the GGUF file at `path`
/// (quantized products with ggml's math), best of three after a warm-up.
fn measure_forward(path: &std::path::Path, threads: usize) -> anyhow::Result<f64> {
    use verify::gguf_weights::{GgufMath, GgufWeights};
    let weights = GgufWeights::open(path, GgufMath::Ggml)?;
    let model = verify::Model::load(&weights)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    pool.install(|| {
        let mut best = f64::INFINITY;
        for i in 0..4 {
            let start = Instant::now();
            model.forward(
                &[2],
                verify::ForwardOptions::default(),
                &mut verify::NoObserver,
                &mut |_, _| {},
            )?;
            if i > 0 {
                best = best.min(start.elapsed().as_secs_f64());
            }
        }
        Ok(1.0 / best)
    })
}

fn print_estimate(e: &Estimate) {
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    println!(
        "estimate for {} at context {} on {} threads: decode {:.2} tokens/s, prefill {:.1} tokens/s; memory {:.2} GiB = weights {:.2} + KV cache {:.2} + compute buffers {:.2}",
        e.model,
        e.ctx,
        e.threads,
        e.decode_tokens_per_s,
        e.prefill_tokens_per_s,
        gib(e.memory_bytes),
        gib(e.weights_bytes),
        gib(e.kv_cache_bytes),
        gib(e.compute_buffer_bytes)
    );
}

fn print_limits(host: &Host, l: &Limits) {
    println!(
        "host {}: {} ({}), {} physical / {} logical cores, LLC {} MiB, {} GiB, {}",
        host.name,
        host.cpu_model,
        host.arch,
        host.physical_cores,
        host.logical_cores,
        host.caches.last_level_bytes().unwrap_or(0) >> 20,
        host.memory_bytes >> 30,
        host.os
    );
    println!(
        "limits over {} MiB: read {:.1} GB/s (1 thread {:.1}), triad {:.1} GB/s (1 thread {:.1}), f32 FMA {:.0} GFLOP/s per core",
        l.buffer_bytes >> 20,
        l.read_bandwidth_gbs,
        l.read_bandwidth_1t_gbs,
        l.triad_bandwidth_gbs,
        l.triad_bandwidth_1t_gbs,
        l.fma_gflops_per_core
    );
    println!(
        "| type | op | shape | path | threads | ms | weight GB/s | % of bandwidth | GFLOP/s |"
    );
    println!("|---|---|---|---|---:|---:|---:|---:|---:|");
}

fn print_row(m: &Measurement) {
    println!(
        "| {} | {} | {} {}x{} | {} | {} | {:.3} | {:.2} | {:.0} | {:.1} |",
        m.ty,
        m.op,
        m.shape,
        m.rows,
        m.cols,
        m.path,
        m.threads,
        m.time_s * 1e3,
        m.weight_gbs,
        m.percent_of_bandwidth,
        m.gflops
    );
}

/// Writes the report through convert's atomic writer, so a failed run never leaves a partial
/// file.
fn write_json(path: &std::path::Path, report: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)? + "\n";
    convert::output::write_file(path, text.as_bytes())?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
