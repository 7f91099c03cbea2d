//! The golden oracle: ggml's own quantizers and dequantizers, run on fixed inputs, define what
//! "bit-identical to ggml" means. For every folder under the golden root that holds a
//! `manifest.json`, and every case in it (type × with/without imatrix), our `quantize_rows`
//! must reproduce ggml's bytes and our `dequantize_row_ref` must reproduce ggml's floats bit
//! for bit. No case is skipped: an unknown type, a geometry that disagrees with ours, or a
//! missing file is a failure, and so is finding no case at all.

use std::fs;
use std::path::{Path, PathBuf};

use kernels::{dequantize_row_ref, quantize_rows, GgmlType, KernelError};
use serde_json::Value;
use testkit::golden_dir as golden_root;

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = read(path);
    assert_eq!(
        bytes.len() % 4,
        0,
        "{}: not whole f32 values",
        path.display()
    );
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn field<'a>(v: &'a Value, key: &str, ctx: &str) -> &'a Value {
    v.get(key)
        .unwrap_or_else(|| panic!("{ctx}: manifest has no '{key}'"))
}

fn as_usize(v: &Value, key: &str, ctx: &str) -> usize {
    field(v, key, ctx)
        .as_u64()
        .unwrap_or_else(|| panic!("{ctx}: '{key}' is not an unsigned integer")) as usize
}

fn as_str<'a>(v: &'a Value, key: &str, ctx: &str) -> &'a str {
    field(v, key, ctx)
        .as_str()
        .unwrap_or_else(|| panic!("{ctx}: '{key}' is not a string"))
}

/// Describes where two byte strings first differ, in rows and blocks, for the failure message;
/// `rows[i]` is the golden row that row `i` of the buffers came from.
fn byte_mismatch(
    ours: &[u8],
    theirs: &[u8],
    rows: &[usize],
    row_bytes: usize,
    type_size: usize,
) -> Option<String> {
    let diff = ours.iter().zip(theirs).filter(|(a, b)| a != b).count();
    let first = ours.iter().zip(theirs).position(|(a, b)| a != b)?;
    let row = first / row_bytes;
    let block = (first % row_bytes) / type_size;
    Some(format!(
        "{diff} of {} bytes differ; first in row {}, block {block}: ours {:02x?} ggml {:02x?}",
        ours.len(),
        rows[row],
        &ours[row * row_bytes + block * type_size..][..type_size],
        &theirs[row * row_bytes + block * type_size..][..type_size],
    ))
}

fn float_mismatch(ours: &[f32], theirs: &[f32]) -> Option<String> {
    let same = |a: &f32, b: &f32| a.to_bits() == b.to_bits();
    let diff = ours.iter().zip(theirs).filter(|(a, b)| !same(a, b)).count();
    let first = ours.iter().zip(theirs).position(|(a, b)| !same(a, b))?;
    Some(format!(
        "{diff} of {} values differ; first at {first}: ours {} ggml {}",
        ours.len(),
        ours[first],
        theirs[first]
    ))
}

/// Rows holding NaN/Inf must be rejected, naming the first such row (g4q refuses what ggml
/// would silently quantize); every finite row must match ggml's bytes exactly.
fn check_quantize(
    ty: GgmlType,
    input: &[f32],
    n_per_row: usize,
    qw: Option<&[f32]>,
    expected: &[u8],
    label: &str,
    failures: &mut Vec<String>,
) {
    let row_bytes = expected.len() / (input.len() / n_per_row);
    let finite: Vec<bool> = input
        .chunks_exact(n_per_row)
        .map(|r| r.iter().all(|v| v.is_finite()))
        .collect();
    let mut ours = vec![0u8; expected.len()];
    let result = quantize_rows(ty, input, n_per_row, qw, &mut ours);
    match (finite.iter().position(|f| !f), result) {
        (None, Ok(())) => {}
        (None, Err(e)) => return failures.push(format!("{label}: quantize failed: {e}")),
        (Some(row), Ok(())) => {
            return failures.push(format!("{label}: row {row} holds NaN/Inf but was accepted"))
        }
        (Some(row), Err(KernelError::NotFinite { row: r, .. })) if r == row => {}
        (Some(row), Err(e)) => {
            return failures.push(format!(
                "{label}: expected row {row} to be rejected, got: {e}"
            ))
        }
    }
    // Quantize the finite rows on their own and compare them with ggml's rows.
    let kept: Vec<usize> = (0..finite.len()).filter(|&r| finite[r]).collect();
    let x: Vec<f32> = kept
        .iter()
        .flat_map(|&r| input[r * n_per_row..(r + 1) * n_per_row].iter().copied())
        .collect();
    let theirs: Vec<u8> = kept
        .iter()
        .flat_map(|&r| expected[r * row_bytes..(r + 1) * row_bytes].iter().copied())
        .collect();
    let mut ours = vec![0u8; theirs.len()];
    match quantize_rows(ty, &x, n_per_row, qw, &mut ours) {
        Err(e) => failures.push(format!("{label}: quantize failed: {e}")),
        Ok(()) => {
            if let Some(m) = byte_mismatch(&ours, &theirs, &kept, row_bytes, ty.type_size()) {
                failures.push(format!("{label}: quantized bytes: {m}"));
            }
        }
    }
}

