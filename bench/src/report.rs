//! The results file of `g4q bench --json` (schema: `schemas/bench-report.schema.json`) and
//! `--merge`, which puts the files of many machines side by side in one Markdown table.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::estimate::Estimate;
use crate::formats::{Format, Measurement};
use crate::host::Host;
use crate::limits::Limits;

/// The `schema` value of the files this version writes.
pub const SCHEMA: &str = "g4q-bench/1";

/// One machine's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub g4q_version: String,
    pub host: Host,
    pub limits: Limits,
    /// The variant whose shapes were measured (`e2b`, …).
    pub variant: String,
    pub quick: bool,
    pub results: Vec<Measurement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
}

impl Report {
    /// A short column title for this machine: its host name and CPU model.
    pub fn machine(&self) -> String {
        format!("{} ({})", self.host.name, self.host.cpu_model)
    }

    /// The figure a merged table shows for `ty`: the fastest decode (weight GB/s, and its
    /// share of bandwidth) on the most threads measured, over the shapes and paths of the file.
    pub fn decode_summary(&self, ty: &str) -> Option<(f64, f64)> {
        let decode = || {
            self.results
                .iter()
                .filter(|m| m.op == "decode" && m.ty == ty)
        };
        let most = decode().map(|m| m.threads).max()?;
        decode()
            .filter(|m| m.threads == most)
            .map(|m| (m.weight_gbs, m.percent_of_bandwidth))
            .fold(None, |best: Option<(f64, f64)>, cur| match best {
                Some(b) if b.0 >= cur.0 => Some(b),
                _ => Some(cur),
            })
    }
}

/// Reads every `*.json` in `dir` (sorted by file name) as a [`Report`]. The error names the
/// first file that is not one.
pub fn read_dir(dir: &Path) -> Result<Vec<(String, Report)>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{}: no *.json bench results", dir.display()));
    }
    files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let report: Report = serde_json::from_str(&text)
                .map_err(|e| format!("{}: not a g4q bench report: {e}", p.display()))?;
            if report.schema != SCHEMA {
                return Err(format!(
                    "{}: schema '{}', expected '{SCHEMA}'",
                    p.display(),
                    report.schema
                ));
            }
            let name = p
                .file_stem()
                .map_or(String::new(), |s| s.to_string_lossy().into_owned());
            Ok((name, report))
        })
        .collect()
}

/// One Markdown table: a row per format (known formats in g4q's order, then any other name),
/// a column per report, titled by its machine (and its file name, when two files come from the
/// same machine); each cell the machine's fastest all-thread decode in weight GB/s with its
/// share of that machine's measured bandwidth, `–` where not measured.
pub fn merge_markdown(files: &[(String, Report)]) -> String {
    let reports: Vec<&Report> = files.iter().map(|(_, r)| r).collect();
    let mut order: BTreeMap<(usize, String), ()> = BTreeMap::new();
    let known: Vec<String> = Format::all().iter().map(|f| f.to_string()).collect();
    for r in &reports {
        for m in &r.results {
            let rank = known.iter().position(|k| *k == m.ty).unwrap_or(known.len());
            order.insert((rank, m.ty.clone()), ());
        }
    }
    let mut out = String::from("| format |");
    for (stem, r) in files {
        let twin = reports
            .iter()
            .filter(|o| o.machine() == r.machine())
            .count()
            > 1;
        let title = if twin {
            format!("{} [{stem}]", r.machine())
        } else {
            r.machine()
        };
        out.push_str(&format!(" {} |", title.replace('|', "/")));
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(reports.len()));
    out.push('\n');
    for (_, ty) in order.keys() {
        out.push_str(&format!("| {ty} |"));
        for r in &reports {
            match r.decode_summary(ty) {
                Some((gbs, pct)) => out.push_str(&format!(" {gbs:.1} GB/s ({pct:.0}%) |")),
                None => out.push_str(" – |"),
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(host: &str, gbs: f64) -> Report {
        let m = Measurement {
            ty: "Q4_K".into(),
            op: "decode".into(),
            shape: "ffn_up".into(),
            rows: 1,
            cols: 256,
            path: "avx2".into(),
            threads: 2,
            working_set_bytes: 1,
            matrix_bytes: 1,
            time_s: 1.0,
            weight_gbs: gbs,
            percent_of_bandwidth: 50.0,
            gflops: 1.0,
        };
        Report {
            schema: SCHEMA.into(),
            g4q_version: "0".into(),
            host: Host {
                name: host.into(),
                cpu_model: "X".into(),
                ..Host::default()
            },
            limits: Limits::default(),
            variant: "e2b".into(),
            quick: true,
            results: vec![m],
            estimate: None,
        }
    }

    #[test]
    fn files_of_one_machine_are_told_apart_by_name() {
        let files = vec![
            ("monday".to_string(), report("m", 1.0)),
            ("tuesday".to_string(), report("m", 2.0)),
            ("other".to_string(), report("n", 3.0)),
        ];
        let table = merge_markdown(&files);
        assert_eq!(
            table.lines().next().unwrap(),
            "| format | m (X) [monday] | m (X) [tuesday] | n (X) |"
        );
        assert_eq!(
            table.lines().nth(2).unwrap(),
            "| Q4_K | 1.0 GB/s (50%) | 2.0 GB/s (50%) | 3.0 GB/s (50%) |"
        );
        println!("checked 2 table lines");
    }
}
