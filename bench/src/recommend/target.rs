//! The devices a recommendation is for, and the speeds each one's estimate uses: a bundled
//! profile (modelled from its bandwidth and peak), a `g4q bench --json` file of another machine
//! (its measured speeds), or `this` machine, measured now with the `g4q bench` machinery.

use std::path::Path;

use crate::devices::Device;
use crate::estimate::Speeds;
use crate::formats::{self, Budget, Format, Op};
use crate::report::Report;

/// One device and where its speeds come from.
#[derive(Clone, Debug)]
pub struct Target {
    pub device: Device,
    /// `profile`, `measured` (a bench file) or `measured here`.
    pub source: String,
    /// Measured speeds (a bench file or this machine); `None` for a profile.
    pub measured: Option<Speeds>,
}

impl Target {
    /// The speeds of `types` on this device: measured figures where there are some, the
    /// profile's model (bandwidth and peak at fixed efficiencies) for the types not measured.
    pub fn speeds(&self, types: &[Format]) -> Speeds {
        let mut s = Speeds::from_device(&self.device, types);
        if let Some(m) = &self.measured {
            s.decode_gbs.extend(m.decode_gbs.clone());
            s.prefill_gflops.extend(m.prefill_gflops.clone());
            if m.read_gbs > 0.0 {
                s.read_gbs = m.read_gbs;
            }
        }
        s
    }
}

/// Reads a `--device` value: a bundled profile name, or a `g4q bench --json` file (a value
/// that names an existing file or ends in `.json`). `this` is [`measure_here`]'s.
pub fn open(value: &str) -> Result<Target, String> {
    let path = Path::new(value);
    if value.ends_with(".json") || path.is_file() {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{value}: {e}"))?;
        let r: Report = serde_json::from_str(&text)
            .map_err(|e| format!("{value}: not a g4q bench report: {e}"))?;
        if r.schema != crate::report::SCHEMA {
            return Err(format!(
                "{value}: schema '{}', expected '{}'",
                r.schema,
                crate::report::SCHEMA
            ));
        }
        return Ok(from_report(&r));
    }
    Ok(profile(crate::devices::find(value)?))
}

/// A bundled profile as a target (its speeds modelled from its bandwidth and peak).
pub fn profile(device: Device) -> Target {
    Target {
        device,
        source: "profile".into(),
        measured: None,
    }
}

/// A measured machine: the device its fingerprint describes, with the speeds it measured on
/// its most threads.
pub fn from_report(r: &Report) -> Target {
    let threads = r.results.iter().map(|m| m.threads).max().unwrap_or(1);
    Target {
        device: Device::from_report(r),
        source: "measured".into(),
        measured: Some(Speeds::from_results(
            &r.results,
            threads,
            r.limits.read_bandwidth_gbs,
        )),
    }
}

/// `--device this`: the fingerprint and limits of this machine, and the decode and prefill
/// products of the formats `types` at `cfg`'s MLP shape on the best kernel path and every thread, measured
/// now over a 128 MiB working set (as `g4q bench --quick`).
pub fn measure_here(cfg: &convert::Gemma4Config, types: &[Format]) -> Result<Target, String> {
    let host = crate::host::detect();
    let threads = host.logical_cores.max(1);
    let ws: u64 = 128 << 20;
    let lim = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| e.to_string())?
        .install(|| crate::limits::measure(ws, threads, 3));
    let shape = formats::shapes(cfg)
        .into_iter()
        .find(|s| s.name == "ffn_up")
        .ok_or("the model has no MLP shape to measure")?;
    let budget = Budget {
        working_set_bytes: ws,
        min_round_s: 0.05,
        rounds: 2,
    };
    let path = kernels::simd::best_path();
    let mut results = Vec::new();
    for &format in types {
        if format.matrix_bytes(shape.rows, shape.cols).is_none() {
            continue;
        }
        for op in [Op::Decode, Op::Prefill(128)] {
            results.push(formats::measure(
                format,
                &shape,
                op,
                path,
                threads,
                budget,
                lim.read_bandwidth_gbs,
            )?);
        }
    }
    let report = Report {
        schema: crate::report::SCHEMA.into(),
        g4q_version: env!("CARGO_PKG_VERSION").into(),
        host,
        limits: lim,
        variant: String::new(),
        quick: true,
        results,
        estimate: None,
    };
    let mut t = from_report(&report);
    t.source = "measured here".into();
    Ok(t)
}
