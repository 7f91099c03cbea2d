//! `synth` writes checkpoints that `Checkpoint::open` accepts, deterministically per seed. Uses
//! the fixtures' tiny configs: the real-width variants are gigabytes, too large for a test.

use convert::synth::write_random_checkpoint;
use convert::Checkpoint;
use serde_json::Value;

#[test]
fn random_checkpoints_open_and_are_deterministic() {
    let mut checked = 0;
    for folder in testkit::reference_fixtures() {
        let src = folder.join("released-bf16");
        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap())
                .unwrap();
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let mut calls = 0;
        let summary = write_random_checkpoint(a.path(), &config, 5, &mut |done, total| {
            assert!(done <= total);
            calls += 1;
        })
        .unwrap();
        assert!(calls > 0);
        write_random_checkpoint(b.path(), &config, 5, &mut |_, _| {}).unwrap();
        write_random_checkpoint(c.path(), &config, 6, &mut |_, _| {}).unwrap();
        let bytes =
            |d: &tempfile::TempDir| std::fs::read(d.path().join("model.safetensors")).unwrap();
        assert_eq!(
            bytes(&a),
            bytes(&b),
            "{}: same seed, different bytes",
            folder.display()
        );
        assert_ne!(bytes(&a), bytes(&c), "{}: seed ignored", folder.display());
        assert!(!a.path().join("model.safetensors.partial").exists());

        let synth = Checkpoint::open(a.path()).unwrap();
        let original = Checkpoint::open(&src).unwrap();
        assert_eq!(synth.config(), original.config());
        assert_eq!(synth.text_tensors(), original.text_tensors());
        assert_eq!(summary.tensors, synth.text_tensors().len());
        for name in synth.text_tensors() {
            let t = synth.tensor(name).unwrap();
            assert_eq!(t.shape, original.tensor(name).unwrap().shape);
            let v = t.to_f32().unwrap();
            let mean = v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64;
            let expect = if t.shape.len() <= 1 { 1.0 } else { 0.0 };
            let tol = if v.len() < 64 { 0.05 } else { 0.01 };
            assert!((mean - expect).abs() < tol, "{name}: mean {mean}");
        }
        checked += 1;
    }
    println!("checked {checked} cases");
}
