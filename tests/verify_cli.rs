//! `g4q verify` end to end: its figures against a direct computation from the logits that
//! `g4q forward` writes, the gates' exit codes (0 pass, 1 fail, 2 malformed), the `--baseline`
//! regression check, and the JSON report against `schemas/verify-report.schema.json`.
//!
//! The candidate is a copy of the `e2b-s0` fixture with the last mantissa bit of every 7th bf16
//! value of its 2-D text weights bumped: the same model, measurably different.

use std::path::{Path, PathBuf};
use std::process::Output;

use safetensors::SafeTensors;
use serde_json::Value;
use testkit::safetensors_file::{read_entries, write_entries};
use testkit::{g4q, path_str as s, XorShift32};

fn reference() -> PathBuf {
    testkit::fixtures_dir().join("e2b-s0/released-bf16")
}

/// Copies the reference folder to `dir` with every 7th bf16 value of each 2-D text weight
/// nudged by one unit in the last place.
fn perturbed_copy(dir: &Path) -> PathBuf {
    let out = dir.join("perturbed");
    testkit::copy_checkpoint_to(&reference(), &out);
    let weights = out.join("model.safetensors");
    let mut entries = read_entries(&weights);
    for e in &mut entries {
        if e.dtype == "BF16" && e.shape.len() == 2 && e.name.contains("layers.") {
            for (i, c) in e.bytes.chunks_exact_mut(2).enumerate() {
                let bits = u16::from_le_bytes([c[0], c[1]]);
                let next = bits.wrapping_add(1);
                if i % 7 == 0 && (next & 0x7f80) != 0x7f80 {
                    c.copy_from_slice(&next.to_le_bytes());
                }
            }
        }
    }
    write_entries(&weights, &entries);
    out
}

/// Tokens per chunk of every run.
const CTX: usize = 32;
const CTX_ARG: &str = "32";

/// Four chunks of [`CTX`] pre-tokenized ids, each starting with BOS.
fn tokens() -> Vec<Vec<u32>> {
    let mut rng = XorShift32::new(12345);
    (0..4)
        .map(|_| {
            let mut c = vec![2u32];
            c.extend((1..CTX).map(|_| 17 + rng.next_u32() % 480));
            c
        })
        .collect()
}

fn write_tokens(dir: &Path) -> PathBuf {
    let p = dir.join("tokens.txt");
    let text: Vec<String> = tokens().concat().iter().map(u32::to_string).collect();
    std::fs::write(&p, text.join(" ")).unwrap();
    p
}

