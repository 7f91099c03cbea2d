//! g4q's quantized GGUF releases against llama-quantize's, file for file on every fixture: the
//! same metadata (keys, order, values), tensor names, order, types, shapes and bytes (sha256),
//! with and without llama.cpp's importance matrix. One streaming pass from the checkpoint
//! replaces llama.cpp's convert + quantize.

use convert::gguf::{GgufFile, Value};
use convert::Checkpoint;
use quantize::gguf_release::{self, ReleaseOptions};
use quantize::{FileType, Imatrix, MixOptions};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use testkit::fixtures_dir;

fn scalar_json(v: &Value) -> Option<Json> {
    Some(match v {
        Value::U32(x) => Json::from(*x),
        Value::I32(x) => Json::from(*x),
        Value::F32(x) => Json::from(f64::from(*x)),
        Value::Bool(x) => Json::from(*x),
        Value::String(x) => Json::from(x.clone()),
        _ => return None,
    })
}

#[test]
fn releases_match_llama_quantize() {
    let dirs = testkit::fixture_dirs("llamacpp/manifest.json");
    assert!(!dirs.is_empty());
    let tmp = tempfile::tempdir().unwrap();
    let (mut files, mut tensors, mut mismatched) = (0, 0, Vec::new());
    for dir in &dirs {
        let m = testkit::llamacpp_manifest(dir);
        let Some(from) = testkit::llamacpp_source(dir, &m) else {
            continue;
        };
        let ckpt = Checkpoint::open(&from).unwrap();
        let imatrix = Imatrix::read(&dir.join("llamacpp/imatrix.gguf")).unwrap();
        for q in testkit::quantized_files(&m) {
            let (file, entry, with_imatrix) = (q.file, q.entry, q.imatrix);
            let ftype: FileType = q.mix.parse().unwrap();
            let opts = ReleaseOptions {
                ftype,
                mix: MixOptions::default(),
                imatrix: with_imatrix.then(|| (&imatrix, "imatrix.gguf".to_string())),
                progress: None,
            };
            let out = tmp.path().join(file);
            gguf_release::write(&ckpt, &out, &opts).unwrap();
            let f = GgufFile::open(&out).unwrap();
            let want = &entry["gguf"];
            let ctx = format!("{}/{file}", dir.file_name().unwrap().to_string_lossy());
            let want_md = want["metadata"].as_object().unwrap();
            let keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k).collect();
            let want_keys: Vec<&str> = want_md.keys().map(String::as_str).collect();
            assert_eq!(keys, want_keys, "{ctx}: keys");
            for (k, v) in f.metadata().iter() {
                assert_eq!(
                    v.type_name(),
                    want_md[k]["type"].as_str().unwrap(),
                    "{ctx}: {k}"
                );
                if let Some(j) = scalar_json(v) {
                    assert_eq!(j, want_md[k]["value"], "{ctx}: {k}");
                }
            }
            let want_t = want["tensors"].as_array().unwrap();
            assert_eq!(f.tensors().len(), want_t.len(), "{ctx}");
            for (t, w) in f.tensors().iter().zip(want_t) {
                assert_eq!(t.name, w["name"].as_str().unwrap(), "{ctx}: order");
                assert_eq!(
                    t.ty.name().to_uppercase(),
                    w["type"].as_str().unwrap().to_uppercase(),
                    "{ctx}: {}",
                    t.name
                );
                let sha = hex::encode(Sha256::digest(f.tensor_data(&t.name).unwrap()));
                if sha != w["sha256"].as_str().unwrap() {
                    mismatched.push(format!("{ctx}: {} ({})", t.name, t.ty));
                }
                tensors += 1;
            }
            files += 1;
        }
    }
    println!("release: checked {files} quantized files, {tensors} tensors against llama-quantize");
    assert!(
        mismatched.is_empty(),
        "{} tensors differ from llama-quantize's bytes:\n{}",
        mismatched.len(),
        mismatched.join("\n")
    );
}

