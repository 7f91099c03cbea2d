//! `g4q release` end to end on the `trained-e2b` fixture (in the full set and in the bundled
//! compact one): the default GGUF types with an imatrix computed from `calib.txt`, verified on
//! `eval-a.txt` (small `--ctx`/`--chunks` so each test takes about a minute on a busy machine),
//! and the vision/audio projector (on by default: the checkpoint has towers).
//!
//! The fixture folder has no processor_config.json, which llama.cpp's converter needs for the
//! projector (image_mean, image_std); the tests use a copy with the one of `e2b-s0`, whose
//! vision_config is the same. Without it a release refuses to start (checked below).
//!
//! - every report equals what a separate `g4q verify` writes for that file (timings and the
//!   command line aside), `release.json` follows its schema, `SHA256SUMS` passes
//!   `sha256sum -c`, and the model card parses as Markdown with a table that matches the reports
//!   and device tables (and plot) equal to `g4q recommend --reports` on the release folder for
//!   every bundled profile;
//! - a run killed (SIGKILL) after its first model file appeared, then run again, leaves the same
//!   folder byte for byte as an uninterrupted run (report timings aside);
//! - `--plan` / `--shard I/3` / `--merge` gives the same folder too, and parts of different
//!   releases, or a missing shard, are refused with exit code 2;
//! - a failed gate exits 1 with every report written;
//! - the projector equals `g4q convert --mmproj` (and the card's command remakes it); it is in
//!   the release by default when the checkpoint has towers, out with `--no-mmproj` or without
//!   towers, and `--mmproj` on a checkpoint without towers is refused.
//!
//! "Report timings" are the `seconds` and `tokens_per_second` of each report: the only bytes of a
//! release that depend on when it ran.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use testkit::safetensors_file::files_under;
use testkit::{g4q, path_str as s};

const TYPES: [&str; 7] = [
    "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "IQ4_XS", "Q3_K_M", "Q2_K",
];
const NAME: &str = "trained-e2b";

const MMPROJ: &str = "mmproj-trained-e2b-F16.gguf";

/// The fixture's checkpoint folder (the copy with a processor config), calibration and
/// evaluation text; `None` after a loud skip.
fn fixture() -> Option<(PathBuf, PathBuf, PathBuf)> {
    static COPY: OnceLock<Option<PathBuf>> = OnceLock::new();
    let dir = COPY.get_or_init(|| {
        let src = testkit::fixture("trained-e2b/released-bf16")?;
        let proc = testkit::fixture("e2b-s0/released-bf16/processor_config.json")?;
        // Same folder name, so the card's base model (the folder name) stays the fixture's.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("release-fixture/released-bf16");
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&src, &dir);
        std::fs::copy(proc, dir.join("processor_config.json")).unwrap();
        Some(dir)
    });
    let dir = dir.clone()?;
    let root = testkit::fixture("trained-e2b/released-bf16")?
        .parent()
        .unwrap()
        .to_path_buf();
    Some((dir, root.join("calib.txt"), root.join("eval-a.txt")))
}

/// The arguments of the release every test makes (the default types).
fn release_args(out: &Path) -> Option<Vec<String>> {
    let (model, calib, eval) = fixture()?;
    let a = [
        "release",
        s(&model),
        "--out",
        s(out),
        "--name",
        NAME,
        "--imatrix",
        "auto",
        "--data",
        s(&calib),
        "--imatrix-ctx",
        "64",
        "--imatrix-chunks",
        "4",
        "--eval",
        s(&eval),
        "--ctx",
        "64",
        "--chunks",
        "4",
    ];
    Some(a.iter().map(|x| x.to_string()).collect())
}

/// One uninterrupted release, shared by the tests: made once per test process, in cargo's
/// scratch folder for integration tests (replaced by the next test run, so nothing piles up).
fn baseline() -> Option<&'static Path> {
    static BASE: OnceLock<Option<PathBuf>> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("release-baseline");
        let _ = std::fs::remove_dir_all(&out);
        let args = release_args(&out)?;
        let res = g4q!(&args);
        assert!(
            res.status.success(),
            "g4q {args:?}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        Some(out)
    });
    base.as_deref()
}

/// A JSON value without the run-time fields (`seconds`, `tokens_per_second`), at any depth.
fn without_timings(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("seconds");
            m.remove("tokens_per_second");
            m.values_mut().for_each(without_timings);
        }
        Value::Array(a) => a.iter_mut().for_each(without_timings),
        _ => {}
    }
}

