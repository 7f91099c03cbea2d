//! `g4q recommend`: on trained-e2b its evaluated KLDs equal `g4q verify` runs of the files
//! `g4q convert` writes; its memory column for 31B and 26B-A4B equals a hand count; constraints,
//! ties, "not measured", exit codes 1 and 2, the JSON schema and the SVG.

use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};
use testkit::{g4q, g4q_ok, path_str as s};

fn validator() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/recommend-report.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn assert_valid(report: &Value) {
    let errors: Vec<String> = validator()
        .iter_errors(report)
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors, Vec::<String>::new());
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The SVG parses as XML, is an `svg` element, and holds `points` circles.
fn assert_svg(p: &Path, points: usize) {
    let text = std::fs::read_to_string(p).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let circles = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "circle")
        .count();
    assert_eq!(circles, points);
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

/// `g4q verify` of `file` against `model` at the tests' evaluation settings (ctx 64 × 3): its
/// JSON report, the figures `recommend --evaluate` must equal.
fn verify_json(dir: &Path, model: &Path, file: &Path, data: &Path, name: &str) -> Value {
    let v_json = dir.join(format!("{name}.verify.json"));
    g4q_ok!(&[
        "verify",
        "--reference",
        s(model),
        "--candidate",
        s(file),
        "--data",
        s(data),
        "--ctx",
        "64",
        "--chunks",
        "3",
        "--no-layer-errors",
        "--json",
        s(&v_json),
    ]);
    read_json(&v_json)
}

fn candidate<'a>(device: &'a Value, name: &str) -> &'a Value {
    device["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no candidate {name}"))
}

#[test]
fn evaluated_klds_equal_verify_runs() {
    let Some(model) = testkit::fixture("trained-e2b/released-bf16") else {
        return;
    };
    let dir = model.parent().unwrap();
    let data = dir.join("eval-a.txt");
    let imatrix = dir.join("llamacpp/imatrix.gguf");
    let tmp = tempfile::tempdir().unwrap();
    let (json_path, md, svg) = (
        tmp.path().join("r.json"),
        tmp.path().join("r.md"),
        tmp.path().join("r.svg"),
    );
    let names = ["Q8_0", "Q4_K_M", "Q4_K_M-imatrix", "IQ4_XS", "Q2_K"];
    let out = g4q_ok!(&[
        "recommend",
        s(&model),
        "--device",
        "nvidia-rtx-4090",
        "--device",
        "raspberry-pi-5",
        "--imatrix",
        s(&imatrix),
        "--candidates",
        &names.join(","),
        "--evaluate",
        "--data",
        s(&data),
        "--eval-ctx",
        "64",
        "--chunks",
        "3",
        "--json",
        s(&json_path),
        "--markdown",
        s(&md),
        "--plot",
        s(&svg),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let r = read_json(&json_path);
    assert_valid(&r);
    assert_eq!(r["evidence"], "evaluated");
    let devices = r["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    let mut checked = 0;
    for name in names {
        // The file `g4q convert` writes is the file that was scored: same bytes.
        let file = tmp.path().join(format!("{name}.gguf"));
        let ty = name.trim_end_matches("-imatrix");
        let mut args = vec!["convert", s(&model), "--type", ty, "--out", s(&file)];
        if name.ends_with("-imatrix") {
            args.extend(["--imatrix", s(&imatrix)]);
        }
        g4q_ok!(&args);
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            std::fs::read(&file).unwrap(),
        ));
        let v = verify_json(tmp.path(), &model, &file, &data, name);
        for d in devices {
            let c = candidate(d, name);
            assert_eq!(c["sha256"], sha, "{name}");
            for k in ["kld_mean", "kld_mean_stderr", "top1_agreement", "ppl_ratio"] {
                assert_eq!(c[k], v[k], "{name} {k} on {}", d["name"]);
            }
        }
        let printed = format!("| {name} |");
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&printed))
            .unwrap_or_else(|| panic!("no row {name} in {stdout}"));
        let kld = format!(
            "{:.6} ± {:.6}",
            v["kld_mean"].as_f64().unwrap(),
            v["kld_mean_stderr"].as_f64().unwrap()
        );
        assert!(line.contains(&kld), "{line} lacks verify's {kld}");
        println!("{name}: KLD {kld} (sha256 {})", &sha[..12]);
        checked += 1;
    }
    // A pick on both devices: the tiny model fits everywhere, and the pick is the lowest KLD
    // or tied with it within two standard errors.
    for d in devices {
        let pick = d["pick"].as_str().expect("a pick");
        let p = candidate(d, pick);
        let best = d["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .min_by(|a, b| {
                a["kld_mean"]
                    .as_f64()
                    .partial_cmp(&b["kld_mean"].as_f64())
                    .unwrap()
            })
            .unwrap();
        let se = |c: &Value| c["kld_mean_stderr"].as_f64().unwrap();
        let gap = p["kld_mean"].as_f64().unwrap() - best["kld_mean"].as_f64().unwrap();
        assert!(gap <= 2.0 * (se(p).powi(2) + se(best).powi(2)).sqrt());
        assert!(stdout.contains(&format!("pick: {pick}. ")), "{stdout}");
        println!("{}: pick {pick}: {}", d["name"], d["reason"]);
    }
    let md = std::fs::read_to_string(&md).unwrap();
    assert!(md.starts_with("## Which file to use"), "{md}");
    assert!(md.contains("| NVIDIA GeForce RTX 4090 | "), "{md}");
    assert_svg(&svg, names.len());
    println!("checked {checked} candidates × 2 devices against g4q verify");
}

