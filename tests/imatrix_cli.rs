//! `g4q imatrix` and `g4q convert --imatrix auto --data` end to end on every fixture that holds
//! llama.cpp's imatrix run: the command writes an imatrix with llama-imatrix's tensor names and
//! counts; computing it inside `convert` gives the same file as computing it first and passing
//! the file (only `quantize.imatrix.file` differs); the weights change the quantized bytes; and
//! bad flag combinations fail with exit code 2 and no output.

use convert::gguf::{GgufFile, Value};
use quantize::Imatrix;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use testkit::{fixtures_dir, g4q, g4q_ok, path_str as s};

/// The value following `flag` in a recorded command line.
fn flag<'a>(cmd: &'a [Json], flag: &str) -> &'a str {
    let i = cmd.iter().position(|a| a.as_str() == Some(flag)).unwrap();
    cmd[i + 1].as_str().unwrap()
}

#[test]
fn imatrix_command_and_convert_auto() {
    let dirs = testkit::fixture_dirs("llamacpp/imatrix.gguf");
    assert!(!dirs.is_empty(), "no fixture with llamacpp/imatrix.gguf");
    let tmp = tempfile::tempdir().unwrap();
    let (mut cases, mut same_as_llama, mut weighted_tensors) = (0, 0, 0);
    for dir in &dirs {
        let fixture = dir.file_name().unwrap().to_string_lossy().into_owned();
        let m: Json =
            serde_json::from_slice(&std::fs::read(dir.join("llamacpp/manifest.json")).unwrap())
                .unwrap();
        let Some(model) = testkit::llamacpp_source(dir, &m) else {
            continue;
        };
        let cmd = m["files"]["imatrix.gguf"]["command"].as_array().unwrap();
        let (ctx, chunks) = (flag(cmd, "-c"), flag(cmd, "--chunks"));
        let data = dir.join("llamacpp/imatrix-input.txt");
        let ours = tmp.path().join(format!("{fixture}.imatrix.gguf"));
        g4q_ok!(&[
            "imatrix",
            s(&model),
            "--data",
            s(&data),
            "--out",
            s(&ours),
            "--ctx",
            ctx,
            "--chunks",
            chunks,
        ]);
        let im = Imatrix::read(&ours).unwrap();
        let theirs = Imatrix::read(&dir.join("llamacpp/imatrix.gguf")).unwrap();
        assert_eq!(
            im.entries.keys().collect::<Vec<_>>(),
            theirs.entries.keys().collect::<Vec<_>>(),
            "{fixture}: tensor names"
        );
        for (name, e) in &theirs.entries {
            testkit::assert_counts_close(
                &format!("{fixture} {name}"),
                &im.entries[name].counts,
                &e.counts,
            );
        }
        assert_eq!(
            (im.chunk_count, im.chunk_size),
            (theirs.chunk_count, theirs.chunk_size)
        );
        assert_eq!(im.datasets, [s(&data)], "{fixture}: data set as given");

        // The imatrix computed inside convert is the one the imatrix command writes.
        let auto = tmp.path().join(format!("{fixture}.auto.gguf"));
        let from_file = tmp.path().join(format!("{fixture}.file.gguf"));
        g4q_ok!(&[
            "convert",
            s(&model),
            "--type",
            "Q4_K_M",
            "--imatrix",
            "auto",
            "--data",
            s(&data),
            "--ctx",
            ctx,
            "--chunks",
            chunks,
            "--out",
            s(&auto),
        ]);
        g4q_ok!(&[
            "convert",
            s(&model),
            "--type",
            "Q4_K_M",
            "--imatrix",
            s(&ours),
            "--out",
            s(&from_file),
        ]);
        let (a, f) = (
            GgufFile::open(&auto).unwrap(),
            GgufFile::open(&from_file).unwrap(),
        );
        let file_key = "quantize.imatrix.file";
        assert_eq!(
            a.metadata().get(file_key),
            Some(&Value::String("auto".into()))
        );
        let mut md = a.metadata().clone();
        md.set_in_place(file_key, f.metadata().get(file_key).unwrap().clone());
        assert!(
            md == *f.metadata(),
            "{fixture}: metadata differs beyond the imatrix file"
        );
        assert_eq!(a.tensors(), f.tensors(), "{fixture}: tensor table");
        for t in a.tensors() {
            assert!(
                a.tensor_data(&t.name).unwrap() == f.tensor_data(&t.name).unwrap(),
                "{fixture}: {} differs",
                t.name
            );
        }

        // The weights reach the quantizer: some tensor llama.cpp quantized with its imatrix
        // differs from its plain Q4_K_M, and so must ours; count how many tensors come out
        // byte-identical to llama-quantize with llama.cpp's own imatrix.
        let sha_of = |file: &str| -> Vec<(String, String)> {
            m["files"][file]["gguf"]["tensors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    let name = t["name"].as_str().unwrap().to_string();
                    (name, t["sha256"].as_str().unwrap().to_string())
                })
                .collect()
        };
        let plain = sha_of("Q4_K_M.gguf");
        let llama_weighted = sha_of("Q4_K_M.imatrix.gguf");
        let mut changed = 0;
        for ((name, p), (_, w)) in plain.iter().zip(&llama_weighted) {
            let mine = hex::encode(Sha256::digest(a.tensor_data(name).unwrap()));
            if p != w {
                weighted_tensors += 1;
                changed += usize::from(mine != *p);
                same_as_llama += usize::from(mine == *w);
            }
        }
        assert!(changed > 0, "{fixture}: the imatrix changed no tensor");
        cases += 1;
    }
    println!(
        "checked {cases} cases; of {weighted_tensors} tensors llama.cpp's imatrix changes, \
         {same_as_llama} are byte-identical with our own imatrix"
    );
}

