//! The compact oracle set bundled under `tests/oracles/`, made from the full set so that the
//! README's test command passes on a fresh clone. `scripts/make-oracles.sh` writes it; the test
//! `bundled_oracles` checks, wherever the full set is present, that it is exactly what this
//! module makes. What it keeps and why is in `tests/oracles/README.md`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::safetensors_file::{files_under, shard_by_size};

/// One fixture folder of each variant shaped like a released model (hidden 128), without the
/// `causal-f32/` twin, llama.cpp's whole debug files and logits, or the projector files (their
/// manifest, with every key, tensor and whole-file sha256, stays).
const VARIANTS: [&str; 4] = ["e2b-s0", "e4b-s0", "26b-a4b-s0", "31b-s0"];

/// What the tests read from a variant folder.
const VARIANT_FILES: &[&str] = &[
    "released-bf16",
    "reference.safetensors",
    "reference.json",
    "llamacpp/manifest.json",
    "llamacpp/imatrix.gguf",
    "llamacpp/imatrix-input.txt",
    "llamacpp/mmproj-manifest.json",
];

/// The trained fixture, where quantization and an imatrix visibly change the model.
const TRAINED: &str = "trained-e2b";

/// What the tests read from the trained folder. Its `reference.safetensors` (7.8 MB of forward
/// pass outputs the variant folders already cover) stays out.
const TRAINED_FILES: &[&str] = &[
    "released-bf16",
    "reference.json",
    "calib.txt",
    "eval-a.txt",
    "perplexity.json",
    "llamacpp/manifest.json",
    "llamacpp/imatrix.gguf",
    "llamacpp/imatrix-input.txt",
    "llamacpp/kld-eval-a.txt",
];

/// Files at the top of the fixtures folder.
const TOP_FILES: [&str; 2] = ["README.md", "tokenizer_tests.json"];

/// Rows kept of each golden set: rows cycle through eight characters (gaussian, heavy-tailed,
/// outliers, zeros, tiny, large, near-constant, skewed), so eight keep one of each.
pub const GOLDEN_ROWS: usize = 8;

/// A checkpoint file larger than this is sharded, so no bundled file is large in git.
pub const MAX_SHARD_BYTES: usize = 6 << 20;

/// Writes the compact set made from the full `fixtures` and `golden` folders into
/// `out/fixtures` and `out/golden`, replacing what was there. Returns every file written,
/// relative to `out`, sorted. Panics (naming the file) when the full set lacks something.
pub fn make(fixtures: &Path, golden: &Path, out: &Path) -> Vec<PathBuf> {
    for kind in ["fixtures", "golden"] {
        let dir = out.join(kind);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
    }
    let dst = out.join("fixtures");
    for name in TOP_FILES {
        copy(&fixtures.join(name), &dst.join(name));
    }
    for (folder, files) in VARIANTS
        .iter()
        .map(|v| (*v, VARIANT_FILES))
        .chain([(TRAINED, TRAINED_FILES)])
    {
        for rel in files {
            copy(
                &fixtures.join(folder).join(rel),
                &dst.join(folder).join(rel),
            );
        }
        let model = dst.join(folder).join("released-bf16");
        let weights = model.join("model.safetensors");
        if std::fs::metadata(&weights).unwrap().len() > MAX_SHARD_BYTES as u64 {
            shard_by_size(&model, MAX_SHARD_BYTES);
        }
    }
    let dst = out.join("golden");
    copy(&golden.join("README.md"), &dst.join("README.md"));
    let mut sets: Vec<PathBuf> = std::fs::read_dir(golden)
        .unwrap_or_else(|e| panic!("{}: {e}", golden.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    sets.sort();
    for set in sets {
        trim_golden(&set, &dst.join(set.file_name().unwrap()));
    }
    files_under(out)
        .into_iter()
        .filter(|p| p.starts_with("fixtures") || p.starts_with("golden"))
        .collect()
}

/// Copies one file, or a folder's files (one level), creating the parent folders.
fn copy(src: &Path, dst: &Path) {
    if src.is_dir() {
        for e in std::fs::read_dir(src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
            let p = e.unwrap().path();
            copy(&p, &dst.join(p.file_name().unwrap()));
        }
        return;
    }
    let bytes = std::fs::read(src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    write(dst, &bytes);
}

fn write(dst: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    std::fs::write(dst, bytes).unwrap_or_else(|e| panic!("{}: {e}", dst.display()));
}

/// The first [`GOLDEN_ROWS`] rows of one golden set: the input, every case's quantized rows and
/// ggml's dequantized rows, the whole importance vector, and the manifest with `rows` updated.
fn trim_golden(src: &Path, dst: &Path) {
    let path = src.join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let field = |v: &Value, key: &str| -> Value {
        v.get(key)
            .unwrap_or_else(|| panic!("{}: no '{key}'", path.display()))
            .clone()
    };
    let rows = field(&manifest, "rows").as_u64().unwrap() as usize;
    let n = field(&manifest, "n_per_row").as_u64().unwrap() as usize;
    assert!(rows >= GOLDEN_ROWS, "{}: only {rows} rows", path.display());
    let head = |name: &Value, row_bytes: usize| {
        let name = name.as_str().unwrap();
        let bytes = std::fs::read(src.join(name)).unwrap();
        assert_eq!(bytes.len(), rows * row_bytes, "{}/{name}", src.display());
        write(&dst.join(name), &bytes[..GOLDEN_ROWS * row_bytes]);
    };
    head(&field(&manifest, "input"), 4 * n);
    copy(
        &src.join(field(&manifest, "imatrix").as_str().unwrap()),
        &dst.join(field(&manifest, "imatrix").as_str().unwrap()),
    );
    for case in field(&manifest, "cases").as_array().unwrap() {
        let row_bytes = field(case, "row_bytes").as_u64().unwrap() as usize;
        head(&field(case, "blocks"), row_bytes);
        head(&field(case, "dequant"), 4 * n);
    }
    manifest["rows"] = Value::from(GOLDEN_ROWS);
    write(
        &dst.join("manifest.json"),
        (serde_json::to_string_pretty(&manifest).unwrap() + "\n").as_bytes(),
    );
}
