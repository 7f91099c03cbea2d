//! g4q's importance matrix against llama-imatrix's on every fixture: the same text
//! (`llamacpp/imatrix-input.txt`) and chunking (`-c 64 --chunks 8`, read from the manifest's
//! command) must give the same tensor names, shapes and counts, every tensor's total Σx² within
//! 1%, and at least 99% of the entries within 2%. Values cannot be bit-equal: llama.cpp's GELU is
//! an fp16 lookup table and its CPU kernels sum in a different order.

use convert::Checkpoint;
use quantize::calibrate::{calibration_tokens, compute_imatrix, ImatrixOptions};
use quantize::Imatrix;
use serde_json::Value as Json;
use testkit::fixtures_dir;

/// The value following `flag` in llama-imatrix's recorded command line.
fn flag(cmd: &[Json], flag: &str) -> Option<usize> {
    let i = cmd.iter().position(|a| a.as_str() == Some(flag))?;
    cmd.get(i + 1)?.as_str()?.parse().ok()
}

#[test]
fn imatrix_matches_llama_imatrix() {
    let dirs = testkit::fixture_dirs("llamacpp/imatrix.gguf");
    assert!(!dirs.is_empty(), "no fixture with llamacpp/imatrix.gguf");
    let (mut cases, mut entries, mut close, mut moved) = (0, 0usize, 0usize, 0usize);
    let (mut worst_total, mut worst_entry) = (0f64, 0f64);
    for dir in &dirs {
        let fixture = dir.file_name().unwrap().to_string_lossy().into_owned();
        let m: Json =
            serde_json::from_slice(&std::fs::read(dir.join("llamacpp/manifest.json")).unwrap())
                .unwrap();
        let Some(model_dir) = testkit::llamacpp_source(dir, &m) else {
            continue;
        };
        let cmd = m["files"]["imatrix.gguf"]["command"].as_array().unwrap();
        let ctx = flag(cmd, "-c").expect("-c in the imatrix command");
        let max_chunks = flag(cmd, "--chunks");
        let ckpt = Checkpoint::open(&model_dir).unwrap();
        let data = dir.join("llamacpp/imatrix-input.txt");
        let tokens = calibration_tokens(&model_dir, &data, ckpt.config().bos_token_id).unwrap();
        let opts = ImatrixOptions {
            ctx,
            max_chunks,
            dataset: "imatrix-input.txt".into(),
        };
        let ours = compute_imatrix(&ckpt, &tokens, &opts, &mut |_, _| {})
            .unwrap_or_else(|e| panic!("{fixture}: {e}"));
        let theirs = Imatrix::read(&dir.join("llamacpp/imatrix.gguf")).unwrap();

        assert_eq!(
            ours.chunk_count, theirs.chunk_count,
            "{fixture}: chunk_count"
        );
        assert_eq!(ours.chunk_size, theirs.chunk_size, "{fixture}: chunk_size");
        assert_eq!(ours.datasets, theirs.datasets, "{fixture}: datasets");
        let names: Vec<&String> = ours.entries.keys().collect();
        let want: Vec<&String> = theirs.entries.keys().collect();
        assert_eq!(names, want, "{fixture}: tensor names");
        let (mut f_entries, mut f_close) = (0usize, 0usize);
        for (name, t) in &theirs.entries {
            let o = &ours.entries[name];
            assert_eq!(o.n_cols, t.n_cols, "{fixture} {name}: columns");
            moved +=
                testkit::assert_counts_close(&format!("{fixture} {name}"), &o.counts, &t.counts);
            let total = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>();
            let (a, b) = (total(&o.sums), total(&t.sums));
            let rel = (a - b).abs() / b.abs().max(f64::MIN_POSITIVE);
            worst_total = worst_total.max(rel);
            assert!(
                rel <= 0.01,
                "{fixture} {name}: total {a} vs llama.cpp {b} ({rel:.2e})"
            );
            for (&x, &y) in o.sums.iter().zip(&t.sums) {
                let (x, y) = (f64::from(x), f64::from(y));
                f_entries += 1;
                if y != 0.0 {
                    worst_entry = worst_entry.max((x - y).abs() / y.abs());
                }
                if (x - y).abs() <= 0.02 * y.abs() {
                    f_close += 1;
                }
            }
        }
        let share = f_close as f64 / f_entries as f64;
        println!(
            "{fixture}: {} tensors, {f_entries} entries, {:.3}% within 2%",
            theirs.entries.len(),
            100.0 * share
        );
        assert!(
            share >= 0.99,
            "{fixture}: only {:.2}% of entries within 2%",
            100.0 * share
        );
        entries += f_entries;
        close += f_close;
        cases += 1;
    }
    println!(
        "checked {cases} cases: {entries} entries, {:.3}% within 2%, worst tensor total {:.3e}, \
         worst entry {:.3e}, {moved} expert routings counted elsewhere by llama.cpp",
        100.0 * close as f64 / entries as f64,
        worst_total,
        worst_entry
    );
}

/// The same text gives the same bytes whatever the thread count: the MoE experts run in
/// parallel, but the observer sees them in a fixed order.
#[test]
fn imatrix_does_not_depend_on_thread_count() {
    let root = fixtures_dir();
    let mut cases = 0;
    for fixture in ["26b-a4b-s0", "e2b-s0"] {
        let dir = root.join(fixture);
        let model_dir = dir.join("released-bf16");
        let ckpt = Checkpoint::open(&model_dir).unwrap();
        let data = dir.join("llamacpp/imatrix-input.txt");
        let tokens = calibration_tokens(&model_dir, &data, ckpt.config().bos_token_id).unwrap();
        let opts = ImatrixOptions {
            ctx: 32,
            max_chunks: None,
            dataset: "imatrix-input.txt".into(),
        };
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| compute_imatrix(&ckpt, &tokens, &opts, &mut |_, _| {}).unwrap())
        };
        let (one, three) = (run(1), run(3));
        assert!(one.chunk_count > 8, "{fixture}: all chunks the text fills");
        assert!(one == three, "{fixture}: 1 and 3 threads differ");
        cases += 1;
    }
    println!("checked {cases} cases");
}
