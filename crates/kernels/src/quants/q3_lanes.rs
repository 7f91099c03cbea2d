//! Q3_K's sub-block search (`make_q3_quants(16, 4, x, L, true)`: an x²-weighted fit refined by
//! up to five coordinate-descent passes) on many sub-blocks at once, written once over the
//! lane operations of [`Vector`] and instantiated for every backend (see [`super::lanes`]).
//!
//! Three ways through it, all giving ggml's bits:
//! - [`q3`]: the whole search on `N` groups side by side, one group per lane;
//! - [`q3_first`]: the first rounding and a check of the first refinement pass, which settles
//!   most groups at full throughput (a pass that changes nothing ends ggml's search);
//! - [`q3_rest`]: the remaining refinement of the unsettled ones, one sub-block per vector
//!   (its 16 values in the lanes), in "rounds" that skip the steps that change nothing.

#![allow(clippy::needless_range_loop)]

use super::lanes::Slots;
use super::search::GROUP_MAX_EPS;
use super::vector::{Vector, MAX_GROUPS, MAX_VECTORS};
use crate::blocks::BlockQ3K;

/// The largest quotient estimate [`q3_unsure`] trusts: ggml's `nearest_int` is exact below
/// 2^22, and the estimate is within 2^-11 of the quotient (relative).
const Q3_FAR: f32 = 1_048_576.0;

/// The largest `slx` [`q3_unsure`] estimates with: the reciprocal stays a normal float, where
/// [`Vector::rcp`]'s error bound holds.
const Q3_SLX_MAX: f32 = 1.0e37;

/// 2^64: [`products_gt`] scales its products by it (exactly).
const TWO_POW_64: f32 = 18_446_744_073_709_551_616.0;

/// 2^-62: below it a product scaled by [`TWO_POW_64`] may have been a denormal unscaled.
const TWO_POW_MINUS_62: f32 = 2.168_404_3e-19;

/// A Q3_K sub-block that [`q3_first`] left unsettled, for [`q3_rest`].
pub(crate) struct Q3Job<'a> {
    /// Its 16 values.
    pub(crate) x: &'a [f32; 16],
    /// The first rounding's `iscale` (`-nmax/max`), as `q3_first` reports it.
    pub(crate) iscale: f32,
    /// ggml's `sumlx` and `suml2` after the first rounding, as `q3_first` reports them.
    pub(crate) sums: [f32; 2],
    /// Out: the scale `make_q3_quants` returns.
    pub(crate) scale: f32,
    /// Out: the levels, offset by `nmax`.
    pub(crate) l: [i8; 16],
}

impl<'a> Q3Job<'a> {
    /// A job for `x` with the state `q3_first` reports for it; the outputs start at zero.
    pub(crate) fn new(x: &'a [f32; 16], [iscale, sumlx, suml2]: [f32; 3]) -> Self {
        Q3Job {
            x,
            iscale,
            sums: [sumlx, suml2],
            scale: 0.0,
            l: [0; 16],
        }
    }
}

/// Per row and vector of groups (`rows[k]`, row `i`), a level with ggml's products `w·x·l` and
/// `w·l·l` (`w = x²`), written in place by [`first_rounding`] (a state of kilobytes, built
/// where it stays rather than built and moved).
type Rows<V, const M: usize> = [Slots<[<V as Vector>::F; 3], M>; MAX_VECTORS];

/// Empty [`Rows`].
#[inline(always)]
fn rows<V: Vector, const M: usize>() -> Rows<V, M> {
    std::array::from_fn(|_| Slots::new())
}

/// Per vector of groups, ggml's sums `Σ w·x·l` and `Σ w·l·l` in index order, its `iscale` and
/// the largest |x|.
struct Sums<V: Vector> {
    sumlx: V::Row,
    suml2: V::Row,
    iscale: V::Row,
    amax: V::Row,
}

