//! The scale searches of [`super::search`] run on `N` independent groups at once, for the fast
//! K-quant quantizers.
//!
//! ggml's searches are long chains of dependent f32 additions (each sum runs over a sub-block in
//! index order, and `make_qkx2_quants` even feeds each accepted candidate's minimum into the next
//! candidate), so a single search is latency-bound and cannot be reordered without changing the
//! bits. The sub-blocks of a super-block, however, are independent. Here the values are stored
//! transposed (`x[i][j]` = element `i` of group `j`) and every step is a loop over the `N` groups
//! that the compiler turns into SIMD lanes: each lane performs exactly the scalar search's
//! operations in exactly its order, so the results are bit-identical, while the lanes fill the
//! vector units. Branches become per-lane selects; a lane's "degenerate" or "all-zero" early
//! return is applied at the end (the work done meanwhile on that lane is discarded).
//!
//! Two super-blocks are searched together where that fills the vectors better
//! ([`FastBlock::quantize_pair`]): 16 or 32 lanes instead of 8 or 16, which also gives the
//! out-of-order core independent addition chains to overlap.
//!
//! This module holds the searches written once over the lane operations of
//! [`super::vector::Vector`] ([`qkx`], [`qx`], [`requant`], and the tiled
//! [`sums_of_squares_tiled`] and [`transpose16_tiled`]; Q3_K's searches, written the same
//! way, are in [`super::q3_lanes`]), and the dispatch: [`quantize_fast`] picks the AVX-512 or AVX2 backend
//! ([`super::lanes_avx512`], [`super::lanes_avx2`]) when the CPU has it, in a copy of the row
//! loop compiled for that instruction set (plain SSE2 is the x86-64 baseline), and the
//! backends instantiate the shared searches inside their `#[target_feature]` entries. The
//! instruction set changes only the vector width: Rust never contracts `a*b+c` into an FMA,
//! and every lane operation is an IEEE-exact equivalent of the scalar one.

#![allow(clippy::needless_range_loop)]

use super::kquants::{check_shapes, Super};
use super::search::GROUP_MAX_EPS;
use crate::blocks::QK_K;
use crate::fp::{nearest_int, ROUND_MAGIC};

use super::q3_lanes;
pub(crate) use super::q3_lanes::Q3Job;
pub(crate) use super::vector::Portable;
use super::vector::{Vector, MAX_GROUPS, MAX_VECTORS};

/// A way to run the lane searches: [`Portable`] (compiler-vectorised loops, any CPU) or, on
/// x86-64, [`Avx2`] / [`Avx512`] (explicit intrinsics; a value of one proves the CPU has the
/// instruction set).
pub(crate) trait Lanes: Copy {
    /// [`qkx`] on this backend.
    #[allow(clippy::too_many_arguments)]
    fn qkx<const N: usize, const M: usize>(
        self,
        x: &[[f32; N]; M],
        w: &[[f32; N]; M],
        nmax: i32,
        rmin: f32,
        rdelta: f32,
        nstep: i32,
        use_mad: bool,
        strict_degenerate: bool,
        scale_out: &mut [f32; N],
        the_min: &mut [f32; N],
        l_out: &mut [[u8; N]; M],
    );
    /// [`qx`] on this backend.
    fn qx<const N: usize, const M: usize>(
        self,
        x: &[[f32; N]; M],
        w: &[[f32; N]; M],
        nmax: i32,
        scale_out: &mut [f32; N],
        l_out: &mut [[i8; N]; M],
    );
    /// [`q3_lanes::q3`] on this backend.
    fn q3<const N: usize, const M: usize>(
        self,
        x: &[[f32; N]; M],
        nmax: i32,
        scale_out: &mut [f32; N],
        l_out: &mut [[i8; N]; M],
    );
    /// [`q3_lanes::q3_first`] on this backend: ggml's first rounding and the lanes whose first
    /// refinement pass might change a level (bit `j` of the result; never an all-zero group),
    /// which go to [`Lanes::q3_rest`]. The other lanes' searches end there: their scales
    /// (`scale_out`) are final and their levels are the first rounding's
    /// ([`Lanes::first_levels`]). `state` receives `iscale` (NaN for all-zero groups),
    /// `sumlx` and `suml2` after the first rounding, for both.
    #[inline(always)]
    fn q3_first<const N: usize, const M: usize>(
        self,
        x: &[[f32; N]; M],
        nmax: i32,
        scale_out: &mut [f32; N],
        state: &mut [[f32; N]; 3],
    ) -> u64 {
        q3_lanes::q3_first(Portable, x, nmax, scale_out, state)
    }
    /// [`q3_lanes::first_levels`] on this backend.
    #[inline(always)]
    fn first_levels(self, x: &[f32; 16], iscale: f32, nmax: i32) -> [i8; 16] {
        q3_lanes::first_levels(Portable, x, iscale, nmax)
    }
    /// Finishes the searches [`Lanes::q3_first`] left unsettled. This default searches them
    /// again from the start, 32 side by side with [`Lanes::q3`] ([`q3_gathered`]).
    #[inline(always)]
    fn q3_rest(self, jobs: &mut [Q3Job<'_>], nmax: i32) {
        q3_gathered(self, jobs, nmax)
    }
    /// [`qx16_candidates`] on this backend.
    #[inline(always)]
    fn qx16_candidates(self, x: &[f32; 16], w: &[f32; 16], nmax: i32, l: &mut [i8; 16]) -> f32 {
        qx16_candidates(x, w, nmax, l)
    }
    /// [`super::q3k::q3_scales`] on this backend.
    #[inline(always)]
    fn q3_scales(self, scales: &[f32; 16]) -> Option<([i32; 16], f32)> {
        super::q3k::q3_scales(scales)
    }
    /// Q3_K's block headers for `y.len()` blocks ([`super::q3k::block_header`] of
    /// `scales[b]`, with each block's sub-block steps in `steps[b]`): [`q3_lanes::q3_headers`]
    /// on this backend.
    #[inline(always)]
    fn q3_headers(
        self,
        scales: &[[f32; 16]],
        y: &mut [crate::blocks::BlockQ3K],
        steps: &mut [[f32; 16]],
    ) {
        let lanes = <Portable as Vector>::LANES;
        for ((s, yb), d) in scales
            .chunks(lanes)
            .zip(y.chunks_mut(lanes))
            .zip(steps.chunks_mut(lanes))
        {
            q3_lanes::q3_headers(Portable, s, yb, d);
        }
    }
    /// [`requant`] on this backend.
    fn requant(self, x: &Super, d: &[f32; 16], nmax: i32, l: &mut [i8; QK_K]) -> u16;
    /// [`sums_of_squares`] on this backend.
    #[inline(always)]
    fn sums_of_squares(self, x: &[f32], out: &mut [f32]) {
        sums_of_squares(x, out)
    }
    /// [`transpose_blocks`] for sub-blocks of 16, on this backend.
    #[inline(always)]
    fn transpose16<const N: usize, const B: usize>(self, x: [&Super; B]) -> [[f32; N]; 16] {
        transpose_blocks::<N, 16, B>(x)
    }
}

impl Lanes for Portable {
    #[inline(always)]
    fn qkx<const N: usize, const M: usize>(
        self,
        x: &[[f32; N]; M],
        w: &[[f32; N]; M],
        nmax: i32,
        rmin: f32,
        rdelta: f32,
        nstep: i32,
        use_mad: bool,
        strict_degenerate: bool,
        scale_out: &mut [f32; N],
        the_min: &mut [f32; N],
        l_out: &mut [[u8; N]; M],
    ) {
        qkx(
            self,
            x,
            w,
            nmax,
            rmin,
            rdelta,
            nstep,
            use_mad,
            strict_degenerate,
            scale_out,
            the_min,
            l_out,
        )
    }
    #[inline(always)]
    fn qx<const N: usize, const M: usize>(
        self,
        x: &[[f32; N]; M],
        w: &[[f32; N]; M],
        nmax: i32,
        scale_out: &mut [f32; N],
        l_out: &mut [[i8; N]; M],
    ) {
        qx(self, x, w, nmax, scale_out, l_out)
    }
    #[inline(always)]
    fn q3<const N: usize, const M: usize>(
        self,
        x: &[[f32; N]; M],
        nmax: i32,
        scale_out: &mut [f32; N],
        l_out: &mut [[i8; N]; M],
    ) {
        q3_lanes::q3(self, x, nmax, scale_out, l_out)
    }
    #[inline(always)]
    fn requant(self, x: &Super, d: &[f32; 16], nmax: i32, l: &mut [i8; QK_K]) -> u16 {
        requant(self, x, d, nmax, l)
    }
}

/// The AVX2 backend ([`super::lanes_avx2`]). Only [`Avx2::detect`] makes one, after checking
/// the CPU, which is what makes calling the AVX2 functions through it sound.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Avx2(());

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    /// The token, if this CPU has AVX2.
    #[inline]
    pub(crate) fn detect() -> Option<Self> {
        std::arch::is_x86_feature_detected!("avx2").then_some(Avx2(()))
    }
}

