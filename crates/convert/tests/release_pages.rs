//! `Checkpoint::release` really gives a tensor's pages back: the file-backed resident set drops
//! by about the tensor's size. (Linux: reads `RssFile` from /proc/self/status. Its own test
//! binary, so no other test's mappings move the figure.)

#![cfg(target_os = "linux")]

use convert::synth::write_random_checkpoint;
use convert::Checkpoint;
use serde_json::{json, Value};

fn rss_file_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssFile:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssFile in /proc/self/status")
}

#[test]
fn release_drops_resident_pages() {
    let src = testkit::fixtures_dir().join("e2b-s0/released-bf16");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    // A 16 MB embedding table: large against page-size noise.
    config["text_config"]["vocab_size"] = json!(65_536);
    let tmp = tempfile::tempdir().unwrap();
    write_random_checkpoint(tmp.path(), &config, 1, &mut |_, _| {}).unwrap();
    let ck = Checkpoint::open(tmp.path()).unwrap();
    let name = "embed_tokens.weight";
    let size_kb = ck.tensor(name).unwrap().data.len() as u64 / 1024;
    assert!(size_kb >= 16 * 1024);

    let before = rss_file_kb();
    let sum: f64 = ck
        .tensor(name)
        .unwrap()
        .to_f32()
        .unwrap()
        .iter()
        .map(|v| *v as f64)
        .sum();
    assert!(sum.is_finite());
    let touched = rss_file_kb();
    assert!(
        touched >= before + size_kb * 3 / 4,
        "reading did not page the tensor in: {before} -> {touched} kB"
    );
    ck.release(name);
    let released = rss_file_kb();
    assert!(
        released + size_kb * 3 / 4 <= touched,
        "release kept the pages: {touched} -> {released} kB (tensor {size_kb} kB)"
    );
    // The bytes are still readable (faulted back in from the file) and unchanged.
    let again: f64 = ck
        .tensor(name)
        .unwrap()
        .to_f32()
        .unwrap()
        .iter()
        .map(|v| *v as f64)
        .sum();
    assert_eq!(sum, again);
    println!("checked 1 cases: RssFile {before} -> {touched} -> {released} kB");
}
