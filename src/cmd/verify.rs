//! `g4q verify`: the accuracy of a candidate (GGUF file or safetensors folder) against the f32
//! reference forward pass, with both models streaming over the same token chunks; prints a
//! table, writes the JSON report and applies the CI gates (exit 1 when one fails). A candidate
//! whose weights, logits or metrics are NaN or infinite fails the `finite` gate: the report is
//! still written, without metrics, and the exit code is 1; input that cannot be scored at all
//! (unreadable, another model, a non-finite reference) is exit 2 with no report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use convert::output::{check_target, write_dir, write_file, Kind};
use verify::candidate::{fingerprint, sha256_bytes, sha256_tokens, InputRecord, Opened};
use verify::compare::{compare_each_from, CompareOptions, ReferenceSide};
use verify::data::{chunk_tokens, parse_token_ids, ScoreSpan, BUNDLED_TEXT};
use verify::gates::{GateFailed, GateResult, Thresholds};
use verify::gguf_weights::GgufMath;
use verify::reference_file::{Detail, Identity, ReferenceFile, ReferenceWriter};
use verify::report::{BaselineComparison, DataRecord, Report};
use verify::spill::MemoryBudget;
use verify::{Tokenizer, VerifyError};

use super::progress;

/// The gate configuration read when `--config` is not given and the file exists.
const DEFAULT_CONFIG: &str = "g4q.toml";

/// Flags of `g4q verify`.
#[derive(clap::Args)]
pub struct Args {
    /// The reference model folder (config.json, safetensors, tokenizer.json).
    #[arg(long)]
    pub reference: PathBuf,
    /// What to check: a GGUF file, a safetensors, AWQ or ONNX folder of the same model. Repeat
    /// to score several candidates against one reference pass (one report each).
    #[arg(long, required_unless_present = "save_reference")]
    pub candidate: Vec<PathBuf>,
    /// Also store what the metrics read from the reference at every scored position in this
    /// file (with no --candidate: only run the reference and store it), for later runs'
    /// --reference-logits.
    #[arg(long, value_name = "FILE", conflicts_with = "reference_logits")]
    pub save_reference: Option<PathBuf>,
    /// A file from --save-reference of the same reference, data, ctx, chunks and span: its
    /// rows replace the reference forward pass (no per-layer errors then).
    #[arg(long, value_name = "FILE")]
    pub reference_logits: Option<PathBuf>,
    /// How many of the reference's most likely tokens --save-reference stores per position
    /// (KLD is then top-k approximated, with a bound in the report).
    #[arg(long, value_name = "N", default_value_t = 32, conflicts_with = "exact")]
    pub reference_top_k: usize,
    /// --save-reference stores the full f32 logit rows: every metric equals the in-process run.
    #[arg(long, requires = "save_reference")]
    pub exact: bool,
    /// Plain text to evaluate on, tokenized with the reference's tokenizer.json (default: the
    /// bundled data/eval.txt).
    #[arg(long, conflicts_with = "tokens_file")]
    pub data: Option<PathBuf>,
    /// Pre-tokenized ids (integers separated by whitespace or commas) instead of text.
    #[arg(long)]
    pub tokens_file: Option<PathBuf>,
    /// Tokens per chunk; each chunk starts with BOS, as llama.cpp's perplexity tool does.
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Use at most this many chunks (default: every whole chunk of the data).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Score every position of each chunk instead of its second half (llama.cpp's choice).
    #[arg(long)]
    pub all_positions: bool,
    /// Skip the per-layer hidden-state errors (saves `2 (L + 1)` chunk-sized buffers).
    #[arg(long)]
    pub no_layer_errors: bool,
    /// Write the full report as JSON here. With several candidates, a folder: one report per
    /// candidate, named after the candidate's file or folder name plus `.json`.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// An earlier JSON report: flag metrics that got worse beyond the statistical noise (and
    /// fail, exit 1, when one did). One candidate only.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Chunk activations kept in memory (residual streams, per-layer inputs, stashed K/V, the
    /// logits of a group of chunks) before spilling to a temporary folder: bytes, or with a
    /// unit: K/KiB, M/MiB, G/GiB, T/TiB (powers of 1024) or KB, MB, GB, TB (powers of 1000).
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_size)]
    pub max_memory: usize,
    #[command(flatten)]
    pub gates: GateArgs,
    /// How a GGUF candidate multiplies: `ggml` quantizes the activations to 8 bits inside each
    /// dot product as llama.cpp does; `dequantize` widens the weights and runs the f32 GEMM
    /// (the error of the weights alone).
    #[arg(long, value_enum, default_value_t = MathArg::Ggml)]
    pub gguf_math: MathArg,
    /// Worker threads (default: all cores). The figures do not depend on it.
    #[arg(long, value_parser = super::threads::parse)]
    pub threads: Option<usize>,
}

