//! The reference GEMM: `out[t, r] = sum_k x[t, k] * W[r, k]` with f32 activations and f32 or
//! bf16 weights, f32 accumulation.
//!
//! Every output is one fused multiply-add chain over `k` in increasing order, starting from
//! zero: `acc = fma(x[t, k], W[r, k], acc)`. Blocking only decides which chains run side by side
//! (register tiles of several tokens by 32 rows, `k` in blocks of [`KC`] whose partial chains are
//! stored and reloaded unchanged), so the bits of a result do not depend on the tile, on how a
//! caller cuts rows or tokens, on the thread count, or on the instruction set: the AVX-512, AVX2
//! and portable paths give identical bytes, which the tests check.
//!
//! bf16 weights are never widened as a whole matrix: each block of 32 rows by [`KC`] columns is
//! widened (exactly: bf16 is the top half of an f32) and transposed into an L1-resident panel
//! that every token tile then reuses, so the widening costs one pass over the weights whatever
//! the token count. The same pass checks that every weight is finite.

use kernels::simd::Path;

/// Weight rows per packed panel: the width of a register tile.
pub const NR: usize = 32;

/// Columns of `k` per packed panel: `KC x NR` f32 (32 KiB) stays in L1 next to a token tile.
pub const KC: usize = 256;

/// Most tokens in one register tile on any path (the scratch tile for edges holds this many).
const MR_MAX: usize = 12;

/// The weights of a product, row-major `[rows, k]`.
#[derive(Clone, Copy, Debug)]
pub enum Panel<'a> {
    /// Little-endian bf16 bytes.
    Bf16(&'a [u8]),
    /// Little-endian f32 bytes (a memory-mapped tensor).
    F32Le(&'a [u8]),
    /// f32 values (weights another source widened or dequantized).
    F32(&'a [f32]),
}

impl<'a> Panel<'a> {
    /// Rows `r0 .. r0 + n` of a matrix of `k` columns. Panics outside it.
    pub fn rows(self, k: usize, r0: usize, n: usize) -> Panel<'a> {
        let (a, b) = (r0 * k, (r0 + n) * k);
        match self {
            Panel::Bf16(v) => Panel::Bf16(&v[2 * a..2 * b]),
            Panel::F32Le(v) => Panel::F32Le(&v[4 * a..4 * b]),
            Panel::F32(v) => Panel::F32(&v[a..b]),
        }
    }

    /// Number of elements.
    fn len(&self) -> usize {
        match self {
            Panel::Bf16(b) => b.len() / 2,
            Panel::F32Le(b) => b.len() / 4,
            Panel::F32(v) => v.len(),
        }
    }

    /// Element `i` as f32 (the portable path and the edges of the SIMD packs).
    fn get(&self, i: usize) -> f32 {
        match self {
            Panel::Bf16(b) => {
                f32::from_bits((u16::from_le_bytes([b[2 * i], b[2 * i + 1]]) as u32) << 16)
            }
            Panel::F32Le(b) => {
                f32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
            }
            Panel::F32(v) => v[i],
        }
    }
}

/// The instruction set a product runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust (`f32::mul_add`): any CPU, and the twin the SIMD paths are checked against.
    Portable,
    /// x86-64 AVX2 + FMA: 6 tokens x 16 rows per tile (its pack is the portable one).
    Avx2,
    /// x86-64 AVX-512F: 12 tokens x 32 rows per tile.
    Avx512,
}

impl Isa {
    /// The ISA for a kernel [`Path`] (so `G4Q_SIMD` selects it too); NEON and scalar run the
    /// portable code.
    pub fn for_path(path: Path) -> Isa {
        match path {
            Path::Avx512 if cfg!(target_arch = "x86_64") => Isa::Avx512,
            Path::Avx2 if cfg!(target_arch = "x86_64") => Isa::Avx2,
            _ => Isa::Portable,
        }
    }

