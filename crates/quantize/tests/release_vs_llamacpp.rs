//! g4q's quantized GGUF releases against llama-quantize's, file for file on every fixture: the
//! same metadata (keys, order, values), tensor names, order, types, shapes and bytes (sha256),
//! with and without llama.cpp's importance matrix. One streaming pass from the checkpoint
//! replaces llama.cpp's convert + quantize.

use convert::gguf::{GgufFile, Value};
use convert::Checkpoint;
use quantize::gguf_release::{self, ReleaseOptions};
use quantize::{FileType, Imatrix, MixOptions};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use testkit::fixtures_dir;

fn scalar_json(v: &Value) -> Option<Json> {
    Some(match v {
        Value::U32(x) => Json::from(*x),
        Value::I32(x) => Json::from(*x),
        Value::F32(x) => Json::from(f64::from(*x)),
        Value::Bool(x) => Json::from(*x),
        Value::String(x) => Json::from(x.clone()),
        _ => return None,
    })
}

/// Asserts that `f` has the metadata keys of llama-quantize's file `want` that `keep` accepts,
/// in its order, and its tensors: names in order and bytes (sha256). Returns the tensor count.
fn assert_keys_and_tensors(
    ctx: &str,
    f: &GgufFile,
    want: &Json,
    keep: impl Fn(&str) -> bool,
) -> usize {
    let keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k).collect();
    let want_keys: Vec<&str> = want["metadata"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .filter(|k| keep(k))
        .collect();
    assert_eq!(keys, want_keys, "{ctx}: keys");
    let want_t = want["tensors"].as_array().unwrap();
    for (t, w) in f.tensors().iter().zip(want_t) {
        assert_eq!(t.name, w["name"].as_str().unwrap(), "{ctx}");
        let sha = hex::encode(Sha256::digest(f.tensor_data(&t.name).unwrap()));
        assert_eq!(sha, w["sha256"].as_str().unwrap(), "{ctx}: {}", t.name);
    }
    f.tensors().len().min(want_t.len())
}

#[test]
fn releases_match_llama_quantize() {
    let dirs = testkit::fixture_dirs("llamacpp/manifest.json");
    assert!(!dirs.is_empty());
    let tmp = tempfile::tempdir().unwrap();
    let (mut files, mut tensors, mut mismatched) = (0, 0, Vec::new());
    for dir in &dirs {
        let m = testkit::llamacpp_manifest(dir);
        let Some(from) = testkit::llamacpp_source(dir, &m) else {
            continue;
        };
        let ckpt = Checkpoint::open(&from).unwrap();
        let imatrix = Imatrix::read(&dir.join("llamacpp/imatrix.gguf")).unwrap();
        for q in testkit::quantized_files(&m) {
            let (file, entry, with_imatrix) = (q.file, q.entry, q.imatrix);
            let ftype: FileType = q.mix.parse().unwrap();
            let opts = ReleaseOptions {
                ftype,
                mix: MixOptions::default(),
                imatrix: with_imatrix.then(|| (&imatrix, "imatrix.gguf".to_string())),
                progress: None,
            };
            let out = tmp.path().join(file);
            gguf_release::write(&ckpt, &out, &opts).unwrap();
            let f = GgufFile::open(&out).unwrap();
            let want = &entry["gguf"];
            let ctx = format!("{}/{file}", dir.file_name().unwrap().to_string_lossy());
            let want_md = want["metadata"].as_object().unwrap();
            let keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k).collect();
            let want_keys: Vec<&str> = want_md.keys().map(String::as_str).collect();
            assert_eq!(keys, want_keys, "{ctx}: keys");
            for (k, v) in f.metadata().iter() {
                assert_eq!(
                    v.type_name(),
                    want_md[k]["type"].as_str().unwrap(),
                    "{ctx}: {k}"
                );
                if let Some(j) = scalar_json(v) {
                    assert_eq!(j, want_md[k]["value"], "{ctx}: {k}");
                }
            }
            let want_t = want["tensors"].as_array().unwrap();
            assert_eq!(f.tensors().len(), want_t.len(), "{ctx}");
            for (t, w) in f.tensors().iter().zip(want_t) {
                assert_eq!(t.name, w["name"].as_str().unwrap(), "{ctx}: order");
                assert_eq!(
                    t.ty.name().to_uppercase(),
                    w["type"].as_str().unwrap().to_uppercase(),
                    "{ctx}: {}",
                    t.name
                );
                let sha = hex::encode(Sha256::digest(f.tensor_data(&t.name).unwrap()));
                if sha != w["sha256"].as_str().unwrap() {
                    mismatched.push(format!("{ctx}: {} ({})", t.name, t.ty));
                }
                tensors += 1;
            }
            files += 1;
        }
    }
    println!("release: checked {files} quantized files, {tensors} tensors against llama-quantize");
    assert!(
        mismatched.is_empty(),
        "{} tensors differ from llama-quantize's bytes:\n{}",
        mismatched.len(),
        mismatched.join("\n")
    );
}

