//! onnxruntime-genai runs our ONNX release folders: every fixture's export carries a
//! `genai_config.json` that parses and names exactly the graph's file, inputs and outputs (the
//! cache names cover precisely the layers that have a cache), and onnxruntime-genai (from PyPI,
//! in a throwaway virtualenv under `target/`) generates 16 greedy tokens from every fixture's
//! f32 export (`trained-e2b` among them) that equal our forward pass's greedy tokens and
//! transformers' `greedy.sequence`.
//! When onnxruntime-genai cannot be installed the generation test says so with a `SKIPPED:`
//! line and passes without checking (a failure under `G4Q_REQUIRE_ORACLES=1`, which `.ci/run`
//! sets when the full oracle set is there).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use convert::onnx::onnx_protobuf::{Message, ModelProto};
use convert::Checkpoint;
use testkit::fixture_dirs;
use verify::{ForwardOptions, Model, NoObserver};

/// Tokens generated.
const NEW_TOKENS: usize = 16;

/// Greedy generation in onnxruntime-genai: folder, prompt ids (JSON), tokens to add; prints the
/// whole sequence as JSON.
const SCRIPT: &str = r#"
import sys, json, onnxruntime_genai as og
folder, ids, n = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
model = og.Model(folder)
params = og.GeneratorParams(model)
params.set_search_options(do_sample=False, num_beams=1, max_length=len(ids) + n)
gen = og.Generator(model, params)
gen.append_tokens(ids)
while not gen.is_done():
    gen.generate_next_token()
print(json.dumps([int(t) for t in gen.get_sequence(0)]))
"#;

/// onnxruntime-genai's tokenizer on a release folder: folder, texts (JSON file); prints the ids
/// of each text as JSON.
const TOKENIZE: &str = r#"
import sys, json, onnxruntime_genai as og
tok = og.Tokenizer(og.Model(sys.argv[1]))
print(json.dumps([[int(i) for i in tok.encode(t)] for t in json.load(open(sys.argv[2]))]))
"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A virtualenv with onnxruntime-genai, built once under target/; `None` when pip cannot
/// install it.
fn python_with_genai() -> Option<PathBuf> {
    testkit::venv_python(
        &root().join("target/py-genai"),
        &["onnxruntime-genai"],
        "onnxruntime_genai",
    )
}

/// `g4q convert MODEL --format onnx --type TY... --out OUT`.
fn export(model: &Path, ty: &[&str], out: &Path) {
    let (model, out) = (testkit::path_str(model), testkit::path_str(out));
    let mut args = vec!["convert", model, "--format", "onnx", "--type"];
    args.extend(ty);
    args.extend(["--out", out]);
    testkit::g4q_ok!(&args);
}

/// The int64 tensor `name` of a fixture's `reference.safetensors`.
fn reference_ids(dir: &Path, name: &str) -> Vec<u32> {
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensor(name)
        .unwrap_or_else(|e| panic!("{}: {name}: {e}", dir.display()))
        .data()
        .chunks_exact(8)
        .map(|c| u32::try_from(i64::from_le_bytes(c.try_into().unwrap())).unwrap())
        .collect()
}

/// Checks `out/genai_config.json` against the graph in `out` and the checkpoint's config;
/// returns how many names and values it compared.
fn check_genai_config(name: &str, model: &Path, out: &Path) -> usize {
    let text = std::fs::read_to_string(out.join("genai_config.json"))
        .unwrap_or_else(|e| panic!("{name}: genai_config.json: {e}"));
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let m = &doc["model"];
    let dec = &m["decoder"];
    let cfg = Checkpoint::open(model).unwrap().config().clone();
    let file = dec["filename"].as_str().unwrap();
    let graph = ModelProto::parse_from_bytes(&std::fs::read(out.join(file)).unwrap()).unwrap();
    let inputs: BTreeSet<String> = graph.graph.input.iter().map(|v| v.name.clone()).collect();
    let outputs: BTreeSet<String> = graph.graph.output.iter().map(|v| v.name.clone()).collect();

    // Every name genai will look for, expanded over its layer count, is exactly the graph's.
    let layers = dec["num_hidden_layers"].as_u64().unwrap() as usize;
    let expand = |side: &serde_json::Value, plain: &[&str], per_layer: &[&str]| {
        let mut names = BTreeSet::new();
        for key in plain {
            names.insert(side[*key].as_str().unwrap().to_string());
        }
        for key in per_layer {
            let pattern = side[*key].as_str().unwrap();
            for l in 0..layers {
                names.insert(pattern.replace("%d", &l.to_string()));
            }
        }
        names
    };
    let want_in = expand(
        &dec["inputs"],
        &["input_ids", "attention_mask", "position_ids"],
        &["past_key_names", "past_value_names"],
    );
    let want_out = expand(
        &dec["outputs"],
        &["logits"],
        &["present_key_names", "present_value_names"],
    );
    assert_eq!(
        want_in, inputs,
        "{name}: genai_config inputs vs the graph's"
    );
    assert_eq!(
        want_out, outputs,
        "{name}: genai_config outputs vs the graph's"
    );
    assert_eq!(
        dec["inputs"].as_object().unwrap().len(),
        5,
        "{name}: unexpected input keys"
    );
    assert_eq!(
        dec["outputs"].as_object().unwrap().len(),
        3,
        "{name}: unexpected output keys"
    );

    let eos: Vec<u64> = match &m["eos_token_id"] {
        serde_json::Value::Array(ids) => ids.iter().map(|v| v.as_u64().unwrap()).collect(),
        v => vec![v.as_u64().unwrap()],
    };
    for id in &cfg.eos_token_ids {
        assert!(eos.contains(&(*id as u64)), "{name}: eos {id} missing");
    }
    let values = [
        (m["type"].clone(), serde_json::json!("gemma4_text")),
        (m["bos_token_id"].clone(), cfg.bos_token_id.into()),
        (m["pad_token_id"].clone(), cfg.pad_token_id.into()),
        (m["vocab_size"].clone(), cfg.vocab_size.into()),
        (
            m["context_length"].clone(),
            cfg.max_position_embeddings.into(),
        ),
        (dec["hidden_size"].clone(), cfg.hidden_size.into()),
        (dec["head_size"].clone(), cfg.head_dim.into()),
        (
            dec["num_attention_heads"].clone(),
            cfg.num_attention_heads.into(),
        ),
        (
            dec["num_key_value_heads"].clone(),
            cfg.num_key_value_heads.into(),
        ),
        (doc["search"]["num_beams"].clone(), 1.into()),
        (
            doc["search"]["past_present_share_buffer"].clone(),
            false.into(),
        ),
    ];
    for (i, (got, want)) in values.iter().enumerate() {
        assert_eq!(got, want, "{name}: genai_config value {i}");
    }
    want_in.len() + want_out.len() + values.len() + eos.len()
}

