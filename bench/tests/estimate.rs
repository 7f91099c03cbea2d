//! The estimate's memory for each released variant at 4k and 32k context against a hand count
//! from the config, written out here: F16 K/V, sliding layers hold min(N, window) positions,
//! KV-shared layers none, full layers of 26B-A4B / 31B hold K only (V = K).

use bench::estimate::{self, Speeds};
use bench::formats::variant_config;
use convert::Variant;

/// (variant, ctx, KV cache bytes, compute buffer bytes), counted by hand:
/// - KV = sliding layers × min(N, window) × kv_heads × 256 × 2 B × (K, V) + full layers × N ×
///   global_kv_heads × 512 × 2 B × (K, V or K only);
/// - compute = 4 B × 512 × (vocab 262144 + 2 × widest MLP + 3 × hidden + heads × 512) +
///   4 B × 512 × heads × N.
const HAND: [(Variant, usize, u64, u64); 8] = [
    // E2B: 35 layers, 20 KV-shared → layers 0..14 cache: 12 sliding, 3 full (4, 9, 14);
    // 1 KV head; widest MLP 12288 (double-wide), hidden 1536, 8 heads.
    (
        Variant::E2B,
        4096,
        12 * 512 * 1024 + 3 * 4096 * 2048,
        2048 * (262_144 + 24_576 + 4608 + 4096) + 16_384 * 4096,
    ),
    (
        Variant::E2B,
        32_768,
        12 * 512 * 1024 + 3 * 32_768 * 2048,
        2048 * (262_144 + 24_576 + 4608 + 4096) + 16_384 * 32_768,
    ),
    // E4B: 42 layers, 18 KV-shared → layers 0..23 cache: 20 sliding, 4 full (5, 11, 17, 23);
    // 2 KV heads; MLP 10240, hidden 2560, 8 heads.
    (
        Variant::E4B,
        4096,
        20 * 512 * 2048 + 4 * 4096 * 4096,
        2048 * (262_144 + 20_480 + 7680 + 4096) + 16_384 * 4096,
    ),
    (
        Variant::E4B,
        32_768,
        20 * 512 * 2048 + 4 * 32_768 * 4096,
        2048 * (262_144 + 20_480 + 7680 + 4096) + 16_384 * 32_768,
    ),
    // 26B-A4B: 30 layers: 25 sliding (window 1024, 8 KV heads: 8192 B per position), 5 full
    // (2 global KV heads, K only: 2048 B); MLP max(2112, 8 experts × 704 = 5632), hidden 2816,
    // 16 heads.
    (
        Variant::A26B,
        4096,
        25 * 1024 * 8192 + 5 * 4096 * 2048,
        2048 * (262_144 + 11_264 + 8448 + 8192) + 32_768 * 4096,
    ),
    (
        Variant::A26B,
        32_768,
        25 * 1024 * 8192 + 5 * 32_768 * 2048,
        2048 * (262_144 + 11_264 + 8448 + 8192) + 32_768 * 32_768,
    ),
    // 31B: 60 layers: 50 sliding (16 KV heads: 16384 B), 10 full (4 global KV heads, K only:
    // 4096 B); MLP 21504, hidden 5376, 32 heads.
    (
        Variant::B31,
        4096,
        50 * 1024 * 16_384 + 10 * 4096 * 4096,
        2048 * (262_144 + 43_008 + 16_128 + 16_384) + 65_536 * 4096,
    ),
    (
        Variant::B31,
        32_768,
        50 * 1024 * 16_384 + 10 * 32_768 * 4096,
        2048 * (262_144 + 43_008 + 16_128 + 16_384) + 65_536 * 32_768,
    ),
];

#[test]
fn memory_matches_hand_count() {
    let mut checked = 0;
    for variant in [Variant::E2B, Variant::E4B, Variant::A26B, Variant::B31] {
        let (cfg, tensors) = estimate::from_plan(variant, "Q4_K_M").unwrap();
        assert_eq!(cfg, variant_config(variant));
        let weights: u64 = tensors.iter().map(|t| t.bytes).sum();
        // Every matrix type the plan uses, at a made-up speed: memory does not depend on it.
        let mut speeds = Speeds {
            read_gbs: 10.0,
            ..Speeds::default()
        };
        for t in estimate::matrix_types(&cfg, &tensors) {
            let name = t.to_string();
            speeds.decode_gbs.insert(name.clone(), 10.0);
            speeds.prefill_gflops.insert(name, 100.0);
        }
        for &(v, ctx, kv, compute) in HAND.iter().filter(|h| h.0 == variant) {
            let e =
                estimate::estimate(v.cli_name().into(), &cfg, &tensors, ctx, 1, &speeds).unwrap();
            assert_eq!(e.kv_cache_bytes, kv, "{} kv at {ctx}", v.cli_name());
            assert_eq!(
                e.compute_buffer_bytes,
                compute,
                "{} compute at {ctx}",
                v.cli_name()
            );
            assert_eq!(e.weights_bytes, weights);
            assert_eq!(e.memory_bytes, weights + kv + compute);
            assert!(e.decode_tokens_per_s > 0.0 && e.prefill_tokens_per_s > e.decode_tokens_per_s);
            println!(
                "{} Q4_K_M at {ctx}: weights {weights}, KV {kv}, compute {compute}, memory {} B",
                v.cli_name(),
                e.memory_bytes
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 8);
    println!("checked {checked} variant × context memory counts");
}

#[test]
fn decode_time_is_bytes_over_speed() {
    // One 2-D tensor per kind: the head is read whole, experts at top-k / experts.
    let cfg = variant_config(Variant::E2B);
    let t = |name: &str, dims: Vec<u64>, bytes| estimate::ModelTensor {
        name: name.into(),
        ty: bench::formats::Format::Ggml(kernels::GgmlType::Q8_0),
        dims,
        bytes,
    };
    let tensors = vec![
        t("token_embd.weight", vec![1536, 262_144], 1_000_000_000),
        t("blk.0.ffn_up.weight", vec![1536, 6144], 500_000_000),
        // KV-shared layer 30's K projection is never computed.
        t("blk.30.attn_k.weight", vec![1536, 256], 7_000_000),
        t("blk.0.attn_norm.weight", vec![1536], 6144),
    ];
    let mut speeds = Speeds {
        read_gbs: 0.0,
        ..Speeds::default()
    };
    speeds.decode_gbs.insert("Q8_0".into(), 10.0);
    speeds.prefill_gflops.insert("Q8_0".into(), 100.0);
    let (decode, prefill) = estimate::tokens_per_s(&cfg, &tensors, 4096, &speeds).unwrap();
    // 1.5 GB at 10 GB/s = 0.15 s per token.
    assert!((decode - 1.0 / 0.15).abs() < 1e-9, "{decode}");
    let flops = 2.0 * (1536.0 * 262_144.0 + 1536.0 * 6144.0);
    assert!((prefill - 100e9 / flops).abs() < 1e-6, "{prefill}");
    speeds.prefill_gflops.clear();
    assert!(estimate::tokens_per_s(&cfg, &tensors, 4096, &speeds).is_err());
    println!("checked 3 speed figures");
}
