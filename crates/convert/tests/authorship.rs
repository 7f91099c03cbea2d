//! The authorship keys (`general.name` … `general.languages`) of a fixture checkpoint copied under
//! the folder names and model cards of real Hugging Face downloads, converted by g4q, against the
//! keys llama.cpp's `convert_hf_to_gguf.py --outtype bf16` wrote for the same folders and cards
//! (read back with gguf-py's `GGUFReader`; the lists below are that output, in file order).

use std::path::Path;

use convert::gguf::{Array, GgufFile, Value};
use convert::{Checkpoint, ConvertError};
use kernels::GgmlType;

/// The front matter shape of Google's Gemma model cards.
const GEMMA_CARD: &str = "---
license: gemma
library_name: transformers
pipeline_tag: image-text-to-text
extra_gated_heading: Access Gemma on Hugging Face
extra_gated_prompt: >-
  To access Gemma on Hugging Face, you’re required to review and agree to
  Google’s usage license. To do this, please ensure you’re logged in to Hugging
  Face and click below. Requests are processed immediately.
extra_gated_button_content: Acknowledge license
base_model: google/gemma-4-E2B
tags:
- automatic-speech-recognition
- automatic-speech-translation
- audio-text-to-text
- video-text-to-text
language:
- en
---

# Gemma 4 model card

**Model Page**: [Gemma](https://ai.google.dev/gemma/docs)
";

/// A fine-tune's card: several base models (an id, a URL, a mapping), data sets, license name and
/// link, a single tag, the Norway problem.
const FINETUNE_CARD: &str = "---
license: apache-2.0
license_name: gemma-terms
license_link: https://ai.google.dev/gemma/terms
base_model:
- google/gemma-4-31b-it
- https://huggingface.co/google/gemma-4-31b
- name: Custom Base
  organization: Someone
datasets:
- HuggingFaceH4/ultrachat_200k
- https://huggingface.co/datasets/foo/bar
language:
- en
- fr
- no
tags: gemma4
pipeline_tag: text-generation
author: A Person
version: \"1.2\"
---
body
";

/// A folder name, its model card, and the authorship keys llama.cpp wrote for them.
type Case<'a> = (&'a str, Option<&'a str>, Vec<(&'a str, Value)>);

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

fn strings(v: &[&str]) -> Value {
    Value::Array(Array::String(v.iter().map(|x| x.to_string()).collect()))
}

/// Copies the E2B fixture to `<tmp>/<folder>`, with `card` as README.md, and converts it to BF16.
fn convert(tmp: &Path, folder: &str, card: Option<&str>) -> convert::Result<GgufFile> {
    let src = testkit::fixtures_dir().join("e2b-s0/released-bf16");
    let dir = tmp.join(folder);
    testkit::copy_checkpoint_to(&src, &dir);
    if let Some(card) = card {
        std::fs::write(dir.join("README.md"), card).unwrap();
    }
    let out = tmp.join(format!("{folder}.gguf"));
    let ckpt = Checkpoint::open(&dir)?;
    convert::llama::write_unquantized(&ckpt, &out, GgmlType::BF16)?;
    GgufFile::open(&out)
}

