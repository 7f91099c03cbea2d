//! The tokenizer glue against `tokenizer_tests.json` (ids, token strings and decoded text made
//! by the Hugging Face tokenizer), on every fixture tokenizer of that vocabulary size.

use testkit::fixtures_dir;
use verify::Tokenizer;

#[test]
fn tokenizer_matches_reference_cases() {
    let path = fixtures_dir().join("tokenizer_tests.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vocab = doc["vocab_size"].as_u64().unwrap() as usize;
    let cases = doc["cases"].as_array().unwrap();
    let mut checked = 0;
    let mut tokenizers = 0;
    for folder in testkit::reference_fixtures() {
        let file = folder.join("released-bf16/tokenizer.json");
        if !file.is_file() {
            continue;
        }
        let tok = Tokenizer::from_file(&file).unwrap();
        if tok.vocab_size() != vocab {
            continue;
        }
        tokenizers += 1;
        for (name, id) in doc["special_ids"].as_object().unwrap() {
            assert_eq!(
                tok.encode(name).unwrap(),
                vec![id.as_u64().unwrap() as u32],
                "special token {name}"
            );
        }
        for case in cases {
            let s = case["text"].as_str().unwrap();
            let want: Vec<u32> = case["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let ids = tok.encode(s).unwrap();
            assert_eq!(ids, want, "{}: ids of {s:?}", file.display());
            let toks: Vec<String> = case["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            assert_eq!(tok.tokens(s).unwrap(), toks, "tokens of {s:?}");
            assert_eq!(tok.decode(&ids).unwrap(), case["decoded"].as_str().unwrap());
            let with_bos = tok.encode_with_bos(s, 2).unwrap();
            assert_eq!(with_bos[0], 2);
            assert_eq!(&with_bos[1..], &want[..]);
            checked += 1;
        }
    }
    println!("checked {checked} cases over {tokenizers} tokenizers");
    assert!(
        tokenizers > 0,
        "no fixture tokenizer with vocabulary {vocab}"
    );
}
