//! Every bundled device profile parses, is plausible, is named as its file, and lists only ISA
//! names the fingerprint uses (CPUs) or a CUDA architecture (GPUs).

use bench::devices;

const CPU_ISA: [&str; 20] = [
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512vnni",
    "avx512bf16",
    "avxvnni",
    "amx-tile",
    "amx-int8",
    "amx-bf16",
    "neon",
    "dotprod",
    "i8mm",
    "sve",
    "sve2",
    "bf16",
    "fp16",
    "sme",
];

#[test]
fn bundled_profiles_parse_and_are_plausible() {
    let all = devices::bundled().unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../devices");
    let on_disk = std::fs::read_dir(dir).unwrap().filter(|e| {
        e.as_ref()
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "toml")
    });
    assert_eq!(
        all.len(),
        on_disk.count(),
        "every devices/*.toml is bundled"
    );
    assert!(all.len() >= 15);
    for d in &all {
        assert_eq!(d.implausible(), None);
        for isa in &d.isa {
            let ok = if d.kind == "gpu" {
                isa.starts_with("cuda-sm")
            } else {
                CPU_ISA.contains(&isa.as_str())
            };
            assert!(ok, "{}: unknown ISA name {isa}", d.name);
        }
        let text = std::fs::read_to_string(format!("{dir}/{}.toml", d.name)).unwrap();
        // Every figure line is preceded by a comment giving its source.
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let key = l.split('=').next().unwrap().trim();
            if [
                "memory_bytes",
                "memory_bandwidth_gbs",
                "cores",
                "isa",
                "peak_int8_tops",
                "peak_fp16_tflops",
            ]
            .contains(&key)
            {
                assert!(
                    i > 0 && lines[i - 1].starts_with('#'),
                    "{}: {key} has no source comment",
                    d.name
                );
            }
        }
    }
    for name in [
        "amd-epyc-9654",
        "amd-ryzen-9-7950x",
        "intel-xeon-platinum-8480plus",
        "intel-core-i9-14900k",
        "apple-m2",
        "apple-m3-pro",
        "apple-m4-max",
        "aws-graviton4",
        "ampere-altra-q80-30",
        "raspberry-pi-5",
        "nvidia-rtx-4090",
        "nvidia-l4",
        "nvidia-a100-80gb",
        "nvidia-h100-sxm",
        "nvidia-h200",
    ] {
        assert_eq!(devices::find(name).unwrap().name, name);
    }
    assert!(devices::find("pdp-11")
        .unwrap_err()
        .contains("unknown device 'pdp-11'"));
    println!("checked {} profiles", all.len());
}

#[test]
fn implausible_and_malformed_profiles_are_caught() {
    let good = devices::find("raspberry-pi-5").unwrap();
    let mut bad = good.clone();
    bad.memory_bandwidth_gbs = 1e6;
    assert!(bad.implausible().unwrap().contains("memory_bandwidth_gbs"));
    let mut bad = good.clone();
    bad.peak_int8_tops = 0.2;
    assert!(bad.implausible().unwrap().contains("int8 slower"));
    assert!(devices::parse("x", "name = \"x\"\n")
        .unwrap_err()
        .starts_with("devices/x.toml:"));
    let extra = "name='x'\ndisplay='x'\nkind='cpu'\nmemory_bytes=1\nmemory_bandwidth_gbs=1.0\ncores=1\nthreads=1\nisa=['neon']\npeak_int8_tops=1.0\npeak_fp16_tflops=1.0\ncolour='red'\n";
    assert!(devices::parse("x", extra).is_err());
    println!("checked 4 bad profiles");
}
