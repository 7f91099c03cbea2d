//! The host fingerprint: which CPU, which ISA features, how many cores, how much cache and
//! memory, which OS. Every measurement is reported beside it, so a result read on another
//! machine says what it was measured on.
//!
//! Linux is read from `/proc/cpuinfo`, `/proc/meminfo` and `/sys/devices/system/cpu`, macOS from
//! `sysctl -a`. The parsers are pure functions of the text, tested on stored samples of each
//! kind of machine (`tests/data/`); [`detect`] only gathers the text.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Cache sizes in bytes as one core sees them (`None`: not reported).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caches {
    pub l1d_bytes: Option<u64>,
    pub l2_bytes: Option<u64>,
    pub l3_bytes: Option<u64>,
}

impl Caches {
    /// The largest (last-level) cache reported.
    pub fn last_level_bytes(&self) -> Option<u64> {
        self.l3_bytes.or(self.l2_bytes).or(self.l1d_bytes)
    }
}

/// What this machine is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Host name (names the JSON results of a machine).
    pub name: String,
    /// `linux`, `macos`, …, with the kernel release when known.
    pub os: String,
    /// `x86_64` or `aarch64`.
    pub arch: String,
    /// `GenuineIntel`, `AuthenticAMD`, `ARM`, `Apple`, …
    pub cpu_vendor: String,
    pub cpu_model: String,
    /// The ISA features that matter to the kernels, in g4q's names (see [`X86_FEATURES`] and
    /// [`ARM_FEATURES`]), sorted.
    pub features: Vec<String>,
    pub physical_cores: usize,
    pub logical_cores: usize,
    pub caches: Caches,
    pub memory_bytes: u64,
}

/// x86 `/proc/cpuinfo` flags and the names g4q reports them under.
pub const X86_FEATURES: [(&str, &str); 12] = [
    ("avx2", "avx2"),
    ("fma", "fma"),
    ("f16c", "f16c"),
    ("avx512f", "avx512f"),
    ("avx512bw", "avx512bw"),
    ("avx512vl", "avx512vl"),
    ("avx512_vnni", "avx512vnni"),
    ("avx512_bf16", "avx512bf16"),
    ("avx_vnni", "avxvnni"),
    ("amx_tile", "amx-tile"),
    ("amx_int8", "amx-int8"),
    ("amx_bf16", "amx-bf16"),
];

/// AArch64 `/proc/cpuinfo` features and the names g4q reports them under.
pub const ARM_FEATURES: [(&str, &str); 7] = [
    ("asimd", "neon"),
    ("asimddp", "dotprod"),
    ("i8mm", "i8mm"),
    ("sve", "sve"),
    ("sve2", "sve2"),
    ("bf16", "bf16"),
    ("asimdhp", "fp16"),
];

/// macOS `hw.optional.*` keys (value 1 = present) and the names g4q reports them under.
const SYSCTL_FEATURES: [(&str, &str); 15] = [
    ("hw.optional.neon", "neon"),
    ("hw.optional.AdvSIMD", "neon"),
    ("hw.optional.arm.FEAT_DotProd", "dotprod"),
    ("hw.optional.arm.FEAT_I8MM", "i8mm"),
    ("hw.optional.arm.FEAT_BF16", "bf16"),
    ("hw.optional.arm.FEAT_FP16", "fp16"),
    ("hw.optional.arm.FEAT_SME", "sme"),
    ("hw.optional.avx2_0", "avx2"),
    ("hw.optional.fma", "fma"),
    ("hw.optional.f16c", "f16c"),
    ("hw.optional.avx512f", "avx512f"),
    ("hw.optional.avx512bw", "avx512bw"),
    ("hw.optional.avx512vl", "avx512vl"),
    ("hw.optional.avx512vnni", "avx512vnni"),
    ("hw.optional.avx512bf16", "avx512bf16"),
];

/// What `/proc/cpuinfo` says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuInfo {
    pub vendor: String,
    pub model: String,
    pub features: Vec<String>,
    pub logical_cores: usize,
    /// Distinct (physical id, core id) pairs; `None` where the file does not list them (ARM).
    pub physical_cores: Option<usize>,
}