#[test]
fn requantizing_llamacpps_f32_file_matches_llama_quantize() {
    let dirs = testkit::fixture_dirs("llamacpp/f32.gguf");
    if dirs.is_empty() {
        return testkit::skip_missing_oracle("llama.cpp's llamacpp/f32.gguf of every fixture");
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut files = 0;
    for dir in &dirs {
        let m = testkit::llamacpp_manifest(dir);
        let input = GgufFile::open(&dir.join("llamacpp/f32.gguf")).unwrap();
        let imatrix = Imatrix::read(&dir.join("llamacpp/imatrix.gguf")).unwrap();
        for (mix, with_imatrix) in [("Q4_K_M", false), ("Q2_K", false), ("IQ4_XS", true)] {
            let file = if with_imatrix {
                format!("{mix}.imatrix.gguf")
            } else {
                format!("{mix}.gguf")
            };
            let opts = ReleaseOptions {
                ftype: mix.parse().unwrap(),
                mix: MixOptions::default(),
                imatrix: with_imatrix.then(|| (&imatrix, "imatrix.gguf".to_string())),
                progress: None,
            };
            let out = tmp.path().join(&file);
            quantize::requantize::write(&input, &out, &opts).unwrap();
            let f = GgufFile::open(&out).unwrap();
            let want = &m["files"][&file]["gguf"];
            let keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k).collect();
            let want_keys: Vec<&str> = want["metadata"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys, want_keys, "{}/{file}", dir.display());
            for (t, w) in f.tensors().iter().zip(want["tensors"].as_array().unwrap()) {
                assert_eq!(t.name, w["name"].as_str().unwrap());
                let sha = hex::encode(Sha256::digest(f.tensor_data(&t.name).unwrap()));
                assert_eq!(
                    sha,
                    w["sha256"].as_str().unwrap(),
                    "{}/{file}: {}",
                    dir.display(),
                    t.name
                );
            }
            files += 1;
        }
    }
    println!("requantize: {files} files from llama.cpp's f32.gguf equal llama-quantize's");
}

#[test]
fn imatrix_gguf_round_trips_byte_for_byte() {
    let root = fixtures_dir();
    let tmp = tempfile::tempdir().unwrap();
    let mut n = 0;
    for dir in std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()) {
        let file = dir.join("llamacpp/imatrix.gguf");
        if !file.exists() {
            continue;
        }
        let im = Imatrix::read(&file).unwrap();
        assert!(!im.entries.is_empty());
        let out = tmp.path().join(format!("{n}.gguf"));
        im.write_gguf(&out).unwrap();
        assert!(
            std::fs::read(&out).unwrap() == std::fs::read(&file).unwrap(),
            "{}",
            file.display()
        );
        n += 1;
    }
    assert!(n > 0);
    println!("imatrix: {n} llama.cpp imatrix files rewritten byte for byte");
}

/// A legacy `.dat` imatrix as `llama-imatrix --output-format dat` lays it out: per entry the name,
/// ncall and mean(x²)·ncall; read back, its weights are the means again.
#[test]
fn legacy_dat_imatrix_reads_to_the_same_weights() {
    let gguf = fixtures_dir().join("e2b-s0/llamacpp/imatrix.gguf");
    let im = Imatrix::read(&gguf).unwrap();
    let mut dat = Vec::new();
    dat.extend((im.entries.len() as i32).to_le_bytes());
    let ncall = 3i32;
    for name in im.entries.keys() {
        let w = im.weights(name).unwrap();
        dat.extend((name.len() as i32).to_le_bytes());
        dat.extend(name.as_bytes());
        dat.extend(ncall.to_le_bytes());
        dat.extend((w.len() as i32).to_le_bytes());
        for v in &w {
            dat.extend((v * ncall as f32).to_le_bytes());
        }
    }
    dat.extend(8i32.to_le_bytes());
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("imatrix.dat");
    std::fs::write(&path, &dat).unwrap();
    let legacy = Imatrix::read(&path).unwrap();
    assert_eq!(legacy.entries.len(), im.entries.len());
    for name in im.entries.keys() {
        let (a, b) = (im.weights(name).unwrap(), legacy.weights(name).unwrap());
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() <= 1e-6 * x.abs().max(1e-30),
                "{name}: {x} vs {y}"
            );
        }
    }
    // Truncated files are errors naming the file, never panics.
    for cut in [2, 9, dat.len() / 2] {
        std::fs::write(&path, &dat[..cut]).unwrap();
        let err = Imatrix::read(&path).unwrap_err().to_string();
        assert!(err.contains("imatrix.dat"), "{err}");
    }
}
