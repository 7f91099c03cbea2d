//! `g4q verify`'s figures on the fixtures: exact zero for candidates that hold the reference's
//! values (the same folder, its f32 twin, its F32 GGUF), the KLD order of the K-quant mixes, and
//! agreement with llama.cpp's own `llama-perplexity --kl-divergence` figures on `trained-e2b`.
//!
//! GGUF candidates are written by `g4q convert` (byte-identical to llama-quantize's files), then
//! compared through the library so one reference pass serves every type.

use std::path::Path;

use testkit::{g4q, XorShift32};
use verify::candidate::Opened;
use verify::compare::{compare_many, CompareOptions};
use verify::data::{chunk_tokens, ScoreSpan};
use verify::gguf_weights::GgufMath;
use verify::metrics::Metrics;
use verify::{Tokenizer, Weights};

fn convert(model: &Path, ty: &str, out: &Path) {
    let res = g4q!()
        .args(["convert", model.to_str().unwrap(), "--type", ty, "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "convert {} {ty}: {}",
        model.display(),
        String::from_utf8_lossy(&res.stderr)
    );
}

/// Deterministic ids in the text range of the tiny vocabularies (below the multimodal tokens).
fn pseudo_tokens(n: usize, seed: u32, vocab: usize) -> Vec<u32> {
    let mut rng = XorShift32::new(seed.wrapping_mul(2654435761) | 1);
    (0..n)
        .map(|_| 17 + rng.next_u32() % (vocab.min(505) as u32 - 17))
        .collect()
}

fn run(
    reference: &dyn Weights,
    candidates: &[&Opened],
    chunks: &[Vec<u32>],
    span: ScoreSpan,
) -> Vec<Metrics> {
    let cands: Vec<&dyn Weights> = candidates.iter().map(|c| c.weights()).collect();
    let opts = CompareOptions {
        span,
        layer_errors: false,
    };
    compare_many(reference, &cands, chunks, opts, &mut |_, _| {})
        .unwrap()
        .into_iter()
        .map(|c| c.metrics)
        .collect()
}

#[test]
fn candidates_with_the_reference_values_score_exactly_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cases = 0;
    for dir in testkit::reference_fixtures() {
        let model = dir.join("released-bf16");
        let reference = Opened::open(&model, GgufMath::Ggml).unwrap();
        let gguf = tmp.path().join(format!(
            "{}-f32.gguf",
            dir.file_name().unwrap().to_string_lossy()
        ));
        convert(&model, "F32", &gguf);
        let mut cands = vec![
            Opened::open(&model, GgufMath::Ggml).unwrap(),
            Opened::open(&gguf, GgufMath::Ggml).unwrap(),
        ];
        if dir.join("causal-f32").is_dir() {
            cands.push(Opened::open(&dir.join("causal-f32"), GgufMath::Ggml).unwrap());
        }
        let vocab = reference.weights().config().vocab_size;
        let chunks = chunk_tokens(&pseudo_tokens(80, 7, vocab), 40, None, 2).unwrap();
        let refs: Vec<&Opened> = cands.iter().collect();
        for (m, c) in run(reference.weights(), &refs, &chunks, ScoreSpan::All)
            .iter()
            .zip(&cands)
        {
            let what = format!("{} vs {}", dir.display(), c.kind());
            assert_eq!(m.tokens, 2 * 39, "{what}");
            assert_eq!(m.kld_mean, 0.0, "{what}");
            assert_eq!(m.kld_max, 0.0, "{what}");
            assert_eq!(m.top1_agreement, 1.0, "{what}");
            assert_eq!(m.ppl_reference, m.ppl_candidate, "{what}");
            assert_eq!(m.delta_p_rms, 0.0, "{what}");
            cases += 1;
        }
    }
    println!("checked {cases} cases");
}

const ORDER: [&str; 4] = ["Q8_0", "Q6_K", "Q4_K_M", "Q2_K"];

/// Converts `model` to every type of [`ORDER`] and opens the files.
fn quantized(model: &Path, dir: &Path, math: GgufMath) -> Vec<Opened> {
    ORDER
        .iter()
        .map(|ty| {
            let out = dir.join(format!("{ty}.gguf"));
            if !out.exists() {
                convert(model, ty, &out);
            }
            Opened::open(&out, math).unwrap()
        })
        .collect()
}

fn assert_order(what: &str, m: &[Metrics]) {
    let kld: Vec<f64> = m.iter().map(|m| m.kld_mean).collect();
    assert!(kld[0] > 0.0, "{what}: Q8_0 KLD {kld:?}");
    for (i, w) in kld.windows(2).enumerate() {
        assert!(
            w[0] < w[1],
            "{what}: {} KLD {} >= {} KLD {}",
            ORDER[i],
            w[0],
            ORDER[i + 1],
            w[1]
        );
    }
}

