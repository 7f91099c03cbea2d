//! Shared helpers of the convert integration tests: locating the fixtures and copying a fixture
//! checkpoint into a temporary folder to corrupt it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The fixtures folder: `G4Q_FIXTURES`, else `../shared/fixtures` beside the repository root.
/// Panics (fails the test) when it does not exist: a missing oracle is not a pass.
pub fn fixtures_dir() -> PathBuf {
    testkit::fixtures_dir()
}

/// Every fixture folder holding a `reference.safetensors`, sorted.
pub fn fixture_folders() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures folder readable")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("reference.safetensors").is_file())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no fixture folders found");
    out
}

/// Copies the files of `src` (one level) into a fresh temporary folder, writable.
pub fn copy_checkpoint(src: &Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(src).expect("checkpoint readable") {
        let path = entry.expect("dir entry").path();
        if path.is_file() {
            let dst = tmp.path().join(path.file_name().expect("file name"));
            std::fs::write(&dst, std::fs::read(&path).expect("read")).expect("write");
        }
    }
    tmp
}

/// The fixture checkpoint most tests corrupt: the released-layout E2B one.
pub fn e2b_released() -> PathBuf {
    fixtures_dir().join("e2b-s0/released-bf16")
}

/// Splits a safetensors file into (header JSON, data bytes).
pub fn read_safetensors(path: &Path) -> (serde_json::Map<String, Value>, Vec<u8>) {
    let bytes = std::fs::read(path).expect("read safetensors");
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header JSON");
    (header.as_object().unwrap().clone(), bytes[8 + n..].to_vec())
}

/// Writes a safetensors file from a header and data bytes (header taken as is).
pub fn write_safetensors(path: &Path, header: &serde_json::Map<String, Value>, data: &[u8]) {
    let mut h = serde_json::to_vec(header).unwrap();
    h.resize(h.len().next_multiple_of(8), b' ');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    std::fs::write(path, out).expect("write safetensors");
}

/// Rewrites `config.json` of `dir` through `edit` on its text config (nested or flat).
pub fn edit_text_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join("config.json");
    let mut root: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let text = match root.get_mut("text_config") {
        Some(t) => t,
        None => &mut root,
    };
    edit(text.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_string_pretty(&root).unwrap()).unwrap();
}

/// One tensor of a safetensors file: name, dtype, shape, bytes.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// Every tensor of a safetensors file, in offset order.
pub fn read_entries(path: &Path) -> Vec<Entry> {
    let (header, data) = read_safetensors(path);
    let mut out: Vec<(usize, Entry)> = header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let off: Vec<usize> = v["data_offsets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            let entry = Entry {
                name: k.clone(),
                dtype: v["dtype"].as_str().unwrap().to_string(),
                shape: v["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as usize)
                    .collect(),
                bytes: data[off[0]..off[1]].to_vec(),
            };
            (off[0], entry)
        })
        .collect();
    out.sort_by_key(|(o, _)| *o);
    out.into_iter().map(|(_, e)| e).collect()
}

/// Writes a consistent safetensors file holding `entries` in order.
pub fn write_entries(path: &Path, entries: &[Entry]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for e in entries {
        let start = data.len();
        data.extend_from_slice(&e.bytes);
        header.insert(
            e.name.clone(),
            serde_json::json!({"dtype": e.dtype, "shape": e.shape, "data_offsets": [start, data.len()]}),
        );
    }
    write_safetensors(path, &header, &data);
}

/// Splits `dir/model.safetensors` into two shards plus `model.safetensors.index.json` (the
/// first half of the tensors in shard 1, the rest in shard 2) and removes the single file.
pub fn shard_in_two(dir: &Path) -> (String, String) {
    let single = dir.join("model.safetensors");
    let entries = read_entries(&single);
    let half = entries.len() / 2;
    let names = [
        "model-00001-of-00002.safetensors".to_string(),
        "model-00002-of-00002.safetensors".to_string(),
    ];
    write_entries(&dir.join(&names[0]), &entries[..half]);
    write_entries(&dir.join(&names[1]), &entries[half..]);
    let mut map = serde_json::Map::new();
    for (i, e) in entries.iter().enumerate() {
        let shard = if i < half { &names[0] } else { &names[1] };
        map.insert(e.name.clone(), Value::String(shard.clone()));
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_string_pretty(&index).unwrap(),
    )
    .unwrap();
    std::fs::remove_file(&single).unwrap();
    (names[0].clone(), names[1].clone())
}

/// Edits the weight map of `dir/model.safetensors.index.json`.
pub fn edit_index(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join("model.safetensors.index.json");
    let mut root: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(root["weight_map"].as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_string_pretty(&root).unwrap()).unwrap();
}
