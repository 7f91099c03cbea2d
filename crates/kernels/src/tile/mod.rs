//! Register-tiled prefill products: many weight rows × many tokens per kernel call, for the
//! quantized types whose per-pair dot has a tile-friendly shape (see [`pack`] for the three
//! families: Q6_K and Q3_K; Q4_K and Q5_K; Q8_0, Q4_0, Q5_0 and IQ4_NL).
//!
//! The per-pair dot unpacks a weight block for every token it meets; here a panel of weight rows
//! is unpacked to bytes once ([`pack::pack_weights`]) and the activations once per product
//! ([`Acts`]), then a small tile of rows × token pairs runs with its integer sums in registers,
//! each row's packed group reused across the tile's tokens and each token's across its rows.
//!
//! Every output is bit-identical to `vec_dot` on the same path: the integer partial sums of
//! each 8-lane group are exact, and their conversion, scaling (`dx · dy`), FMA order into the
//! same accumulators and final horizontal sum are the dot kernel's, lane for lane. Tiles are
//! fixed by the panel, never by the thread count, and no output depends on another, so results
//! are the same for any pool size. The scalar and NEON paths keep the per-pair dot (the
//! reference); the x86 paths run these kernels.

mod pack;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use std::cell::RefCell;

use crate::simd::Path;
use crate::GgmlType;
use pack::{Family, Line};

/// Whether [`panel`] runs `ty` on `path` (the x86 paths, for the types of the three families).
pub(crate) fn covers(path: Path, ty: GgmlType) -> bool {
    cfg!(target_arch = "x86_64")
        && matches!(path, Path::Avx2 | Path::Avx512)
        && Family::of(ty).is_some()
}

/// Where one tile reads and writes: `w` the first of its packed weight rows (`ws` bytes apart),
/// `a` the first of its packed token pairs (`as_` bytes apart), `units` packed units per row,
/// `nb_tail` the blocks in a partial last B32 unit (0: none); outputs go to `out`, token-major
/// with `n` values per token, from row `r0` and token `c0`; tokens from `t` on are padding.
pub(crate) struct Tile<'a> {
    w: *const u8,
    ws: usize,
    a: *const u8,
    as_: usize,
    units: usize,
    nb_tail: usize,
    out: &'a mut [f32],
    n: usize,
    r0: usize,
    c0: usize,
    t: usize,
}

impl Tile<'_> {
    /// Stores the output of tile row `r`, pair `p`, token `h` of the pair (unless padding).
    fn put(&mut self, r: usize, p: usize, h: usize, v: f32) {
        let c = self.c0 + 2 * p + h;
        if c < self.t {
            self.out[c * self.n + self.r0 + r] = v;
        }
    }
}

/// A product's activations, packed once for every panel: token pairs of [`pack`]'s layout.
pub(crate) struct Acts {
    fam: Family,
    buf: Vec<Line>,
    t: usize,
    pairs: usize,
    units: usize,
    nb_tail: usize,
}

impl Acts {
    /// Packs `t` activation rows of `act_bytes` each (`ty`'s `vec_dot_type`, `cols` values).
    /// `ty` must be one [`covers`] accepts.
    pub(crate) fn new(ty: GgmlType, acts: &[u8], act_bytes: usize, t: usize, cols: usize) -> Acts {
        let fam = Family::of(ty).expect("a type the tiles cover");
        let units = cols.div_ceil(fam.unit_values());
        let nb_tail = if fam == Family::B32 {
            (cols / 32) % 4
        } else {
            0
        };
        let pairs = t.div_ceil(2);
        let mut buf = Vec::new();
        let out = pack::lines(&mut buf, pairs * units * fam.act_unit());
        pack::pack_acts(fam, acts, act_bytes, t, out);
        Acts {
            fam,
            buf,
            t,
            pairs,
            units,
            nb_tail,
        }
    }
}

impl Acts {
    /// Rows per parallel panel for a product of `rows` rows: about 256 KiB of packed weights,
    /// which stay in L2 while every token pair passes over them, so the packed activations
    /// (which may not fit L2 at 512 tokens) are streamed once per 256 KiB of weights. Any value
    /// gives the same outputs.
    pub(crate) fn panel_rows(&self, rows: usize) -> usize {
        let packed_row = (self.units * self.fam.weight_unit()).max(1);
        ((256 << 10) / packed_row).clamp(4, 256).min(rows).max(1)
    }
}

thread_local! {
    /// Each worker's buffer for the packed weights of its current panel.
    static PANEL: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
}

