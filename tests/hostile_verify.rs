//! Hostile and careless input to `g4q verify`, `convert`, `forward` and `quantize`, each case a
//! defect that once got through: misspelt gate tables that turned the gates off, NaN weights
//! that gave plausible figures, weights too large for the output type written as infinity,
//! baselines of another model or with impossible noise, a thread count that hung, and a piped
//! data file recorded with the hash of nothing. Every corrupt input is made here, from the
//! `e2b-s0` fixture.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use convert::gguf::GgufFile;
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn reference() -> PathBuf {
    testkit::fixtures_dir().join("e2b-s0/released-bf16")
}

/// Runs the binary under test.
fn g4q_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_g4q"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts exit code 2 and a single `g4q: error:` line holding every needle.
fn assert_input_error(what: &str, out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: not one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{what}: expected '{n}' in: {err}");
    }
}

/// Pre-tokenized data: two chunks of 16 ids below the fixture's vocabulary of 512.
fn write_tokens(dir: &Path) -> PathBuf {
    let p = dir.join("tokens.txt");
    let ids: Vec<String> = (0..32u32).map(|i| (2 + i * 37 % 500).to_string()).collect();
    std::fs::write(&p, ids.join(" ")).unwrap();
    p
}

/// `g4q verify` of `candidate` on the tokens in `dir`, run in `dir`.
fn verify(dir: &Path, candidate: &Path, extra: &[&str]) -> Output {
    let toks = write_tokens(dir);
    let r = reference();
    let mut args = vec![
        "verify",
        "--reference",
        s(&r),
        "--candidate",
        s(candidate),
        "--tokens-file",
        s(&toks),
        "--ctx",
        "16",
    ];
    args.extend_from_slice(extra);
    g4q_in(dir, &args)
}

/// A copy of the reference folder whose tensor `name` has `value` (rounded to bf16) at flat
/// index `at`.
fn checkpoint_with(dir: &Path, name: &str, at: usize, value: f32) -> PathBuf {
    let src = reference();
    let out = dir.join("edited");
    std::fs::create_dir_all(&out).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().and_then(|e| e.to_str()) != Some("safetensors") {
            std::fs::copy(&p, out.join(p.file_name().unwrap())).unwrap();
        }
    }
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut owned = Vec::new();
    for (n, view) in st.tensors() {
        let mut data = view.data().to_vec();
        if n == name {
            let bits = half::bf16::from_f32(value).to_le_bytes();
            data[2 * at..2 * at + 2].copy_from_slice(&bits);
        }
        owned.push((n, view.dtype(), view.shape().to_vec(), data));
    }
    assert!(
        owned.iter().any(|(n, ..)| n == name),
        "{name} not in the fixture"
    );
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(n, d, sh, data)| (n.clone(), TensorView::new(*d, sh.clone(), data).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, &None, &out.join("model.safetensors")).unwrap();
    out
}

const UP_PROJ: &str = "model.language_model.layers.0.mlp.up_proj.weight";
const UP_PROJ_GGUF: &str = "blk.0.ffn_up.weight";

/// Defect 7: every misspelling of the gate table (in `--config` or the default `./g4q.toml`)
/// is an error naming the file and the key, where it used to mean "no gates".
#[test]
fn misspelt_gate_tables_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let r = reference();
    let cases = [
        ("[verfy.gates]\nmax_kld = 1e-12\n", "verfy"),
        ("[Verify.Gates]\nmax_kld = 1e-12\n", "Verify"),
        ("max_kld = 1e-12\n", "max_kld"),
        ("[verify.gates]\nmax_kld = 1e-12\n[verify.gate]\n", "gate"),
    ];
    for (text, key) in cases {
        let cfg = tmp.path().join("bad.toml");
        std::fs::write(&cfg, text).unwrap();
        let out = verify(tmp.path(), &r, &["--config", s(&cfg)]);
        assert_input_error(text, &out, &["bad.toml", &format!("`{key}`")]);
        // The same text as the default ./g4q.toml of the working folder.
        std::fs::write(tmp.path().join("g4q.toml"), text).unwrap();
        let out = verify(tmp.path(), &r, &[]);
        assert_input_error(text, &out, &["g4q.toml", &format!("`{key}`")]);
        std::fs::remove_file(tmp.path().join("g4q.toml")).unwrap();
    }
    println!("checked {} misspelt configs, twice each", cases.len());
}