/// (variant, ctx, KV cache bytes, compute buffer bytes), by hand from the config:
/// - KV: sliding layers × min(ctx, 1024) × kv_heads × 256 × 2 B × 2 (K and V) + full layers ×
///   ctx × global_kv_heads × 512 × 2 B (K only: V = K on the full layers of 26B-A4B and 31B);
/// - buffers: 4 B × 512 tokens × (vocab 262144 + 2 × widest MLP + 3 × hidden + heads × 512)
///   + 4 B × 512 × heads × ctx (one layer's attention scores).
const HAND: [(&str, u64, u64, u64); 4] = [
    // 31B: 60 layers, 50 sliding (16 KV heads: 16 KiB per position), 10 full (4 global KV
    // heads: 4 KiB); MLP 21504, hidden 5376, 32 heads.
    (
        "31b",
        8192,
        50 * 1024 * 16_384 + 10 * 8192 * 4096,
        2048 * (262_144 + 43_008 + 16_128 + 16_384) + 65_536 * 8192,
    ),
    (
        "31b",
        131_072,
        50 * 1024 * 16_384 + 10 * 131_072 * 4096,
        2048 * (262_144 + 43_008 + 16_128 + 16_384) + 65_536 * 131_072,
    ),
    // 26B-A4B: 30 layers, 25 sliding (8 KV heads: 8 KiB), 5 full (2 global KV heads: 2 KiB);
    // widest MLP max(2112, top-8 × 704 = 5632), hidden 2816, 16 heads.
    (
        "26b-a4b",
        8192,
        25 * 1024 * 8192 + 5 * 8192 * 2048,
        2048 * (262_144 + 11_264 + 8448 + 8192) + 32_768 * 8192,
    ),
    (
        "26b-a4b",
        131_072,
        25 * 1024 * 8192 + 5 * 131_072 * 2048,
        2048 * (262_144 + 11_264 + 8448 + 8192) + 32_768 * 131_072,
    ),
];

