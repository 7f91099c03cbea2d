//! Importance matrices that llama.cpp would refuse (defect 12) and GGUF inputs `quantize` must
//! refuse (defect 15), generated here. Each is an error naming the file and the tensor or key:
//! an F16 `in_sum2` read as F32 bytes used to be dropped silently while the output's metadata
//! recorded the imatrix as used.

use std::path::{Path, PathBuf};

use convert::gguf::{GgufFile, GgufWriter, Metadata, TensorInfo, Value};
use kernels::GgmlType;
use quantize::Imatrix;

/// One part of a generated imatrix: tensor name, type, ggml dims, f32 values.
struct Part {
    name: &'static str,
    ty: GgmlType,
    dims: Vec<u64>,
}

fn part(name: &'static str, ty: GgmlType, dims: &[u64]) -> Part {
    Part {
        name,
        ty,
        dims: dims.to_vec(),
    }
}

/// Writes an imatrix GGUF of `parts` (data: ones of each type's width) with `md` plus
/// `general.type = imatrix`.
fn write_imatrix(
    dir: &Path,
    file: &str,
    parts: &[Part],
    edit: impl FnOnce(&mut Metadata),
) -> PathBuf {
    let mut md = Metadata::new();
    md.set("general.type", Value::String("imatrix".into()));
    edit(&mut md);
    let infos: Vec<TensorInfo> = parts
        .iter()
        .map(|p| TensorInfo {
            name: p.name.into(),
            dims: p.dims.clone(),
            ty: p.ty,
            offset: 0,
        })
        .collect();
    let path = dir.join(file);
    let mut w = GgufWriter::create(&path, &md, infos.clone()).unwrap();
    for t in &infos {
        let n = t.checked_numel().unwrap() as usize;
        let bytes: Vec<u8> = match t.ty {
            GgmlType::F32 => 1f32.to_le_bytes().repeat(n),
            GgmlType::F16 => 0x3c00u16.to_le_bytes().repeat(n),
            GgmlType::BF16 => 0x3f80u16.to_le_bytes().repeat(n),
            other => panic!("no generator for {other}"),
        };
        w.write_tensor(&t.name, &bytes).unwrap();
    }
    w.finish().unwrap();
    path
}

fn read_err(path: &Path, needles: &[&str]) {
    let msg = match Imatrix::read(path) {
        Ok(im) => panic!(
            "{}: accepted with {} entries",
            path.display(),
            im.entries.len()
        ),
        Err(e) => e.to_string(),
    };
    assert!(!msg.contains('\n') && msg.len() < 1200, "{msg}");
    let file = path.file_name().unwrap().to_str().unwrap();
    for n in std::iter::once(&file).chain(needles) {
        assert!(msg.contains(n), "lacks '{n}': {msg}");
    }
}

const SUM2: &str = "blk.0.ffn_up.weight.in_sum2";
const COUNTS: &str = "blk.0.ffn_up.weight.counts";
const SUM: &str = "blk.0.ffn_up.weight.in_sum";

#[test]
fn llama_cpp_layout_reads() {
    let tmp = tempfile::tempdir().unwrap();
    use GgmlType::F32;
    let path = write_imatrix(
        tmp.path(),
        "good.gguf",
        &[
            part(SUM2, F32, &[64, 2]),
            part(COUNTS, F32, &[1, 2]),
            part(SUM, F32, &[64, 2]),
        ],
        |md| md.set("imatrix.chunk_count", Value::U32(3)),
    );
    let im = Imatrix::read(&path).unwrap();
    let e = &im.entries["blk.0.ffn_up.weight"];
    assert_eq!((e.n_cols, e.sums.len(), e.counts.len()), (64, 128, 2));
    assert_eq!(im.chunk_count, 3);
}

