//! The vector operations the lane searches of [`super::lanes`] are written in, so that each
//! search is written once and runs on [`Portable`] lanes (arrays the compiler vectorises), on
//! AVX2 (8 lanes, [`super::lanes_avx2`]) or on AVX-512 (16 lanes, [`super::lanes_avx512`]).
//!
//! Every operation is the IEEE-exact equivalent of the scalar one on each lane: additions,
//! multiplications and divisions round like their scalar forms, comparisons are the ordered
//! predicates Rust's `<`, `>`, `==`, `<=` use (false on NaN; [`Vector::ne`] is
//! unordered-not-equal, like Rust's `!=`), selects replace branches, and rounding is
//! [`crate::fp::nearest_int`]'s bit trick. Nothing is fused or reassociated, so a search gives
//! the same bits on every implementation.
//!
//! The trait is implemented by the backend tokens: a value of [`super::lanes::Avx2`] or
//! [`super::lanes::Avx512`] proves the CPU has the instruction set, which is what makes their
//! intrinsics sound to call. The generic searches are `#[inline(always)]` and instantiated
//! inside each backend's `#[target_feature]` entry points, so the intrinsics inline into code
//! compiled for that instruction set.

use std::ops::{Index, IndexMut};

use crate::fp::{f16_to_f32, f32_to_f16, nearest_int, ROUND_MAGIC};

/// The most groups one search handles: two super-blocks of 16 sub-blocks.
pub(crate) const MAX_GROUPS: usize = 32;

/// The most vectors a row of [`MAX_GROUPS`] takes (at the narrowest, 8 lanes).
pub(crate) const MAX_VECTORS: usize = MAX_GROUPS / 8;

/// Lane-wise f32 operations on vectors of [`Vector::LANES`] groups (see the module doc).
pub(crate) trait Vector: Copy {
    /// Groups per vector.
    const LANES: usize;
    /// A vector of f32 lanes.
    type F: Copy;
    /// A per-lane condition.
    type M: Copy;
    /// A vector of i32 lanes.
    type I: Copy;
    /// The vectors of one row of up to [`MAX_GROUPS`] groups (`MAX_GROUPS / LANES` of them).
    type Row: Copy + Index<usize, Output = Self::F> + IndexMut<usize>;
    /// The lanes of an [`Vector::I`] as an array.
    type Ints: Copy + Index<usize, Output = i32>;
    /// [`Vector::LANES`] vectors: a square of `LANES × LANES` values.
    type Tile: Copy + Index<usize, Output = Self::F>;
    /// The vectors of one sub-block of 16 values (`16 / LANES` of them).
    type Sub16: Copy + Index<usize, Output = Self::F> + IndexMut<usize>;

    /// How far inside a level's rounding cell a quotient estimated with [`Vector::rcp`] must
    /// lie for Q3_K's search to trust that it rounds to that level: above the estimate's error
    /// `|q|·(rcp's relative error + 2^-23)` for `|q| ≤ 4.5` (cells of larger levels are not
    /// used), plus half an ulp of the true quotient.
    const RCP_CELL_TOL: f32;