#[test]
fn memory_of_real_width_plans_matches_hand_count() {
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for variant in ["31b", "26b-a4b"] {
        // Weights: the `g4q convert --dry-run --json` total of each mix, planned on the
        // variant's real-width header (no data written).
        let v = bench::formats::parse_variant(variant).unwrap();
        let sparse = bench::estimate::sparse_checkpoint(v).unwrap();
        let mut weights = std::collections::BTreeMap::new();
        for ty in ["Q4_K_M", "Q8_0"] {
            let out = g4q_ok!(&[
                "convert",
                s(sparse.path()),
                "--type",
                ty,
                "--dry-run",
                "--json"
            ]);
            let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
            weights.insert(
                ty,
                (
                    plan["bytes"].as_u64().unwrap(),
                    plan["bits_per_weight"].clone(),
                ),
            );
        }
        for &(_, ctx, kv, buffers) in HAND.iter().filter(|h| h.0 == variant) {
            let path = tmp.path().join(format!("{variant}-{ctx}.json"));
            let out = g4q!(&[
                "recommend",
                "--variant",
                variant,
                "--device",
                "nvidia-rtx-4090",
                "--device",
                "nvidia-h100-sxm",
                "--ctx",
                &ctx.to_string(),
                "--candidates",
                "Q4_K_M,Q8_0",
                "--json",
                s(&path),
            ]);
            // Nothing is measured: no pick, exit 1, the report is still written.
            assert_eq!(
                out.status.code(),
                Some(1),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let r = read_json(&path);
            assert_valid(&r);
            for d in r["devices"].as_array().unwrap() {
                let usable = d["usable_memory_bytes"].as_u64().unwrap();
                assert_eq!(
                    usable,
                    (d["memory_bytes"].as_u64().unwrap() as f64 * 0.9) as u64
                );
                for (ty, (w, bpw)) in &weights {
                    let c = candidate(d, ty);
                    let memory = w + kv + buffers;
                    assert_eq!(c["bytes"], *w, "{variant} {ty}");
                    assert_eq!(c["kv_cache_bytes"], kv, "{variant} {ty} at {ctx}");
                    assert_eq!(
                        c["compute_buffer_bytes"], buffers,
                        "{variant} {ty} at {ctx}"
                    );
                    assert_eq!(c["memory_bytes"], memory, "{variant} {ty} at {ctx}");
                    assert_eq!(c["fits"], memory <= usable);
                    assert!(
                        (c["bits_per_weight"].as_f64().unwrap() - bpw.as_f64().unwrap()).abs()
                            < 1e-9
                    );
                    assert_eq!(c["kld_mean"], Value::Null);
                    assert_eq!(c["rejected"][0], "not measured");
                    println!(
                        "{variant} {ty} at {ctx} on {}: {memory} B ({:.2} GiB), fits {}",
                        d["name"],
                        memory as f64 / (1u64 << 30) as f64,
                        memory <= usable
                    );
                    checked += 1;
                }
            }
        }
    }
    // Sanity of the hand count against the devices: 31B Q4_K_M at 8k does not fit a 24 GB card.
    assert_eq!(checked, 16);
    println!("checked {checked} memory figures");
}

/// A `g4q verify --json` report of `candidate` with the given figures.
fn verify_report(candidate: &str, kld: f64, se: f64, top1: f64, ppl_ratio: f64) -> Value {
    let sha = |s: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(s.as_bytes()));
    json!({
        "tool": "g4q", "version": "0.1.0", "command": "g4q verify",
        "reference": {"path": "ref", "kind": "safetensors", "sha256": sha("ref")},
        "candidate": {"path": candidate, "kind": "gguf", "sha256": sha(candidate)},
        "gguf_math": "ggml",
        "data": {"path": "eval.txt", "kind": "text", "sha256": sha("text"), "tokens_sha256": sha("tokens"),
                 "ctx": 512, "chunks": 10, "scored": "second-half"},
        "tokens": 2550,
        "ppl_reference": 10.0, "ppl_reference_stderr": 0.1,
        "ppl_candidate": 10.0 * ppl_ratio, "ppl_candidate_stderr": 0.1,
        "ppl_ratio": ppl_ratio, "ppl_ratio_stderr": 0.001,
        "kld_mean": kld, "kld_mean_stderr": se, "kld_median": kld, "kld_p99": kld * 5.0, "kld_max": kld * 10.0,
        "top1_agreement": top1, "top1_agreement_stderr": 0.001,
        "delta_p_mean": 0.0, "delta_p_mean_stderr": 0.0, "delta_p_rms": 0.01, "delta_p_rms_stderr": 0.001,
        "layers": [], "gates": [], "seconds": 1.0, "tokens_per_second": 100.0
    })
}