/// Converts `model` with `args` to `out`, asserting success.
fn convert(model: &Path, ty: &str, out: &Path) {
    let res = g4q_in(
        Path::new("."),
        &["convert", s(model), "--type", ty, "--out", s(out)],
    );
    assert!(res.status.success(), "{}", stderr(&res));
}

/// Writes `bytes` at the start of GGUF tensor `name`'s data in `path`.
fn patch_gguf(path: &Path, name: &str, offset: usize, bytes: &[u8]) {
    let (start, len) = {
        let f = GgufFile::open(path).unwrap();
        let info = f.header().tensor(name).unwrap();
        (
            (f.header().data_offset + info.offset) as usize,
            info.checked_n_bytes().unwrap() as usize,
        )
    };
    assert!(offset + bytes.len() <= len);
    let mut all = std::fs::read(path).unwrap();
    all[start + offset..start + offset + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, all).unwrap();
}

/// The schema every report must follow.
fn report_schema() -> jsonschema::Validator {
    let path = testkit::repo_root().join("schemas/verify-report.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// Asserts that a run failed the `finite` gate: exit 1 with one `gate failed: finite:` line
/// holding every needle, and a schema-valid report at `json` without metrics whose one gate
/// is the failing `finite` one with the same message; and that the report is refused as a
/// baseline (exit 2, saying why).
fn assert_not_finite(what: &str, out: &Output, json: &Path, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: not one line: {err}");
    assert!(err.contains("gate failed: finite: "), "{what}: {err}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let errors: Vec<String> = report_schema()
        .iter_errors(&report)
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors, Vec::<String>::new(), "{what}: {report}");
    let gates = report["gates"].as_array().unwrap();
    assert_eq!(gates.len(), 1, "{what}: {report}");
    assert_eq!(gates[0]["name"], "finite");
    assert_eq!(gates[0]["passed"], false);
    let message = gates[0]["message"].as_str().unwrap();
    assert!(err.contains(message), "{what}: {message} vs {err}");
    for n in needles {
        assert!(message.contains(n), "{what}: expected '{n}' in: {message}");
    }
    for metric in ["tokens", "kld_mean", "ppl_ratio", "top1_agreement"] {
        assert!(report.get(metric).is_none(), "{what}: {metric} in {report}");
    }
    let dir = json.parent().unwrap();
    let res = verify(dir, &reference(), &["--baseline", s(json)]);
    assert_input_error(
        what,
        &res,
        &[s(json), "not a usable baseline", "failed gate finite"],
    );
}

/// Defect 8: a NaN block scale or an infinite float weight in a GGUF candidate fails the run
/// with a line naming the tensor under both kinds of arithmetic (where ggml's products used to
/// fold it into a tiny KLD and exit 0 with no gates), and the report says so.
#[test]
fn non_finite_gguf_weights_fail_the_finite_gate_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let nan = half::f16::NAN.to_le_bytes();
    let inf = half::f16::INFINITY.to_le_bytes();
    let mut cases = 0;
    for (ty, offset, bytes) in [
        ("Q8_0", 34, nan),  // the second block's scale
        ("Q8_0", 0, inf),   // the first block's scale
        ("F16", 10, inf),   // a value
        ("Q4_K_M", 0, nan), // ffn_up is Q4_K or Q6_K: d sits at 0 in Q4_K, 208 in Q6_K
    ] {
        let gguf = tmp.path().join(format!("{ty}-{offset}.gguf"));
        convert(&reference(), ty, &gguf);
        let ggml_ty = GgufFile::open(&gguf)
            .unwrap()
            .header()
            .tensor(UP_PROJ_GGUF)
            .unwrap()
            .ty;
        let offset = if ggml_ty == kernels::GgmlType::Q6K {
            208
        } else {
            offset
        };
        patch_gguf(&gguf, UP_PROJ_GGUF, offset, &bytes);
        for math in ["ggml", "dequantize"] {
            let json = tmp.path().join("report.json");
            let out = verify(
                tmp.path(),
                &gguf,
                &["--gguf-math", math, "--json", s(&json), "--max-kld", "1"],
            );
            assert_not_finite(
                &format!("{ty} {math}"),
                &out,
                &json,
                &[UP_PROJ_GGUF, s(&gguf)],
            );
            cases += 1;
        }
    }
    println!("checked {cases} corrupt candidates");
}

/// Defect 8 beyond GGUF: a safetensors candidate with an infinite weight, or with a finite
/// weight so large that the forward pass overflows into NaN logits, fails the `finite` gate
/// with a report naming the tensor or the position.
#[test]
fn non_finite_candidate_results_fail_the_finite_gate() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            f32::INFINITY,
            vec![
                "layers.0.mlp.up_proj.weight",
                "non-finite value at element 130",
            ],
        ),
        // The first scored position (the second half of a 16-token chunk).
        (3.0e38, vec!["logits are not finite at chunk 0, position 8"]),
    ];
    for (value, needles) in &cases {
        let dir = tempfile::tempdir_in(tmp.path()).unwrap();
        let model = checkpoint_with(dir.path(), UP_PROJ, 130, *value);
        let json = dir.path().join("report.json");
        let out = verify(dir.path(), &model, &["--json", s(&json)]);
        assert_not_finite(&format!("{value}"), &out, &json, needles);
    }
    println!("checked {} non-finite candidates", cases.len());
}