/// The `general.*` keys after the sampling defaults and before `general.file_type`.
fn authorship(f: &GgufFile) -> Vec<(String, Value)> {
    f.metadata()
        .iter()
        .filter(|(k, _)| {
            k.starts_with("general.")
                && !k.starts_with("general.sampling.")
                && !matches!(
                    *k,
                    "general.architecture"
                        | "general.type"
                        | "general.file_type"
                        | "general.quantization_version"
                )
        })
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[test]
fn authorship_keys_match_llamacpp() {
    let e2b_base = [
        ("general.base_model.count", Value::U32(1)),
        ("general.base_model.0.name", s("Gemma 4 E2B")),
        ("general.base_model.0.organization", s("Google")),
        (
            "general.base_model.0.repo_url",
            s("https://huggingface.co/google/gemma-4-E2B"),
        ),
    ];
    let gemma_tags = strings(&[
        "automatic-speech-recognition",
        "automatic-speech-translation",
        "audio-text-to-text",
        "video-text-to-text",
        "image-text-to-text",
    ]);
    let mut cases: Vec<Case> = vec![
        (
            "gemma-4-31b-it",
            Some(GEMMA_CARD),
            [
                vec![
                    ("general.name", s("Gemma 4 31b It")),
                    ("general.finetune", s("31b-it")),
                    ("general.basename", s("gemma-4")),
                    ("general.size_label", s("1.1M")),
                    ("general.license", s("gemma")),
                ],
                e2b_base.to_vec(),
                vec![
                    ("general.tags", gemma_tags.clone()),
                    ("general.languages", strings(&["en"])),
                ],
            ]
            .concat(),
        ),
        (
            "gemma-4-E2B-it",
            Some(GEMMA_CARD),
            [
                vec![
                    ("general.name", s("Gemma 4 E2B It")),
                    ("general.size_label", s("1.1M")),
                    ("general.license", s("gemma")),
                ],
                e2b_base.to_vec(),
                vec![
                    ("general.tags", gemma_tags),
                    ("general.languages", strings(&["en"])),
                ],
            ]
            .concat(),
        ),
        (
            "e2b-4",
            None,
            vec![
                ("general.name", s("E2B 4")),
                ("general.version", s("4")),
                ("general.basename", s("e2b")),
                ("general.size_label", s("1.1M")),
            ],
        ),
        (
            "gemma-4-E2B-it-plain",
            None,
            vec![
                ("general.name", s("Gemma 4 E2B It Plain")),
                ("general.size_label", s("1.1M")),
            ],
        ),
        (
            "Gemma-4-26B-A4B",
            Some(FINETUNE_CARD),
            vec![
                ("general.name", s("Gemma 4 26B A4B")),
                ("general.author", s("A Person")),
                ("general.version", s("1.2")),
                ("general.finetune", s("26b")),
                ("general.basename", s("Gemma-4")),
                ("general.size_label", s("A4B")),
                ("general.license", s("apache-2.0")),
                ("general.license.name", s("gemma-terms")),
                (
                    "general.license.link",
                    s("https://ai.google.dev/gemma/terms"),
                ),
                ("general.base_model.count", Value::U32(3)),
                ("general.base_model.0.name", s("Gemma 4 31b It")),
                ("general.base_model.0.organization", s("Google")),
                (
                    "general.base_model.0.repo_url",
                    s("https://huggingface.co/google/gemma-4-31b-it"),
                ),
                ("general.base_model.1.name", s("Gemma 4 31b")),
                ("general.base_model.1.organization", s("Google")),
                (
                    "general.base_model.1.repo_url",
                    s("https://huggingface.co/google/gemma-4-31b"),
                ),
                ("general.base_model.2.name", s("Custom Base")),
                ("general.base_model.2.organization", s("Someone")),
                ("general.dataset.count", Value::U32(2)),
                ("general.dataset.0.name", s("Ultrachat_200K")),
                ("general.dataset.0.organization", s("HuggingFaceH4")),
                (
                    "general.dataset.0.repo_url",
                    s("https://huggingface.co/HuggingFaceH4/ultrachat_200k"),
                ),
                (
                    "general.dataset.1.repo_url",
                    s("https://huggingface.co/datasets/foo/bar"),
                ),
                ("general.tags", strings(&["gemma4", "text-generation"])),
                ("general.languages", strings(&["en", "fr", "no"])),
            ],
        ),
        (
            // Front matter that is a list, not a mapping: llama.cpp logs it and ignores the card.
            "list-model-v2",
            Some("---\n- just\n- a list\n---\n"),
            vec![
                ("general.name", s("List Model v2")),
                ("general.version", s("v2")),
                ("general.basename", s("list-model")),
                ("general.size_label", s("1.1M")),
            ],
        ),
        (
            // The fixtures' own folder name yields only the name.
            "released-bf16",
            Some("# no front matter\n"),
            vec![
                ("general.name", s("Released Bf16")),
                ("general.size_label", s("1.1M")),
            ],
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let n = cases.len();
    for (folder, card, want) in cases.drain(..) {
        let f = convert(tmp.path(), folder, card).unwrap_or_else(|e| panic!("{folder}: {e}"));
        let got = authorship(&f);
        let want: Vec<(String, Value)> =
            want.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(got, want, "{folder}");
    }
    println!("{n} folders checked against llama.cpp's keys");
}

/// `config.json`'s `_name_or_path`, when it reads as a hub id, comes before the folder name.
#[test]
fn name_or_path_comes_before_the_folder_name() {
    let tmp = tempfile::tempdir().unwrap();
    let src = testkit::fixtures_dir().join("e2b-s0/released-bf16");
    let dir = tmp.path().join("my-checkpoint");
    testkit::copy_checkpoint_to(&src, &dir);
    let config_path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["_name_or_path"] = "google/gemma-4-26b-a4b-it".into();
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let out = tmp.path().join("out.gguf");
    let ckpt = Checkpoint::open(&dir).unwrap();
    convert::llama::write_unquantized(&ckpt, &out, GgmlType::BF16).unwrap();
    let got = authorship(&GgufFile::open(&out).unwrap());
    let want: Vec<(String, Value)> = vec![
        ("general.name", s("Gemma 4 26b A4B It")),
        ("general.organization", s("Google")),
        ("general.finetune", s("26b-it")),
        ("general.basename", s("gemma-4")),
        ("general.size_label", s("a4B")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(got, want);
    println!("1 config _name_or_path checked against llama.cpp's keys");
}

/// The projector file goes through the same derivation (llama.cpp's `--mmproj` run on the same
/// folder and card); only the size label differs, counted over the projector's tensors.
#[test]
fn mmproj_authorship_keys_match_llamacpp() {
    let tmp = tempfile::tempdir().unwrap();
    let src = testkit::fixtures_dir().join("e2b-s0/released-bf16");
    let dir = tmp.path().join("gemma-4-31b-it");
    testkit::copy_checkpoint_to(&src, &dir);
    std::fs::write(dir.join("README.md"), GEMMA_CARD).unwrap();
    let out = tmp.path().join("mmproj.gguf");
    let ckpt = Checkpoint::open(&dir).unwrap();
    convert::mmproj::write(&ckpt, &out, convert::mmproj::OutType::BF16).unwrap();
    let got = authorship(&GgufFile::open(&out).unwrap());
    let want: Vec<(String, Value)> = vec![
        ("general.name", s("Gemma 4 31b It")),
        ("general.finetune", s("31b-it")),
        ("general.basename", s("gemma-4")),
        ("general.size_label", s("78K")),
        ("general.license", s("gemma")),
        ("general.base_model.count", Value::U32(1)),
        ("general.base_model.0.name", s("Gemma 4 E2B")),
        ("general.base_model.0.organization", s("Google")),
        (
            "general.base_model.0.repo_url",
            s("https://huggingface.co/google/gemma-4-E2B"),
        ),
        (
            "general.tags",
            strings(&[
                "automatic-speech-recognition",
                "automatic-speech-translation",
                "audio-text-to-text",
                "video-text-to-text",
                "image-text-to-text",
            ]),
        ),
        ("general.languages", strings(&["en"])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(got, want);
    println!("1 projector file checked against llama.cpp's keys");
}

/// llama.cpp stops on a card it cannot read (invalid YAML, a version that is not a string); g4q
/// refuses those with one line naming the card and writes nothing, and so it does for a tag it
/// cannot write as a string, for YAML aliases (which the loader would expand without bound) and
/// for nesting deeper than the parser's limit.
#[test]
fn unreadable_model_card_is_an_error_naming_it() {
    let cards = [
        (
            "bad-yaml-7b",
            "---\nlicense: [unterminated\n---\n",
            "not valid YAML",
        ),
        ("bad-version", "---\nversion: 1.2\n---\n", "general.version"),
        ("bad-tags", "---\ntags:\n- 3\n---\n", "general.tags"),
        (
            "aliases",
            "---\na: &a [x, x, x]\nb: [*a, *a, *a]\n---\n",
            "aliases",
        ),
        (
            "deep",
            &format!(
                "---\na: {}{}\n---\n",
                "[".repeat(100_000),
                "]".repeat(100_000)
            ),
            "not valid YAML",
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (folder, card, needle) in cards {
        let err = match convert(tmp.path(), folder, Some(card)) {
            Err(e @ ConvertError::Format { .. }) => e.to_string(),
            Err(e) => panic!("{folder}: unexpected error {e}"),
            Ok(_) => panic!("{folder}: converted despite the card"),
        };
        assert!(err.contains("README.md"), "{folder}: {err}");
        assert!(err.contains(needle), "{folder}: {err}");
        assert!(!err.contains('\n'), "{folder}: {err}");
        assert!(
            !tmp.path().join(format!("{folder}.gguf")).exists(),
            "{folder}"
        );
    }
    println!("{} bad cards refused", cards.len());
}