#[test]
fn reports_constraints_ties_and_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    // Q8_0 and Q6_K tie (0.0010 vs 0.0012, standard errors 0.0002): the faster Q6_K wins;
    // Q4_K_M is clearly worse; Q5_K_M has no report.
    for (file, kld, se, top1, ratio) in [
        ("gemma-Q8_0.gguf", 0.0010, 0.0002, 0.99, 1.001),
        ("gemma-Q6_K.gguf", 0.0012, 0.0002, 0.98, 1.002),
        ("gemma-Q4_K_M.gguf", 0.0200, 0.0010, 0.90, 1.030),
    ] {
        let r = verify_report(&format!("/rel/{file}"), kld, se, top1, ratio);
        std::fs::write(reports.join(format!("{file}.json")), r.to_string()).unwrap();
    }
    let run = |extra: &[&str], json_name: &str| -> (Output, Value) {
        let path = tmp.path().join(json_name);
        let mut args = vec![
            "recommend",
            "--variant",
            "e2b",
            "--device",
            "nvidia-l4",
            "--device",
            "raspberry-pi-5",
            "--candidates",
            "Q8_0,Q6_K,Q5_K_M,Q4_K_M",
            "--reports",
            s(&reports),
            "--json",
            s(&path),
        ];
        args.extend(extra);
        let out = g4q!(&args);
        let v = if path.exists() {
            read_json(&path)
        } else {
            Value::Null
        };
        (out, v)
    };
    let mut checked = 0;

    // Ties go to the faster; "not measured" is listed, never picked.
    let svg = tmp.path().join("p.svg");
    let (out, r) = run(&["--plot", s(&svg)], "a.json");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_valid(&r);
    for d in r["devices"].as_array().unwrap() {
        assert_eq!(d["pick"], "Q6_K", "{}", d["reason"]);
        assert!(d["reason"]
            .as_str()
            .unwrap()
            .starts_with("Q6_K ties on KLD within two standard errors with Q8_0"));
        let q5 = candidate(d, "Q5_K_M");
        assert_eq!(q5["kld_mean"], Value::Null);
        assert_eq!(q5["rejected"], json!(["not measured"]));
        assert!(
            candidate(d, "Q6_K")["decode_tokens_per_s"].as_f64()
                > candidate(d, "Q8_0")["decode_tokens_per_s"].as_f64()
        );
        assert_eq!(
            candidate(d, "Q8_0")["evidence"],
            reports.join("gemma-Q8_0.gguf.json").display().to_string()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("| Q5_K_M |") && stdout.contains("not measured"),
        "{stdout}"
    );
    assert_svg(&svg, 3);
    checked += 1;

    // Constraints: --max-kld 0.005 keeps Q8_0/Q6_K; --min-top1 0.985 leaves Q8_0 alone.
    let (out, r) = run(&["--max-kld", "0.005", "--min-top1", "0.985"], "b.json");
    assert!(out.status.success());
    assert_eq!(r["constraints"]["min_top1"], 0.985);
    for d in r["devices"].as_array().unwrap() {
        assert_eq!(d["pick"], "Q8_0");
        assert_eq!(
            candidate(d, "Q6_K")["rejected"],
            json!(["top1_agreement 0.9800 < min_top1 0.985"])
        );
        assert_eq!(
            candidate(d, "Q4_K_M")["rejected"],
            json!([
                "kld_mean 0.020000 > max_kld 0.005",
                "top1_agreement 0.9000 < min_top1 0.985"
            ])
        );
    }
    checked += 1;

    // The same constraints from g4q.toml; a flag overrides the file.
    let toml = tmp.path().join("g4q.toml");
    std::fs::write(
        &toml,
        "[verify.gates]\nmax_kld = 1\n[recommend]\nmax_kld = 0.005\nmin_top1 = 0.985\n",
    )
    .unwrap();
    let (out, r) = run(&["--config", s(&toml)], "c.json");
    assert!(out.status.success());
    assert_eq!(r["devices"][0]["pick"], "Q8_0");
    let (_, r) = run(&["--config", s(&toml), "--min-top1", "0.5"], "c2.json");
    assert_eq!(r["devices"][0]["pick"], "Q6_K");
    checked += 2;

    // Exit 1: nothing acceptable on the Raspberry Pi (E2B Q8_0 at 4k needs more than a
    // --max-memory of 1 GiB); the report is still written, with pick null and the reason.
    let (out, r) = run(&["--max-memory", "1GiB"], "d.json");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("raspberry-pi-5: no acceptable candidate"),
        "{err}"
    );
    assert_valid(&r);
    assert_eq!(r["devices"][1]["pick"], Value::Null);
    assert!(r["devices"][1]["reason"]
        .as_str()
        .unwrap()
        .starts_with("No candidate is acceptable"));
    checked += 1;

    // Exit 2, one line each.
    let (out, _) = run(&["--device", "commodore-64"], "e.json");
    assert_usage(&out, "unknown device 'commodore-64'");
    let out = g4q!(&[
        "recommend",
        "--variant",
        "e2b",
        "--device",
        "apple-m2",
        "--candidates",
        "Q8_0,Q9_K",
    ]);
    assert_usage(&out, "--candidates: 'Q9_K' is not a candidate here");
    let (out, _) = run(&["--max-kld=-1"], "e.json");
    assert_usage(&out, "max_kld = -1");
    let (out, _) = run(&["--max-memory", "lots"], "e.json");
    assert_usage(&out, "--max-memory");
    std::fs::write(&toml, "[recommend]\nmax_kdl = 0.1\n").unwrap();
    let (out, _) = run(&["--config", s(&toml)], "e.json");
    assert_usage(&out, "unknown field `max_kdl`");
    let bad = tmp.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("x.json"), "{\"tool\": ").unwrap();
    let out = g4q!(&[
        "recommend",
        "--variant",
        "e2b",
        "--device",
        "apple-m2",
        "--reports",
        s(&bad)
    ]);
    assert_usage(&out, "x.json: not a g4q verify report");
    // Two reports of one candidate.
    std::fs::write(
        reports.join("again.json"),
        verify_report("/other/Q8_0.gguf", 0.001, 0.0001, 0.99, 1.0).to_string(),
    )
    .unwrap();
    let (out, _) = run(&[], "e.json");
    assert_usage(&out, "are both reports of candidate Q8_0");
    assert!(
        !tmp.path().join("e.json").exists(),
        "no report on bad input"
    );
    checked += 7;
    println!("checked {checked} cases");
}

