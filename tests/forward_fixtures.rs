//! `g4q forward` end to end on every fixture (`G4Q_FIXTURES`, else ../shared/fixtures): the
//! written logits match transformers' float32 logits (relative L2 <= 1e-5, same argmax at every
//! position), `--stream` writes byte-identical files, `--threads 1` and `--threads 2` agree,
//! `--text` tokenizes with BOS like the reference, and bad input exits with code 2.

use std::path::Path;

use testkit::reference::{argmax_rows, rel_l2, Reference, LAYOUTS};
use testkit::{fixtures_dir, g4q};

/// Runs `g4q forward` and returns the output bytes; panics with stderr on failure.
fn forward(model: &Path, input: &[&str], extra: &[&str], out: &Path) -> Vec<u8> {
    let res = g4q!()
        .arg("forward")
        .arg(model)
        .args(input)
        .args(extra)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "g4q forward {} failed: {}",
        model.display(),
        String::from_utf8_lossy(&res.stderr)
    );
    std::fs::read(out).unwrap()
}

fn check_logits(case: &str, got: &[u8], want: &[f32], t: usize) {
    let (shape, logits) = Reference::from_bytes(got.to_vec()).f32s("logits");
    assert_eq!(shape[0], t, "{case}");
    assert_eq!(shape[0] * shape[1], want.len(), "{case}");
    let err = rel_l2(&logits, want);
    assert!(err <= 1e-5, "{case}: relative L2 {err:e}");
    let (ours, theirs) = (argmax_rows(&logits, shape[1]), argmax_rows(want, shape[1]));
    for (pos, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "{case}: argmax at position {pos}");
    }
}

#[test]
fn forward_cli_reproduces_reference_logits() {
    let folders = testkit::reference_fixtures();
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for folder in &folders {
        let fixture = folder.file_name().unwrap().to_string_lossy().to_string();
        let reference = Reference::open(folder);
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(folder.join("reference.json")).unwrap()).unwrap();
        for layout in LAYOUTS {
            let model = folder.join(layout);
            if !model.is_dir() {
                continue;
            }
            for seq in reference.sequences() {
                let case = format!("{fixture}/{layout}/{seq}");
                let ids = reference.ids(&format!("{seq}.input_ids"));
                let list = ids
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",");
                let (_, want) = reference.f32s(&format!("{seq}.logits"));
                let a = forward(
                    &model,
                    &["--tokens", &list],
                    &["--threads", "2", "--hidden-states"],
                    &tmp.path().join("a.safetensors"),
                );
                check_logits(&case, &a, &want, ids.len());
                let (hshape, _) = Reference::from_bytes(a.clone()).f32s(&format!(
                    "hidden.{}",
                    meta["tiny_text_config"]["num_hidden_layers"]
                        .as_u64()
                        .unwrap()
                ));
                assert_eq!(hshape[0], ids.len(), "{case}: hidden state rows");
                let b = forward(
                    &model,
                    &["--tokens", &list],
                    &["--threads", "1", "--hidden-states", "--stream"],
                    &tmp.path().join("b.safetensors"),
                );
                assert!(
                    a == b,
                    "{case}: --stream --threads 1 output differs from in-memory --threads 2"
                );

                // The chat-style sequence also runs from its text (tokenizer + BOS).
                if let Some(text) = meta["reference"]["sequences"][&seq]["text"].as_str() {
                    let c = forward(
                        &model,
                        &["--text", text],
                        &[],
                        &tmp.path().join("c.safetensors"),
                    );
                    check_logits(&format!("{case} --text"), &c, &want, ids.len());
                }
                checked += 1;
            }
        }
    }
    println!("checked {checked} cases (fixture, layout, sequence)");
    assert!(checked > 0);
}

#[test]
fn forward_cli_rejects_bad_input_with_exit_code_2() {
    let dir = fixtures_dir();
    let model = dir.join("e2b-s0/released-bf16");
    assert!(model.is_dir(), "{} missing", model.display());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.safetensors");
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "token id past the vocabulary",
            vec!["--tokens".into(), "2,100000".into()],
        ),
        ("not a number", vec!["--tokens".into(), "2,x".into()]),
        (
            "zero threads",
            vec![
                "--tokens".into(),
                "2".into(),
                "--threads".into(),
                "0".into(),
            ],
        ),
    ];
    for (what, args) in &cases {
        let res = g4q!()
            .arg("forward")
            .arg(&model)
            .args(args)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(
            res.status.code(),
            Some(2),
            "{what}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        assert!(!out.exists(), "{what}: output written");
    }
    let res = g4q!()
        .args(["forward", "/nonexistent/model", "--tokens", "2", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(2), "missing model folder");
    println!("checked {} cases", cases.len() + 1);
}