/// Defect 9: a finite weight the output type cannot hold (70144 in F16, a block whose Q8_0
/// scale would overflow f16) is an error naming the tensor and the value, and nothing is
/// written, where it used to be written as +Inf.
#[test]
fn weights_too_large_for_the_output_type_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("F16", 70144.0f32, "70144"),
        ("Q8_0", 1.0e10, "9999"),
        ("Q4_K_M", 1.0e10, "9999"),
    ];
    for (ty, value, shown) in cases {
        let dir = tempfile::tempdir_in(tmp.path()).unwrap();
        let model = checkpoint_with(dir.path(), UP_PROJ, 130, value);
        let out = dir.path().join("out.gguf");
        let res = g4q_in(
            dir.path(),
            &["convert", s(&model), "--type", ty, "--out", s(&out)],
        );
        assert_input_error(ty, &res, &[UP_PROJ_GGUF, shown, "does not fit"]);
        assert!(!out.exists(), "{ty}: an output was written");
    }
    // The same values in BF16 and F32 fit.
    let model = checkpoint_with(tmp.path(), UP_PROJ, 130, 70144.0);
    for ty in ["BF16", "F32"] {
        convert(&model, ty, &tmp.path().join(format!("{ty}.gguf")));
    }
    println!("checked {} values that do not fit, 2 that do", cases.len());
}