/// A `g4q bench --json` file of a machine: its host, limits and the decode / prefill results of
/// `gbs` weight GB/s for Q8_0 and Q6_K.
fn bench_file(host: &str, gbs: f64) -> Value {
    let m = |ty: &str, op: &str| {
        json!({"type": ty, "op": op, "shape": "ffn_up", "rows": 6144, "cols": 1536, "path": "avx2",
               "threads": 8, "working_set_bytes": 1, "matrix_bytes": 1, "time_s": 1.0,
               "weight_gbs": gbs, "percent_of_bandwidth": 50.0, "gflops": 100.0})
    };
    json!({
        "schema": "g4q-bench/1", "g4q_version": "0.1.0",
        "host": {"name": host, "os": "linux", "arch": "x86_64", "cpu_vendor": "v", "cpu_model": "CPU",
                 "features": ["avx2"], "physical_cores": 4, "logical_cores": 8,
                 "caches": {"l1d_bytes": null, "l2_bytes": null, "l3_bytes": 1024},
                 "memory_bytes": 17_179_869_184u64},
        "limits": {"read_bandwidth_gbs": 2.0 * gbs, "read_bandwidth_1t_gbs": gbs, "triad_bandwidth_gbs": gbs,
                   "triad_bandwidth_1t_gbs": gbs, "fma_gflops_per_core": 10.0, "threads": 8,
                   "buffer_bytes": 1024},
        "variant": "e2b", "quick": true,
        "results": [m("Q8_0", "decode"), m("Q8_0", "prefill128"), m("Q6_K", "decode"), m("Q6_K", "prefill128")]
    })
}

#[test]
fn bench_files_are_devices_with_their_measured_speeds() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    let r = verify_report("/rel/Q8_0.gguf", 0.001, 0.0001, 0.99, 1.001);
    std::fs::write(reports.join("q8.json"), r.to_string()).unwrap();
    let (fast, slow) = (tmp.path().join("fast.json"), tmp.path().join("slow.json"));
    std::fs::write(&fast, bench_file("fast-host", 40.0).to_string()).unwrap();
    std::fs::write(&slow, bench_file("slow-host", 10.0).to_string()).unwrap();
    let path = tmp.path().join("r.json");
    g4q_ok!(&[
        "recommend",
        "--variant",
        "e2b",
        "--device",
        s(&fast),
        "--device",
        s(&slow),
        "--candidates",
        "Q8_0",
        "--reports",
        s(&reports),
        "--json",
        s(&path),
    ]);
    let r = read_json(&path);
    assert_valid(&r);
    let (f, sl) = (&r["devices"][0], &r["devices"][1]);
    assert_eq!(
        (f["name"].as_str(), f["speeds"].as_str()),
        (Some("fast-host"), Some("measured"))
    );
    assert_eq!(f["memory_bytes"], 17_179_869_184u64);
    assert_eq!(f["pick"], "Q8_0");
    let tps = |d: &Value| {
        candidate(d, "Q8_0")["decode_tokens_per_s"]
            .as_f64()
            .unwrap()
    };
    assert!(tps(f) > 2.0 * tps(sl), "{} vs {}", tps(f), tps(sl));
    // A bench file that is not one: exit 2, one line.
    std::fs::write(&slow, "{\"schema\": \"g4q-bench/1\"}").unwrap();
    let out = g4q!(&["recommend", "--variant", "e2b", "--device", s(&slow)]);
    assert_usage(&out, "slow.json: not a g4q bench report");
    println!("checked 2 bench-file devices and a malformed one");
}

