//! The release's `README.md`: a Hugging Face model card with YAML front matter, the table of
//! files and their verification figures, and the commands that reproduce each file.
//!
//! Between the table and the commands: the device table of `g4q recommend` and its plot
//! ([`super::devices`]), fed by the release's files and reports. The `mmproj` file is one more
//! row of [`render`]'s table, unscored.

use ::bench::recommend::Report;

use super::super::shell_quote;
use super::finish::{Entry, SHA256SUMS};
use super::outputs::Output;
use super::recipe::Header;

/// The card as Markdown; `devices` is the recommendation for the bundled device profiles.
pub fn render(header: &Header, entries: &[Entry], devices: Option<&Report>) -> String {
    let r = &header.recipe;
    let c = &header.card;
    let mut s = String::from("---\n");
    s.push_str(&format!("base_model: {}\n", yaml_scalar(&c.base_model)));
    s.push_str("tags:\n");
    let mut tags = vec!["g4q", "gemma4", "quantized"];
    for f in &r.formats {
        tags.push(match f.as_str() {
            "gguf" => "gguf",
            "awq" => "awq",
            _ => "onnx",
        });
    }
    for t in tags {
        s.push_str(&format!("- {t}\n"));
    }
    s.push_str(&format!("quantized_by: {}\n", yaml_scalar(&r.quantized_by)));
    s.push_str(&format!("pipeline_tag: {}\n", yaml_scalar(&c.pipeline_tag)));
    if let Some(l) = &c.license {
        s.push_str(&format!("license: {}\n", yaml_scalar(l)));
    }
    s.push_str("---\n\n");

    s.push_str(&format!("# {} quantized\n\n", r.name));
    s.push_str(&format!(
        "Quantized releases of `{}` made and verified by g4q {}. Every model file was scored \
         against the f32 reference forward pass of the checkpoint (fingerprint `{}`) on {} \
         ({} tokens per chunk{}, second half of each chunk scored, GGUF products as llama.cpp's \
         CPU backend computes them): mean KL divergence of the next-token distributions with its \
         standard error, top-1 agreement, and the perplexity ratio (file / reference).\n\n",
        c.base_model,
        header.version,
        header.checkpoint.sha256,
        if r.eval.data.kind == "bundled" {
            "g4q's bundled evaluation text".to_string()
        } else {
            format!("`{}`", r.eval.data.path)
        },
        r.eval.ctx,
        r.eval
            .chunks
            .map(|n| format!(", {n} chunks"))
            .unwrap_or_default(),
    ));

    s.push_str("| file | type | size | bits/weight | KLD ± stderr | top-1 | PPL ratio |\n");
    s.push_str("|---|---|---|---|---|---|---|\n");
    for e in entries {
        s.push_str(&table_row(e));
        s.push('\n');
    }
    s.push('\n');
    if let Some(e) = entries.iter().find(|e| e.output == Output::Imatrix) {
        s.push_str(&format!(
            "`{}` is the importance matrix the GGUF files were quantized with (llama.cpp's GGUF \
             imatrix format{}).\n\n",
            e.name,
            match r.imatrix.as_ref().and_then(|i| i.data.as_ref()) {
                Some(d) => format!(
                    ", computed by g4q's reference forward pass over `{}`",
                    d.path
                ),
                None => String::new(),
            }
        ));
    }
    if let Some(e) = entries
        .iter()
        .find(|e| matches!(e.output, Output::Mmproj(_)))
    {
        s.push_str(&format!(
            "`{}` is the vision/audio projector llama.cpp's multimodal tools load beside any of \
             the GGUF files (`llama-mtmd-cli -m FILE.gguf --mmproj {}`, `llama-server --mmproj`); \
             it holds no text model, so it has no KLD: it is the checkpoint's towers as \
             llama.cpp's converter writes them.\n\n",
            e.name, e.name
        ));
    }
    let failed: Vec<&str> = entries
        .iter()
        .filter(|e| {
            e.report
                .as_ref()
                .is_some_and(|r| r.gates.iter().any(|g| !g.passed))
        })
        .map(|e| e.name.as_str())
        .collect();
    if !failed.is_empty() {
        s.push_str(&format!(
            "**Failed a verification gate:** {}. See `reports/`.\n\n",
            failed.join(", ")
        ));
    }
    s.push_str(&format!(
        "Per-file reports are in `reports/` (the schema of `g4q verify --json`), the release \
         record in `release.json`; check the downloads with `sha256sum -c {SHA256SUMS}`.\n\n"
    ));

    if let Some(r) = devices {
        s.push_str(&super::devices::section(r));
        s.push('\n');
    }
    s.push_str("## Reproduce\n\n");
    s.push_str(
        "The whole release (paths as given to the run that made it; run in the release \
         folder):\n\n```sh\n",
    );
    s.push_str(&join(&r.release_argv(".")));
    s.push_str("\n```\n\nEach file on its own:\n\n```sh\n");
    for e in entries {
        if let Some(cmd) = file_command(header, &e.output, &e.name) {
            s.push_str(&cmd);
            s.push('\n');
        }
        if let Some(rep) = &e.report {
            s.push_str(&rep.command);
            s.push('\n');
        }
    }
    s.push_str("```\n");
    s
}