    /// A row of copies of `v`.
    fn row(self, v: Self::F) -> Self::Row;
    /// Every lane `v`.
    fn splat(self, v: f32) -> Self::F;
    /// The first [`Vector::LANES`] values of `s`.
    fn load(self, s: &[f32]) -> Self::F;
    /// Writes the lanes to the first [`Vector::LANES`] values of `s`.
    fn store(self, v: Self::F, s: &mut [f32]);
    fn add(self, a: Self::F, b: Self::F) -> Self::F;
    fn sub(self, a: Self::F, b: Self::F) -> Self::F;
    fn mul(self, a: Self::F, b: Self::F) -> Self::F;
    fn div(self, a: Self::F, b: Self::F) -> Self::F;
    /// `if a < b { a } else { b }`.
    fn min(self, a: Self::F, b: Self::F) -> Self::F;
    /// `if a > b { a } else { b }`.
    fn max(self, a: Self::F, b: Self::F) -> Self::F;
    /// Clears the sign bit.
    fn abs(self, a: Self::F) -> Self::F;
    /// Flips the sign bit.
    fn neg(self, a: Self::F) -> Self::F;
    fn lt(self, a: Self::F, b: Self::F) -> Self::M;
    fn gt(self, a: Self::F, b: Self::F) -> Self::M;
    fn eq(self, a: Self::F, b: Self::F) -> Self::M;
    fn le(self, a: Self::F, b: Self::F) -> Self::M;
    /// Unordered not-equal: true on NaN, as Rust's `!=`.
    fn ne(self, a: Self::F, b: Self::F) -> Self::M;
    /// No lane.
    fn none(self) -> Self::M;
    fn and(self, a: Self::M, b: Self::M) -> Self::M;
    /// `if m { t } else { f }` per lane.
    fn sel(self, m: Self::M, t: Self::F, f: Self::F) -> Self::F;
    /// ggml's `nearest_int`, then `clamp(lo, hi)`.
    fn round_clamp(self, v: Self::F, lo: i32, hi: i32) -> Self::I;
    /// The integers as floats (exact: they are small).
    fn to_f(self, i: Self::I) -> Self::F;
    /// `i + c` per lane.
    fn add_i(self, i: Self::I, c: i32) -> Self::I;
    /// 0 on the lanes of `m`, `i` elsewhere.
    fn zero_where(self, m: Self::M, i: Self::I) -> Self::I;
    /// The lanes as an array.
    fn to_ints(self, i: Self::I) -> Self::Ints;
    /// Bit `j` set where lane `j` holds.
    fn bits(self, m: Self::M) -> u32;
    /// The float lanes' bits as integers.
    fn cast_i(self, f: Self::F) -> Self::I;
    /// Writes the low byte of each lane to the first [`Vector::LANES`] bytes of `out`.
    fn store_bytes(self, i: Self::I, out: &mut [i8]);
    /// The tile of vectors `f(0)` … `f(LANES - 1)`.
    fn tile(self, f: impl FnMut(usize) -> Self::F) -> Self::Tile;
    /// The tile transposed: lane `j` of vector `i` becomes lane `i` of vector `j`.
    fn transpose(self, t: Self::Tile) -> Self::Tile;
    /// A sub-block of copies of `v`.
    fn sub16(self, v: Self::F) -> Self::Sub16;
    /// `a >= b` (ordered).
    fn ge(self, a: Self::F, b: Self::F) -> Self::M;
    fn or(self, a: Self::M, b: Self::M) -> Self::M;
    /// `a && !b` per lane.
    fn and_not(self, a: Self::M, b: Self::M) -> Self::M;
    /// Lane `j` holds where bit `j` of `bits` is set (higher bits are ignored).
    fn lanes_set(self, bits: u32) -> Self::M;
    /// An estimate of `1/a`, within [`Vector::RCP_CELL_TOL`]'s bound for normal `a`.
    fn rcp(self, a: Self::F) -> Self::F;
    /// Integer-valued floats as integers (exact).
    fn to_i(self, f: Self::F) -> Self::I;
    /// Lane `at.trailing_zeros()` of the sub-block `s`, or `default` when `at` is 0; `at` has
    /// at most one bit set.
    fn lane_at(self, s: Self::Sub16, at: u32, default: f32) -> f32;
    /// `fl(a·b) > fl(c·d)` in f32, exactly, on every lane: the slow path of
    /// [`super::q3_lanes::products_gt`] (see there), whatever the magnitudes.
    fn products_gt_exact(self, a: Self::F, b: Self::F, c: Self::F, d: Self::F) -> Self::M;
    /// ggml's `nearest_int` (no clamp).
    fn nearest(self, v: Self::F) -> Self::I;
    /// The low byte of each lane, sign-extended (`i as i8 as i32`).
    fn low_byte(self, i: Self::I) -> Self::I;
    /// `i.clamp(lo, hi)` per lane.
    fn clamp_i(self, i: Self::I, lo: i32, hi: i32) -> Self::I;
    /// `i & c` per lane.
    fn and_i(self, i: Self::I, c: i32) -> Self::I;
    /// `a | b` per lane.
    fn or_i(self, a: Self::I, b: Self::I) -> Self::I;
    /// `i << S` per lane.
    fn shl<const S: u32>(self, i: Self::I) -> Self::I;
    /// `i >> S` per lane, shifting in zeros.
    fn shr<const S: u32>(self, i: Self::I) -> Self::I;
    /// Each lane rounded to fp16 as [`crate::fp::f32_to_f16`] rounds it: the bits go to the
    /// first [`Vector::LANES`] values of `bits`, the values read back are returned.
    fn to_f16(self, f: Self::F, bits: &mut [u16]) -> Self::F;

