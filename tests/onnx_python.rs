//! Every fixture's ONNX export runs in onnxruntime (from PyPI, in a throwaway virtualenv under
//! `target/`) and its logits match transformers' float32 reference (`reference.safetensors`) and
//! our own forward pass to 1e-4 relative (largest absolute difference over the largest absolute
//! logit), for prefill, and for prefill of all but the last 8 tokens followed by 8 single-token
//! decode steps through the KV cache (`present.*` fed back as `past_key_values.*`), which must
//! equal prefill of the whole sequence. When onnxruntime cannot be installed the test says so
//! with a `SKIPPED:` line and passes without checking (a failure under `G4Q_REQUIRE_ORACLES=1`,
//! which `.ci/run` sets when the full oracle set is there).

use std::path::{Path, PathBuf};
use std::process::Command;

use convert::Checkpoint;
use testkit::fixture_dirs;
use verify::{ForwardOptions, Model, NoObserver};

/// Decode steps checked through the KV cache.
const DECODE: usize = 8;
/// Relative bound on logits (largest absolute difference / largest absolute reference logit).
const BOUND: f64 = 1e-4;

/// Runs a model folder on sequences given as JSON (`[[ids...], ...]`); for sequence `q` writes
/// `q.prefill.f32` (prefill of the whole sequence) and, for sequences longer than `steps`,
/// `q.decode.f32` (prefill of all but the last `steps` tokens, then one token at a time through
/// the cache), each `[T, vocab]`.
const SCRIPT: &str = r#"
import sys, json, numpy as np, onnxruntime as ort
model, seqs, out, steps = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3], int(sys.argv[4])
s = ort.InferenceSession(model + "/model.onnx", providers=["CPUExecutionProvider"])
pasts = [i for i in s.get_inputs() if i.name.startswith("past_key_values.")]
names = [o.name for o in s.get_outputs()]
def run(ids, start, cache):
    feed = {"input_ids": np.array([ids], np.int64),
            "position_ids": np.arange(start, start + len(ids), dtype=np.int64)[None],
            "attention_mask": np.ones((1, start + len(ids)), np.int64)}
    for i in pasts:
        feed[i.name] = cache[i.name] if cache else np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32)
    res = dict(zip(names, s.run(None, feed)))
    nxt = {i.name: res[i.name.replace("past_key_values.", "present.")] for i in pasts}
    return res["logits"][0], nxt
for q, ids in enumerate(seqs):
    full, _ = run(ids, 0, None)
    full.astype(np.float32).tofile(f"{out}/{q}.prefill.f32")
    if len(ids) <= steps:
        continue
    cut = len(ids) - steps
    parts, cache = [], None
    logits, cache = run(ids[:cut], 0, None)
    parts.append(logits)
    for t in range(cut, len(ids)):
        logits, cache = run(ids[t:t + 1], t, cache)
        parts.append(logits)
    np.concatenate(parts).astype(np.float32).tofile(f"{out}/{q}.decode.f32")
print(len(seqs))
"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A virtualenv with onnxruntime + numpy, built once under target/; `None` when pip cannot
/// install them.
fn python_with_onnxruntime() -> Option<PathBuf> {
    testkit::venv_python(
        &root().join("target/py-onnx"),
        &["onnxruntime", "numpy"],
        "onnxruntime, numpy",
    )
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Largest absolute difference over the largest absolute value of `want`.
fn rel_max(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "logit counts differ");
    let diff = got
        .iter()
        .zip(want)
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .fold(0.0, f64::max);
    let scale = want.iter().map(|b| (*b as f64).abs()).fold(0.0, f64::max);
    diff / scale
}

