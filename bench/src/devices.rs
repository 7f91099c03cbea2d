//! Device profiles: the figures of machines we cannot run on (memory size and bandwidth,
//! cores, ISA, peak int8 / fp16 throughput), bundled from `devices/*.toml`, each figure with its
//! public source in a comment there. A measured `g4q bench --json` report of a machine takes
//! the place of its profile ([`Device::from_report`]).

use serde::{Deserialize, Serialize};

use crate::report::Report;

/// One device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// The profile's file stem (`apple-m2`), or the host name of a measured report.
    pub name: String,
    pub display: String,
    /// `cpu` (including Apple's unified-memory SoCs) or `gpu`.
    pub kind: String,
    pub memory_bytes: u64,
    pub memory_bandwidth_gbs: f64,
    /// CPU cores, or streaming multiprocessors of a GPU.
    pub cores: u32,
    pub threads: u32,
    pub isa: Vec<String>,
    pub peak_int8_tops: f64,
    pub peak_fp16_tflops: f64,
    /// Share of `memory_bytes` kept free for what is not the model (the OS, a GPU runtime's
    /// context, other processes) when `g4q recommend` checks whether a model fits; absent:
    /// [`DEFAULT_HEADROOM`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headroom: Option<f64>,
}

/// The headroom of a device whose profile sets none: a tenth of its memory.
pub const DEFAULT_HEADROOM: f64 = 0.1;

/// The bundled profiles: (file stem, TOML text).
const BUNDLED: [(&str, &str); 15] = [
    (
        "amd-epyc-9654",
        include_str!("../../devices/amd-epyc-9654.toml"),
    ),
    (
        "amd-ryzen-9-7950x",
        include_str!("../../devices/amd-ryzen-9-7950x.toml"),
    ),
    (
        "ampere-altra-q80-30",
        include_str!("../../devices/ampere-altra-q80-30.toml"),
    ),
    ("apple-m2", include_str!("../../devices/apple-m2.toml")),
    (
        "apple-m3-pro",
        include_str!("../../devices/apple-m3-pro.toml"),
    ),
    (
        "apple-m4-max",
        include_str!("../../devices/apple-m4-max.toml"),
    ),
    (
        "aws-graviton4",
        include_str!("../../devices/aws-graviton4.toml"),
    ),
    (
        "intel-core-i9-14900k",
        include_str!("../../devices/intel-core-i9-14900k.toml"),
    ),
    (
        "intel-xeon-platinum-8480plus",
        include_str!("../../devices/intel-xeon-platinum-8480plus.toml"),
    ),
    (
        "nvidia-a100-80gb",
        include_str!("../../devices/nvidia-a100-80gb.toml"),
    ),
    (
        "nvidia-h100-sxm",
        include_str!("../../devices/nvidia-h100-sxm.toml"),
    ),
    (
        "nvidia-h200",
        include_str!("../../devices/nvidia-h200.toml"),
    ),
    ("nvidia-l4", include_str!("../../devices/nvidia-l4.toml")),
    (
        "nvidia-rtx-4090",
        include_str!("../../devices/nvidia-rtx-4090.toml"),
    ),
    (
        "raspberry-pi-5",
        include_str!("../../devices/raspberry-pi-5.toml"),
    ),
];

/// Parses one profile; the error names it.
pub fn parse(name: &str, text: &str) -> Result<Device, String> {
    toml::from_str(text).map_err(|e| {
        format!(
            "devices/{name}.toml: {}",
            e.to_string().lines().next().unwrap_or("")
        )
    })
}

/// Every bundled profile, in file-name order.
pub fn bundled() -> Result<Vec<Device>, String> {
    BUNDLED.iter().map(|(n, t)| parse(n, t)).collect()
}

/// The bundled profile called `name`; the error lists the names.
pub fn find(name: &str) -> Result<Device, String> {
    match BUNDLED.iter().find(|(n, _)| *n == name) {
        Some((n, t)) => parse(n, t),
        None => {
            let names: Vec<&str> = BUNDLED.iter().map(|(n, _)| *n).collect();
            Err(format!(
                "unknown device '{name}' (expected one of {})",
                names.join(", ")
            ))
        }
    }
}

impl Device {
    /// A measured machine as a device: memory and ISA from its fingerprint, the bandwidth it
    /// measured, and the f32 FMA rate it measured on all physical cores standing in for both
    /// peaks (an upper bound the integer kernels do not exceed on CPUs without AMX).
    pub fn from_report(r: &Report) -> Device {
        let flops = r.limits.fma_gflops_per_core * r.host.physical_cores as f64 / 1e3;
        Device {
            name: r.host.name.clone(),
            display: r.host.cpu_model.clone(),
            kind: "cpu".to_string(),
            memory_bytes: r.host.memory_bytes,
            memory_bandwidth_gbs: r.limits.read_bandwidth_gbs,
            cores: r.host.physical_cores as u32,
            threads: r.host.logical_cores as u32,
            isa: r.host.features.clone(),
            peak_int8_tops: flops,
            peak_fp16_tflops: flops,
            headroom: None,
        }
    }

    /// Bytes a model may use on this device: its memory less the headroom (`headroom` when
    /// given, else the profile's, else [`DEFAULT_HEADROOM`]).
    pub fn usable_bytes(&self, headroom: Option<f64>) -> u64 {
        let h = headroom.or(self.headroom).unwrap_or(DEFAULT_HEADROOM);
        (self.memory_bytes as f64 * (1.0 - h)).floor() as u64
    }

    /// Why the figures are implausible, or `None`: sizes and rates inside what any current
    /// device has, and int8 at least as fast as fp16.
    pub fn implausible(&self) -> Option<String> {
        let checks = [
            (
                (1u64 << 30..=8u64 << 40).contains(&self.memory_bytes),
                "memory_bytes outside 1 GiB..8 TiB",
            ),
            (
                (10.0..=10_000.0).contains(&self.memory_bandwidth_gbs),
                "memory_bandwidth_gbs outside 10..10000",
            ),
            (
                self.cores >= 1 && self.threads >= self.cores && self.threads <= 4 * self.cores,
                "threads not in cores..4 × cores",
            ),
            (
                (0.1..=10_000.0).contains(&self.peak_int8_tops),
                "peak_int8_tops outside 0.1..10000",
            ),
            (
                (0.1..=5_000.0).contains(&self.peak_fp16_tflops),
                "peak_fp16_tflops outside 0.1..5000",
            ),
            (
                self.peak_int8_tops >= self.peak_fp16_tflops,
                "int8 slower than fp16",
            ),
            (
                self.headroom.is_none_or(|h| (0.0..1.0).contains(&h)),
                "headroom outside 0..1",
            ),
            (
                self.kind == "cpu" || self.kind == "gpu",
                "kind is neither cpu nor gpu",
            ),
            (
                !self.isa.is_empty() && !self.display.is_empty(),
                "isa or display empty",
            ),
        ];
        checks
            .iter()
            .find(|(ok, _)| !ok)
            .map(|(_, why)| format!("{}: {why}", self.name))
    }
}
