//! AWQ on the MoE fixture (26B-A4B shape, 8 experts, top-2): with `experts` the search adds
//! the experts' pre-norm → every expert's gate_up group and a per-expert up → down group;
//! folding those scales leaves the model's function unchanged, they lower the experts' int4
//! output error on the calibration rows, and the scaled checkpoint (the `--awq` GGUF input)
//! keeps every tensor's shape.

use convert::Checkpoint;
use quantize::awq::export::write_scaled_checkpoint;
use quantize::awq::{compute_awq, AwqOptions, GroupKind, ScaledWeights};
use quantize::calibrate::calibration_tokens;
use verify::metrics::score_position;
use verify::{Model, Weights};

fn logits(w: &dyn Weights, ids: &[u32]) -> Vec<f32> {
    Model::load(w).unwrap().logits(ids).unwrap()
}

fn max_kld(a: &[f32], b: &[f32], t: usize) -> f64 {
    let v = a.len() / t;
    (0..t)
        .map(|i| score_position(&a[i * v..(i + 1) * v], &b[i * v..(i + 1) * v], 0).kld)
        .fold(0.0, f64::max)
}

#[test]
fn expert_groups_are_searched_and_fold_without_changing_the_model() {
    let dir = testkit::fixtures_dir().join("26b-a4b-s0/released-bf16");
    assert!(dir.is_dir(), "missing oracle folder {}", dir.display());
    let ckpt = Checkpoint::open(&dir).unwrap();
    let cfg = ckpt.config();
    assert!(cfg.enable_moe_block);
    let data = testkit::fixtures_dir().join("trained-e2b/calib.txt");
    let mut ids = calibration_tokens(&dir, &data, cfg.bos_token_id).unwrap();
    ids.truncate(128);
    let opts = AwqOptions {
        group: 32,
        clip: true,
        experts: true,
    };
    let run = compute_awq(&ckpt, &ids, &opts, &mut |_, _| {}).unwrap();

    let moe: Vec<_> = run
        .groups
        .iter()
        .filter(|g| g.group == GroupKind::Moe)
        .collect();
    let experts: Vec<_> = run
        .groups
        .iter()
        .filter(|g| g.group == GroupKind::ExpertDown)
        .collect();
    assert_eq!(moe.len(), cfg.num_hidden_layers);
    assert!(!experts.is_empty());
    for g in moe.iter().chain(&experts) {
        // Candidate 0 is "no scaling", so the chosen loss never exceeds it.
        assert!(g.loss <= 1.0, "{g:?}");
    }
    let scaled = moe
        .iter()
        .chain(&experts)
        .filter(|g| g.alpha.is_some())
        .count();
    println!(
        "{} moe + {} expert_down groups, {scaled} scaled",
        moe.len(),
        experts.len()
    );
    assert!(scaled > 0, "no expert group found a useful scale");
    for (l, sc) in run.plan.layers.iter().enumerate() {
        assert_eq!(sc.moe_in.len(), cfg.hidden_size, "layer {l}");
        assert_eq!(sc.moe_down.len(), cfg.num_experts, "layer {l}");
    }

    // Scales only (no clip): the same function.
    let sw = ScaledWeights {
        base: &ckpt,
        plan: &run.plan,
        clip: false,
    };
    let reference = logits(&ckpt, &ids);
    let k = max_kld(&reference, &logits(&sw, &ids), ids.len());
    println!("max KLD of the folded model vs the original: {k:.3e}");
    assert!(k < 1e-6, "folding the expert scales changed the model: {k}");

    // The scaled checkpoint keeps names and shapes and computes the same function.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("released-bf16");
    write_scaled_checkpoint(&ckpt, &run.plan, &out, &mut |_, _| {}).unwrap();
    let re = Checkpoint::open(&out).unwrap();
    for name in ckpt.text_tensors() {
        assert_eq!(
            re.tensor(name).unwrap().shape,
            ckpt.tensor(name).unwrap().shape,
            "{name}"
        );
    }
    let k = max_kld(&reference, &logits(&re, &ids), ids.len());
    assert!(k < 1e-6, "scaled checkpoint differs: {k}");
    println!("checked {} tensors", ckpt.text_tensors().len());
}