/// ggml's first rounding on `N` groups: against each group's first value of largest
/// magnitude, `iscale = -nmax/max`; the levels and products go to `rows`.
#[inline(always)]
fn first_rounding<V: Vector, const N: usize, const M: usize>(
    v: V,
    x: &[[f32; N]; M],
    nmax: i32,
    rows: &mut Rows<V, M>,
) -> Sums<V> {
    assert!(N.is_multiple_of(V::LANES) && N <= MAX_GROUPS);
    let zero = v.zero();
    let (max, amax) = super::lanes::signed_absmax(v, x);
    let (mut sumlx, mut suml2, mut iscale) = (v.row(zero), v.row(zero), v.row(zero));
    for k in 0..N / V::LANES {
        iscale[k] = v.div(v.splat(-(nmax as f32)), max[k]);
        // The sums stay in registers: accumulating into the arrays would put a store and a
        // reload on each step of the chain.
        let (mut sx, mut s2) = (zero, zero);
        for i in 0..M {
            let xv = v.ld(&x[i], k);
            let l = v.round_clamp_f(v.mul(iscale[k], xv), -nmax, nmax - 1);
            let wv = v.mul(xv, xv);
            let wxl = v.mul(v.mul(wv, xv), l);
            let wl2 = v.mul(v.mul(wv, l), l);
            sx = v.add(sx, wxl);
            s2 = v.add(s2, wl2);
            rows[k].push([l, wxl, wl2]);
        }
        (sumlx[k], suml2[k]) = (sx, s2);
    }
    Sums {
        sumlx,
        suml2,
        iscale,
        amax,
    }
}

/// The scales `sumlx/suml2` of `kk` vectors of groups (zero for all-zero groups, and where
/// `suml2` is not positive, as ggml's early return and `suml2 > 0 ? sumlx/suml2 : 0` give;
/// `amax` is never NaN, so `>= EPS` is exactly "not all zero").
#[inline(always)]
fn write_scales<V: Vector, const N: usize>(
    v: V,
    kk: usize,
    amax: &V::Row,
    sumlx: &V::Row,
    suml2: &V::Row,
    scale_out: &mut [f32; N],
) {
    let (zero, eps) = (v.zero(), v.splat(GROUP_MAX_EPS));
    for k in 0..kk {
        let ok = v.and(v.ge(amax[k], eps), v.gt(suml2[k], zero));
        v.st(scale_out, k, v.sel(ok, v.div(sumlx[k], suml2[k]), zero));
    }
}

/// `make_q3_quants(M, nmax, x, L, true)` on `N` groups. A pass that changes nothing leaves the
/// state as it found it, so running further passes on a lane that ggml would already have
/// stopped is a no-op; the loop stops when no lane changed. Writes the scales and the levels
/// (offset by `nmax`).
#[inline(always)]
pub(crate) fn q3<V: Vector, const N: usize, const M: usize>(
    v: V,
    x: &[[f32; N]; M],
    nmax: i32,
    scale_out: &mut [f32; N],
    l_out: &mut [[i8; N]; M],
) {
    let kk = N / V::LANES;
    let zero = v.zero();
    let mut rows = rows::<V, M>();
    let Sums {
        mut sumlx,
        mut suml2,
        amax,
        ..
    } = first_rounding(v, x, nmax, &mut rows);
    for _itry in 0..5 {
        let mut changed = 0;
        for i in 0..M {
            for k in 0..kk {
                let xv = v.ld(&x[i], k);
                let [li, wxl, wl2] = rows[k].get(i);
                let wv = v.mul(xv, xv);
                let wx = v.mul(wv, xv);
                let slx0 = v.sub(sumlx[k], wxl);
                let sl20 = v.sub(suml2[k], wl2);
                let new_l = v.round_clamp_f(v.div(v.mul(xv, sl20), slx0), -nmax, nmax - 1);
                let new_wxl = v.mul(wx, new_l);
                let new_wl2 = v.mul(v.mul(wv, new_l), new_l);
                let slx = v.add(slx0, new_wxl);
                let sl2 = v.add(sl20, new_wl2);
                let cand = v.and(v.and(v.gt(slx0, zero), v.ne(new_l, li)), v.gt(sl2, zero));
                if v.bits(cand) == 0 {
                    continue;
                }
                // ggml's `slx*slx*suml2 > sumlx*sumlx*sl2`.
                let better = products_gt(
                    v,
                    cand,
                    v.mul(slx, slx),
                    suml2[k],
                    v.mul(sumlx[k], sumlx[k]),
                    sl2,
                );
                let acc = v.and(cand, better);
                let acc_bits = v.bits(acc);
                if acc_bits == 0 {
                    continue;
                }
                rows[k].set(
                    i,
                    [
                        v.sel(acc, new_l, li),
                        v.sel(acc, new_wxl, wxl),
                        v.sel(acc, new_wl2, wl2),
                    ],
                );
                sumlx[k] = v.sel(acc, slx, sumlx[k]);
                suml2[k] = v.sel(acc, sl2, suml2[k]);
                changed |= acc_bits;
            }
        }
        if changed == 0 {
            break;
        }
    }
    let eps = v.splat(GROUP_MAX_EPS);
    for i in 0..M {
        for k in 0..kk {
            let l = v.add_i(v.to_i(rows[k].get(i)[0]), nmax);
            v.put_levels(&mut l_out[i], k, l, v.lt(amax[k], eps), |l| l as i8);
        }
    }
    write_scales(v, kk, &amax, &sumlx, &suml2, scale_out);
}

