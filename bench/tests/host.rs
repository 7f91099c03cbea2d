//! The fingerprint parsers on stored samples of each kind of machine (`tests/data/`).

use bench::host::{linux_host, parse_cpuinfo, parse_sysctl};

fn sample(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn caches(l1: &str, l2: &str, l3: Option<&str>) -> Vec<(String, String, String)> {
    let mut v = vec![
        ("1".into(), "Data\n".into(), format!("{l1}\n")),
        ("1".into(), "Instruction\n".into(), "64K\n".into()),
        ("2".into(), "Unified\n".into(), format!("{l2}\n")),
    ];
    if let Some(l3) = l3 {
        v.push(("3".into(), "Unified\n".into(), format!("{l3}\n")));
    }
    v
}

#[test]
fn intel_sapphire_rapids() {
    let h = linux_host(
        &sample("intel-xeon-8480.cpuinfo"),
        "MemTotal:       1056440348 kB\n",
        &caches("48K", "2048K", Some("107520K")),
        &[],
    );
    assert_eq!(h.cpu_vendor, "GenuineIntel");
    assert_eq!(h.cpu_model, "Intel(R) Xeon(R) Platinum 8480+");
    assert_eq!(
        h.features,
        strings(&[
            "amx-bf16",
            "amx-int8",
            "amx-tile",
            "avx2",
            "avx512bf16",
            "avx512bw",
            "avx512f",
            "avx512vl",
            "avx512vnni",
            "avxvnni",
            "f16c",
            "fma"
        ])
    );
    assert_eq!((h.physical_cores, h.logical_cores), (4, 8));
    assert_eq!(h.caches.l1d_bytes, Some(48 << 10));
    assert_eq!(h.caches.l2_bytes, Some(2 << 20));
    assert_eq!(h.caches.l3_bytes, Some(105 << 20));
    assert_eq!(h.memory_bytes, 1056440348 * 1024);
    println!(
        "intel: {} features, {} cores",
        h.features.len(),
        h.physical_cores
    );
}

#[test]
fn amd_zen4() {
    let h = linux_host(
        &sample("amd-epyc-9654.cpuinfo"),
        "MemTotal: 792480216 kB\n",
        &caches("32K", "1024K", Some("32768K")),
        &[],
    );
    assert_eq!(h.cpu_vendor, "AuthenticAMD");
    assert_eq!(h.cpu_model, "AMD EPYC 9654 96-Core Processor");
    // Zen 4 has AVX-512 with VNNI and BF16 but neither AVX-VNNI nor AMX.
    assert_eq!(
        h.features,
        strings(&[
            "avx2",
            "avx512bf16",
            "avx512bw",
            "avx512f",
            "avx512vl",
            "avx512vnni",
            "f16c",
            "fma"
        ])
    );
    assert_eq!((h.physical_cores, h.logical_cores), (4, 8));
    assert_eq!(h.caches.last_level_bytes(), Some(32 << 20));
}

#[test]
fn graviton4_neoverse_v2() {
    let ids: Vec<_> = (0..4).map(|i| ("0".to_string(), i.to_string())).collect();
    let h = linux_host(
        &sample("graviton4.cpuinfo"),
        "MemTotal: 15837500 kB\n",
        &caches("64K", "2048K", Some("36864K")),
        &ids,
    );
    assert_eq!(h.cpu_vendor, "ARM");
    assert_eq!(h.cpu_model, "Neoverse-V2");
    assert_eq!(
        h.features,
        strings(&["bf16", "dotprod", "fp16", "i8mm", "neon", "sve", "sve2"])
    );
    assert_eq!((h.physical_cores, h.logical_cores), (4, 4));
}

#[test]
fn ampere_altra_neoverse_n1() {
    let info = parse_cpuinfo(&sample("ampere-altra.cpuinfo"));
    assert_eq!(info.model, "Neoverse-N1");
    assert_eq!(info.features, strings(&["dotprod", "fp16", "neon"]));
    assert_eq!(info.logical_cores, 4);
    // No core ids in ARM cpuinfo and none from sysfs: physical falls back to logical.
    assert_eq!(info.physical_cores, None);
    let h = linux_host(&sample("ampere-altra.cpuinfo"), "", &[], &[]);
    assert_eq!(h.physical_cores, 4);
    assert_eq!(h.memory_bytes, 0);
}

#[test]
fn apple_m2_sysctl() {
    let h = parse_sysctl(&sample("apple-m2.sysctl"));
    assert_eq!(h.cpu_vendor, "Apple");
    assert_eq!(h.cpu_model, "Apple M2");
    // FEAT_SME is 0 on the M2: not listed.
    assert_eq!(
        h.features,
        strings(&["bf16", "dotprod", "fp16", "i8mm", "neon"])
    );
    assert_eq!((h.physical_cores, h.logical_cores), (8, 8));
    assert_eq!(h.caches.l1d_bytes, Some(128 << 10));
    assert_eq!(h.caches.l2_bytes, Some(16 << 20));
    assert_eq!(h.caches.l3_bytes, None);
    assert_eq!(h.memory_bytes, 16 << 30);
}

#[test]
fn this_machine_detects() {
    let h = bench::host::detect();
    assert!(h.logical_cores >= 1 && h.physical_cores >= 1);
    assert!(!h.arch.is_empty() && !h.name.is_empty());
    if cfg!(target_os = "linux") {
        assert!(h.memory_bytes > 0, "MemTotal missing");
        assert!(!h.cpu_model.is_empty());
    }
    println!("this machine: {h:?}");
}
