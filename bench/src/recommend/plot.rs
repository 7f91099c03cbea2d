//! `--plot`: an SVG of memory at the context against mean KLD (both on log scales), one point
//! per measured candidate, the frontier of the two (no other candidate smaller and more
//! accurate) as a line, and each device's usable memory as a vertical line. Written by hand:
//! any browser shows it, no renderer needed.

use super::Report;

const W: f64 = 800.0;
const H: f64 = 500.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// Escapes text for XML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Log-scale axis from `lo` to `hi` (padded to whole powers of ten where needed).
struct Axis {
    lo: f64,
    hi: f64,
}

impl Axis {
    fn new(values: impl Iterator<Item = f64>) -> Axis {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
            lo = lo.min(v.log10());
            hi = hi.max(v.log10());
        }
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        Axis {
            lo: (lo - 0.05).floor(),
            hi: (hi + 0.05).ceil().max(lo.floor() + 1.0),
        }
    }

    /// Position of `v` in 0..1.
    fn frac(&self, v: f64) -> f64 {
        (v.max(1e-300).log10() - self.lo) / (self.hi - self.lo)
    }
}

/// The SVG document for `r`: points from the first device's rows (memory and KLD do not depend
/// on the device), lines for every device.
pub fn svg(r: &Report) -> String {
    let rows: Vec<_> = r
        .devices
        .first()
        .map(|d| {
            d.candidates
                .iter()
                .filter(|c| c.kld_mean.is_some())
                .collect()
        })
        .unwrap_or_default();
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let xs = Axis::new(
        rows.iter()
            .map(|c| gib(c.memory_bytes))
            .chain(r.devices.iter().map(|d| gib(d.usable_memory_bytes))),
    );
    let ys = Axis::new(rows.iter().filter_map(|c| c.kld_mean));
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |v: f64| LEFT + pw * xs.frac(v).clamp(0.0, 1.0);
    let y = |v: f64| TOP + ph * (1.0 - ys.frac(v).clamp(0.0, 1.0));
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"11\">\n<title>{}</title>\n<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n",
        esc(&format!("g4q recommend: {} at context {}", r.model, r.ctx))
    );
    // Axes, decade grid lines and labels.
    s.push_str(&format!(
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"black\"/>\n"
    ));
    for e in xs.lo as i32..=xs.hi as i32 {
        let v = 10f64.powi(e);
        let px = x(v);
        s.push_str(&format!(
            "<line x1=\"{px:.1}\" y1=\"{TOP}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\n<text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            TOP + ph,
            TOP + ph + 15.0,
            esc(&format!("{v}"))
        ));
    }
    for e in ys.lo as i32..=ys.hi as i32 {
        let v = 10f64.powi(e);
        let py = y(v);
        s.push_str(&format!(
            "<line x1=\"{LEFT}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"#ddd\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            LEFT + pw,
            LEFT - 5.0,
            py + 4.0,
            esc(&format!("{v:e}"))
        ));
    }
    s.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">memory at context {} (GiB, log)</text>\n<text x=\"15\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 15 {:.1})\">mean KLD (log)</text>\n",
        LEFT + pw / 2.0,
        H - 15.0,
        r.ctx,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    ));
    // Each device's usable memory.
    for (i, d) in r.devices.iter().enumerate() {
        let px = x(gib(d.usable_memory_bytes));
        s.push_str(&format!(
            "<line x1=\"{px:.1}\" y1=\"{TOP}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#c33\" stroke-dasharray=\"4 3\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#c33\">{}</text>\n",
            TOP + ph,
            px + 3.0,
            TOP + 12.0 + 12.0 * i as f64,
            esc(&d.name)
        ));
    }
    // The memory–KLD frontier: sorted by memory, each point more accurate than all before it.
    let mut sorted: Vec<_> = rows.clone();
    sorted.sort_by(|a, b| {
        a.memory_bytes.cmp(&b.memory_bytes).then(
            a.kld_mean
                .partial_cmp(&b.kld_mean)
                .unwrap_or(std::cmp::Ordering::Equal),
        )
    });
    let mut best = f64::INFINITY;
    let mut line = Vec::new();
    for c in &sorted {
        let k = c.kld_mean.unwrap_or(f64::INFINITY);
        if k < best {
            best = k;
            line.push(format!("{:.1},{:.1}", x(gib(c.memory_bytes)), y(k)));
        }
    }
    if line.len() > 1 {
        s.push_str(&format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#36c\" stroke-width=\"1.5\"/>\n",
            line.join(" ")
        ));
    }
    for c in &rows {
        let (px, py) = (x(gib(c.memory_bytes)), y(c.kld_mean.unwrap_or(1.0)));
        s.push_str(&format!(
            "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"3.5\" fill=\"#36c\"><title>{}</title></circle>\n<text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            esc(&format!(
                "{}: {:.2} GiB, KLD {:.6}",
                c.name,
                gib(c.memory_bytes),
                c.kld_mean.unwrap_or(f64::NAN)
            )),
            px + 5.0,
            py - 4.0,
            esc(&c.name)
        ));
    }
    s.push_str("</svg>\n");
    s
}