/// [`q3`]'s first rounding and first refinement pass on `N` groups, without changing them:
/// every row is checked against the initial state by a quotient estimate ([`q3_unsure`]). A
/// lane none of whose rows could change is final after that pass, exactly as in ggml (whose
/// pass then changes nothing and stops). Returns the mask of the other lanes (bit `j` for lane
/// `j`; never an all-zero group), whose outputs are not final, for [`q3_rest`]. For all lanes,
/// the scales (`scale_out`) are the first rounding's and `state` receives `iscale` (NaN for
/// all-zero groups), `sumlx` and `suml2` after the first rounding; the settled lanes' levels
/// are [`first_levels`]. No row waits on another here, so the pass runs at full throughput.
#[inline(always)]
pub(crate) fn q3_first<V: Vector, const N: usize, const M: usize>(
    v: V,
    x: &[[f32; N]; M],
    nmax: i32,
    scale_out: &mut [f32; N],
    state: &mut [[f32; N]; 3],
) -> u64 {
    let kk = N / V::LANES;
    let mut rows = rows::<V, M>();
    let Sums {
        sumlx,
        suml2,
        iscale,
        amax,
    } = first_rounding(v, x, nmax, &mut rows);
    let mut unsure = 0u64;
    for k in 0..kk {
        let mut lane_unsure = v.none();
        for i in 0..M {
            let [li, wxl, wl2] = rows[k].get(i);
            let (slx0, sl20) = (v.sub(sumlx[k], wxl), v.sub(suml2[k], wl2));
            lane_unsure = v.or(
                lane_unsure,
                q3_unsure(v, v.ld(&x[i], k), li, slx0, sl20, nmax),
            );
        }
        let live = v.ge(amax[k], v.splat(GROUP_MAX_EPS));
        unsure |= u64::from(v.bits(v.and(lane_unsure, live))) << (V::LANES * k);
        v.st(&mut state[0], k, v.sel(live, iscale[k], v.splat(f32::NAN)));
        v.st(&mut state[1], k, sumlx[k]);
        v.st(&mut state[2], k, suml2[k]);
    }
    write_scales(v, kk, &amax, &sumlx, &suml2, scale_out);
    unsure
}

/// The lanes of one row whose level the refinement step might change: those with `slx > 0`
/// (ggml skips the others) where the quotient estimate `x·sl2·rcp(slx)`, clamped to the
/// levels' range, is not within `0.5 - RCP_CELL_TOL` of the current level `l` (or the estimate
/// is not usable: `slx` too large for the reciprocal's error bound, the quotient too large for
/// ggml's `nearest_int`, or NaN). Every other lane provably keeps its level: the true quotient
/// rounds to `l` (open-ended at the clamp limits).
#[inline(always)]
fn q3_unsure<V: Vector>(v: V, x: V::F, l: V::F, slx: V::F, sl2: V::F, nmax: i32) -> V::M {
    let q = v.mul(v.mul(x, sl2), v.rcp(slx));
    let (lmin, lmax) = (v.splat(-(nmax as f32)), v.splat(nmax as f32 - 1.0));
    let off = v.abs(v.sub(v.min(v.max(q, lmin), lmax), l));
    let pos = v.gt(slx, v.zero());
    let sure = v.and(
        v.and(
            v.lt(slx, v.splat(Q3_SLX_MAX)),
            v.lt(v.abs(q), v.splat(Q3_FAR)),
        ),
        v.lt(off, v.splat(0.5 - V::RCP_CELL_TOL)),
    );
    v.and_not(pos, sure)
}