#[test]
fn k_quant_fixtures_order_q8_q6_q4_q2() {
    let mut cases = 0;
    for dir in testkit::reference_fixtures() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if !name.contains("-kq-") {
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let model = dir.join("released-bf16");
        let reference = Opened::open(&model, GgufMath::Ggml).unwrap();
        let vocab = reference.weights().config().vocab_size;
        let chunks = chunk_tokens(&pseudo_tokens(256, 11, vocab), 64, None, 2).unwrap();
        for math in [GgufMath::Ggml, GgufMath::Dequantize] {
            let cands = quantized(&model, tmp.path(), math);
            let refs: Vec<&Opened> = cands.iter().collect();
            let m = run(reference.weights(), &refs, &chunks, ScoreSpan::All);
            assert_order(&format!("{name} ({})", math.name()), &m);
            cases += 1;
        }
    }
    if cases == 0 {
        return testkit::skip_missing_oracle("the *-kq-* fixtures (hidden 256, K-quants apply)");
    }
    println!("checked {cases} cases");
}

/// llama.cpp's figures: type → (mean KLD, same-top-1 share).
fn llama_cpp_figures(path: &Path) -> Vec<(String, f64, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let kld = f.get(2)?.parse::<f64>().ok()?;
            let top1 = f.get(4)?.parse::<f64>().ok()?;
            Some((f[0].to_string(), kld, top1 / 100.0))
        })
        .collect()
}

/// On the trained model with llama.cpp's chunking (`-c 256 --chunks 16`, second halves), the
/// ggml-arithmetic KLDs land within 15% of llama.cpp's and in its order; the weights-only
/// (dequantize) figures keep the order too.
#[test]
fn trained_e2b_matches_llama_cpp_perplexity_tool() {
    let dir = testkit::fixtures_dir().join("trained-e2b");
    let model = dir.join("released-bf16");
    let figures = llama_cpp_figures(&dir.join("llamacpp/kld-eval-a.txt"));
    assert!(figures.len() >= ORDER.len(), "{figures:?}");
    let reference = Opened::open(&model, GgufMath::Ggml).unwrap();
    let cfg = reference.weights().config();
    let text = std::fs::read_to_string(dir.join("eval-a.txt")).unwrap();
    let tok = Tokenizer::from_model_dir(&model).unwrap();
    let ids = tok.encode_with_bos(&text, cfg.bos_token_id).unwrap();
    let chunks = chunk_tokens(&ids, 256, Some(16), cfg.bos_token_id).unwrap();
    assert_eq!(chunks.len(), 16);

    let tmp = tempfile::tempdir().unwrap();
    let t0 = std::time::Instant::now();
    let cands = quantized(&model, tmp.path(), GgufMath::Ggml);
    let refs: Vec<&Opened> = cands.iter().collect();
    let m = run(reference.weights(), &refs, &chunks, ScoreSpan::SecondHalf);
    println!(
        "trained-e2b: {} types x 16 x 256 tokens in {:.1} s",
        ORDER.len(),
        t0.elapsed().as_secs_f64()
    );
    assert_order("trained-e2b (ggml)", &m);
    let mut cases = 0;
    for (ty, got) in ORDER.iter().zip(&m) {
        let (_, kld, top1) = figures
            .iter()
            .find(|(t, _, _)| t == ty)
            .unwrap_or_else(|| panic!("no llama.cpp figure for {ty}"));
        assert_eq!(got.tokens, 16 * 127, "{ty}");
        let rel = (got.kld_mean - kld).abs() / kld;
        println!(
            "{ty}: KLD {:.6} vs llama.cpp {kld:.6} ({:+.1}%), top-1 {:.4} vs {top1:.4}",
            got.kld_mean,
            100.0 * (got.kld_mean / kld - 1.0),
            got.top1_agreement
        );
        assert!(rel < 0.15, "{ty}: KLD {} vs llama.cpp {kld}", got.kld_mean);
        assert!(
            (got.top1_agreement - top1).abs() < 0.01,
            "{ty}: top-1 {} vs llama.cpp {top1}",
            got.top1_agreement
        );
        cases += 1;
    }
    println!("checked {cases} cases");
}

/// The reference perplexity with transformers' chunking of `perplexity.json` (each chunk BOS +
/// the next 255 text tokens, every position scored) equals transformers' figure: an independent
/// check of the tokenizer, the forward pass and the perplexity formula together.
#[test]
fn trained_e2b_perplexity_matches_transformers() {
    let dir = testkit::fixtures_dir().join("trained-e2b");
    let model = dir.join("released-bf16");
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("perplexity.json")).unwrap())
            .unwrap();
    let want = &want["eval-a"];
    let (n_chunks, ctx) = (
        want["chunks"].as_u64().unwrap() as usize,
        want["ctx"].as_u64().unwrap() as usize,
    );
    let reference = Opened::open(&model, GgufMath::Ggml).unwrap();
    let bos = reference.weights().config().bos_token_id;
    let text = std::fs::read_to_string(dir.join("eval-a.txt")).unwrap();
    let ids = Tokenizer::from_model_dir(&model)
        .unwrap()
        .encode(&text)
        .unwrap();
    let chunks: Vec<Vec<u32>> = ids
        .chunks_exact(ctx - 1)
        .take(n_chunks)
        .map(|c| std::iter::once(bos).chain(c.iter().copied()).collect())
        .collect();
    let m = &run(reference.weights(), &[&reference], &chunks, ScoreSpan::All)[0];
    assert_eq!(m.tokens as u64, want["tokens_scored"].as_u64().unwrap());
    let ppl = want["ppl"].as_f64().unwrap();
    assert!(
        (m.ppl_reference - ppl).abs() < 1e-5 * ppl,
        "{} vs transformers {ppl}",
        m.ppl_reference
    );
    println!("checked 1 cases");
}
