//! Opens every fixture checkpoint (released-bf16 and causal-f32 of every fixture folder) and
//! checks the config's layer plan against `reference.json`'s `per_layer` list, which
//! transformers itself produced, and the tensor set against the file.

use convert::{Checkpoint, DType, SkippedKind};
use serde_json::Value;

#[test]
fn every_fixture_opens_with_the_reference_layer_plan() {
    let mut checked = 0;
    for folder in testkit::reference_fixtures() {
        let reference: Value =
            serde_json::from_str(&std::fs::read_to_string(folder.join("reference.json")).unwrap())
                .unwrap();
        let per_layer = reference["per_layer"].as_array().expect("per_layer list");
        for layout in ["released-bf16", "causal-f32"] {
            let dir = folder.join(layout);
            if !dir.is_dir() {
                continue;
            }
            let ck = Checkpoint::open(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            let cfg = ck.config();
            let what = dir.display();
            assert_eq!(cfg.num_hidden_layers, per_layer.len(), "{what}");
            for entry in per_layer {
                let l = entry["layer"].as_u64().unwrap() as usize;
                assert_eq!(
                    cfg.layer_type(l).hf_name(),
                    entry["type"].as_str().unwrap(),
                    "{what} layer {l}"
                );
                assert_eq!(
                    cfg.head_dim_of(l) as u64,
                    entry["head_dim"].as_u64().unwrap()
                );
                assert_eq!(
                    cfg.num_kv_heads(l) as u64,
                    entry["num_key_value_heads"].as_u64().unwrap(),
                    "{what} layer {l}"
                );
                let sharing = if cfg.is_kv_shared(l) {
                    Some("reuse")
                } else if cfg.is_kv_store(l) {
                    Some("store")
                } else {
                    None
                };
                assert_eq!(sharing, entry["kv_sharing"].as_str(), "{what} layer {l}");
                assert_eq!(cfg.v_is_k(l), entry["v_is_k"].as_bool().unwrap());
                assert_eq!(
                    cfg.intermediate_size_of(l) as u64,
                    entry["mlp_intermediate_size"].as_u64().unwrap(),
                    "{what} layer {l}"
                );
            }
            // "e2b", "e2b-kq", "trained-e2b", ...: the variant's name is one dash-part.
            let variant = reference["variant"].as_str().unwrap();
            let name = cfg.variant().cli_name();
            assert!(
                variant == name
                    || variant.starts_with(&format!("{name}-"))
                    || variant.ends_with(&format!("-{name}")),
                "{what}: reference says {variant}, config reads as {name}"
            );

            // Every text tensor is served, with the layout's dtype, and reads back finite.
            let want = if layout == "released-bf16" {
                DType::BF16
            } else {
                DType::F32
            };
            for name in ck.text_tensors() {
                let t = ck.tensor(name).unwrap();
                assert_eq!(t.dtype, want, "{what} {name}");
                assert_eq!(t.to_f32().unwrap().len(), t.numel());
            }
            // Released E models ship the unused K/V of shared layers; they are skipped, and
            // exactly the ones reference.json lists.
            let unused: Vec<&str> = ck
                .skipped()
                .iter()
                .filter(|s| s.kind == SkippedKind::UnusedSharedKv)
                .map(|s| s.name.as_str())
                .collect();
            if layout == "released-bf16" {
                let mut listed: Vec<&str> = reference["redundant_shared_kv_tensors_in_released"]
                    .as_array()
                    .map(|a| a.iter().map(|v| v.as_str().unwrap()).collect())
                    .unwrap_or_default();
                listed.sort();
                let mut got = unused.clone();
                got.sort();
                assert_eq!(got, listed, "{what}");
                assert!(ck.skipped().iter().any(|s| s.kind == SkippedKind::Vision));
            } else {
                assert!(unused.is_empty(), "{what}");
            }
            checked += 1;
        }
    }
    println!("checked {checked} cases");
    // The full set has 13 checkpoints; the bundled compact set keeps one layout of 4 variants.
    let least = if testkit::fixtures_bundled() { 4 } else { 8 };
    assert!(
        checked >= least,
        "expected at least {least} fixture checkpoints, found {checked}"
    );
}

#[test]
fn released_and_causal_layouts_hold_the_same_values() {
    let mut checked = 0;
    for folder in testkit::reference_fixtures() {
        let causal = folder.join("causal-f32");
        if !causal.is_dir() {
            continue;
        }
        let a = Checkpoint::open(&folder.join("released-bf16")).unwrap();
        let b = Checkpoint::open(&causal).unwrap();
        assert_eq!(a.text_tensors(), b.text_tensors());
        for name in a.text_tensors() {
            let (ta, tb) = (a.tensor(name).unwrap(), b.tensor(name).unwrap());
            assert_eq!(ta.shape, tb.shape, "{name}");
            assert_eq!(ta.to_f32().unwrap(), tb.to_f32().unwrap(), "{name}");
            // Row chunks agree with the whole tensor.
            let rows = ta.num_rows();
            let mut buf = vec![0f32; ta.row_len()];
            ta.rows_to_f32(rows - 1, 1, &mut buf).unwrap();
            assert_eq!(buf[..], ta.to_f32().unwrap()[(rows - 1) * ta.row_len()..]);
            a.release(name);
        }
        checked += 1;
    }
    if checked == 0 {
        return testkit::skip_missing_oracle("every causal-f32/ layout");
    }
    println!("checked {checked} cases");
    assert!(checked >= 4);
}