/// The reference's sequences (`seqN.input_ids`) and logits (`seqN.logits`), in N order.
fn reference(dir: &Path) -> Vec<(Vec<u32>, Vec<f32>)> {
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out = Vec::new();
    for q in 0.. {
        let Ok(ids) = st.tensor(&format!("seq{q}.input_ids")) else {
            break;
        };
        let ids = ids
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect();
        let logits = st
            .tensor(&format!("seq{q}.logits"))
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        out.push((ids, logits));
    }
    out
}

/// Converts `model` with `--type ty` into `out` and runs `seqs` through onnxruntime; returns
/// per sequence the prefill logits and, for sequences longer than [`DECODE`], the decoded ones.
fn run_onnx(
    py: &Path,
    model: &Path,
    ty: &[&str],
    out: &Path,
    seqs: &[Vec<u32>],
) -> Vec<(Vec<f32>, Option<Vec<f32>>)> {
    let (model_s, out_s) = (testkit::path_str(model), testkit::path_str(out));
    let mut args = vec!["convert", model_s, "--format", "onnx", "--type"];
    args.extend(ty);
    args.extend(["--out", out_s]);
    testkit::g4q_ok!(&args);
    let work = out.with_extension("run");
    std::fs::create_dir_all(&work).unwrap();
    let json = work.join("seqs.json");
    std::fs::write(&json, serde_json::to_string(seqs).unwrap()).unwrap();
    let res = Command::new(py)
        .arg("-c")
        .arg(SCRIPT)
        .arg(out)
        .arg(&json)
        .arg(&work)
        .arg(DECODE.to_string())
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "onnxruntime failed on {}: {}",
        out.display(),
        String::from_utf8_lossy(&res.stderr)
    );
    (0..seqs.len())
        .map(|q| {
            (
                read_f32(&work.join(format!("{q}.prefill.f32"))),
                (seqs[q].len() > DECODE).then(|| read_f32(&work.join(format!("{q}.decode.f32")))),
            )
        })
        .collect()
}

#[test]
fn onnx_f32_exports_match_the_reference_in_onnxruntime() {
    let Some(py) = python_with_onnxruntime() else {
        testkit::skip("onnxruntime and numpy could not be installed from PyPI into target/py-onnx (pip failed)");
        return;
    };
    let dirs = fixture_dirs("reference.safetensors");
    assert!(!dirs.is_empty(), "no fixtures with reference.safetensors");
    let tmp = tempfile::tempdir().unwrap();
    let (mut variants, mut cases, mut decoded) = (0, 0, 0);
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let model = dir.join("released-bf16");
        let refs = reference(dir);
        assert!(!refs.is_empty(), "{name}: no sequences");
        let seqs: Vec<Vec<u32>> = refs.iter().map(|(ids, _)| ids.clone()).collect();
        let got = run_onnx(&py, &model, &["f32"], &tmp.path().join(&name), &seqs);
        let ckpt = Checkpoint::open(&model).unwrap();
        let ours = Model::load(&ckpt).unwrap();
        let mut worst = 0f64;
        for (q, ((ids, want), (prefill, decode))) in refs.iter().zip(&got).enumerate() {
            let fwd = ours
                .forward(
                    ids,
                    ForwardOptions::default(),
                    &mut NoObserver,
                    &mut |_, _| {},
                )
                .unwrap();
            let fwd = fwd.logits.as_slice().unwrap();
            let mut checks = vec![
                ("prefill vs transformers", prefill, want.as_slice()),
                ("prefill vs our forward pass", prefill, fwd),
            ];
            if let Some(decode) = decode {
                checks.push(("8 decode steps vs transformers", decode, want.as_slice()));
                decoded += 1;
            }
            for (what, got, want) in checks {
                let err = rel_max(got, want);
                assert!(err <= BOUND, "{name} seq{q} f32 {what}: relative {err:e}");
                worst = worst.max(err);
                cases += 1;
            }
        }
        println!(
            "onnx: {name} f32: {} sequences, worst relative {worst:.2e}",
            refs.len()
        );
        variants += 1;
    }
    assert!(
        decoded > 0,
        "no sequence was long enough to decode {DECODE} steps"
    );
    println!(
        "onnx: {variants} fixtures, {cases} logit comparisons within {BOUND:e} ({decoded} sequences decoded through the KV cache)"
    );
}