/// The [`Lanes`] impl of an x86 backend token: each search calls the backend module's
/// `#[target_feature]` entry. With `narrow`, searches over a number of groups that is not a
/// multiple of the vector width go to the narrower backend instead. `$extra` holds the
/// methods only this backend overrides.
#[cfg(target_arch = "x86_64")]
macro_rules! x86_lanes {
    ($token:ident, $module:ident $(, narrow: $narrow:ident)?; $($extra:tt)*) => {
        impl Lanes for $token {
            #[inline(always)]
            fn qkx<const N: usize, const M: usize>(
                self,
                x: &[[f32; N]; M],
                w: &[[f32; N]; M],
                nmax: i32,
                rmin: f32,
                rdelta: f32,
                nstep: i32,
                use_mad: bool,
                strict_degenerate: bool,
                scale_out: &mut [f32; N],
                the_min: &mut [f32; N],
                l_out: &mut [[u8; N]; M],
            ) {
                $(if !N.is_multiple_of(<$token as Vector>::LANES) {
                    return self.$narrow().qkx(
                        x, w, nmax, rmin, rdelta, nstep, use_mad, strict_degenerate, scale_out,
                        the_min, l_out,
                    );
                })?
                // SAFETY: `self` exists only if the CPU has the instruction set (`detect`).
                unsafe {
                    super::$module::qkx(
                        self, x, w, nmax, rmin, rdelta, nstep, use_mad, strict_degenerate,
                        scale_out, the_min, l_out,
                    )
                }
            }
            #[inline(always)]
            fn qx<const N: usize, const M: usize>(
                self,
                x: &[[f32; N]; M],
                w: &[[f32; N]; M],
                nmax: i32,
                scale_out: &mut [f32; N],
                l_out: &mut [[i8; N]; M],
            ) {
                $(if !N.is_multiple_of(<$token as Vector>::LANES) {
                    return self.$narrow().qx(x, w, nmax, scale_out, l_out);
                })?
                // SAFETY: `self` exists only if the CPU has the instruction set (`detect`).
                unsafe { super::$module::qx(self, x, w, nmax, scale_out, l_out) }
            }
            #[inline(always)]
            fn q3<const N: usize, const M: usize>(
                self,
                x: &[[f32; N]; M],
                nmax: i32,
                scale_out: &mut [f32; N],
                l_out: &mut [[i8; N]; M],
            ) {
                $(if !N.is_multiple_of(<$token as Vector>::LANES) {
                    return self.$narrow().q3(x, nmax, scale_out, l_out);
                })?
                // SAFETY: `self` exists only if the CPU has the instruction set (`detect`).
                unsafe { super::$module::q3(self, x, nmax, scale_out, l_out) }
            }
            #[inline(always)]
            fn requant(self, x: &Super, d: &[f32; 16], nmax: i32, l: &mut [i8; QK_K]) -> u16 {
                // SAFETY: `self` exists only if the CPU has the instruction set (`detect`).
                unsafe { super::$module::requant(self, x, d, nmax, l) }
            }
            #[inline(always)]
            fn q3_first<const N: usize, const M: usize>(
                self,
                x: &[[f32; N]; M],
                nmax: i32,
                scale_out: &mut [f32; N],
                state: &mut [[f32; N]; 3],
            ) -> u64 {
                $(if !N.is_multiple_of(<$token as Vector>::LANES) {
                    return self.$narrow().q3_first(x, nmax, scale_out, state);
                })?
                // SAFETY: `self` exists only if the CPU has the instruction set (`detect`).
                unsafe { super::$module::q3_first(self, x, nmax, scale_out, state) }
            }
            #[inline(always)]
            fn q3_rest(self, jobs: &mut [Q3Job<'_>], nmax: i32) {
                // SAFETY: `self` exists only if the CPU has the instruction set (`detect`).
                unsafe { super::$module::q3_rest(self, jobs, nmax) }
            }
            #[inline(always)]
            fn first_levels(self, x: &[f32; 16], iscale: f32, nmax: i32) -> [i8; 16] {
                // SAFETY: `self` exists only if the CPU has the instruction set (`detect`).
                unsafe { super::$module::first_levels(self, x, iscale, nmax) }
            }
            #[inline(always)]
            fn q3_headers(
                self,
                scales: &[[f32; 16]],
                y: &mut [crate::blocks::BlockQ3K],
                steps: &mut [[f32; 16]],
            ) {
                let lanes = <$token as Vector>::LANES;
                for ((s, yb), d) in scales
                    .chunks(lanes)
                    .zip(y.chunks_mut(lanes))
                    .zip(steps.chunks_mut(lanes))
                {
                    // SAFETY: `self` exists only if the CPU has the instruction set (`detect`).
                    unsafe { super::$module::q3_headers(self, s, yb, d) }
                }
            }
            #[inline(always)]
            fn sums_of_squares(self, x: &[f32], out: &mut [f32]) {
                // SAFETY: `self` exists only if the CPU has the instruction set (`detect`).
                unsafe { super::$module::sums_of_squares(self, x, out) }
            }
            #[inline(always)]
            fn transpose16<const N: usize, const B: usize>(
                self,
                x: [&Super; B],
            ) -> [[f32; N]; 16] {
                // Inlined into the caller's `#[target_feature]` code (no entry of its own: as a
                // separate function, its result went through memory).
                transpose16_tiled(self, x)
            }
            $($extra)*
        }
    };
}

#[cfg(target_arch = "x86_64")]
x86_lanes!(Avx2, lanes_avx2;);

/// The AVX-512 backend ([`super::lanes_avx512`]) for searches over a multiple of 16 groups;
/// others (Q4_K/Q5_K's 8 sub-blocks of a lone super-block) go to the [`Avx2`] kernels. Only [`Avx512::detect`] makes one, after checking the CPU.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Avx512(());

#[cfg(target_arch = "x86_64")]
impl Avx512 {
    /// The token, inside code compiled for AVX-512F: such code runs only after a check found it
    /// (a safe `target_feature` function can be called safely only from code with the
    /// feature).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn within() -> Self {
        Avx512(())
    }

    /// The token, if this CPU has AVX-512F (and AVX2, which every such CPU has).
    #[inline]
    pub(crate) fn detect() -> Option<Self> {
        (std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx2"))
        .then_some(Avx512(()))
    }

    /// The AVX2 backend, for searches that do not fill a 512-bit vector.
    #[inline(always)]
    fn avx2(self) -> Avx2 {
        Avx2(())
    }
}

#[cfg(target_arch = "x86_64")]
x86_lanes!(Avx512, lanes_avx512, narrow: avx2;
    #[inline(always)]
    fn qx16_candidates(self, x: &[f32; 16], w: &[f32; 16], nmax: i32, l: &mut [i8; 16]) -> f32 {
        // SAFETY: `self` exists only if the CPU has AVX-512F (see `Avx512::detect`).
        unsafe { super::lanes_avx512::qx16_candidates(x, w, nmax, l) }
    }
    #[inline(always)]
    fn q3_scales(self, scales: &[f32; 16]) -> Option<([i32; 16], f32)> {
        // SAFETY: `self` exists only if the CPU has AVX-512F (see `Avx512::detect`).
        unsafe { super::lanes_avx512::q3_scales(scales) }
    }
);

/// [`Lanes::q3_rest`] by searching the jobs again from the start, 32 side by side with
/// `lanes.q3` (unused lanes hold zeros, an all-zero group whose result is dropped).
#[inline(always)]
pub(crate) fn q3_gathered<L: Lanes>(lanes: L, jobs: &mut [Q3Job<'_>], nmax: i32) {
    for group in jobs.chunks_mut(32) {
        let mut xt = [[0f32; 32]; 16];
        for (c, job) in group.iter().enumerate() {
            for i in 0..16 {
                xt[i][c] = job.x[i];
            }
        }
        let (mut scale, mut l) = ([0f32; 32], [[0i8; 32]; 16]);
        lanes.q3(&xt, nmax, &mut scale, &mut l);
        for (c, job) in group.iter_mut().enumerate() {
            job.scale = scale[c];
            for i in 0..16 {
                job.l[i] = l[i][c];
            }
        }
    }
}

/// One K-quant's fast super-block quantizer, for [`quantize_fast`]. `quantize` must be
/// `#[inline(always)]` so that it is compiled into [`quantize_fast`]'s AVX2 instance.
pub(crate) trait FastBlock {
    type Block;
    /// ggml's type name, for error messages.
    const NAME: &'static str;
    /// Whether the weighted path uses each block's Σx² ([`Weights::sumx2`]; left zero when
    /// not, which saves forming the sums).
    const USES_SUMX2: bool = true;
    /// Quantizes one super-block; `qw` holds the importance weights of its 256 columns.
    fn quantize<L: Lanes>(lanes: L, x: &Super, y: &mut Self::Block, qw: Option<Weights<'_, 1>>);

    /// Quantizes two super-blocks. Types whose search fills only half the lanes of two
    /// vectors (8 sub-blocks) override this to search both blocks at once, which hides the
    /// latency of the searches' sequential sums; the others quantize one after the other.
    #[inline(always)]
    fn quantize_pair<L: Lanes>(
        lanes: L,
        x: [&Super; 2],
        y: [&mut Self::Block; 2],
        qw: Option<Weights<'_, 2>>,
    ) {
        let [y0, y1] = y;
        Self::quantize(lanes, x[0], y0, qw.map(|w| w.block(0)));
        Self::quantize(lanes, x[1], y1, qw.map(|w| w.block(1)));
    }

    /// Quantizes the `y.len()` super-blocks of `x` without importance weights. Types whose
    /// search has a cheap common case and a rare slow one override this to gather the slow
    /// lanes of many blocks into full vectors.
    #[inline(always)]
    fn quantize_plain<L: Lanes>(lanes: L, x: &[f32], y: &mut [Self::Block])
    where
        Self: Sized,
    {
        pairs::<Self, L>(lanes, x, y, None);
    }
}

/// The importance weights of `B` super-blocks' columns, with each block's Σx² in index order
/// (ggml's `sumx2`, from which the weighted paths derive `sigma2`). The sums are one long
/// chain of additions per block, so [`rows`] forms them for many blocks at once, where the
/// chains overlap, rather than block by block on the critical path.
#[derive(Clone, Copy)]
pub(crate) struct Weights<'a, const B: usize> {
    pub(crate) qw: [&'a Super; B],
    pub(crate) sumx2: [f32; B],
}

impl<'a> Weights<'a, 2> {
    /// Block `b`'s share.
    #[inline(always)]
    pub(crate) fn block(self, b: usize) -> Weights<'a, 1> {
        Weights {
            qw: [self.qw[b]],
            sumx2: [self.sumx2[b]],
        }
    }
}

/// Quantizes rows with `Q::quantize` on the backend of the active kernel path
/// ([`crate::simd::active_path`]: the best the CPU has unless `G4Q_SIMD` names another):
/// [`Avx512`] or [`Avx2`] in a copy of the row loop compiled for that instruction set,
/// [`Portable`] for `scalar` and the NEON paths. An invalid `G4Q_SIMD` is reported by
/// [`crate::quantize_rows`] before anything is quantized; here it falls back to the best path.
/// Checks shapes like the reference quantizers ([`super::kquants`]).
pub(crate) fn quantize_fast<Q: FastBlock>(x: &[f32], y: &mut [Q::Block], imatrix: Option<&[f32]>) {
    let blocks_per_row = check_shapes(Q::NAME, x.len(), y.len(), imatrix);
    #[cfg(target_arch = "x86_64")]
    {
        let path = crate::simd::active_path().unwrap_or_else(|_| crate::simd::best_path());
        if path == crate::simd::Path::Avx512 {
            if let Some(avx512) = Avx512::detect() {
                // SAFETY: the token proves the CPU supports AVX-512F and AVX2.
                return unsafe { rows_avx512::<Q>(avx512, x, y, imatrix, blocks_per_row) };
            }
        }
        if matches!(path, crate::simd::Path::Avx512 | crate::simd::Path::Avx2) {
            if let Some(avx2) = Avx2::detect() {
                // SAFETY: the token proves the CPU supports AVX2.
                return unsafe { rows_avx2::<Q>(avx2, x, y, imatrix, blocks_per_row) };
            }
        }
    }
    rows::<Q, Portable>(Portable, x, y, imatrix, blocks_per_row)
}

/// [`rows`] compiled with AVX-512F, so that the scalar parts of the block quantizers also use it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f")]
fn rows_avx512<Q: FastBlock>(
    avx512: Avx512,
    x: &[f32],
    y: &mut [Q::Block],
    imatrix: Option<&[f32]>,
    blocks_per_row: usize,
) {
    rows::<Q, Avx512>(avx512, x, y, imatrix, blocks_per_row)
}

/// [`rows`] compiled with AVX2, so that the scalar parts of the block quantizers also use it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn rows_avx2<Q: FastBlock>(
    avx2: Avx2,
    x: &[f32],
    y: &mut [Q::Block],
    imatrix: Option<&[f32]>,
    blocks_per_row: usize,
) {
    rows::<Q, Avx2>(avx2, x, y, imatrix, blocks_per_row)
}

/// [`quantize_fast`] on a chosen backend, so tests can check the portable one on CPUs that
/// have AVX2.
#[cfg(test)]
pub(crate) fn quantize_with<Q: FastBlock, L: Lanes>(
    lanes: L,
    x: &[f32],
    y: &mut [Q::Block],
    imatrix: Option<&[f32]>,
) {
    let blocks_per_row = check_shapes(Q::NAME, x.len(), y.len(), imatrix);
    rows::<Q, L>(lanes, x, y, imatrix, blocks_per_row)
}

#[inline(always)]
fn rows<Q: FastBlock, L: Lanes>(
    lanes: L,
    x: &[f32],
    y: &mut [Q::Block],
    imatrix: Option<&[f32]>,
    blocks_per_row: usize,
) {
    match imatrix {
        None => Q::quantize_plain(lanes, x, y),
        Some(qw) => {
            let mut sumx2 = vec![0.0; y.len()];
            if Q::USES_SUMX2 {
                lanes.sums_of_squares(x, &mut sumx2);
            }
            pairs::<Q, L>(lanes, x, y, Some((qw, blocks_per_row, &sumx2)));
        }
    }
}

/// Quantizes `y.len()` super-blocks of `x` two at a time ([`FastBlock::quantize_pair`]), the
/// last one of an odd count alone. `weighted` holds the importance matrix (one weight per
/// column of a row of `blocks_per_row` blocks) and each block's Σx².
#[inline(always)]
pub(crate) fn pairs<Q: FastBlock, L: Lanes>(
    lanes: L,
    x: &[f32],
    y: &mut [Q::Block],
    weighted: Option<(&[f32], usize, &[f32])>,
) {
    let block_x = |ib: usize| -> &Super {
        x[ib * QK_K..(ib + 1) * QK_K]
            .try_into()
            .expect("a QK_K slice")
    };
    let block_w = |ib: usize| -> Option<Weights<'_, 1>> {
        weighted.map(|(qw, blocks_per_row, sumx2)| {
            let col = (ib % blocks_per_row) * QK_K;
            Weights {
                qw: [qw[col..col + QK_K].try_into().expect("a QK_K slice")],
                sumx2: [sumx2[ib]],
            }
        })
    };
    let last_block = y.len().wrapping_sub(1);
    let mut chunks = y.chunks_exact_mut(2);
    for (p, yp) in (&mut chunks).enumerate() {
        let (ia, ib) = (2 * p, 2 * p + 1);
        let (ya, yb) = yp.split_at_mut(1);
        let qw = match (block_w(ia), block_w(ib)) {
            (Some(a), Some(b)) => Some(Weights {
                qw: [a.qw[0], b.qw[0]],
                sumx2: [a.sumx2[0], b.sumx2[0]],
            }),
            _ => None,
        };
        Q::quantize_pair(
            lanes,
            [block_x(ia), block_x(ib)],
            [&mut ya[0], &mut yb[0]],
            qw,
        );
    }
    if let [last] = chunks.into_remainder() {
        Q::quantize(lanes, block_x(last_block), last, block_w(last_block));
    }
}