/// `--gguf-math` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum MathArg {
    Ggml,
    Dequantize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let several = args.candidate.len() > 1;
    if several && args.baseline.is_some() {
        return Err(super::usage(
            "--baseline compares one candidate; give one --candidate",
        ));
    }
    let names = report_names(&args.candidate)?;
    if let Some(json) = &args.json {
        let mut inputs: Vec<&Path> = vec![args.reference.as_path()];
        inputs.extend(args.candidate.iter().map(PathBuf::as_path));
        inputs.extend(
            [
                args.data.as_deref(),
                args.tokens_file.as_deref(),
                args.baseline.as_deref(),
                Some(
                    args.gates
                        .config
                        .as_deref()
                        .unwrap_or(Path::new(DEFAULT_CONFIG)),
                ),
            ]
            .into_iter()
            .flatten(),
        );
        let kind = if several { Kind::Folder } else { Kind::File };
        check_target(json, kind, &inputs)?;
    }
    if let Some(save) = &args.save_reference {
        let mut inputs: Vec<&Path> = vec![args.reference.as_path()];
        inputs.extend(args.candidate.iter().map(PathBuf::as_path));
        inputs.extend(
            [args.data.as_deref(), args.tokens_file.as_deref()]
                .into_iter()
                .flatten(),
        );
        check_target(save, Kind::File, &inputs)?;
    }
    let thresholds = args.gates.thresholds()?;
    let math = match args.gguf_math {
        MathArg::Ggml => GgufMath::Ggml,
        MathArg::Dequantize => GgufMath::Dequantize,
    };
    let reference = Opened::open(&args.reference, math)?;
    // A candidate with a NaN or infinite weight is a candidate that fails (the `finite` gate,
    // in the report), not unreadable input; a reference must be finite.
    let mut candidates = Vec::with_capacity(args.candidate.len());
    for path in &args.candidate {
        candidates.push(match Opened::open(path, math) {
            Ok(c) => Ok(c),
            Err(e @ VerifyError::NonFinite { .. }) => Err(format!("the candidate's {e}")),
            Err(e) => return Err(e.into()),
        });
    }
    let bos = reference.weights().config().bos_token_id;
    let (data_input, tokens) = load_tokens(&args, bos)?;
    let chunks = chunk_tokens(&tokens, args.ctx, args.chunks, bos)?;
    let span = if args.all_positions {
        ScoreSpan::All
    } else {
        ScoreSpan::SecondHalf
    };
    let data = DataRecord {
        input: data_input,
        tokens_sha256: sha256_tokens(&chunks),
        ctx: args.ctx,
        chunks: chunks.len(),
        scored: span.name().into(),
    };
    // Every input's sha256 (gigabytes of bytes for a real checkpoint) is hashed on a thread of
    // its own while the passes run; the reference's is waited for first only when a stored or
    // saved reference or a baseline has to be checked against it.
    let mut fingerprints = Fingerprints::start(
        std::iter::once(&args.reference)
            .chain(&args.candidate)
            .cloned()
            .collect(),
    );
    let early =
        args.reference_logits.is_some() || args.save_reference.is_some() || args.baseline.is_some();
    let early_sha256 = if early {
        Some(fingerprints.get(0)?)
    } else {
        None
    };
    let identity = Identity {
        reference_sha256: early_sha256.clone().unwrap_or_default(),
        tokens_sha256: data.tokens_sha256.clone(),
        ctx: args.ctx,
        chunks: chunks.len(),
        span,
        vocab: reference.weights().config().vocab_size,
    };
    let stored = match &args.reference_logits {
        Some(p) => {
            let f = ReferenceFile::open(p)?;
            let positions = chunks
                .iter()
                .map(|c| {
                    c.len().saturating_sub(1) - span.first(c.len()).min(c.len().saturating_sub(1))
                })
                .sum();
            f.check_matches(&identity, positions)?;
            Some(f)
        }
        None => None,
    };
    let mut writer = match &args.save_reference {
        Some(_) => {
            let detail = if args.exact {
                Detail::Exact
            } else {
                Detail::TopK(args.reference_top_k)
            };
            Some(ReferenceWriter::new(&identity, detail)?)
        }
        None => None,
    };
    let baseline = match &args.baseline {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading baseline {}", p.display()))?;
            Some(Report::baseline_from_json(
                &text,
                &p.display().to_string(),
                &identity.reference_sha256,
            )?)
        }
        None => None,
    };

    let pool = super::threads::pool(args.threads)?;
    let start = Instant::now();
    let opened: Vec<&dyn verify::Weights> = candidates
        .iter()
        .filter_map(|c| c.as_ref().ok().map(Opened::weights))
        .collect();
    let mut results = if opened.is_empty() && writer.is_none() {
        Vec::new()
    } else {
        let bar = progress::bar(0, "verify");
        let opts = CompareOptions {
            span,
            layer_errors: !args.no_layer_errors,
        };
        let cmp = pool.install(|| {
            let side = match &stored {
                Some(f) => ReferenceSide::Stored(f),
                None => ReferenceSide::Run(writer.as_mut()),
            };
            compare_each_from(
                reference.weights(),
                side,
                &opened,
                &chunks,
                opts,
                &MemoryBudget::new(args.max_memory),
                &mut |done, all| {
                    bar.set_length(all as u64);
                    bar.set_position(done as u64)
                },
            )
        });
        bar.finish_and_clear();
        cmp?
    }
    .into_iter();
    let seconds = start.elapsed().as_secs_f64();

    if let (Some(path), Some(w)) = (&args.save_reference, writer) {
        write_file(path, &w.bytes()).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("saved the reference's scored rows to {}", path.display());
    }

    let reference_record = InputRecord {
        path: args.reference.display().to_string(),
        kind: reference.kind().into(),
        sha256: match early_sha256 {
            Some(sha) => sha,
            None => fingerprints.get(0)?,
        },
    };
    let mut reports = Vec::with_capacity(candidates.len());
    for (i, (path, candidate)) in args.candidate.iter().zip(&candidates).enumerate() {
        let scored = match candidate {
            Ok(_) => match results.next().expect("one result per opened candidate") {
                Ok(cmp) => Ok(cmp),
                Err(VerifyError::CandidateNotFinite(why)) => Err(why),
                Err(e) => return Err(e.into()),
            },
            Err(why) => Err(why.clone()),
        };
        let (metrics, layers, gates, baseline, tokens_per_second) = match scored {
            Ok(cmp) => {
                let mut gates = thresholds.evaluate(&cmp.metrics);
                let baseline = baseline.as_ref().and_then(|b| {
                    let file = args.baseline.as_deref().unwrap_or(Path::new("")).display();
                    let base = b.metrics.as_ref()?;
                    Some(BaselineComparison::new(
                        &file.to_string(),
                        base,
                        &b.data,
                        &cmp.metrics,
                        &data,
                    ))
                });
                if let Some(b) = &baseline {
                    gates.push(b.gate());
                }
                let speed = (chunks.len() * args.ctx) as f64 / seconds.max(1e-9);
                (Some(cmp.metrics), cmp.layers, gates, baseline, speed)
            }
            // Nothing to compare with the gates or the baseline: the one verdict is the failure.
            Err(why) => (
                None,
                Vec::new(),
                vec![GateResult::not_finite(why)],
                None,
                0.0,
            ),
        };
        let candidate_kind = match candidate {
            Ok(c) => c.kind(),
            Err(_) => Opened::kind_of(path)?,
        };
        reports.push(Report {
            tool: "g4q".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            command: command_line(),
            reference: reference_record.clone(),
            candidate: InputRecord {
                path: path.display().to_string(),
                kind: candidate_kind.into(),
                sha256: fingerprints.get(1 + i)?,
            },
            gguf_math: math.name().into(),
            data: data.clone(),
            metrics,
            layers,
            gates,
            baseline,
            seconds,
            tokens_per_second,
        });
    }
    for (i, report) in reports.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{}", report.table());
    }
    if let Some(path) = &args.json {
        if several {
            write_dir(path, |dir| {
                for (name, report) in names.iter().zip(&reports) {
                    convert::output::write_file(
                        &dir.join(name),
                        (report.to_json() + "\n").as_bytes(),
                    )?;
                }
                Ok(())
            })
        } else {
            write_file(path, (reports[0].to_json() + "\n").as_bytes())
        }
        .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut failed = reports.iter().filter_map(|r| GateFailed::check(&r.gates));
    match failed.next() {
        Some(mut first) => {
            for more in failed {
                first.failed.extend(more.failed);
            }
            Err(first.into())
        }
        None => Ok(()),
    }
}

