//! `g4q verify --save-reference` / `--reference-logits`: a stored exact reference gives the
//! in-process report bit for bit, a top-k one a KLD within its reported bound (and exact at
//! k = vocab), and a file of another run, a truncated one or one with a bad magic is exit 2
//! with one line naming the file.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use testkit::{g4q, path_str as s, XorShift32};

fn reference() -> PathBuf {
    testkit::fixtures_dir().join("e2b-s0/released-bf16")
}

fn candidate() -> PathBuf {
    testkit::fixtures_dir().join("e2b-s0/llamacpp/Q4_K_M.gguf")
}

/// Three chunks of 32 ids, each starting with BOS.
fn write_tokens(dir: &Path) -> PathBuf {
    let mut rng = XorShift32::new(777);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(2u32);
        ids.extend((1..32).map(|_| 17 + rng.next_u32() % 480));
    }
    let p = dir.join("tokens.txt");
    let text: Vec<String> = ids.iter().map(u32::to_string).collect();
    std::fs::write(&p, text.join(" ")).unwrap();
    p
}

fn verify(toks: &Path, extra: &[&str]) -> Output {
    let r = reference();
    let mut args = vec![
        "verify",
        "--reference",
        s(&r),
        "--tokens-file",
        s(toks),
        "--ctx",
        "32",
        "--no-layer-errors",
    ];
    args.extend_from_slice(extra);
    g4q!(&args)
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The report without the fields that depend on the run (time, command line).
fn report(path: &Path) -> Value {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let o = v.as_object_mut().unwrap();
    for k in ["command", "seconds", "tokens_per_second"] {
        o.remove(k);
    }
    v
}

fn exit_2_one_line(out: &Output, file: &Path, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
    assert!(err.contains(s(file)), "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
}

#[test]
fn stored_reference_reproduces_or_bounds_the_in_process_report() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let toks = write_tokens(t);
    let cand = candidate();
    let (inproc, exact, topk) = (t.join("in.json"), t.join("exact.ref"), t.join("top.ref"));
    // In-process run, saving the exact rows as a by-product.
    ok(verify(
        &toks,
        &[
            "--candidate",
            s(&cand),
            "--json",
            s(&inproc),
            "--save-reference",
            s(&exact),
            "--exact",
        ],
    ));
    let want = report(&inproc);
    assert!(want["kld_mean"].as_f64().unwrap() > 0.0);
    assert!(want.get("kld_bound").is_none());
    let mut cases = 0;
    let out = t.join("from-exact.json");
    ok(verify(
        &toks,
        &[
            "--candidate",
            s(&cand),
            "--json",
            s(&out),
            "--reference-logits",
            s(&exact),
        ],
    ));
    assert_eq!(report(&out), want, "exact stored reference");
    cases += 1;
    // Reference only (no candidate), top-k: PPL, top-1 and Δp exact, KLD within its bound.
    let exact_kld = want["kld_mean"].as_f64().unwrap();
    for k in ["4", "32", "512"] {
        ok(verify(
            &toks,
            &["--save-reference", s(&topk), "--reference-top-k", k],
        ));
        let res = ok(verify(
            &toks,
            &[
                "--candidate",
                s(&cand),
                "--json",
                s(&out),
                "--reference-logits",
                s(&topk),
            ],
        ));
        assert!(String::from_utf8_lossy(&res.stdout).contains("top-k"));
        let got = report(&out);
        let kld = got["kld_mean"].as_f64().unwrap();
        let bound = got["kld_bound"].as_f64().unwrap();
        assert!(
            kld <= exact_kld * (1.0 + 1e-12) && exact_kld <= (kld + bound) * (1.0 + 1e-12),
            "k {k}: exact {exact_kld} not in [{kld}, {kld} + {bound}]"
        );
        for key in [
            "ppl_reference",
            "ppl_candidate",
            "ppl_ratio",
            "top1_agreement",
        ] {
            assert_eq!(got[key], want[key], "k {k}: {key}");
        }
        if k == "512" {
            assert_eq!(bound, 0.0);
            let mut g = got.clone();
            g.as_object_mut().unwrap().remove("kld_bound");
            assert_eq!(g, want, "k = vocab");
        }
        cases += 1;
    }
    println!("checked {cases} stored-reference runs");
}

#[test]
fn another_run_or_a_damaged_file_is_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let toks = write_tokens(t);
    let cand = candidate();
    let file = t.join("r.ref");
    ok(verify(
        &toks,
        &["--save-reference", s(&file), "--reference-top-k", "8"],
    ));
    let run = |extra: &[&str], f: &Path| {
        let mut a = vec!["--candidate", s(&cand), "--reference-logits", s(f)];
        a.extend_from_slice(extra);
        verify(&toks, &a)
    };
    let mut cases = 0;
    // Fewer chunks, another span.
    for (extra, what) in [
        (&["--chunks", "2"][..], "chunks"),
        (&["--all-positions"][..], "span"),
    ] {
        exit_2_one_line(&run(extra, &file), &file, what);
        cases += 1;
    }
    // Other data: the same ids but one changed.
    let other = t.join("other.txt");
    let text = std::fs::read_to_string(&toks).unwrap();
    std::fs::write(&other, text.replacen(" ", " 3 ", 1)).unwrap();
    let r = reference();
    let mut a = vec![
        "verify",
        "--reference",
        s(&r),
        "--candidate",
        s(&cand),
        "--tokens-file",
        s(&other),
        "--ctx",
        "32",
        "--reference-logits",
        s(&file),
    ];
    exit_2_one_line(&g4q!(&a), &file, "data");
    a[6] = s(&toks);
    a[8] = "16";
    exit_2_one_line(&g4q!(&a), &file, "ctx");
    // Another reference model (the same architecture, other files).
    a[8] = "32";
    let other_model = testkit::fixtures_dir().join("e2b-s0/causal-f32");
    a[2] = s(&other_model);
    exit_2_one_line(&g4q!(&a), &file, "model");
    cases += 3;
    let bytes = std::fs::read(&file).unwrap();
    let bad = t.join("bad.ref");
    for (name, damaged) in [
        ("truncated", bytes[..bytes.len() - 5].to_vec()),
        ("header only", bytes[..100].to_vec()),
        ("flipped magic", {
            let mut b = bytes.clone();
            b[0] ^= 0xff;
            b
        }),
        ("lying positions", {
            let mut b = bytes.clone();
            b[176..184].copy_from_slice(&u64::MAX.to_le_bytes());
            b
        }),
    ] {
        std::fs::write(&bad, damaged).unwrap();
        exit_2_one_line(&run(&[], &bad), &bad, name);
        cases += 1;
    }
    println!("checked {cases} refused files");
}