/// Every file under `dir` (hidden ones included) by relative path, with its bytes; reports
/// with their timings removed.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for p in files_under(dir) {
        let rel = p.to_string_lossy().into_owned();
        assert!(!rel.contains(".g4q-tmp-"), "temporary file left: {rel}");
        let mut bytes = std::fs::read(dir.join(&p)).unwrap();
        if rel.starts_with("reports/") {
            let mut v: Value = serde_json::from_slice(&bytes).unwrap();
            without_timings(&mut v);
            bytes = serde_json::to_vec_pretty(&v).unwrap();
        }
        out.insert(rel, bytes);
    }
    out
}

/// Asserts that two release folders hold the same files and bytes (timings aside).
fn assert_same_release(a: &Path, b: &Path) -> usize {
    let (ta, tb) = (tree(a), tree(b));
    assert_eq!(
        ta.keys().collect::<Vec<_>>(),
        tb.keys().collect::<Vec<_>>(),
        "{} and {} hold different files",
        a.display(),
        b.display()
    );
    for (k, v) in &ta {
        assert!(
            tb[k] == *v,
            "{k} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
    ta.len()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn validator(schema: &str) -> jsonschema::Validator {
    let p = testkit::repo_root().join("schemas").join(schema);
    jsonschema::validator_for(&read_json(&p)).unwrap()
}

fn assert_valid(v: &jsonschema::Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = v.iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{what}: {errors:?}");
}

fn copy_dir(from: &Path, to: &Path) {
    for p in files_under(from) {
        let dst = to.join(&p);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&p), &dst).unwrap();
    }
}

/// The YAML front matter and each table: the text of each cell of each row (header first).
fn parse_card(md: &str) -> (String, Vec<Vec<Vec<String>>>) {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
    let opts = Options::ENABLE_TABLES | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS;
    let (mut yaml, mut tables, mut rows) = (String::new(), Vec::new(), Vec::new());
    let (mut in_yaml, mut row, mut cell): (bool, Vec<String>, Option<String>) =
        (false, Vec::new(), None);
    for ev in Parser::new_ext(md, opts) {
        match ev {
            Event::Start(Tag::MetadataBlock(_)) => in_yaml = true,
            Event::End(TagEnd::MetadataBlock(_)) => in_yaml = false,
            Event::Start(Tag::TableCell) => cell = Some(String::new()),
            Event::End(TagEnd::TableCell) => row.push(cell.take().unwrap()),
            Event::End(TagEnd::TableHead | TagEnd::TableRow) => rows.push(std::mem::take(&mut row)),
            Event::End(TagEnd::Table) => tables.push(std::mem::take(&mut rows)),
            Event::Text(t) | Event::Code(t) => {
                if in_yaml {
                    yaml.push_str(&t);
                } else if let Some(c) = cell.as_mut() {
                    c.push_str(&t);
                }
            }
            _ => {}
        }
    }
    (yaml, tables)
}

/// The bundled device profiles (devices/*.toml), by name in file-name order.
fn profiles() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(testkit::repo_root().join("devices"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Checks the card's device tables (`tables`: the pick summary, then one per profile) against
/// `g4q recommend` run on the release folder with its reports, for every bundled profile: the
/// same Markdown, and each cell the JSON report's figure. Returns the rows checked.
fn card_devices_equal_recommend(out: &Path, card: &str, tables: &[Vec<Vec<String>>]) -> usize {
    let tmp = tempfile::tempdir().unwrap();
    let (json, md) = (tmp.path().join("rec.json"), tmp.path().join("rec.md"));
    let mut args = vec![
        "recommend".to_string(),
        ".".into(),
        "--reports".into(),
        "reports".into(),
        "--json".into(),
        s(&json).into(),
        "--markdown".into(),
        s(&md).into(),
    ];
    let names = profiles();
    for d in &names {
        args.extend(["--device".to_string(), d.clone()]);
    }
    let res = g4q!().current_dir(out).args(&args).output().unwrap();
    assert!(
        matches!(res.status.code(), Some(0 | 1)),
        "g4q {args:?}: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let md = std::fs::read_to_string(&md).unwrap();
    let (summary, per_device) = md.split_at(md.find("\n### ").unwrap());
    assert!(card.contains(summary), "the card lacks recommend's summary");
    assert!(
        card.contains(per_device),
        "the card lacks recommend's tables"
    );
    // The card links the plot, and the command it gives remakes the same JSON figures.
    assert!(card.contains("](recommend.svg)"));
    assert!(card.contains("g4q recommend . --reports reports --ctx 4096 --device PROFILE"));

    let rec = read_json(&json);
    let devices = rec["devices"].as_array().unwrap();
    assert_eq!(devices.len(), names.len());
    assert_eq!(tables.len(), 1 + devices.len());
    let mut rows = 0;
    for (k, d) in devices.iter().enumerate() {
        assert_eq!(d["name"].as_str().unwrap(), names[k]);
        let pick = &tables[0][1 + k];
        assert_eq!(pick[0], d["display"].as_str().unwrap());
        assert_eq!(pick[1], d["pick"].as_str().unwrap_or("none"));
        let cands = d["candidates"].as_array().unwrap();
        let table = &tables[1 + k];
        assert_eq!(table.len(), 1 + cands.len(), "{}", names[k]);
        // Every release GGUF is a candidate, with the figures of its report.
        assert_eq!(cands.len(), TYPES.len());
        for (row, c) in table[1..].iter().zip(cands) {
            let num = |key: &str| c[key].as_f64().unwrap();
            let name = c["name"].as_str().unwrap();
            assert_eq!(row[0], name);
            let file = c["file"].as_str().unwrap();
            let report = read_json(&out.join("reports").join(format!("{file}.json")));
            assert_eq!(c["kld_mean"], report["kld_mean"], "{name}");
            assert_eq!(c["sha256"], report["candidate"]["sha256"], "{name}");
            assert_eq!(row[1], format!("{:.2}", num("bytes") / 1048576.0));
            assert_eq!(row[2], format!("{:.2}", num("bits_per_weight")));
            assert_eq!(row[3], format!("{:.2}", num("memory_bytes") / 1073741824.0));
            assert_eq!(row[4], if c["fits"] == true { "yes" } else { "no" });
            assert_eq!(row[5], format!("{:.1}", num("decode_tokens_per_s")));
            assert_eq!(row[6], format!("{:.1}", num("prefill_tokens_per_s")));
            assert_eq!(
                row[7],
                format!("{:.6} ± {:.6}", num("kld_mean"), num("kld_mean_stderr"))
            );
            assert_eq!(row[8], format!("{:.4}", num("top1_agreement")));
            assert_eq!(row[9], format!("{:.4}", num("ppl_ratio")));
            rows += 1;
        }
    }
    rows
}

#[test]
fn release_reports_equal_verify_and_the_card_matches_them() {
    let Some(out) = baseline() else { return };
    let (model, _, eval) = fixture().unwrap();
    let release = read_json(&out.join("release.json"));
    assert_valid(&validator("release.schema.json"), &release, "release.json");
    let report_schema = validator("verify-report.schema.json");
    let files = release["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    let mut want = vec!["imatrix.gguf".to_string()];
    want.extend(TYPES.iter().map(|t| format!("{NAME}-{t}.gguf")));
    want.push(MMPROJ.to_string());
    want.push("recommend.svg".into());
    assert_eq!(names, want);
    let plot = files.last().unwrap();
    assert_eq!(plot["kind"], "plot");
    assert_eq!(
        plot["sha256"].as_str().unwrap(),
        sha256_file(&out.join("recommend.svg"))
    );

    // Each report is what `g4q verify` writes for the file (run in the release folder, so the
    // candidate's path is the same), up to the command line and timings.
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for f in files.iter().filter(|f| f["kind"] == "gguf") {
        let name = f["name"].as_str().unwrap();
        let ours = read_json(&out.join("reports").join(format!("{name}.json")));
        assert_valid(&report_schema, &ours, name);
        let json = tmp.path().join(format!("{name}.json"));
        let res = g4q!()
            .current_dir(out)
            .args([
                "verify",
                "--reference",
                s(&model),
                "--candidate",
                name,
                "--data",
                s(&eval),
                "--ctx",
                "64",
                "--chunks",
                "4",
                "--json",
                s(&json),
            ])
            .output()
            .unwrap();
        assert!(
            res.status.success(),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        let mut theirs = read_json(&json);
        let mut ours_cut = ours.clone();
        for v in [&mut theirs, &mut ours_cut] {
            without_timings(v);
            v.as_object_mut().unwrap().remove("command");
        }
        assert_eq!(
            ours_cut, theirs,
            "{name}: release report != g4q verify report"
        );
        assert_eq!(f["kld_mean"], ours["kld_mean"], "{name}");
        assert_eq!(f["kld_mean_stderr"], ours["kld_mean_stderr"], "{name}");
        assert_eq!(f["top1_agreement"], ours["top1_agreement"], "{name}");
        assert_eq!(f["ppl_ratio"], ours["ppl_ratio"], "{name}");
        assert_eq!(f["sha256"], ours["candidate"]["sha256"], "{name}");
        // The command it records is the one just run (the report path relative to the folder).
        let cmd = ours["command"].as_str().unwrap();
        assert!(
            cmd.starts_with("g4q verify --reference ")
                && cmd.contains(&format!("--candidate {name} ")),
            "{cmd}"
        );
        checked += 1;
    }
    let combined = read_json(&out.join("reports/release-verify.json"));
    assert_eq!(combined["reports"].as_array().unwrap().len(), TYPES.len());

    // SHA256SUMS in `sha256sum -c` format, covering every file of release.json.
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    for (line, f) in sums.lines().zip(files) {
        assert_eq!(
            line,
            format!(
                "{}  {}",
                f["sha256"].as_str().unwrap(),
                f["name"].as_str().unwrap()
            )
        );
    }
    assert_eq!(sums.lines().count(), files.len());
    match std::process::Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(out)
        .output()
    {
        Ok(res) => assert!(
            res.status.success(),
            "sha256sum -c: {}",
            String::from_utf8_lossy(&res.stdout)
        ),
        Err(e) => testkit::skip(format!("sha256sum -c not run: {e}")),
    }

    // The card: YAML front matter, and one table row per file that matches its report.
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    let (yaml, tables) = parse_card(&card);
    let rows = &tables[0];
    // The files of the table: every file but the plot (linked below it).
    let files = &files[..files.len() - 1];
    for key in [
        "base_model: ",
        "quantized_by: g4q",
        "pipeline_tag: image-text-to-text",
        "- gguf",
    ] {
        assert!(yaml.contains(key), "front matter lacks {key:?}: {yaml}");
    }
    assert_eq!(
        rows[0],
        [
            "file",
            "type",
            "size",
            "bits/weight",
            "KLD ± stderr",
            "top-1",
            "PPL ratio"
        ]
    );
    assert_eq!(rows.len(), files.len() + 1);
    for (row, f) in rows[1..].iter().zip(files) {
        assert_eq!(row[0], f["name"].as_str().unwrap());
        assert_eq!(
            row[2],
            format!("{:.2} MiB", f["bytes"].as_f64().unwrap() / 1048576.0)
        );
        if f["kind"] == "imatrix" {
            assert_eq!(row[4], "—");
            continue;
        }
        if f["kind"] == "mmproj" {
            assert_eq!(row[1], "mmproj F16");
            assert_eq!(row[4], "not verified (projector)");
            assert!(f["report"].is_null() && f["kld_mean"].is_null(), "{f}");
            continue;
        }
        let r = read_json(&out.join(f["report"].as_str().unwrap()));
        let num = |k: &str| r[k].as_f64().unwrap();
        assert_eq!(row[1], f["type"].as_str().unwrap());
        assert_eq!(
            row[3],
            format!("{:.2}", f["bits_per_weight"].as_f64().unwrap())
        );
        assert_eq!(
            row[4],
            format!("{:.6} ± {:.6}", num("kld_mean"), num("kld_mean_stderr"))
        );
        assert_eq!(row[5], format!("{:.2}%", 100.0 * num("top1_agreement")));
        assert_eq!(row[6], format!("{:.4}", num("ppl_ratio")));
    }
    // The reproduce section holds a convert command per GGUF with the shipped imatrix.
    for t in TYPES {
        assert!(
            card.contains(&format!(
                "--type {t} --imatrix imatrix.gguf --out {NAME}-{t}.gguf"
            )),
            "{t}"
        );
    }
    // The shipped imatrix reproduces the GGUF files with g4q convert.
    let again = tmp.path().join("again.gguf");
    let q4 = format!("{NAME}-Q4_K_M.gguf");
    let imatrix = out.join("imatrix.gguf");
    let args = [
        "convert",
        s(&model),
        "--type",
        "Q4_K_M",
        "--imatrix",
        s(&imatrix),
        "--out",
        s(&again),
    ];
    testkit::expect_success(g4q!(&args), &args);
    assert!(
        std::fs::read(&again).unwrap() == std::fs::read(out.join(&q4)).unwrap(),
        "{q4}"
    );
    // The projector is what `g4q convert --mmproj` writes (llama.cpp's default type, F16), and
    // the card says so.
    let proj = tmp.path().join("mmproj.gguf");
    let args = [
        "convert",
        s(&model),
        "--mmproj",
        "--type",
        "F16",
        "--out",
        s(&proj),
    ];
    testkit::expect_success(g4q!(&args), &args);
    assert!(
        std::fs::read(&proj).unwrap() == std::fs::read(out.join(MMPROJ)).unwrap(),
        "{MMPROJ} != g4q convert --mmproj"
    );
    assert!(
        card.contains(&format!("--mmproj --type F16 --out {MMPROJ}\n")),
        "no mmproj command in the card"
    );
    let device_rows = card_devices_equal_recommend(out, &card, &tables[1..]);
    println!(
        "{checked} reports equal g4q verify's; the projector equals g4q convert --mmproj; {} card rows and {device_rows} device rows checked",
        rows.len() - 1
    );
}

#[test]
fn killed_release_resumes_to_the_same_folder() {
    let Some(base) = baseline() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("release");
    let args = release_args(&out).unwrap();
    let mut child = g4q!()
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first = out.join(format!("{NAME}-{}.gguf", TYPES[0]));
    while !first.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup runs
    child.wait().unwrap();
    let finished = TYPES
        .iter()
        .filter(|t| out.join(format!("{NAME}-{t}.gguf")).exists())
        .count();
    assert!(
        finished < TYPES.len(),
        "killed after every file was written"
    );
    assert!(!out.join("release.json").exists());
    // A re-run skips what is finished and makes the rest.
    let res = g4q!(&args);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("imatrix.gguf is up to date"), "{err}");
    let n = assert_same_release(base, &out);
    // And a third run has nothing to do.
    let res = g4q!(&args);
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        res.status.success() && !err.contains("wrote ") && !err.contains("verifying"),
        "{err}"
    );
    println!("killed with {finished} GGUF file(s) written; resumed folder equals the uninterrupted one ({n} files)");
}

#[test]
fn sharded_release_merges_to_the_same_folder() {
    let Some(base) = baseline() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let plan_args = |fmt: &str| {
        let mut a = release_args(&tmp.path().join("release")).unwrap();
        a.extend(["--plan", "--shards", "3", "--format", fmt].map(String::from));
        a
    };
    let res = g4q!(&plan_args("github"));
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let matrix: Value = serde_json::from_slice(&res.stdout).unwrap();
    let include = matrix["include"].as_array().unwrap();
    assert_eq!(include.len(), 3);
    let res = g4q!(&plan_args("k8s"));
    let manifest = String::from_utf8_lossy(&res.stdout);
    for want in [
        "kind: Job",
        "completionMode: Indexed",
        "completions: 3",
        "--shard \"$JOB_COMPLETION_INDEX/3\"",
    ] {
        assert!(manifest.contains(want), "{want}: {manifest}");
    }

    let mut parts = Vec::new();
    let mut seen = Vec::new();
    for job in include {
        let part = tmp.path().join(format!("part-{}", job["index"]));
        let mut a = release_args(&part).unwrap();
        a.extend([
            "--shard".to_string(),
            job["shard"].as_str().unwrap().to_string(),
        ]);
        let res = g4q!(&a);
        assert!(
            res.status.success(),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        for f in job["files"].as_str().unwrap().split(' ') {
            assert!(part.join(f).exists(), "{f} not in {}", part.display());
            seen.push(f.to_string());
        }
        parts.push(part);
    }
    seen.sort();
    seen.dedup();
    // The GGUF types, the imatrix and the projector.
    assert_eq!(seen.len(), TYPES.len() + 2, "{seen:?}");
    assert!(seen.iter().any(|f| f == MMPROJ), "{seen:?}");
    let merged = tmp.path().join("merged");
    let mut m: Vec<String> = vec!["release".into(), "--merge".into()];
    m.extend(parts.iter().map(|p| s(p).to_string()));
    m.extend(["--out".into(), s(&merged).to_string()]);
    let res = g4q!(&m);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let n = assert_same_release(base, &merged);

    // Parts of another release, or a shard missing: exit 2, one line naming why.
    let odd = tmp.path().join("odd");
    copy_dir(&parts[1], &odd);
    let pj = odd.join("part.json");
    let mut v = read_json(&pj);
    v["header"]["recipe"]["eval"]["ctx"] = 128.into();
    std::fs::write(&pj, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let refused = tmp.path().join("refused");
    let cases: [(Vec<&Path>, &str); 3] = [
        (
            vec![&parts[0], &odd, &parts[2]],
            "recipe.eval.ctx: 64 vs 128",
        ),
        (vec![&parts[0], &parts[1]], "shard 2/3 is missing"),
        (
            vec![&parts[0], &parts[1], &parts[1]],
            "shard 1/3 is given twice",
        ),
    ];
    for (given, why) in &cases {
        let mut a: Vec<&str> = vec!["release", "--merge"];
        a.extend(given.iter().map(|p| s(p)));
        a.extend(["--out", s(&refused)]);
        let res = g4q!(&a);
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(2), "{err}");
        assert!(err.contains(why) && err.lines().count() == 1, "{err}");
    }
    assert!(!refused.exists(), "a refused merge wrote its folder");
    println!(
        "3 shards merged into the unsharded release ({n} files); {} bad merges refused",
        cases.len()
    );
}

#[test]
fn failed_gates_exit_1_with_every_report_written() {
    let Some(base) = baseline() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("release");
    copy_dir(base, &out);
    let mut args = release_args(&out).unwrap();
    args.extend(["--max-kld", "0.0002"].map(String::from));
    let res = g4q!(&args);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(!err.contains("release: wrote "), "files were remade: {err}");
    let release = read_json(&out.join("release.json"));
    let mut failed = 0;
    let files = release["files"].as_array().unwrap();
    for f in files.iter().filter(|f| f["kind"] == "gguf") {
        let r = read_json(&out.join(f["report"].as_str().unwrap()));
        let gate = &r["gates"][0];
        assert_eq!(gate["name"], "max_kld");
        let pass = r["kld_mean"].as_f64().unwrap() <= 0.0002;
        assert_eq!(gate["passed"], pass);
        assert_eq!(f["gates_passed"], pass);
        if !pass {
            failed += 1;
            assert!(err.contains(f["name"].as_str().unwrap()), "{err}");
        }
    }
    assert!(failed > 0 && failed < TYPES.len(), "{failed} failed");
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.contains("Failed a verification gate"));
    // The device table takes the gate as its constraint.
    assert!(card.contains("g4q recommend . --reports reports --ctx 4096 --max-kld 0.0002 --device"));
    println!(
        "{failed} of {} files failed the gate; exit 1, reports written",
        TYPES.len()
    );
}

#[test]
fn bad_flags_exit_2_before_any_work() {
    let Some((model, calib, _)) = fixture() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    let cases: [(Vec<&str>, &str); 8] = [
        (vec!["--types", "Q9_X"], "Q9_X"),
        (
            vec!["--mmproj-type", "Q4_K_M"],
            "is not F16, BF16, F32 or Q8_0",
        ),
        (
            vec!["--no-mmproj", "--mmproj-type", "F16"],
            "not read with --no-mmproj",
        ),
        (
            vec!["--formats", "onnx", "--mmproj"],
            "add gguf to --formats",
        ),
        (vec!["--imatrix", "auto"], "need --data"),
        (vec!["--data", s(&calib)], "--data is only read"),
        (vec!["--types", "Q8_0,Q8_0"], "Q8_0 twice"),
        (vec!["--shard", "3/3"], "need 0 <= I < N"),
    ];
    for (extra, why) in &cases {
        let mut a = vec!["release", s(&model), "--out", s(&out)];
        a.extend(extra);
        let res = g4q!(&a);
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(2), "{a:?}: {err}");
        assert!(
            err.contains(why) && err.lines().count() == 1,
            "{a:?}: {err}"
        );
    }
    assert!(!out.exists());
    // The fixture folder as shipped has towers but no processor config: the projector cannot
    // be written, and the release says so (and how to go without it) before any work.
    let bare = testkit::fixture("trained-e2b/released-bf16").unwrap();
    let res = g4q!(&["release", s(&bare), "--out", s(&out)]);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(2), "{err}");
    assert!(
        err.contains("image_mean") && err.contains("--no-mmproj") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!out.exists());
    println!("{} bad flag sets refused", cases.len() + 1);
}

/// sha256 (hex) of a file.
fn sha256_file(p: &Path) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

#[test]
fn awq_and_onnx_folders_equal_the_card_commands() {
    let Some((model, calib, eval)) = fixture() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("release");
    let args = [
        "release",
        s(&model),
        "--out",
        s(&out),
        "--name",
        NAME,
        "--types",
        "Q4_K_M",
        "--formats",
        "gguf,awq,onnx",
        "--awq",
        "--data",
        s(&calib),
        "--awq-tokens",
        "64",
        "--eval",
        s(&eval),
        "--ctx",
        "64",
        "--chunks",
        "2",
        "--no-layer-errors",
    ];
    testkit::expect_success(g4q!(&args), &args);
    let release = read_json(&out.join("release.json"));
    assert_valid(&validator("release.schema.json"), &release, "release.json");
    let kinds: Vec<&str> = release["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["gguf", "mmproj", "awq", "onnx", "plot"]);
    for f in release["files"].as_array().unwrap() {
        if f["kind"] == "mmproj" || f["kind"] == "plot" {
            continue;
        }
        assert!(f["kld_mean"].as_f64().unwrap() > 0.0, "{f}");
    }
    // Every `g4q convert` line of the card, run in an empty folder, makes the same bytes.
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    let block = card
        .split("Each file on its own:\n\n```sh\n")
        .nth(1)
        .unwrap();
    let block = block.split("```").next().unwrap();
    let again = tmp.path().join("again");
    std::fs::create_dir(&again).unwrap();
    let mut commands = 0;
    for line in block.lines().filter(|l| l.starts_with("g4q convert ")) {
        let a: Vec<&str> = line.split(' ').skip(1).collect();
        let res = g4q!().current_dir(&again).args(&a).output().unwrap();
        assert!(
            res.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        commands += 1;
    }
    assert_eq!(commands, 4);
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    for line in sums.lines() {
        let (sha, path) = line.split_once("  ").unwrap();
        // The plot is made by `g4q release` from the files and reports, not by a convert.
        let dir = if path == "recommend.svg" {
            &out
        } else {
            &again
        };
        assert_eq!(sha256_file(&dir.join(path)), sha, "{path}");
    }
    println!(
        "{commands} card commands remade {} files byte for byte",
        sums.lines().count()
    );
}

#[test]
fn projector_default_follows_the_towers() {
    let Some((model, _, _)) = fixture() else {
        return;
    };
    let Some(text_only) = testkit::fixture("e2b-s0/causal-f32") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    // The files `--plan` splits: the release's file list, without making anything.
    let planned = |m: &Path, extra: &[&str]| -> Vec<String> {
        let mut a = vec!["release", s(m), "--out", s(&out), "--name", NAME];
        a.extend(extra);
        a.extend(["--plan", "--shards", "1"]);
        let res = g4q!(&a);
        assert!(
            res.status.success(),
            "{a:?}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        let v: Value = serde_json::from_slice(&res.stdout).unwrap();
        let files = v["include"][0]["files"].as_str().unwrap();
        files.split(' ').map(String::from).collect()
    };
    let cases: [(&Path, Vec<&str>, Option<&str>); 5] = [
        (&model, vec![], Some(MMPROJ)),
        (&model, vec!["--mmproj"], Some(MMPROJ)),
        (
            &model,
            vec!["--mmproj-type", "Q8_0"],
            Some("mmproj-trained-e2b-Q8_0.gguf"),
        ),
        (&model, vec!["--no-mmproj"], None),
        (&text_only, vec![], None),
    ];
    for (m, extra, want) in &cases {
        let files = planned(m, extra);
        let proj: Vec<&String> = files.iter().filter(|f| f.starts_with("mmproj-")).collect();
        assert_eq!(proj.first().map(|f| f.as_str()), *want, "{extra:?}");
        assert_eq!(files.len(), TYPES.len() + proj.len(), "{files:?}");
    }
    // Asking for the projector of a checkpoint without towers: exit 2, naming its config.
    let a = ["release", s(&text_only), "--out", s(&out), "--mmproj"];
    let res = g4q!(&a);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(2), "{err}");
    assert!(
        err.contains("config.json") && err.contains("no vision_config") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!out.exists());
    println!(
        "{} projector defaults planned; --mmproj without towers refused",
        cases.len()
    );
}