/// Tensor data bytes of a GGUF file (what a candidate's `bytes` counts).
fn gguf_tensor_bytes(p: &Path) -> u64 {
    let f = convert::gguf::GgufFile::open(p).unwrap();
    f.tensors().iter().map(|t| t.n_bytes()).sum()
}

/// Tensor data bytes of the text model of a compressed-tensors folder (the towers left out).
fn awq_text_bytes(dir: &Path) -> u64 {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    meta.tensors()
        .iter()
        .filter(|(name, _)| name.starts_with("model.language_model.") || *name == "lm_head.weight")
        .map(|(_, info)| (info.data_offsets.1 - info.data_offsets.0) as u64)
        .sum()
}

#[test]
fn awq_and_onnx_candidates_equal_verify_runs() {
    let Some(model) = testkit::fixture("trained-e2b/released-bf16") else {
        return;
    };
    let dir = model.parent().unwrap();
    let (data, calib) = (dir.join("eval-a.txt"), dir.join("calib.txt"));
    let imatrix = dir.join("llamacpp/imatrix.gguf");
    let tmp = tempfile::tempdir().unwrap();
    let json_path = tmp.path().join("r.json");
    // The AWQ group the tool chooses (what `--format awq --dry-run` reports).
    let plan = g4q_ok!(&[
        "convert",
        s(&model),
        "--format",
        "awq",
        "--dry-run",
        "--json"
    ]);
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let group = plan["targets"][0]["group_size"].as_u64().unwrap();
    let awq_name = format!("AWQ_INT4_G{group}");
    let names = [
        "Q4_K_M-awq",
        "Q4_K_M-awq-imatrix",
        awq_name.as_str(),
        "ONNX_INT4_B32",
    ];
    let out = g4q_ok!(&[
        "recommend",
        s(&model),
        "--device",
        "nvidia-rtx-4090",
        "--device",
        "raspberry-pi-5",
        "--imatrix",
        s(&imatrix),
        "--awq",
        s(&calib),
        "--candidates",
        &names.join(","),
        "--evaluate",
        "--data",
        s(&data),
        "--eval-ctx",
        "64",
        "--chunks",
        "3",
        "--json",
        s(&json_path),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let r = read_json(&json_path);
    assert_valid(&r);
    let devices = r["devices"].as_array().unwrap();
    let mut checked = 0;
    let rel = tmp.path().join("release");
    std::fs::create_dir(&rel).unwrap();
    for name in names {
        // What `g4q convert` writes for the candidate, and its exact tensor bytes.
        let (file, bytes) = if let Some(ty) = name.strip_suffix("-awq") {
            let f = tmp.path().join(format!("{name}.gguf"));
            g4q_ok!(&[
                "convert",
                s(&model),
                "--type",
                ty,
                "--awq",
                "--data",
                s(&calib),
                "--out",
                s(&f)
            ]);
            let b = gguf_tensor_bytes(&f);
            (f, b)
        } else if let Some(ty) = name.strip_suffix("-awq-imatrix") {
            let f = tmp.path().join(format!("{name}.gguf"));
            g4q_ok!(&[
                "convert",
                s(&model),
                "--type",
                ty,
                "--awq",
                "--data",
                s(&calib),
                "--imatrix",
                s(&imatrix),
                "--out",
                s(&f)
            ]);
            let b = gguf_tensor_bytes(&f);
            (f, b)
        } else if name.starts_with("AWQ_INT4") {
            let f = tmp.path().join(name);
            g4q_ok!(&[
                "convert",
                s(&model),
                "--format",
                "awq",
                "--data",
                s(&calib),
                "--out",
                s(&f)
            ]);
            let b = awq_text_bytes(&f);
            (f, b)
        } else {
            let f = tmp.path().join(name);
            g4q_ok!(&[
                "convert",
                s(&model),
                "--format",
                "onnx",
                "--type",
                "int4",
                "--out",
                s(&f)
            ]);
            let b = std::fs::metadata(f.join("model.onnx.data")).unwrap().len();
            (f, b)
        };
        let v = verify_json(tmp.path(), &model, &file, &data, name);
        for d in devices {
            let c = candidate(d, name);
            // The scored bytes are those `g4q convert` writes; the planned size is exact.
            assert_eq!(c["sha256"], v["candidate"]["sha256"], "{name}");
            assert_eq!(c["bytes"].as_u64().unwrap(), bytes, "{name} bytes");
            for k in ["kld_mean", "kld_mean_stderr", "top1_agreement", "ppl_ratio"] {
                assert_eq!(c[k], v[k], "{name} {k} on {}", d["name"]);
            }
        }
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("no row {name} in {stdout}"));
        let kld = format!(
            "{:.6} ± {:.6}",
            v["kld_mean"].as_f64().unwrap(),
            v["kld_mean_stderr"].as_f64().unwrap()
        );
        assert!(line.contains(&kld), "{line} lacks verify's {kld}");
        println!("{name}: {bytes} bytes, KLD {kld}");
        checked += 1;
        // The folders, as a release holds them, for the release-folder check below.
        if file.is_dir() {
            std::fs::rename(&file, rel.join(format!("gemma-{name}"))).unwrap();
        }
    }
    // A release folder's AWQ and ONNX folders are read back from their headers: the same
    // names, bytes and memory as planned, and their sha256 is what verify records.
    let rel_json = tmp.path().join("rel.json");
    let back = g4q!(&[
        "recommend",
        s(&rel),
        "--device",
        "raspberry-pi-5",
        "--json",
        s(&rel_json)
    ]);
    assert_eq!(back.status.code(), Some(1), "nothing measured");
    let back = read_json(&rel_json);
    assert_valid(&back);
    let pi = devices
        .iter()
        .find(|d| d["name"] == "raspberry-pi-5")
        .unwrap();
    for name in &names[2..] {
        let (planned, read) = (candidate(pi, name), candidate(&back["devices"][0], name));
        for k in ["bytes", "memory_bytes", "sha256"] {
            assert_eq!(planned[k], read[k], "{name} {k}");
        }
        let rel_bpw = |c: &Value| c["bits_per_weight"].as_f64().unwrap();
        assert!((rel_bpw(planned) - rel_bpw(read)).abs() < 1e-9, "{name}");
        checked += 1;
    }
    // The -awq plan is the plain mix's plan: AWQ changes values, not types. (Nothing is
    // measured in this run: exit 1.)
    let plain = g4q!(&[
        "recommend",
        s(&model),
        "--device",
        "nvidia-rtx-4090",
        "--candidates",
        "Q4_K_M",
    ]);
    assert_eq!(plain.status.code(), Some(1));
    let plain = String::from_utf8_lossy(&plain.stdout).into_owned();
    let row = |text: &str, name: &str| -> String {
        let l = text
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap();
        l.split('|').nth(2).unwrap().trim().to_string()
    };
    assert_eq!(row(&plain, "Q4_K_M"), row(&stdout, "Q4_K_M-awq"));
    println!(
        "checked {checked} AWQ/ONNX candidates × 2 devices against g4q convert + verify, and read back from a release folder"
    );
}

/// Writes `value` over the first element of the F32 tensor `name` of the GGUF file `p`.
fn poke_f32(p: &Path, name: &str, value: f32) {
    let at = {
        let f = convert::gguf::GgufFile::open(p).unwrap();
        let h = f.header();
        let t = h.tensor(name).unwrap();
        assert_eq!(t.ty, kernels::GgmlType::F32, "{name}");
        (h.data_offset + t.offset) as usize
    };
    let mut bytes = std::fs::read(p).unwrap();
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    std::fs::write(p, bytes).unwrap();
}

#[test]
fn a_candidate_that_is_not_finite_is_listed_not_measured() {
    let Some(model) = testkit::fixture("trained-e2b/released-bf16") else {
        return;
    };
    let data = model.parent().unwrap().join("eval-a.txt");
    let tmp = tempfile::tempdir().unwrap();
    let rel = tmp.path().join("release");
    std::fs::create_dir(&rel).unwrap();
    for (file, ty) in [
        ("ok-Q8_0.gguf", "Q8_0"),
        ("nan-Q4_0.gguf", "Q4_0"),
        ("inf-Q4_0.gguf", "Q4_0"),
    ] {
        g4q_ok!(&[
            "convert",
            s(&model),
            "--type",
            ty,
            "--out",
            s(&rel.join(file))
        ]);
    }
    // A NaN weight (found when the file is opened) and a weight so large that the logits
    // overflow (found while scoring).
    poke_f32(&rel.join("nan-Q4_0.gguf"), "output_norm.weight", f32::NAN);
    poke_f32(&rel.join("inf-Q4_0.gguf"), "output_norm.weight", 3.0e38);
    let json_path = tmp.path().join("r.json");
    let out = g4q_ok!(&[
        "recommend",
        s(&rel),
        "--reference",
        s(&model),
        "--device",
        "nvidia-rtx-4090",
        "--evaluate",
        "--data",
        s(&data),
        "--eval-ctx",
        "64",
        "--chunks",
        "2",
        "--json",
        s(&json_path),
    ]);
    let r = read_json(&json_path);
    assert_valid(&r);
    let d = &r["devices"][0];
    assert_eq!(
        d["pick"],
        "Q8_0",
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(candidate(d, "Q8_0")["kld_mean"].is_number());
    let mut checked = 1;
    for name in ["nan-Q4_0", "inf-Q4_0"] {
        let c = candidate(d, name);
        assert!(c["kld_mean"].is_null(), "{name}: {c}");
        let err = c["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no error: {c}"));
        assert!(
            err.contains("finite") || err.contains("NaN"),
            "{name}: {err}"
        );
        let first = c["rejected"][0].as_str().unwrap();
        assert_eq!(first, format!("not measured: {err}"), "{name}");
        println!("{name}: not measured: {err}");
        checked += 1;
    }
    println!("checked {checked} candidates, two of them not finite");
}

#[test]
fn awq_reports_match_by_their_release_names() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    // The names `g4q release` gives an --awq GGUF file and the AWQ int4 folder.
    for (file, kld) in [
        ("gemma-Q4_K_M-awq.gguf", 0.004),
        ("gemma-AWQ-int4-g128", 0.003),
    ] {
        let r = verify_report(&format!("/rel/{file}"), kld, 0.0002, 0.95, 1.01);
        std::fs::write(reports.join(format!("{file}.json")), r.to_string()).unwrap();
    }
    // Sizes need no search: the calibration text is only read with --evaluate.
    let calib = tmp.path().join("calib.txt");
    std::fs::write(&calib, "text").unwrap();
    let json_path = tmp.path().join("r.json");
    let base = [
        "recommend",
        "--variant",
        "e2b",
        "--device",
        "nvidia-l4",
        "--awq",
        s(&calib),
        "--reports",
        s(&reports),
    ];
    let mut args = base.to_vec();
    args.extend([
        "--candidates",
        "Q4_K_M,Q4_K_M-awq,AWQ_INT4_G128",
        "--json",
        s(&json_path),
    ]);
    let out = g4q!(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = read_json(&json_path);
    assert_valid(&r);
    let d = &r["devices"][0];
    assert_eq!(candidate(d, "Q4_K_M")["kld_mean"], Value::Null);
    assert_eq!(candidate(d, "Q4_K_M-awq")["kld_mean"], 0.004);
    assert_eq!(candidate(d, "AWQ_INT4_G128")["kld_mean"], 0.003);
    // AWQ rescales: the -awq mix has the plain mix's exact size.
    assert_eq!(
        candidate(d, "Q4_K_M")["bytes"],
        candidate(d, "Q4_K_M-awq")["bytes"]
    );
    // A real-width plan offers no ONNX folder (its plan quantizes real weights).
    let mut args = base.to_vec();
    args.extend(["--candidates", "ONNX_INT4_B32"]);
    assert_usage(&g4q!(&args), "'ONNX_INT4_B32' is not a candidate here");
    println!("checked 5 AWQ report and offer cases");
}
