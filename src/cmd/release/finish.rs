//! Assembling a release folder whose outputs and reports are all there: the combined report,
//! `release.json`, `SHA256SUMS`, the model card and its device plot, all from the state records and reports (so
//! an unsharded run and a merge of shards write the same bytes), then the gates.

use std::path::Path;

use anyhow::Context;
use convert::output::write_file;
use serde::Serialize;
use serde_json::json;
use verify::gates::GateFailed;
use verify::report::Report;

use super::super::usage;
use super::card;
use super::check::read_report;
use super::devices;
use super::outputs::Output;
use super::recipe::{CardFacts, CheckpointRecord, Header, Recipe};
use super::state::{self, Built};

/// The combined report, beside the per-file ones.
pub const COMBINED_REPORT: &str = "release-verify.json";
pub const RELEASE_JSON: &str = "release.json";
pub const SHA256SUMS: &str = "SHA256SUMS";
pub const MODEL_CARD: &str = "README.md";

/// One output with its record and, for a model, its report.
pub struct Entry {
    pub output: Output,
    pub name: String,
    pub built: Built,
    pub report: Option<Report>,
}

/// One row of `release.json`'s `files`.
#[derive(Serialize)]
struct FileRow<'a> {
    name: &'a str,
    kind: &'a str,
    #[serde(rename = "type")]
    ty: String,
    sha256: &'a str,
    bytes: u64,
    bits_per_weight: Option<f64>,
    kld_mean: Option<f64>,
    kld_mean_stderr: Option<f64>,
    top1_agreement: Option<f64>,
    ppl_ratio: Option<f64>,
    /// Whether every gate of its report passed; absent for the imatrix.
    gates_passed: Option<bool>,
    report: Option<String>,
    /// A folder's files.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    members: &'a [super::recipe::FileHash],
}

/// `release.json`: schemas/release.schema.json.
#[derive(Serialize)]
struct ReleaseJson<'a> {
    tool: &'a str,
    version: &'a str,
    checkpoint: &'a CheckpointRecord,
    options: &'a Recipe,
    model_card: &'a CardFacts,
    files: Vec<FileRow<'a>>,
}

/// Reads every output's record and report from `out`.
pub fn entries(out: &Path, header: &Header, all: &[Output]) -> anyhow::Result<Vec<Entry>> {
    all.iter()
        .map(|o| {
            let name = o.file_name(&header.recipe.name);
            let built = state::read_built(out, &name)
                .ok_or_else(|| usage(format!("{}: no record of {name}", out.display())))?;
            let report = match o.verified() {
                true => Some(
                    read_report(out, &name)
                        .ok_or_else(|| usage(format!("{}: no report of {name}", out.display())))?,
                ),
                false => None,
            };
            Ok(Entry {
                output: o.clone(),
                name,
                built,
                report,
            })
        })
        .collect()
}

/// Writes the combined report, release.json, SHA256SUMS and README.md; then fails (exit 1)
/// when a file failed a gate.
pub fn assemble(
    out: &Path,
    header: &Header,
    all: &[Output],
    print_json: bool,
) -> anyhow::Result<()> {
    let entries = entries(out, header, all)?;
    let combined = json!({
        "tool": header.tool,
        "version": header.version,
        "reports": entries.iter().filter_map(|e| e.report.as_ref()).collect::<Vec<_>>(),
    });
    write(
        &out.join(state::REPORTS_DIR).join(COMBINED_REPORT),
        &(serde_json::to_string_pretty(&combined)? + "\n"),
    )?;
    let advice = devices::report(out, header, &entries)?;
    let plot = match &advice {
        Some(r) => {
            let svg = ::bench::recommend::plot::svg(r);
            write(&out.join(devices::PLOT), &svg)?;
            Some(Plot {
                sha256: verify::candidate::sha256_bytes(svg.as_bytes()),
                bytes: svg.len() as u64,
            })
        }
        None => None,
    };
    let release = release_json(header, &entries, plot.as_ref())?;
    write(&out.join(RELEASE_JSON), &release)?;
    write(&out.join(SHA256SUMS), &sha256sums(&entries, plot.as_ref()))?;
    write(
        &out.join(MODEL_CARD),
        &card::render(header, &entries, advice.as_ref()),
    )?;
    eprintln!(
        "g4q: release: {} is complete ({} files)",
        out.display(),
        entries.len()
    );
    if print_json {
        print!("{release}");
    }
    let failed: Vec<String> = entries
        .iter()
        .filter_map(|e| {
            let r = e.report.as_ref()?;
            let f = GateFailed::check(&r.gates)?;
            Some(
                f.failed
                    .iter()
                    .map(|l| format!("{}: {l}", e.name))
                    .collect::<Vec<_>>(),
            )
        })
        .flatten()
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(GateFailed { failed }.into())
    }
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    write_file(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// The written plot of the device table.
struct Plot {
    sha256: String,
    bytes: u64,
}

fn release_json(header: &Header, entries: &[Entry], plot: Option<&Plot>) -> anyhow::Result<String> {
    let mut files: Vec<FileRow> = entries
        .iter()
        .map(|e| {
            let m = e.report.as_ref().and_then(|r| r.metrics.as_ref());
            FileRow {
                name: &e.name,
                kind: &e.built.kind,
                ty: e.output.type_label(),
                sha256: &e.built.sha256,
                bytes: e.built.bytes,
                bits_per_weight: e.built.bits_per_weight,
                kld_mean: m.map(|m| m.kld_mean),
                kld_mean_stderr: m.map(|m| m.kld_mean_stderr),
                top1_agreement: m.map(|m| m.top1_agreement),
                ppl_ratio: m.map(|m| m.ppl_ratio),
                gates_passed: e.report.as_ref().map(|r| r.gates.iter().all(|g| g.passed)),
                report: e
                    .report
                    .as_ref()
                    .map(|_| format!("{}/{}.json", state::REPORTS_DIR, e.name)),
                members: &e.built.members,
            }
        })
        .collect();
    if let Some(p) = plot {
        files.push(FileRow {
            name: devices::PLOT,
            kind: "plot",
            ty: "SVG plot".into(),
            sha256: &p.sha256,
            bytes: p.bytes,
            bits_per_weight: None,
            kld_mean: None,
            kld_mean_stderr: None,
            top1_agreement: None,
            ppl_ratio: None,
            gates_passed: None,
            report: None,
            members: &[],
        });
    }
    let doc = ReleaseJson {
        tool: &header.tool,
        version: &header.version,
        checkpoint: &header.checkpoint,
        options: &header.recipe,
        model_card: &header.card,
        files,
    };
    Ok(serde_json::to_string_pretty(&doc)? + "\n")
}

/// `sha256sum -c` lines for every released file (a folder's files as `FOLDER/FILE`), the plot
/// last.
fn sha256sums(entries: &[Entry], plot: Option<&Plot>) -> String {
    let mut s = String::new();
    for e in entries {
        if e.built.members.is_empty() {
            s.push_str(&format!("{}  {}\n", e.built.sha256, e.name));
        }
        for m in &e.built.members {
            s.push_str(&format!("{}  {}/{}\n", m.sha256, e.name, m.name));
        }
    }
    if let Some(p) = plot {
        s.push_str(&format!("{}  {}\n", p.sha256, devices::PLOT));
    }
    s
}
