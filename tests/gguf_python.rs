//! Every GGUF g4q writes is read by the `gguf` Python package (llama.cpp's own gguf-py), and
//! gguf-py's dequantizer gives, tensor for tensor, exactly the floats g4q's dequantizer gives.
//! The package is installed into a throwaway virtualenv under `target/`; when it cannot be
//! installed (no registry), the test prints a `SKIPPED` line and passes without checking, except
//! under `G4Q_REQUIRE_ORACLES=1` (CI), where gguf-py counts as an oracle and the skip fails.

use std::path::PathBuf;
use std::process::Command;

use convert::gguf::GgufFile;
use testkit::g4q;

const SCRIPT: &str = r#"
import sys, numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
path, out_dir = sys.argv[1], sys.argv[2]
r = GGUFReader(path)
for t in r.tensors:
    vals = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
    vals.tofile(f"{out_dir}/{t.name}.f32")
print(len(r.tensors))
"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A virtualenv with gguf + numpy, built once under target/; `None` when pip cannot install.
fn python_with_gguf() -> Option<PathBuf> {
    testkit::venv_python(
        &root().join("target/py-gguf"),
        &["gguf==0.19.0", "numpy"],
        "gguf, numpy",
    )
}

#[test]
fn gguf_py_reads_and_dequantizes_what_we_write() {
    let Some(py) = python_with_gguf() else {
        return testkit::skip(
            "the gguf Python package (gguf==0.19.0 and numpy from PyPI, python3 with venv) \
             could not be installed",
        );
    };
    let tmp = tempfile::tempdir().unwrap();
    // Hidden 256 so the K-quants and IQ4_XS apply; the bundled example covers the fallbacks.
    let models = [
        testkit::fixture_or_standin("e2b-kq-s0/released-bf16", "trained-e2b/released-bf16"),
        root().join("examples/e2b-tiny"),
    ];
    let types = [
        "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_M", "Q4_K_M",
        "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS",
    ];
    let (mut files, mut tensors) = (0, 0);
    for (mi, model) in models.iter().enumerate() {
        assert!(model.exists(), "{} is missing", model.display());
        for ty in types {
            let out = tmp.path().join(format!("{mi}-{ty}.gguf"));
            let st = g4q!()
                .arg("convert")
                .arg(model)
                .args(["--type", ty, "--out"])
                .arg(&out)
                .status()
                .unwrap();
            assert!(st.success(), "g4q convert --type {ty} failed");
            let dump = tmp.path().join(format!("{mi}-{ty}"));
            std::fs::create_dir_all(&dump).unwrap();
            let res = Command::new(&py)
                .arg("-c")
                .arg(SCRIPT)
                .arg(&out)
                .arg(&dump)
                .output()
                .unwrap();
            assert!(
                res.status.success(),
                "gguf-py failed on {ty}: {}",
                String::from_utf8_lossy(&res.stderr)
            );
            let f = GgufFile::open(&out).unwrap();
            for t in f.tensors() {
                let theirs: Vec<f32> = std::fs::read(dump.join(format!("{}.f32", t.name)))
                    .unwrap()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                let mut ours = vec![0f32; theirs.len()];
                kernels::dequantize_row_ref(t.ty, f.tensor_data(&t.name).unwrap(), &mut ours)
                    .unwrap();
                let same = ours
                    .iter()
                    .zip(&theirs)
                    .all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
                assert!(
                    same,
                    "{ty}: {} ({}) dequantizes differently in gguf-py",
                    t.name, t.ty
                );
                tensors += 1;
            }
            files += 1;
        }
    }
    println!("gguf-py: read {files} files, {tensors} tensors dequantized identically");
}