    /// Whether this CPU runs the ISA.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx512 => false,
        }
    }

    /// Every ISA this CPU runs, portable first.
    pub fn available() -> Vec<Isa> {
        [Isa::Portable, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|i| i.is_supported())
            .collect()
    }

    /// The ISA of the active kernel path (`G4Q_SIMD`, else the best), portable if that path is
    /// unusable here.
    pub fn active() -> Isa {
        kernels::simd::active_path()
            .map(Isa::for_path)
            .ok()
            .filter(|i| i.is_supported())
            .unwrap_or(Isa::Portable)
    }
}

/// `out[i * ld + j] = sum_c x[i * k + c] * W[j, c]` for `i < t`, `j < rows`, where `w` holds
/// exactly `rows x k` weights; single-threaded. Returns whether every weight was finite (the
/// outputs are written either way). Panics if a length does not match (a programming error).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    isa: Isa,
    x: &[f32],
    t: usize,
    k: usize,
    w: Panel<'_>,
    rows: usize,
    out: &mut [f32],
    ld: usize,
) -> bool {
    assert!(isa.is_supported(), "gemm: {isa:?} does not run on this CPU");
    assert_eq!(x.len(), t * k, "gemm: x is not [t, k]");
    assert_eq!(w.len(), rows * k, "gemm: w is not [rows, k]");
    if t == 0 || rows == 0 {
        return true;
    }
    assert!(
        ld >= rows && (t - 1) * ld + rows <= out.len(),
        "gemm: out cannot hold [t, rows] every ld"
    );
    let mut pack = Vec::new();
    // SAFETY: the asserts above prove that the window `out[i * ld + j]`, i < t, j < rows lies
    // inside `out`, which is borrowed mutably for the call, and that the ISA runs here.
    unsafe { gemm_window(isa, x, t, k, w, rows, out.as_mut_ptr(), ld, &mut pack) }
}

/// [`gemm`] into a raw output window, reusing `pack` as the panel buffer.
///
/// # Safety
/// `isa` must run on this CPU; `x` must hold `t x k` values and `w` `rows x k`; for every
/// `i < t` and `j < rows`, `out.add(i * ld + j)` must be valid for reads and writes and not be
/// accessed by anyone else during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_window(
    isa: Isa,
    x: &[f32],
    t: usize,
    k: usize,
    w: Panel<'_>,
    rows: usize,
    out: *mut f32,
    ld: usize,
    pack: &mut Vec<f32>,
) -> bool {
    debug_assert!(x.len() == t * k && w.len() == rows * k);
    if k == 0 {
        for i in 0..t {
            for j in 0..rows {
                // SAFETY: inside the window the caller vouches for.
                unsafe { *out.add(i * ld + j) = 0.0 };
            }
        }
        return true;
    }
    pack.resize(KC * NR, 0.0);
    let mut finite = true;
    for p0 in (0..rows).step_by(NR) {
        let np = NR.min(rows - p0);
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            let first = k0 == 0;
            // SAFETY: the ISA runs here (caller); `pack` holds KC * NR values; rows
            // p0..p0 + np and columns k0..k0 + kc lie inside `w`; the output columns
            // p0..p0 + np lie inside the caller's window.
            unsafe {
                finite &= pack_panel(isa, w, k, p0, np, k0, kc, pack);
                let blk = Block {
                    x: x.as_ptr().add(k0),
                    t,
                    ldx: k,
                    kc,
                    pack: pack.as_ptr(),
                    np,
                    out: out.add(p0),
                    ld,
                    first,
                };
                match isa {
                    Isa::Portable => block_portable(&blk),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => x86::block_avx2(&blk),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => x86::block_avx512(&blk),
                    #[cfg(not(target_arch = "x86_64"))]
                    Isa::Avx2 | Isa::Avx512 => block_portable(&blk),
                }
            }
        }
    }
    finite
}

/// One packed panel against every token: the raw operands of a block's tiles.
struct Block {
    /// `x[0, k0]`; token `i` starts `i * ldx` later.
    x: *const f32,
    t: usize,
    ldx: usize,
    kc: usize,
    /// `[kc, NR]` packed weights (rows beyond `np` are zero).
    pack: *const f32,
    /// Rows of the panel that exist.
    np: usize,
    /// `out[0, p0]`; token `i` starts `i * ld` later.
    out: *mut f32,
    ld: usize,
    /// Whether this is the first `k` block (the chains start from zero instead of `out`).
    first: bool,
}