/// `[T, V]` logits that `g4q forward` writes for `ids`.
fn forward_logits(model: &Path, ids: &[u32], out: &Path) -> Vec<Vec<f32>> {
    let list: Vec<String> = ids.iter().map(u32::to_string).collect();
    let res = g4q!(&[
        "forward",
        s(model),
        "--tokens",
        &list.join(","),
        "--out",
        s(out),
    ]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let bytes = std::fs::read(out).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("logits").unwrap();
    let v = t.shape()[1];
    let vals: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    vals.chunks(v).map(<[f32]>::to_vec).collect()
}

fn log_softmax(x: &[f32]) -> Vec<f64> {
    let m = x.iter().map(|&v| v as f64).fold(f64::MIN, f64::max);
    let lse = m + x.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
    x.iter().map(|&v| v as f64 - lse).collect()
}

fn argmax(x: &[f32]) -> usize {
    (0..x.len()).fold(0, |b, i| if x[i] > x[b] { i } else { b })
}

/// The reference's and the candidate's logits of one chunk, `[T][V]` each.
type ChunkLogits = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// (mean KLD, ppl reference, ppl candidate, top-1 agreement, scored tokens) computed directly
/// from the logits, scoring positions `first ..` of each chunk.
fn direct(first: usize, runs: &[ChunkLogits]) -> [f64; 5] {
    let (mut kld, mut nr, mut nc, mut top, mut n) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (chunk, (r, c)) in tokens().iter().zip(runs) {
        for j in first..chunk.len() - 1 {
            let (lr, lc) = (log_softmax(&r[j]), log_softmax(&c[j]));
            kld += lr
                .iter()
                .zip(&lc)
                .map(|(a, b)| a.exp() * (a - b))
                .sum::<f64>();
            let t = chunk[j + 1] as usize;
            nr -= lr[t];
            nc -= lc[t];
            top += (argmax(&r[j]) == argmax(&c[j])) as u8 as f64;
            n += 1.0;
        }
    }
    [kld / n, (nr / n).exp(), (nc / n).exp(), top / n, n]
}

fn report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn verify(cand: &Path, toks: &Path, extra: &[&str]) -> Output {
    let r = reference();
    let mut args = vec![
        "verify",
        "--reference",
        s(&r),
        "--candidate",
        s(cand),
        "--tokens-file",
        s(toks),
        "--ctx",
        CTX_ARG,
    ];
    args.extend_from_slice(extra);
    g4q!(&args)
}

#[test]
fn figures_match_a_direct_computation_from_forward_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let cand = perturbed_copy(tmp.path());
    let toks = write_tokens(tmp.path());
    let runs: Vec<_> = tokens()
        .iter()
        .enumerate()
        .map(|(i, ids)| {
            (
                forward_logits(&reference(), ids, &tmp.path().join(format!("r{i}.st"))),
                forward_logits(&cand, ids, &tmp.path().join(format!("c{i}.st"))),
            )
        })
        .collect();
    let mut cases = 0;
    for (flag, first) in [(Some("--all-positions"), 0), (None, CTX / 2)] {
        let json = tmp.path().join("r.json");
        let mut extra = vec!["--json", s(&json)];
        extra.extend(flag);
        let res = verify(&cand, &toks, &extra);
        assert!(
            res.status.success(),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        let r = report(&json);
        let want = direct(first, &runs);
        assert!(want[0] > 0.0, "the perturbed copy should differ");
        assert_eq!(r["tokens"].as_f64().unwrap(), want[4]);
        for (key, w) in [
            ("kld_mean", want[0]),
            ("ppl_reference", want[1]),
            ("ppl_candidate", want[2]),
            ("top1_agreement", want[3]),
        ] {
            let got = r[key].as_f64().unwrap();
            assert!(
                (got - w).abs() <= 1e-6 * w.abs(),
                "{key} ({flag:?}): {got} vs direct {w}"
            );
            cases += 1;
        }
    }
    println!("checked {cases} cases");
}

#[test]
fn gates_and_bad_inputs_set_the_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let cand = perturbed_copy(tmp.path());
    let toks = write_tokens(tmp.path());
    let toml = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let good = toml("good.toml", "[verify.gates]\nmax_kld = 1e-12\n");
    let typo = toml("typo.toml", "[verify.gates]\nmax_kdl = 0.1\n");
    let cases: Vec<(Vec<&str>, i32)> = vec![
        (vec!["--max-kld", "1", "--min-top1", "0.5"], 0),
        (vec!["--max-kld", "1e-12"], 1),
        (vec!["--max-ppl-ratio", "0.5"], 1),
        (vec!["--config", s(&good)], 1),
        // Flags override the file's thresholds.
        (vec!["--config", s(&good), "--max-kld", "1"], 0),
        (vec!["--max-kld", "abc"], 2),
        (vec!["--min-top1", "1.5"], 2),
        (vec!["--max-kld", "-1"], 2),
        (vec!["--config", s(&typo)], 2),
        (vec!["--config", "/nonexistent/g4q.toml"], 2),
        (vec!["--chunks", "0"], 2),
    ];
    for (extra, code) in &cases {
        let res = verify(&cand, &toks, extra);
        assert_eq!(
            res.status.code(),
            Some(*code),
            "{extra:?}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
    }
    // Bad candidates: missing, truncated, another model's GGUF; bad token files.
    let other = tmp.path().join("other.gguf");
    let res = g4q!(&[
        "convert",
        s(&testkit::fixture_or_standin(
            "e2b-kq-s0/released-bf16",
            "trained-e2b/released-bf16"
        )),
        "--type",
        "F32",
        "--out",
        s(&other),
    ]);
    assert!(res.status.success());
    let bytes = std::fs::read(&other).unwrap();
    let truncated = tmp.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let bad_ids = tmp.path().join("bad.txt");
    std::fs::write(&bad_ids, "2 17 x 18").unwrap();
    let huge_id = tmp.path().join("huge.txt");
    std::fs::write(&huge_id, vec!["100000"; 40].join(" ")).unwrap();
    let bad: Vec<(PathBuf, PathBuf, &str)> = vec![
        (
            PathBuf::from("/nonexistent.gguf"),
            toks.clone(),
            "no such file",
        ),
        (truncated, toks.clone(), "truncated"),
        (other, toks.clone(), "not the same model"),
        (cand.clone(), bad_ids, "'x'"),
        (cand.clone(), huge_id, "outside the vocabulary"),
    ];
    for (c, t, msg) in &bad {
        let res = verify(c, t, &[]);
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(2), "{msg}: {err}");
        assert!(err.contains(msg), "expected '{msg}' in: {err}");
    }
    println!("checked {} cases", cases.len() + bad.len());
}