    /// Vector `k` of a row of `N` groups.
    #[inline(always)]
    fn ld<const N: usize>(self, row: &[f32; N], k: usize) -> Self::F {
        self.load(&row[Self::LANES * k..Self::LANES * (k + 1)])
    }
    /// Writes vector `k` of a row of `N` groups.
    #[inline(always)]
    fn st<const N: usize>(self, row: &mut [f32; N], k: usize, v: Self::F) {
        self.store(v, &mut row[Self::LANES * k..Self::LANES * (k + 1)])
    }
    #[inline(always)]
    fn zero(self) -> Self::F {
        self.splat(0.0)
    }
    /// [`Vector::round_clamp`] as floats.
    #[inline(always)]
    fn round_clamp_f(self, v: Self::F, lo: i32, hi: i32) -> Self::F {
        self.to_f(self.round_clamp(v, lo, hi))
    }
    /// [`Vector::round_clamp_f`] for `|v| < 2^22`, in four float operations instead of six:
    /// adding and subtracting [`ROUND_MAGIC`] rounds to the nearest integer (ties to even)
    /// exactly as `nearest_int` does in that range, and clamping integer-valued floats equals
    /// clamping the integers. Outside that range (and for NaN) the two differ, so this is only
    /// for callers whose argument is bounded.
    #[inline(always)]
    fn round_clamp_small(self, v: Self::F, lo: i32, hi: i32) -> Self::F {
        let magic = self.splat(ROUND_MAGIC);
        let r = self.sub(self.add(v, magic), magic);
        self.min(self.max(r, self.splat(lo as f32)), self.splat(hi as f32))
    }
    /// Vector `k` of a row of levels: `i`, zero on the lanes of `zero`, as bytes.
    #[inline(always)]
    fn put_levels<T: Copy, const N: usize>(
        self,
        out: &mut [T; N],
        k: usize,
        i: Self::I,
        zero: Self::M,
        cast: impl Fn(i32) -> T,
    ) {
        let buf = self.to_ints(self.zero_where(zero, i));
        for t in 0..Self::LANES {
            out[Self::LANES * k + t] = cast(buf[t]);
        }
    }
}

/// Methods of an x86 [`Vector`] impl that call one intrinsic expression each. The impl's
/// `Self` is a backend token, which exists only when the CPU has the instruction set.
#[cfg(target_arch = "x86_64")]
macro_rules! intrinsics {
    ($($name:ident($($a:ident: $t:ty),*) -> $r:ty { $($body:tt)* })*) => {$(
        #[inline(always)]
        fn $name(self, $($a: $t),*) -> $r {
            // SAFETY: `self` proves the CPU has the instruction set (see the token's `detect`).
            unsafe { $($body)* }
        }
    )*};
}
#[cfg(target_arch = "x86_64")]
pub(crate) use intrinsics;

/// The portable lanes: eight-element arrays, operated on element by element (the compiler
/// turns the loops into whatever vectors the target has).
#[derive(Clone, Copy)]
pub(crate) struct Portable;

/// Lanes of a [`Portable`] vector.
const P: usize = 8;

#[inline(always)]
fn map<T: Copy, U: Copy + Default>(a: [T; P], f: impl Fn(T) -> U) -> [U; P] {
    let mut r = [U::default(); P];
    for j in 0..P {
        r[j] = f(a[j]);
    }
    r
}