/// Names of common Arm cores by (implementer, part) as `/proc/cpuinfo` gives them in hex; the
/// file has no model name on AArch64. Parts from Arm's and Ampere's technical reference manuals
/// (MIDR_EL1 PartNum).
const ARM_PARTS: [(u32, u32, &str, &str); 12] = [
    (0x41, 0xd03, "ARM", "Cortex-A53"),
    (0x41, 0xd08, "ARM", "Cortex-A72"),
    (0x41, 0xd0b, "ARM", "Cortex-A76"),
    (0x41, 0xd0c, "ARM", "Neoverse-N1"),
    (0x41, 0xd40, "ARM", "Neoverse-V1"),
    (0x41, 0xd49, "ARM", "Neoverse-N2"),
    (0x41, 0xd4f, "ARM", "Neoverse-V2"),
    (0x41, 0xd8e, "ARM", "Neoverse-N3"),
    (0x41, 0xd84, "ARM", "Neoverse-V3"),
    (0xc0, 0xac3, "Ampere", "AmpereOne"),
    (0x61, 0x022, "Apple", "M1 (Icestorm)"),
    (0x61, 0x023, "Apple", "M1 (Firestorm)"),
];

fn parse_hex(v: &str) -> Option<u32> {
    u32::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok()
}

/// Parses the text of `/proc/cpuinfo` (x86 or AArch64).
pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut info = CpuInfo::default();
    let mut cores = BTreeSet::new();
    let (mut phys, mut implementer, mut part) = (None::<String>, None, None);
    let mut flags = BTreeSet::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => info.logical_cores += 1,
            "vendor_id" if info.vendor.is_empty() => info.vendor = value.to_string(),
            "model name" if info.model.is_empty() => info.model = value.to_string(),
            "physical id" => phys = Some(value.to_string()),
            "core id" => {
                cores.insert((phys.clone().unwrap_or_default(), value.to_string()));
            }
            "flags" | "Features" if flags.is_empty() => {
                let table: &[(&str, &str)] = if key == "flags" {
                    &X86_FEATURES
                } else {
                    &ARM_FEATURES
                };
                let have: BTreeSet<&str> = value.split_whitespace().collect();
                for (raw, name) in table {
                    if have.contains(raw) {
                        flags.insert(name.to_string());
                    }
                }
            }
            "CPU implementer" if implementer.is_none() => implementer = parse_hex(value),
            "CPU part" if part.is_none() => part = parse_hex(value),
            _ => {}
        }
    }
    if let (Some(imp), Some(p)) = (implementer, part) {
        let known = ARM_PARTS.iter().find(|(i, q, _, _)| *i == imp && *q == p);
        if info.vendor.is_empty() {
            info.vendor = known.map_or(format!("0x{imp:02x}"), |k| k.2.to_string());
        }
        if info.model.is_empty() {
            info.model = known.map_or(format!("part 0x{p:03x}"), |k| k.3.to_string());
        }
    }
    info.features = flags.into_iter().collect();
    info.physical_cores = (!cores.is_empty()).then_some(cores.len());
    info
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => n.checked_mul(1024),
        _ => None,
    }
}

