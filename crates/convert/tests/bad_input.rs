//! Bad input: a fixture checkpoint copied into a temporary folder and corrupted, one way per
//! test. Each must fail with one clear line naming the file (and the tensor where there is
//! one), never a panic and never a silent success.

use std::path::{Path, PathBuf};

use convert::{Checkpoint, ConvertError};
use serde_json::{json, Value};
use testkit::copy_checkpoint;
use testkit::safetensors_file::{
    edit_index, edit_text_config, read_entries, read_safetensors, shard_in_two, write_entries,
    write_safetensors, Entry,
};

const WEIGHTS: &str = "model.safetensors";
const GATE0: &str = "model.language_model.layers.0.mlp.gate_proj.weight";

/// The fixture checkpoint the tests corrupt: the released-layout E2B one.
fn e2b_released() -> PathBuf {
    testkit::fixtures_dir().join("e2b-s0/released-bf16")
}

/// Opens `dir`, expects an error, checks it is one line holding every `needles` entry.
fn open_err(dir: &Path, needles: &[&str]) -> ConvertError {
    let err = match Checkpoint::open(dir) {
        Ok(_) => panic!("{} opened, but it is corrupt", dir.display()),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "error is not one line: {msg}");
    for n in needles {
        assert!(msg.contains(n), "error lacks '{n}': {msg}");
    }
    err
}

/// Rewrites the header of `dir/model.safetensors` through `edit`, keeping the data bytes.
fn edit_header(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join(WEIGHTS);
    let (mut header, data) = read_safetensors(&path);
    edit(&mut header);
    write_safetensors(&path, &header, &data);
}

fn offsets(header: &serde_json::Map<String, Value>, name: &str) -> (u64, u64) {
    let o = &header[name]["data_offsets"];
    (o[0].as_u64().unwrap(), o[1].as_u64().unwrap())
}

#[test]
fn the_untouched_copy_opens() {
    let tmp = copy_checkpoint(&e2b_released());
    let ck = Checkpoint::open(tmp.path()).unwrap();
    assert!(ck.has("layers.0.mlp.gate_proj.weight"));
}

#[test]
fn truncated_file() {
    let tmp = copy_checkpoint(&e2b_released());
    let path = tmp.path().join(WEIGHTS);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    open_err(tmp.path(), &[WEIGHTS, "past the end", "truncated"]);
    // Cut inside the header, and below the 8-byte length.
    std::fs::write(&path, &bytes[..100]).unwrap();
    open_err(tmp.path(), &[WEIGHTS, "past the end of the file"]);
    std::fs::write(&path, &bytes[..5]).unwrap();
    open_err(tmp.path(), &[WEIGHTS, "too short"]);
}

#[test]
fn header_offsets_past_the_end() {
    let tmp = copy_checkpoint(&e2b_released());
    edit_header(tmp.path(), |h| {
        let (s, e) = offsets(h, GATE0);
        h[GATE0]["data_offsets"] = json!([s + (1 << 40), e + (1 << 40)]);
    });
    open_err(tmp.path(), &[WEIGHTS, GATE0, "past the end of the data"]);
}

#[test]
fn overlapping_offsets() {
    let tmp = copy_checkpoint(&e2b_released());
    let up0 = "model.language_model.layers.0.mlp.up_proj.weight";
    edit_header(tmp.path(), |h| {
        // Point up_proj at gate_proj's bytes, shifted by one element: same size, overlapping.
        let (s, e) = offsets(h, GATE0);
        h[up0]["data_offsets"] = json!([s + 2, e + 2]);
    });
    open_err(tmp.path(), &[WEIGHTS, "overlap", "mlp."]);
}

#[test]
fn huge_header_length() {
    let tmp = copy_checkpoint(&e2b_released());
    let path = tmp.path().join(WEIGHTS);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    open_err(tmp.path(), &[WEIGHTS, "implausibly large"]);
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    open_err(tmp.path(), &[WEIGHTS, "implausibly large"]);
}

#[test]
fn header_that_is_not_json() {
    let tmp = copy_checkpoint(&e2b_released());
    let path = tmp.path().join(WEIGHTS);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8] = b'#';
    std::fs::write(&path, &bytes).unwrap();
    open_err(tmp.path(), &[WEIGHTS, "not valid JSON"]);
}

#[test]
fn shape_disagreeing_with_config() {
    let tmp = copy_checkpoint(&e2b_released());
    edit_text_config(tmp.path(), |t| {
        t.insert("intermediate_size".into(), json!(72));
    });
    open_err(
        tmp.path(),
        &[
            WEIGHTS,
            "layers.0.mlp.down_proj",
            "[128, 64]",
            "[128, 72]",
            "config.json",
        ],
    );
}

#[test]
fn shape_in_header_disagreeing_with_config() {
    let tmp = copy_checkpoint(&e2b_released());
    let path = tmp.path().join(WEIGHTS);
    let mut entries = read_entries(&path);
    let gate = entries.iter_mut().find(|e| e.name == GATE0).unwrap();
    gate.shape = vec![128, 64];
    write_entries(&path, &entries);
    open_err(tmp.path(), &[GATE0, "[128, 64]", "[64, 128]"]);
}