/// The int4 (MatMulNBits) export at block sizes 32 and 128 (and with `--awq` on `trained-e2b`)
/// and the int8 and f16 exports,
/// with f32 activations
/// (`--accuracy-level 0`), matches our forward pass reading the same folder (the weights
/// dequantized as onnxruntime defines it) to the same bound, prefill and decode.
#[test]
fn onnx_f16_int8_int4_exports_match_our_forward_pass_on_their_weights() {
    let Some(py) = python_with_onnxruntime() else {
        testkit::skip("onnxruntime and numpy could not be installed from PyPI into target/py-onnx (pip failed)");
        return;
    };
    let dirs = fixture_dirs("reference.safetensors");
    assert!(!dirs.is_empty(), "no fixtures with reference.safetensors");
    let tmp = tempfile::tempdir().unwrap();
    let (mut exports, mut cases, mut decoded) = (0, 0, 0);
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let model = dir.join("released-bf16");
        let seqs: Vec<Vec<u32>> = reference(dir).into_iter().map(|(ids, _)| ids).collect();
        let calib = dir.join("calib.txt");
        let calib = calib.to_str().unwrap();
        // (type, block size, --awq, embedding bits)
        let mut runs = vec![
            ("int4", "32", false, "8"),
            ("int4", "128", false, "8"),
            ("int4", "32", false, "4"),
            ("int8", "32", false, "8"),
            ("f16", "32", false, "8"),
        ];
        // The AWQ path on the trained fixture (the search needs text the tokenizer knows).
        if name == "trained-e2b" {
            runs.push(("int4", "32", true, "8"));
        }
        for (kind, block, awq, emb) in runs {
            let out = tmp
                .path()
                .join(format!("{name}-{kind}-{block}-{awq}-{emb}"));
            let mut ty = vec![kind, "--block-size", block, "--accuracy-level", "0"];
            ty.extend(["--embedding-bits", emb]);
            if awq {
                ty.extend(["--awq", "--data", calib, "--awq-tokens", "128"]);
            }
            let got = run_onnx(&py, &model, &ty, &out, &seqs);
            let release = verify::onnx_weights::OnnxWeights::open(&out).unwrap();
            let ours = Model::load(&release).unwrap();
            let mut worst = 0f64;
            for (q, (ids, (prefill, decode))) in seqs.iter().zip(&got).enumerate() {
                let fwd = ours
                    .forward(
                        ids,
                        ForwardOptions::default(),
                        &mut NoObserver,
                        &mut |_, _| {},
                    )
                    .unwrap();
                let fwd = fwd.logits.as_slice().unwrap();
                let mut checks = vec![("prefill", prefill)];
                if let Some(decode) = decode {
                    checks.push(("8 decode steps", decode));
                    decoded += 1;
                }
                for (what, got) in checks {
                    let err = rel_max(got, fwd);
                    assert!(
                        err <= BOUND,
                        "{name} seq{q} {kind} block {block} (awq {awq}, embedding bits {emb}) {what} vs our forward pass: relative {err:e}"
                    );
                    worst = worst.max(err);
                    cases += 1;
                }
            }
            println!(
                "onnx: {name} {kind} block {block}{} (embeddings {emb} bits): {} sequences, worst relative {worst:.2e}",
                if awq { " --awq" } else { "" },
                seqs.len()
            );
            exports += 1;
        }
    }
    assert!(
        decoded > 0,
        "no sequence was long enough to decode {DECODE} steps"
    );
    println!(
        "onnx: {exports} f16/int8/int4 exports, {cases} logit comparisons within {BOUND:e} ({decoded} sequences decoded through the KV cache)"
    );
}