/// The levels of [`q3`]'s first rounding of one group of 16, offset by `nmax`, from its
/// `iscale` as [`q3_first`] reports it (NaN for an all-zero group, whose levels ggml leaves at
/// zero).
#[inline(always)]
pub(crate) fn first_levels<V: Vector>(v: V, x: &[f32; 16], iscale: f32, nmax: i32) -> [i8; 16] {
    let mut out = [0i8; 16];
    if !iscale.is_nan() {
        for h in 0..16 / V::LANES {
            let l = v.round_clamp(v.mul(v.splat(iscale), v.ld(x, h)), -nmax, nmax - 1);
            v.store_bytes(v.add_i(l, nmax), &mut out[V::LANES * h..]);
        }
    }
    out
}

/// `fl(a·b) > fl(c·d)` in f32 on the lanes of `care` (ggml's acceptance test `slx*slx*suml2 >
/// sumlx*sumlx*sl2`; other lanes' results are meaningless), without forming a denormal float.
/// With tiny weights those products fall below 2^-126, and every instruction that rounds a
/// result into the denormal range costs a microcode assist of a hundred-odd cycles.
///
/// First both products are formed scaled by 2^64 (`b·2^64` is exact): where each scaled
/// product is finite and at least 2^-62, the unscaled product is a normal float, scaling
/// commutes with its rounding, and comparing the scaled products is comparing ggml's.
/// Otherwise (a tiny, zero, huge or NaN product on a lane that matters) the vector is redone
/// by [`Vector::products_gt_exact`].
#[inline(always)]
pub(crate) fn products_gt<V: Vector>(v: V, care: V::M, a: V::F, b: V::F, c: V::F, d: V::F) -> V::M {
    let scale = v.splat(TWO_POW_64);
    let s1 = v.mul(a, v.mul(b, scale));
    let s2 = v.mul(c, v.mul(d, scale));
    let (low, inf) = (v.splat(TWO_POW_MINUS_62), v.splat(f32::INFINITY));
    let plain = |s: V::F| v.and(v.ge(v.abs(s), low), v.lt(v.abs(s), inf));
    if v.bits(v.and_not(care, v.and(plain(s1), plain(s2)))) == 0 {
        return v.gt(s1, s2);
    }
    v.products_gt_exact(a, b, c, d)
}

/// Whether [`q3_rounds`] may evaluate ggml's acceptance products in f32 for a sub-block whose
/// first rounding used `iscale = -nmax/max` (`|max|` its largest |x|), rather than with
/// [`products_gt`]. Both give ggml's result (f32 arithmetic is ggml's); the difference is
/// speed. With tiny values the products fall into the denormal range, where each f32
/// multiplication costs a microcode assist, and `products_gt` avoids forming them; otherwise
/// its extra tests cost more than the rare product that cancels down to a denormal. The
/// products scale as `|max|^8` (and overflow to infinity, which is fast, above about 2^16):
/// this asks for `|max| >= 2^-10`.
#[inline(always)]
fn plain_products(iscale: f32) -> bool {
    iscale.abs() <= 4096.0
}

/// Jobs [`q3_rounds`] interleaves: one row's worth of unsettled sub-blocks is typically 50.
const Q3_BATCH: usize = 64;