#[test]
fn requantizing_llamacpps_f32_file_matches_llama_quantize() {
    let dirs = testkit::fixture_dirs("llamacpp/f32.gguf");
    if dirs.is_empty() {
        return testkit::skip_missing_oracle("llama.cpp's llamacpp/f32.gguf of every fixture");
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut files = 0;
    for dir in &dirs {
        let m = testkit::llamacpp_manifest(dir);
        let input = GgufFile::open(&dir.join("llamacpp/f32.gguf")).unwrap();
        let imatrix = Imatrix::read(&dir.join("llamacpp/imatrix.gguf")).unwrap();
        for (mix, with_imatrix) in [("Q4_K_M", false), ("Q2_K", false), ("IQ4_XS", true)] {
            let file = if with_imatrix {
                format!("{mix}.imatrix.gguf")
            } else {
                format!("{mix}.gguf")
            };
            let opts = ReleaseOptions {
                ftype: mix.parse().unwrap(),
                mix: MixOptions::default(),
                imatrix: with_imatrix.then(|| (&imatrix, "imatrix.gguf".to_string())),
                progress: None,
            };
            let out = tmp.path().join(&file);
            quantize::requantize::write(&input, &out, &opts).unwrap();
            let f = GgufFile::open(&out).unwrap();
            let want = &m["files"][&file]["gguf"];
            let ctx = format!("{}/{file}", dir.display());
            assert_keys_and_tensors(&ctx, &f, want, |_| true);
            files += 1;
        }
    }
    println!("requantize: {files} files from llama.cpp's f32.gguf equal llama-quantize's");
}

#[test]
fn imatrix_gguf_round_trips_byte_for_byte() {
    let root = fixtures_dir();
    let tmp = tempfile::tempdir().unwrap();
    let mut n = 0;
    for dir in std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()) {
        let file = dir.join("llamacpp/imatrix.gguf");
        if !file.exists() {
            continue;
        }
        let im = Imatrix::read(&file).unwrap();
        assert!(!im.entries.is_empty());
        let out = tmp.path().join(format!("{n}.gguf"));
        im.write_gguf(&out).unwrap();
        assert!(
            std::fs::read(&out).unwrap() == std::fs::read(&file).unwrap(),
            "{}",
            file.display()
        );
        n += 1;
    }
    assert!(n > 0);
    println!("imatrix: {n} llama.cpp imatrix files rewritten byte for byte");
}

/// A legacy `.dat` imatrix as `llama-imatrix --output-format dat` lays it out: per entry the name,
/// ncall and mean(x²)·ncall; read back, its weights are the means again.
#[test]
fn legacy_dat_imatrix_reads_to_the_same_weights() {
    let gguf = fixtures_dir().join("e2b-s0/llamacpp/imatrix.gguf");
    let im = Imatrix::read(&gguf).unwrap();
    let mut dat = Vec::new();
    dat.extend((im.entries.len() as i32).to_le_bytes());
    let ncall = 3i32;
    for name in im.entries.keys() {
        let w = im.weights(name).unwrap();
        dat.extend((name.len() as i32).to_le_bytes());
        dat.extend(name.as_bytes());
        dat.extend(ncall.to_le_bytes());
        dat.extend((w.len() as i32).to_le_bytes());
        for v in &w {
            dat.extend((v * ncall as f32).to_le_bytes());
        }
    }
    dat.extend(8i32.to_le_bytes());
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("imatrix.dat");
    std::fs::write(&path, &dat).unwrap();
    let legacy = Imatrix::read(&path).unwrap();
    assert_eq!(legacy.entries.len(), im.entries.len());
    for name in im.entries.keys() {
        let (a, b) = (im.weights(name).unwrap(), legacy.weights(name).unwrap());
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() <= 1e-6 * x.abs().max(1e-30),
                "{name}: {x} vs {y}"
            );
        }
    }
    // Truncated files are errors naming the file, never panics.
    for cut in [2, 9, dat.len() / 2] {
        std::fs::write(&path, &dat[..cut]).unwrap();
        let err = Imatrix::read(&path).unwrap_err().to_string();
        assert!(err.contains("imatrix.dat"), "{err}");
    }
}

/// One legacy `.dat` entry: name, ncall, values (mean(x²)·ncall).
fn dat_entry(out: &mut Vec<u8>, name: &str, ncall: i32, values: &[f32]) {
    out.extend((name.len() as i32).to_le_bytes());
    out.extend(name.as_bytes());
    out.extend(ncall.to_le_bytes());
    out.extend((values.len() as i32).to_le_bytes());
    for v in values {
        out.extend(v.to_le_bytes());
    }
}

