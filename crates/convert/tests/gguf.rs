//! The GGUF reader and writer against llama.cpp's own files in the fixtures: every header field,
//! key, value type and tensor matches the manifest llama.cpp's run recorded, and writing the
//! parsed file back out reproduces it byte for byte. Then hostile headers: every lie is an error.

use std::path::{Path, PathBuf};

use convert::gguf::{parse_header, Array, GgufFile, GgufWriter, Metadata, TensorInfo, Value};
use kernels::GgmlType;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use testkit::fixtures_dir;

/// Every (manifest, gguf path, manifest entry) for the whole GGUF files the fixtures carry.
fn whole_files() -> Vec<(PathBuf, Json)> {
    let root = fixtures_dir();
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let manifest = dir.join("llamacpp/manifest.json");
        if !manifest.exists() {
            continue;
        }
        let m: Json = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
        for (name, entry) in m["files"].as_object().unwrap() {
            let path = dir.join("llamacpp").join(name);
            if name.ends_with(".gguf") && path.exists() {
                out.push((path, entry["gguf"].clone()));
            }
        }
    }
    out
}

fn json_of_scalar(v: &Value) -> Json {
    match v {
        Value::U8(x) => Json::from(*x),
        Value::I8(x) => Json::from(*x),
        Value::U16(x) => Json::from(*x),
        Value::I16(x) => Json::from(*x),
        Value::U32(x) => Json::from(*x),
        Value::I32(x) => Json::from(*x),
        Value::F32(x) => Json::from(f64::from(*x)),
        Value::Bool(x) => Json::from(*x),
        Value::String(x) => Json::from(x.clone()),
        Value::U64(x) => Json::from(*x),
        Value::I64(x) => Json::from(*x),
        Value::F64(x) => Json::from(*x),
        Value::Array(_) => unreachable!("arrays are handled by json_of_array"),
    }
}

fn json_of_array(a: &Array) -> Vec<Json> {
    let scalars: Vec<Value> = match a {
        Array::U8(v) => v.iter().map(|&x| Value::U8(x)).collect(),
        Array::I8(v) => v.iter().map(|&x| Value::I8(x)).collect(),
        Array::U16(v) => v.iter().map(|&x| Value::U16(x)).collect(),
        Array::I16(v) => v.iter().map(|&x| Value::I16(x)).collect(),
        Array::U32(v) => v.iter().map(|&x| Value::U32(x)).collect(),
        Array::I32(v) => v.iter().map(|&x| Value::I32(x)).collect(),
        Array::F32(v) => v.iter().map(|&x| Value::F32(x)).collect(),
        Array::Bool(v) => v.iter().map(|&x| Value::Bool(x)).collect(),
        Array::String(v) => v.iter().map(|x| Value::String(x.clone())).collect(),
        Array::U64(v) => v.iter().map(|&x| Value::U64(x)).collect(),
        Array::I64(v) => v.iter().map(|&x| Value::I64(x)).collect(),
        Array::F64(v) => v.iter().map(|&x| Value::F64(x)).collect(),
    };
    scalars.iter().map(json_of_scalar).collect()
}

#[test]
fn reads_llamacpp_files_as_the_manifest_records_them() {
    let files = whole_files();
    assert!(
        !files.is_empty(),
        "no GGUF files under {}",
        fixtures_dir().display()
    );
    let mut keys = 0;
    let mut tensors = 0;
    for (path, want) in &files {
        let f = GgufFile::open(path).unwrap();
        let h = f.header();
        let ctx = path.display();
        assert_eq!(
            u64::from(h.version),
            want["version"].as_u64().unwrap(),
            "{ctx}"
        );
        assert_eq!(h.alignment, want["alignment"].as_u64().unwrap(), "{ctx}");
        assert_eq!(
            h.data_offset,
            want["data_offset"].as_u64().unwrap(),
            "{ctx}"
        );
        let want_md = want["metadata"].as_object().unwrap();
        let got_keys: Vec<&str> = h.metadata.iter().map(|(k, _)| k).collect();
        let want_keys: Vec<&str> = want_md.keys().map(|k| k.as_str()).collect();
        assert_eq!(got_keys, want_keys, "{ctx}: key order");
        for (key, value) in h.metadata.iter() {
            let w = &want_md[key];
            assert_eq!(
                value.type_name(),
                w["type"].as_str().unwrap(),
                "{ctx}: {key}"
            );
            match value {
                Value::Array(a) => {
                    let got = json_of_array(a);
                    if let Some(list) = w["value"].as_array() {
                        assert_eq!(&got, list, "{ctx}: {key}");
                    } else {
                        assert_eq!(
                            got.len() as u64,
                            w["value"]["len"].as_u64().unwrap(),
                            "{ctx}: {key}"
                        );
                        let head = w["value"]["head"].as_array().unwrap();
                        assert_eq!(&got[..head.len()], &head[..], "{ctx}: {key}");
                    }
                }
                v => assert_eq!(json_of_scalar(v), w["value"], "{ctx}: {key}"),
            }
            keys += 1;
        }
        let want_t = want["tensors"].as_array().unwrap();
        assert_eq!(h.tensors.len(), want_t.len(), "{ctx}");
        for (t, w) in h.tensors.iter().zip(want_t) {
            assert_eq!(t.name, w["name"].as_str().unwrap(), "{ctx}");
            testkit::gguf_oracle::assert_tensor_entry(
                &ctx,
                &t.name,
                t.ty.name(),
                &t.dims,
                t.offset,
                w,
            );
            let data = f.tensor_data(&t.name).unwrap();
            assert_eq!(
                data.len() as u64,
                w["n_bytes"].as_u64().unwrap(),
                "{ctx}: {}",
                t.name
            );
            assert_eq!(
                hex::encode(Sha256::digest(data)),
                w["sha256"].as_str().unwrap(),
                "{ctx}: {}",
                t.name
            );
            tensors += 1;
        }
    }
    println!(
        "gguf: checked {} files, {keys} keys, {tensors} tensors against llama.cpp's manifests",
        files.len()
    );
}