/// Transposes `N` consecutive groups of `M` values into lane order: `out[i][j] = x[M*j + i]`
/// (the tests' view of [`transpose_blocks`] for arbitrary groups).
#[cfg(test)]
fn transpose<const N: usize, const M: usize>(x: &[f32]) -> [[f32; N]; M] {
    let mut out = [[0f32; N]; M];
    for j in 0..N {
        for i in 0..M {
            out[i][j] = x[M * j + i];
        }
    }
    out
}

/// Transposes `B` super-blocks, each `N / B` groups of `M` values, into lane order:
/// `out[i][(N/B)*b + j] = x[b][M*j + i]` (lanes `(N/B)*b ..` belong to block `b`).
#[inline(always)]
pub(crate) fn transpose_blocks<const N: usize, const M: usize, const B: usize>(
    x: [&Super; B],
) -> [[f32; N]; M] {
    let g = N / B;
    let mut out = [[0f32; N]; M];
    for b in 0..B {
        for j in 0..g {
            for i in 0..M {
                out[i][g * b + j] = x[b][M * j + i];
            }
        }
    }
    out
}

/// Block `b`'s levels from lane order back to element order (the inverse of
/// [`transpose_blocks`] for one block of `N / B` groups).
#[inline(always)]
pub(crate) fn block_levels<T: Copy + Default, const N: usize, const M: usize, const B: usize>(
    lt: &[[T; N]; M],
    b: usize,
) -> [T; QK_K] {
    let g = N / B;
    let mut l = [T::default(); QK_K];
    for j in 0..g {
        for i in 0..M {
            l[M * j + i] = lt[i][g * b + j];
        }
    }
    l
}

/// Block `b`'s 16 per-group values out of `B` blocks' lanes.
#[inline(always)]
pub(crate) fn block_lanes16<const N: usize, const B: usize>(v: &[f32; N], b: usize) -> [f32; 16] {
    std::array::from_fn(|j| v[(N / B) * b + j])
}

/// Σx² of each super-block of `x` (`out.len()` blocks), each sum in index order (ggml's
/// `sumx2`); the chains of eight blocks at a time are interleaved, which hides the addition
/// latency without changing any sum.
#[inline(always)]
pub(crate) fn sums_of_squares(x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len() * QK_K);
    for (xs, sums) in x.chunks(8 * QK_K).zip(out.chunks_mut(8)) {
        let mut s = [0f32; 8];
        for i in 0..QK_K {
            for b in 0..sums.len() {
                s[b] += xs[b * QK_K + i] * xs[b * QK_K + i];
            }
        }
        sums.copy_from_slice(&s[..sums.len()]);
    }
}

/// Σx² of each super-block as [`sums_of_squares`] computes it, [`Vector::LANES`] blocks at a
/// time with one block per lane: each tile (`LANES` consecutive values of `LANES` blocks) is
/// transposed so that every vector addition adds the next value of each block, in index order.
/// The blocks left over go to [`sums_of_squares`].
#[inline(always)]
pub(crate) fn sums_of_squares_tiled<V: Vector>(v: V, x: &[f32], out: &mut [f32]) {
    let n = V::LANES;
    assert_eq!(x.len(), out.len() * QK_K);
    let whole = out.len() / n * n;
    for (xs, sums) in x.chunks_exact(n * QK_K).zip(out.chunks_exact_mut(n)) {
        let mut acc = v.zero();
        for t in 0..QK_K / n {
            let cols = v.transpose(v.tile(|b| v.load(&xs[QK_K * b + n * t..])));
            for i in 0..n {
                acc = v.add(acc, v.mul(cols[i], cols[i]));
            }
        }
        v.store(acc, sums);
    }
    sums_of_squares(&x[whole * QK_K..], &mut out[whole..]);
}

/// [`transpose_blocks`] for sub-blocks of 16: each super-block's 16×16 matrix (row `j` =
/// sub-block `j`) as `(16 / LANES)²` tiles transposed in registers ([`Vector::transpose`])
/// instead of 256 scalar moves.
#[inline(always)]
pub(crate) fn transpose16_tiled<V: Vector, const N: usize, const B: usize>(
    v: V,
    x: [&Super; B],
) -> [[f32; N]; 16] {
    let n = V::LANES;
    let tiles = 16 / n;
    assert!(N == 16 * B && tiles * n == 16);
    let mut out = [[0f32; N]; 16];
    for (b, xb) in x.into_iter().enumerate() {
        for jh in 0..tiles {
            for ih in 0..tiles {
                let cols = v.transpose(v.tile(|j| v.load(&xb[16 * (n * jh + j) + n * ih..])));
                for t in 0..n {
                    v.st(&mut out[n * ih + t], tiles * b + jh, cols[t]);
                }
            }
        }
    }
    out
}

