//! `g4q convert --format awq` and `g4q convert --awq` end to end on the trained E2B fixture:
//! the int4 release folder opens as a forward-pass weight source with the compressed-tensors
//! config that transformers reads, the AWQ-scaled GGUF has the plain file's layout but other
//! bytes and leaves no scratch folder behind, and missing calibration data is a usage error
//! (exit 2) that writes nothing.

use std::path::PathBuf;

use testkit::{g4q, path_str as s};
use verify::awq_weights::AwqWeights;
use verify::Weights;

fn fixture() -> PathBuf {
    let d = testkit::fixtures_dir().join("trained-e2b");
    assert!(d.is_dir(), "missing oracle folder {}", d.display());
    d
}

#[test]
fn format_awq_writes_a_compressed_tensors_release() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("awq");
    let model = f.join("released-bf16");
    let data = f.join("calib.txt");
    let r = g4q!(&[
        "convert",
        s(&model),
        "--format",
        "awq",
        "--data",
        s(&data),
        "--group-size",
        "64",
        "--awq-tokens",
        "128",
        "--out",
        s(&out),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    let q = &config["quantization_config"];
    assert_eq!(q["quant_method"], "compressed-tensors");
    assert_eq!(q["format"], "pack-quantized");
    let w = &q["config_groups"]["group_0"]["weights"];
    assert_eq!(
        (w["num_bits"].as_u64(), w["group_size"].as_u64()),
        (Some(4), Some(64))
    );
    assert_eq!(w["symmetric"], false);
    let targets = q["config_groups"]["group_0"]["targets"].as_array().unwrap();
    let awq = AwqWeights::open(&out).unwrap();
    let cfg = awq.config();
    // Non-shared layers: q, k, v, o, gate, up, down; KV-shared layers have no k/v.
    let shared = (0..cfg.num_hidden_layers)
        .filter(|&l| cfg.is_kv_shared(l))
        .count();
    assert_eq!(targets.len(), 7 * cfg.num_hidden_layers - 2 * shared);
    for t in targets {
        let module = t.as_str().unwrap();
        let canonical = module.strip_prefix("model.language_model.").unwrap();
        assert!(awq.is_quantized(&format!("{canonical}.weight")), "{module}");
    }
    assert!(out.join("tokenizer.json").is_file());
    println!("checked {} int4 targets", targets.len());
}

#[test]
fn awq_flag_feeds_scaled_weights_to_the_gguf_path() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let model = f.join("released-bf16");
    let data = f.join("calib.txt");
    let plain = tmp.path().join("plain.gguf");
    let scaled = tmp.path().join("awq.gguf");
    let r = g4q!(&["convert", s(&model), "--type", "Q4_K_M", "--out", s(&plain)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let r = g4q!(&[
        "convert",
        s(&model),
        "--type",
        "Q4_K_M",
        "--awq",
        "--data",
        s(&data),
        "--awq-tokens",
        "128",
        "--out",
        s(&scaled),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let a = std::fs::read(&plain).unwrap();
    let b = std::fs::read(&scaled).unwrap();
    assert_eq!(a.len(), b.len(), "same tensors and types, same size");
    assert!(a != b, "AWQ scaling left every weight unchanged");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "scratch files left behind: {left:?}");
    println!("checked 1 case");
}

#[test]
fn missing_calibration_data_is_a_usage_error() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let model = f.join("released-bf16");
    let out = tmp.path().join("x");
    let cases: [&[&str]; 2] = [
        &["convert", s(&model), "--format", "awq", "--out", s(&out)],
        &[
            "convert",
            s(&model),
            "--type",
            "Q4_K_M",
            "--awq",
            "--out",
            s(&out),
        ],
    ];
    for args in cases {
        let r = g4q!(args);
        assert_eq!(r.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&r.stderr).contains("--data"));
        assert!(!out.exists());
    }
    println!("checked {} cases", cases.len());
}