/// ggml's refinement passes for the sub-blocks [`q3_first`] left unsettled, one sub-block per
/// `16 / LANES` vectors (its 16 values in the lanes) instead of one per lane.
///
/// ggml's pass is sixteen dependent steps, yet a step changes the state only when it accepts
/// a new level, and most do not. So each "round" evaluates the steps of all sixteen positions
/// at once against the current state and applies the first accepted one the pass has yet to
/// reach: every position before it, checked against that same state, is exactly what ggml's
/// pass does there (nothing). When none is left the pass ends, and the next pass starts from
/// position 0 with the same state, whose first change the same round has already found. A
/// sub-block thus costs one round per accepted change, plus one to find that nothing is left,
/// instead of sixteen dependent steps per pass; and the rounds of different sub-blocks, which
/// do not wait on one another, overlap.
#[inline(always)]
pub(crate) fn q3_rest<V: Vector>(v: V, jobs: &mut [Q3Job<'_>], nmax: i32) {
    for batch in jobs.chunks_mut(Q3_BATCH) {
        q3_rounds(v, batch, nmax);
    }
}

/// [`q3_rest`] on at most [`Q3_BATCH`] jobs.
#[inline(always)]
fn q3_rounds<V: Vector>(v: V, jobs: &mut [Q3Job<'_>], nmax: i32) {
    let n = jobs.len();
    assert!(n <= Q3_BATCH);
    let per_sub = 16 / V::LANES;
    let zero = v.zero();
    let z = v.sub16(zero);
    // Per job: values, ggml's w = x² and w·x, the current levels with their products w·x·l and
    // w·l·l, and sums; the positions the current pass has yet to visit (a mask), whether the
    // pass changed anything, the pass number (ggml runs at most five), and whether the
    // acceptance test may multiply in f32 directly (see `plain_products`).
    let mut x = [z; Q3_BATCH];
    let (mut w, mut wx) = ([z; Q3_BATCH], [z; Q3_BATCH]);
    let (mut l, mut wxl, mut wl2) = ([z; Q3_BATCH], [z; Q3_BATCH], [z; Q3_BATCH]);
    let mut sums = [[0f32; 2]; Q3_BATCH];
    let mut ahead = [u16::MAX; Q3_BATCH];
    let mut changed = [false; Q3_BATCH];
    let mut pass = [0u8; Q3_BATCH];
    let mut plain = [false; Q3_BATCH];
    let mut active = [0u8; Q3_BATCH];
    let (lo, hi) = (-nmax, nmax - 1);
    for (j, job) in jobs.iter().enumerate() {
        for h in 0..per_sub {
            let xv = v.ld(job.x, h);
            let wv = v.mul(xv, xv);
            let wxv = v.mul(wv, xv);
            let lv = v.round_clamp_f(v.mul(v.splat(job.iscale), xv), lo, hi);
            (x[j][h], w[j][h], wx[j][h], l[j][h]) = (xv, wv, wxv, lv);
            wxl[j][h] = v.mul(wxv, lv);
            wl2[j][h] = v.mul(v.mul(wv, lv), lv);
        }
        sums[j] = job.sums;
        plain[j] = plain_products(job.iscale);
        active[j] = j as u8;
    }
    // Each sweep over the jobs runs one round of each in two loops: up to the candidate
    // levels and sums (the division's long chain), then the acceptance test and the
    // bookkeeping. Split so, each loop's chains are short enough for the out-of-order core
    // to overlap many jobs; one loop holds fewer rounds in flight, every round's operations
    // waiting on its own chain.
    let (mut cand_l, mut cand_slx, mut cand_sl2) = ([z; Q3_BATCH], [z; Q3_BATCH], [z; Q3_BATCH]);
    let mut cands = [0u32; Q3_BATCH];
    let mut n_active = n;
    while n_active > 0 {
        for a in 0..n_active {
            let j = active[a] as usize;
            let [sx, s2] = sums[j];
            let mut cand = 0u32;
            for h in 0..per_sub {
                let slx0 = v.sub(v.splat(sx), wxl[j][h]);
                let sl20 = v.sub(v.splat(s2), wl2[j][h]);
                let new_l = v.round_clamp_f(v.div(v.mul(x[j][h], sl20), slx0), lo, hi);
                let slx = v.add(slx0, v.mul(wx[j][h], new_l));
                let sl2 = v.add(sl20, v.mul(v.mul(w[j][h], new_l), new_l));
                let c = v.and(
                    v.and(v.gt(slx0, zero), v.ne(new_l, l[j][h])),
                    v.gt(sl2, zero),
                );
                cand |= v.bits(c) << (V::LANES * h);
                (cand_l[a][h], cand_slx[a][h], cand_sl2[a][h]) = (new_l, slx, sl2);
            }
            cands[a] = cand;
        }
        let mut kept = 0;
        for a in 0..n_active {
            let j = active[a] as usize;
            let [sx, s2] = sums[j];
            let (suml2, c) = (v.splat(s2), v.splat(sx * sx));
            let cand = cands[a];
            let mut better = 0u32;
            for h in 0..per_sub {
                // ggml's `slx*slx*suml2 > sumlx*sumlx*sl2`.
                let p = v.mul(cand_slx[a][h], cand_slx[a][h]);
                let g = if plain[j] {
                    v.gt(v.mul(p, suml2), v.mul(c, cand_sl2[a][h]))
                } else {
                    let care = v.lanes_set(cand >> (V::LANES * h));
                    products_gt(v, care, p, suml2, c, cand_sl2[a][h])
                };
                better |= v.bits(g) << (V::LANES * h);
            }
            // The positions whose step ggml accepts with this state. The first one the pass
            // has yet to reach is its next change; with none, the pass ends, and the next
            // pass (which runs if this one changed a level and fewer than five have run)
            // starts from position 0 with this same state, so its first change is the first
            // accepted position overall. Bit arithmetic, not branches: whether a round finds
            // a change is a coin toss for the branch predictor.
            let accepted = cand & better;
            let ahead_accepted = accepted & u32::from(ahead[j]);
            let next_pass = (ahead_accepted == 0) as u32 & changed[j] as u32 & (pass[j] < 4) as u32;
            let take = ahead_accepted | (accepted & 0u32.wrapping_sub(next_pass));
            let step = take & take.wrapping_neg();
            for h in 0..per_sub {
                let m = v.lanes_set(step >> (V::LANES * h));
                let new_l = cand_l[a][h];
                l[j][h] = v.sel(m, new_l, l[j][h]);
                let new_wxl = v.mul(wx[j][h], new_l);
                let new_wl2 = v.mul(v.mul(w[j][h], new_l), new_l);
                wxl[j][h] = v.sel(m, new_wxl, wxl[j][h]);
                wl2[j][h] = v.sel(m, new_wl2, wl2[j][h]);
            }
            // Where the step lands, its sums become the state.
            sums[j] = [
                v.lane_at(cand_slx[a], step, sx),
                v.lane_at(cand_sl2[a], step, s2),
            ];
            pass[j] += next_pass as u8;
            // A round without a change ends ggml's search: its pass changed nothing.
            changed[j] = step != 0;
            ahead[j] = !(step | step.wrapping_sub(1)) as u16;
            active[kept] = j as u8;
            kept += (step != 0) as usize;
        }
        n_active = kept;
    }
    for (j, job) in jobs.iter_mut().enumerate() {
        for h in 0..per_sub {
            let li = v.add_i(v.to_i(l[j][h]), nmax);
            v.store_bytes(li, &mut job.l[V::LANES * h..]);
        }
        let [sumlx, suml2] = sums[j];
        job.scale = if suml2 > 0.0 { sumlx / suml2 } else { 0.0 };
    }
}

/// Q3_K's 6-bit scale levels `clamp(nearest_int(iscale·scale) as int8_t, -32, 31) + 32` per
/// lane (ggml stores the rounded value in an `int8_t`, keeping its low byte, before clamping).
#[inline(always)]
pub(crate) fn scale_levels<V: Vector>(v: V, iscale: V::F, scale: V::F) -> V::I {
    let byte = v.low_byte(v.nearest(v.mul(iscale, scale)));
    v.add_i(v.clamp_i(byte, -32, 31), 32)
}

/// Q3_K's block headers ([`super::q3k::block_header`]) of up to [`Vector::LANES`] blocks side
/// by side, one per lane, with their sub-block scales transposed into 16 vectors, so that each
/// block's search for its largest scale and its 16 roundings are plain vector steps rather
/// than a horizontal reduction, a scalar division and a chain of scalar packing per block.
/// Every step is the scalar one's (`q3_scales`, `pack_scales_q3`, fp16 round trip) on each
/// lane. Writes `y[b].scales`, `y[b].d` and block `b`'s sub-block steps `d·(l6 - 32)` (as the
/// dequantizer reads them back) to `steps[b]`.
#[inline(always)]
pub(crate) fn q3_headers<V: Vector>(
    v: V,
    scales: &[[f32; 16]],
    y: &mut [BlockQ3K],
    steps: &mut [[f32; 16]],
) {
    let n = scales.len();
    assert!(n <= V::LANES && y.len() == n && steps.len() == n);
    let zero = v.zero();
    let per_sub = 16 / V::LANES;
    // Scale `j` of every block in vector `j`.
    let mut s = [zero; 16];
    for h in 0..per_sub {
        let t = v.transpose(v.tile(|b| if b < n { v.ld(&scales[b], h) } else { zero }));
        for i in 0..V::LANES {
            s[V::LANES * h + i] = t[i];
        }
    }
    // The first scale of largest magnitude (a NaN never wins ggml's `>`, so `max` is not NaN).
    let (mut amax, mut max) = (zero, zero);
    for sj in s {
        let g = v.gt(v.abs(sj), amax);
        amax = v.sel(g, v.abs(sj), amax);
        max = v.sel(g, sj, max);
    }
    let all_zero = v.eq(max, zero);
    let iscale = v.div(v.splat(-32.0), max);
    // Plain loops rather than `std::array::from_fn`, whose closures would be compiled apart
    // from the caller's instruction set, with every intrinsic a call.
    let mut l6 = [v.cast_i(zero); 16];
    for j in 0..16 {
        l6[j] = v.zero_where(all_zero, scale_levels(v, iscale, s[j]));
    }
    // fp16 d = 1/iscale (0 for all-zero blocks), read back as the dequantizer reads it.
    let mut d_bits = [0u16; 16];
    let dd = v.to_f16(
        v.sel(all_zero, zero, v.div(v.splat(1.0), iscale)),
        &mut d_bits,
    );
    let mut per_sub_step = [zero; 16];
    for j in 0..16 {
        per_sub_step[j] = v.mul(dd, v.to_f(v.add_i(l6[j], -32)));
    }
    for h in 0..per_sub {
        let t = v.transpose(v.tile(|i| per_sub_step[V::LANES * h + i]));
        for b in 0..n {
            v.st(&mut steps[b], h, t[b]);
        }
    }
    // The 12 bytes of `pack_scales_q3`, byte `k` of every block in vector `k`: low nibbles of
    // scales j and j + 8, then bits 4-5 of scales m, m + 4, m + 8, m + 12.
    let mut bytes = [[0i8; 16]; 16];
    for k in 0..12 {
        let packed = if k < 8 {
            v.or_i(v.and_i(l6[k], 0xF), v.shl::<4>(v.and_i(l6[k + 8], 0xF)))
        } else {
            let top = |t: usize| v.and_i(v.shr::<4>(l6[k - 8 + 4 * t]), 3);
            v.or_i(
                v.or_i(top(0), v.shl::<2>(top(1))),
                v.or_i(v.shl::<4>(top(2)), v.shl::<6>(top(3))),
            )
        };
        v.store_bytes(packed, &mut bytes[k]);
    }
    let by_block = super::q3k::transpose_bytes(std::array::from_fn(|k| &bytes[k]));
    for b in 0..n {
        y[b].scales = std::array::from_fn(|k| by_block[b][k] as u8);
        y[b].d = d_bits[b];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quants::lanes::Portable;

    /// [`products_gt`] (with its slow path) against f32 arithmetic on one backend, on products
    /// spread from overflow down through the denormal range to underflow, with zeros,
    /// infinities and NaNs mixed in; returns the lanes checked.
    fn products_gt_matches<V: Vector>(v: V) -> usize {
        let mut seed = 0x2545_f491u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let value = |next: &mut dyn FnMut() -> u32| -> f32 {
            let r = next();
            match r % 64 {
                0 => 0.0,
                1 => -0.0,
                2 => f32::INFINITY,
                3 => f32::NAN,
                4 => f32::from_bits(r >> 9), // a denormal
                _ => {
                    // Exponents from 2^-90 to 2^60: products from overflow to below 2^-149.
                    let exp = 37 + (r >> 8) % 151;
                    f32::from_bits((r & 0x8000_0000) | (exp << 23) | (next() & 0x7f_ffff))
                }
            }
        };
        let mut checked = 0;
        for _ in 0..20_000 {
            let vals: [[f32; 16]; 4] =
                std::array::from_fn(|_| std::array::from_fn(|_| value(&mut next)));
            for k in 0..16 / V::LANES {
                let want = (0..V::LANES).fold(0u32, |m, t| {
                    let j = V::LANES * k + t;
                    m | ((((vals[0][j] * vals[1][j]) > (vals[2][j] * vals[3][j])) as u32) << t)
                });
                let [a, b, c, d] = vals.map(|r| v.ld(&r, k));
                let got = v.bits(products_gt(v, v.lanes_set(u32::MAX), a, b, c, d));
                assert_eq!(got, want, "{vals:?}");
                checked += V::LANES;
            }
        }
        checked
    }

    #[test]
    fn products_gt_matches_f32_arithmetic() {
        println!(
            "products_gt (portable): {} lanes",
            products_gt_matches(Portable)
        );
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = crate::quants::lanes::Avx2::detect() {
            println!("products_gt (avx2): {} lanes", products_gt_matches(avx2));
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(avx512) = crate::quants::lanes::Avx512::detect() {
            println!(
                "products_gt (avx512): {} lanes",
                products_gt_matches(avx512)
            );
        }
    }
}
