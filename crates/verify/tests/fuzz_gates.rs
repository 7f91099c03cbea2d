//! Fuzzing the `g4q.toml` gate reader: arbitrary text and mutated configs never panic, and
//! configs built from a small grammar of tables, keys and values (right and misspelt) are
//! accepted exactly when a model of the rules accepts them, with the thresholds it predicts.
//! Bounded: a fixed number of cases, printed at the end.

use proptest::prelude::*;
use testkit::fuzz::fuzz;
use verify::gates::Thresholds;

const TABLES: &[&str] = &[
    "verify",
    "verify.gates",
    "verfy.gates",
    "Verify.Gates",
    "verify.Gates",
    "other",
    "verify.gates.extra",
];
const KEYS: &[&str] = &["max_kld", "min_top1", "max_ppl_ratio", "max_kdl", "gates"];
const VALUES: &[&str] = &["0.5", "2.0", "-1.0", "\"x\"", "nan", "1e-3", "0", "true"];

type Lines = Vec<(&'static str, &'static str)>;
/// Top-level lines, then `[table]`s with their lines.
type Config_ = (Lines, Vec<(&'static str, Lines)>);

fn lines() -> impl Strategy<Value = Lines> {
    prop::collection::vec(
        (prop::sample::select(KEYS), prop::sample::select(VALUES)),
        0..4,
    )
}

fn config() -> impl Strategy<Value = Config_> {
    (
        prop::collection::vec(
            (prop::sample::select(KEYS), prop::sample::select(VALUES)),
            0..2,
        ),
        prop::collection::vec((prop::sample::select(TABLES), lines()), 0..4),
    )
}

fn render((top, tables): &Config_) -> String {
    let mut text = String::new();
    for (k, v) in top {
        text.push_str(&format!("{k} = {v}\n"));
    }
    for (t, lines) in tables {
        text.push_str(&format!("[{t}]\n"));
        for (k, v) in lines {
            text.push_str(&format!("{k} = {v}\n"));
        }
    }
    text
}

/// What the rules say: `None` for an error, else the thresholds. `[verify.gates]` is the only
/// table with keys, `[verify]` may stand empty, and every threshold must be in range.
fn model((top, tables): &Config_) -> Option<Thresholds> {
    if !top.is_empty() {
        return None;
    }
    let mut seen = Vec::new();
    let mut th = Thresholds::default();
    for (t, lines) in tables {
        if seen.contains(t) {
            return None;
        }
        seen.push(*t);
        match *t {
            "verify" if lines.is_empty() => {}
            "verify.gates" => {
                let mut keys = Vec::new();
                for (k, v) in lines {
                    if keys.contains(k) {
                        return None;
                    }
                    keys.push(*k);
                    let x: f64 = match *v {
                        "\"x\"" | "true" => return None,
                        "nan" => f64::NAN,
                        other => other.parse().unwrap(),
                    };
                    let ok = match *k {
                        "max_kld" => x.is_finite() && x >= 0.0,
                        "min_top1" => (0.0..=1.0).contains(&x),
                        "max_ppl_ratio" => x.is_finite() && x > 0.0,
                        _ => false,
                    };
                    if !ok {
                        return None;
                    }
                    match *k {
                        "max_kld" => th.max_kld = Some(x),
                        "min_top1" => th.min_top1 = Some(x),
                        _ => th.max_ppl_ratio = Some(x),
                    }
                }
            }
            _ => return None,
        }
    }
    Some(th)
}

#[test]
fn grammar_configs_follow_the_rules() {
    fuzz("g4q.toml grammar", 3000, config(), |cfg| {
        let text = render(&cfg);
        let got = Thresholds::from_toml(&text, "g4q.toml");
        match (model(&cfg), &got) {
            (Some(want), Ok(th)) => prop_assert_eq!(want, *th, "{}", text),
            (None, Err(e)) => {
                let msg = e.to_string();
                prop_assert!(msg.starts_with("g4q.toml"), "{}", msg);
                prop_assert!(!msg.contains('\n'), "{}", msg);
            }
            (want, got) => prop_assert!(false, "{text:?}: model {want:?}, reader {got:?}"),
        }
        Ok(())
    });
}

#[test]
fn arbitrary_text_never_panics() {
    fuzz("g4q.toml text", 3000, "\\PC{0,200}", |text| {
        if let Err(e) = Thresholds::from_toml(&text, "g4q.toml") {
            prop_assert!(!e.to_string().contains('\n'));
        }
        Ok(())
    });
}

#[test]
fn mutated_configs_never_panic() {
    let base = "[verify.gates]\nmax_kld = 0.002\nmin_top1 = 0.97\nmax_ppl_ratio = 1.02\n";
    let edits = (0..base.len(), "[\\[\\]=\\.\"a-z_0-9 \n#-]{0,6}", 0usize..4);
    fuzz("g4q.toml mutations", 3000, edits, |(at, insert, cut)| {
        let end = (at + cut).min(base.len());
        let text = format!("{}{insert}{}", &base[..at], &base[end..]);
        if let Ok(th) = Thresholds::from_toml(&text, "g4q.toml") {
            prop_assert!(th.validate("again").is_ok(), "{}", text);
        }
        Ok(())
    });
}