fn validate(schema: &jsonschema::Validator, report: &Value) -> Vec<String> {
    schema.iter_errors(report).map(|e| e.to_string()).collect()
}

#[test]
fn reports_validate_and_baselines_flag_regressions() {
    let tmp = tempfile::tempdir().unwrap();
    let cand = perturbed_copy(tmp.path());
    let toks = write_tokens(tmp.path());
    let schema_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/verify-report.schema.json");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();

    // The identical candidate is the baseline: KLD 0, so the perturbed one regresses.
    let same = tmp.path().join("same.json");
    let res = verify(
        &reference(),
        &toks,
        &["--json", s(&same), "--min-top1", "1", "--all-positions"],
    );
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let base = report(&same);
    assert_eq!(base["kld_mean"].as_f64(), Some(0.0));
    assert_eq!(validate(&validator, &base), Vec::<String>::new());

    let first = tmp.path().join("first.json");
    let res = verify(
        &cand,
        &toks,
        &[
            "--json",
            s(&first),
            "--baseline",
            s(&same),
            "--all-positions",
        ],
    );
    assert_eq!(
        res.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let r = report(&first);
    assert_eq!(validate(&validator, &r), Vec::<String>::new());
    let b = &r["baseline"];
    assert_eq!(b["same_data"].as_bool(), Some(true), "{b}");
    let kld = b["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "kld_mean")
        .unwrap();
    assert_eq!(kld["regression"].as_bool(), Some(true), "{b}");
    assert!(r["command"].as_str().unwrap().contains("--baseline"));
    assert_eq!(r["candidate"]["sha256"].as_str().unwrap().len(), 64);
    assert_ne!(r["candidate"]["sha256"], r["reference"]["sha256"]);

    // Against itself nothing regresses.
    let res = verify(&cand, &toks, &["--baseline", s(&first), "--all-positions"]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );

    // The schema does reject a report missing a required figure or with a bad verdict.
    let mut broken = r.clone();
    broken.as_object_mut().unwrap().remove("kld_mean");
    assert!(!validate(&validator, &broken).is_empty());
    let mut broken = r.clone();
    broken["top1_agreement"] = Value::from(1.5);
    assert!(!validate(&validator, &broken).is_empty());

    // A file that is not a report is an input error.
    let res = verify(&cand, &toks, &["--baseline", s(&toks)]);
    assert_eq!(res.status.code(), Some(2));
    println!("checked 4 cases");
}