/// The report file name of each candidate in a `--json` folder: its file or folder name plus
/// `.json`; two candidates with one name are refused.
fn report_names(candidates: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = Vec::with_capacity(candidates.len());
    for c in candidates {
        let name = c
            .file_name()
            .map(|n| format!("{}.json", n.to_string_lossy()))
            .ok_or_else(|| super::usage(format!("--candidate {}: no file name", c.display())))?;
        if names.contains(&name) {
            return Err(super::usage(format!(
                "two candidates named {name}: their reports would share a name"
            )));
        }
        names.push(name);
    }
    Ok(names)
}

/// `--max-memory`'s value through the one size parser (`verify::size`).
pub(super) fn parse_size(text: &str) -> Result<usize, String> {
    let bytes = verify::size::parse_size(text)?;
    usize::try_from(bytes).map_err(|_| format!("'{text}' is too large"))
}

/// The gate flags `verify` and `release` share.
#[derive(clap::Args, Debug, Clone)]
pub struct GateArgs {
    /// Gate: mean KL divergence at most this.
    #[arg(long)]
    pub max_kld: Option<f64>,
    /// Gate: top-1 agreement at least this fraction (0..1).
    #[arg(long)]
    pub min_top1: Option<f64>,
    /// Gate: candidate / reference perplexity at most this.
    #[arg(long)]
    pub max_ppl_ratio: Option<f64>,
    /// g4q.toml with a `[verify.gates]` section (default: ./g4q.toml when it exists); flags
    /// override its thresholds.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl GateArgs {
    /// Thresholds from the config file (explicit, or ./g4q.toml when present) overridden by
    /// the flags.
    pub fn thresholds(&self) -> anyhow::Result<Thresholds> {
        let flags = Thresholds {
            max_kld: self.max_kld,
            min_top1: self.min_top1,
            max_ppl_ratio: self.max_ppl_ratio,
        };
        gate_thresholds(self.config.as_deref(), flags)
    }
}

