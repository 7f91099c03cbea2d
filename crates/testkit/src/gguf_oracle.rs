//! Checks of a GGUF tensor against its entry in a gguf-py oracle dump (`tensors[]` of the JSON
//! that `gguf_dump`-style oracles hold: `type`, `shape`, `offset`).

use std::fmt::Display;

use serde_json::Value;

/// Asserts that the tensor `name` of type `ty` (ggml's name, any case), dims `dims` and data
/// offset `offset` is what the oracle entry `want` says; `ctx` names the file in messages.
pub fn assert_tensor_entry(
    ctx: impl Display,
    name: &str,
    ty: &str,
    dims: &[u64],
    offset: u64,
    want: &Value,
) {
    assert_eq!(
        ty.to_uppercase(),
        want["type"].as_str().unwrap().to_uppercase(),
        "{ctx}: {name}"
    );
    let shape: Vec<u64> = want["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap())
        .collect();
    assert_eq!(dims, shape, "{ctx}: {name}");
    assert_eq!(offset, want["offset"].as_u64().unwrap(), "{ctx}: {name}");
}
