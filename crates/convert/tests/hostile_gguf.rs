//! Hostile GGUF metadata: the fixture E2B GGUF rewritten with one lying key per case, and
//! headers generated here (200k tensors, 200k keys, 100k dimensions, a 1 MB key). Each must be
//! an error naming the file and the key or tensor, in one line of bounded length, quickly, with
//! nothing sized by the lie allocated.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use convert::gguf::{
    encode_header, parse_header, Array, GgufFile, GgufWriter, Metadata, TensorInfo, Value,
};
use convert::llama::config_from_gguf;
use kernels::GgmlType;

/// The E2B fixture converted to F32 (byte-identical to llama.cpp's conversion, which the bundled
/// oracle set leaves out): a gemma4 GGUF whose config reads back cleanly. Written once per test
/// binary.
fn fixture_gguf() -> PathBuf {
    static PATH: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("e2b-f32.gguf");
        let ckpt = convert::Checkpoint::open(&testkit::fixtures_dir().join("e2b-s0/released-bf16"))
            .expect("fixture opens");
        convert::llama::write_unquantized(&ckpt, &out, GgmlType::F32).expect("F32 conversion");
        (dir, out)
    })
    .1
    .clone()
}

/// `src` rewritten into `dir/NAME.gguf` with its metadata passed through `edit`, tensors and
/// their data unchanged.
fn rewrite(dir: &Path, name: &str, edit: impl FnOnce(&mut Metadata)) -> PathBuf {
    let src = GgufFile::open(&fixture_gguf()).expect("fixture GGUF opens");
    let mut md = src.metadata().clone();
    edit(&mut md);
    let out = dir.join(format!("{name}.gguf"));
    let mut w = GgufWriter::create(&out, &md, src.tensors().to_vec()).expect("create");
    for t in src.tensors() {
        w.write_tensor(&t.name, src.tensor_data(&t.name).unwrap())
            .expect("write tensor");
    }
    w.finish().expect("finish");
    out
}

/// The config error of `path`: one line, at most 1.2 KB, holding the file name and `needles`.
fn config_err(path: &Path, needles: &[&str]) -> String {
    let f = GgufFile::open(path).expect("the header itself is well formed");
    let msg = match config_from_gguf(&f) {
        Ok(_) => panic!("{}: a lying config was accepted", path.display()),
        Err(e) => e.to_string(),
    };
    assert!(!msg.contains('\n'), "not one line: {msg}");
    assert!(msg.len() < 1200, "{} bytes: {msg}", msg.len());
    let file = path.file_name().unwrap().to_str().unwrap();
    for n in std::iter::once(&file).chain(needles) {
        assert!(msg.contains(n), "error lacks '{n}': {msg}");
    }
    msg
}

#[test]
fn the_untouched_rewrite_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let path = rewrite(tmp.path(), "same", |_| {});
    let back = config_from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
    let orig = config_from_gguf(&GgufFile::open(&fixture_gguf()).unwrap()).unwrap();
    assert_eq!(back, orig);
}

/// Defect 1: sizes from metadata that the tensors do not back are refused before anything is
/// allocated by them, whether they are absurd or merely wrong.
#[test]
fn sizes_the_tensors_do_not_back() {
    let tmp = tempfile::tempdir().unwrap();
    let u32v = |v: u32| Value::U32(v);
    let cases: Vec<(&str, &str, Value, &[&str])> = vec![
        (
            "key_length_2p31",
            "gemma4.attention.key_length",
            u32v(1 << 31),
            &["2147483648"],
        ),
        (
            "key_length_2p20",
            "gemma4.attention.key_length",
            u32v(1 << 20),
            &["rope_freqs.weight"],
        ),
        (
            "key_length_swa",
            "gemma4.attention.key_length_swa",
            u32v(1 << 16),
            &["blk.0.attn_q.weight", "shape"],
        ),
        (
            "embedding",
            "gemma4.embedding_length",
            u32v(1 << 20),
            &["token_embd.weight", "shape"],
        ),
        (
            "heads",
            "gemma4.attention.head_count",
            u32v(1 << 12),
            &["blk.0.attn_q.weight"],
        ),
        (
            "ffn",
            "gemma4.feed_forward_length",
            u32v(1 << 19),
            &["blk.0.ffn_gate.weight", "524288"],
        ),
        (
            "window",
            "gemma4.attention.sliding_window",
            u32v(u32::MAX),
            &["sliding_window", "out of range"],
        ),
        (
            "context",
            "gemma4.context_length",
            Value::U64(1 << 40),
            &["max_position_embeddings", "out of range"],
        ),
        (
            "block_count",
            "gemma4.block_count",
            Value::U64(1 << 33),
            &["gemma4.block_count", "out of range"],
        ),
    ];
    for (name, key, value, needles) in &cases {
        let path = rewrite(tmp.path(), name, |md| md.set(*key, value.clone()));
        let start = Instant::now();
        config_err(&path, needles);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{name} took {:?}",
            start.elapsed()
        );
    }
    println!("sizes_the_tensors_do_not_back: {} cases", cases.len());
}

