//! The bandwidth and FMA probes return plausible figures on this machine.

use bench::limits;

#[test]
fn probes_are_plausible() {
    let threads = rayon::current_num_threads();
    // 256 MiB: larger than the L2 of any current core; the full run sizes it from the LLC.
    let l = limits::measure(256 << 20, threads, 3);
    println!("limits over 256 MiB on {threads} threads: {l:?}");
    // DDR4-2400 single channel is ~19 GB/s peak; one core of any machine we run on streams at
    // least 1 GB/s, and no socket exceeds 2 TB/s.
    for (name, v) in [
        ("read 1t", l.read_bandwidth_1t_gbs),
        ("read all", l.read_bandwidth_gbs),
        ("triad 1t", l.triad_bandwidth_1t_gbs),
        ("triad all", l.triad_bandwidth_gbs),
    ] {
        assert!((1.0..2000.0).contains(&v), "{name} {v} GB/s");
    }
    // One core: at least a scalar FMA per ns, at most 2 × 16-lane FMA ports at 6 GHz (384).
    assert!(
        (2.0..400.0).contains(&l.fma_gflops_per_core),
        "fma {} GFLOP/s",
        l.fma_gflops_per_core
    );
    assert_eq!(l.buffer_bytes, 256 << 20);
    println!("checked 5 figures");
}
