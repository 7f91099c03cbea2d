//! Fuzzing the GGUF header and metadata readers (`parse_header`, `GgufFile`, and the gemma4
//! config read from the metadata): mutated valid files and random bytes, a fixed number of
//! cases each. Errors are expected; a panic, a message of several lines or an unbounded one
//! fails. Self-contained: the seed files are generated here.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use convert::gguf::{encode_header, parse_header, Array, GgufFile, Metadata, TensorInfo, Value};
use convert::llama::config_from_gguf;
use kernels::GgmlType;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// A small gemma4 GGUF whose config reads back: 2 layers (sliding, full), hidden 8, 2 query
/// heads, head dims 4 and 8, a 16-token vocabulary; every value type appears in the metadata.
fn gemma4_seed() -> Vec<u8> {
    let mut md = Metadata::new();
    let s = |v: &str| Value::String(v.into());
    md.set("general.architecture", s("gemma4"));
    md.set("general.name", s("fuzz seed"));
    md.set("general.alignment", Value::U32(32));
    for (k, v) in [
        ("block_count", 2),
        ("context_length", 128),
        ("embedding_length", 8),
        ("attention.head_count", 2),
        ("attention.key_length", 8),
        ("attention.key_length_swa", 4),
        ("attention.sliding_window", 16),
        ("attention.shared_kv_layers", 0),
    ] {
        md.set(format!("gemma4.{k}"), Value::U32(v));
    }
    md.set(
        "gemma4.feed_forward_length",
        Value::Array(Array::I32(vec![16, 16])),
    );
    md.set(
        "gemma4.attention.head_count_kv",
        Value::Array(Array::I32(vec![1, 1])),
    );
    md.set("gemma4.rope.freq_base", Value::F32(1e6));
    md.set("gemma4.rope.freq_base_swa", Value::F32(1e4));
    md.set("gemma4.attention.layer_norm_rms_epsilon", Value::F32(1e-6));
    md.set("gemma4.final_logit_softcapping", Value::F64(30.0));
    md.set(
        "gemma4.attention.sliding_window_pattern",
        Value::Array(Array::Bool(vec![true, false])),
    );
    md.set(
        "tokenizer.ggml.tokens",
        Value::Array(Array::String((0..16).map(|i| format!("t{i}")).collect())),
    );
    md.set("tokenizer.ggml.bos_token_id", Value::U32(2));
    md.set("tokenizer.ggml.eos_token_id", Value::I64(1));
    md.set("x.u8", Value::U8(1));
    md.set("x.i8", Value::I8(-1));
    md.set("x.u16", Value::U16(2));
    md.set("x.i16", Value::I16(-2));
    md.set("x.bool", Value::Bool(true));
    md.set("x.list", Value::Array(Array::F64(vec![0.5, 1.5])));
    let mut tensors = vec![
        TensorInfo::from_torch_shape("rope_freqs.weight", &[4], GgmlType::F32),
        TensorInfo::from_torch_shape("token_embd.weight", &[16, 8], GgmlType::F32),
        TensorInfo::from_torch_shape("blk.0.attn_q.weight", &[8, 8], GgmlType::F32),
        TensorInfo::from_torch_shape("blk.0.attn_k.weight", &[4, 8], GgmlType::F32),
        TensorInfo::from_torch_shape("blk.1.attn_q.weight", &[16, 8], GgmlType::F32),
        TensorInfo::from_torch_shape("blk.1.ffn_up.weight", &[16, 8], GgmlType::F32),
        TensorInfo::from_torch_shape("blk.1.extra.weight", &[2, 32], GgmlType::Q8_0),
    ];
    let mut bytes = encode_header(&md, &mut tensors, Path::new("seed.gguf")).unwrap();
    for t in &tensors {
        let mut data = vec![0u8; t.n_bytes() as usize];
        if t.name == "rope_freqs.weight" {
            for (i, c) in data.chunks_exact_mut(4).enumerate() {
                c.copy_from_slice(&(if i < 1 { 1f32 } else { 1e30 }).to_le_bytes());
            }
        }
        bytes.extend(&data);
        bytes.resize(bytes.len().next_multiple_of(32), 0);
    }
    bytes
}

