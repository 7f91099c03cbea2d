//! Fuzzing the `config.json` reader (`Gemma4Config::from_json_str`): the synthetic configs of
//! the four variants with keys replaced by values of any JSON type, their text with bytes
//! flipped, cut or inserted, and random text, a fixed number of cases each. Errors are
//! expected; a panic, or an error message of several lines or unbounded length, fails. An
//! accepted config must answer every per-layer question without panicking.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use convert::synth::synth_config;
use convert::{Gemma4Config, Variant};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

const CASES: u32 = 20_000;
const VARIANTS: [Variant; 4] = [Variant::E2B, Variant::E4B, Variant::A26B, Variant::B31];

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Parses `text`; returns whether it was accepted. Panics only on a reader panic or a bad
/// message.
fn parse(text: &str) -> bool {
    match Gemma4Config::from_json_str(text, "fuzz/config.json") {
        Ok(cfg) => {
            for l in 0..cfg.num_hidden_layers {
                let _ = (
                    cfg.head_dim_of(l),
                    cfg.num_kv_heads(l),
                    cfg.kv_source_layer(l),
                    cfg.is_kv_store(l),
                    cfg.intermediate_size_of(l),
                    cfg.rope_of(l),
                    cfg.v_is_k(l),
                );
            }
            let _ = cfg.variant();
            true
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("fuzz/config.json: "), "{msg}");
            assert!(!msg.contains('\n'), "message of several lines: {msg}");
            assert!(msg.len() <= 1200, "message of {} bytes", msg.len());
            false
        }
    }
}

/// JSON values of every type, nested a little, with the numbers that break parsers.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(1),
            Just(2),
            Just(i64::MAX),
            Just(i64::MIN),
            Just(1 << 31),
            Just(1 << 32),
            0i64..600,
        ]
        .prop_map(Value::from),
        Just(json!(u64::MAX)),
        prop_oneof![
            Just(0.0f64),
            Just(-1e-6),
            Just(1e308),
            Just(5e-324),
            Just(0.5),
            any::<f64>().prop_filter("finite", |f| f.is_finite())
        ]
        .prop_map(Value::from),
        prop_oneof![
            Just("sliding_attention".to_string()),
            Just("full_attention".to_string()),
            Just("proportional".to_string()),
            Just("default".to_string()),
            ".{0,12}"
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 16, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_0-9]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Where an edit lands: a text-config key (or a nested RoPE key, or a top-level key).
const PATHS: &[&[&str]] = &[
    &["text_config", "vocab_size"],
    &["text_config", "hidden_size"],
    &["text_config", "intermediate_size"],
    &["text_config", "num_hidden_layers"],
    &["text_config", "num_attention_heads"],
    &["text_config", "num_key_value_heads"],
    &["text_config", "num_global_key_value_heads"],
    &["text_config", "head_dim"],
    &["text_config", "global_head_dim"],
    &["text_config", "attention_k_eq_v"],
    &["text_config", "sliding_window"],
    &["text_config", "layer_types"],
    &["text_config", "max_position_embeddings"],
    &["text_config", "rope_parameters"],
    &["text_config", "rope_parameters", "full_attention"],
    &[
        "text_config",
        "rope_parameters",
        "full_attention",
        "rope_theta",
    ],
    &[
        "text_config",
        "rope_parameters",
        "full_attention",
        "partial_rotary_factor",
    ],
    &[
        "text_config",
        "rope_parameters",
        "full_attention",
        "rope_type",
    ],
    &[
        "text_config",
        "rope_parameters",
        "sliding_attention",
        "rope_theta",
    ],
    &["text_config", "rms_norm_eps"],
    &["text_config", "final_logit_softcapping"],
    &["text_config", "hidden_activation"],
    &["text_config", "hidden_size_per_layer_input"],
    &["text_config", "vocab_size_per_layer_input"],
    &["text_config", "num_kv_shared_layers"],
    &["text_config", "use_double_wide_mlp"],
    &["text_config", "enable_moe_block"],
    &["text_config", "num_experts"],
    &["text_config", "top_k_experts"],
    &["text_config", "moe_intermediate_size"],
    &["text_config", "expert_intermediate_size"],
    &["text_config", "pad_token_id"],
    &["text_config", "bos_token_id"],
    &["text_config", "eos_token_id"],
    &["text_config", "per_layer_config"],
    &["text_config", "model_type"],
    &["text_config", "attn_logit_softcapping"],
    &["text_config"],
    &["architectures"],
    &["model_type"],
    &["tie_word_embeddings"],
];