/// Runs the reference against itself and returns the report (a valid baseline).
fn baseline(dir: &Path) -> Value {
    let json = dir.join("base.json");
    let out = verify(dir, &reference(), &["--json", s(&json)]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

/// What a case does to a valid report, and what the error must then say.
type BaselineEdit = (&'static str, Box<dyn Fn(&mut Value)>, &'static str);

/// Defect 14: a baseline of another reference model, with a standard error no run can have
/// (it made the regression gate's noise infinite), or from another tool is an input error;
/// the untouched report is accepted.
#[test]
fn baselines_are_validated() {
    let tmp = tempfile::tempdir().unwrap();
    let base = baseline(tmp.path());
    let edits: Vec<BaselineEdit> = vec![
        (
            "another model",
            Box::new(|v| v["reference"]["sha256"] = Value::from("ab".repeat(32))),
            "another reference model",
        ),
        (
            "huge stderr",
            Box::new(|v| v["kld_mean_stderr"] = Value::from(1e300)),
            "kld_mean_stderr",
        ),
        (
            "huge ratio stderr",
            Box::new(|v| v["ppl_ratio_stderr"] = Value::from(1e300)),
            "ppl_ratio_stderr",
        ),
        (
            "another tool",
            Box::new(|v| v["tool"] = Value::from("not-g4q")),
            "not-g4q",
        ),
        (
            "negative stderr",
            Box::new(|v| v["top1_agreement_stderr"] = Value::from(-0.5)),
            "top1_agreement_stderr",
        ),
        (
            "top-1 above 1",
            Box::new(|v| v["top1_agreement"] = Value::from(1.5)),
            "top1_agreement",
        ),
        (
            "bad fingerprint",
            Box::new(|v| v["data"]["tokens_sha256"] = Value::from("x")),
            "tokens_sha256",
        ),
        (
            "more tokens than chunks hold",
            Box::new(|v| v["tokens"] = Value::from(1_000_000)),
            "tokens",
        ),
        (
            "missing figure",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("kld_mean");
            }),
            "kld_mean",
        ),
        (
            "unknown kind",
            Box::new(|v| v["candidate"]["kind"] = Value::from("pickle")),
            "pickle",
        ),
    ];
    for (what, edit, needle) in &edits {
        let mut v = base.clone();
        edit(&mut v);
        let file = tmp.path().join("edited.json");
        std::fs::write(&file, serde_json::to_string(&v).unwrap()).unwrap();
        let out = verify(tmp.path(), &reference(), &["--baseline", s(&file)]);
        assert_input_error(what, &out, &["edited.json", needle]);
    }
    let file = tmp.path().join("base.json");
    let out = verify(tmp.path(), &reference(), &["--baseline", s(&file)]);
    assert!(out.status.success(), "{}", stderr(&out));
    println!("checked {} bad baselines and the good one", edits.len());
}

/// Defect 16: a thread count no machine can use is a usage error at once (it used to hang
/// starting 100 000 threads), for every command that takes `--threads`.
#[test]
fn absurd_thread_counts_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let r = reference();
    let out = tmp.path().join("x.safetensors");
    let mut cases = 0;
    for n in ["0", "100000", "18446744073709551615"] {
        for args in [
            vec!["forward", s(&r), "--tokens", "2,5", "--out", s(&out)],
            vec!["verify", "--reference", s(&r), "--candidate", s(&r)],
        ] {
            let mut args = args.clone();
            args.extend(["--threads", n]);
            let start = std::time::Instant::now();
            let res = g4q_in(tmp.path(), &args);
            assert_eq!(res.status.code(), Some(2), "{args:?}: {}", stderr(&res));
            assert!(stderr(&res).contains("--threads"), "{}", stderr(&res));
            assert!(start.elapsed().as_secs() < 30, "{args:?} took too long");
            assert!(!out.exists());
            cases += 1;
        }
    }
    println!("checked {cases} thread counts");
}

