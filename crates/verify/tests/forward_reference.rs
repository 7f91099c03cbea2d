//! The reference forward pass against transformers' float32 outputs on every fixture: logits
//! within relative L2 1e-5 with the same argmax at every position, hidden states per layer
//! within a looser bound (to localise bugs), and byte-identical results in layer-streaming
//! mode and with 1 or 2 threads.

use testkit::reference::{argmax_rows, rel_l2, Reference, LAYOUTS};
use verify::{forward_streaming, ForwardOptions, ForwardOutput, Model, NoObserver};

fn pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
}

fn bits(o: &ForwardOutput) -> Vec<u32> {
    let mut v: Vec<u32> = o.logits.iter().map(|x| x.to_bits()).collect();
    for h in o.hidden_states.iter().flatten() {
        v.extend(h.iter().map(|x| x.to_bits()));
    }
    v
}

#[test]
fn forward_matches_transformers_on_every_fixture() {
    let opts = ForwardOptions {
        hidden_states: true,
    };
    let mut checked = 0;
    let mut worst = 0f64;
    for folder in testkit::reference_fixtures() {
        let reference = Reference::open(&folder);
        let fixture = folder.file_name().unwrap().to_string_lossy().to_string();
        for layout in LAYOUTS {
            let dir = folder.join(layout);
            if !dir.is_dir() {
                continue;
            }
            let ckpt = convert::Checkpoint::open(&dir)
                .unwrap_or_else(|e| panic!("{fixture}/{layout}: {e}"));
            let model = Model::load(&ckpt).unwrap_or_else(|e| panic!("{fixture}/{layout}: {e}"));
            for seq in reference.sequences() {
                let case = format!("{fixture}/{layout}/{seq}");
                let ids = reference.ids(&format!("{seq}.input_ids"));
                let run2 = pool(2)
                    .install(|| model.forward(&ids, opts, &mut NoObserver, &mut |_, _| {}))
                    .unwrap_or_else(|e| panic!("{case}: {e}"));
                let (shape, want) = reference.f32s(&format!("{seq}.logits"));
                assert_eq!(shape, vec![ids.len(), run2.logits.ncols()], "{case}");
                let got = run2.logits.as_slice().unwrap();
                let err = rel_l2(got, &want);
                worst = worst.max(err);
                assert!(err <= 1e-5, "{case}: logits relative L2 {err:e}");
                assert_eq!(
                    argmax_rows(got, shape[1]),
                    argmax_rows(&want, shape[1]),
                    "{case}: argmax differs"
                );
                let (hs_shape, hs) = reference.f32s(&format!("{seq}.hidden_states"));
                let per = hs_shape[1] * hs_shape[2];
                let ours = run2.hidden_states.as_ref().unwrap();
                assert_eq!(ours.len(), hs_shape[0], "{case}: hidden state count");
                for (i, h) in ours.iter().enumerate() {
                    let e = rel_l2(h.as_slice().unwrap(), &hs[i * per..(i + 1) * per]);
                    assert!(e <= 1e-4, "{case}: hidden_states[{i}] relative L2 {e:e}");
                }

                let stream2 = pool(2)
                    .install(|| {
                        forward_streaming(&ckpt, &ids, opts, &mut NoObserver, &mut |_, _| {})
                    })
                    .unwrap_or_else(|e| panic!("{case} streaming: {e}"));
                assert!(
                    bits(&stream2) == bits(&run2),
                    "{case}: streaming differs from in-memory"
                );
                let run1 = pool(1)
                    .install(|| model.forward(&ids, opts, &mut NoObserver, &mut |_, _| {}))
                    .unwrap();
                assert!(bits(&run1) == bits(&run2), "{case}: 1 and 2 threads differ");
                checked += 1;
            }
        }
    }
    println!(
        "checked {checked} cases (fixture, layout, sequence); worst logits relative L2 {worst:e}"
    );
    assert!(checked > 0);
}