/// Defect 5: an empty per-layer list (with `block_count = 0`, or a list shorter than the
/// layers) is an error, never an index panic.
#[test]
fn empty_per_layer_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = config_from_gguf(&GgufFile::open(&fixture_gguf()).unwrap())
        .unwrap()
        .num_hidden_layers;
    let mut n = 0;
    for key in [
        "gemma4.attention.head_count_kv",
        "gemma4.feed_forward_length",
    ] {
        let list = |v: Vec<i32>| move |md: &mut Metadata| md.set(key, Value::Array(Array::I32(v)));
        let path = rewrite(tmp.path(), &format!("zero{n}"), |md| {
            md.set("gemma4.block_count", Value::U32(0));
            md.set(
                "gemma4.attention.sliding_window_pattern",
                Value::Array(Array::Bool(vec![])),
            );
            list(vec![])(md);
        });
        config_err(&path, &["gemma4.block_count", "out of range"]);
        let path = rewrite(tmp.path(), &format!("empty{n}"), list(vec![]));
        config_err(&path, &[key, "0 entries"]);
        let mut negative = vec![1i32; layers];
        negative[layers - 1] = -1;
        let path = rewrite(tmp.path(), &format!("negative{n}"), list(negative));
        config_err(&path, &[key, "negative"]);
        n += 1;
    }
    println!("empty_per_layer_lists: {} cases", 3 * n);
}

/// Defect 13 (GGUF side) and issue 13 item 4: absurd floats and keys of the wrong type are
/// errors naming the key, not NaN logits or a silent default.
#[test]
fn absurd_or_mistyped_values() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, &str, Value, &[&str])> = vec![
        (
            "theta0",
            "gemma4.rope.freq_base",
            Value::F32(0.0),
            &["rope_theta", "positive"],
        ),
        (
            "theta_neg",
            "gemma4.rope.freq_base_swa",
            Value::F32(-1e4),
            &["rope_theta", "positive"],
        ),
        (
            "theta_nan",
            "gemma4.rope.freq_base",
            Value::F32(f32::NAN),
            &["rope_theta"],
        ),
        (
            "theta_big",
            "gemma4.rope.freq_base",
            Value::F64(1e300),
            &["rope_theta"],
        ),
        (
            "eps_neg",
            "gemma4.attention.layer_norm_rms_epsilon",
            Value::F32(-1e-6),
            &["rms_norm_eps"],
        ),
        (
            "eps_inf",
            "gemma4.attention.layer_norm_rms_epsilon",
            Value::F32(f32::INFINITY),
            &["rms_norm_eps"],
        ),
        (
            "cap_neg",
            "gemma4.final_logit_softcapping",
            Value::F32(-30.0),
            &["final_logit_softcapping"],
        ),
        (
            "eps_string",
            "gemma4.attention.layer_norm_rms_epsilon",
            Value::String("1e-6".into()),
            &["gemma4.attention.layer_norm_rms_epsilon", "STRING"],
        ),
        (
            "theta_int",
            "gemma4.rope.freq_base",
            Value::U32(10000),
            &["gemma4.rope.freq_base", "UINT32"],
        ),
        (
            "heads_float",
            "gemma4.attention.head_count",
            Value::F32(8.0),
            &["gemma4.attention.head_count", "FLOAT32"],
        ),
        (
            "heads_neg",
            "gemma4.attention.head_count",
            Value::I32(-8),
            &["gemma4.attention.head_count", "INT32"],
        ),
        (
            "pattern_u8",
            "gemma4.attention.sliding_window_pattern",
            Value::Array(Array::U8(vec![1; 35])),
            &["sliding_window_pattern", "ARRAY[BOOL]"],
        ),
        (
            "kv_strings",
            "gemma4.attention.head_count_kv",
            Value::Array(Array::String(vec!["1".into()])),
            &["head_count_kv", "ARRAY[STRING]"],
        ),
        (
            "bos_big",
            "tokenizer.ggml.bos_token_id",
            Value::U64(1 << 40),
            &["tokenizer.ggml.bos_token_id"],
        ),
        (
            "eos_out",
            "tokenizer.ggml.eos_token_id",
            Value::U32(1 << 30),
            &["eos_token_id", "outside the vocabulary"],
        ),
        (
            "arch_int",
            "general.architecture",
            Value::U32(4),
            &["general.architecture"],
        ),
    ];
    for (name, key, value, needles) in &cases {
        let path = rewrite(tmp.path(), name, |md| md.set(*key, value.clone()));
        config_err(&path, needles);
    }
    println!("absurd_or_mistyped_values: {} cases", cases.len());
}

/// A header of `n` F32 `[1]` tensors named `t{i}` (no metadata), with its data.
fn many_tensors(n: usize, duplicate_last: bool) -> Vec<u8> {
    let mut tensors: Vec<TensorInfo> = (0..n)
        .map(|i| {
            let name = if duplicate_last && i == n - 1 {
                "t0".to_string()
            } else {
                format!("t{i}")
            };
            TensorInfo::from_torch_shape(name, &[1], GgmlType::F32)
        })
        .collect();
    let mut bytes = encode_header(&Metadata::new(), &mut tensors, Path::new("many.gguf")).unwrap();
    bytes.resize(bytes.len() + n * 32, 0);
    bytes
}

