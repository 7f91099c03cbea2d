//! `g4q bench`: the JSON report validates against its schema and carries the fields pipelines
//! read; `--merge` of two files gives the expected table; bad input exits 2 with one line.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

fn g4q(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_g4q"))
        .args(args)
        .env("CI", "1")
        .output()
        .expect("runs g4q")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn validator() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/bench-report.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn errors(v: &jsonschema::Validator, report: &Value) -> Vec<String> {
    v.iter_errors(report).map(|e| e.to_string()).collect()
}

/// Asserts exit code 2 and a single `g4q: error:` line containing `msg`.
fn assert_usage(out: &Output, msg: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(
        err.starts_with("g4q: error:") && err.contains(msg),
        "expected '{msg}' in: {err}"
    );
}

#[test]
fn report_validates_and_names_its_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let v = validator();
    let out_path = tmp.path().join("r.json");
    let out = g4q(&[
        "bench",
        "--types",
        "Q4_0,AWQ_INT4_G32",
        "--shapes",
        "attn_kv",
        "--ops",
        "decode,prefill128",
        "--threads",
        "1,2",
        "--paths",
        "scalar",
        "--working-set-mib",
        "4",
        "--json",
        s(&out_path),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("| Q4_0 | decode | attn_kv 256x1536 | scalar | 1 |"),
        "{stdout}"
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    assert_eq!(errors(&v, &r), Vec::<String>::new());
    assert!(!r["host"]["cpu_model"].as_str().unwrap().is_empty());
    assert!(r["host"]["features"].is_array());
    assert!(r["limits"]["read_bandwidth_gbs"].as_f64().unwrap() > 0.0);
    let results = r["results"].as_array().unwrap();
    // Q4_0: 2 ops × 2 thread counts on scalar; AWQ: the same on its one path.
    assert_eq!(results.len(), 8);
    for m in results {
        for k in [
            "type",
            "op",
            "shape",
            "path",
            "threads",
            "working_set_bytes",
            "weight_gbs",
            "percent_of_bandwidth",
        ] {
            assert!(!m[k].is_null(), "{k} missing in {m}");
        }
        assert!(m["working_set_bytes"].as_u64().unwrap() >= 4 << 20);
    }
    assert_eq!(results[0]["type"], "Q4_0");
    assert_eq!(results[7]["type"], "AWQ_INT4_G32");
    assert_eq!(results[7]["path"], "f32-widen");
    // The schema is not a rubber stamp.
    let mut broken = r.clone();
    broken["results"][0]["op"] = json!("prefill7");
    assert!(!errors(&v, &broken).is_empty());
    let mut broken = r.clone();
    broken["limits"]
        .as_object_mut()
        .unwrap()
        .remove("read_bandwidth_gbs");
    assert!(!errors(&v, &broken).is_empty());
    println!("checked {} results and 2 broken reports", results.len());
}

#[test]
fn estimate_from_the_plan_validates() {
    let tmp = tempfile::tempdir().unwrap();
    let out_path = tmp.path().join("e.json");
    let out = g4q(&[
        "bench",
        "--variant",
        "e2b",
        "--type",
        "Q8_0",
        "--ctx",
        "4096",
        "--threads",
        "2",
        "--working-set-mib",
        "16",
        "--json",
        s(&out_path),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    assert_eq!(errors(&validator(), &r), Vec::<String>::new());
    let e = &r["estimate"];
    assert!(e["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(e["prefill_tokens_per_s"].as_f64().unwrap() > 0.0);
    let sum = ["weights_bytes", "kv_cache_bytes", "compute_buffer_bytes"]
        .iter()
        .map(|k| e[k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(e["memory_bytes"].as_u64().unwrap(), sum);
    // E2B at 4k: 12 sliding layers × 512 × 1 KiB + 3 full × 4096 × 2 KiB (see tests in bench/).
    assert_eq!(e["kv_cache_bytes"], 31_457_280);
    println!("estimate: {e}");
}

#[test]
fn estimate_from_a_device_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let out_path = tmp.path().join("d.json");
    let out = g4q(&[
        "bench",
        "--variant",
        "31b",
        "--type",
        "Q4_K_M",
        "--ctx",
        "32768",
        "--device",
        "nvidia-h100-sxm",
        "--json",
        s(&out_path),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    assert_eq!(r["device"]["name"], "nvidia-h100-sxm");
    // 31B at 32k: 50 sliding layers × 1024 × 16 KiB + 10 full × 32768 × 4 KiB (K only).
    assert_eq!(
        r["estimate"]["kv_cache_bytes"],
        50u64 * 1024 * 16_384 + 10 * 32_768 * 4096
    );
    assert!(r["estimate"]["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
    println!("profile estimate: {}", r["estimate"]);
}

fn report(host: &str, cpu: &str, bw: f64, results: Value) -> Value {
    json!({
        "schema": "g4q-bench/1", "g4q_version": "0.1.0",
        "host": {"name": host, "os": "linux", "arch": "x86_64", "cpu_vendor": "v", "cpu_model": cpu,
                 "features": ["avx2"], "physical_cores": 4, "logical_cores": 8,
                 "caches": {"l1d_bytes": null, "l2_bytes": null, "l3_bytes": 1024},
                 "memory_bytes": 1024},
        "limits": {"read_bandwidth_gbs": bw, "read_bandwidth_1t_gbs": bw, "triad_bandwidth_gbs": bw,
                   "triad_bandwidth_1t_gbs": bw, "fma_gflops_per_core": 10.0, "threads": 8,
                   "buffer_bytes": 1024},
        "variant": "e2b", "quick": true, "results": results
    })
}

fn m(ty: &str, op: &str, threads: usize, gbs: f64, pct: f64) -> Value {
    json!({"type": ty, "op": op, "shape": "ffn_up", "rows": 6144, "cols": 1536, "path": "avx2",
           "threads": threads, "working_set_bytes": 1, "matrix_bytes": 1, "time_s": 1.0,
           "weight_gbs": gbs, "percent_of_bandwidth": pct, "gflops": 1.0})
}

#[test]
fn merge_puts_machines_side_by_side() {
    let tmp = tempfile::tempdir().unwrap();
    let a = report(
        "a",
        "CPU A",
        20.0,
        json!([
            m("Q4_K", "decode", 8, 12.5, 62.5),
            // Fewer threads, faster: not the all-thread figure, so not shown.
            m("Q4_K", "decode", 1, 30.0, 99.0),
            m("Q4_K", "prefill128", 8, 99.0, 99.0),
            m("Q8_0", "decode", 8, 10.0, 50.0),
            m("Q8_0", "decode", 8, 9.0, 45.0),
        ]),
    );
    let b = report(
        "b",
        "CPU B",
        25.0,
        json!([
            m("AWQ_INT4_G128", "decode", 4, 5.0, 20.0),
            m("Q4_K", "decode", 4, 20.0, 80.0),
        ]),
    );
    for (name, r) in [("a.json", &a), ("b.json", &b)] {
        assert_eq!(errors(&validator(), r), Vec::<String>::new(), "{name}");
        std::fs::write(tmp.path().join(name), r.to_string()).unwrap();
    }
    std::fs::write(tmp.path().join("notes.txt"), "not a report").unwrap();
    let out = g4q(&["bench", "--merge", s(tmp.path())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = "\
| format | a (CPU A) | b (CPU B) |
|---|---:|---:|
| Q8_0 | 10.0 GB/s (50%) | – |
| Q4_K | 12.5 GB/s (62%) | 20.0 GB/s (80%) |
| AWQ_INT4_G128 | – | 5.0 GB/s (20%) |
";
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);

    // A malformed file: exit 2, one line naming it.
    std::fs::write(tmp.path().join("c.json"), "{\"schema\": \"g4q-bench/1\", ").unwrap();
    assert_usage(&g4q(&["bench", "--merge", s(tmp.path())]), "c.json");
    let empty = tempfile::tempdir().unwrap();
    assert_usage(&g4q(&["bench", "--merge", s(empty.path())]), "no *.json");
    println!("checked 1 merged table and 2 bad folders");
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let cases: [(&[&str], &str); 9] = [
        (
            &["bench", "--type", "Q4_K_M", "--device", "pdp-11"],
            "unknown device 'pdp-11'",
        ),
        (
            &["bench", "--device", "nvidia-l4"],
            "--device needs --model or --type",
        ),
        (&["bench", "--variant", "7b"], "unknown variant '7b'"),
        (
            &["bench", "--types", "Q4_K,Q7_K"],
            "--types: unknown type 'Q7_K'",
        ),
        (
            &["bench", "--shapes", "ffn_sideways"],
            "--shapes: unknown shape 'ffn_sideways'",
        ),
        (
            &["bench", "--ops", "decode,prefill7"],
            "--ops: unknown op 'prefill7'",
        ),
        (&["bench", "--threads", "0"], "--threads: '0'"),
        (&["bench", "--type", "Q9_9"], "--type"),
        (
            &["bench", "--model", "/nonexistent/m.gguf"],
            "/nonexistent/m.gguf",
        ),
    ];
    for (args, msg) in cases {
        assert_usage(&g4q(args), msg);
    }
    println!("checked {} bad inputs", cases.len());
}