#[test]
fn every_onnx_export_has_a_genai_config_naming_its_graph() {
    let dirs = fixture_dirs("reference.safetensors");
    assert!(!dirs.is_empty(), "no fixtures with reference.safetensors");
    let tmp = tempfile::tempdir().unwrap();
    let (mut variants, mut checks) = (0, 0);
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let model = dir.join("released-bf16");
        let out = tmp.path().join(&name);
        export(&model, &["f32"], &out);
        let n = check_genai_config(&name, &model, &out);
        println!("onnx genai_config: {name}: {n} names and values match the graph and config");
        checks += n;
        variants += 1;
    }
    println!("onnx genai_config: {variants} fixtures, {checks} checks");
}

/// Our forward pass's greedy continuation of `prompt` by `n` tokens (argmax of the last
/// position, recomputed over the whole sequence each step; ties to the lowest id).
fn our_greedy(ours: &Model, vocab: usize, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut seq = prompt.to_vec();
    for _ in 0..n {
        let fwd = ours
            .forward(
                &seq,
                ForwardOptions::default(),
                &mut NoObserver,
                &mut |_, _| {},
            )
            .unwrap();
        let logits = fwd.logits.as_slice().unwrap();
        let last = &logits[logits.len() - vocab..];
        let best = (0..last.len())
            .max_by(|&a, &b| last[a].total_cmp(&last[b]).then(b.cmp(&a)))
            .unwrap();
        seq.push(best as u32);
    }
    seq
}

/// Runs onnxruntime-genai's greedy search on the release folder `out` for `prompt`.
fn genai_greedy(py: &Path, out: &Path, prompt: &[u32], n: usize) -> Vec<u32> {
    let res = Command::new(py)
        .arg("-c")
        .arg(SCRIPT)
        .arg(out)
        .arg(serde_json::to_string(prompt).unwrap())
        .arg(n.to_string())
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "onnxruntime-genai failed on {}: {}",
        out.display(),
        String::from_utf8_lossy(&res.stderr)
    );
    serde_json::from_slice(&res.stdout).unwrap()
}

/// onnxruntime-genai's tokenizer, reading the release folder's tokenizer files, encodes the
/// fixture's `eval-a.txt`, line by line, to the ids of our tokenizer.
fn tokenize_like_us(py: &Path, fixture: &Path, out: &Path) {
    let text = std::fs::read_to_string(fixture.join("eval-a.txt")).unwrap();
    let texts: Vec<&str> = text.split_inclusive('\n').collect();
    let json = out.with_extension("texts.json");
    std::fs::write(&json, serde_json::to_string(&texts).unwrap()).unwrap();
    let res = Command::new(py)
        .arg("-c")
        .arg(TOKENIZE)
        .arg(out)
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "onnxruntime-genai's tokenizer failed on {}: {}",
        out.display(),
        String::from_utf8_lossy(&res.stderr)
    );
    let genai: Vec<Vec<u32>> = serde_json::from_slice(&res.stdout).unwrap();
    let ours = verify::Tokenizer::from_model_dir(out).unwrap();
    assert_eq!(genai.len(), texts.len());
    // Every line's ids spell the line in our tokenizer's vocabulary; the segmentation is ours
    // on all but a few lines (onnxruntime-extensions' BPE splits `minute` in one long regex
    // line of eval-a.txt as `min|ut|e` where the tokenizers crate, like transformers, merges
    // `min|ute`).
    let (mut tokens, mut differ) = (0, Vec::new());
    for (i, (t, ids)) in texts.iter().zip(&genai).enumerate() {
        assert_eq!(
            ours.decode(ids).unwrap(),
            *t,
            "trained-e2b eval-a.txt line {}: onnxruntime-genai's ids do not spell the line",
            i + 1
        );
        if *ids != ours.encode(t).unwrap() {
            differ.push(i + 1);
        }
        tokens += ids.len();
    }
    assert!(
        differ.len() * 1000 <= texts.len(),
        "onnxruntime-genai's tokenizer differs from ours on lines {differ:?} of eval-a.txt"
    );
    println!(
        "onnx genai: trained-e2b: onnxruntime-genai's tokenizer spells the {} lines of eval-a.txt ({tokens} tokens) and splits them as ours on all but lines {differ:?}",
        texts.len()
    );
}

