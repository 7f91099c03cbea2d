//! The model card's device table: `g4q recommend` over the release's own model files for every
//! bundled device profile, with the release's verify reports as the evidence (no second
//! evaluation pass), and its SVG plot. Everything comes from the files' bytes, their records and
//! reports, so an unsharded run and a merge of shards write the same table and plot; the `model`
//! of the report is the release name, not a path, for the same reason.

use std::path::{Path, PathBuf};

use ::bench::recommend::{self, candidates, choose::Constraints, evidence, target, Report};
use verify::report::Report as VerifyReport;

use super::finish::Entry;
use super::outputs::Output;
use super::recipe::Header;
use super::state::REPORTS_DIR;

/// The plot's file name in the release.
pub const PLOT: &str = "recommend.svg";

/// The recommendation for the bundled device profiles at [`recommend::DEFAULT_CTX`], with the
/// release's gates as the constraints; `None` when the release has no model file that
/// `recommend` weighs.
pub fn report(out: &Path, header: &Header, entries: &[Entry]) -> anyhow::Result<Option<Report>> {
    // In file-name order, as `g4q recommend` lists a release folder.
    let mut models: Vec<&Entry> = entries
        .iter()
        .filter(|e| matches!(e.output, Output::Gguf(_)))
        .collect();
    models.sort_by(|a, b| a.name.cmp(&b.name));
    if models.is_empty() {
        return Ok(None);
    }
    let files: Vec<PathBuf> = models.iter().map(|e| out.join(&e.name)).collect();
    // The recorded sha256 of each file (what its report's candidate sha256 is too).
    let sha = |p: &Path| -> Result<String, String> {
        models
            .iter()
            .find(|e| Some(e.name.as_ref()) == p.file_name())
            .map(|e| e.built.sha256.clone())
            .ok_or_else(|| format!("{}: not a file of the release", p.display()))
    };
    let (cfg, mut cands) = candidates::from_files(&files, &sha).map_err(anyhow::Error::msg)?;
    for c in &mut cands {
        c.file = c
            .file
            .as_ref()
            .and_then(|f| f.file_name())
            .map(PathBuf::from);
    }
    let reports: Vec<(String, VerifyReport)> = models
        .iter()
        .filter_map(|e| {
            let r = e.report.clone()?;
            Some((format!("{REPORTS_DIR}/{}.json", e.name), r))
        })
        .collect();
    let found = evidence::match_reports(&cands, &reports).map_err(anyhow::Error::msg)?;
    let g = &header.recipe.gates;
    let constraints = Constraints {
        max_kld: g.max_kld,
        max_ppl_ratio: g.max_ppl_ratio,
        min_top1: g.min_top1,
        min_decode_tps: None,
        max_memory: None,
    };
    let ctx = recommend::DEFAULT_CTX;
    let mut devices = Vec::new();
    for d in ::bench::devices::bundled().map_err(anyhow::Error::msg)? {
        devices.push(
            recommend::recommend_for(
                &target::profile(d),
                &cfg,
                &cands,
                &found,
                ctx,
                None,
                &constraints,
            )
            .map_err(anyhow::Error::msg)?,
        );
    }
    Ok(Some(Report {
        schema: recommend::SCHEMA.into(),
        g4q_version: header.version.clone(),
        model: header.recipe.name.clone(),
        ctx,
        constraints,
        evidence: "reports".into(),
        devices,
    }))
}

/// The card's section: `g4q recommend`'s Markdown (the picks, then each device's table) with
/// how it was made, the command that remakes it and the plot between the two.
pub fn section(r: &Report) -> String {
    let mut s = recommend::render::summary(r);
    s.push_str(&format!(
        "\nWhich file suits which machine, as `g4q recommend` weighs them: for each of g4q's \
         bundled device profiles, the memory each file needs at a context of {} tokens \
         (weights, KV cache, compute buffers), whether it fits, and decode and prefill speeds \
         predicted from the profile's bandwidth and peak (a model, not a measurement), with the \
         figures of the reports above; the pick is the most accurate file that fits{} (KLDs within two standard errors \
         are ties, which go to the faster). Remake \
         it (or for your own machine: `--device this`) in the release folder with:\n\n\
         ```sh\ng4q recommend . --reports {REPORTS_DIR} --ctx {}{} --device PROFILE\n```\n\n\
         ![memory at context {} against mean KLD]({PLOT})\n",
        r.ctx,
        if constraint_flags(&r.constraints).is_empty() {
            String::new()
        } else {
            " and passes the release's gates".into()
        },
        r.ctx,
        constraint_flags(&r.constraints),
        r.ctx,
    ));
    s.push_str(&recommend::render::device_tables(r));
    s.push('\n');
    s
}

/// The `g4q recommend` flags of the release's gates.
fn constraint_flags(c: &Constraints) -> String {
    let mut s = String::new();
    if let Some(v) = c.max_kld {
        s.push_str(&format!(" --max-kld {v}"));
    }
    if let Some(v) = c.max_ppl_ratio {
        s.push_str(&format!(" --max-ppl-ratio {v}"));
    }
    if let Some(v) = c.min_top1 {
        s.push_str(&format!(" --min-top1 {v}"));
    }
    s
}
