//! Fuzzing the verify report / `--baseline` reader: a valid report with any field replaced by
//! a hostile JSON value (huge, negative, NaN-like, wrong type, missing), or its text cut and
//! spliced, never panics; whatever is accepted as a baseline has finite, in-range figures that
//! its token count can produce, from `g4q` and the same reference. Bounded: a fixed number of
//! cases, printed at the end.

use proptest::prelude::*;
use serde_json::Value;
use testkit::fuzz::fuzz;
use verify::candidate::InputRecord;
use verify::metrics::{score_position, MetricSums};
use verify::report::{DataRecord, Report};

const REFERENCE_SHA: &str = "1111111111111111111111111111111111111111111111111111111111111111";

/// A report as `g4q verify` writes it, from 60 scored positions of two slightly different
/// models, so its standard errors are the real ones.
fn valid_report() -> Report {
    let mut sums = MetricSums::default();
    let mut s = 7u32;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        (s % 1000) as f32 / 250.0 - 2.0
    };
    for i in 0..60 {
        let r: Vec<f32> = (0..8).map(|_| next()).collect();
        let c: Vec<f32> = r.iter().map(|&v| v + 0.1 * next()).collect();
        sums.add(&score_position(&r, &c, i % 8));
    }
    let input = |path: &str, kind: &str, sha: &str| InputRecord {
        path: path.into(),
        kind: kind.into(),
        sha256: sha.into(),
    };
    Report {
        tool: "g4q".into(),
        version: "0.1.0".into(),
        command: "g4q verify".into(),
        reference: input("ref", "safetensors", REFERENCE_SHA),
        candidate: input("c.gguf", "gguf", &"2".repeat(64)),
        gguf_math: "ggml".into(),
        data: DataRecord {
            input: input("d.txt", "text", &"3".repeat(64)),
            tokens_sha256: "4".repeat(64),
            ctx: 16,
            chunks: 8,
            scored: "second-half".into(),
        },
        metrics: Some(sums.finish()),
        layers: Vec::new(),
        gates: Vec::new(),
        baseline: None,
        seconds: 1.5,
        tokens_per_second: 85.0,
    }
}

/// Paths of every scalar and object in `v`, for replacing one.
fn paths(v: &Value, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Object(m) = v {
        for (k, child) in m {
            let mut p = prefix.clone();
            p.push(k.clone());
            out.push(p.clone());
            paths(child, p, out);
        }
    }
}

fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            1e300, -1e300, -1.0, 0.0, 1.5, 1e-300, 2.0, -0.5, 1e20, 65.0
        ])
        .prop_map(Value::from),
        prop::sample::select(vec![0i64, -1, 1, 1 << 40, i64::MAX, i64::MIN]).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        Just(Value::Null),
        Just(Value::Bool(true)),
        Just(Value::Array(vec![])),
        Just(serde_json::json!({})),
        Just(Value::from("not-g4q")),
        Just(Value::from("a".repeat(64))),
    ]
}

/// What any accepted baseline must satisfy.
fn check_accepted(r: &Report) -> Result<(), TestCaseError> {
    let m = r
        .metrics
        .as_ref()
        .expect("an accepted baseline has metrics");
    prop_assert_eq!(&r.tool, "g4q");
    prop_assert_eq!(&r.reference.sha256, REFERENCE_SHA);
    prop_assert!(m.tokens >= 1 && m.tokens <= r.data.ctx * r.data.chunks);
    for (name, v) in m.figures() {
        prop_assert!(v.is_finite(), "{} {}", name, v);
        if name.ends_with("_stderr") {
            prop_assert!(v >= 0.0, "{} {}", name, v);
            // No standard error can be larger than the spread of a fraction or a bounded
            // log-likelihood difference allows with at least one token.
            if name != "ppl_reference_stderr" && name != "ppl_candidate_stderr" {
                prop_assert!(v <= 100.0 * m.ppl_ratio.max(1.0), "{} {}", name, v);
            }
        }
    }
    prop_assert!((0.0..=1.0).contains(&m.top1_agreement));
    prop_assert!((0.0..=1.0).contains(&m.delta_p_rms));
    Ok(())
}

#[test]
fn the_valid_report_is_a_baseline() {
    let r = valid_report();
    let back = Report::baseline_from_json(&r.to_json(), "base.json", REFERENCE_SHA).unwrap();
    // serde_json parses floats to within an ulp (without its float_roundtrip feature).
    let (back_m, m) = (back.metrics.as_ref().unwrap(), r.metrics.as_ref().unwrap());
    for ((name, a), (_, b)) in back_m.figures().into_iter().zip(m.figures()) {
        assert!((a - b).abs() <= 1e-15 * b.abs(), "{name}: {a} vs {b}");
    }
    assert_eq!(
        (back.data, back.reference),
        (r.data.clone(), r.reference.clone())
    );
    let err = Report::baseline_from_json(&r.to_json(), "base.json", &"9".repeat(64))
        .unwrap_err()
        .to_string();
    assert!(err.contains("another reference model"), "{err}");
    println!("1 valid report accepted, 1 of another model refused");
}

#[test]
fn replaced_fields_never_panic_and_never_pass_bad_figures() {
    let base = serde_json::to_value(valid_report()).unwrap();
    let mut all = Vec::new();
    paths(&base, Vec::new(), &mut all);
    let n = all.len();
    let edit = (0..n, hostile_value(), prop::bool::weighted(0.15));
    fuzz("report field edits", 4000, edit, |(i, value, remove)| {
        let mut v = base.clone();
        let path = &all[i];
        let (last, parents) = path.split_last().unwrap();
        let mut at = &mut v;
        for p in parents {
            at = at.get_mut(p).unwrap();
        }
        let obj = at.as_object_mut().unwrap();
        if remove {
            obj.remove(last);
        } else {
            obj.insert(last.clone(), value);
        }
        let text = serde_json::to_string(&v).unwrap();
        match Report::baseline_from_json(&text, "base.json", REFERENCE_SHA) {
            Ok(r) => check_accepted(&r)?,
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.starts_with("base.json: "), "{}", msg);
                prop_assert!(!msg.contains('\n'), "{}", msg);
            }
        }
        Ok(())
    });
}

#[test]
fn spliced_text_never_panics() {
    let text = valid_report().to_json();
    let len = text.len();
    let edit = (0..len, 0usize..40, "[\\[\\]{}\",:0-9eE.+\\-a-z ]{0,8}");
    fuzz("report text splices", 4000, edit, |(at, cut, insert)| {
        let end = (at + cut).min(len);
        let spliced = format!("{}{insert}{}", &text[..at], &text[end..]);
        if let Ok(r) = Report::baseline_from_json(&spliced, "base.json", REFERENCE_SHA) {
            check_accepted(&r)?;
        }
        Ok(())
    });
}