/// A register tile: `(tokens, x, packed w, c, ldc)` for up to `mr` tokens by `nr` rows; reads
/// `kc` values of each token row (stride `ldx`) and `kc` packed rows, and reads (unless
/// `first`) and writes `tokens x nr` outputs at `c` (stride `ldc`).
type Tile<'a> = &'a mut dyn FnMut(usize, *const f32, *const f32, *mut f32, usize);

impl Block {
    /// Runs `tile` over every tile of up to `mr` tokens by `nr` rows (`nr` divides [`NR`]):
    /// on `out` directly, or, where the panel's last rows do not fill a tile, on a scratch tile
    /// whose live part is copied in (unless `first`) and back out.
    ///
    /// # Safety
    /// The block's pointers must be valid as [`gemm_window`] requires, `mr <= MR_MAX`, and
    /// `tile` must touch no more than its contract says.
    unsafe fn tiles(&self, mr: usize, nr: usize, tile: Tile<'_>) {
        let mut scratch = [0f32; MR_MAX * NR];
        for j0 in (0..self.np).step_by(nr) {
            let nj = nr.min(self.np - j0);
            // SAFETY: j0 < NR, inside a packed row of NR values.
            let wp = unsafe { self.pack.add(j0) };
            for i0 in (0..self.t).step_by(mr) {
                let ni = mr.min(self.t - i0);
                // SAFETY: token i0 < t and output column j0 < np lie inside the window.
                let (xi, ci) =
                    unsafe { (self.x.add(i0 * self.ldx), self.out.add(i0 * self.ld + j0)) };
                if nj == nr {
                    tile(ni, xi, wp, ci, self.ld);
                    continue;
                }
                for i in 0..ni {
                    for j in 0..nj {
                        scratch[i * nr + j] = if self.first {
                            0.0
                        } else {
                            // SAFETY: a live output, inside the window.
                            unsafe { *ci.add(i * self.ld + j) }
                        };
                    }
                }
                tile(ni, xi, wp, scratch.as_mut_ptr(), nr);
                for i in 0..ni {
                    for j in 0..nj {
                        // SAFETY: a live output, inside the window.
                        unsafe { *ci.add(i * self.ld + j) = scratch[i * nr + j] };
                    }
                }
            }
        }
    }
}

/// Calls `$tile::<M>($args)` for the runtime token count `$n` in `1..=12`.
macro_rules! by_tokens {
    ($n:expr, $tile:ident, $($arg:expr),*) => {
        match $n {
            1 => $tile::<1>($($arg),*),
            2 => $tile::<2>($($arg),*),
            3 => $tile::<3>($($arg),*),
            4 => $tile::<4>($($arg),*),
            5 => $tile::<5>($($arg),*),
            6 => $tile::<6>($($arg),*),
            7 => $tile::<7>($($arg),*),
            8 => $tile::<8>($($arg),*),
            9 => $tile::<9>($($arg),*),
            10 => $tile::<10>($($arg),*),
            11 => $tile::<11>($($arg),*),
            _ => $tile::<12>($($arg),*),
        }
    };
}

/// Portable block: tiles of 4 tokens by [`NR`] rows, each output one `mul_add` chain.
///
/// # Safety
/// As [`Block::tiles`].
unsafe fn block_portable(b: &Block) {
    let (kc, ldx, first) = (b.kc, b.ldx, b.first);
    let mut run = |n: usize, x: *const f32, w: *const f32, c: *mut f32, ldc: usize| {
        // SAFETY: the tile contract of `Block::tiles`.
        unsafe { by_tokens!(n, tile_portable, x, ldx, kc, w, c, ldc, first) }
    };
    // SAFETY: forwarded from the caller.
    unsafe { b.tiles(4, NR, &mut run) }
}