/// One way to corrupt a file.
#[derive(Clone, Debug)]
enum Mutation {
    /// Flip one bit at a relative position.
    Flip(f64, u8),
    /// Overwrite 8 bytes at a relative position with an interesting little-endian value.
    Word(f64, u64),
    /// Overwrite 4 bytes.
    Half(f64, u32),
    /// Cut the file at a relative length.
    Truncate(f64),
    /// Insert bytes at a relative position.
    Insert(f64, Vec<u8>),
}

fn interesting_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(i64::MAX as u64),
        Just(1 << 31),
        Just(1 << 32),
        Just(1 << 60),
        Just(u32::MAX as u64),
        0u64..64,
        any::<u64>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0.0f64..1.0;
    prop_oneof![
        4 => (at.clone(), 0u8..8).prop_map(|(p, b)| Mutation::Flip(p, b)),
        3 => (at.clone(), interesting_u64()).prop_map(|(p, v)| Mutation::Word(p, v)),
        3 => (at.clone(), interesting_u64()).prop_map(|(p, v)| Mutation::Half(p, v as u32)),
        1 => at.clone().prop_map(Mutation::Truncate),
        1 => (at, proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(p, b)| Mutation::Insert(p, b)),
    ]
}

/// Mutations land mostly in the header, where the parsing happens.
fn apply(bytes: &mut Vec<u8>, header_len: usize, m: &Mutation) {
    let pos = |p: f64, width: usize| {
        let span = header_len.min(bytes.len()).saturating_sub(width).max(1);
        ((p * span as f64) as usize).min(bytes.len().saturating_sub(width))
    };
    match m {
        Mutation::Flip(p, bit) if !bytes.is_empty() => {
            let i = pos(*p, 1);
            bytes[i] ^= 1 << bit;
        }
        Mutation::Word(p, v) if bytes.len() >= 8 => {
            let i = pos(*p, 8);
            bytes[i..i + 8].copy_from_slice(&v.to_le_bytes());
        }
        Mutation::Half(p, v) if bytes.len() >= 4 => {
            let i = pos(*p, 4);
            bytes[i..i + 4].copy_from_slice(&v.to_le_bytes());
        }
        Mutation::Truncate(p) => bytes.truncate((p * bytes.len() as f64) as usize),
        Mutation::Insert(p, b) => {
            let i = pos(*p, 0);
            bytes.splice(i..i, b.iter().copied());
        }
        _ => {}
    }
}

/// Runs every reader over `bytes`; panics only if a reader panics or an error message is not
/// one bounded line. Returns whether the header parsed.
fn read_all(bytes: Vec<u8>) -> bool {
    let path = Path::new("fuzz.gguf");
    let check = |msg: String| {
        assert!(!msg.contains('\n'), "message of several lines: {msg}");
        assert!(msg.len() <= 1200, "message of {} bytes", msg.len());
    };
    let header = parse_header(&bytes, path);
    let f = match (header, GgufFile::from_bytes(path, bytes)) {
        (Ok(_), Ok(f)) => f,
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string());
            check(a.to_string());
            return false;
        }
        _ => panic!("parse_header and GgufFile disagree"),
    };
    for t in f.tensors() {
        let data = f.tensor_data(&t.name).unwrap();
        assert_eq!(data.len() as u64, t.n_bytes());
    }
    for (_, v) in f.metadata().iter() {
        let _ = (v.to_string(), v.type_name(), v.as_u64(), v.as_f64());
    }
    match config_from_gguf(&f) {
        Ok(cfg) => {
            for l in 0..cfg.num_hidden_layers {
                let _ = (
                    cfg.head_dim_of(l),
                    cfg.kv_source_layer(l),
                    cfg.intermediate_size_of(l),
                );
            }
        }
        Err(e) => check(e.to_string()),
    }
    true
}

const CASES: u32 = 20_000;

#[test]
fn fuzz_gguf_mutated_seed() {
    let seed = gemma4_seed();
    let header_len = parse_header(&seed, Path::new("seed.gguf"))
        .unwrap()
        .data_offset as usize;
    config_from_gguf(&GgufFile::from_bytes(Path::new("seed.gguf"), seed.clone()).unwrap())
        .expect("the seed's config reads back");
    let (runs, parsed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(mutation(), 1..6), |muts| {
            let mut bytes = seed.clone();
            for m in &muts {
                apply(&mut bytes, header_len, m);
            }
            runs.fetch_add(1, Relaxed);
            if read_all(bytes) {
                parsed.fetch_add(1, Relaxed);
            }
            Ok(())
        })
        .unwrap();
    println!(
        "fuzz_gguf_mutated_seed: {} executions, {} parsed, 0 panics",
        runs.into_inner(),
        parsed.into_inner()
    );
}