/// A legacy `.dat` in which some names come twice, bogus values first: llama.cpp's loader
/// (`common_imatrix_load_legacy`, behind both `llama-quantize --imatrix` and `llama-imatrix
/// --in-file`) assigns entries into a `std::map` in file order, so the last copy of a name is the
/// one used. Made from llama.cpp's `imatrix.gguf` with ncall 1 (so the values are its weights
/// exactly) and the trailer carrying its chunk count and dataset, the `.dat` must give every
/// byte of llama-quantize's own imatrix files, metadata included; without the trailer,
/// llama-quantize records neither the dataset nor the chunk count.
#[test]
fn legacy_dat_with_repeated_names_quantizes_as_llama_quantize_does() {
    let dirs = testkit::fixture_dirs("llamacpp/imatrix.gguf");
    assert!(!dirs.is_empty(), "no fixture with llama.cpp's imatrix.gguf");
    let tmp = tempfile::tempdir().unwrap();
    let (mut files, mut tensors, mut repeated) = (0, 0, 0);
    for dir in &dirs {
        let m = testkit::llamacpp_manifest(dir);
        let Some(from) = testkit::llamacpp_source(dir, &m) else {
            continue;
        };
        let gguf = Imatrix::read(&dir.join("llamacpp/imatrix.gguf")).unwrap();
        let names: Vec<&String> = gguf.entries.keys().collect();
        let mut body = Vec::new();
        let mut n_entries = 0i32;
        for (i, name) in names.iter().enumerate() {
            let w = gguf.weights(name).unwrap();
            // Every third name first comes with other values (and every sixth another length).
            if i % 3 == 0 {
                let len = if i % 6 == 0 { w.len() / 2 } else { w.len() };
                dat_entry(&mut body, name, 7, &vec![3.5; len.max(1)]);
                n_entries += 1;
                repeated += 1;
            }
            dat_entry(&mut body, name, 1, &w);
            n_entries += 1;
        }
        let mut dat = n_entries.to_le_bytes().to_vec();
        dat.extend(&body);
        let bare = tmp.path().join("bare.dat");
        std::fs::write(&bare, &dat).unwrap();
        dat.extend((gguf.chunk_count as i32).to_le_bytes());
        let dataset = gguf.datasets[0].as_bytes();
        dat.extend((dataset.len() as i32).to_le_bytes());
        dat.extend(dataset);
        let path = tmp.path().join("imatrix.dat");
        std::fs::write(&path, &dat).unwrap();

        let legacy = Imatrix::read(&path).unwrap();
        assert_eq!(legacy.entries.len(), names.len(), "{}", dir.display());
        assert_eq!(legacy.chunk_count, gguf.chunk_count);
        assert_eq!(legacy.datasets, gguf.datasets[..1]);
        for name in &names {
            assert_eq!(legacy.weights(name), gguf.weights(name), "{name}");
        }
        let bare = Imatrix::read(&bare).unwrap();
        assert_eq!((bare.chunk_count, bare.datasets.len()), (0, 0));

        let ckpt = Checkpoint::open(&from).unwrap();
        for q in testkit::quantized_files(&m)
            .into_iter()
            .filter(|q| q.imatrix)
        {
            let ctx = format!("{}/{}", dir.display(), q.file);
            let want = &q.entry["gguf"];
            let recorded = want["metadata"]["quantize.imatrix.file"]["value"]
                .as_str()
                .unwrap()
                .to_string();
            for (im, full) in [(&legacy, true), (&bare, false)] {
                let opts = ReleaseOptions {
                    ftype: q.mix.parse().unwrap(),
                    mix: MixOptions::default(),
                    imatrix: Some((im, recorded.clone())),
                    progress: None,
                };
                let out = tmp.path().join(q.file);
                gguf_release::write(&ckpt, &out, &opts).unwrap();
                let f = GgufFile::open(&out).unwrap();
                let trailer = |k: &str| {
                    full || !matches!(
                        k,
                        "quantize.imatrix.dataset" | "quantize.imatrix.chunks_count"
                    )
                };
                tensors +=
                    assert_keys_and_tensors(&format!("{ctx} (trailer: {full})"), &f, want, trailer);
                for (k, v) in f.metadata().iter() {
                    if let Some(j) = scalar_json(v) {
                        assert_eq!(j, want["metadata"][k]["value"], "{ctx}: {k}");
                    }
                }
                files += 1;
            }
        }
    }
    assert!(files > 0, "no llama-quantize file made with an imatrix");
    println!(
        "legacy .dat: {files} files ({tensors} tensors) from .dat files with {repeated} repeated \
         names equal llama-quantize's imatrix files"
    );
}