/// The `#[target_feature]` entries of the searches written once ([`qkx`], [`qx`], [`requant`],
/// [`sums_of_squares_tiled`] and the Q3_K searches of [`super::q3_lanes`])
/// for one x86 backend: each instantiates the generic search with the backend's token, so its
/// body is compiled for that instruction set. Callers need the token, and `unsafe` for the
/// target feature.
#[cfg(target_arch = "x86_64")]
macro_rules! search_entries {
    ($token:ty, $feature:literal) => {
        /// [`lanes::qkx`] compiled for this backend.
        #[allow(clippy::too_many_arguments)]
        #[inline]
        #[target_feature(enable = $feature)]
        pub(crate) fn qkx<const N: usize, const M: usize>(
            t: $token,
            x: &[[f32; N]; M],
            w: &[[f32; N]; M],
            nmax: i32,
            rmin: f32,
            rdelta: f32,
            nstep: i32,
            use_mad: bool,
            strict_degenerate: bool,
            scale_out: &mut [f32; N],
            the_min: &mut [f32; N],
            l_out: &mut [[u8; N]; M],
        ) {
            lanes::qkx(
                t,
                x,
                w,
                nmax,
                rmin,
                rdelta,
                nstep,
                use_mad,
                strict_degenerate,
                scale_out,
                the_min,
                l_out,
            )
        }

        /// [`lanes::qx`] compiled for this backend.
        #[inline]
        #[target_feature(enable = $feature)]
        pub(crate) fn qx<const N: usize, const M: usize>(
            t: $token,
            x: &[[f32; N]; M],
            w: &[[f32; N]; M],
            nmax: i32,
            scale_out: &mut [f32; N],
            l_out: &mut [[i8; N]; M],
        ) {
            lanes::qx(t, x, w, nmax, scale_out, l_out)
        }

        /// [`lanes::requant`] compiled for this backend.
        #[inline]
        #[target_feature(enable = $feature)]
        pub(crate) fn requant(
            t: $token,
            x: &[f32; 256],
            d: &[f32; 16],
            nmax: i32,
            l: &mut [i8; 256],
        ) -> u16 {
            lanes::requant(t, x, d, nmax, l)
        }

        /// [`lanes::sums_of_squares_tiled`] compiled for this backend.
        #[inline]
        #[target_feature(enable = $feature)]
        pub(crate) fn sums_of_squares(t: $token, x: &[f32], out: &mut [f32]) {
            lanes::sums_of_squares_tiled(t, x, out)
        }

        /// [`super::q3_lanes::q3`] compiled for this backend.
        #[inline]
        #[target_feature(enable = $feature)]
        pub(crate) fn q3<const N: usize, const M: usize>(
            t: $token,
            x: &[[f32; N]; M],
            nmax: i32,
            scale_out: &mut [f32; N],
            l_out: &mut [[i8; N]; M],
        ) {
            super::q3_lanes::q3(t, x, nmax, scale_out, l_out)
        }

        /// [`super::q3_lanes::q3_first`] compiled for this backend.
        #[inline]
        #[target_feature(enable = $feature)]
        pub(crate) fn q3_first<const N: usize, const M: usize>(
            t: $token,
            x: &[[f32; N]; M],
            nmax: i32,
            scale_out: &mut [f32; N],
            state: &mut [[f32; N]; 3],
        ) -> u64 {
            super::q3_lanes::q3_first(t, x, nmax, scale_out, state)
        }

        /// [`super::q3_lanes::q3_rest`] compiled for this backend.
        #[inline]
        #[target_feature(enable = $feature)]
        pub(crate) fn q3_rest(t: $token, jobs: &mut [super::q3_lanes::Q3Job<'_>], nmax: i32) {
            super::q3_lanes::q3_rest(t, jobs, nmax)
        }

        /// [`super::q3_lanes::q3_headers`] compiled for this backend.
        #[inline]
        #[target_feature(enable = $feature)]
        pub(crate) fn q3_headers(
            t: $token,
            scales: &[[f32; 16]],
            y: &mut [crate::blocks::BlockQ3K],
            steps: &mut [[f32; 16]],
        ) {
            super::q3_lanes::q3_headers(t, scales, y, steps)
        }

        /// [`super::q3_lanes::first_levels`] compiled for this backend.
        #[inline]
        #[target_feature(enable = $feature)]
        pub(crate) fn first_levels(t: $token, x: &[f32; 16], iscale: f32, nmax: i32) -> [i8; 16] {
            super::q3_lanes::first_levels(t, x, iscale, nmax)
        }
    };
}
#[cfg(target_arch = "x86_64")]
pub(crate) use search_entries;

/// The symmetric K-quants' last step (Q3_K, Q6_K): re-round one super-block against the
/// sixteen final sub-block scales, `l[16j+i] = clamp(nearest_int(x[16j+i] / d[j]), -nmax,
/// nmax-1) + nmax`, for every sub-block whose `d[j]` is not zero. Returns the mask of the
/// sub-blocks left untouched (bit `j` for `d[j] == 0`), which keep the search's levels.
///
/// The quotient `x / d` is formed as `x · (1/d)` with one division per super-block, which can
/// differ from the correctly rounded quotient by `|x/d| · 2^-23`; `d` is an f16 times a small
/// integer, so `1/d` is a normal float. A lane whose product lies within [`REQUANT_TOL`] of a
/// rounding boundary (or is huge, infinite or NaN) could round differently, so any vector
/// holding such a lane is redone with the true division and ggml's `nearest_int`; every
/// other lane provably rounds to the same integer. Clamping to `[-nmax - 0.25, nmax - 0.75]`
/// before rounding applies ggml's clamp, and adding [`ROUND_MAGIC`]` + nmax` leaves
/// `level + nmax` in the low byte of the sum's bits.
#[inline(always)]
pub(crate) fn requant<V: Vector>(
    v: V,
    x: &Super,
    d: &[f32; 16],
    nmax: i32,
    l: &mut [i8; QK_K],
) -> u16 {
    let per_sub = 16 / V::LANES;
    let mut r = [0f32; 16];
    let mut skipped = 0u16;
    for k in 0..per_sub {
        let dv = v.ld(d, k);
        v.st(&mut r, k, v.div(v.splat(1.0), dv));
        skipped |= (v.bits(v.eq(dv, v.zero())) << (V::LANES * k)) as u16;
    }
    let magic = v.splat(ROUND_MAGIC + nmax as f32);
    let (lo, hi) = (v.splat(-(nmax as f32) - 0.25), v.splat(nmax as f32 - 0.75));
    let (limit, bound) = (v.splat(REQUANT_FAR), v.splat(0.5 - REQUANT_TOL));
    let all = (1u32 << V::LANES) - 1;
    for j in 0..16 {
        if skipped & (1 << j) != 0 {
            continue;
        }
        let xs: &[f32; 16] = x[16 * j..16 * j + 16].try_into().expect("16 values");
        for k in 0..per_sub {
            let xv = v.ld(xs, k);
            let q = v.mul(xv, v.splat(r[j]));
            let qc = v.min(v.max(q, lo), hi);
            let t = v.add(qc, magic);
            let off = v.abs(v.sub(qc, v.sub(t, magic)));
            let safe = v.and(v.lt(v.abs(q), limit), v.lt(off, bound));
            let bits = if v.bits(safe) == all {
                v.cast_i(t)
            } else {
                let exact = v.div(xv, v.splat(d[j]));
                v.add_i(v.round_clamp(exact, -nmax, nmax - 1), nmax)
            };
            v.store_bytes(bits, &mut l[16 * j + V::LANES * k..]);
        }
    }
    skipped
}

/// How close to a rounding boundary `x · (1/d)` may come before [`requant`] divides: above the
/// product's error `|x/d| · 2^-23 ≤ 2^-17` for `|x/d| ≤ 32.25`, plus half an ulp of the true
/// quotient there.
const REQUANT_TOL: f32 = 1.0 / 16384.0;

/// Products from `2^20` up (and infinities, NaN) take [`requant`]'s exact path.
const REQUANT_FAR: f32 = 1_048_576.0;

/// `nearest_int` then `clamp(lo, hi)`, as ggml's `MAX(lo, MIN(hi, nearest_int(v)))`.
#[inline(always)]
fn round_clamp(v: f32, lo: i32, hi: i32) -> i32 {
    nearest_int(v).clamp(lo, hi)
}

/// `make_qkx2_quants` (`strict_degenerate`) / `make_qkx3_quants` with explicit weights on `N`
/// groups of `M` values. Writes each group's scale, `the_min` and levels (`l[i][j]`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn qkx<V: Vector, const N: usize, const M: usize>(
    v: V,
    x: &[[f32; N]; M],
    w: &[[f32; N]; M],
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
    strict_degenerate: bool,
    scale_out: &mut [f32; N],
    the_min: &mut [f32; N],
    l_out: &mut [[u8; N]; M],
) {
    // The error measure is a constant of each instantiation, so that its choice is made once
    // and not in the error loops: the compiler does not always hoist it (it left the test in
    // the AVX2 error loop of the 32-group search, 2-4 % on Q2_K).
    let search = if use_mad {
        qkx_search::<V, true, N, M>
    } else {
        qkx_search::<V, false, N, M>
    };
    let params = (nmax, rmin, rdelta, nstep, strict_degenerate);
    search(v, x, w, params, scale_out, the_min, l_out)
}

/// The error term of one element: |d| with `MAD`, d² otherwise.
#[inline(always)]
fn err<V: Vector, const MAD: bool>(v: V, d: V::F) -> V::F {
    if MAD {
        v.abs(d)
    } else {
        v.mul(d, d)
    }
}

