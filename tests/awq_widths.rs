//! AWQ on widths the group size does not divide, and the towers of the int4 folder:
//!
//! - `trained-26b-a4b` (dense MLP 320 wide beside the experts, like the real 2112/704) converts
//!   with `--format awq` at the default group 128: one group that divides every linear (64),
//!   or with `--mixed-groups` 128 where it divides and 64 on the down projections, one config
//!   group per size; `--dry-run` names the linears 128 does not divide and the size chosen;
//! - `--awq` GGUF at group 128 runs (the scale search takes a short last group) and its
//!   `--dry-run` says so;
//! - the folder's tensor list is the checkpoint's, each int4 linear replaced by its
//!   packed/scale/zero-point/shape set, and every vision/audio tensor carried over with its
//!   dtype, shape and bytes (listed in `ignore`), on `trained-e2b` and `e2b-s0`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use testkit::{g4q_ok, path_str as s};
use verify::awq_weights::AwqWeights;
use verify::Weights;

/// name → (dtype, shape, bytes) of a safetensors file.
type Tensors = BTreeMap<String, (String, Vec<usize>, Vec<u8>)>;

fn tensors(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, t)| {
            let dtype = format!("{:?}", t.dtype());
            (name, (dtype, t.shape().to_vec(), t.data().to_vec()))
        })
        .collect()
}