/// `M` tokens by [`NR`] rows in plain Rust.
///
/// # Safety
/// The tile contract of [`Block::tiles`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile_portable<const M: usize>(
    x: *const f32,
    ldx: usize,
    kc: usize,
    w: *const f32,
    c: *mut f32,
    ldc: usize,
    first: bool,
) {
    let mut acc = [[0f32; NR]; M];
    if !first {
        for (m, a) in acc.iter_mut().enumerate() {
            for (j, v) in a.iter_mut().enumerate() {
                // SAFETY: an output of the tile.
                *v = unsafe { *c.add(m * ldc + j) };
            }
        }
    }
    for kk in 0..kc {
        // SAFETY: packed row kk of NR values.
        let wr = unsafe { std::slice::from_raw_parts(w.add(kk * NR), NR) };
        for (m, a) in acc.iter_mut().enumerate() {
            // SAFETY: token m's value kk.
            let xv = unsafe { *x.add(m * ldx + kk) };
            for (v, &wv) in a.iter_mut().zip(wr) {
                *v = xv.mul_add(wv, *v);
            }
        }
    }
    for (m, a) in acc.iter().enumerate() {
        for (j, v) in a.iter().enumerate() {
            // SAFETY: an output of the tile.
            unsafe { *c.add(m * ldc + j) = *v };
        }
    }
}

/// Packs rows `p0 .. p0 + np` and columns `k0 .. k0 + kc` of `w` (`k` columns) into
/// `pack[kk * NR + j] = W[p0 + j, k0 + kk]`, rows from `np` on zero; returns whether every
/// packed weight is finite.
///
/// # Safety
/// `isa` must run here, the rows and columns must lie inside `w`, and `pack` must hold at
/// least `kc * NR` values.
#[allow(clippy::too_many_arguments)]
unsafe fn pack_panel(
    isa: Isa,
    w: Panel<'_>,
    k: usize,
    p0: usize,
    np: usize,
    k0: usize,
    kc: usize,
    pack: &mut [f32],
) -> bool {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded from the caller.
        Isa::Avx512 => unsafe { x86::pack_avx512(w, k, p0, np, k0, kc, pack) },
        _ => pack_portable(w, k, p0, np, k0, kc, pack, 0),
    }
}