#[test]
fn types_llama_cpp_does_not_write_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    use GgmlType::{BF16, F16, F32};
    let cases: Vec<(Vec<Part>, &[&str])> = vec![
        (
            vec![part(SUM2, F16, &[64]), part(COUNTS, F32, &[1])],
            &[SUM2, "is f16", "f32 values only"],
        ),
        (
            vec![part(SUM2, BF16, &[64]), part(COUNTS, F32, &[1])],
            &[SUM2, "is bf16"],
        ),
        (
            vec![part(SUM2, F32, &[64]), part(COUNTS, F16, &[1])],
            &[COUNTS, "is f16"],
        ),
        (
            vec![
                part(SUM2, F32, &[64]),
                part(COUNTS, F32, &[1]),
                part(SUM, F16, &[64]),
            ],
            &[SUM, "is f16"],
        ),
        (
            vec![part(SUM2, F32, &[64])],
            &["blk.0.ffn_up.weight", COUNTS],
        ),
        (
            vec![part(COUNTS, F32, &[1])],
            &["blk.0.ffn_up.weight", SUM2],
        ),
        (
            vec![part(SUM2, F32, &[64, 4]), part(COUNTS, F32, &[1, 3])],
            &[COUNTS, "4 counts"],
        ),
        (
            vec![
                part(SUM2, F32, &[64]),
                part(COUNTS, F32, &[1]),
                part(SUM, F32, &[32]),
            ],
            &[SUM, "64 values"],
        ),
    ];
    for (i, (parts, needles)) in cases.iter().enumerate() {
        let path = write_imatrix(tmp.path(), &format!("case{i}.gguf"), parts, |_| {});
        read_err(&path, needles);
    }
    // Keys of the wrong type or out of range.
    let ok_parts = || vec![part(SUM2, F32, &[64]), part(COUNTS, F32, &[1])];
    let path = write_imatrix(tmp.path(), "chunks.gguf", &ok_parts(), |md| {
        md.set("imatrix.chunk_count", Value::U64(1 << 40))
    });
    read_err(&path, &["imatrix.chunk_count"]);
    let path = write_imatrix(tmp.path(), "datasets.gguf", &ok_parts(), |md| {
        md.set("imatrix.datasets", Value::String("calib.txt".into()))
    });
    read_err(&path, &["imatrix.datasets", "STRING"]);
    // A legacy .dat entry with no values.
    let mut dat = 1i32.to_le_bytes().to_vec();
    dat.extend(3i32.to_le_bytes());
    dat.extend(b"abc");
    dat.extend(1i32.to_le_bytes());
    dat.extend(0i32.to_le_bytes());
    dat.extend([0u8; 16]);
    let path = tmp.path().join("empty.dat");
    std::fs::write(&path, dat).unwrap();
    read_err(&path, &["'abc'", "no values"]);
    println!("checked {} hostile imatrix files", cases.len() + 3);
}

/// Defect 15: a GGUF of another architecture, or with no tensors, is not quantized.
#[test]
fn quantize_refuses_other_architectures_and_empty_files() {
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (arch, tensors) in [("llama", true), ("gemma4", false), ("", true)] {
        let mut md = Metadata::new();
        if !arch.is_empty() {
            md.set("general.architecture", Value::String(arch.into()));
        }
        md.set(format!("{arch}.block_count"), Value::U32(1));
        let infos = if tensors {
            vec![TensorInfo::from_torch_shape(
                "blk.0.ffn_up.weight",
                &[32, 256],
                GgmlType::F32,
            )]
        } else {
            Vec::new()
        };
        let path = tmp.path().join(format!("in-{arch}-{tensors}.gguf"));
        let mut w = GgufWriter::create(&path, &md, infos.clone()).unwrap();
        for t in &infos {
            w.write_tensor(&t.name, &vec![0u8; t.n_bytes() as usize])
                .unwrap();
        }
        w.finish().unwrap();
        let f = GgufFile::open(&path).unwrap();
        let msg = quantize::requantize::model_facts(&f)
            .unwrap_err()
            .to_string();
        let file = path.file_name().unwrap().to_str().unwrap();
        assert!(msg.contains(file), "{msg}");
        let needle = if tensors {
            "is not gemma4"
        } else {
            "no tensors"
        };
        assert!(msg.contains(needle), "{msg}");
        checked += 1;
    }
    println!("checked {checked} GGUF inputs quantize must refuse");
}