/// Runs every case of one folder; returns the number checked and appends failures.
fn check_folder(dir: &Path, failures: &mut Vec<String>) -> usize {
    let manifest_path = dir.join("manifest.json");
    let manifest: Value = serde_json::from_slice(&read(&manifest_path))
        .unwrap_or_else(|e| panic!("{}: {e}", manifest_path.display()));
    let ctx = manifest_path.display().to_string();
    let rows = as_usize(&manifest, "rows", &ctx);
    let n_per_row = as_usize(&manifest, "n_per_row", &ctx);
    let input = read_f32(&dir.join(as_str(&manifest, "input", &ctx)));
    let imatrix = read_f32(&dir.join(as_str(&manifest, "imatrix", &ctx)));
    assert_eq!(input.len(), rows * n_per_row, "{ctx}: input size");
    assert_eq!(imatrix.len(), n_per_row, "{ctx}: imatrix size");
    let cases = field(&manifest, "cases", &ctx)
        .as_array()
        .unwrap_or_else(|| panic!("{ctx}: 'cases' is not an array"));

    let mut checked = 0;
    for case in cases {
        let name = as_str(case, "type", &ctx);
        let ty: GgmlType = name
            .parse()
            .unwrap_or_else(|e| panic!("{ctx}: case type: {e}"));
        let with_imatrix = field(case, "imatrix", &ctx)
            .as_bool()
            .unwrap_or_else(|| panic!("{ctx}: 'imatrix' is not a bool"));
        let label = format!(
            "{}/{name}{}",
            dir.display(),
            if with_imatrix { " (imatrix)" } else { "" }
        );
        assert_eq!(
            as_usize(case, "ggml_type_id", &label),
            ty.id() as usize,
            "{label}: type id"
        );
        assert_eq!(
            as_usize(case, "block_size", &label),
            ty.block_size(),
            "{label}: block size"
        );
        assert_eq!(
            as_usize(case, "type_size", &label),
            ty.type_size(),
            "{label}: type size"
        );
        let row_bytes = as_usize(case, "row_bytes", &label);
        assert_eq!(
            ty.row_bytes(n_per_row),
            Some(row_bytes),
            "{label}: row bytes"
        );

        let expected = read(&dir.join(as_str(case, "blocks", &label)));
        let expected_f32 = read_f32(&dir.join(as_str(case, "dequant", &label)));
        assert_eq!(
            expected.len(),
            rows * row_bytes,
            "{label}: blocks file size"
        );
        assert_eq!(
            expected_f32.len(),
            rows * n_per_row,
            "{label}: dequant file size"
        );

        let qw = with_imatrix.then_some(imatrix.as_slice());
        check_quantize(ty, &input, n_per_row, qw, &expected, &label, failures);

        let mut deq = vec![0.0f32; rows * n_per_row];
        match dequantize_row_ref(ty, &expected, &mut deq) {
            Err(e) => failures.push(format!("{label}: dequantize failed: {e}")),
            Ok(()) => {
                if let Some(m) = float_mismatch(&deq, &expected_f32) {
                    failures.push(format!("{label}: dequantized values: {m}"));
                }
            }
        }
        checked += 1;
    }
    checked
}

#[test]
fn quantizers_match_ggml_golden_vectors() {
    let root = golden_root();
    let entries = fs::read_dir(&root).unwrap_or_else(|e| {
        panic!(
            "golden folder {} not readable ({e}); set G4Q_GOLDEN",
            root.display()
        )
    });
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    dirs.sort();

    let mut failures = Vec::new();
    let mut checked = 0;
    for dir in &dirs {
        checked += check_folder(dir, &mut failures);
    }
    println!(
        "golden: checked {checked} cases in {} folders under {}",
        dirs.len(),
        root.display()
    );
    assert!(
        checked > 0,
        "no golden cases found under {}",
        root.display()
    );
    assert!(
        failures.is_empty(),
        "{} golden failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