/// [`qkx`] for one error measure (`MAD`: `use_mad`).
#[inline(always)]
fn qkx_search<V: Vector, const MAD: bool, const N: usize, const M: usize>(
    v: V,
    x: &[[f32; N]; M],
    w: &[[f32; N]; M],
    (nmax, rmin, rdelta, nstep, strict_degenerate): (i32, f32, f32, i32, bool),
    scale_out: &mut [f32; N],
    the_min: &mut [f32; N],
    l_out: &mut [[u8; N]; M],
) {
    let kk = N / V::LANES;
    assert!(N.is_multiple_of(V::LANES) && N <= MAX_GROUPS && M > 0);
    let zero = v.zero();
    let (mut min, mut max, mut sum_w, mut sum_x) =
        (v.row(zero), v.row(zero), v.row(zero), v.row(zero));
    for k in 0..kk {
        min[k] = v.ld(&x[0], k);
        max[k] = min[k];
        sum_w[k] = v.ld(&w[0], k);
        sum_x[k] = v.mul(sum_w[k], min[k]);
    }
    for i in 1..M {
        for k in 0..kk {
            let xv = v.ld(&x[i], k);
            min[k] = v.sel(v.lt(xv, min[k]), xv, min[k]);
            max[k] = v.sel(v.gt(xv, max[k]), xv, max[k]);
            let wv = v.ld(&w[i], k);
            sum_w[k] = v.add(sum_w[k], wv);
            sum_x[k] = v.add(sum_x[k], v.mul(wv, xv));
        }
    }
    let nmaxf = v.splat(nmax as f32);
    let mut degenerate = [v.none(); MAX_VECTORS];
    let (mut iscale, mut scale, mut best_error) = (v.row(zero), v.row(zero), v.row(zero));
    for k in 0..kk {
        min[k] = v.sel(v.gt(min[k], zero), zero, min[k]);
        degenerate[k] = if strict_degenerate {
            v.eq(max[k], min[k])
        } else {
            v.le(max[k], min[k])
        };
        iscale[k] = v.div(nmaxf, v.sub(max[k], min[k]));
        scale[k] = v.div(v.splat(1.0), iscale[k]);
    }
    // What a degenerate group reports as `the_min` (the search on its lane is discarded).
    let min0 = min;
    for i in 0..M {
        for k in 0..kk {
            let xv = v.ld(&x[i], k);
            let l = v.round_clamp_f(v.mul(iscale[k], v.sub(xv, min[k])), 0, nmax);
            let diff = v.sub(v.add(v.mul(scale[k], l), min[k]), xv);
            best_error[k] = v.add(best_error[k], v.mul(v.ld(&w[i], k), err::<V, MAD>(v, diff)));
        }
    }
    // The levels are not carried along: the winning candidate's (iscale, min) reproduce them.
    let mut best_iscale = iscale;
    let mut best_min = min;
    if nstep >= 1 {
        let mut lf = [v.row(zero); M];
        for is in 0..=nstep {
            let num = v.splat(rmin + rdelta * is as f32 + nmax as f32);
            let (mut sum_l, mut sum_l2, mut sum_xl) = (v.row(zero), v.row(zero), v.row(zero));
            for k in 0..kk {
                iscale[k] = v.div(num, v.sub(max[k], min[k]));
            }
            for i in 0..M {
                for k in 0..kk {
                    let xv = v.ld(&x[i], k);
                    let l = v.round_clamp_f(v.mul(iscale[k], v.sub(xv, min[k])), 0, nmax);
                    lf[i][k] = l;
                    let wl = v.mul(v.ld(&w[i], k), l);
                    sum_l[k] = v.add(sum_l[k], wl);
                    sum_l2[k] = v.add(sum_l2[k], v.mul(wl, l));
                    sum_xl[k] = v.add(sum_xl[k], v.mul(wl, xv));
                }
            }
            let mut valid = [v.none(); MAX_VECTORS];
            let (mut this_scale, mut this_min) = (v.row(zero), v.row(zero));
            for k in 0..kk {
                let d = v.sub(v.mul(sum_w[k], sum_l2[k]), v.mul(sum_l[k], sum_l[k]));
                valid[k] = v.gt(d, zero);
                let ts = v.div(
                    v.sub(v.mul(sum_w[k], sum_xl[k]), v.mul(sum_x[k], sum_l[k])),
                    d,
                );
                let tm = v.div(
                    v.sub(v.mul(sum_l2[k], sum_x[k]), v.mul(sum_l[k], sum_xl[k])),
                    d,
                );
                let clip = v.gt(tm, zero);
                this_min[k] = v.sel(clip, zero, tm);
                this_scale[k] = v.sel(clip, v.div(sum_xl[k], sum_l2[k]), ts);
            }
            let mut cur = v.row(zero);
            for i in 0..M {
                for k in 0..kk {
                    let xv = v.ld(&x[i], k);
                    let diff = v.sub(v.add(v.mul(this_scale[k], lf[i][k]), this_min[k]), xv);
                    cur[k] = v.add(cur[k], v.mul(v.ld(&w[i], k), err::<V, MAD>(v, diff)));
                }
            }
            for k in 0..kk {
                let acc = v.and(valid[k], v.lt(cur[k], best_error[k]));
                best_error[k] = v.sel(acc, cur[k], best_error[k]);
                scale[k] = v.sel(acc, this_scale[k], scale[k]);
                best_iscale[k] = v.sel(acc, iscale[k], best_iscale[k]);
                best_min[k] = v.sel(acc, min[k], best_min[k]);
                min[k] = v.sel(acc, this_min[k], min[k]);
            }
        }
    }
    for i in 0..M {
        for k in 0..kk {
            let xv = v.ld(&x[i], k);
            let l = v.round_clamp(v.mul(best_iscale[k], v.sub(xv, best_min[k])), 0, nmax);
            v.put_levels(&mut l_out[i], k, l, degenerate[k], |l| l as u8);
        }
    }
    for k in 0..kk {
        v.st(scale_out, k, v.sel(degenerate[k], zero, scale[k]));
        v.st(the_min, k, v.neg(v.sel(degenerate[k], min0[k], min[k])));
    }
}

/// `make_qx_quants(16, nmax, x, L, 1, Some(w))` for one group, its 19 candidate scales (the
/// first rounding and `is = -9..=9`, `is != 0`) evaluated side by side: each candidate's sums
/// run over the 16 values in order as in ggml ([`qx16_sums`]), then the candidates are
/// compared in ggml's order ([`qx16_pick`]). Used for Q3_K's importance-weighted scale of
/// scales.
#[inline(always)]
pub(crate) fn qx16_candidates(x: &[f32; 16], w: &[f32; 16], nmax: i32, l: &mut [i8; 16]) -> f32 {
    let Some(iscale) = qx16_iscales(x, nmax) else {
        *l = [0; 16];
        return 0.0;
    };
    let (sumlx, suml2) = qx16_sums(x, w, nmax, &iscale);
    qx16_pick(x, nmax, &iscale, &sumlx, &suml2, l)
}

/// Candidates of [`qx16_candidates`].
const QX16_CANDIDATES: usize = 19;

/// [`QX16_CANDIDATES`] rounded up to two 512-bit vectors.
pub(crate) const QX16_LANES: usize = 32;

/// The 19 candidate inverse scales against the largest-magnitude value of `x` (first one
/// wins), padded with the first, or `None` for an all-zero group.
#[inline(always)]
pub(crate) fn qx16_iscales(x: &[f32; 16], nmax: i32) -> Option<[f32; QX16_LANES]> {
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        return None;
    }
    let mut iscale = [-(nmax as f32) / max; QX16_LANES];
    let mut c = 1;
    for is in -9i32..=9 {
        if is != 0 {
            iscale[c] = -(nmax as f32 + 0.1 * is as f32) / max;
            c += 1;
        }
    }
    Some(iscale)
}

/// Each candidate's Σ w·x·l and Σ w·l·l over the 16 values, in order (the padding lanes stay
/// zero).
#[inline(always)]
fn qx16_sums(
    x: &[f32; 16],
    w: &[f32; 16],
    nmax: i32,
    iscale: &[f32; QX16_LANES],
) -> ([f32; QX16_LANES], [f32; QX16_LANES]) {
    let mut sumlx = [0f32; QX16_LANES];
    let mut suml2 = [0f32; QX16_LANES];
    for i in 0..16 {
        let wx = w[i] * x[i];
        for c in 0..QX16_CANDIDATES {
            let li = round_clamp(iscale[c] * x[i], -nmax, nmax - 1) as f32;
            sumlx[c] += wx * li;
            suml2[c] += w[i] * li * li;
        }
    }
    (sumlx, suml2)
}

/// ggml's comparison of the 19 candidates, in its order, and the levels of the winner.
#[inline(always)]
pub(crate) fn qx16_pick(
    x: &[f32; 16],
    nmax: i32,
    iscale: &[f32; QX16_LANES],
    sumlx: &[f32; QX16_LANES],
    suml2: &[f32; QX16_LANES],
    l: &mut [i8; 16],
) -> f32 {
    let mut scale = if suml2[0] != 0.0 {
        sumlx[0] / suml2[0]
    } else {
        0.0
    };
    let mut best = scale * sumlx[0];
    let mut best_c = 0;
    for c in 1..QX16_CANDIDATES {
        if suml2[c] > 0.0 && sumlx[c] * sumlx[c] > best * suml2[c] {
            scale = sumlx[c] / suml2[c];
            best = scale * sumlx[c];
            best_c = c;
        }
    }
    for i in 0..16 {
        l[i] = (nmax + round_clamp(iscale[best_c] * x[i], -nmax, nmax - 1)) as i8;
    }
    scale
}