/// `out[c · n + r] = dot(row r of w, token c)` for the `n = w.len() / row_bytes` rows of `w`
/// and every token of `acts`, on a path [`covers`] accepts (checked by the caller, with
/// `ensure_supported`) for the type `acts` was packed for.
pub(crate) fn panel(
    path: Path,
    ty: GgmlType,
    acts: &Acts,
    w: &[u8],
    row_bytes: usize,
    out: &mut [f32],
) {
    let n = w.len() / row_bytes;
    let fam = acts.fam;
    let ws = acts.units * fam.weight_unit();
    assert_eq!(out.len(), n * acts.t, "tile output length");
    // The one check that makes the `target_feature` kernels below sound.
    assert!(
        covers(path, ty) && path.is_supported(),
        "no tiles for {ty} on {path}"
    );
    PANEL.with(|cell| {
        let mut buf = cell.borrow_mut();
        let packed = pack::lines(&mut buf, n * ws);
        #[cfg(target_arch = "x86_64")]
        match path {
            // SAFETY: `path.is_supported()` (asserted above) found the AVX-512 set.
            Path::Avx512 => unsafe { avx512::pack(fam, ty, w, row_bytes, packed) },
            // SAFETY: `path.is_supported()` (asserted above) found avx2, fma and f16c.
            _ => unsafe { avx2::pack(fam, ty, w, row_bytes, packed) },
        }
        let packed_acts: &[u8] = bytemuck::cast_slice(&acts.buf);
        assert!(
            packed.len() >= n * ws && packed_acts.len() >= acts.pairs * acts.units * fam.act_unit()
        );
        run(path, fam, packed, ws, n, acts, packed_acts, out);
    });
}

/// Walks the tiles of a packed panel: token pairs in steps of the tile's width (their packed
/// activations stay in L1), rows in steps of its height within each (the panel stays in L2).
#[allow(clippy::too_many_arguments)]
#[cfg(target_arch = "x86_64")]
fn run(
    path: Path,
    fam: Family,
    packed: &[u8],
    ws: usize,
    n: usize,
    acts: &Acts,
    pa: &[u8],
    out: &mut [f32],
) {
    let as_ = acts.units * fam.act_unit();
    // Two rows × two token pairs: on AVX-512 the tile's 4 integer and 4 float accumulators,
    // 2 + 2 broadcast weight and scale vectors and the pair loads fit the 32 registers without
    // spills (2 × 4 spilled; 3 × 2 ran no faster); on AVX2 (16 registers) 2 × 2 ran fastest.
    let (rt, pt) = (2, 2);
    for p0 in (0..acts.pairs).step_by(pt) {
        let pp = pt.min(acts.pairs - p0);
        for r0 in (0..n).step_by(rt) {
            let rr = rt.min(n - r0);
            let mut tl = Tile {
                // SAFETY: `r0 < n` rows and `p0 < pairs` pairs of the packed buffers, whose
                // lengths `panel` asserted.
                w: unsafe { packed.as_ptr().add(r0 * ws) },
                ws,
                // SAFETY: as above.
                a: unsafe { pa.as_ptr().add(p0 * as_) },
                as_,
                units: acts.units,
                nb_tail: acts.nb_tail,
                out: &mut *out,
                n,
                r0,
                c0: 2 * p0,
                t: acts.t,
            };
            macro_rules! go {
                ($m:ident :: $k:ident, [$(($r:literal, $p:literal)),*]) => {
                    match (rr, pp) {
                        // SAFETY: `ensure_supported` found the path's features (the caller's
                        // duty); the tile's `rr` rows and `pp` pairs lie inside the packed
                        // buffers (lengths asserted in `panel`, `rr ≤ n − r0`, `pp ≤ pairs −
                        // p0`).
                        $(($r, $p) => unsafe { $m::$k::<$r, $p>(&mut tl) },)*
                        _ => unreachable!("tile {rr}x{pp}"),
                    }
                };
            }
            match (path, fam) {
                (Path::Avx512, Family::K16) => go!(avx512::k16, [(2, 2), (2, 1), (1, 2), (1, 1)]),
                (Path::Avx512, Family::K32) => go!(avx512::k32, [(2, 2), (2, 1), (1, 2), (1, 1)]),
                (Path::Avx512, Family::B32) => go!(avx512::b32, [(2, 2), (2, 1), (1, 2), (1, 1)]),
                (_, Family::K16) => go!(avx2::k16, [(2, 2), (2, 1), (1, 2), (1, 1)]),
                (_, Family::K32) => go!(avx2::k32, [(2, 2), (2, 1), (1, 2), (1, 1)]),
                (_, Family::B32) => go!(avx2::b32, [(2, 2), (2, 1), (1, 2), (1, 1)]),
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[cfg(not(target_arch = "x86_64"))]
fn run(_: Path, _: Family, _: &[u8], _: usize, _: usize, _: &Acts, _: &[u8], _: &mut [f32]) {
    unreachable!("the tiles cover only the x86 paths")
}

#[cfg(test)]
mod tests;