#[test]
fn onnxruntime_genai_generates_our_greedy_tokens() {
    let Some(py) = python_with_genai() else {
        testkit::skip(
            "onnxruntime-genai could not be installed from PyPI into target/py-genai (pip failed)",
        );
        return;
    };
    let dirs = fixture_dirs("reference.safetensors");
    if !dirs
        .iter()
        .any(|d| d.file_name().is_some_and(|n| n == "trained-e2b"))
    {
        // The bundled compact set leaves out trained-e2b's reference outputs: the other
        // fixtures still run.
        testkit::skip_missing_oracle("trained-e2b/reference.safetensors (its greedy tokens)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut variants = 0;
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let model = dir.join("released-bf16");
        let out = tmp.path().join(&name);
        export(&model, &["f32"], &out);
        let prompt = reference_ids(dir, "greedy.prompt_ids");
        let genai = genai_greedy(&py, &out, &prompt, NEW_TOKENS);
        let ckpt = Checkpoint::open(&model).unwrap();
        let vocab = ckpt.config().vocab_size;
        let ours = our_greedy(&Model::load(&ckpt).unwrap(), vocab, &prompt, NEW_TOKENS);
        let transformers = reference_ids(dir, "greedy.sequence");
        assert_eq!(
            genai.len(),
            prompt.len() + NEW_TOKENS,
            "{name}: genai's sequence length"
        );
        assert_eq!(genai, ours, "{name}: onnxruntime-genai vs our forward pass");
        assert_eq!(
            genai, transformers,
            "{name}: onnxruntime-genai vs transformers"
        );
        println!(
            "onnx genai: {name}: {NEW_TOKENS} greedy tokens after a {}-token prompt equal our forward pass's and transformers': {:?}",
            prompt.len(),
            &genai[prompt.len()..]
        );
        variants += 1;
        if name == "trained-e2b" {
            tokenize_like_us(&py, dir, &out);
            // The int4 release (f32 activations) against our forward pass on its own weights.
            let out = tmp.path().join("trained-e2b-int4");
            let ty = ["int4", "--block-size", "32", "--accuracy-level", "0"];
            export(&model, &ty, &out);
            let genai = genai_greedy(&py, &out, &prompt, NEW_TOKENS);
            let release = verify::onnx_weights::OnnxWeights::open(&out).unwrap();
            let ours = our_greedy(&Model::load(&release).unwrap(), vocab, &prompt, NEW_TOKENS);
            assert_eq!(
                genai, ours,
                "trained-e2b int4: onnxruntime-genai vs our forward pass on the release's weights"
            );
            println!(
                "onnx genai: trained-e2b int4 block 32: {NEW_TOKENS} greedy tokens equal our forward pass's on the same weights: {:?}",
                &genai[prompt.len()..]
            );
            variants += 1;
        }
    }
    println!("onnx genai: {variants} exports generated {NEW_TOKENS} greedy tokens each, all equal");
}

/// A `generation_config.json` with a wrong-typed key: one line naming the file and the key,
/// exit 2, no output folder.
#[test]
fn a_bad_generation_config_fails_the_onnx_export_cleanly() {
    let dirs = fixture_dirs("reference.safetensors");
    let dir = dirs.first().expect("a fixture with reference.safetensors");
    let src = dir.join("released-bf16");
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    let mut copied = 0;
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), model.join(entry.file_name())).unwrap();
        copied += 1;
    }
    std::fs::write(model.join("generation_config.json"), r#"{"top_k": "many"}"#).unwrap();
    let out = tmp.path().join("out");
    let res = Command::new(env!("CARGO_BIN_EXE_g4q"))
        .arg("convert")
        .arg(&model)
        .args(["--format", "onnx", "--type", "f32", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(2), "{err}");
    assert!(
        err.contains("generation_config.json") && err.contains("top_k") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!out.exists(), "an output was left behind");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "temporary files left behind");
    println!("onnx genai: bad generation_config.json ({copied} files copied): exit 2, {err}");
}