/// Metadata values of every type and size, for the keys the gemma4 config reads.
fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        interesting_u64().prop_map(|v| Value::U32(v as u32)),
        interesting_u64().prop_map(Value::U64),
        interesting_u64().prop_map(|v| Value::I32(v as i32)),
        interesting_u64().prop_map(|v| Value::I64(v as i64)),
        any::<u8>().prop_map(Value::U8),
        prop_oneof![
            Just(0.0f32),
            Just(-1.0),
            Just(f32::NAN),
            Just(f32::INFINITY),
            Just(1e-45),
            any::<f32>()
        ]
        .prop_map(Value::F32),
        any::<f64>().prop_map(Value::F64),
        any::<bool>().prop_map(Value::Bool),
        ".{0,40}".prop_map(Value::String),
        proptest::collection::vec(any::<i32>(), 0..5).prop_map(|v| Value::Array(Array::I32(v))),
        proptest::collection::vec(0u32..64, 0..5).prop_map(|v| Value::Array(Array::U32(v))),
        proptest::collection::vec(any::<bool>(), 0..5).prop_map(|v| Value::Array(Array::Bool(v))),
        proptest::collection::vec(".{0,4}", 0..20).prop_map(|v| Value::Array(Array::String(v))),
    ]
}

const KEYS: &[&str] = &[
    "general.architecture",
    "gemma4.block_count",
    "gemma4.context_length",
    "gemma4.embedding_length",
    "gemma4.feed_forward_length",
    "gemma4.attention.head_count",
    "gemma4.attention.head_count_kv",
    "gemma4.attention.key_length",
    "gemma4.attention.key_length_swa",
    "gemma4.attention.sliding_window",
    "gemma4.attention.sliding_window_pattern",
    "gemma4.attention.shared_kv_layers",
    "gemma4.attention.layer_norm_rms_epsilon",
    "gemma4.rope.freq_base",
    "gemma4.rope.freq_base_swa",
    "gemma4.final_logit_softcapping",
    "gemma4.embedding_length_per_layer_input",
    "gemma4.expert_count",
    "gemma4.expert_used_count",
    "gemma4.expert_feed_forward_length",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.padding_token_id",
];

#[test]
fn fuzz_gguf_metadata_values() {
    let seed = gemma4_seed();
    let base = GgufFile::from_bytes(Path::new("seed.gguf"), seed).unwrap();
    let (runs, accepted) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let edit = (proptest::sample::select(KEYS), any_value());
    runner
        .run(&proptest::collection::vec(edit, 1..4), |edits| {
            let mut md = base.metadata().clone();
            for (k, v) in &edits {
                md.set(*k, v.clone());
            }
            let mut tensors = base.tensors().to_vec();
            let mut bytes = encode_header(&md, &mut tensors, Path::new("fuzz.gguf")).unwrap();
            for t in base.tensors() {
                bytes.extend(base.tensor_data(&t.name).unwrap());
                bytes.resize(bytes.len().next_multiple_of(32), 0);
            }
            runs.fetch_add(1, Relaxed);
            let f = GgufFile::from_bytes(Path::new("fuzz.gguf"), bytes).unwrap();
            match config_from_gguf(&f) {
                Ok(_) => {
                    accepted.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    let msg = e.to_string();
                    assert!(!msg.contains('\n') && msg.len() <= 1200, "{msg}");
                }
            }
            Ok(())
        })
        .unwrap();
    println!(
        "fuzz_gguf_metadata_values: {} executions, {} configs accepted, 0 panics",
        runs.into_inner(),
        accepted.into_inner()
    );
}

#[test]
fn fuzz_gguf_random_bytes() {
    let runs = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    // Random bytes behind a valid magic and version, so the parser gets past the first check.
    let body = proptest::collection::vec(any::<u8>(), 0..512);
    runner
        .run(&(any::<bool>(), body), |(prefix, body)| {
            let mut bytes = if prefix {
                b"GGUF\x03\0\0\0".to_vec()
            } else {
                Vec::new()
            };
            bytes.extend(body);
            runs.fetch_add(1, Relaxed);
            read_all(bytes);
            Ok(())
        })
        .unwrap();
    println!(
        "fuzz_gguf_random_bytes: {} executions, 0 panics",
        runs.into_inner()
    );
}