/// The portable pack of columns `k0 + from .. k0 + kc` (see [`pack_panel`]).
#[allow(clippy::too_many_arguments)]
fn pack_portable(
    w: Panel<'_>,
    k: usize,
    p0: usize,
    np: usize,
    k0: usize,
    kc: usize,
    pack: &mut [f32],
    from: usize,
) -> bool {
    let mut finite = true;
    for kk in from..kc {
        let row = &mut pack[kk * NR..(kk + 1) * NR];
        for (j, v) in row.iter_mut().enumerate() {
            *v = if j < np {
                w.get((p0 + j) * k + k0 + kk)
            } else {
                0.0
            };
            finite &= v.is_finite();
        }
    }
    finite
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{pack_portable, Block, Panel, KC, NR};

    /// One ISA's block and tile: `$block` runs [`Block::tiles`] with tiles of `$m` tokens by
    /// `2 × $w` rows, each `$tile::<M>` holding two `$w`-lane accumulators per token. The two
    /// widths differ only in the vector type and its intrinsics, so the FMA chain per output (and
    /// with it every bit) is the same on both.
    macro_rules! fma_block {
        ($block:ident, $tile:ident, $feat:literal, $what:literal, $m:literal, $w:literal,
         $zero:ident, $load:ident, $set1:ident, $fma:ident, $store:ident) => {
            #[doc = concat!($what, " block: tiles of ", $m, " tokens by 2 × ", $w, " rows.")]
            ///
            /// # Safety
            #[doc = concat!("The CPU must have ", $what, "; otherwise as [`Block::tiles`].")]
            pub(super) unsafe fn $block(b: &Block) {
                let (kc, ldx, first) = (b.kc, b.ldx, b.first);
                let mut run = |n: usize, x: *const f32, w: *const f32, c: *mut f32, ldc: usize| {
                    // SAFETY: the tile contract of `Block::tiles`; the ISA per the caller.
                    unsafe { by_tokens!(n, $tile, x, ldx, kc, w, c, ldc, first) }
                };
                // SAFETY: forwarded from the caller.
                unsafe { b.tiles($m, 2 * $w, &mut run) }
            }

            /// `M` tokens by `2 × $w` rows: two accumulators per token.
            ///
            /// # Safety
            /// The block's ISA, and the tile contract of [`Block::tiles`].
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = $feat)]
            unsafe fn $tile<const M: usize>(
                x: *const f32,
                ldx: usize,
                kc: usize,
                w: *const f32,
                c: *mut f32,
                ldc: usize,
                first: bool,
            ) {
                // SAFETY: the ISA per the caller; every pointer formed stays inside the tile's
                // operands (the tile contract of `Block::tiles`).
                unsafe {
                    let mut acc = [[$zero(); 2]; M];
                    if !first {
                        for (m, a) in acc.iter_mut().enumerate() {
                            a[0] = $load(c.add(m * ldc));
                            a[1] = $load(c.add(m * ldc + $w));
                        }
                    }
                    for kk in 0..kc {
                        let w0 = $load(w.add(kk * NR));
                        let w1 = $load(w.add(kk * NR + $w));
                        for (m, a) in acc.iter_mut().enumerate() {
                            let xv = $set1(*x.add(m * ldx + kk));
                            a[0] = $fma(xv, w0, a[0]);
                            a[1] = $fma(xv, w1, a[1]);
                        }
                    }
                    for (m, a) in acc.iter().enumerate() {
                        $store(c.add(m * ldc), a[0]);
                        $store(c.add(m * ldc + $w), a[1]);
                    }
                }
            }
        };
    }

    fma_block!(
        block_avx512,
        tile_avx512,
        "avx512f",
        "AVX-512F",
        12,
        16,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_storeu_ps
    );
    fma_block!(
        block_avx2,
        tile_avx2,
        "avx2,fma",
        "AVX2 and FMA",
        6,
        8,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_storeu_ps
    );

    /// AVX-512 pack (see `pack_panel`): 16 rows by 16 columns at a time, widened in registers
    /// and transposed; columns past the last multiple of 16 go through the portable pack.
    ///
    /// # Safety
    /// AVX-512F, and the contract of `pack_panel`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pack_avx512(
        w: Panel<'_>,
        k: usize,
        p0: usize,
        np: usize,
        k0: usize,
        kc: usize,
        pack: &mut [f32],
    ) -> bool {
        debug_assert!(kc <= KC && pack.len() >= kc * NR);
        let expo = _mm512_set1_epi32(0x7f80_0000);
        let mut bad: u16 = 0;
        let whole = kc / 16 * 16;
        let total = w.len();
        let dst = pack.as_mut_ptr();
        for jb in (0..NR).step_by(16) {
            for kb in (0..whole).step_by(16) {
                let mut r = [_mm512_setzero_si512(); 16];
                for (j, v) in r.iter_mut().enumerate() {
                    if jb + j >= np {
                        break;
                    }
                    let at = (p0 + jb + j) * k + k0 + kb;
                    // SAFETY: row p0 + jb + j < p0 + np and columns k0 + kb .. + 16 <= k0 + kc
                    // lie inside `w` (caller); unaligned loads.
                    *v = unsafe {
                        match w {
                            Panel::Bf16(b) => _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(
                                _mm256_loadu_si256(b.as_ptr().add(2 * at).cast()),
                            )),
                            Panel::F32Le(b) => _mm512_loadu_si512(b.as_ptr().add(4 * at).cast()),
                            Panel::F32(f) => _mm512_loadu_si512(f.as_ptr().add(at).cast()),
                        }
                    };
                    bad |= _mm512_cmpeq_epi32_mask(_mm512_and_si512(*v, expo), expo);
                    // Fetch what the next pack of this row reads (the next columns, else the
                    // next panel's first ones): it arrives while the tiles run on this pack.
                    let ahead = if k0 + kc + kb < k {
                        at + kc
                    } else {
                        (p0 + NR + jb + j) * k + kb
                    };
                    if ahead < total {
                        let p = match w {
                            Panel::Bf16(b) => b.as_ptr().wrapping_add(2 * ahead),
                            Panel::F32Le(b) => b.as_ptr().wrapping_add(4 * ahead),
                            Panel::F32(f) => f.as_ptr().wrapping_add(ahead).cast(),
                        };
                        _mm_prefetch::<_MM_HINT_T0>(p.cast());
                    }
                }
                // SAFETY: AVX-512F per the caller.
                let cols = unsafe { transpose16(r) };
                for (kk, col) in cols.iter().enumerate() {
                    // SAFETY: packed row kb + kk < kc, columns jb .. jb + 16 <= NR.
                    unsafe { _mm512_storeu_ps(dst.add((kb + kk) * NR + jb), *col) };
                }
            }
        }
        let tail = pack_portable(w, k, p0, np, k0, kc, pack, whole);
        bad == 0 && tail
    }

    /// Transposes 16 rows of 16 f32 (as bits) into 16 columns.
    ///
    /// # Safety
    /// AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn transpose16(bits: [__m512i; 16]) -> [__m512; 16] {
        let mut r = [_mm512_setzero_ps(); 16];
        for (f, b) in r.iter_mut().zip(bits) {
            *f = _mm512_castsi512_ps(b);
        }
        // Pairs of rows interleaved, then pairs of pairs: u[4g + c] holds, in 128-bit lane L,
        // rows 4g .. 4g + 4 of column 4L + c.
        let mut u = [_mm512_setzero_ps(); 16];
        for g in 0..4 {
            let a = 4 * g;
            let t0 = _mm512_unpacklo_ps(r[a], r[a + 1]);
            let t1 = _mm512_unpackhi_ps(r[a], r[a + 1]);
            let t2 = _mm512_unpacklo_ps(r[a + 2], r[a + 3]);
            let t3 = _mm512_unpackhi_ps(r[a + 2], r[a + 3]);
            let (t0, t1) = (_mm512_castps_pd(t0), _mm512_castps_pd(t1));
            let (t2, t3) = (_mm512_castps_pd(t2), _mm512_castps_pd(t3));
            u[a] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
            u[a + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
            u[a + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
            u[a + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
        }
        // Column 4L + c gathers lane L of u[c], u[4 + c], u[8 + c], u[12 + c].
        let mut out = [_mm512_setzero_ps(); 16];
        for c in 0..4 {
            let va = _mm512_shuffle_f32x4::<0x88>(u[c], u[4 + c]);
            let wa = _mm512_shuffle_f32x4::<0xdd>(u[c], u[4 + c]);
            let vb = _mm512_shuffle_f32x4::<0x88>(u[8 + c], u[12 + c]);
            let wb = _mm512_shuffle_f32x4::<0xdd>(u[8 + c], u[12 + c]);
            out[c] = _mm512_shuffle_f32x4::<0x88>(va, vb);
            out[8 + c] = _mm512_shuffle_f32x4::<0xdd>(va, vb);
            out[4 + c] = _mm512_shuffle_f32x4::<0x88>(wa, wb);
            out[12 + c] = _mm512_shuffle_f32x4::<0xdd>(wa, wb);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo(n: usize, seed: u32) -> Vec<f32> {
        testkit::XorShift32::new(seed.wrapping_mul(2654435761).wrapping_add(1))
            .take(n)
            .map(|s| (s as f32 / u32::MAX as f32) - 0.5)
            .collect()
    }

    fn bf16_bytes(v: &[f32]) -> Vec<u8> {
        v.iter()
            .flat_map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes())
            .collect()
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// The chain every path must reproduce bit for bit: `mul_add` over `k` in order from zero.
    fn chain(x: &[f32], w: &[f32], t: usize, rows: usize, k: usize) -> Vec<f32> {
        let mut y = vec![0f32; t * rows];
        for i in 0..t {
            for j in 0..rows {
                let mut acc = 0f32;
                for c in 0..k {
                    acc = x[i * k + c].mul_add(w[j * k + c], acc);
                }
                y[i * rows + j] = acc;
            }
        }
        y
    }

    const SHAPES: [(usize, usize, usize); 12] = [
        (1, 1, 1),
        (1, 33, 17),
        (2, 31, 16),
        (3, 65, 7),
        (5, 32, 255),
        (6, 64, 256),
        (7, 40, 257),
        (8, 32, 512),
        (9, 97, 300),
        (13, 130, 33),
        (17, 3, 529),
        (24, 96, 64),
    ];

    #[test]
    fn every_path_matches_f64_and_the_portable_chain_bit_for_bit() {
        let mut cases = 0;
        for (s, &(t, rows, k)) in SHAPES.iter().enumerate() {
            let x = pseudo(t * k, 2 * s as u32);
            // bf16 weights: compare against the same values widened.
            let w32 = pseudo(rows * k, 2 * s as u32 + 1);
            let wb = bf16_bytes(&w32);
            let wbw: Vec<f32> = w32
                .iter()
                .map(|v| f32::from_bits(v.to_bits() & 0xffff_0000))
                .collect();
            let wle = f32_bytes(&w32);
            for (panel, wv) in [
                (Panel::Bf16(&wb), &wbw),
                (Panel::F32Le(&wle), &w32),
                (Panel::F32(&w32), &w32),
            ] {
                let want = chain(&x, wv, t, rows, k);
                for i in 0..t {
                    for j in 0..rows {
                        let exact: f64 = (0..k)
                            .map(|c| x[i * k + c] as f64 * wv[j * k + c] as f64)
                            .sum();
                        let got = want[i * rows + j] as f64;
                        assert!((got - exact).abs() <= 1e-6 * k as f64, "{t}x{rows}x{k}");
                    }
                }
                for isa in Isa::available() {
                    // A strided output with sentinels between rows: only the window changes.
                    let ld = rows + 3;
                    let mut out = vec![-7f32; t * ld];
                    assert!(gemm(isa, &x, t, k, panel, rows, &mut out, ld));
                    for i in 0..t {
                        for j in 0..rows {
                            assert_eq!(
                                out[i * ld + j].to_bits(),
                                want[i * rows + j].to_bits(),
                                "{isa:?} {panel:?} {t}x{rows}x{k} at ({i}, {j})"
                            );
                        }
                        assert!(out[i * ld + rows..(i + 1) * ld].iter().all(|&v| v == -7.0));
                    }
                    cases += 1;
                }
            }
        }
        println!(
            "gemm: {cases} (shape, weight type, path) cases bit-equal to the mul_add chain on {:?}",
            Isa::available()
        );
    }

    #[test]
    fn a_non_finite_weight_is_reported_on_every_path() {
        let (t, rows, k) = (3, 40, 300);
        let x = pseudo(t * k, 9);
        let mut cases = 0;
        for at in [0, 17 * k + 5, rows * k - 1, 33 * k + 290] {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut w = pseudo(rows * k, 10);
                w[at] = bad;
                let wb = bf16_bytes(&w);
                let wle = f32_bytes(&w);
                for panel in [Panel::Bf16(&wb), Panel::F32Le(&wle), Panel::F32(&w)] {
                    for isa in Isa::available() {
                        let mut out = vec![0f32; t * rows];
                        assert!(!gemm(isa, &x, t, k, panel, rows, &mut out, rows));
                        cases += 1;
                    }
                }
            }
        }
        println!("gemm: {cases} non-finite weights caught");
    }

    #[test]
    fn zero_length_products() {
        let mut out = vec![5f32; 6];
        for isa in Isa::available() {
            assert!(gemm(isa, &[], 2, 0, Panel::F32(&[]), 3, &mut out, 3));
            assert_eq!(out, vec![0.0; 6]);
            assert!(gemm(isa, &[], 0, 4, Panel::F32(&[0.0; 12]), 3, &mut out, 3));
        }
    }
}