#[test]
fn unsupported_dtype() {
    let tmp = copy_checkpoint(&e2b_released());
    edit_header(tmp.path(), |h| {
        h[GATE0]["dtype"] = json!("I16");
    });
    open_err(tmp.path(), &[GATE0, "dtype I16 is not supported"]);
}

#[test]
fn missing_and_unknown_tensors() {
    let tmp = copy_checkpoint(&e2b_released());
    let path = tmp.path().join(WEIGHTS);
    let entries = read_entries(&path);
    let without: Vec<Entry> = entries
        .iter()
        .filter(|e| e.name != GATE0)
        .cloned()
        .collect();
    write_entries(&path, &without);
    open_err(tmp.path(), &[WEIGHTS, GATE0, "missing"]);

    let mut extra = entries.clone();
    extra.push(Entry {
        name: "model.language_model.layers.0.mlp.extra.weight".into(),
        dtype: "BF16".into(),
        shape: vec![4],
        bytes: vec![0; 8],
    });
    write_entries(&path, &extra);
    open_err(
        tmp.path(),
        &["layers.0.mlp.extra.weight", "unexpected text tensor"],
    );

    extra.pop();
    extra.push(Entry {
        name: "decoder.weight".into(),
        dtype: "BF16".into(),
        shape: vec![4],
        bytes: vec![0; 8],
    });
    write_entries(&path, &extra);
    open_err(tmp.path(), &["decoder.weight", "not a Gemma 4 tensor name"]);
}

#[test]
fn sharded_checkpoint_opens_like_the_single_file() {
    let tmp = copy_checkpoint(&e2b_released());
    shard_in_two(tmp.path());
    let sharded = Checkpoint::open(tmp.path()).unwrap();
    let single = Checkpoint::open(&e2b_released()).unwrap();
    assert_eq!(sharded.files().count(), 2);
    assert_eq!(sharded.text_tensors(), single.text_tensors());
    for name in single.text_tensors() {
        let (a, b) = (sharded.tensor(name).unwrap(), single.tensor(name).unwrap());
        assert_eq!(a.data, b.data, "{name}");
    }
}

#[test]
fn missing_shard() {
    let tmp = copy_checkpoint(&e2b_released());
    let (_, second) = shard_in_two(tmp.path());
    std::fs::remove_file(tmp.path().join(&second)).unwrap();
    open_err(
        tmp.path(),
        &["model.safetensors.index.json", &second, "missing"],
    );
}

#[test]
fn index_naming_a_missing_tensor() {
    let tmp = copy_checkpoint(&e2b_released());
    let (first, _) = shard_in_two(tmp.path());
    let ghost = "model.language_model.layers.0.self_attn.ghost.weight";
    edit_index(tmp.path(), |m| {
        m.insert(ghost.into(), json!(first));
    });
    open_err(tmp.path(), &[&first, ghost, "does not hold it"]);
}

#[test]
fn tensor_in_two_shards_or_not_indexed() {
    let tmp = copy_checkpoint(&e2b_released());
    let (first, second) = shard_in_two(tmp.path());
    let p1 = tmp.path().join(&first);
    let p2 = tmp.path().join(&second);
    let one = read_entries(&p1);
    let mut two = read_entries(&p2);
    two.push(one[0].clone());
    write_entries(&p2, &two);
    open_err(tmp.path(), &[&one[0].name, "also stored in"]);

    two.pop();
    write_entries(&p2, &two);
    edit_index(tmp.path(), |m| {
        m.remove(&one[0].name);
    });
    open_err(tmp.path(), &[&first, &one[0].name, "not listed"]);

    edit_index(tmp.path(), |m| {
        m.insert(one[0].name.clone(), json!("../elsewhere.safetensors"));
    });
    open_err(tmp.path(), &["index.json", "not a plain file name"]);
}

#[test]
fn nan_in_a_weight_is_reported_on_read() {
    let tmp = copy_checkpoint(&e2b_released());
    let path = tmp.path().join(WEIGHTS);
    let mut entries = read_entries(&path);
    let gate = entries.iter_mut().find(|e| e.name == GATE0).unwrap();
    // bf16 NaN at element 130 (row 1, column 2).
    gate.bytes[260..262].copy_from_slice(&0x7fc0u16.to_le_bytes());
    write_entries(&path, &entries);
    let ck = Checkpoint::open(tmp.path()).unwrap();
    let t = ck.tensor("layers.0.mlp.gate_proj.weight").unwrap();
    let msg = t.to_f32().unwrap_err().to_string();
    assert_eq!(t.check_finite().unwrap_err().to_string(), msg);
    for n in [
        WEIGHTS,
        "layers.0.mlp.gate_proj.weight",
        "NaN",
        "row 1, column 2",
    ] {
        assert!(msg.contains(n), "error lacks '{n}': {msg}");
    }
    let mut row = vec![0f32; 128];
    assert!(t.rows_to_f32(0, 1, &mut row).is_ok());
    assert!(t.rows_to_f32(1, 1, &mut row).is_err());
}

