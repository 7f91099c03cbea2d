//! The observer hook: every linear layer's input is reported once per forward pass, in a fixed
//! order, with expert token rows that account for exactly top_k routings per token.

use testkit::reference::Reference;
use verify::{LinearSite, Model, Observer};

/// One observed call: layer, weight, expert, rows, cols and the sum of the activations.
type Call = (Option<usize>, String, Option<usize>, usize, usize, f64);

#[derive(Default)]
struct Recorder {
    calls: Vec<Call>,
    expert_rows: usize,
}

impl Observer for Recorder {
    fn linear_input(&mut self, site: &LinearSite<'_>, x: &[f32], rows: usize, cols: usize) {
        assert_eq!(x.len(), rows * cols, "{}", site.weight);
        if let Some(t) = site.token_rows {
            assert_eq!(t.len(), rows);
            if site.weight.ends_with("gate_up_proj") {
                self.expert_rows += rows;
            }
        }
        let sum = x.iter().map(|v| *v as f64).sum();
        self.calls.push((
            site.layer,
            site.weight.to_string(),
            site.expert,
            rows,
            cols,
            sum,
        ));
    }
}

#[test]
fn observer_sees_every_linear_input_deterministically() {
    let mut checked = 0;
    for folder in testkit::reference_fixtures() {
        let dir = folder.join("released-bf16");
        if !dir.is_dir() {
            continue;
        }
        let reference = Reference::open(&folder);
        let ids = reference.ids("seq0.input_ids");
        let ckpt = convert::Checkpoint::open(&dir).unwrap();
        let cfg = ckpt.config().clone();
        let model = Model::load(&ckpt).unwrap();
        let run = |threads| {
            let mut rec = Recorder::default();
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    model
                        .forward(&ids, Default::default(), &mut rec, &mut |_, _| {})
                        .unwrap()
                });
            rec
        };
        let a = run(1);
        let b = run(2);
        assert_eq!(a.calls, b.calls, "{}", folder.display());
        // Every per-layer weight that is a linear layer was seen at least once.
        for l in 0..cfg.num_hidden_layers {
            for suffix in [
                "self_attn.q_proj.weight",
                "self_attn.o_proj.weight",
                "mlp.down_proj.weight",
            ] {
                let name = format!("layers.{l}.{suffix}");
                assert!(a.calls.iter().any(|c| c.1 == name), "{name} not observed");
            }
        }
        assert!(a
            .calls
            .iter()
            .any(|c| c.1 == "embed_tokens.weight" && c.3 == ids.len()));
        if cfg.enable_moe_block {
            assert_eq!(
                a.expert_rows,
                ids.len() * cfg.top_k_experts * cfg.num_hidden_layers
            );
        }
        checked += 1;
    }
    println!("checked {checked} cases");
    assert!(checked > 0);
}