/// One row of the table: file, type, size, bits per weight and the figures of its report.
pub fn table_row(e: &Entry) -> String {
    let bpw = e
        .built
        .bits_per_weight
        .map_or("—".to_string(), |b| format!("{b:.2}"));
    let m = e.report.as_ref().and_then(|r| r.metrics.as_ref());
    let (kld, top1, ppl) = match (m, &e.report) {
        (Some(m), _) => (
            format!("{:.6} ± {:.6}", m.kld_mean, m.kld_mean_stderr),
            format!("{:.2}%", 100.0 * m.top1_agreement),
            format!("{:.4}", m.ppl_ratio),
        ),
        (None, Some(_)) => ("not finite".into(), "—".into(), "—".into()),
        (None, None) if matches!(e.output, Output::Mmproj(_)) => {
            ("not verified (projector)".into(), "—".into(), "—".into())
        }
        (None, None) => ("—".into(), "—".into(), "—".into()),
    };
    format!(
        "| `{}` | {} | {} | {bpw} | {kld} | {top1} | {ppl} |",
        e.name,
        e.output.type_label(),
        size(e.built.bytes)
    )
}

/// Bytes as MiB or GiB with two decimals.
pub fn size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.2} MiB", b / (1u64 << 20) as f64)
    }
}

/// The `g4q` command that makes one output by itself, where one exists (the imatrix of an
/// `--awq` release is computed on the AWQ-scaled weights, which only `g4q release` does).
fn file_command(header: &Header, o: &Output, name: &str) -> Option<String> {
    let r = &header.recipe;
    let mut a: Vec<String> = vec!["g4q".into()];
    let awq = r.awq.as_ref();
    let awq_flags = |a: &mut Vec<String>| {
        if let Some(w) = awq {
            a.extend([
                "--data".into(),
                w.data.path.clone(),
                "--group-size".into(),
                w.group_size.to_string(),
                "--awq-tokens".into(),
                w.awq_tokens.to_string(),
            ]);
        }
    };
    match o {
        Output::Imatrix => {
            let im = r.imatrix.as_ref()?;
            if awq.is_some_and(|w| w.gguf) {
                return None;
            }
            match (&im.file, &im.data) {
                // A given file, rewritten in llama.cpp's GGUF imatrix format.
                (Some(_), _) => return None,
                (None, Some(d)) => {
                    a.extend([
                        "imatrix".into(),
                        r.model.clone(),
                        "--data".into(),
                        d.path.clone(),
                        "--ctx".into(),
                        im.ctx.unwrap_or(512).to_string(),
                    ]);
                    if let Some(c) = im.chunks {
                        a.extend(["--chunks".into(), c.to_string()]);
                    }
                    a.extend(["--out".into(), name.into()]);
                }
                (None, None) => return None,
            }
        }
        Output::Gguf(t) => {
            a.extend([
                "convert".into(),
                r.model.clone(),
                "--type".into(),
                t.name().into(),
            ]);
            if r.imatrix.is_some() {
                a.extend(["--imatrix".into(), super::outputs::IMATRIX_FILE.into()]);
            }
            if awq.is_some_and(|w| w.gguf) {
                a.push("--awq".into());
                awq_flags(&mut a);
            }
            a.extend(["--out".into(), name.into()]);
        }
        Output::Awq { .. } => {
            a.extend([
                "convert".into(),
                r.model.clone(),
                "--format".into(),
                "awq".into(),
            ]);
            awq_flags(&mut a);
            if awq.is_some_and(|w| w.no_clip) {
                a.push("--no-clip".into());
            }
            a.extend(["--out".into(), name.into()]);
        }
        Output::Mmproj(t) => a.extend([
            "convert".into(),
            r.model.clone(),
            "--mmproj".into(),
            "--type".into(),
            super::outputs::mmproj_type_name(*t),
            "--out".into(),
            name.into(),
        ]),
        Output::Onnx(t) => a.extend([
            "convert".into(),
            r.model.clone(),
            "--format".into(),
            "onnx".into(),
            "--type".into(),
            t.name().into(),
            "--out".into(),
            name.into(),
        ]),
    }
    Some(join(&a))
}

fn join(args: &[String]) -> String {
    args.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A YAML scalar: plain when that reads back as the same string, else double-quoted.
fn yaml_scalar(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./+".contains(c))
        && !matches!(v, "true" | "false" | "null" | "yes" | "no" | "on" | "off")
        && v.parse::<f64>().is_err();
    if plain {
        v.to_string()
    } else {
        let escaped: String = v
            .chars()
            .flat_map(|c| match c {
                '"' => vec!['\\', '"'],
                '\\' => vec!['\\', '\\'],
                c if c.is_control() => format!("\\u{:04x}", c as u32).chars().collect(),
                c => vec![c],
            })
            .collect();
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_scalars_read_back() {
        let cases = [
            ("google/gemma-4-e2b", "google/gemma-4-e2b"),
            ("gemma", "gemma"),
            ("yes", "\"yes\""),
            ("1.0", "\"1.0\""),
            ("a: b", "\"a: b\""),
            ("q\"x", "\"q\\\"x\""),
            ("", "\"\""),
        ];
        for (v, want) in cases {
            assert_eq!(yaml_scalar(v), want);
        }
        println!("{} scalars checked", cases.len());
    }
}
