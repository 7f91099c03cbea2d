//! `g4q convert --mmproj` against llama.cpp's `convert_hf_to_gguf.py --mmproj`: on every fixture
//! with a projector manifest (`llamacpp/mmproj-manifest.json`, kept in the bundled oracle set
//! too) and for each of F32, F16, BF16 and Q8_0, the same header (version, alignment, data
//! offset), the same keys in the same order with the same types and values, the same tensors in
//! the same order with the same types, shapes, offsets and bytes (sha256), and the same whole
//! file (sha256). Also: the dry-run plan is the written file's, and bad requests exit 2 with one
//! line and no file.

use std::path::Path;

use convert::gguf::{Array, GgufFile, Value};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use testkit::{g4q, g4q_ok, path_str as s};

/// The `--type` of each projector file llama.cpp made.
const TYPES: [(&str, &str); 4] = [
    ("F32", "mmproj-f32.gguf"),
    ("F16", "mmproj-f16.gguf"),
    ("BF16", "mmproj-bf16.gguf"),
    ("Q8_0", "mmproj-q8_0.gguf"),
];

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A metadata value as the manifest writes it (gguf-py's values through JSON).
fn value_json(v: &Value) -> Json {
    match v {
        Value::U32(x) => Json::from(*x),
        Value::I32(x) => Json::from(*x),
        Value::F32(x) => Json::from(f64::from(*x)),
        Value::Bool(x) => Json::from(*x),
        Value::String(x) => Json::from(x.clone()),
        Value::Array(Array::F32(a)) => a.iter().map(|&x| Json::from(f64::from(x))).collect(),
        Value::Array(Array::I32(a)) => a.iter().map(|&x| Json::from(x)).collect(),
        other => panic!("unexpected value {other:?} in a projector file"),
    }
}

/// Compares the file at `path` with the manifest entry `want`; returns (keys, tensors) checked.
fn assert_matches(ctx: &str, path: &Path, want: &Json) -> (usize, usize) {
    let bytes = std::fs::read(path).unwrap();
    let f = GgufFile::open(path).unwrap();
    let h = f.header();
    assert_eq!(
        u64::from(h.version),
        want["version"].as_u64().unwrap(),
        "{ctx}: version"
    );
    assert_eq!(
        h.alignment,
        want["alignment"].as_u64().unwrap(),
        "{ctx}: alignment"
    );
    assert_eq!(
        h.data_offset,
        want["data_offset"].as_u64().unwrap(),
        "{ctx}: data offset"
    );
    let want_md = want["metadata"].as_object().unwrap();
    let got_keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k).collect();
    let want_keys: Vec<&str> = want_md.keys().map(String::as_str).collect();
    assert_eq!(got_keys, want_keys, "{ctx}: keys and their order");
    for (key, value) in f.metadata().iter() {
        let w = &want_md[key];
        assert_eq!(
            value.type_name(),
            w["type"].as_str().unwrap(),
            "{ctx}: type of {key}"
        );
        assert_eq!(value_json(value), w["value"], "{ctx}: value of {key}");
    }
    let want_t = want["tensors"].as_array().unwrap();
    let got_names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
    let want_names: Vec<&str> = want_t.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(got_names, want_names, "{ctx}: tensor names and order");
    for (t, w) in f.tensors().iter().zip(want_t) {
        testkit::gguf_oracle::assert_tensor_entry(ctx, &t.name, t.ty.name(), &t.dims, t.offset, w);
        let data = f.tensor_data(&t.name).unwrap();
        assert_eq!(
            data.len() as u64,
            w["n_bytes"].as_u64().unwrap(),
            "{ctx}: size of {}",
            t.name
        );
        assert_eq!(
            sha(data),
            w["sha256"].as_str().unwrap(),
            "{ctx}: bytes of {}",
            t.name
        );
    }
    assert_eq!(
        sha(&bytes),
        want["sha256"].as_str().unwrap(),
        "{ctx}: whole file"
    );
    (want_md.len(), want_t.len())
}