fn config(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

/// The (group size, targets) of each config group of a folder's quantization config.
fn config_groups(dir: &Path) -> Vec<(u64, Vec<String>)> {
    let c = config(dir);
    let groups = c["quantization_config"]["config_groups"]
        .as_object()
        .unwrap();
    (0..groups.len())
        .map(|i| {
            let g = &groups[&format!("group_{i}")];
            let targets = g["targets"].as_array().unwrap();
            (
                g["weights"]["group_size"].as_u64().unwrap(),
                targets
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

fn trained_26b() -> Option<(PathBuf, PathBuf)> {
    let dir = testkit::fixture("trained-26b-a4b")?;
    Some((dir.join("released-bf16"), dir.join("calib.txt")))
}

#[test]
fn format_awq_takes_a_group_that_divides_every_width() {
    let Some((model, data)) = trained_26b() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dry = g4q_ok!(&["convert", s(&model), "--format", "awq", "--dry-run"]);
    let text = String::from_utf8_lossy(&dry.stdout);
    println!("{text}");
    for l in 0..6 {
        let line = format!(
            "model.language_model.layers.{l}.mlp.down_proj: 320 input columns, not a multiple of 128: group 64"
        );
        assert!(text.contains(&line), "dry run lacks '{line}'");
    }
    assert!(text.contains("g64 ×41"), "{text}");

    let mut cases = 0;
    for (mixed, want) in [(false, vec![(64, 41)]), (true, vec![(128, 35), (64, 6)])] {
        let out = tmp.path().join(format!("awq-{mixed}"));
        let mut args = vec![
            "convert",
            s(&model),
            "--format",
            "awq",
            "--data",
            s(&data),
            "--awq-tokens",
            "128",
            "--out",
            s(&out),
        ];
        if mixed {
            args.push("--mixed-groups");
            let dry = g4q_ok!(&[
                "convert",
                s(&model),
                "--format",
                "awq",
                "--dry-run",
                "--json",
                "--mixed-groups"
            ]);
            let v: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
            for t in v["targets"].as_array().unwrap() {
                let m = t["module"].as_str().unwrap();
                let g = if m.ends_with("down_proj") { 64 } else { 128 };
                assert_eq!(t["group_size"], g, "{m}");
            }
        }
        g4q_ok!(&args);
        let groups = config_groups(&out);
        let sizes: Vec<(u64, usize)> = groups.iter().map(|(g, t)| (*g, t.len())).collect();
        assert_eq!(sizes, want, "mixed {mixed}");
        let awq = AwqWeights::open(&out).unwrap();
        let st = tensors(&out.join("model.safetensors"));
        for (g, targets) in &groups {
            for module in targets {
                let scale = &st[&format!("{module}.weight_scale")];
                let cols = *st[&format!("{module}.weight_shape")]
                    .2
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect::<Vec<_>>()
                    .last()
                    .unwrap() as usize;
                assert_eq!(scale.1[1] as u64 * g, cols as u64, "{module}");
                // Read back through g4q's reader: every row dequantizes.
                let canonical = module.strip_prefix("model.language_model.").unwrap();
                let m = awq.matrix(&format!("{canonical}.weight")).unwrap();
                let mut row = vec![0f32; m.cols()];
                m.rows_to_f32(0, 1, &mut row).unwrap();
                assert!(row.iter().all(|v| v.is_finite()) && row.iter().any(|&v| v != 0.0));
                cases += 1;
            }
        }
    }
    println!("checked {cases} int4 linears in 2 folders");
}

#[test]
fn awq_gguf_search_takes_a_short_last_group() {
    let Some((model, data)) = trained_26b() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("awq.gguf");
    let dry = g4q_ok!(&[
        "convert",
        s(&model),
        "--type",
        "Q4_K_M",
        "--awq",
        "--data",
        s(&data),
        "--dry-run"
    ]);
    let note = String::from_utf8_lossy(&dry.stderr);
    assert!(
        note.contains("128 does not divide the")
            && note.contains("MLP width 320 (last group 64 wide)"),
        "{note}"
    );
    g4q_ok!(&[
        "convert",
        s(&model),
        "--type",
        "Q4_K_M",
        "--awq",
        "--data",
        s(&data),
        "--awq-tokens",
        "128",
        "--out",
        s(&out)
    ]);
    assert!(std::fs::metadata(&out).unwrap().len() > 0);
    println!("checked 1 case");
}

/// The folder of `model` holds the checkpoint's tensors: int4 linears as their four parts,
/// every other text tensor under its name, every tower tensor byte for byte.
fn check_tensor_list(model: &Path, data: &Path, group: &str) -> usize {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("awq");
    g4q_ok!(&[
        "convert",
        s(model),
        "--format",
        "awq",
        "--group-size",
        group,
        "--data",
        s(data),
        "--awq-tokens",
        "64",
        "--out",
        s(&out)
    ]);
    let source = tensors(&model.join("model.safetensors"));
    let written = tensors(&out.join("model.safetensors"));
    let targets: Vec<String> = config_groups(&out)
        .into_iter()
        .flat_map(|(_, t)| t)
        .collect();
    let mut want: Vec<String> = Vec::new();
    let mut towers = 0;
    for (name, (dtype, shape, bytes)) in &source {
        let module = name.strip_suffix(".weight").unwrap_or(name);
        if targets.iter().any(|t| t == module) {
            for part in ["packed", "scale", "zero_point", "shape"] {
                want.push(format!("{module}.weight_{part}"));
            }
            continue;
        }
        want.push(name.clone());
        if name.starts_with("model.language_model.") {
            continue;
        }
        let got = written
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!((&got.0, &got.1), (dtype, shape), "{name}");
        assert!(
            got.2 == *bytes,
            "{name}: bytes differ from the checkpoint's"
        );
        towers += 1;
    }
    want.sort();
    let got: Vec<String> = written.keys().cloned().collect();
    assert_eq!(got, want, "{}", model.display());
    assert!(towers > 0, "{} has no towers to check", model.display());
    let ignore = &config(&out)["quantization_config"]["ignore"];
    for prefix in [
        "model.vision_tower",
        "model.embed_vision",
        "model.audio_tower",
        "model.embed_audio",
    ] {
        let listed = ignore
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == &format!("re:^{}\\.", prefix.replace('.', "\\.")));
        let present = source.keys().any(|n| n.starts_with(&format!("{prefix}.")));
        assert_eq!(listed, present, "{prefix} in ignore: {ignore}");
    }
    println!(
        "{}: {} tensors, {} int4 linears, {towers} tower tensors carried over",
        model.display(),
        got.len(),
        targets.len()
    );
    got.len()
}

#[test]
fn awq_folder_holds_every_tensor_of_the_checkpoint() {
    let root = testkit::fixtures_dir();
    let calib = root.join("trained-e2b/calib.txt");
    let mut checked = 0;
    for (fixture, group) in [("trained-e2b", "64"), ("e2b-s0", "32")] {
        let Some(dir) = testkit::fixture(fixture) else {
            continue;
        };
        check_tensor_list(&dir.join("released-bf16"), &calib, group);
        checked += 1;
    }
    println!("checked {checked} folders");
}