#[test]
fn rewriting_a_llamacpp_file_reproduces_its_bytes() {
    let files = whole_files();
    assert!(!files.is_empty());
    let dir = tempfile::tempdir().unwrap();
    for (i, (path, _)) in files.iter().enumerate() {
        let f = GgufFile::open(path).unwrap();
        let out = dir.path().join(format!("{i}.gguf"));
        let mut w = GgufWriter::create(&out, f.metadata(), f.tensors().to_vec()).unwrap();
        for t in f.tensors() {
            w.write_tensor(&t.name, f.tensor_data(&t.name).unwrap())
                .unwrap();
        }
        w.finish().unwrap();
        let original = std::fs::read(path).unwrap();
        let written = std::fs::read(&out).unwrap();
        assert!(
            original == written,
            "{}: rewritten file differs",
            path.display()
        );
    }
    println!("gguf: rewrote {} files byte for byte", files.len());
}

fn small_file() -> Vec<u8> {
    let mut md = Metadata::new();
    md.set("general.architecture", Value::String("gemma4".into()));
    md.set("test.list", Value::Array(Array::U32(vec![1, 2, 3])));
    let mut tensors = vec![
        TensorInfo::from_torch_shape("a.weight", &[2, 32], GgmlType::F32),
        TensorInfo::from_torch_shape("b.weight", &[1, 32], GgmlType::Q8_0),
    ];
    let mut bytes = convert::gguf::encode_header(&md, &mut tensors, Path::new("t.gguf")).unwrap();
    bytes.extend(vec![0u8; 256]);
    bytes.extend(vec![0u8; 34]);
    bytes.resize(bytes.len() + 30, 0);
    bytes
}

fn parse_err(bytes: &[u8]) -> String {
    match parse_header(bytes, Path::new("bad.gguf")) {
        Ok(_) => panic!("a hostile header was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn hostile_headers_are_errors_naming_the_file() {
    let good = small_file();
    parse_header(&good, Path::new("good.gguf")).unwrap();
    let mut cases = 0;
    // Truncation anywhere inside the header or the data.
    for cut in [3, 10, 30, 60, good.len() - 40, good.len() - 31] {
        let e = parse_err(&good[..cut]);
        assert!(e.starts_with("bad.gguf"), "{e}");
        cases += 1;
    }
    let patch = |at: usize, v: u64| {
        let mut b = good.clone();
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        b
    };
    // Lying counts and lengths (tensor count at 8, kv count at 16, first key length at 24).
    for bad in [
        patch(8, u64::MAX),
        patch(16, u64::MAX / 2),
        patch(24, 1 << 60),
    ] {
        let e = parse_err(&bad);
        assert!(e.contains("bad.gguf"), "{e}");
        cases += 1;
    }
    // Bad magic and version.
    let mut b = good.clone();
    b[0] = b'X';
    assert!(parse_err(&b).contains("magic"));
    let mut b = good.clone();
    b[4] = 9;
    assert!(parse_err(&b).contains("version"));
    cases += 2;
    // A tensor offset that overlaps the previous tensor: find b.weight's offset (last 8 bytes of
    // its info, just before the padding) by re-encoding.
    let pos = good.windows(8).position(|w| w == b"b.weight").unwrap();
    let offset_at = pos + 8 + 4 + 16 + 4;
    let mut b = good.clone();
    b[offset_at..offset_at + 8].copy_from_slice(&0u64.to_le_bytes());
    assert!(parse_err(&b).contains("b.weight"));
    // An offset past the end of the file.
    let mut b = good.clone();
    b[offset_at..offset_at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(parse_err(&b).contains("b.weight"));
    // An unknown ggml type.
    let mut b = good.clone();
    b[offset_at - 4..offset_at].copy_from_slice(&99u32.to_le_bytes());
    assert!(parse_err(&b).contains("type"));
    cases += 3;
    println!("gguf: {cases} hostile headers rejected");
}

#[test]
fn writer_leaves_no_file_when_not_finished() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.gguf");
    let md = Metadata::new();
    let tensors = vec![TensorInfo::from_torch_shape("t", &[4], GgmlType::F32)];
    let mut w = GgufWriter::create(&out, &md, tensors.clone()).unwrap();
    assert!(
        w.write_tensor("t", &[0u8; 8]).is_err(),
        "wrong size accepted"
    );
    drop(w);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "partial output left behind"
    );
    let w = GgufWriter::create(&out, &md, tensors).unwrap();
    assert!(w.finish().is_err(), "finish without data accepted");
    assert!(!out.exists());
}
