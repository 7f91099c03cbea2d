//! `config.json` values out of range or of the wrong type (defect 13 and issue 13 item 4): the
//! fixture E2B config with one key edited per case must be an error naming the file and the
//! key, never NaN logits downstream, a silent default, a truncated u32 or a panic.

use convert::{ConvertError, Gemma4Config};
use serde_json::{json, Map, Value};

const ORIGIN: &str = "e2b/config.json";

fn released_config() -> Value {
    let path = testkit::fixtures_dir()
        .join("e2b-s0/released-bf16")
        .join("config.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn text(root: &mut Value) -> &mut Map<String, Value> {
    root["text_config"].as_object_mut().unwrap()
}

type Edit = fn(&mut Value);

#[test]
fn the_fixture_config_parses() {
    Gemma4Config::from_json_str(&released_config().to_string(), ORIGIN).unwrap();
}

#[test]
fn absurd_and_mistyped_values_are_errors_naming_the_key() {
    let cases: Vec<(Edit, &[&str])> = vec![
        // Ranges (defect 13).
        (
            |r| r["text_config"]["rope_parameters"]["full_attention"]["rope_theta"] = json!(0.0),
            &["rope_parameters.full_attention.rope_theta", "positive"],
        ),
        (
            |r| {
                r["text_config"]["rope_parameters"]["sliding_attention"]["rope_theta"] = json!(-1e4)
            },
            &["rope_parameters.sliding_attention.rope_theta"],
        ),
        (
            |r| r["text_config"]["rope_parameters"]["full_attention"]["rope_theta"] = json!(1e300),
            &["rope_theta"],
        ),
        (
            |r| {
                r["text_config"]["rope_parameters"]["full_attention"]["partial_rotary_factor"] =
                    json!(2.5)
            },
            &["partial_rotary_factor"],
        ),
        (
            |r| {
                r["text_config"]["rope_parameters"]["sliding_attention"]["partial_rotary_factor"] =
                    json!(0.5)
            },
            &["partial_rotary_factor", "default"],
        ),
        (
            |r| {
                text(r).insert("rms_norm_eps".into(), json!(-1e-6));
            },
            &["rms_norm_eps", "positive"],
        ),
        (
            |r| {
                text(r).insert("rms_norm_eps".into(), json!(0.0));
            },
            &["rms_norm_eps"],
        ),
        (
            |r| {
                text(r).insert("rms_norm_eps".into(), json!(1e-60));
            },
            &["rms_norm_eps"],
        ),
        (
            |r| {
                text(r).insert("final_logit_softcapping".into(), json!(-30.0));
            },
            &["final_logit_softcapping"],
        ),
        (
            |r| {
                text(r).insert("hidden_size".into(), json!(1u64 << 33));
            },
            &["hidden_size", "8589934592", "out of range"],
        ),
        (
            |r| {
                text(r).insert("intermediate_size".into(), json!(u32::MAX as u64 + 1));
            },
            &["intermediate_size", "out of range"],
        ),
        (
            |r| {
                text(r).insert("vocab_size".into(), json!(0));
            },
            &["vocab_size", "out of range"],
        ),
        (
            |r| {
                text(r).insert("head_dim".into(), json!(31));
            },
            &["head_dim", "odd"],
        ),
        (
            |r| {
                text(r).insert("sliding_window".into(), json!(0));
            },
            &["sliding_window", "out of range"],
        ),
        (
            |r| {
                text(r).insert("max_position_embeddings".into(), json!(1u64 << 40));
            },
            &["max_position_embeddings", "out of range"],
        ),
        (
            |r| {
                text(r).insert("pad_token_id".into(), json!(600));
            },
            &["pad_token_id", "outside the vocabulary"],
        ),
        (
            |r| {
                text(r).insert("bos_token_id".into(), json!(1u64 << 32));
            },
            &["bos_token_id", "2^32"],
        ),
        (
            |r| {
                text(r).insert("eos_token_id".into(), json!([1, -6]));
            },
            &["eos_token_id", "-6"],
        ),
        // Wrong types (issue 13 item 4).
        (
            |r| {
                text(r).insert("hidden_size".into(), json!(-5));
            },
            &["hidden_size", "non-negative integer", "-5"],
        ),
        (
            |r| {
                text(r).insert("hidden_size".into(), json!(1.5));
            },
            &["hidden_size", "1.5"],
        ),
        (
            |r| {
                text(r).insert("rms_norm_eps".into(), json!("1e-6"));
            },
            &["rms_norm_eps", "a number"],
        ),
        (
            |r| {
                text(r).insert("eos_token_id".into(), json!(["one"]));
            },
            &["eos_token_id", "\"one\""],
        ),
        (
            |r| {
                text(r).insert("hidden_activation".into(), json!(5));
            },
            &["hidden_activation", "a string"],
        ),
        (
            |r| {
                text(r).insert("use_double_wide_mlp".into(), json!("yes"));
            },
            &["use_double_wide_mlp", "true or false"],
        ),
        (
            |r| {
                text(r).insert("enable_moe_block".into(), json!(1));
            },
            &["enable_moe_block", "true or false"],
        ),
        (
            |r| {
                text(r).insert("layer_types".into(), json!("sliding_attention"));
            },
            &["layer_types", "a list"],
        ),
        (
            |r| {
                text(r).insert("per_layer_config".into(), json!({"0": {"head_dim": "x"}}));
            },
            &["per_layer_config.0.head_dim"],
        ),
        (
            |r| {
                text(r).insert("per_layer_config".into(), json!({"0": 5}));
            },
            &["per_layer_config.0", "an object"],
        ),
        (
            |r| {
                text(r).insert("per_layer_config".into(), json!([1]));
            },
            &["per_layer_config", "an object"],
        ),
        (
            |r| {
                text(r).insert("rope_parameters".into(), json!(10000.0));
            },
            &["rope_parameters", "an object"],
        ),
        (
            |r| r["text_config"]["rope_parameters"]["full_attention"]["rope_type"] = json!(7),
            &["rope_parameters.full_attention.rope_type", "a string"],
        ),
        (
            |r| r["text_config"]["rope_parameters"]["full_attention"]["rope_theta"] = json!("1e6"),
            &["rope_parameters.full_attention.rope_theta", "a number"],
        ),
        (
            |r| r["architectures"] = json!("Gemma4ForCausalLM"),
            &["architectures", "a list of strings"],
        ),
        (|r| r["architectures"] = json!([4]), &["architectures"]),
        (
            |r| r["tie_word_embeddings"] = json!("yes"),
            &["tie_word_embeddings", "true or false"],
        ),
        (
            |r| r["text_config"] = json!([1, 2]),
            &["text_config", "an object"],
        ),
        (
            |r| r["text_config"]["model_type"] = json!(4),
            &["text_config.model_type", "a string"],
        ),
        // A long value is cut in the message.
        (
            |r| {
                text(r).insert("hidden_size".into(), json!("x".repeat(1 << 20)));
            },
            &["hidden_size", "bytes)"],
        ),
        (
            |r| r["text_config"]["layer_types"][0] = json!("y".repeat(1 << 16)),
            &["layer_types", "65538 bytes"],
        ),
    ];
    for (i, (edit, needles)) in cases.iter().enumerate() {
        let mut root = released_config();
        edit(&mut root);
        let err = match Gemma4Config::from_json_str(&root.to_string(), ORIGIN) {
            Ok(_) => panic!("case {i}: accepted, expected an error with {needles:?}"),
            Err(e) => e,
        };
        assert!(
            matches!(err, ConvertError::Config { .. }),
            "case {i}: {err}"
        );
        let msg = err.to_string();
        assert!(!msg.contains('\n') && msg.len() < 1200, "case {i}: {msg}");
        for n in std::iter::once(&ORIGIN).chain(needles.iter()) {
            assert!(msg.contains(n), "case {i}: lacks '{n}': {msg}");
        }
    }
    println!("checked {} config.json cases", cases.len());
}