#[inline(always)]
fn zip<T: Copy, U: Copy + Default>(a: [T; P], b: [T; P], f: impl Fn(T, T) -> U) -> [U; P] {
    let mut r = [U::default(); P];
    for j in 0..P {
        r[j] = f(a[j], b[j]);
    }
    r
}

impl Vector for Portable {
    const LANES: usize = P;
    type F = [f32; P];
    type M = [bool; P];
    type I = [i32; P];
    type Row = [[f32; P]; MAX_GROUPS / P];
    type Ints = [i32; P];
    type Tile = [[f32; P]; P];
    type Sub16 = [[f32; P]; 16 / P];

    /// The reciprocal is the correctly rounded `1/a`: the quotient estimate is within three
    /// roundings (`|q|·2^-22`) of the quotient.
    const RCP_CELL_TOL: f32 = 1.0 / 1024.0;

    #[inline(always)]
    fn row(self, v: Self::F) -> Self::Row {
        [v; MAX_GROUPS / P]
    }
    #[inline(always)]
    fn splat(self, v: f32) -> Self::F {
        [v; P]
    }
    #[inline(always)]
    fn load(self, s: &[f32]) -> Self::F {
        s[..P].try_into().expect("a full vector")
    }
    #[inline(always)]
    fn store(self, v: Self::F, s: &mut [f32]) {
        s[..P].copy_from_slice(&v)
    }
    #[inline(always)]
    fn add(self, a: Self::F, b: Self::F) -> Self::F {
        zip(a, b, |a, b| a + b)
    }
    #[inline(always)]
    fn sub(self, a: Self::F, b: Self::F) -> Self::F {
        zip(a, b, |a, b| a - b)
    }
    #[inline(always)]
    fn mul(self, a: Self::F, b: Self::F) -> Self::F {
        zip(a, b, |a, b| a * b)
    }
    #[inline(always)]
    fn div(self, a: Self::F, b: Self::F) -> Self::F {
        zip(a, b, |a, b| a / b)
    }
    #[inline(always)]
    fn min(self, a: Self::F, b: Self::F) -> Self::F {
        zip(a, b, |a, b| if a < b { a } else { b })
    }
    #[inline(always)]
    fn max(self, a: Self::F, b: Self::F) -> Self::F {
        zip(a, b, |a, b| if a > b { a } else { b })
    }
    #[inline(always)]
    fn abs(self, a: Self::F) -> Self::F {
        map(a, f32::abs)
    }
    #[inline(always)]
    fn neg(self, a: Self::F) -> Self::F {
        map(a, |a| -a)
    }
    #[inline(always)]
    fn lt(self, a: Self::F, b: Self::F) -> Self::M {
        zip(a, b, |a, b| a < b)
    }
    #[inline(always)]
    fn gt(self, a: Self::F, b: Self::F) -> Self::M {
        zip(a, b, |a, b| a > b)
    }
    #[inline(always)]
    fn eq(self, a: Self::F, b: Self::F) -> Self::M {
        zip(a, b, |a, b| a == b)
    }
    #[inline(always)]
    fn le(self, a: Self::F, b: Self::F) -> Self::M {
        zip(a, b, |a, b| a <= b)
    }
    #[inline(always)]
    fn ne(self, a: Self::F, b: Self::F) -> Self::M {
        zip(a, b, |a, b| a != b)
    }
    #[inline(always)]
    fn none(self) -> Self::M {
        [false; P]
    }
    #[inline(always)]
    fn and(self, a: Self::M, b: Self::M) -> Self::M {
        zip(a, b, |a, b| a & b)
    }
    #[inline(always)]
    fn sel(self, m: Self::M, t: Self::F, f: Self::F) -> Self::F {
        let mut r = f;
        for j in 0..P {
            if m[j] {
                r[j] = t[j];
            }
        }
        r
    }
    #[inline(always)]
    fn round_clamp(self, v: Self::F, lo: i32, hi: i32) -> Self::I {
        map(v, |v| nearest_int(v).clamp(lo, hi))
    }
    #[inline(always)]
    fn to_f(self, i: Self::I) -> Self::F {
        map(i, |i| i as f32)
    }
    #[inline(always)]
    fn add_i(self, i: Self::I, c: i32) -> Self::I {
        map(i, |i| i + c)
    }
    #[inline(always)]
    fn zero_where(self, m: Self::M, i: Self::I) -> Self::I {
        let mut r = i;
        for j in 0..P {
            if m[j] {
                r[j] = 0;
            }
        }
        r
    }
    #[inline(always)]
    fn to_ints(self, i: Self::I) -> Self::Ints {
        i
    }
    #[inline(always)]
    fn bits(self, m: Self::M) -> u32 {
        (0..P).fold(0, |b, j| b | (m[j] as u32) << j)
    }
    #[inline(always)]
    fn cast_i(self, f: Self::F) -> Self::I {
        map(f, |f| f.to_bits() as i32)
    }
    #[inline(always)]
    fn store_bytes(self, i: Self::I, out: &mut [i8]) {
        for (o, i) in out[..P].iter_mut().zip(i) {
            *o = i as i8;
        }
    }
    #[inline(always)]
    fn tile(self, f: impl FnMut(usize) -> Self::F) -> Self::Tile {
        std::array::from_fn(f)
    }
    #[inline(always)]
    fn transpose(self, t: Self::Tile) -> Self::Tile {
        std::array::from_fn(|i| std::array::from_fn(|j| t[j][i]))
    }
    #[inline(always)]
    fn sub16(self, v: Self::F) -> Self::Sub16 {
        [v; 16 / P]
    }
    #[inline(always)]
    fn ge(self, a: Self::F, b: Self::F) -> Self::M {
        zip(a, b, |a, b| a >= b)
    }
    #[inline(always)]
    fn or(self, a: Self::M, b: Self::M) -> Self::M {
        zip(a, b, |a, b| a | b)
    }
    #[inline(always)]
    fn and_not(self, a: Self::M, b: Self::M) -> Self::M {
        zip(a, b, |a, b| a & !b)
    }
    #[inline(always)]
    fn lanes_set(self, bits: u32) -> Self::M {
        std::array::from_fn(|j| bits >> j & 1 != 0)
    }
    #[inline(always)]
    fn rcp(self, a: Self::F) -> Self::F {
        map(a, |a| 1.0 / a)
    }
    #[inline(always)]
    fn to_i(self, f: Self::F) -> Self::I {
        map(f, |f| f as i32)
    }
    #[inline(always)]
    fn lane_at(self, s: Self::Sub16, at: u32, default: f32) -> f32 {
        match at.trailing_zeros() as usize {
            32 => default,
            j => s[j / P][j % P],
        }
    }
    #[inline(always)]
    fn products_gt_exact(self, a: Self::F, b: Self::F, c: Self::F, d: Self::F) -> Self::M {
        std::array::from_fn(|j| a[j] * b[j] > c[j] * d[j])
    }
    #[inline(always)]
    fn nearest(self, v: Self::F) -> Self::I {
        map(v, nearest_int)
    }
    #[inline(always)]
    fn low_byte(self, i: Self::I) -> Self::I {
        map(i, |i| i as i8 as i32)
    }
    #[inline(always)]
    fn clamp_i(self, i: Self::I, lo: i32, hi: i32) -> Self::I {
        map(i, |i| i.clamp(lo, hi))
    }
    #[inline(always)]
    fn and_i(self, i: Self::I, c: i32) -> Self::I {
        map(i, |i| i & c)
    }
    #[inline(always)]
    fn or_i(self, a: Self::I, b: Self::I) -> Self::I {
        zip(a, b, |a, b| a | b)
    }
    #[inline(always)]
    fn shl<const S: u32>(self, i: Self::I) -> Self::I {
        map(i, |i| i << S)
    }
    #[inline(always)]
    fn shr<const S: u32>(self, i: Self::I) -> Self::I {
        map(i, |i| ((i as u32) >> S) as i32)
    }
    #[inline(always)]
    fn to_f16(self, f: Self::F, bits: &mut [u16]) -> Self::F {
        for j in 0..P {
            bits[j] = f32_to_f16(f[j]);
        }
        std::array::from_fn(|j| f16_to_f32(bits[j]))
    }
}
