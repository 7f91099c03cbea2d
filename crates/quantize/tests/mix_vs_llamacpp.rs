//! The per-tensor types g4q's mixes choose equal llama-quantize's, file for file, on every
//! fixture: each quantized GGUF in `llamacpp/manifest.json` (with and without the imatrix) is
//! replayed from the tensors of llama.cpp's `f32.gguf`.

use kernels::GgmlType;
use quantize::{choose_types, quantize_order, FileType, MixOptions, ModelFacts, TensorDesc};
use serde_json::Value as Json;

fn ggml_type(name: &str) -> GgmlType {
    name.parse().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn mixes_choose_llamacpps_types() {
    let dirs = testkit::fixture_dirs("llamacpp/manifest.json");
    assert!(!dirs.is_empty());
    let (mut files, mut tensors) = (0, 0);
    for dir in &dirs {
        let m = testkit::llamacpp_manifest(dir);
        let base = &m["files"]["f32.gguf"]["gguf"];
        let md = &base["metadata"];
        let n_head = md["gemma4.attention.head_count"]["value"].as_u64().unwrap();
        let kv0 = match &md["gemma4.attention.head_count_kv"]["value"] {
            Json::Array(a) => a[0].as_u64().unwrap(),
            v => v.as_u64().unwrap(),
        };
        let facts = ModelFacts {
            n_expert: md["gemma4.expert_count"]["value"].as_u64().unwrap_or(0) as usize,
            n_gqa: (n_head / kv0) as usize,
            n_layer: md["gemma4.block_count"]["value"].as_u64().unwrap() as usize,
        };
        let mut input: Vec<TensorDesc> = base["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| TensorDesc {
                name: t["name"].as_str().unwrap().to_string(),
                dims: t["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap())
                    .collect(),
                input_type: ggml_type(t["type"].as_str().unwrap()),
            })
            .collect();
        input.sort_by(|a, b| quantize_order(&a.name, &b.name));
        for q in testkit::quantized_files(&m) {
            let (file, entry, imatrix) = (q.file, q.entry, q.imatrix);
            let Ok(ftype) = q.mix.parse::<FileType>() else {
                continue;
            };
            let opts = MixOptions {
                has_imatrix: imatrix,
                ..Default::default()
            };
            let got = choose_types(&input, &facts, ftype, &opts);
            let want = entry["gguf"]["tensors"].as_array().unwrap();
            assert_eq!(want.len(), input.len(), "{}/{file}", dir.display());
            for ((t, c), w) in input.iter().zip(&got).zip(want) {
                assert_eq!(
                    t.name,
                    w["name"].as_str().unwrap(),
                    "{}/{file}: order",
                    dir.display()
                );
                assert_eq!(
                    c.ty,
                    ggml_type(w["type"].as_str().unwrap()),
                    "{}/{file}: {}",
                    dir.display(),
                    t.name
                );
                tensors += 1;
            }
            files += 1;
        }
    }
    println!("mix: checked {files} quantized files, {tensors} tensor types against llama-quantize");
}