#[test]
fn projector_files_match_llamacpp() {
    let dirs = testkit::fixture_dirs("llamacpp/mmproj-manifest.json");
    if dirs.is_empty() {
        testkit::skip_missing_oracle("llamacpp/mmproj-manifest.json in any fixture");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (mut files, mut keys, mut tensors) = (0, 0, 0);
    for dir in &dirs {
        let path = dir.join("llamacpp/mmproj-manifest.json");
        let manifest: Json = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let model = dir.join("released-bf16");
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        for (ty, file) in TYPES {
            let want = &manifest["files"][file];
            assert!(want.is_object(), "{}: no entry for {file}", path.display());
            let out = tmp.path().join(format!("{name}-{file}"));
            g4q_ok!(&[
                "convert",
                s(&model),
                "--mmproj",
                "--type",
                ty,
                "--out",
                s(&out)
            ]);
            let (k, t) = assert_matches(&format!("{name}/{file}"), &out, want);
            files += 1;
            keys += k;
            tensors += t;
        }
    }
    println!(
        "mmproj: {files} projector files of {} fixtures byte-identical to llama.cpp's ({keys} keys, {tensors} tensors compared)",
        dirs.len()
    );
}

#[test]
fn dry_run_plans_the_written_file() {
    let dir = testkit::fixtures_dir().join("e2b-s0");
    let Some(manifest) = testkit::fixture("e2b-s0/llamacpp/mmproj-manifest.json") else {
        return;
    };
    let manifest: Json = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    let model = dir.join("released-bf16");
    let out = g4q_ok!(&[
        "convert",
        s(&model),
        "--mmproj",
        "--type",
        "Q8_0",
        "--dry-run",
        "--json"
    ]);
    let plan: Json = serde_json::from_slice(&out.stdout).unwrap();
    let want = manifest["files"]["mmproj-q8_0.gguf"]["tensors"]
        .as_array()
        .unwrap();
    let got = plan["tensors"].as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g["name"], w["name"]);
        assert_eq!(
            g["type"].as_str().unwrap().to_uppercase(),
            w["type"].as_str().unwrap(),
            "{}",
            w["name"]
        );
        assert_eq!(g["bytes"], w["n_bytes"], "{}", w["name"]);
    }
    println!("mmproj dry run: {} tensors planned as written", got.len());
}

/// The towers read across the shards of a sharded checkpoint give the same file.
#[test]
fn sharded_checkpoint_gives_the_same_file() {
    let Some(manifest) = testkit::fixture("e2b-s0/llamacpp/mmproj-manifest.json") else {
        return;
    };
    let manifest: Json = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("released-bf16");
    testkit::copy_checkpoint_to(
        &testkit::fixtures_dir().join("e2b-s0/released-bf16"),
        &model,
    );
    let shards = testkit::safetensors_file::shard_by_size(&model, 64 << 10);
    assert!(shards.len() > 2, "{shards:?}");
    let out = tmp.path().join("mmproj.gguf");
    g4q_ok!(&[
        "convert",
        s(&model),
        "--mmproj",
        "--type",
        "Q8_0",
        "--out",
        s(&out)
    ]);
    let want = &manifest["files"]["mmproj-q8_0.gguf"];
    assert_matches("e2b-s0 sharded/mmproj-q8_0.gguf", &out, want);
    println!("mmproj: {} shards give llama.cpp's file", shards.len());
}

/// Exit 2, one line on stderr naming the problem, nothing written.
fn assert_refused(args: &[&str], out_file: &Path, says: &str) {
    let out = g4q!(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(says), "{args:?}: {err}");
    assert!(!out_file.exists(), "{args:?} left {}", out_file.display());
}

#[test]
fn bad_requests_exit_2_without_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mmproj.gguf");
    // A checkpoint without towers: the example with vision_config and audio_config removed.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/e2b-tiny");
    let text_only = tmp.path().join("text-only");
    testkit::copy_checkpoint_to(&example, &text_only);
    let cfg_path = text_only.join("config.json");
    let mut cfg: Json = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    let obj = cfg.as_object_mut().unwrap();
    obj.remove("vision_config");
    obj.remove("audio_config");
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let args = [
        "convert",
        s(&text_only),
        "--mmproj",
        "--type",
        "F16",
        "--out",
        s(&out),
    ];
    assert_refused(&args, &out, "no vision_config");
    let args = [
        "convert",
        s(&example),
        "--mmproj",
        "--type",
        "Q4_K_M",
        "--out",
        s(&out),
    ];
    assert_refused(&args, &out, "not a projector type");
    let args = [
        "convert",
        s(&example),
        "--mmproj",
        "--type",
        "F16",
        "--pure",
        "--out",
        s(&out),
    ];
    assert_refused(&args, &out, "--mmproj takes");
    // Without processor_config.json there is no image mean and std (llama.cpp's converter
    // fails there too).
    let args = [
        "convert",
        s(&example),
        "--mmproj",
        "--type",
        "F16",
        "--out",
        s(&out),
    ];
    assert_refused(&args, &out, "image_mean");
    println!("mmproj: 4 bad requests refused with exit 2 and no file");
}
