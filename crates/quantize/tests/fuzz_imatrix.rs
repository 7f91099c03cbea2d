//! Fuzzing the importance-matrix reader (`Imatrix::read`, both formats): a generated GGUF
//! imatrix and a generated legacy `.dat` with bytes flipped, overwritten, cut or inserted, and
//! random files, a fixed number of cases each. Errors are expected; a panic or an error message
//! of several lines or unbounded length fails. An accepted matrix must give its weights and
//! statistics without panicking.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use quantize::imatrix::{Entry, Imatrix};

const CASES: u32 = 2000;

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    })
}

/// A GGUF imatrix as `llama-imatrix` writes it: a dense entry and a 3-expert one.
fn gguf_seed(dir: &Path) -> Vec<u8> {
    let mut entries = BTreeMap::new();
    entries.insert(
        "blk.0.attn_q.weight".to_string(),
        Entry {
            n_cols: 8,
            sums: (0..8).map(|i| i as f32).collect(),
            counts: vec![4.0],
        },
    );
    entries.insert(
        "blk.0.ffn_up_exps.weight".to_string(),
        Entry {
            n_cols: 4,
            sums: (0..12).map(|i| i as f32 * 0.5).collect(),
            counts: vec![2.0, 0.0, 1.0],
        },
    );
    let im = Imatrix {
        entries,
        datasets: vec!["calib.txt".into()],
        chunk_count: 2,
        chunk_size: 16,
    };
    let path = dir.join("seed.gguf");
    im.write_gguf(&path).unwrap();
    std::fs::read(path).unwrap()
}

/// A legacy `.dat`: entry count, then per entry name, call count, value count and values;
/// then the call count and the dataset name.
fn dat_seed() -> Vec<u8> {
    let mut b = 2i32.to_le_bytes().to_vec();
    for (name, n) in [("blk.0.attn_q.weight", 8i32), ("blk.1.attn_k.weight", 4)] {
        b.extend((name.len() as i32).to_le_bytes());
        b.extend(name.as_bytes());
        b.extend(3i32.to_le_bytes());
        b.extend(n.to_le_bytes());
        for i in 0..n {
            b.extend((i as f32 * 0.25).to_le_bytes());
        }
    }
    b.extend(3i32.to_le_bytes());
    b.extend(9i32.to_le_bytes());
    b.extend(b"calib.txt");
    b
}

/// Reads `bytes` as an imatrix file; returns whether it was accepted.
fn read(path: &Path, bytes: &[u8]) -> bool {
    std::fs::write(path, bytes).unwrap();
    match Imatrix::read(path) {
        Ok(im) => {
            for name in im.entries.keys() {
                let _ = im.weights(name);
            }
            let _ = im.statistics();
            true
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "message of several lines: {msg}");
            assert!(msg.len() <= 1200, "message of {} bytes", msg.len());
            false
        }
    }
}

fn interesting_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(u32::MAX),
        Just(i32::MAX as u32),
        Just(1 << 31),
        Just(0x7f80_0000),
        Just(0x3c00),
        0u32..16,
        any::<u32>(),
    ]
}

fn mutate(bytes: &mut Vec<u8>, edits: &[(f64, u32, u8)]) {
    for &(at, v, kind) in edits {
        let i = ((at * bytes.len() as f64) as usize).min(bytes.len().saturating_sub(1));
        match kind {
            0 if !bytes.is_empty() => bytes[i] ^= 1 << (v % 8),
            1 if i + 4 <= bytes.len() => bytes[i..i + 4].copy_from_slice(&v.to_le_bytes()),
            2 if i + 8 <= bytes.len() => {
                bytes[i..i + 8].copy_from_slice(&(u64::from(v) << (v % 33)).to_le_bytes())
            }
            3 => bytes.truncate(i),
            4 => {
                let at = i.min(bytes.len());
                bytes.splice(at..at, v.to_le_bytes());
            }
            _ => {}
        }
    }
}

#[test]
fn fuzz_imatrix_mutated_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    let seeds = [gguf_seed(tmp.path()), dat_seed()];
    let path = tmp.path().join("fuzz.imatrix");
    for s in &seeds {
        assert!(read(&path, s), "every seed reads");
    }
    let (runs, accepted) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let edit = (0.0f64..1.0, interesting_u32(), 0u8..5);
    runner()
        .run(
            &(0..seeds.len(), proptest::collection::vec(edit, 1..6)),
            |(seed, edits)| {
                let mut bytes = seeds[seed].clone();
                mutate(&mut bytes, &edits);
                runs.fetch_add(1, Relaxed);
                if read(&path, &bytes) {
                    accepted.fetch_add(1, Relaxed);
                }
                Ok(())
            },
        )
        .unwrap();
    println!(
        "fuzz_imatrix_mutated_seeds: {} executions, {} accepted, 0 panics",
        runs.into_inner(),
        accepted.into_inner()
    );
}

#[test]
fn fuzz_imatrix_random_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("fuzz.imatrix");
    let runs = AtomicUsize::new(0);
    let body = proptest::collection::vec(any::<u8>(), 0..256);
    runner()
        .run(&(0u8..3, body), |(prefix, body)| {
            // Behind a GGUF magic and version, a small legacy entry count, or nothing.
            let mut bytes = match prefix {
                0 => b"GGUF\x03\0\0\0".to_vec(),
                1 => 1i32.to_le_bytes().to_vec(),
                _ => Vec::new(),
            };
            bytes.extend(body);
            runs.fetch_add(1, Relaxed);
            read(&path, &bytes);
            Ok(())
        })
        .unwrap();
    println!(
        "fuzz_imatrix_random_bytes: {} executions, 0 panics",
        runs.into_inner()
    );
}