/// `make_qp_quants(N, nmax, x, L, qw)` for one group of `N` non-negative values (sub-block
/// scales or mins), with the eight candidate scales' weighted errors evaluated side by side
/// (each over the values in order, as in ggml) and compared in ggml's order; the first rounding
/// and the coordinate-descent passes are ggml's loops. Used by the importance-weighted Q2_K,
/// Q4_K and Q5_K paths.
#[inline(always)]
pub(crate) fn qp_candidates<const N: usize>(
    nmax: i32,
    x: &[f32; N],
    l: &mut [u8; N],
    quant_weights: &[f32; N],
) -> f32 {
    const C: usize = 8;
    let mut max = 0.0f32;
    for &v in x {
        max = if max > v { max } else { v };
    }
    if max < GROUP_MAX_EPS {
        *l = [0; N];
        return 0.0;
    }
    let mut iscale = nmax as f32 / max;
    for i in 0..N {
        l[i] = nearest_int(iscale * x[i]) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0.0f32;
    for i in 0..N {
        let diff = x[i] - scale * l[i] as f32;
        best_mse += quant_weights[i] * diff * diff;
    }
    let mut iscale_c = [0f32; C];
    let mut scale_c = [0f32; C];
    let mut c = 0;
    for is in -4i32..=4 {
        if is != 0 {
            iscale_c[c] = (0.1 * is as f32 + nmax as f32) / max;
            scale_c[c] = 1.0 / iscale_c[c];
            c += 1;
        }
    }
    let mut mse = [0f32; C];
    for i in 0..N {
        for c in 0..C {
            let li = nearest_int(iscale_c[c] * x[i]).min(nmax) as f32;
            let diff = x[i] - scale_c[c] * li;
            mse[c] += quant_weights[i] * diff * diff;
        }
    }
    for c in 0..C {
        if mse[c] < best_mse {
            best_mse = mse[c];
            iscale = iscale_c[c];
        }
    }
    super::search::qp_refine(nmax, iscale, x, l, quant_weights)
}

/// Largest |x| per group and the signed value holding it (first one wins), as ggml computes
/// `max`/`amax` in `make_qx_quants` and `make_q3_quants`.
#[inline(always)]
pub(crate) fn signed_absmax<V: Vector, const N: usize, const M: usize>(
    v: V,
    x: &[[f32; N]; M],
) -> (V::Row, V::Row) {
    let (mut max, mut amax) = (v.row(v.zero()), v.row(v.zero()));
    for i in 0..M {
        for k in 0..N / V::LANES {
            let xv = v.ld(&x[i], k);
            let ax = v.abs(xv);
            let g = v.gt(ax, amax[k]);
            amax[k] = v.sel(g, ax, amax[k]);
            max[k] = v.sel(g, xv, max[k]);
        }
    }
    (max, amax)
}

/// Σ w·x·l and Σ w·l·l per lane for levels `clamp(nearest_int(iscale·x), -nmax, nmax-1)`.
/// `wx` holds the products `w·x`, computed once per search rather than on each of its 19
/// passes (the same f32 value ggml's `w*x[i]*l` forms first, so the sums are unchanged). The
/// rounding is [`Vector::round_clamp_small`]: `|iscale·x| ≤ nmax + 0.9` because
/// `iscale = -(nmax ± 0.9)/max` and `max` has the largest magnitude of its group (a NaN arises
/// only in an all-zero group, whose lane [`qx`] zeroes at the end).
#[inline(always)]
fn qx_sums<V: Vector, const N: usize, const M: usize>(
    v: V,
    x: &[[f32; N]; M],
    w: &[[f32; N]; M],
    wx: &[[f32; N]; M],
    nmax: i32,
    iscale: &V::Row,
) -> (V::Row, V::Row) {
    let (mut sumlx, mut suml2) = (v.row(v.zero()), v.row(v.zero()));
    for i in 0..M {
        for k in 0..N / V::LANES {
            let xv = v.ld(&x[i], k);
            let wv = v.ld(&w[i], k);
            let l = v.round_clamp_small(v.mul(iscale[k], xv), -nmax, nmax - 1);
            sumlx[k] = v.add(sumlx[k], v.mul(v.ld(&wx[i], k), l));
            suml2[k] = v.add(suml2[k], v.mul(v.mul(wv, l), l));
        }
    }
    (sumlx, suml2)
}

/// `make_qx_quants(M, nmax, x, L, 1, w)` on `N` groups (weights given explicitly: x² for ggml's
/// built-in type-1 weights). Writes the scales and the levels (offset by `nmax`).
#[inline(always)]
pub(crate) fn qx<V: Vector, const N: usize, const M: usize>(
    v: V,
    x: &[[f32; N]; M],
    w: &[[f32; N]; M],
    nmax: i32,
    scale_out: &mut [f32; N],
    l_out: &mut [[i8; N]; M],
) {
    let kk = N / V::LANES;
    assert!(N.is_multiple_of(V::LANES) && N <= MAX_GROUPS);
    let zero = v.zero();
    let (max, amax) = signed_absmax(v, x);
    let mut iscale = v.row(zero);
    for k in 0..kk {
        iscale[k] = v.div(v.splat(-(nmax as f32)), max[k]);
    }
    let mut wx = [[0f32; N]; M];
    for i in 0..M {
        for k in 0..kk {
            v.st(&mut wx[i], k, v.mul(v.ld(&w[i], k), v.ld(&x[i], k)));
        }
    }
    let (sumlx, suml2) = qx_sums(v, x, w, &wx, nmax, &iscale);
    let (mut scale, mut best) = (v.row(zero), v.row(zero));
    for k in 0..kk {
        let nz = v.ne(suml2[k], zero);
        scale[k] = v.sel(nz, v.div(sumlx[k], suml2[k]), zero);
        best[k] = v.mul(scale[k], sumlx[k]);
    }
    let mut best_iscale = iscale;
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        let num = v.splat(nmax as f32 + 0.1 * is as f32);
        for k in 0..kk {
            iscale[k] = v.div(v.neg(num), max[k]);
        }
        let (sumlx, suml2) = qx_sums(v, x, w, &wx, nmax, &iscale);
        for k in 0..kk {
            let acc = v.and(
                v.gt(suml2[k], zero),
                v.gt(v.mul(sumlx[k], sumlx[k]), v.mul(best[k], suml2[k])),
            );
            let s = v.div(sumlx[k], suml2[k]);
            scale[k] = v.sel(acc, s, scale[k]);
            best[k] = v.sel(acc, v.mul(s, sumlx[k]), best[k]);
            best_iscale[k] = v.sel(acc, iscale[k], best_iscale[k]);
        }
    }
    let eps = v.splat(GROUP_MAX_EPS);
    for i in 0..M {
        for k in 0..kk {
            let xv = v.ld(&x[i], k);
            let l = v.round_clamp(v.mul(best_iscale[k], xv), -nmax, nmax - 1);
            let l = v.add_i(l, nmax);
            v.put_levels(&mut l_out[i], k, l, v.lt(amax[k], eps), |l| l as i8);
        }
    }
    for k in 0..kk {
        v.st(scale_out, k, v.sel(v.lt(amax[k], eps), zero, scale[k]));
    }
}

/// Up to `N` values, written in order before they are read, in an array that is not zeroed
/// first: the searches' per-row and per-job state runs to kilobytes per call, and zeroing it
/// cost more than some of the work done in it.
pub(crate) struct Slots<T: Copy, const N: usize> {
    v: [std::mem::MaybeUninit<T>; N],
    pub(crate) len: usize,
}