#[test]
fn bad_calibration_flags_fail_with_code_2() {
    let dir = fixtures_dir().join("e2b-s0");
    let model = dir.join("released-bf16");
    let data = dir.join("llamacpp/imatrix-input.txt");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("never.gguf");
    let missing = tmp.path().join("none.txt");
    let cases: Vec<Vec<&str>> = vec![
        // auto needs calibration text.
        vec![
            "convert",
            s(&model),
            "--type",
            "Q4_K_M",
            "--imatrix",
            "auto",
            "--out",
            s(&out),
        ],
        // --data without auto would be silently ignored.
        vec![
            "convert",
            s(&model),
            "--type",
            "Q4_K_M",
            "--data",
            s(&data),
            "--out",
            s(&out),
        ],
        // A context longer than half the text: fewer than two chunks.
        vec![
            "imatrix",
            s(&model),
            "--data",
            s(&data),
            "--out",
            s(&out),
            "--ctx",
            "100000",
        ],
        vec![
            "imatrix",
            s(&model),
            "--data",
            s(&data),
            "--out",
            s(&out),
            "--ctx",
            "0",
        ],
        // Calibration text that does not exist.
        vec![
            "imatrix",
            s(&model),
            "--data",
            s(&missing),
            "--out",
            s(&out),
        ],
    ];
    for args in &cases {
        let res = g4q!(args);
        assert_eq!(res.status.code(), Some(2), "g4q {args:?}: {res:?}");
        assert!(!out.exists(), "g4q {args:?} left an output file");
    }
    println!("checked {} cases", cases.len());
}

/// `--in-file` prints one statistics row per tensor of an existing imatrix (here llama.cpp's),
/// and the rows agree with the library's figures.
#[test]
fn statistics_of_an_existing_imatrix() {
    let mut cases = 0;
    for fixture in ["26b-a4b-s0", "e2b-s0"] {
        let file = fixtures_dir().join(fixture).join("llamacpp/imatrix.gguf");
        let out = g4q!(&["imatrix", "--in-file", s(&file)]);
        assert!(out.status.success(), "{fixture}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let stats = Imatrix::read(&file).unwrap().statistics();
        let rows: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(rows.len(), stats.len(), "{fixture}: one row per tensor");
        for (row, st) in rows.iter().zip(&stats) {
            let cols: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(cols[0], st.name);
            let sum: f64 = cols[1].parse().unwrap();
            assert!(
                (sum - st.sum).abs() <= 1e-4 * st.sum.abs().max(1.0),
                "{row}"
            );
            assert_eq!(cols[6], st.n.to_string(), "{row}");
        }
        cases += 1;
    }
    println!("checked {cases} cases");
}
