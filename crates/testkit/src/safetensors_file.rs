//! Raw safetensors surgery for tests: split a file into its header and data, rewrite it from
//! edited parts or tensor lists, shard it, and copy a checkpoint somewhere writable to corrupt it.
//! Deliberately not the crate's reader: these helpers must write files that reader rejects.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The header key that holds free-form metadata instead of a tensor.
const METADATA: &str = "__metadata__";

/// Copies the files of `src` (one level) into a fresh temporary folder, writable.
pub fn copy_checkpoint(src: &Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_checkpoint_to(src, tmp.path());
    tmp
}

/// Copies the files of `src` (one level) into `dst` (created if needed), writable.
pub fn copy_checkpoint_to(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap_or_else(|e| panic!("{}: {e}", dst.display()));
    for entry in std::fs::read_dir(src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_file() {
            let to = dst.join(path.file_name().expect("file name"));
            std::fs::write(&to, std::fs::read(&path).expect("read")).expect("write");
        }
    }
}

/// Splits a safetensors file into (header JSON, data bytes). Panics on a malformed file: the
/// inputs are the fixtures and files these helpers wrote.
pub fn read_safetensors(path: &Path) -> (Map<String, Value>, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header JSON");
    (header.as_object().unwrap().clone(), bytes[8 + n..].to_vec())
}

/// Writes a safetensors file from a header and data bytes (header taken as is, padded with
/// spaces to a multiple of 8 bytes as the format asks).
pub fn write_safetensors(path: &Path, header: &Map<String, Value>, data: &[u8]) {
    let mut h = serde_json::to_vec(header).unwrap();
    h.resize(h.len().next_multiple_of(8), b' ');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    std::fs::write(path, out).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// One tensor of a safetensors file: name, dtype, shape, bytes.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// Every tensor of a safetensors file, in offset order (the `__metadata__` entry left out).
pub fn read_entries(path: &Path) -> Vec<Entry> {
    let (header, data) = read_safetensors(path);
    let usizes = |v: &Value| -> Vec<usize> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect()
    };
    let mut out: Vec<(usize, Entry)> = header
        .iter()
        .filter(|(k, _)| *k != METADATA)
        .map(|(k, v)| {
            let off = usizes(&v["data_offsets"]);
            let entry = Entry {
                name: k.clone(),
                dtype: v["dtype"].as_str().unwrap().to_string(),
                shape: usizes(&v["shape"]),
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
    write_entries_with(path, None, entries);
}

/// [`write_entries`] with an optional `__metadata__` object first in the header.
fn write_entries_with(path: &Path, metadata: Option<&Value>, entries: &[Entry]) {
    let mut header = Map::new();
    if let Some(m) = metadata {
        header.insert(METADATA.to_string(), m.clone());
    }
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

/// Splits `dir/model.safetensors` into shards as Hugging Face lays them out
/// (`model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json`) and removes the single
/// file. Shard `i` holds the tensors (in offset order) from `starts[i]` up to the next start;
/// `starts` begins with 0 and rises. Each shard keeps the file's `__metadata__`. Returns the
/// shard names.
pub fn shard_at(dir: &Path, starts: &[usize]) -> Vec<String> {
    let entries = read_entries(&dir.join("model.safetensors"));
    shard_entries_at(dir, &entries, starts)
}

/// Shards `dir/model.safetensors` into `n` shards as transformers' `save_pretrained` fills them:
/// tensors in module order (names compared with their numbers as numbers, so `layers.9` comes
/// before `layers.10`), cut into `n` runs of about equal count. A shard then ends in the middle
/// of the name order, as the shards of a real checkpoint do. See [`shard_at`].
pub fn shard_in_module_order(dir: &Path, n: usize) -> Vec<String> {
    let mut entries = read_entries(&dir.join("model.safetensors"));
    entries.sort_by_cached_key(|e| natural_key(&e.name));
    assert!(
        n >= 1 && n <= entries.len(),
        "{n} shards of {} tensors",
        entries.len()
    );
    let starts: Vec<usize> = (0..n).map(|i| i * entries.len() / n).collect();
    shard_entries_at(dir, &entries, &starts)
}

/// A name's sort key with each run of digits compared as a number.
fn natural_key(name: &str) -> Vec<(u64, String)> {
    let mut key = Vec::new();
    let mut rest = name;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            key.push((rest[..digits].parse().unwrap_or(u64::MAX), String::new()));
            rest = &rest[digits..];
        } else {
            let text = rest.len() - rest.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
            key.push((0, rest[..text].to_string()));
            rest = &rest[text..];
        }
    }
    key
}

/// [`shard_at`] over `entries` (the tensors of `dir/model.safetensors`, in the order to cut).
fn shard_entries_at(dir: &Path, entries: &[Entry], starts: &[usize]) -> Vec<String> {
    let single = dir.join("model.safetensors");
    let (header, _) = read_safetensors(&single);
    assert!(
        starts.first() == Some(&0) && starts.windows(2).all(|w| w[0] < w[1]),
        "shard starts {starts:?} must begin at 0 and rise"
    );
    assert!(*starts.last().unwrap() < entries.len(), "an empty shard");
    let n = starts.len();
    let names: Vec<String> = (1..=n)
        .map(|i| format!("model-{i:05}-of-{n:05}.safetensors"))
        .collect();
    let mut map = Map::new();
    for (i, name) in names.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(entries.len());
        let part = &entries[starts[i]..end];
        write_entries_with(&dir.join(name), header.get(METADATA), part);
        for e in part {
            map.insert(e.name.clone(), Value::String(name.clone()));
        }
    }
    let total: usize = entries.iter().map(|e| e.bytes.len()).sum();
    let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": map});
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_string_pretty(&index).unwrap() + "\n",
    )
    .unwrap();
    std::fs::remove_file(&single).unwrap();
    names
}