#[test]
fn unknown_variant_features() {
    type Edit = Box<dyn Fn(&mut serde_json::Map<String, Value>)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "rope type",
            Box::new(|t| {
                t["rope_parameters"]["full_attention"]["rope_type"] = json!("yarn");
            }),
            "rope type 'yarn'",
        ),
        (
            "layer type",
            Box::new(|t| {
                t["layer_types"][2] = json!("chunked_attention");
            }),
            "unknown layer type",
        ),
        (
            "attention softcap",
            Box::new(|t| {
                t.insert("attn_logit_softcapping".into(), json!(50.0));
            }),
            "attn_logit_softcapping",
        ),
        (
            "activation",
            Box::new(|t| {
                t.insert("hidden_activation".into(), json!("relu"));
            }),
            "hidden_activation 'relu'",
        ),
        (
            "model type",
            Box::new(|t| {
                t.insert("model_type".into(), json!("gemma3_text"));
            }),
            "not Gemma 4",
        ),
        (
            "shared layers",
            Box::new(|t| {
                t.insert("num_kv_shared_layers".into(), json!(10));
            }),
            "num_kv_shared_layers",
        ),
    ];
    for (what, edit, needle) in &cases {
        let tmp = copy_checkpoint(&e2b_released());
        edit_text_config(tmp.path(), |t| edit(t));
        let err = open_err(tmp.path(), &["config.json", needle]);
        assert!(matches!(err, ConvertError::Config { .. }), "{what}: {err}");
    }
    println!("checked {} cases", cases.len());
}

#[test]
fn missing_files() {
    let tmp = copy_checkpoint(&e2b_released());
    std::fs::remove_file(tmp.path().join(WEIGHTS)).unwrap();
    open_err(tmp.path(), &["neither model.safetensors nor"]);
    std::fs::remove_file(tmp.path().join("config.json")).unwrap();
    open_err(tmp.path(), &["config.json"]);
}

#[test]
fn random_header_corruption_never_panics() {
    use rand::{Rng, SeedableRng};
    use std::os::unix::fs::FileExt;

    let tmp = copy_checkpoint(&e2b_released());
    let path = tmp.path().join(WEIGHTS);
    let original = std::fs::read(&path).unwrap();
    let header_end = 8 + u64::from_le_bytes(original[..8].try_into().unwrap()) as usize;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    let (mut rejected, mut accepted) = (0, 0);
    for round in 0..400 {
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut touched = Vec::new();
        if round % 20 == 19 {
            file.set_len(rng.gen_range(0..original.len() as u64))
                .unwrap();
        } else {
            // Digits and JSON punctuation break a header in the most interesting ways.
            const BYTES: &[u8] = b"0123456789[]{},:\"-. eE";
            for _ in 0..rng.gen_range(1..=3) {
                let at = rng.gen_range(0..header_end);
                let b = if rng.gen_bool(0.7) {
                    BYTES[rng.gen_range(0..BYTES.len())]
                } else {
                    rng.gen()
                };
                file.write_at(&[b], at as u64).unwrap();
                touched.push(at);
            }
        }
        match Checkpoint::open(tmp.path()) {
            Ok(_) => accepted += 1,
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "round {round}: {msg}");
                rejected += 1;
            }
        }
        // Restore.
        if touched.is_empty() {
            std::fs::write(&path, &original).unwrap();
        } else {
            for at in touched {
                file.write_at(&original[at..at + 1], at as u64).unwrap();
            }
        }
    }
    println!("checked 400 cases: {rejected} rejected, {accepted} accepted");
    assert!(rejected > 300);
}

/// A shape of a million dimensions (a 2 MB header) is refused by its rank, naming the tensor,
/// before a list of that length is held; the error line stays short.
#[test]
fn shape_with_a_million_dimensions() {
    let tmp = copy_checkpoint(&e2b_released());
    edit_header(tmp.path(), |h| {
        h[GATE0]["shape"] = Value::Array(vec![json!(1); 1_000_000]);
    });
    let err = open_err(tmp.path(), &[WEIGHTS, GATE0, "more than 16 values"]);
    assert!(err.to_string().len() < 500, "{}", err.to_string().len());
}

/// A name given twice in a header is an error naming it (a JSON map would keep the last).
#[test]
fn tensor_named_twice_in_the_header() {
    let tmp = copy_checkpoint(&e2b_released());
    let path = tmp.path().join(WEIGHTS);
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap().trim_end();
    // Repeat the first tensor entry at the end of the object.
    let v: serde_json::Map<String, Value> = serde_json::from_str(header).unwrap();
    let (name, entry) = v.iter().find(|(k, _)| *k != "__metadata__").unwrap();
    let doubled = format!(
        "{},{}:{}}}",
        &header[..header.len() - 1],
        serde_json::to_string(name).unwrap(),
        entry
    );
    let mut doubled = doubled.into_bytes();
    doubled.resize(doubled.len().next_multiple_of(8), b' ');
    let mut out = (doubled.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&doubled);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(&path, out).unwrap();
    open_err(tmp.path(), &[WEIGHTS, name, "appears twice"]);
}
