//! `g4q convert` / `g4q quantize` end to end: reproducible bytes whatever the thread count, the
//! dry-run plan, per-tensor overrides and --pure, and bad input failing with exit code 2 and no
//! output file.

use std::path::{Path, PathBuf};
use std::process::Output;

use convert::gguf::GgufFile;
use kernels::GgmlType;
use testkit::safetensors_file::{read_entries, write_entries};
use testkit::{g4q, path_str as s};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/e2b-tiny")
}

/// Runs g4q with `args`, on `threads` rayon threads when given.
fn run(args: &[&str], threads: Option<usize>) -> Output {
    let mut cmd = g4q!();
    cmd.args(args);
    if let Some(n) = threads {
        cmd.env("RAYON_NUM_THREADS", n.to_string());
    }
    cmd.output().unwrap()
}

#[test]
fn bytes_do_not_depend_on_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    for ty in ["Q4_K_M", "IQ4_XS", "Q8_0"] {
        let one = tmp.path().join(format!("{ty}-1.gguf"));
        let two = tmp.path().join(format!("{ty}-2.gguf"));
        assert!(run(
            &["convert", s(&example()), "--type", ty, "--out", s(&one)],
            Some(1)
        )
        .status
        .success());
        assert!(run(
            &["convert", s(&example()), "--type", ty, "--out", s(&two)],
            Some(2)
        )
        .status
        .success());
        assert!(
            std::fs::read(&one).unwrap() == std::fs::read(&two).unwrap(),
            "{ty} differs between 1 and 2 threads"
        );
    }
}

/// The K-quant searches run on the `G4Q_SIMD` path: every path gives the same file, and a bad
/// setting is a usage error that writes nothing.
#[test]
fn bytes_do_not_depend_on_the_simd_path() {
    use kernels::simd::Path as Simd;
    let tmp = tempfile::tempdir().unwrap();
    let convert = |simd: Option<&str>, out: &Path| {
        let mut cmd = g4q!();
        cmd.args([
            "convert",
            s(&example()),
            "--type",
            "Q3_K_M",
            "--out",
            s(out),
        ]);
        if let Some(v) = simd {
            cmd.env("G4Q_SIMD", v);
        }
        cmd.output().unwrap()
    };
    let best = tmp.path().join("best.gguf");
    assert!(convert(None, &best).status.success());
    let want = std::fs::read(&best).unwrap();
    for path in [Simd::Scalar, Simd::Avx2, Simd::Avx512] {
        if !path.is_supported() {
            continue;
        }
        let out = tmp.path().join(format!("{}.gguf", path.name()));
        let res = convert(Some(path.name()), &out);
        assert!(
            res.status.success(),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        assert!(
            std::fs::read(&out).unwrap() == want,
            "{} differs",
            path.name()
        );
    }
    let bad = tmp.path().join("bad.gguf");
    let res = convert(Some("sse9"), &bad);
    assert_eq!(res.status.code(), Some(2));
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("SIMD path 'sse9'") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!bad.exists());
}

#[test]
fn dry_run_json_plans_without_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("never.gguf");
    let res = run(
        &[
            "convert",
            s(&example()),
            "--type",
            "Q4_K_M",
            "--dry-run",
            "--json",
            "--out",
            s(&out),
        ],
        None,
    );
    assert!(res.status.success());
    assert!(!out.exists(), "--dry-run wrote a file");
    let plan: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    let tensors = plan["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 176);
    let bytes: u64 = tensors.iter().map(|t| t["bytes"].as_u64().unwrap()).sum();
    assert_eq!(bytes, plan["bytes"].as_u64().unwrap());
    // The real file holds exactly the planned tensor bytes (plus header and padding).
    assert!(run(
        &[
            "convert",
            s(&example()),
            "--type",
            "Q4_K_M",
            "--out",
            s(&out)
        ],
        None
    )
    .status
    .success());
    let f = GgufFile::open(&out).unwrap();
    let written: u64 = f.tensors().iter().map(|t| t.n_bytes()).sum();
    assert_eq!(written, bytes);
    // A tensor whose rows are 16 wide cannot hold any block type: F16, as llama.cpp does.
    let proj = tensors
        .iter()
        .find(|t| t["name"] == "blk.0.proj.weight")
        .unwrap();
    assert_eq!(proj["type"], "f16");
    assert_eq!(proj["fallback_from"], "q4_K");
}