/// Splits `dir/model.safetensors` into two shards (the first half of the tensors in shard 1, the
/// rest in shard 2), see [`shard_at`]; returns the two shard names.
pub fn shard_in_two(dir: &Path) -> (String, String) {
    let half = read_entries(&dir.join("model.safetensors")).len() / 2;
    let mut names = shard_at(dir, &[0, half]);
    let second = names.pop().unwrap();
    (names.pop().unwrap(), second)
}

/// Shards `dir/model.safetensors` so no shard holds more than `max_bytes` of tensor data (a
/// tensor larger than that gets a shard of its own); see [`shard_at`].
pub fn shard_by_size(dir: &Path, max_bytes: usize) -> Vec<String> {
    let entries = read_entries(&dir.join("model.safetensors"));
    let mut starts = vec![0];
    let mut size = 0;
    for (i, e) in entries.iter().enumerate() {
        if size > 0 && size + e.bytes.len() > max_bytes {
            starts.push(i);
            size = 0;
        }
        size += e.bytes.len();
    }
    shard_at(dir, &starts)
}

/// Rewrites `config.json` of `dir` through `edit` on its text config (nested or flat).
pub fn edit_text_config(dir: &Path, edit: impl FnOnce(&mut Map<String, Value>)) {
    let path = dir.join("config.json");
    let mut root: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let text = match root.get_mut("text_config") {
        Some(t) => t,
        None => &mut root,
    };
    edit(text.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_string_pretty(&root).unwrap()).unwrap();
}

/// Edits the weight map of `dir/model.safetensors.index.json`.
pub fn edit_index(dir: &Path, edit: impl FnOnce(&mut Map<String, Value>)) {
    let path = dir.join("model.safetensors.index.json");
    let mut root: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(root["weight_map"].as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_string_pretty(&root).unwrap()).unwrap();
}

/// The paths of every file under `dir`, relative to it, sorted (for comparing folders).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
