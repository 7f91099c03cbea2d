//! `g4q convert --intermediate`: the chain users run, llama.cpp's converter with `--outtype bf16`
//! (its default for bf16 checkpoints) and then `llama-quantize`.
//!
//! The fixtures hold llama.cpp's `bf16.gguf` (the converter's bf16 output) and its f32-chain
//! quantized files. Their weights are exactly representable in bf16, so llama-quantize reads the
//! same values from either intermediate and quantizes them to the same bytes; only the tensors
//! it leaves alone differ, and those are copied from the intermediate. The bf16 chain's file is
//! therefore known tensor by tensor: the f32 chain's entry where llama-quantize quantized, the
//! `bf16.gguf` entry where it kept the input (its type in the f32 chain is the converter's F32).

use std::path::Path;

use convert::gguf::GgufFile;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use testkit::{g4q, g4q_ok, path_str as s};

/// The llama-quantize files checked in the bf16 chain.
const MIXES: [&str; 3] = ["Q4_K_M", "Q6_K", "IQ4_XS"];

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn entries(file: &Json) -> Vec<&Json> {
    file["gguf"]["tensors"].as_array().unwrap().iter().collect()
}

fn by_name<'a>(list: &[&'a Json], name: &str) -> &'a Json {
    list.iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing"))
}

/// llama.cpp's converter with `--outtype bf16` (the chain's intermediate file): g4q's
/// `--type BF16` writes the same file, the router kept in F32 included.
#[test]
fn bf16_conversion_matches_llamacpp() {
    let dirs = testkit::fixture_dirs("llamacpp/manifest.json");
    assert!(!dirs.is_empty());
    let tmp = tempfile::tempdir().unwrap();
    let mut n = 0;
    for dir in &dirs {
        let m = testkit::llamacpp_manifest(dir);
        let want = &m["files"]["bf16.gguf"];
        if !want.is_object() {
            continue;
        }
        let Some(src) = testkit::llamacpp_source(dir, &m) else {
            continue;
        };
        let out = tmp.path().join(format!("{n}.gguf"));
        g4q_ok!(&["convert", s(&src), "--type", "BF16", "--out", s(&out)]);
        assert_eq!(
            sha(&std::fs::read(&out).unwrap()),
            want["sha256"].as_str().unwrap(),
            "{}: bf16.gguf",
            dir.display()
        );
        n += 1;
    }
    assert!(n > 0, "no fixture has llama.cpp's bf16.gguf");
    println!("intermediate: {n} bf16 conversions byte-identical to llama.cpp's bf16.gguf");
}

#[test]
fn bf16_intermediate_is_the_llamacpp_bf16_chain() {
    let dirs = testkit::fixture_dirs("llamacpp/manifest.json");
    assert!(!dirs.is_empty());
    let tmp = tempfile::tempdir().unwrap();
    let (mut files, mut tensors, mut kept) = (0, 0, 0);
    for dir in &dirs {
        let m = testkit::llamacpp_manifest(dir);
        let (f32_file, bf16_file) = (&m["files"]["f32.gguf"], &m["files"]["bf16.gguf"]);
        if !f32_file.is_object() || !bf16_file.is_object() {
            continue;
        }
        let Some(src) = testkit::llamacpp_source(dir, &m) else {
            continue;
        };
        let (f32_t, bf16_t) = (entries(f32_file), entries(bf16_file));
        for mix in MIXES {
            let q = &m["files"][format!("{mix}.gguf")];
            if !q.is_object() {
                continue;
            }
            let ctx = format!("{}/{mix}", dir.display());
            let out = tmp.path().join(format!("{files}.gguf"));
            g4q_ok!(&[
                "convert",
                s(&src),
                "--intermediate",
                "bf16",
                "--type",
                mix,
                "--out",
                s(&out)
            ]);
            let f = GgufFile::open(&out).unwrap();
            let q_t = entries(q);
            let got: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
            let want: Vec<&str> = q_t.iter().map(|t| t["name"].as_str().unwrap()).collect();
            assert_eq!(got, want, "{ctx}: tensor names and order");
            let got_keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k).collect();
            let want_md = q["gguf"]["metadata"].as_object().unwrap();
            let want_keys: Vec<&str> = want_md.keys().map(String::as_str).collect();
            assert_eq!(got_keys, want_keys, "{ctx}: keys");
            for (t, w) in f.tensors().iter().zip(&q_t) {
                let name = t.name.as_str();
                let kept_as_input = w["type"] == by_name(&f32_t, name)["type"];
                let expect = if kept_as_input {
                    by_name(&bf16_t, name)
                } else {
                    w
                };
                assert_eq!(
                    t.ty.name().to_uppercase(),
                    expect["type"].as_str().unwrap(),
                    "{ctx}: type of {name}"
                );
                assert_eq!(
                    sha(f.tensor_data(name).unwrap()),
                    expect["sha256"].as_str().unwrap(),
                    "{ctx}: bytes of {name}"
                );
                if kept_as_input && expect["type"] != "F32" {
                    kept += 1;
                }
                tensors += 1;
            }
            files += 1;
        }
    }
    assert!(
        files > 0,
        "no fixture has llama.cpp's f32.gguf, bf16.gguf and a quantized file"
    );
    assert!(kept > 0, "no tensor kept the bf16 intermediate's type");
    println!(
        "intermediate: {files} bf16-chain files ({tensors} tensors, {kept} kept in BF16 from the intermediate) as llama.cpp's chain makes them"
    );
}

/// `--intermediate f32` is the default: the same bytes as without the flag.
#[test]
fn f32_intermediate_is_the_default() {
    let Some(model) = testkit::fixture("e2b-s0/released-bf16") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.gguf"), tmp.path().join("b.gguf"));
    g4q_ok!(&["convert", s(&model), "--type", "Q4_K_M", "--out", s(&a)]);
    g4q_ok!(&[
        "convert",
        s(&model),
        "--intermediate",
        "f32",
        "--type",
        "Q4_K_M",
        "--out",
        s(&b)
    ]);
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
    println!("intermediate: f32 gives the default file");
}

/// The plan shows the kept tensor in the intermediate's type; an unquantized --type refuses it.
#[test]
fn plan_and_refusals() {
    let Some(model) = testkit::fixture("e2b-s0/released-bf16") else {
        return;
    };
    let mut n = 0;
    for (inter, ty) in [("f32", "f32"), ("bf16", "bf16"), ("f16", "f16")] {
        let out = g4q_ok!(&[
            "convert",
            s(&model),
            "--intermediate",
            inter,
            "--type",
            "Q4_K_M",
            "--dry-run",
            "--json"
        ]);
        let plan: Json = serde_json::from_slice(&out.stdout).unwrap();
        let t = plan["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "per_layer_model_proj.weight")
            .unwrap();
        assert_eq!(t["type"].as_str().unwrap().to_lowercase(), ty, "{inter}");
        n += 1;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.gguf");
    let args = [
        "convert",
        s(&model),
        "--intermediate",
        "bf16",
        "--type",
        "F16",
        "--out",
        s(&out),
    ];
    let r = g4q!(&args);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--intermediate applies to quantized types"),
        "{err}"
    );
    assert!(!Path::new(&out).exists());
    println!("intermediate: {n} plans and 1 refusal checked");
}
