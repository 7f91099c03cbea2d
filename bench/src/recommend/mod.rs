//! `g4q recommend`: which quantization to ship to each device, from measured accuracy, exact
//! sizes and predicted speed.
//!
//! The pieces, each in its own module: the candidates and their exact sizes ([`candidates`];
//! the AWQ int4 and ONNX int4 folders in [`folders`]),
//! accuracy evidence from verify reports or scored here ([`evidence`], [`evaluate`]), the
//! devices and their speeds ([`target`]), each candidate's row and the pick ([`choose`]), the
//! `[recommend]` settings of g4q.toml ([`config`]), and the outputs ([`render`], [`plot`]).
//! This file joins them into the report (`schemas/recommend-report.schema.json`).

pub mod candidates;
pub mod choose;
pub mod config;
pub mod evaluate;
pub mod evidence;
pub mod folders;
pub mod plot;
pub mod render;
pub mod target;

use convert::Gemma4Config;
use serde::{Deserialize, Serialize};

use crate::estimate;
use candidates::Candidate;
use choose::{Constraints, Row};
use evidence::Evidence;
use target::Target;

/// The context length the memory and speeds are for unless one is given (`g4q recommend
/// --ctx`, and the device table of `g4q release`'s model card).
pub const DEFAULT_CTX: usize = 4096;

/// The `schema` value of the reports this version writes.
pub const SCHEMA: &str = "g4q-recommend/1";

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub g4q_version: String,
    /// The checkpoint, release folder or variant plan the candidates come from.
    pub model: String,
    pub ctx: usize,
    pub constraints: Constraints,
    /// `reports`, `evaluated` or `none`.
    pub evidence: String,
    pub devices: Vec<DeviceResult>,
}

/// One device's rows and pick.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceResult {
    /// The profile name (`nvidia-rtx-4090`) or a measured machine's host name.
    pub name: String,
    pub display: String,
    /// `profile`, `measured` (a bench file) or `measured here`.
    pub speeds: String,
    pub memory_bytes: u64,
    /// Memory less the headroom: what a model may use.
    pub usable_memory_bytes: u64,
    /// The chosen candidate's name; `null` when none is acceptable.
    pub pick: Option<String>,
    /// One sentence: why this pick, or why none.
    pub reason: String,
    pub candidates: Vec<Row>,
}

impl Report {
    /// Whether every device has a pick (exit code 0; else 1).
    pub fn all_picked(&self) -> bool {
        self.devices.iter().all(|d| d.pick.is_some())
    }
}

/// The rows, frontier and pick of one device for `cands` (with `evidence` in the same order) at
/// context `ctx`. `headroom` overrides the profile's.
pub fn recommend_for(
    target: &Target,
    cfg: &Gemma4Config,
    cands: &[Candidate],
    evidence: &[Option<Evidence>],
    ctx: usize,
    headroom: Option<f64>,
    constraints: &Constraints,
) -> Result<DeviceResult, String> {
    let usable = target.device.usable_bytes(headroom);
    let mut rows = Vec::with_capacity(cands.len());
    for (c, e) in cands.iter().zip(evidence) {
        let speeds = target.speeds(&estimate::matrix_types(cfg, &c.tensors));
        let est = estimate::estimate(
            c.name.clone(),
            cfg,
            &c.tensors,
            ctx,
            target.device.threads as usize,
            &speeds,
        )?;
        let mut row = Row {
            name: c.name.clone(),
            file: c.file.as_ref().map(|f| f.display().to_string()),
            sha256: c.sha256.clone(),
            bytes: c.bytes(),
            bits_per_weight: c.bits_per_weight(),
            memory_bytes: est.memory_bytes,
            kv_cache_bytes: est.kv_cache_bytes,
            compute_buffer_bytes: est.compute_buffer_bytes,
            fits: est.memory_bytes <= usable,
            decode_tokens_per_s: est.decode_tokens_per_s,
            prefill_tokens_per_s: est.prefill_tokens_per_s,
            kld_mean: None,
            kld_mean_stderr: None,
            top1_agreement: None,
            ppl_ratio: None,
            evidence: None,
            error: c.unscored.clone(),
            rejected: Vec::new(),
            frontier: false,
        };
        row.set_evidence(e.as_ref());
        rows.push(row);
    }
    choose::reject(&mut rows, constraints);
    choose::mark_frontier(&mut rows);
    let picked = choose::pick(&rows);
    let reason = choose::reason(&rows, picked.as_ref(), usable);
    Ok(DeviceResult {
        name: target.device.name.clone(),
        display: target.device.display.clone(),
        speeds: target.source.clone(),
        memory_bytes: target.device.memory_bytes,
        usable_memory_bytes: usable,
        pick: picked.map(|(i, _)| rows[i].name.clone()),
        reason,
        candidates: rows,
    })
}