impl<T: Copy, const N: usize> Slots<T, N> {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        Slots {
            // SAFETY: an array of `MaybeUninit` needs no initialization. (Not the constant
            // `[const { MaybeUninit::uninit() }; N]`, which the compiler may fill with zeros.)
            v: unsafe {
                std::mem::MaybeUninit::<[std::mem::MaybeUninit<T>; N]>::uninit().assume_init()
            },
            len: 0,
        }
    }

    /// Appends `t`.
    ///
    /// # Panics
    /// When all `N` slots are written.
    #[inline(always)]
    pub(crate) fn push(&mut self, t: T) {
        self.v[self.len].write(t);
        self.len += 1;
    }

    /// The value at `i`.
    ///
    /// # Panics
    /// When `i` has not been written.
    #[inline(always)]
    pub(crate) fn get(&self, i: usize) -> T {
        assert!(i < self.len);
        // SAFETY: the slots below `len` were written by `push`.
        unsafe { self.v[i].assume_init() }
    }

    /// Replaces the value at `i`.
    ///
    /// # Panics
    /// When `i` has not been written.
    #[inline(always)]
    pub(crate) fn set(&mut self, i: usize, t: T) {
        assert!(i < self.len);
        self.v[i].write(t);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{kquants, q2k, q3k, q4k, q5k, q6k, search};
    use super::*;
    use bytemuck::Pod;

    /// Both backends (the AVX2 one where the CPU has it) against the reference quantizer.
    type RefQuant<B> = fn(&[f32], &mut [B], Option<&[f32]>);

    /// Every backend's [`Lanes::q3_rest`] against the whole search ([`q3_gathered`], the
    /// portable loops, themselves checked against ggml's `make_q3_quants`) on sub-blocks of every magnitude from denormal-prone to overflowing, each started
    /// from ggml's first rounding as `q3_first` reports it; both the settled sub-blocks (one
    /// round, no change) and the ones that change count.
    #[test]
    fn q3_rest_matches_the_whole_search() {
        use crate::fp::nearest_int;
        let mut seed = 0x1234_5678u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let mut xs = Vec::new();
        for case in 0..200_000 {
            // Magnitudes from 2^-40 to 2^24, cubed uniform values, some exact ties.
            let scale = f32::from_bits((87 + (case % 64) as u32) << 23);
            let x: [f32; 16] = std::array::from_fn(|_| {
                let u = next() as f32 / u32::MAX as f32 - 0.5;
                let v = u * u * u * 8.0 * scale;
                if next() % 16 == 0 {
                    scale * 0.25
                } else {
                    v
                }
            });
            xs.push(x);
        }
        let state = |x: &[f32; 16]| -> Option<[f32; 3]> {
            let (mut max, mut amax) = (0f32, 0f32);
            for &v in x {
                if v.abs() > amax {
                    (amax, max) = (v.abs(), v);
                }
            }
            if amax < GROUP_MAX_EPS {
                return None;
            }
            let iscale = -4.0 / max;
            let (mut sumlx, mut suml2) = (0f32, 0f32);
            for &v in x {
                let l = nearest_int(iscale * v).clamp(-4, 3) as f32;
                let w = v * v;
                sumlx += w * v * l;
                suml2 += w * l * l;
            }
            Some([iscale, sumlx, suml2])
        };
        let jobs = || -> Vec<Q3Job> {
            xs.iter()
                .filter_map(|x| state(x).map(|st| Q3Job::new(x, st)))
                .collect()
        };
        let mut want = jobs();
        q3_gathered(Portable, &mut want, 4);
        // The portable search itself, on every CPU: ggml's whole `make_q3_quants` per sub-block.
        for w in &want {
            let mut l = [0i8; 16];
            let scale = search::make_q3_quants(16, 4, w.x, &mut l, true);
            assert_eq!((w.scale.to_bits(), w.l), (scale.to_bits(), l), "{:?}", w.x);
        }
        println!("q3_rest (portable): {} sub-blocks", want.len());
        let mut check = |name: &str, rest: &dyn Fn(&mut [Q3Job])| {
            let mut got = jobs();
            rest(&mut got);
            let mut changed = 0;
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(
                    (g.scale.to_bits(), g.l),
                    (w.scale.to_bits(), w.l),
                    "{name}: {:?}",
                    g.x
                );
                changed += (g.scale.to_bits() != (g.sums[0] / g.sums[1]).to_bits()) as usize;
            }
            println!(
                "q3_rest ({name}): {} sub-blocks, {changed} refined",
                got.len()
            );
            assert!(changed > 100);
        };
        #[cfg(target_arch = "x86_64")]
        if let Some(avx512) = Avx512::detect() {
            check("avx512", &|j| avx512.q3_rest(j, 4));
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = Avx2::detect() {
            check("avx2", &|j| avx2.q3_rest(j, 4));
        }
        // (Used only where a SIMD backend exists.)
        let _ = &mut check;
    }

    /// [`products_gt`] against f32 arithmetic, on products spread from overflow down through the
    /// denormal range to underflow, with zeros, infinities and NaNs mixed in.
    /// Every backend's [`Lanes::q3_headers`] against the block-by-block header
    /// ([`q3k::block_header`] with the portable scales search) on scales with NaNs,
    /// infinities, zeros, all-zero blocks, sign ties for the largest magnitude, and magnitudes
    /// whose fp16 `d` is subnormal or overflows; 1 to 16 blocks at a time.
    #[test]
    fn q3_headers_match_the_block_by_block_header() {
        use crate::blocks::BlockQ3K;
        type Headers<'a> = dyn Fn(&mut [BlockQ3K], &mut [[f32; 16]]) + 'a;
        let mut seed = 0x0bad_cafeu32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let mut checked = 0;
        for round in 0..400 {
            let n = 1 + round % 16;
            let scales: Vec<[f32; 16]> = (0..n)
                .map(|_| {
                    let mag = f32::from_bits((100 + next() % 60) << 23);
                    let kind = next() % 8;
                    let first: f32 = (next() as f32 / u32::MAX as f32 - 0.5) * mag;
                    std::array::from_fn(|j| {
                        let u = (next() as f32 / u32::MAX as f32 - 0.5) * mag;
                        match (kind, next() % 16) {
                            (0, _) => 0.0,
                            (1, 0) => f32::NAN,
                            (2, 0) => f32::INFINITY,
                            (3, _) if j % 2 == 1 => -first,
                            (3, _) => first,
                            (4, k) if k < 8 => 0.0,
                            _ => u,
                        }
                    })
                })
                .collect();
            let zero = <BlockQ3K as bytemuck::Zeroable>::zeroed();
            let (mut want, mut got) = (vec![zero; n], vec![zero; n]);
            let mut want_steps = vec![[0f32; 16]; n];
            for b in 0..n {
                want_steps[b] = q3k::block_header(Portable, &scales[b], &mut want[b]);
            }
            let mut got_steps = vec![[0f32; 16]; n];
            let mut check = |name: &str, headers: &Headers<'_>| {
                headers(&mut got, &mut got_steps);
                for b in 0..n {
                    assert_eq!(
                        (got[b].scales, got[b].d),
                        (want[b].scales, want[b].d),
                        "{name}: {:?}",
                        scales[b]
                    );
                    let bits = |d: &[f32; 16]| d.map(f32::to_bits);
                    assert_eq!(
                        bits(&got_steps[b]),
                        bits(&want_steps[b]),
                        "{name}: {:?}",
                        scales[b]
                    );
                    checked += 1;
                }
            };
            check("portable", &|y, d| Portable.q3_headers(&scales, y, d));
            #[cfg(target_arch = "x86_64")]
            if let Some(avx512) = Avx512::detect() {
                check("avx512", &|y, d| avx512.q3_headers(&scales, y, d));
            }
            #[cfg(target_arch = "x86_64")]
            if let Some(avx2) = Avx2::detect() {
                check("avx2", &|y, d| avx2.q3_headers(&scales, y, d));
            }
            // (Used only where a SIMD backend exists.)
            let _ = &mut check;
        }
        println!("q3_headers: checked {checked} blocks");
    }

    fn backends_match_ref<Q: FastBlock>(reference: RefQuant<Q::Block>)
    where
        Q::Block: Pod,
    {
        for seed in 0..6 {
            // Five super-blocks (two pairs and a single one) in one row.
            let x = data(seed, 1280);
            let qw: Vec<f32> = data(seed + 100, 1280)
                .iter()
                .map(|v| v.abs() * 4.0)
                .collect();
            for imatrix in [None, Some(qw.as_slice())] {
                let mut want = vec![<Q::Block as bytemuck::Zeroable>::zeroed(); 5];
                reference(&x, &mut want, imatrix);
                let mut got = vec![<Q::Block as bytemuck::Zeroable>::zeroed(); 5];
                quantize_with::<Q, _>(Portable, &x, &mut got, imatrix);
                assert!(
                    bytemuck::cast_slice::<_, u8>(&got) == bytemuck::cast_slice::<_, u8>(&want),
                    "{} portable, seed {seed}, imatrix {}",
                    Q::NAME,
                    imatrix.is_some()
                );
                #[cfg(target_arch = "x86_64")]
                if let Some(avx512) = Avx512::detect() {
                    let mut got = vec![<Q::Block as bytemuck::Zeroable>::zeroed(); 5];
                    quantize_with::<Q, _>(avx512, &x, &mut got, imatrix);
                    assert!(
                        bytemuck::cast_slice::<_, u8>(&got) == bytemuck::cast_slice::<_, u8>(&want),
                        "{} avx512, seed {seed}, imatrix {}",
                        Q::NAME,
                        imatrix.is_some()
                    );
                }
                #[cfg(target_arch = "x86_64")]
                if let Some(avx2) = Avx2::detect() {
                    let mut got = vec![<Q::Block as bytemuck::Zeroable>::zeroed(); 5];
                    quantize_with::<Q, _>(avx2, &x, &mut got, imatrix);
                    assert!(
                        bytemuck::cast_slice::<_, u8>(&got) == bytemuck::cast_slice::<_, u8>(&want),
                        "{} avx2, seed {seed}, imatrix {}",
                        Q::NAME,
                        imatrix.is_some()
                    );
                }
            }
        }
    }

    #[test]
    fn every_backend_gives_the_reference_bytes() {
        backends_match_ref::<q2k::Q2KFast>(kquants::quantize_row_q2_k);
        backends_match_ref::<q3k::Q3KFast>(kquants::quantize_row_q3_k);
        backends_match_ref::<q4k::Q4KFast>(kquants::quantize_row_q4_k);
        backends_match_ref::<q5k::Q5KFast>(kquants::quantize_row_q5_k);
        backends_match_ref::<q6k::Q6KFast>(kquants::quantize_row_q6_k);
    }

    /// `requant` on every backend against the scalar loop, on values placed exactly on, and a
    /// few ulps either side of, every rounding boundary `(k + 1/2)·d` and the clamp limits, plus
    /// zero, NaN, ±∞, huge and denormal values and zero, tiny and negative scales: the inputs
    /// where a product with `1/d` could round differently from the true quotient.
    #[test]
    fn requant_matches_scalar_at_rounding_boundaries() {
        use crate::fp::nearest_int;
        let scales = [
            0.0, 1.0, 0.1, -0.7, 3.0e-5, 6.0e-8, 8.3e6, -1.0e-3, 0.37, 2.5, -13.0, 0.011, 7.0e-3,
            1.0e-7, -0.25, 0.6,
        ];
        for nmax in [4, 32] {
            for seed in 0..40u32 {
                let d: [f32; 16] = std::array::from_fn(|j| scales[(j + seed as usize) % 16]);
                let noise = data(seed, QK_K);
                let x: Super = std::array::from_fn(|i| {
                    let dj = d[i / 16];
                    let k = (noise[i].abs() * 97.0) as i32 % (2 * nmax + 4) - nmax - 2;
                    let edge = (k as f32 + 0.5) * dj;
                    let nudge = (noise[i] * 1000.0) as i32 % 4;
                    match (i + seed as usize) % 23 {
                        0 => f32::NAN,
                        1 => f32::INFINITY,
                        2 => -f32::INFINITY,
                        3 => 1.0e30,
                        4 => 1.0e-42,
                        5 => 0.0,
                        6..=14 => f32::from_bits((edge.to_bits() as i32 + nudge) as u32),
                        _ => noise[i] * dj * nmax as f32,
                    }
                });
                // The definition, value by value: ggml's rounding of x / d, clamped and offset,
                // wherever the value's sub-block scale is not zero.
                let (mut want, mut want_mask) = ([0i8; QK_K], 0u16);
                for (i, (&v, l)) in x.iter().zip(&mut want).enumerate() {
                    let dj = d[i / 16];
                    if dj == 0.0 {
                        want_mask |= 1 << (i / 16);
                    } else {
                        *l = (nearest_int(v / dj).clamp(-nmax, nmax - 1) + nmax) as i8;
                    }
                }
                let mut got = [0i8; QK_K];
                assert_eq!(Portable.requant(&x, &d, nmax, &mut got), want_mask);
                assert_eq!(got, want, "portable, nmax {nmax}, seed {seed}");
                #[cfg(target_arch = "x86_64")]
                {
                    if let Some(avx2) = Avx2::detect() {
                        let mut got = [0i8; QK_K];
                        assert_eq!(avx2.requant(&x, &d, nmax, &mut got), want_mask);
                        assert_eq!(got, want, "avx2, nmax {nmax}, seed {seed}");
                    }
                    if let Some(avx512) = Avx512::detect() {
                        let mut got = [0i8; QK_K];
                        assert_eq!(avx512.requant(&x, &d, nmax, &mut got), want_mask);
                        assert_eq!(got, want, "avx512, nmax {nmax}, seed {seed}");
                    }
                }
            }
        }
    }

    /// Every backend's `transpose16` against the transpose written the other way round: value
    /// `k` of the blocks laid end to end is value `k % 16` of sub-block `k / 16`, so it lands in
    /// row `k % 16`, lane `k / 16`.
    #[test]
    fn transpose16_matches_the_scalar_transpose() {
        fn scattered<const N: usize>(x: &[f32]) -> [[f32; N]; 16] {
            let mut out = [[f32::NAN; N]; 16];
            for (k, &v) in x.iter().enumerate() {
                out[k % 16][k / 16] = v;
            }
            out
        }
        let x = data(7, 2 * QK_K);
        let blocks: [&Super; 2] = [
            x[..QK_K].try_into().expect("block"),
            x[QK_K..].try_into().expect("block"),
        ];
        let want = scattered::<32>(&x);
        let firsts = [scattered::<16>(&x[..QK_K]), scattered::<16>(&x[QK_K..])];
        let mut checked = 0;
        let mut check = |name: &str, two: [[f32; 32]; 16], one: [[[f32; 16]; 16]; 2]| {
            assert_eq!(two, want, "{name}, two blocks");
            assert_eq!(one, firsts, "{name}, one block");
            checked += 1;
        };
        check(
            "portable",
            Portable.transpose16::<32, 2>(blocks),
            [0, 1].map(|b| Portable.transpose16::<16, 1>([blocks[b]])),
        );
        check(
            "portable tiles",
            transpose16_tiled::<_, 32, 2>(Portable, blocks),
            [0, 1].map(|b| transpose16_tiled::<_, 16, 1>(Portable, [blocks[b]])),
        );
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = Avx2::detect() {
            check(
                "avx2",
                avx2.transpose16::<32, 2>(blocks),
                [0, 1].map(|b| avx2.transpose16::<16, 1>([blocks[b]])),
            );
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(avx512) = Avx512::detect() {
            check(
                "avx512",
                avx512.transpose16::<32, 2>(blocks),
                [0, 1].map(|b| avx512.transpose16::<16, 1>([blocks[b]])),
            );
        }
        println!("transpose16: checked {checked} backends");
    }

    /// The batched Σx² against one sequential sum per block, for counts that leave remainders
    /// after the groups of 16 (and of 8).
    #[test]
    fn sums_of_squares_keep_each_blocks_order() {
        let mut checked = 0;
        for blocks in [1, 7, 16, 21, 35] {
            let x = data(blocks as u32, blocks * QK_K);
            let want: Vec<f32> = x
                .chunks_exact(QK_K)
                .map(|b| b.iter().fold(0.0f32, |s, v| s + v * v))
                .collect();
            let mut got = vec![0.0; blocks];
            Portable.sums_of_squares(&x, &mut got);
            assert_eq!(got, want, "portable, {blocks} blocks");
            let mut got = vec![0.0; blocks];
            sums_of_squares_tiled(Portable, &x, &mut got);
            assert_eq!(got, want, "portable tiles, {blocks} blocks");
            #[cfg(target_arch = "x86_64")]
            if let Some(avx2) = Avx2::detect() {
                let mut got = vec![0.0; blocks];
                avx2.sums_of_squares(&x, &mut got);
                assert_eq!(got, want, "avx2, {blocks} blocks");
            }
            #[cfg(target_arch = "x86_64")]
            if let Some(avx512) = Avx512::detect() {
                let mut got = vec![0.0; blocks];
                avx512.sums_of_squares(&x, &mut got);
                assert_eq!(got, want, "avx512, {blocks} blocks");
            }
            checked += blocks;
        }
        println!("sums_of_squares: checked {checked} blocks per backend");
    }

    fn data(seed: u32, n: usize) -> Vec<f32> {
        // A small deterministic generator with sign changes, zeros, ties and outliers.
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let u = (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                match i % 37 {
                    0 => 0.0,
                    5 => u * 40.0,
                    _ => u,
                }
            })
            .collect()
    }

    #[test]
    fn qkx_lanes_match_scalar_search() {
        for seed in 0..20 {
            let x = data(seed, 256);
            let w: Vec<f32> = x.iter().map(|v| v.abs() + 0.1).collect();
            let xt = transpose::<8, 32>(&x);
            let wt = transpose::<8, 32>(&w);
            for (strict, nstep) in [(true, 20), (false, 36), (true, 0)] {
                let (mut s, mut m, mut l) = ([0f32; 8], [0f32; 8], [[0u8; 8]; 32]);
                qkx(
                    Portable, &xt, &wt, 15, -1.0, 0.1, nstep, false, strict, &mut s, &mut m, &mut l,
                );
                for j in 0..8 {
                    let (mut lr, mut aux, mut mr) = ([0u8; 32], [0u8; 32], 0f32);
                    let xs = &x[32 * j..32 * j + 32];
                    let ws = &w[32 * j..32 * j + 32];
                    let sr = if strict {
                        search::make_qkx2_quants(
                            32, 15, xs, ws, &mut lr, &mut mr, &mut aux, -1.0, 0.1, nstep, false,
                        )
                    } else {
                        search::make_qkx3_quants(
                            32,
                            15,
                            xs,
                            Some(ws),
                            &mut lr,
                            &mut mr,
                            &mut aux,
                            -1.0,
                            0.1,
                            nstep,
                            false,
                        )
                    };
                    assert_eq!(s[j].to_bits(), sr.to_bits(), "seed {seed} group {j}");
                    assert_eq!(m[j].to_bits(), mr.to_bits(), "seed {seed} group {j}");
                    for i in 0..32 {
                        assert_eq!(l[i][j], lr[i], "seed {seed} group {j} elem {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn qp_candidates_match_scalar_search() {
        for seed in 0..200 {
            let v = data(seed, 32);
            // Mostly non-negative like scales and mins, sometimes a zero or a negative value.
            let x: [f32; 16] = std::array::from_fn(|i| if i % 11 == 3 { v[i] } else { v[i].abs() });
            let w: [f32; 16] = std::array::from_fn(|i| v[16 + i].abs() * 3.0);
            let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
            let s = qp_candidates(15, &x, &mut a, &w);
            let r = search::make_qp_quants(16, 15, &x, &mut b, &w);
            assert_eq!((s.to_bits(), a), (r.to_bits(), b), "seed {seed} n 16");
            let x8: [f32; 8] = std::array::from_fn(|i| x[i]);
            let w8: [f32; 8] = std::array::from_fn(|i| w[i]);
            let (mut a, mut b) = ([0u8; 8], [0u8; 8]);
            let s = qp_candidates(63, &x8, &mut a, &w8);
            let r = search::make_qp_quants(8, 63, &x8, &mut b, &w8);
            assert_eq!((s.to_bits(), a), (r.to_bits(), b), "seed {seed} n 8");
        }
    }

    #[test]
    fn qx16_candidates_match_scalar_search() {
        for seed in 0..200 {
            let v = data(seed, 32);
            let x: [f32; 16] = std::array::from_fn(|i| v[i]);
            let w: [f32; 16] = std::array::from_fn(|i| v[16 + i].abs() + 0.01);
            for nmax in [4, 32] {
                let (mut a, mut b) = ([0i8; 16], [0i8; 16]);
                let s = qx16_candidates(&x, &w, nmax, &mut a);
                let r = search::make_qx_quants(16, nmax, &x, &mut b, 1, Some(&w));
                assert_eq!(
                    (s.to_bits(), a),
                    (r.to_bits(), b),
                    "seed {seed} nmax {nmax}"
                );
                #[cfg(target_arch = "x86_64")]
                if let Some(avx512) = Avx512::detect() {
                    let mut c = [0i8; 16];
                    let t = avx512.qx16_candidates(&x, &w, nmax, &mut c);
                    assert_eq!((t.to_bits(), c), (r.to_bits(), b), "avx512, seed {seed}");
                }
            }
        }
        let (mut a, mut b) = ([1i8; 16], [1i8; 16]);
        let s = qx16_candidates(&[0.0; 16], &[1.0; 16], 32, &mut a);
        let r = search::make_qx_quants(16, 32, &[0.0; 16], &mut b, 1, Some(&[1.0; 16]));
        assert_eq!((s, a), (r, b));
    }

    #[test]
    fn qx_and_q3_lanes_match_scalar_search() {
        let mut checked = 0;
        for seed in 0..20 {
            let mut x = data(seed, 256);
            x[16..32].iter_mut().for_each(|v| *v = 0.0); // an all-zero group
            let w: Vec<f32> = x.iter().map(|v| v * v).collect();
            let xt = transpose::<16, 16>(&x);
            let wt = transpose::<16, 16>(&w);
            let (mut s, mut l) = ([0f32; 16], [[0i8; 16]; 16]);
            qx(Portable, &xt, &wt, 32, &mut s, &mut l);
            // Q3_K's whole search on every backend this CPU has.
            type Search<'a> = dyn Fn(&mut [f32; 16], &mut [[i8; 16]; 16]) + 'a;
            let q3_on = |lanes: &Search<'_>| {
                let (mut s3, mut l3) = ([0f32; 16], [[0i8; 16]; 16]);
                lanes(&mut s3, &mut l3);
                (s3, l3)
            };
            let mut q3s = vec![("portable", q3_on(&|s, l| Portable.q3(&xt, 4, s, l)))];
            #[cfg(target_arch = "x86_64")]
            if let Some(avx2) = Avx2::detect() {
                q3s.push(("avx2", q3_on(&|s, l| avx2.q3(&xt, 4, s, l))));
            }
            #[cfg(target_arch = "x86_64")]
            if let Some(avx512) = Avx512::detect() {
                q3s.push(("avx512", q3_on(&|s, l| avx512.q3(&xt, 4, s, l))));
            }
            for j in 0..16 {
                let xs = &x[16 * j..16 * j + 16];
                let mut lr = [0i8; 16];
                let sr = search::make_qx_quants(16, 32, xs, &mut lr, 1, None);
                assert_eq!(s[j].to_bits(), sr.to_bits(), "qx seed {seed} group {j}");
                for i in 0..16 {
                    assert_eq!(l[i][j], lr[i], "qx seed {seed} group {j} elem {i}");
                }
                let sr = search::make_q3_quants(16, 4, xs, &mut lr, true);
                for (name, (s3, l3)) in &q3s {
                    assert_eq!(
                        s3[j].to_bits(),
                        sr.to_bits(),
                        "q3 {name} seed {seed} group {j}"
                    );
                    for i in 0..16 {
                        assert_eq!(l3[i][j], lr[i], "q3 {name} seed {seed} group {j} elem {i}");
                    }
                }
                checked += q3s.len();
            }
        }
        println!("q3: checked {checked} groups (all backends)");
    }
}