/// A GGUF v3 header of `n` UINT8 keys named `k{i}` and no tensor, encoded by hand (the
/// metadata list of the library keeps llama.cpp's "set moves the key" order, which costs a
/// scan per key to build).
fn many_keys(n: usize, duplicate_last: bool) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend((n as u64).to_le_bytes());
    for i in 0..n {
        let key = if duplicate_last && i == n - 1 {
            "k0".to_string()
        } else {
            format!("k{i}")
        };
        b.extend((key.len() as u64).to_le_bytes());
        b.extend(key.as_bytes());
        b.extend(0u32.to_le_bytes());
        b.push(7);
    }
    b
}

/// Defect 4: parsing is linear in the number of tensors and keys. 200k of each parse in well
/// under a second in release (the per-entry scan took minutes); a duplicate at the very end is
/// still found, and every tensor is found by name in constant time.
#[test]
fn two_hundred_thousand_entries_parse_fast() {
    const N: usize = 200_000;
    let bytes = many_tensors(N, false);
    let start = Instant::now();
    let h = parse_header(&bytes, Path::new("many.gguf")).unwrap();
    for i in (0..N).step_by(7) {
        assert!(h.tensor(&format!("t{i}")).is_some());
    }
    let tensors_time = start.elapsed();
    let e = parse_header(&many_tensors(N, true), Path::new("many.gguf")).unwrap_err();
    assert!(e.to_string().contains("duplicate tensor 't0'"), "{e}");

    let keys = many_keys(N, false);
    let start = Instant::now();
    let h = parse_header(&keys, Path::new("keys.gguf")).unwrap();
    assert_eq!(h.metadata.len(), N);
    let keys_time = start.elapsed();
    let e = parse_header(&many_keys(N, true), Path::new("keys.gguf")).unwrap_err();
    assert!(e.to_string().contains("duplicate metadata key 'k0'"), "{e}");
    println!(
        "{N} tensors ({} MB) parsed in {tensors_time:?}, {N} keys ({} MB) in {keys_time:?}",
        bytes.len() >> 20,
        keys.len() >> 20
    );
    assert!(tensors_time < Duration::from_secs(3), "{tensors_time:?}");
    assert!(keys_time < Duration::from_secs(3), "{keys_time:?}");
}

/// Defect 18 (GGUF half): 100k dimensions, a 1 MB key, a 1 MB string value and a long
/// tensor name each give one short line.
#[test]
fn long_values_are_cut_in_messages() {
    let mut checked = 0;
    let short = |bytes: &[u8], needles: &[&str]| {
        let msg = parse_header(bytes, Path::new("long.gguf"))
            .unwrap_err()
            .to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.len() < 400, "{} bytes: {}", msg.len(), &msg[..400]);
        for n in needles {
            assert!(msg.contains(n), "lacks '{n}': {msg}");
        }
    };
    // 100k dimensions: the count is refused before any dimension is read.
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.push(b'x');
    b.extend(100_000u32.to_le_bytes());
    b.extend(vec![1u8; 800_000]);
    short(&b, &["long.gguf", "'x'", "100000 dimensions", "1 to 4"]);
    checked += 1;
    // A 1 MB key with an unknown value type, and one that is a duplicate.
    let key = "k".repeat(1 << 20);
    for (tag, needle) in [(99u32, "unknown value type 99"), (7, "bool byte 9")] {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.extend((key.len() as u64).to_le_bytes());
        b.extend(key.as_bytes());
        b.extend(tag.to_le_bytes());
        b.extend([9u8; 16]);
        short(&b, &[needle, "1048576 bytes"]);
        checked += 1;
    }
    // A 1 MB string as general.alignment.
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    let k = "general.alignment";
    b.extend((k.len() as u64).to_le_bytes());
    b.extend(k.as_bytes());
    b.extend(8u32.to_le_bytes());
    b.extend((1u64 << 20).to_le_bytes());
    b.extend(vec![b'a'; 1 << 20]);
    short(&b, &["general.alignment", "1048578 bytes"]);
    checked += 1;
    // A tensor name of 1 MB.
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend((1u64 << 20).to_le_bytes());
    b.extend(vec![b'n'; 1 << 20]);
    b.extend(vec![0u8; 64]);
    short(&b, &["tensor name", "longer than 63 bytes"]);
    checked += 1;
    // A key with a line break (found by fuzz_gguf): escaped, the message stays one line.
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(5u64.to_le_bytes());
    b.extend(b"ab\ncd");
    b.extend(99u32.to_le_bytes());
    short(&b, &["'ab\\ncd'", "unknown value type 99"]);
    checked += 1;
    println!("long_values_are_cut_in_messages: {checked} cases");
}
