//! The K-quants against ggml's own output: every Q2_K … Q6_K case in every golden folder
//! (`$G4Q_GOLDEN` or `../shared/golden` from the repository root) must give the same quantized
//! bytes, from both the reference and the fast quantizer, and dequantize to the same float bits.

use std::fs;
use std::path::{Path, PathBuf};

use bytemuck::Pod;
use kernels::blocks::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K};
use kernels::quants::kquants::*;
use testkit::golden_dir as golden_root;

type Quant<B> = fn(&[f32], &mut [B], Option<&[f32]>);
type Dequant<B> = fn(&[B], &mut [f32]);

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        bytes.len() % 4,
        0,
        "{}: not a whole number of f32",
        path.display()
    );
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// One case: quantize every row with each quantizer, compare bytes with ggml's and the
/// dequantized floats bit for bit. Returns a description of the first mismatch.
#[allow(clippy::too_many_arguments)]
fn check_case<B: Pod>(
    name: &str,
    quantizers: &[(&str, Quant<B>)],
    dequant: Dequant<B>,
    input: &[f32],
    imatrix: Option<&[f32]>,
    n_per_row: usize,
    golden: &[u8],
    golden_deq: &[f32],
) -> Result<(), String> {
    let blocks_per_row = n_per_row / 256;
    let rows = input.len() / n_per_row;
    let row_bytes = blocks_per_row * std::mem::size_of::<B>();
    if golden.len() != rows * row_bytes || golden_deq.len() != input.len() {
        return Err(format!("{name}: golden files have the wrong size"));
    }
    for (qname, quant) in quantizers {
        for r in 0..rows {
            let x = &input[r * n_per_row..(r + 1) * n_per_row];
            let mut y = vec![B::zeroed(); blocks_per_row];
            quant(x, &mut y, imatrix);
            let ours: &[u8] = bytemuck::cast_slice(&y);
            let theirs = &golden[r * row_bytes..(r + 1) * row_bytes];
            if ours != theirs {
                let bs = std::mem::size_of::<B>();
                let b = (0..blocks_per_row)
                    .find(|&b| ours[b * bs..(b + 1) * bs] != theirs[b * bs..(b + 1) * bs])
                    .unwrap_or(0);
                let diff: Vec<usize> = (0..bs)
                    .filter(|&i| ours[b * bs + i] != theirs[b * bs + i])
                    .collect();
                return Err(format!(
                    "{name} ({qname}): row {r} block {b} differs at byte offsets {diff:?}\n ours  {:?}\n ggml  {:?}",
                    &ours[b * bs..(b + 1) * bs],
                    &theirs[b * bs..(b + 1) * bs]
                ));
            }
        }
    }
    let mut blocks = vec![B::zeroed(); rows * blocks_per_row];
    bytemuck::cast_slice_mut::<B, u8>(&mut blocks).copy_from_slice(golden);
    let mut deq = vec![0f32; input.len()];
    dequant(&blocks, &mut deq);
    if let Some(i) = (0..deq.len()).find(|&i| deq[i].to_bits() != golden_deq[i].to_bits()) {
        return Err(format!(
            "{name}: dequantized value {i} is {} (ggml {})",
            deq[i], golden_deq[i]
        ));
    }
    Ok(())
}

#[test]
fn kquants_match_ggml_golden_bytes() {
    let root = golden_root();
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("golden folder {}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    dirs.sort();
    assert!(
        !dirs.is_empty(),
        "no manifest.json under {}",
        root.display()
    );

    let mut checked = 0;
    let mut failures = Vec::new();
    for dir in &dirs {
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        let n_per_row = manifest["n_per_row"].as_u64().unwrap() as usize;
        let input = read_f32(&dir.join(manifest["input"].as_str().unwrap()));
        let imatrix = read_f32(&dir.join(manifest["imatrix"].as_str().unwrap()));
        assert_eq!(
            imatrix.len(),
            n_per_row,
            "{}: imatrix length",
            dir.display()
        );
        for case in manifest["cases"].as_array().unwrap() {
            let ty = case["type"].as_str().unwrap();
            let with_imatrix = case["imatrix"].as_bool().unwrap();
            let name = format!(
                "{}/{ty}{}",
                dir.file_name().unwrap().to_string_lossy(),
                if with_imatrix { "+imatrix" } else { "" }
            );
            let golden = fs::read(dir.join(case["blocks"].as_str().unwrap())).unwrap();
            let golden_deq = read_f32(&dir.join(case["dequant"].as_str().unwrap()));
            let qw = with_imatrix.then_some(imatrix.as_slice());
            macro_rules! run {
                ($b:ty, $q:ident, $qf:ident, $d:ident) => {
                    check_case::<$b>(
                        &name,
                        &[("ref", $q), ("fast", $qf)],
                        $d,
                        &input,
                        qw,
                        n_per_row,
                        &golden,
                        &golden_deq,
                    )
                };
            }
            let result = match ty {
                "q2_K" => run!(
                    BlockQ2K,
                    quantize_row_q2_k,
                    quantize_row_q2_k_fast,
                    dequantize_row_q2_k
                ),
                "q3_K" => run!(
                    BlockQ3K,
                    quantize_row_q3_k,
                    quantize_row_q3_k_fast,
                    dequantize_row_q3_k
                ),
                "q4_K" => run!(
                    BlockQ4K,
                    quantize_row_q4_k,
                    quantize_row_q4_k_fast,
                    dequantize_row_q4_k
                ),
                "q5_K" => run!(
                    BlockQ5K,
                    quantize_row_q5_k,
                    quantize_row_q5_k_fast,
                    dequantize_row_q5_k
                ),
                "q6_K" => run!(
                    BlockQ6K,
                    quantize_row_q6_k,
                    quantize_row_q6_k_fast,
                    dequantize_row_q6_k
                ),
                _ => continue,
            };
            checked += 1;
            if let Err(e) = result {
                failures.push(e);
            }
        }
    }
    println!("checked {checked} cases");
    assert!(checked > 0, "no K-quant cases under {}", root.display());
    assert!(
        failures.is_empty(),
        "{} of {checked} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