#[test]
fn overrides_and_pure_change_the_types() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o.gguf");
    let res = run(
        &[
            "convert",
            s(&example()),
            "--type",
            "Q4_0",
            "--tensor-type",
            r"attn_q\.weight=q8_0",
            "--token-embedding-type",
            "q5_0",
            "--out",
            s(&out),
        ],
        None,
    );
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let f = GgufFile::open(&out).unwrap();
    let ty = |n: &str| f.tensors().iter().find(|t| t.name == n).unwrap().ty;
    assert_eq!(ty("blk.3.attn_q.weight"), GgmlType::Q8_0);
    assert_eq!(ty("token_embd.weight"), GgmlType::Q5_0);
    assert_eq!(ty("blk.3.attn_k.weight"), GgmlType::Q4_0);
    // --pure: the tied embedding keeps the base type instead of llama.cpp's Q6_K/Q8_0 rule.
    let pure = tmp.path().join("p.gguf");
    assert!(run(
        &[
            "convert",
            s(&example()),
            "--type",
            "Q4_0",
            "--pure",
            "--out",
            s(&pure)
        ],
        None
    )
    .status
    .success());
    let f = GgufFile::open(&pure).unwrap();
    assert_eq!(
        f.tensors()
            .iter()
            .find(|t| t.name == "token_embd.weight")
            .unwrap()
            .ty,
        GgmlType::Q4_0
    );
}

#[test]
fn bad_input_exits_2_and_leaves_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.gguf");
    // A checkpoint whose weights hold a NaN: the error names the tensor, nothing is written.
    let bad = tmp.path().join("bad");
    testkit::copy_checkpoint_to(&example(), &bad);
    let st = bad.join("model.safetensors");
    let mut entries = read_entries(&st);
    let norm = entries
        .iter_mut()
        .find(|e| e.name == "model.language_model.norm.weight")
        .unwrap();
    norm.bytes[..2].copy_from_slice(&[0xc0, 0x7f]); // a bf16 NaN as the first value of norm.weight
    write_entries(&st, &entries);
    let res = run(
        &["convert", s(&bad), "--type", "Q4_K_M", "--out", s(&out)],
        None,
    );
    assert_eq!(
        res.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("NaN") && err.lines().count() == 1, "{err}");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "a partial output was left behind"
    );
    // Unknown type, bad override, missing model: usage/input errors.
    for args in [
        vec!["convert", s(&example()), "--type", "Q7_K", "--out", s(&out)],
        vec![
            "convert",
            s(&example()),
            "--type",
            "Q4_0",
            "--tensor-type",
            "noequals",
            "--out",
            s(&out),
        ],
        vec![
            "convert",
            "/nonexistent/model",
            "--type",
            "Q4_0",
            "--out",
            s(&out),
        ],
        vec![
            "quantize",
            "/nonexistent.gguf",
            "--type",
            "Q4_0",
            "--out",
            s(&out),
        ],
    ] {
        let res = run(&args, None);
        assert_eq!(
            res.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        assert!(!out.exists());
    }
}

#[test]
fn quantize_requantizes_an_f32_gguf_like_a_direct_convert() {
    let tmp = tempfile::tempdir().unwrap();
    let f32 = tmp.path().join("f32.gguf");
    let via = tmp.path().join("via.gguf");
    let direct = tmp.path().join("direct.gguf");
    assert!(run(
        &["convert", s(&example()), "--type", "F32", "--out", s(&f32)],
        None
    )
    .status
    .success());
    assert!(run(
        &["quantize", s(&f32), "--type", "Q5_K_M", "--out", s(&via)],
        None
    )
    .status
    .success());
    assert!(run(
        &[
            "convert",
            s(&example()),
            "--type",
            "Q5_K_M",
            "--out",
            s(&direct)
        ],
        None
    )
    .status
    .success());
    assert!(
        std::fs::read(&via).unwrap() == std::fs::read(&direct).unwrap(),
        "convert+quantize != direct convert"
    );
}
