//! `g4q convert --format onnx` end to end without onnxruntime: the same bytes whatever the
//! thread count, an earlier release folder replaced whole, `g4q forward` reading the folder, and
//! bad input failing with exit code 2, one line, and nothing written or left behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/e2b-tiny")
}

fn g4q(args: &[&str], threads: Option<usize>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_g4q"));
    cmd.args(args);
    if let Some(n) = threads {
        cmd.env("RAYON_NUM_THREADS", n.to_string());
    }
    cmd.output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn bytes_do_not_depend_on_thread_count_and_a_release_is_replaced_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for ty in ["f32", "int4"] {
        let one = tmp.path().join(format!("{ty}-1"));
        let two = tmp.path().join(format!("{ty}-2"));
        for (out, n) in [(&one, 1), (&two, 2)] {
            let res = g4q(
                &[
                    "convert",
                    s(&example()),
                    "--format",
                    "onnx",
                    "--type",
                    ty,
                    "--out",
                    s(out),
                ],
                Some(n),
            );
            assert!(
                res.status.success(),
                "{}",
                String::from_utf8_lossy(&res.stderr)
            );
        }
        assert_eq!(listing(&one), listing(&two));
        for f in listing(&one) {
            let (a, b) = (
                std::fs::read(one.join(&f)).unwrap(),
                std::fs::read(two.join(&f)).unwrap(),
            );
            assert!(a == b, "{ty}: {f} differs between 1 and 2 threads");
            checked += 1;
        }
    }
    // Writing f32 over the int4 release replaces the folder whole and leaves no temporary.
    let int4 = tmp.path().join("int4-1");
    let res = g4q(
        &[
            "convert",
            s(&example()),
            "--format",
            "onnx",
            "--type",
            "f32",
            "--out",
            s(&int4),
        ],
        None,
    );
    assert!(res.status.success());
    assert_eq!(
        std::fs::read(int4.join("model.onnx")).unwrap(),
        std::fs::read(tmp.path().join("f32-1/model.onnx")).unwrap()
    );
    assert!(
        listing(tmp.path()).iter().all(|n| !n.starts_with('.')),
        "{:?}",
        listing(tmp.path())
    );
    // g4q forward reads the folder.
    let logits = tmp.path().join("logits.safetensors");
    let res = g4q(
        &[
            "forward",
            s(&int4),
            "--text",
            "def main():",
            "--out",
            s(&logits),
        ],
        None,
    );
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(logits.is_file());
    println!("onnx cli: {checked} files identical at 1 and 2 threads; replace and forward ok");
}

#[test]
fn bad_input_exits_2_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let other = tmp.path().join("notes");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("keep.txt"), "mine").unwrap();
    let missing = tmp.path().join("no-such-model");
    let ex = example();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--type", "q4", "--out", s(&out)],
            "invalid value 'q4' for '--type",
        ),
        (
            vec!["--type", "int4", "--block-size", "48", "--out", s(&out)],
            "--block-size",
        ),
        (vec!["--type", "f32", "--awq", "--out", s(&out)], "--awq"),
    ];
    let mut checked = 0;
    for (args, says) in &cases {
        let mut full = vec!["convert", s(&ex), "--format", "onnx"];
        full.extend(args);
        let res = g4q(&full, None);
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        checked += 1;
    }
    let res = g4q(
        &[
            "convert",
            s(&missing),
            "--format",
            "onnx",
            "--type",
            "f32",
            "--out",
            s(&out),
        ],
        None,
    );
    assert_eq!(res.status.code(), Some(2));
    checked += 1;
    assert_eq!(listing(tmp.path()), vec!["notes".to_string()]);
    assert_eq!(listing(&other), vec!["keep.txt".to_string()]);
    // --dry-run converts everything, says which tensors fall back, and writes nothing.
    let res = g4q(
        &[
            "convert",
            s(&ex),
            "--format",
            "onnx",
            "--type",
            "int4",
            "--block-size",
            "128",
            "--dry-run",
        ],
        None,
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{err}");
    assert!(err.contains("dry run, nothing written"), "{err}");
    assert_eq!(listing(tmp.path()), vec!["notes".to_string()]);
    checked += 1;
    println!("onnx cli: {checked} bad inputs exit 2 with one line and leave nothing (and a dry run writes nothing)");
}