/// A sysfs cache size (`48K`, `2048K`, `32M`, `512`) in bytes.
pub fn parse_cache_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (digits, mult) = match t.chars().last()? {
        'K' | 'k' => (&t[..t.len() - 1], 1024),
        'M' | 'm' => (&t[..t.len() - 1], 1024 * 1024),
        'G' | 'g' => (&t[..t.len() - 1], 1024 * 1024 * 1024),
        _ => (t, 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// The caches of one CPU from its sysfs `cache/index*` entries as (level, type, size) texts.
/// Instruction caches are left out.
pub fn parse_sysfs_caches(entries: &[(String, String, String)]) -> Caches {
    let mut c = Caches::default();
    for (level, kind, size) in entries {
        if kind.trim() == "Instruction" {
            continue;
        }
        let size = parse_cache_size(size);
        match level.trim() {
            "1" => c.l1d_bytes = size,
            "2" => c.l2_bytes = size,
            "3" => c.l3_bytes = size,
            _ => {}
        }
    }
    c
}

/// `key: value` pairs of `sysctl -a` output (also accepts `key = value`).
pub fn parse_sysctl_pairs(text: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let split = line.split_once(": ").or_else(|| line.split_once(" = "));
        if let Some((k, v)) = split {
            map.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    map
}

/// The fingerprint fields `sysctl -a` gives on macOS (name, OS and arch are filled by the
/// caller). Apple silicon reports its performance cluster's L2 as `hw.perflevel0.l2cachesize`
/// and has no L3 in sysctl.
pub fn parse_sysctl(text: &str) -> Host {
    let kv = parse_sysctl_pairs(text);
    let num = |k: &str| kv.get(k).and_then(|v| v.parse::<u64>().ok());
    let model = kv
        .get("machdep.cpu.brand_string")
        .cloned()
        .unwrap_or_default();
    let vendor = kv.get("machdep.cpu.vendor").cloned().unwrap_or_else(|| {
        if model.starts_with("Apple") {
            "Apple".to_string()
        } else {
            String::new()
        }
    });
    let features: BTreeSet<String> = SYSCTL_FEATURES
        .iter()
        .filter(|(k, _)| num(k) == Some(1))
        .map(|(_, n)| n.to_string())
        .collect();
    Host {
        cpu_vendor: vendor,
        cpu_model: model,
        features: features.into_iter().collect(),
        physical_cores: num("hw.physicalcpu").unwrap_or(0) as usize,
        logical_cores: num("hw.logicalcpu").unwrap_or(0) as usize,
        caches: Caches {
            l1d_bytes: num("hw.perflevel0.l1dcachesize").or(num("hw.l1dcachesize")),
            l2_bytes: num("hw.perflevel0.l2cachesize").or(num("hw.l2cachesize")),
            l3_bytes: num("hw.l3cachesize").filter(|v| *v > 0),
        },
        memory_bytes: num("hw.memsize").unwrap_or(0),
        ..Host::default()
    }
}

/// Builds the Linux fingerprint from the texts of its files (pure; [`detect`] reads them).
pub fn linux_host(
    cpuinfo: &str,
    meminfo: &str,
    caches: &[(String, String, String)],
    sysfs_core_ids: &[(String, String)],
) -> Host {
    let info = parse_cpuinfo(cpuinfo);
    // ARM /proc/cpuinfo has no core ids: count distinct (package, core) pairs from sysfs.
    let sysfs_cores: BTreeSet<_> = sysfs_core_ids.iter().collect();
    let physical = info
        .physical_cores
        .or((!sysfs_cores.is_empty()).then_some(sysfs_cores.len()))
        .unwrap_or(info.logical_cores);
    Host {
        cpu_vendor: info.vendor,
        cpu_model: info.model,
        features: info.features,
        physical_cores: physical,
        logical_cores: info.logical_cores,
        caches: parse_sysfs_caches(caches),
        memory_bytes: parse_meminfo(meminfo).unwrap_or(0),
        ..Host::default()
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The fingerprint of this machine. Missing files leave fields empty (never an error: a
/// benchmark should run even where /sys is hidden).
pub fn detect() -> Host {
    let mut host = if cfg!(target_os = "macos") {
        let out = std::process::Command::new("sysctl").arg("-a").output();
        parse_sysctl(
            &out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default(),
        )
    } else {
        let cpu = "/sys/devices/system/cpu";
        let caches: Vec<_> = (0..8)
            .map(|i| format!("{cpu}/cpu0/cache/index{i}"))
            .take_while(|d| std::path::Path::new(d).exists())
            .map(|d| {
                (
                    read(&format!("{d}/level")),
                    read(&format!("{d}/type")),
                    read(&format!("{d}/size")),
                )
            })
            .collect();
        let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
        let ids: Vec<_> = (0..logical.max(1024))
            .map(|i| format!("{cpu}/cpu{i}/topology"))
            .take_while(|d| std::path::Path::new(d).exists())
            .map(|d| {
                (
                    read(&format!("{d}/physical_package_id")),
                    read(&format!("{d}/core_id")),
                )
            })
            .collect();
        linux_host(
            &read("/proc/cpuinfo"),
            &read("/proc/meminfo"),
            &caches,
            &ids,
        )
    };
    if host.logical_cores == 0 {
        host.logical_cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    }
    if host.physical_cores == 0 {
        host.physical_cores = host.logical_cores;
    }
    host.arch = std::env::consts::ARCH.to_string();
    let release = read("/proc/sys/kernel/osrelease");
    host.os = if release.trim().is_empty() {
        std::env::consts::OS.to_string()
    } else {
        format!("{} {}", std::env::consts::OS, release.trim())
    };
    host.name = hostname();
    host
}

/// This machine's host name, or `unknown-host`.
fn hostname() -> String {
    let from_file = read("/proc/sys/kernel/hostname").trim().to_string();
    if !from_file.is_empty() {
        return from_file;
    }
    std::process::Command::new("hostname")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes_parse() {
        assert_eq!(parse_cache_size("48K"), Some(48 * 1024));
        assert_eq!(parse_cache_size("32M\n"), Some(32 << 20));
        assert_eq!(parse_cache_size("512"), Some(512));
        assert_eq!(parse_cache_size("lots"), None);
        assert_eq!(parse_cache_size(""), None);
    }

    #[test]
    fn meminfo_parses() {
        assert_eq!(
            parse_meminfo("MemTotal:       24683664 kB\nMemFree: 1 kB\n"),
            Some(24683664 * 1024)
        );
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
    }
}
