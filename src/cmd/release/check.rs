//! The verification of a release: every output without a current report is scored in one pass
//! over the evaluation text (`compare_many`: each chunk runs through the reference once and
//! through every candidate), and each gets the report `g4q verify --json` would write for it
//! (the same schema and figures; its `command` is that `g4q verify` command).
//!
//! `seconds` and `tokens_per_second` of a report are those of the shared pass, the only figures
//! that differ from run to run.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use convert::output::write_file;
use serde_json::json;
use verify::candidate::{sha256_tokens, InputRecord, Opened};
use verify::compare::{compare, compare_many, CompareOptions, Comparison};
use verify::data::{chunk_tokens, ScoreSpan, BUNDLED_TEXT};
use verify::gates::GateResult;
use verify::gguf_weights::GgufMath;
use verify::report::{DataRecord, Report};
use verify::{Tokenizer, VerifyError, Weights};

use super::super::{internal, progress, shell_quote};
use super::outputs::Output;
use super::recipe::{Header, Recipe};
use super::state::{self, Verified};

/// How GGUF files multiply in the pass: as llama.cpp's CPU backend does.
const MATH: GgufMath = GgufMath::Ggml;

/// Verifies every output of `mine` in `out` whose report is missing or was made from other
/// inputs, and writes its report and record.
pub fn verify_pending(
    model: &Path,
    out: &Path,
    recipe: &Recipe,
    header: &Header,
    mine: &[Output],
) -> anyhow::Result<()> {
    let mut pending = Vec::new();
    for o in mine.iter().filter(|o| o.verified()) {
        let name = o.file_name(&recipe.name);
        let built = state::read_built(out, &name)
            .ok_or_else(|| internal(format!("{name} has no record after it was made")))?;
        let inputs = state::key(&json!({
            "tool": header.tool,
            "version": header.version,
            "reference": header.checkpoint.sha256,
            "model": recipe.model,
            "candidate": built.sha256,
            "name": name,
            "eval": recipe.eval,
            "gates": recipe.gates,
        }));
        let current = state::read_verified(out, &name).is_some_and(|v| v.inputs == inputs)
            && read_report(out, &name).is_some();
        if current {
            eprintln!("g4q: release: {name} is verified");
        } else {
            state::forget_verified(out, &name)?;
            pending.push((name, built.sha256, inputs));
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    let reference = Opened::open(model, MATH)?;
    let bos = reference.weights().config().bos_token_id;
    let text = match recipe.eval.data.kind.as_str() {
        "bundled" => BUNDLED_TEXT.to_string(),
        _ => {
            let p = Path::new(&recipe.eval.data.path);
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            if verify::candidate::sha256_bytes(text.as_bytes()) != recipe.eval.data.sha256 {
                return Err(super::super::usage(format!(
                    "{} changed while the release ran",
                    p.display()
                )));
            }
            text
        }
    };
    let tokens = Tokenizer::from_model_dir(model)?.encode_with_bos(&text, bos)?;
    let chunks = chunk_tokens(&tokens, recipe.eval.ctx, recipe.eval.chunks, bos)?;
    let data = DataRecord {
        input: recipe.eval.data.clone(),
        tokens_sha256: sha256_tokens(&chunks),
        ctx: recipe.eval.ctx,
        chunks: chunks.len(),
        scored: ScoreSpan::SecondHalf.name().into(),
    };
    // A candidate with a NaN or infinite weight fails its `finite` gate; it is not scored.
    let mut opened = Vec::new();
    for (name, _, _) in &pending {
        opened.push(match Opened::open(&out.join(name), MATH) {
            Ok(c) => Ok(c),
            Err(e @ VerifyError::NonFinite { .. }) => Err(format!("the candidate's {e}")),
            Err(e) => return Err(e.into()),
        });
    }
    let scoreable: Vec<&dyn Weights> = opened
        .iter()
        .filter_map(|o| o.as_ref().ok().map(|c| c.weights()))
        .collect();
    let opts = CompareOptions {
        span: ScoreSpan::SecondHalf,
        layer_errors: recipe.eval.layer_errors,
    };
    eprintln!(
        "g4q: release: verifying {} file(s) in one pass over {} chunks of {} tokens",
        scoreable.len(),
        chunks.len(),
        recipe.eval.ctx
    );
    let start = Instant::now();
    let mut scores = score(reference.weights(), &scoreable, &chunks, opts)?.into_iter();
    let seconds = start.elapsed().as_secs_f64();
    let thresholds = recipe.gates.thresholds();
    for ((name, sha256, inputs), cand) in pending.iter().zip(&opened) {
        let (kind, scored) = match cand {
            Ok(c) => (
                c.kind(),
                scores
                    .next()
                    .ok_or_else(|| internal("fewer scores than candidates"))?,
            ),
            Err(why) => (Opened::kind_of(&out.join(name))?, Err(why.clone())),
        };
        let (metrics, layers, gates, speed) = match scored {
            Ok(cmp) => {
                let gates = thresholds.evaluate(&cmp.metrics);
                let speed = (chunks.len() * recipe.eval.ctx) as f64 / seconds.max(1e-9);
                (Some(cmp.metrics), cmp.layers, gates, speed)
            }
            Err(why) => (None, Vec::new(), vec![GateResult::not_finite(why)], 0.0),
        };
        let report = Report {
            tool: header.tool.clone(),
            version: header.version.clone(),
            command: verify_command(recipe, name),
            reference: InputRecord {
                path: recipe.model.clone(),
                kind: "safetensors".into(),
                sha256: header.checkpoint.sha256.clone(),
            },
            candidate: InputRecord {
                path: name.clone(),
                kind: kind.into(),
                sha256: sha256.clone(),
            },
            gguf_math: MATH.name().into(),
            data: data.clone(),
            metrics,
            layers,
            gates,
            baseline: None,
            seconds,
            tokens_per_second: speed,
        };
        let path = state::report_path(out, name);
        write_file(&path, (report.to_json() + "\n").as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        state::write_verified(
            out,
            &Verified {
                name: name.clone(),
                inputs: inputs.clone(),
            },
        )?;
    }
    Ok(())
}

/// Scores every candidate in one pass. A candidate whose logits or metrics are not finite stops
/// the shared pass, so then each is scored alone to find which (a failure only such a file
/// pays for) and the others keep their figures.
fn score(
    reference: &dyn Weights,
    candidates: &[&dyn Weights],
    chunks: &[Vec<u32>],
    opts: CompareOptions,
) -> anyhow::Result<Vec<Result<Comparison, String>>> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let bar = progress::bar(chunks.len() as u64, "verify");
    let all = compare_many(reference, candidates, chunks, opts, &mut |done, _| {
        bar.set_position(done as u64)
    });
    bar.finish_and_clear();
    match all {
        Ok(v) => Ok(v.into_iter().map(Ok).collect()),
        Err(VerifyError::CandidateNotFinite(_)) => candidates
            .iter()
            .map(
                |c| match compare(reference, *c, chunks, opts, &mut |_, _| {}) {
                    Ok(cmp) => Ok(Ok(cmp)),
                    Err(VerifyError::CandidateNotFinite(why)) => Ok(Err(why)),
                    Err(e) => Err(e.into()),
                },
            )
            .collect(),
        Err(e) => Err(e.into()),
    }
}

/// The report of output `name`, when there is a readable one.
pub fn read_report(out: &Path, name: &str) -> Option<Report> {
    let path = state::report_path(out, name);
    let text = std::fs::read_to_string(&path).ok()?;
    Report::from_json(&text, &path.display().to_string()).ok()
}

/// The `g4q verify` command that gives this report, run in the release folder.
pub fn verify_command(recipe: &Recipe, name: &str) -> String {
    let mut a: Vec<String> = vec![
        "g4q".into(),
        "verify".into(),
        "--reference".into(),
        recipe.model.clone(),
        "--candidate".into(),
        name.into(),
    ];
    if recipe.eval.data.kind != "bundled" {
        a.extend(["--data".into(), recipe.eval.data.path.clone()]);
    }
    a.extend(["--ctx".into(), recipe.eval.ctx.to_string()]);
    if let Some(c) = recipe.eval.chunks {
        a.extend(["--chunks".into(), c.to_string()]);
    }
    if !recipe.eval.layer_errors {
        a.push("--no-layer-errors".into());
    }
    let g = &recipe.gates;
    for (flag, v) in [
        ("--max-kld", g.max_kld),
        ("--min-top1", g.min_top1),
        ("--max-ppl-ratio", g.max_ppl_ratio),
    ] {
        if let Some(v) = v {
            a.extend([flag.into(), v.to_string()]);
        }
    }
    a.extend([
        "--json".into(),
        format!("{}/{name}.json", state::REPORTS_DIR),
    ]);
    a.iter()
        .map(|s| shell_quote(s))
        .collect::<Vec<_>>()
        .join(" ")
}