/// The gates of `config` (or ./g4q.toml when it exists) overridden by `flags`: what `verify`
/// and `release` gate on.
pub(super) fn gate_thresholds(
    config: Option<&Path>,
    flags: Thresholds,
) -> anyhow::Result<Thresholds> {
    let file = match config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Thresholds::from_toml(&text, &p.display().to_string())?
        }
        None if Path::new(DEFAULT_CONFIG).is_file() => {
            let text = std::fs::read_to_string(DEFAULT_CONFIG)
                .with_context(|| format!("reading {DEFAULT_CONFIG}"))?;
            Thresholds::from_toml(&text, DEFAULT_CONFIG)?
        }
        None => Thresholds::default(),
    };
    flags.validate("flags")?;
    Ok(file.overridden_by(flags))
}

/// The evaluation tokens (`[bos] + text` or the ids as given) and their input record.
fn load_tokens(args: &Args, bos: u32) -> anyhow::Result<(InputRecord, Vec<u32>)> {
    if let Some(p) = &args.tokens_file {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let ids = parse_token_ids(&text, &p.display().to_string())?;
        return Ok((read_record(p, "tokens", &text), ids));
    }
    if !args.reference.is_dir() {
        return Err(super::usage(
            "text data needs a reference folder with tokenizer.json; give --tokens-file",
        ));
    }
    let tok = Tokenizer::from_model_dir(&args.reference)?;
    let (input, text) = match &args.data {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            (read_record(p, "text", &text), text)
        }
        None => (
            InputRecord {
                path: "data/eval.txt".into(),
                kind: "bundled".into(),
                sha256: sha256_bytes(BUNDLED_TEXT.as_bytes()),
            },
            BUNDLED_TEXT.to_string(),
        ),
    };
    Ok((input, tok.encode_with_bos(&text, bos)?))
}

/// The record of an input already read as `text`: its hash is of the bytes read, so a pipe or
/// a file that changed after reading is recorded as what the run actually saw.
fn read_record(path: &Path, kind: &str, text: &str) -> InputRecord {
    InputRecord {
        path: path.display().to_string(),
        kind: kind.into(),
        sha256: sha256_bytes(text.as_bytes()),
    }
}

/// The inputs' fingerprints ([`fingerprint`]), hashed in order on a thread of their own; the
/// first [`Fingerprints::get`] waits for all of them.
struct Fingerprints {
    thread: Option<std::thread::JoinHandle<Vec<verify::Result<String>>>>,
    done: Vec<Option<verify::Result<String>>>,
}

impl Fingerprints {
    fn start(paths: Vec<PathBuf>) -> Self {
        let thread = std::thread::spawn(move || paths.iter().map(|p| fingerprint(p)).collect());
        Fingerprints {
            thread: Some(thread),
            done: Vec::new(),
        }
    }

    /// The `i`-th path's sha256 (each handed out once).
    fn get(&mut self, i: usize) -> anyhow::Result<String> {
        if let Some(t) = self.thread.take() {
            let all = t
                .join()
                .map_err(|_| anyhow::anyhow!("internal: the hashing thread panicked"))?;
            self.done = all.into_iter().map(Some).collect();
        }
        match self.done.get_mut(i).and_then(Option::take) {
            Some(r) => Ok(r?),
            None => anyhow::bail!("internal: fingerprint {i} asked twice"),
        }
    }
}

/// The command line as typed, arguments with spaces or quotes single-quoted.
fn command_line() -> String {
    std::env::args()
        .map(|a| super::shell_quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}
