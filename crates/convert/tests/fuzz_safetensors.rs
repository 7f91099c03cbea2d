//! Fuzzes the safetensors header parser (`convert::stfile::parse_header`, what every checkpoint
//! and AWQ release goes through) with bounded proptest runs: random bytes, and well-formed
//! headers with random entries that are then mutated (bytes flipped, cut, repeated). No input
//! may panic; an accepted header must describe byte ranges that lie inside the file, do not
//! overlap, and match their dtype and shape, and the `safetensors` crate must accept it too.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use convert::stfile::{dtype_size, parse_header};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Cases per property: about two seconds in all in release.
const CASES: u32 = 25_000;

static EXECUTIONS: AtomicUsize = AtomicUsize::new(0);
static ACCEPTED: AtomicUsize = AtomicUsize::new(0);

/// Parses `bytes`; when accepted, checks what the header promises against the bytes.
fn check(bytes: &[u8]) {
    EXECUTIONS.fetch_add(1, Ordering::Relaxed);
    let Ok(tensors) = parse_header(Path::new("fuzz.safetensors"), bytes) else {
        return;
    };
    ACCEPTED.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = safetensors::SafeTensors::deserialize(bytes) {
        panic!("accepted a header the safetensors crate refuses ({e:?}): {tensors:?}");
    }
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for t in &tensors {
        assert!(t.start <= t.end && t.end <= bytes.len(), "{t:?}");
        let n = t.shape.iter().product::<usize>() * dtype_size(&t.dtype).unwrap();
        assert_eq!(n, t.end - t.start, "{t:?}");
        ranges.push((t.start, t.end));
    }
    ranges.sort();
    for w in ranges.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlap {w:?}");
    }
}

fn with_length(header: &[u8], data_len: usize) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.resize(bytes.len() + data_len, 0xA5);
    bytes
}

const DTYPES: &[&str] = &[
    "F32", "BF16", "F16", "I32", "I64", "U8", "BOOL", "F8_E4M3", "Q4", "",
];

/// A header of random entries, packed contiguously when `contiguous`, else at random offsets.
fn header_json(entries: &[(String, usize, Vec<u64>, u64)], contiguous: bool) -> (Vec<u8>, u64) {
    let mut map = Map::new();
    map.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0u64;
    for (name, dtype, shape, start) in entries {
        let dtype = DTYPES[dtype % DTYPES.len()];
        let size = dtype_size(dtype).unwrap_or(1) as u64;
        let bytes = shape
            .iter()
            .try_fold(size, |a, &d| a.checked_mul(d))
            .unwrap_or(u64::MAX);
        let begin = if contiguous { offset } else { *start };
        let end = begin.saturating_add(bytes);
        map.insert(
            name.clone(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}),
        );
        offset = end;
    }
    let mut text = serde_json::to_vec(&Value::Object(map)).unwrap();
    text.resize(text.len().next_multiple_of(8), b' ');
    (text, offset)
}

fn entries() -> impl Strategy<Value = Vec<(String, usize, Vec<u64>, u64)>> {
    prop::collection::vec(
        (
            "[a-c.]{0,6}",
            0usize..DTYPES.len(),
            prop::collection::vec(prop_oneof![0u64..5, Just(u64::MAX), Just(1 << 40)], 0..4),
            0u64..64,
        ),
        0..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
        check(&bytes);
        // The same bytes as a header of the right length.
        check(&with_length(&bytes, 16));
    }

    fn generated_headers(entries in entries(), contiguous: bool, extra in 0usize..3) {
        let (header, data) = header_json(&entries, contiguous);
        let data = usize::try_from(data).unwrap_or(usize::MAX).min(4096).saturating_add(extra);
        check(&with_length(&header, data));
    }

    fn mutated_headers(
        entries in entries(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let (mut header, data) = header_json(&entries, true);
        for (at, byte, how) in edits {
            if header.is_empty() {
                break;
            }
            let i = at.index(header.len());
            match how {
                0 => header[i] = byte,
                1 => header.truncate(i),
                _ => {
                    let tail = header[i..].to_vec();
                    header.extend_from_slice(&tail);
                }
            }
        }
        check(&with_length(&header, usize::try_from(data).unwrap_or(0).min(4096)));
    }

    /// A header length that disagrees with the file: past the end, far past, zero.
    fn lying_lengths(entries in entries(), length in prop_oneof![Just(0u64), 0u64..200, Just(u64::MAX), Just(100_000_001)]) {
        let (header, data) = header_json(&entries, true);
        let mut bytes = with_length(&header, usize::try_from(data).unwrap_or(0).min(4096));
        bytes[..8].copy_from_slice(&length.to_le_bytes());
        check(&bytes);
    }
}

/// Runs every property (`CASES` cases each), prints the totals and checks the generators reached
/// both outcomes.
#[test]
fn safetensors_header_parser_survives_fuzzing() {
    random_bytes();
    generated_headers();
    mutated_headers();
    lying_lengths();
    let executions = EXECUTIONS.load(Ordering::Relaxed);
    let accepted = ACCEPTED.load(Ordering::Relaxed);
    println!("fuzz_safetensors: {executions} executions, {accepted} accepted headers, 0 crashes");
    assert!(executions >= 4 * CASES as usize);
    assert!(
        accepted > 0,
        "no generated header was accepted: the generator is broken"
    );
}
