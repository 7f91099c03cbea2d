//! The int4 AWQ folders load in transformers + compressed-tensors (installed from PyPI into
//! `target/py-awq`: torch, transformers 5.24+, compressed-tensors 0.20+) with nothing missing,
//! unexpected or mismatched (the vision/audio towers included), and transformers' float32
//! logits match `g4q forward` on the same folder to 1e-4 of the largest logit: on
//! `trained-26b-a4b` at the default group 128, which its 320-wide down projections turn into 64
//! for the whole model, and on `trained-e2b` (vision and audio towers).
//!
//! The folder is loaded with `CompressedTensorsConfig(dequantize=True)`: compressed-tensors
//! unpacks each int4 weight at load in the scale's dtype (bf16), what g4q's reader reproduces;
//! transformers' default "keep compressed" route registers the asymmetric zero point unpacked
//! and refuses the packed tensor compressed-tensors itself writes.

use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::{g4q_ok, path_str as s};

const SCRIPT: &str = r#"
import json, sys
import numpy as np
import torch, transformers
folder, ids, out = sys.argv[1], sys.argv[2], sys.argv[3]
ids = torch.tensor([[int(i) for i in ids.split(",")]])
model, info = transformers.AutoModelForImageTextToText.from_pretrained(
    folder,
    dtype=torch.float32,
    output_loading_info=True,
    quantization_config=transformers.CompressedTensorsConfig(dequantize=True),
)
model.eval()
with torch.no_grad():
    model(input_ids=ids).logits[0].float().numpy().astype(np.float32).tofile(out)
print(json.dumps({k: sorted(map(str, info[k])) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}))
"#;

fn python() -> Option<PathBuf> {
    testkit::venv_python(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/py-awq"),
        &[
            "torch",
            "transformers>=5.24",
            "compressed-tensors>=0.20",
            "safetensors",
            "numpy",
        ],
        "torch, transformers, compressed_tensors, numpy",
    )
}

/// BOS (id 2) then 23 ids spread over the vocabulary, as `g4q forward --tokens` takes them.
fn ids(vocab: usize) -> String {
    let mut v = vec![2usize];
    v.extend((1..24).map(|i| (i * 977 + 17) % vocab));
    v.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn read_f32(path: &Path) -> Vec<f32> {
    read_bytes(&std::fs::read(path).unwrap())
}

fn g4q_logits(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    read_bytes(st.tensor("logits").unwrap().data())
}

fn read_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn awq_folders_load_in_transformers_with_g4qs_logits() {
    let fixtures: Vec<(PathBuf, &str)> = [("trained-26b-a4b", "128"), ("trained-e2b", "64")]
        .into_iter()
        .filter_map(|(f, g)| Some((testkit::fixture(f)?, g)))
        .collect();
    if fixtures.is_empty() {
        return;
    }
    let Some(py) = python() else {
        testkit::skip(
            "torch, transformers and compressed-tensors could not be installed from PyPI into target/py-awq (pip failed)",
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for (dir, group) in &fixtures {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let out = tmp.path().join(&name);
        g4q_ok!(&[
            "convert",
            s(&dir.join("released-bf16")),
            "--format",
            "awq",
            "--group-size",
            group,
            "--data",
            s(&dir.join("calib.txt")),
            "--awq-tokens",
            "128",
            "--out",
            s(&out)
        ]);
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        let vocab = cfg["text_config"]["vocab_size"].as_u64().unwrap() as usize;
        let ids = ids(vocab);
        let ours = tmp.path().join(format!("{name}.g4q.safetensors"));
        g4q_ok!(&["forward", s(&out), "--tokens", &ids, "--out", s(&ours)]);
        let theirs = tmp.path().join(format!("{name}.tf.f32"));
        let r = Command::new(&py)
            .arg("-c")
            .arg(SCRIPT)
            .arg(&out)
            .arg(&ids)
            .arg(&theirs)
            .output()
            .unwrap();
        assert!(
            r.status.success(),
            "transformers could not load {name}'s AWQ folder: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let stdout = String::from_utf8_lossy(&r.stdout);
        let report: serde_json::Value =
            serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        for k in ["missing_keys", "unexpected_keys", "mismatched_keys"] {
            assert_eq!(
                report[k].as_array().map(Vec::len),
                Some(0),
                "{name}: {k}: {}",
                report[k]
            );
        }
        let (a, b) = (g4q_logits(&ours), read_f32(&theirs));
        assert_eq!(a.len(), b.len(), "{name}: logit counts");
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs() as f64)
            .fold(0.0, f64::max);
        let scale = a.iter().map(|x| x.abs() as f64).fold(0.0, f64::max);
        println!(
            "{name} (group {group} asked): transformers vs g4q logits max |diff| {diff:.3e}, relative {:.3e}",
            diff / scale
        );
        assert!(diff <= 1e-4 * scale, "{name}: relative {}", diff / scale);
    }
    println!("checked {} folders", fixtures.len());
}