/// Defect 17: data read from a pipe is recorded with the sha256 of the bytes read, not of the
/// empty stream a second read finds.
#[test]
fn piped_data_is_hashed_as_read() {
    let tmp = tempfile::tempdir().unwrap();
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(40);
    let json = tmp.path().join("r.json");
    let r = reference();
    let mut child = Command::new(env!("CARGO_BIN_EXE_g4q"))
        .args([
            "verify",
            "--reference",
            s(&r),
            "--candidate",
            s(&r),
            "--data",
            "/dev/stdin",
            "--ctx",
            "16",
            "--chunks",
            "2",
            "--json",
            s(&json),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let want = hex::encode(Sha256::digest(text.as_bytes()));
    assert_eq!(report["data"]["sha256"].as_str(), Some(want.as_str()));
    assert_eq!(report["data"]["kind"].as_str(), Some("text"));
    println!("checked 1 piped data file");
}

/// Issue 13 item 6: `--type` and `--imatrix auto` are typed values: a missing or unknown type
/// and `auto` where no forward pass can run are usage errors (exit 2).
#[test]
fn typed_cli_values_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let r = reference();
    let out = tmp.path().join("o.gguf");
    let cases: Vec<Vec<&str>> = vec![
        vec!["convert", s(&r), "--out", s(&out)],
        vec!["convert", s(&r), "--type", "Q9_K", "--out", s(&out)],
        vec!["convert", s(&r), "--type", "", "--out", s(&out)],
        vec![
            "convert",
            s(&r),
            "--type",
            "Q4_0",
            "--imatrix",
            "",
            "--out",
            s(&out),
        ],
        vec![
            "convert",
            s(&r),
            "--type",
            "Q4_0",
            "--imatrix",
            "auto",
            "--out",
            s(&out),
        ],
        vec!["quantize", "in.gguf", "--out", s(&out)],
        vec!["forward", s(&r), "--out", s(&out)],
    ];
    for args in &cases {
        let res = g4q_in(tmp.path(), args);
        assert_eq!(res.status.code(), Some(2), "{args:?}: {}", stderr(&res));
        assert!(!out.exists());
    }
    println!("checked {} flag errors", cases.len());
}

/// Every object path of `v` (array elements by index).
fn object_paths(v: &Value, prefix: &[String], out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => {
            out.push(prefix.to_vec());
            for (k, child) in m {
                let mut p = prefix.to_vec();
                p.push(k.clone());
                object_paths(child, &p, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let mut p = prefix.to_vec();
                p.push(i.to_string());
                object_paths(child, &p, out);
            }
        }
        _ => {}
    }
}

fn at_path<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, p| match v {
        Value::Array(items) => &mut items[p.parse::<usize>().unwrap()],
        other => &mut other[p.as_str()],
    })
}

/// Defect 14, against the schema: every edit of a real report that the baseline reader
/// accepts validates against `schemas/verify-report.schema.json` (each field of each object
/// replaced by a hostile value or removed, and an unknown field added to each object), so the
/// runtime check is at least as strict as the schema.
#[test]
fn accepted_baselines_validate_against_the_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let base = baseline(tmp.path());
    let sha = base["reference"]["sha256"].as_str().unwrap().to_string();
    let schema_path = testkit::repo_root().join("schemas/verify-report.schema.json");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(validator.is_valid(&base));
    let hostile = [
        Value::from(1e300),
        Value::from(-1.0),
        Value::from(1.5),
        Value::from(0),
        Value::from(-7),
        Value::from(""),
        Value::from("x"),
        Value::from("not-g4q"),
        Value::from("a".repeat(64)),
        Value::Null,
        Value::Bool(false),
        Value::Array(Vec::new()),
        serde_json::json!({}),
    ];
    let mut objects = Vec::new();
    object_paths(&base, &[], &mut objects);
    let (mut accepted, mut rejected) = (0, 0);
    for obj_path in &objects {
        let keys: Vec<String> = at_path(&mut base.clone(), obj_path)
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let mut edits: Vec<Value> = Vec::new();
        for key in &keys {
            for h in hostile.iter().cloned().map(Some).chain([None]) {
                let mut v = base.clone();
                let obj = at_path(&mut v, obj_path).as_object_mut().unwrap();
                match h {
                    Some(h) => obj.insert(key.clone(), h),
                    None => obj.remove(key),
                };
                edits.push(v);
            }
        }
        let mut extra = base.clone();
        at_path(&mut extra, obj_path)
            .as_object_mut()
            .unwrap()
            .insert("unexpected".into(), Value::from(1));
        edits.push(extra);
        for v in edits {
            let text = serde_json::to_string(&v).unwrap();
            match verify::report::Report::baseline_from_json(&text, "b.json", &sha) {
                Ok(_) => {
                    let errors: Vec<String> =
                        validator.iter_errors(&v).map(|e| e.to_string()).collect();
                    assert!(
                        errors.is_empty(),
                        "accepted but invalid: {errors:?}\n{text}"
                    );
                    accepted += 1;
                }
                Err(_) => rejected += 1,
            }
        }
    }
    assert!(accepted > 0 && rejected > 0);
    println!("{accepted} edited reports accepted (all schema-valid), {rejected} rejected");
}
