//! Comparing importance-matrix token counts with llama.cpp's.

/// Asserts that `ours`, the per-expert (or single) token counts of one imatrix entry, equal
/// llama.cpp's `theirs` up to routings that moved between experts: the same total, and at most
/// one routing in 200 counted under another expert. Returns how many moved.
///
/// Why any may move: llama.cpp's CPU GELU is an fp16 lookup table, so its hidden states differ
/// from the exact ones in the last bits, and on a mixture-of-experts layer a token whose router
/// scores nearly tie can be sent to another expert there. g4q routes as transformers does (the
/// forward-pass tests check its router choices against transformers'). Dense entries have one
/// count, so for them this is equality.
pub fn assert_counts_close(what: &str, ours: &[f32], theirs: &[f32]) -> usize {
    assert_eq!(ours.len(), theirs.len(), "{what}: number of counts");
    let total = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>();
    assert_eq!(total(ours), total(theirs), "{what}: total count");
    let moved = ours
        .iter()
        .zip(theirs)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
        .sum::<f64>()
        / 2.0;
    assert!(
        moved * 200.0 <= total(theirs),
        "{what}: counts {ours:?} vs llama.cpp's {theirs:?} ({moved} routings moved)"
    );
    moved as usize
}