/// Sets (or with `None`, removes) the value at `path`, creating objects on the way when the
/// parents are objects.
fn set_path(root: &mut Value, path: &[&str], v: Option<Value>) {
    let (last, parents) = path.split_last().unwrap();
    let mut cur = root;
    for p in parents {
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        cur = obj.entry(p.to_string()).or_insert_with(|| json!({}));
    }
    if let Some(obj) = cur.as_object_mut() {
        match v {
            Some(v) => {
                obj.insert(last.to_string(), v);
            }
            None => {
                obj.remove(*last);
            }
        }
    }
}

#[test]
fn fuzz_config_values() {
    let seeds: Vec<Value> = VARIANTS.iter().map(|&v| synth_config(v, 7, 0)).collect();
    for s in &seeds {
        assert!(parse(&s.to_string()), "every seed parses");
    }
    let (runs, accepted) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let edit = (
        proptest::sample::select(PATHS),
        proptest::option::weighted(0.9, any_json()),
    );
    runner()
        .run(
            &(0..seeds.len(), proptest::collection::vec(edit, 1..4)),
            |(seed, edits)| {
                let mut root = seeds[seed].clone();
                for (path, v) in edits {
                    set_path(&mut root, path, v);
                }
                runs.fetch_add(1, Relaxed);
                if parse(&root.to_string()) {
                    accepted.fetch_add(1, Relaxed);
                }
                Ok(())
            },
        )
        .unwrap();
    println!(
        "fuzz_config_values: {} executions, {} accepted, 0 panics",
        runs.into_inner(),
        accepted.into_inner()
    );
}

#[test]
fn fuzz_config_text() {
    let seeds: Vec<String> = VARIANTS
        .iter()
        .map(|&v| synth_config(v, 7, 0).to_string())
        .collect();
    let runs = AtomicUsize::new(0);
    let byte_edit = (0.0f64..1.0, any::<u8>(), 0u8..3);
    runner()
        .run(
            &(0..seeds.len(), proptest::collection::vec(byte_edit, 1..8)),
            |(seed, edits)| {
                let mut bytes = seeds[seed].clone().into_bytes();
                for (at, b, kind) in edits {
                    let i = ((at * bytes.len() as f64) as usize).min(bytes.len().saturating_sub(1));
                    match kind {
                        0 if !bytes.is_empty() => bytes[i] = b,
                        1 => bytes.truncate(i),
                        _ => bytes.insert(i.min(bytes.len()), b),
                    }
                }
                runs.fetch_add(1, Relaxed);
                parse(&String::from_utf8_lossy(&bytes));
                Ok(())
            },
        )
        .unwrap();
    println!(
        "fuzz_config_text: {} executions, 0 panics",
        runs.into_inner()
    );
}

#[test]
fn fuzz_config_random_text() {
    let runs = AtomicUsize::new(0);
    runner()
        .run(
            &prop_oneof![".{0,200}", "[{}\\[\\]\":,0-9a-z_ .-]{0,200}"],
            |text| {
                runs.fetch_add(1, Relaxed);
                parse(&text);
                Ok(())
            },
        )
        .unwrap();
    println!(
        "fuzz_config_random_text: {} executions, 0 panics",
        runs.into_inner()
    );
}
