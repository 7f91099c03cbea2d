//! End to end: `g4q inspect` on good and corrupt checkpoints. Bad input must exit with code 2
//! and one `g4q: error: ...` line on stderr naming the file, never a panic.

use std::path::PathBuf;
use std::process::Output;

use testkit::{fixtures_dir, g4q};

fn e2b_copy() -> tempfile::TempDir {
    testkit::copy_checkpoint(&fixtures_dir().join("e2b-s0/released-bf16"))
}

/// Exit code 2, and stderr is exactly one `g4q: error:` line holding every needle.
fn assert_input_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "stderr is not one line: {stderr}"
    );
    assert!(stderr.starts_with("g4q: error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks '{n}': {stderr}");
    }
}

#[test]
fn inspect_reports_every_fixture() {
    let mut checked = 0;
    for folder in testkit::reference_fixtures() {
        let dir = folder.join("released-bf16");
        let out = g4q!(&["inspect", dir.to_str().unwrap(), "--json"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let reference: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(folder.join("reference.json")).unwrap())
                .unwrap();
        assert_eq!(
            report["layers"].as_array().unwrap().len(),
            reference["per_layer"].as_array().unwrap().len()
        );
        // Text parameters are the sum of the listed tensors' elements.
        let sum: u64 = report["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                t["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap())
                    .product::<u64>()
            })
            .sum();
        assert_eq!(report["parameters"]["text"].as_u64(), Some(sum));
        assert!(report["parameters"]["vision"].as_u64().unwrap() > 0);
        let text = g4q!(&["inspect", dir.to_str().unwrap()]);
        assert_eq!(text.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&text.stdout).contains("layer plan"));
        checked += 1;
    }
    println!("checked {checked} cases");
    assert!(checked > 0);
}

#[test]
fn inspect_truncated_checkpoint_exits_2() {
    let tmp = e2b_copy();
    let path = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let out = g4q!(&["inspect", tmp.path().to_str().unwrap()]);
    assert_input_error(&out, &["model.safetensors", "truncated"]);
}

#[test]
fn inspect_huge_header_exits_2() {
    let tmp = e2b_copy();
    let path = tmp.path().join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..8].copy_from_slice(&(u64::MAX / 3).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let out = g4q!(&["inspect", tmp.path().to_str().unwrap()]);
    assert_input_error(&out, &["model.safetensors", "implausibly large"]);
}

#[test]
fn inspect_unknown_rope_type_exits_2() {
    let tmp = e2b_copy();
    let path = tmp.path().join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"proportional\"", "\"yarn\"")).unwrap();
    let out = g4q!(&["inspect", tmp.path().to_str().unwrap(), "--json"]);
    assert_input_error(&out, &["config.json", "rope type 'yarn'"]);
}

#[test]
fn inspect_missing_folder_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nothing-here");
    let out = g4q!(&["inspect", missing.to_str().unwrap()]);
    assert_input_error(&out, &["nothing-here", "config.json"]);
}

#[test]
fn synth_rejects_bad_flags_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    for args in [
        ["synth", "--variant", "e3b", "--layers", "2", "--out", dir],
        ["synth", "--variant", "e2b", "--layers", "0", "--out", dir],
    ] {
        let out = g4q!(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!tmp.path().join("model.safetensors").exists());
    }
}

/// The e2b fixture's F32 GGUF (g4q's conversion, byte-identical to llama.cpp's, so the test
/// also runs on the bundled oracle set) rewritten into `dir/NAME` with its metadata passed
/// through `edit` (tensors and data unchanged).
fn edited_gguf(
    dir: &std::path::Path,
    name: &str,
    edit: impl FnOnce(&mut convert::gguf::Metadata),
) -> PathBuf {
    use convert::gguf::{GgufFile, GgufWriter};
    let f32_path = dir.join(format!("{name}.f32-source.gguf"));
    let model = fixtures_dir().join("e2b-s0/released-bf16");
    testkit::g4q_ok!(&[
        "convert",
        model.to_str().unwrap(),
        "--type",
        "F32",
        "--out",
        f32_path.to_str().unwrap(),
    ]);
    let src = GgufFile::open(&f32_path).unwrap();
    let mut md = src.metadata().clone();
    edit(&mut md);
    let out = dir.join(name);
    let mut w = GgufWriter::create(&out, &md, src.tensors().to_vec()).unwrap();
    for t in src.tensors() {
        w.write_tensor(&t.name, src.tensor_data(&t.name).unwrap())
            .unwrap();
    }
    w.finish().unwrap();
    out
}

/// Hostile-input defect 1: a `key_length` of 2^31 in a small GGUF is an input error before
/// `verify` sizes anything by it (it used to allocate a RoPE table of many GB and abort).
#[test]
fn verify_refuses_gguf_sizes_its_tensors_do_not_back() {
    use convert::gguf::Value;
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (key, value) in [
        ("gemma4.attention.key_length", Value::U32(1 << 31)),
        ("gemma4.attention.key_length_swa", Value::U32(1 << 20)),
        ("gemma4.attention.sliding_window", Value::U64(1 << 40)),
    ] {
        let cand = edited_gguf(tmp.path(), &format!("bomb{checked}.gguf"), |md| {
            md.set(key, value)
        });
        let start = std::time::Instant::now();
        let out = g4q!(&[
            "verify",
            "--reference",
            fixtures_dir()
                .join("e2b-s0/released-bf16")
                .to_str()
                .unwrap(),
            "--candidate",
            cand.to_str().unwrap(),
            "--data",
            fixtures_dir()
                .join("e2b-s0/llamacpp/imatrix-input.txt")
                .to_str()
                .unwrap(),
            "--ctx",
            "8",
            "--chunks",
            "1",
        ]);
        assert_input_error(&out, &[cand.file_name().unwrap().to_str().unwrap()]);
        assert!(
            start.elapsed().as_secs() < 60,
            "{key}: {:?}",
            start.elapsed()
        );
        checked += 1;
    }
    println!("verify refused {checked} lying GGUF files");
}

/// Hostile-input defect 15: `quantize` refuses a GGUF of another architecture and one without
/// tensors (exit 2), and writes nothing.
#[test]
fn quantize_refuses_other_architectures_and_empty_files() {
    use convert::gguf::{Metadata, Value};
    let tmp = tempfile::tempdir().unwrap();
    let other = edited_gguf(tmp.path(), "llama.gguf", |md| {
        md.set("general.architecture", Value::String("llama".into()))
    });
    let empty = tmp.path().join("empty.gguf");
    let mut md = Metadata::new();
    md.set("general.architecture", Value::String("gemma4".into()));
    md.set("gemma4.block_count", Value::U32(1));
    convert::gguf::GgufWriter::create(&empty, &md, Vec::new())
        .unwrap()
        .finish()
        .unwrap();
    for (input, needle) in [(&other, "is not gemma4"), (&empty, "no tensors")] {
        let out_path = tmp.path().join("out.gguf");
        let out = g4q!(&[
            "quantize",
            input.to_str().unwrap(),
            "--type",
            "q8_0",
            "--out",
            out_path.to_str().unwrap(),
        ]);
        assert_input_error(
            &out,
            &[input.file_name().unwrap().to_str().unwrap(), needle],
        );
        assert!(
            !out_path.exists(),
            "an output was written for {}",
            input.display()
        );
    }
    println!("quantize refused 2 GGUF inputs");
}
