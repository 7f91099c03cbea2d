//! The report as text: a table per device for the terminal, and Markdown for a model card.

use super::choose::Row;
use super::{DeviceResult, Report};

fn gib(b: u64) -> String {
    format!("{:.2}", b as f64 / (1u64 << 30) as f64)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".to_string(), |x| format!("{x:.digits$}"))
}

/// A candidate's status: `pick`, `ok`, or why it was rejected.
fn status(d: &DeviceResult, r: &Row) -> String {
    if d.pick.as_deref() == Some(r.name.as_str()) {
        "**pick**".into()
    } else if r.rejected.is_empty() {
        "ok".into()
    } else {
        r.rejected.join("; ")
    }
}

/// One device's candidates as a Markdown table (also what the terminal shows).
pub fn device_table(d: &DeviceResult) -> String {
    let mut out = String::from(
        "| candidate | MiB | bpw | memory GiB | fits | decode tok/s | prefill tok/s | KLD mean ± se | top-1 | PPL ratio | frontier | status |\n|---|---:|---:|---:|:-:|---:|---:|---:|---:|---:|:-:|---|\n",
    );
    for r in &d.candidates {
        let kld = match (r.kld_mean, r.kld_mean_stderr) {
            (Some(k), Some(s)) => format!("{k:.6} ± {s:.6}"),
            _ => "not measured".into(),
        };
        out.push_str(&format!(
            "| {} | {:.2} | {:.2} | {} | {} | {:.1} | {:.1} | {kld} | {} | {} | {} | {} |\n",
            r.name,
            r.bytes as f64 / (1u64 << 20) as f64,
            r.bits_per_weight,
            gib(r.memory_bytes),
            if r.fits { "yes" } else { "no" },
            r.decode_tokens_per_s,
            r.prefill_tokens_per_s,
            opt(r.top1_agreement, 4),
            opt(r.ppl_ratio, 4),
            if r.frontier { "•" } else { "" },
            status(d, r).replace('|', "/"),
        ));
    }
    out
}

/// The terminal output: per device a heading line, the pick with its reason, and the table.
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    for d in &r.devices {
        out.push_str(&format!(
            "{} ({}; {} GiB, {} GiB usable; speeds: {}) at context {}\n",
            d.name,
            d.display,
            gib(d.memory_bytes),
            gib(d.usable_memory_bytes),
            d.speeds,
            r.ctx
        ));
        out.push_str(&format!(
            "pick: {}. {}\n",
            d.pick.as_deref().unwrap_or("none"),
            d.reason
        ));
        out.push_str(&device_table(d));
        out.push('\n');
    }
    out
}

/// Markdown for a model card: a summary of the picks, then each device's table.
pub fn markdown(r: &Report) -> String {
    summary(r) + &device_tables(r)
}

/// The `## Which file to use` heading and the table of each device's pick.
pub fn summary(r: &Report) -> String {
    let mut out = format!(
        "## Which file to use\n\nAt a context of {} tokens; accuracy: mean KL divergence against the unquantized model ({}).\n\n| device | file | memory GiB | decode tok/s | KLD mean ± se | why |\n|---|---|---:|---:|---:|---|\n",
        r.ctx, r.evidence
    );
    for d in &r.devices {
        let row = d
            .pick
            .as_ref()
            .and_then(|p| d.candidates.iter().find(|c| &c.name == p));
        match row {
            Some(c) => out.push_str(&format!(
                "| {} | {} | {} | {:.1} | {} ± {} | {} |\n",
                d.display,
                c.name,
                gib(c.memory_bytes),
                c.decode_tokens_per_s,
                opt(c.kld_mean, 6),
                opt(c.kld_mean_stderr, 6),
                d.reason.replace('|', "/")
            )),
            None => out.push_str(&format!(
                "| {} | none | – | – | – | {} |\n",
                d.display,
                d.reason.replace('|', "/")
            )),
        }
    }
    out
}

/// Each device's table under a `###` heading.
pub fn device_tables(r: &Report) -> String {
    let mut out = String::new();
    for d in &r.devices {
        out.push_str(&format!("\n### {}\n\n", d.display));
        out.push_str(&device_table(d));
    }
    out
}
