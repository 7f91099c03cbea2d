//! `convert::llama::write_unquantized` against llama.cpp's own converter: for every fixture, the
//! F32 GGUF g4q writes has the keys, value types, values, tensor names, shapes, types, offsets and
//! bytes that `llamacpp/manifest.json` records for llama.cpp's `f32.gguf`.

use convert::gguf::{Array, GgufFile, Value};
use convert::Checkpoint;
use kernels::GgmlType;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use testkit::fixtures_dir;

/// Python's `repr(float)`, which `json.dumps` uses: shortest round-trip digits, scientific
/// notation outside 1e-4 ≤ |x| < 1e16, and a trailing `.0` on integral values.
fn py_float(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{x:e}");
    let (mant, exp) = sci.split_once('e').unwrap();
    let exp: i32 = exp.parse().unwrap();
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if neg { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1;
        let s = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{s}")
    } else {
        let m = if digits.len() == 1 {
            digits.clone()
        } else {
            format!("{}.{}", &digits[..1], &digits[1..])
        };
        format!(
            "{sign}{m}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    }
}

/// `json.dumps(s, ensure_ascii=False)` for a string.
fn py_string(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The array as Python's `json.dumps(list, ensure_ascii=False)` prints it, and as JSON values.
fn py_array(a: &Array) -> (String, Vec<Json>) {
    let (items, json): (Vec<String>, Vec<Json>) = match a {
        Array::String(v) => v
            .iter()
            .map(|s| (py_string(s), Json::from(s.clone())))
            .unzip(),
        Array::F32(v) => v
            .iter()
            .map(|&x| (py_float(f64::from(x)), Json::from(f64::from(x))))
            .unzip(),
        Array::I32(v) => v.iter().map(|x| (x.to_string(), Json::from(*x))).unzip(),
        Array::U32(v) => v.iter().map(|x| (x.to_string(), Json::from(*x))).unzip(),
        Array::Bool(v) => v.iter().map(|x| (x.to_string(), Json::from(*x))).unzip(),
        other => panic!("unexpected array type {:?}", other.elem_type()),
    };
    (format!("[{}]", items.join(", ")), json)
}

/// Asserts that tensor `name` of `f` has the bytes (sha256) of llama.cpp's entry `want`.
fn assert_tensor_bytes(ctx: impl std::fmt::Display, f: &GgufFile, name: &str, want: &Json) {
    let sha = hex::encode(Sha256::digest(f.tensor_data(name).unwrap()));
    assert_eq!(
        sha,
        want["sha256"].as_str().unwrap(),
        "{ctx}: bytes of {name}"
    );
}

fn scalar_json(v: &Value) -> Json {
    match v {
        Value::U32(x) => Json::from(*x),
        Value::I32(x) => Json::from(*x),
        Value::F32(x) => Json::from(f64::from(*x)),
        Value::Bool(x) => Json::from(*x),
        Value::String(x) => Json::from(x.clone()),
        Value::U64(x) => Json::from(*x),
        other => panic!("unexpected scalar {other:?}"),
    }
}

#[test]
fn f32_conversion_matches_llamacpp() {
    let root = fixtures_dir();
    let dirs = testkit::fixture_dirs("llamacpp/manifest.json");
    assert!(
        !dirs.is_empty(),
        "no fixtures with llama.cpp manifests under {}",
        root.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let (mut n_fixtures, mut n_keys, mut n_tensors) = (0, 0, 0);
    for dir in &dirs {
        let manifest: Json =
            serde_json::from_slice(&std::fs::read(dir.join("llamacpp/manifest.json")).unwrap())
                .unwrap();
        let Some(from) = testkit::llamacpp_source(dir, &manifest) else {
            continue;
        };
        n_fixtures += 1;
        let want = &manifest["files"]["f32.gguf"]["gguf"];
        let ckpt = Checkpoint::open(&from).unwrap();
        let out = tmp.path().join(format!(
            "{}.gguf",
            dir.file_name().unwrap().to_string_lossy()
        ));
        convert::llama::write_unquantized(&ckpt, &out, GgmlType::F32).unwrap();
        let f = GgufFile::open(&out).unwrap();
        let ctx = dir.display();
        let want_md = want["metadata"].as_object().unwrap();
        let got_keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k).collect();
        let want_keys: Vec<&str> = want_md.keys().map(String::as_str).collect();
        assert_eq!(got_keys, want_keys, "{ctx}: metadata keys and their order");
        for (key, value) in f.metadata().iter() {
            let w = &want_md[key];
            assert_eq!(
                value.type_name(),
                w["type"].as_str().unwrap(),
                "{ctx}: type of {key}"
            );
            match value {
                Value::Array(a) => {
                    let (text, items) = py_array(a);
                    match w["value"].as_array() {
                        Some(list) => assert_eq!(&items, list, "{ctx}: {key}"),
                        None => {
                            assert_eq!(
                                items.len() as u64,
                                w["value"]["len"].as_u64().unwrap(),
                                "{ctx}: {key}"
                            );
                            let head = w["value"]["head"].as_array().unwrap();
                            assert_eq!(&items[..head.len()], &head[..], "{ctx}: {key}");
                            let sha = hex::encode(Sha256::digest(text.as_bytes()));
                            assert_eq!(
                                sha,
                                w["value"]["sha256_of_json"].as_str().unwrap(),
                                "{ctx}: {key}"
                            );
                        }
                    }
                }
                v => assert_eq!(scalar_json(v), w["value"], "{ctx}: {key}"),
            }
            n_keys += 1;
        }
        let want_t = want["tensors"].as_array().unwrap();
        let got_names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
        let want_names: Vec<&str> = want_t.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(got_names, want_names, "{ctx}: tensor names and order");
        for (t, w) in f.tensors().iter().zip(want_t) {
            testkit::gguf_oracle::assert_tensor_entry(
                &ctx,
                &t.name,
                t.ty.name(),
                &t.dims,
                t.offset,
                w,
            );
            assert_tensor_bytes(&ctx, &f, &t.name, w);
            n_tensors += 1;
        }
    }
    println!("llama gguf: checked {n_fixtures} fixtures, {n_keys} keys, {n_tensors} tensors against llama.cpp's f32.gguf");
}

#[test]
fn python_float_repr() {
    assert_eq!(py_float(-1000.0), "-1000.0");
    assert_eq!(py_float(0.949999988079071), "0.949999988079071");
    assert_eq!(py_float(9.999999974752427e-07), "9.999999974752427e-07");
    assert_eq!(py_float(1e16), "1e+16");
    assert_eq!(py_float(0.0001), "0.0001");
}

#[test]
fn config_read_back_from_gguf_equals_the_checkpoints() {
    let root = fixtures_dir();
    let tmp = tempfile::tempdir().unwrap();
    let mut n = 0;
    for dir in std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()) {
        for layout in ["released-bf16", "causal-f32"] {
            let src = dir.join(layout);
            if !src.join("config.json").exists() {
                continue;
            }
            let ckpt = Checkpoint::open(&src).unwrap();
            let out = tmp.path().join(format!("{n}.gguf"));
            convert::llama::write_unquantized(&ckpt, &out, GgmlType::F32).unwrap();
            let back = convert::llama::config_from_gguf(&GgufFile::open(&out).unwrap()).unwrap();
            let want = ckpt.config();
            let ctx = src.display();
            assert_eq!(back.layer_types, want.layer_types, "{ctx}");
            for l in 0..want.num_hidden_layers {
                assert_eq!(back.head_dim_of(l), want.head_dim_of(l), "{ctx}: layer {l}");
                assert_eq!(
                    back.num_kv_heads(l),
                    want.num_kv_heads(l),
                    "{ctx}: layer {l}"
                );
                assert_eq!(back.v_is_k(l), want.v_is_k(l), "{ctx}: layer {l}");
                assert_eq!(
                    back.kv_source_layer(l),
                    want.kv_source_layer(l),
                    "{ctx}: layer {l}"
                );
                assert_eq!(
                    back.intermediate_size_of(l),
                    want.intermediate_size_of(l),
                    "{ctx}: layer {l}"
                );
            }
            assert_eq!(back.rope_full, want.rope_full, "{ctx}");
            assert_eq!(back.rope_sliding.theta, want.rope_sliding.theta, "{ctx}");
            assert_eq!(
                (
                    back.hidden_size,
                    back.vocab_size,
                    back.hidden_size_per_layer_input,
                    back.num_experts,
                    back.top_k_experts,
                    back.moe_intermediate_size
                ),
                (
                    want.hidden_size,
                    want.vocab_size,
                    want.hidden_size_per_layer_input,
                    want.num_experts,
                    want.top_k_experts,
                    want.moe_intermediate_size
                ),
                "{ctx}"
            );
            assert_eq!(
                back.final_logit_softcapping, want.final_logit_softcapping,
                "{ctx}"
            );
            n += 1;
        }
    }
    assert!(n > 0);
    println!("llama gguf: {n} configs read back from GGUF equal the checkpoints'");
}

/// The tensor order llama.cpp's converter gives a sharded checkpoint, worked out from the files:
/// `rope_freqs` first, then shard by shard in the sorted order of the names the index lists, each
/// shard's tensors sorted by name; tensors with no GGUF name (towers) left out.
fn llamacpp_sharded_order(dir: &std::path::Path) -> Vec<String> {
    let index: Json =
        serde_json::from_slice(&std::fs::read(dir.join(convert::checkpoint::INDEX_FILE)).unwrap())
            .unwrap();
    let shards: std::collections::BTreeSet<&str> = index["weight_map"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut order = vec!["rope_freqs.weight".to_string()];
    for shard in shards {
        let mut names: Vec<String> = testkit::safetensors_file::read_entries(&dir.join(shard))
            .into_iter()
            .map(|e| e.name)
            .collect();
        names.sort();
        order.extend(names.iter().filter_map(|n| {
            let canonical = n
                .strip_prefix(convert::catalogue::RELEASED_PREFIX)
                .or_else(|| n.strip_prefix(convert::catalogue::CAUSAL_PREFIX))?;
            convert::llama::gguf_name(canonical)
        }));
    }
    order
}

#[test]
fn sharded_f32_conversion_follows_llamacpp_shard_order() {
    let dirs = testkit::fixture_dirs("llamacpp/manifest.json");
    assert!(!dirs.is_empty(), "no fixtures with llama.cpp manifests");
    let tmp = tempfile::tempdir().unwrap();
    let (mut n_fixtures, mut n_reordered, mut n_tensors) = (0, 0, 0);
    for (i, dir) in dirs.iter().enumerate() {
        let manifest: Json =
            serde_json::from_slice(&std::fs::read(dir.join("llamacpp/manifest.json")).unwrap())
                .unwrap();
        let Some(from) = testkit::llamacpp_source(dir, &manifest) else {
            continue;
        };
        // Same folder name as the source: the name shows in `general.name`.
        let sharded = tmp
            .path()
            .join(i.to_string())
            .join(from.file_name().unwrap());
        testkit::copy_checkpoint_to(&from, &sharded);
        testkit::safetensors_file::shard_in_module_order(&sharded, 3);
        let ctx = format!("{} (3 shards)", dir.display());

        let single_out = tmp.path().join(format!("{i}-single.gguf"));
        let sharded_out = tmp.path().join(format!("{i}-sharded.gguf"));
        let single_ck = Checkpoint::open(&from).unwrap();
        convert::llama::write_unquantized(&single_ck, &single_out, GgmlType::F32).unwrap();
        let sharded_ck = Checkpoint::open(&sharded).unwrap();
        assert_eq!(sharded_ck.files().count(), 3, "{ctx}");
        convert::llama::write_unquantized(&sharded_ck, &sharded_out, GgmlType::F32).unwrap();
        let (single, f) = (
            GgufFile::open(&single_out).unwrap(),
            GgufFile::open(&sharded_out).unwrap(),
        );

        let got: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(got, llamacpp_sharded_order(&sharded), "{ctx}: tensor order");
        let single_order: Vec<&str> = single.tensors().iter().map(|t| t.name.as_str()).collect();
        if got != single_order {
            n_reordered += 1;
        }
        assert_eq!(f.metadata(), single.metadata(), "{ctx}: metadata");

        // The bytes of each tensor are llama.cpp's, wherever it sits.
        let want: std::collections::HashMap<&str, &Json> = manifest["files"]["f32.gguf"]["gguf"]
            ["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["name"].as_str().unwrap(), t))
            .collect();
        assert_eq!(want.len(), got.len(), "{ctx}: tensor count");
        for t in f.tensors() {
            let w = want
                .get(t.name.as_str())
                .unwrap_or_else(|| panic!("{ctx}: {} is not in llama.cpp's file", t.name));
            assert_eq!(
                t.ty.name().to_uppercase(),
                w["type"].as_str().unwrap().to_uppercase()
            );
            assert_tensor_bytes(&ctx, &f, &t.name, w);
            n_tensors += 1;
        }
        n_fixtures += 1;
    }
    // Some fixture must be cut where shard order and name order disagree, or this checks nothing
    // beyond the single-file test.
    assert!(
        n_reordered > 0,
        "no fixture's shards change the tensor order: the test cannot tell the rules apart"
    );
    println!(
        "sharded conversion: checked {n_fixtures} fixtures ({n_reordered} reordered by their \
         shards), {n_tensors} tensors against llama.cpp's order rule and f32.gguf bytes"
    );
}
