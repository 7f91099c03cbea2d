//! Kernel paths and runtime dispatch. A [`Path`] is one implementation of every dequantizer and
//! dot product: `scalar` (ggml's generic C, the reference), `avx2` and `avx512` (ggml-cpu's x86
//! algorithms) and `neon` (ggml-cpu's ARM algorithms written over the portable 128-bit op set in
//! [`ops128`]; on non-ARM machines it runs through that op set's emulation and is called
//! `neon-emulated`, which exists so the NEON logic is tested here).
//!
//! The path is the best one the CPU supports unless `G4Q_SIMD` names one (`scalar`, `avx2`,
//! `avx512`, `neon`, `neon-emulated`); naming a path the CPU lacks is an error, never a silent
//! fallback, so a forced benchmark or test measures what it claims to.

pub(crate) mod layout;
pub mod ops128;
pub(crate) mod scalar;

#[cfg(target_arch = "x86_64")]
#[macro_use]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
mod neon;

use std::fmt;
use std::sync::OnceLock;

use crate::{GgmlType, KernelError};

/// One implementation of the dequantize and dot-product kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Path {
    /// ggml's generic C kernels, ported literally: the reference.
    Scalar,
    /// x86-64 with AVX2, FMA and F16C.
    Avx2,
    /// x86-64 with AVX-512 F/BW/VL and VNNI (plus the AVX2 set).
    Avx512,
    /// ARM NEON; on other architectures the same kernel code over the op-set emulation.
    Neon,
}

impl Path {
    /// Every path, in the order tests iterate them.
    pub const ALL: [Path; 4] = [Path::Scalar, Path::Avx2, Path::Avx512, Path::Neon];

    /// The name `G4Q_SIMD` takes for this path on this machine.
    pub fn name(self) -> &'static str {
        match self {
            Path::Scalar => "scalar",
            Path::Avx2 => "avx2",
            Path::Avx512 => "avx512",
            Path::Neon if cfg!(target_arch = "aarch64") => "neon",
            Path::Neon => "neon-emulated",
        }
    }

    /// Whether this CPU (or, for emulated NEON, this build) can run the path.
    pub fn is_supported(self) -> bool {
        match self {
            Path::Scalar | Path::Neon => true,
            Path::Avx2 => has_avx2(),
            Path::Avx512 => has_avx512(),
        }
    }

    /// Why the path cannot run here, or `None` when it can.
    fn unsupported_reason(self) -> Option<&'static str> {
        if self.is_supported() {
            return None;
        }
        Some(if cfg!(target_arch = "x86_64") {
            match self {
                Path::Avx2 => "this CPU lacks avx2, fma or f16c",
                _ => "this CPU lacks avx512f, avx512bw, avx512vl or avx512vnni",
            }
        } else {
            "the x86 kernels exist only in x86-64 builds"
        })
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx2() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    has_avx2()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx512() -> bool {
    false
}

/// The paths this machine can run, scalar first. On x86 this includes emulated NEON.
pub fn available_paths() -> Vec<Path> {
    Path::ALL.into_iter().filter(|p| p.is_supported()).collect()
}

/// The fastest native path: AVX-512 > AVX2 > scalar on x86, NEON on AArch64. Emulated NEON is
/// never chosen by itself.
pub fn best_path() -> Path {
    if cfg!(target_arch = "aarch64") {
        Path::Neon
    } else if has_avx512() {
        Path::Avx512
    } else if has_avx2() {
        Path::Avx2
    } else {
        Path::Scalar
    }
}

/// The path named by a `G4Q_SIMD` value (`None` or empty: the best one), checked against the
/// CPU.
pub fn path_from_setting(value: Option<&str>) -> Result<Path, KernelError> {
    let Some(raw) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(best_path());
    };
    let fail = |reason: &str| KernelError::SimdPath {
        requested: raw.to_string(),
        reason: reason.to_string(),
    };
    let path = match raw.to_ascii_lowercase().as_str() {
        "scalar" => Path::Scalar,
        "avx2" => Path::Avx2,
        "avx512" => Path::Avx512,
        "neon" if cfg!(target_arch = "aarch64") => Path::Neon,
        "neon" => {
            return Err(fail(
                "not an AArch64 CPU (use neon-emulated to test the NEON code)",
            ))
        }
        "neon-emulated" if !cfg!(target_arch = "aarch64") => Path::Neon,
        "neon-emulated" => return Err(fail("this is an AArch64 CPU: use neon")),
        _ => return Err(fail("expected scalar, avx2, avx512, neon or neon-emulated")),
    };
    match path.unsupported_reason() {
        None => Ok(path),
        Some(reason) => Err(fail(reason)),
    }
}

/// The path in use: `G4Q_SIMD` if set, else the best one; read once per process.
pub fn active_path() -> Result<Path, KernelError> {
    static ACTIVE: OnceLock<Result<Path, KernelError>> = OnceLock::new();
    ACTIVE
        .get_or_init(|| path_from_setting(std::env::var("G4Q_SIMD").ok().as_deref()))
        .clone()
}

/// Fails unless `path` can run on this machine: the one check that makes calling the
/// `target_feature` kernels sound.
pub(crate) fn ensure_supported(path: Path) -> Result<(), KernelError> {
    match path.unsupported_reason() {
        None => Ok(()),
        Some(reason) => Err(KernelError::SimdPath {
            requested: path.name().to_string(),
            reason: reason.to_string(),
        }),
    }
}

/// How far ahead of the block being multiplied the x86 quantized kernels ask for weight bytes
/// (into L1). A decode product streams its weights from memory once: the hardware prefetchers
/// alone left the kernels waiting on it, and so did a burst per row. Requests spread over the
/// block loop keep a steady number of lines in flight. With the rows taken in [`stream_row`]
/// order, L1 requests alone did as well as L1 + L2 requests or better (distances and levels
/// measured in `bench/README.md`).
#[cfg(target_arch = "x86_64")]
const PREFETCH_L1: usize = 1024;

/// Asks for the cache lines [`PREFETCH_L1`] bytes past the start of `block` into L1, one request
/// per 64 of its first `len` bytes. Called once per iteration of a kernel's block loop with `len`
/// the loop's stride, so consecutive calls reach every line of the weight stream. A hint only:
/// the results do not depend on it.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch_ahead(block: &[u8], len: usize) {
    use std::arch::x86_64::_MM_HINT_T0;
    prefetch_lines::<PREFETCH_L1, _MM_HINT_T0>(block.as_ptr(), len);
}

/// Asks for the cache lines `AHEAD` bytes past `at` (`HINT`: the `_mm_prefetch` level), one
/// request per 64 of the next `len` bytes. The addresses may lie past the end of the weights.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch_lines<const AHEAD: usize, const HINT: i32>(at: *const u8, len: usize) {
    use std::arch::x86_64::_mm_prefetch;
    let ahead = at.wrapping_add(AHEAD);
    let mut k = 0;
    while k < len {
        // SAFETY: `wrapping_add` keeps the address arithmetic defined wherever it lands, and a
        // prefetch never faults and reads nothing the program can observe, even for an address
        // outside every allocation.
        unsafe { _mm_prefetch::<HINT>(ahead.wrapping_add(k).cast()) };
        k += 64;
    }
}

/// How many runs of rows [`stream_row`] interleaves (2-16 measured: 4 was best for Q4_K and
/// within the spread of the best for Q8_0).
const ROW_STREAMS: usize = 4;

/// The row that a decode panel of `n` rows multiplies `j`-th: the panel cut into
/// [`ROW_STREAMS`] equal runs, one row from each run in turn, then the few rows left over.
///
/// A panel's rows are contiguous, so taking them top to bottom reads one ascending stream of
/// addresses, and a core then waits on memory far more than its arithmetic needs; four streams
/// a run apart keep more lines in flight. From memory on 2 threads every quantized format gained
/// 17-63 % weight GB/s; with the matrix in L3 most lose 2-8 % (`bench/README.md`). Each row is
/// still one call of the one-row dot, so the order changes no output bit.
#[inline(always)]
fn stream_row(j: usize, n: usize) -> usize {
    let per = n / ROW_STREAMS;
    if j < per * ROW_STREAMS {
        (j % ROW_STREAMS) * per + j / ROW_STREAMS
    } else {
        j
    }
}

/// `out[r] = dot(row r)` for the `rb`-byte rows of `x` (as many as both hold), taken in
/// [`stream_row`] order: the one row loop of every decode kernel.
#[inline(always)]
pub(crate) fn rows_in_stream_order(
    x: &[u8],
    rb: usize,
    out: &mut [f32],
    mut dot: impl FnMut(&[u8]) -> f32,
) {
    let n = out.len().min(x.len() / rb);
    for j in 0..n {
        let r = stream_row(j, n);
        out[r] = dot(&x[r * rb..(r + 1) * rb]);
    }
}

/// Number of blocks in `bytes` of type `ty`, or the error naming the bad length.
pub(crate) fn whole_blocks(ty: GgmlType, bytes: &[u8]) -> Result<usize, KernelError> {
    let ts = ty.type_size();
    if !bytes.len().is_multiple_of(ts) {
        return Err(KernelError::ByteLength {
            ty,
            len: bytes.len(),
            type_size: ts,
        });
    }
    Ok(bytes.len() / ts)
}

/// Dequantizes `bytes` (whole blocks of `ty`) into `out` (exactly their values) on the active
/// path. Bit-identical to [`crate::quants::dequantize_row_ref`] on every path.
pub fn dequantize_row(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), KernelError> {
    dequantize_row_with(active_path()?, ty, bytes, out)
}

/// [`dequantize_row`] on a chosen path.
pub fn dequantize_row_with(
    path: Path,
    ty: GgmlType,
    bytes: &[u8],
    out: &mut [f32],
) -> Result<(), KernelError> {
    ensure_supported(path)?;
    let nb = whole_blocks(ty, bytes)?;
    let expected = nb
        .checked_mul(ty.block_size())
        .ok_or(KernelError::Overflow {
            ty,
            what: "the dequantized row",
        })?;
    if out.len() != expected {
        return Err(KernelError::OutputLength {
            ty,
            expected,
            got: out.len(),
            unit: "values",
        });
    }
    dequantize_checked(path, ty, bytes, out);
    Ok(())
}

/// Dispatches a dequantization whose path and lengths are already checked.
fn dequantize_checked(path: Path, ty: GgmlType, bytes: &[u8], out: &mut [f32]) {
    match path {
        Path::Scalar => scalar::dequantize(ty, bytes, out),
        Path::Neon => neon::dequantize(ty, bytes, out),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `ensure_supported` found avx2, fma and f16c on this CPU.
        Path::Avx2 => unsafe { avx2::dequantize(ty, bytes, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `ensure_supported` found the AVX-512 set (and AVX2) on this CPU.
        Path::Avx512 => unsafe { avx512::dequantize(ty, bytes, out) },
        #[cfg(not(target_arch = "x86_64"))]
        Path::Avx2 | Path::Avx512 => scalar::dequantize(ty, bytes, out),
    }
}

/// Dot product of weight blocks `x` with activation blocks `y` (lengths already checked:
/// equal block counts of `ty` and its `vec_dot_type`) on a supported `path`.
pub(crate) fn vec_dot_checked(path: Path, ty: GgmlType, x: &[u8], y: &[u8]) -> f32 {
    match path {
        Path::Scalar => scalar::vec_dot(ty, x, y),
        Path::Neon => neon::vec_dot(ty, x, y),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: callers checked the path with `ensure_supported`.
        Path::Avx2 => unsafe { avx2::vec_dot(ty, x, y) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: callers checked the path with `ensure_supported`.
        Path::Avx512 => unsafe { avx512::vec_dot(ty, x, y) },
        #[cfg(not(target_arch = "x86_64"))]
        Path::Avx2 | Path::Avx512 => scalar::vec_dot(ty, x, y),
    }
}

/// Dot products of the consecutive weight rows in `x` (`row_bytes` each, one per value of
/// `out`, lengths already checked) with one activation row `y` on a supported `path`. Each
/// output is bit-identical to [`vec_dot_checked`] of its row: the x86 paths run the same kernel
/// code with the type matched once for all rows, the others call it row by row.
pub(crate) fn vec_dot_rows_checked(
    path: Path,
    ty: GgmlType,
    x: &[u8],
    row_bytes: usize,
    y: &[u8],
    out: &mut [f32],
) {
    match path {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: callers checked the path with `ensure_supported`.
        Path::Avx2 => unsafe { avx2::vec_dot_rows(ty, x, row_bytes, y, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: callers checked the path with `ensure_supported`.
        Path::Avx512 => unsafe { avx512::vec_dot_rows(ty, x, row_bytes, y, out) },
        _ => {
            rows_in_stream_order(x, row_bytes.max(1), out, |w| {
                vec_dot_checked(path, ty, w, y)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_check_the_cpu() {
        assert_eq!(path_from_setting(None).unwrap(), best_path());
        assert_eq!(path_from_setting(Some("")).unwrap(), best_path());
        assert_eq!(path_from_setting(Some("SCALAR")).unwrap(), Path::Scalar);
        assert!(path_from_setting(Some("sse9")).is_err());
        for p in Path::ALL {
            assert_eq!(path_from_setting(Some(p.name())).is_ok(), p.is_supported());
        }
        if !cfg!(target_arch = "aarch64") {
            assert!(path_from_setting(Some("neon")).is_err());
        }
    }

    #[test]
    fn stream_row_visits_every_row_once_in_interleaved_runs() {
        for n in 0..70 {
            let order: Vec<usize> = (0..n).map(|j| stream_row(j, n)).collect();
            let mut seen = order.clone();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n = {n}");
            let per = n / ROW_STREAMS;
            if per > 0 {
                // The first round takes the first row of each run.
                let first: Vec<usize> = (0..ROW_STREAMS).map(|p| p * per).collect();
                assert_eq!(order[..ROW_STREAMS], first[..], "n = {n}");
            }
        }
        assert_eq!(
            (0..10).map(|j| stream_row(j, 10)).collect::<Vec<_>>(),
            [0, 2, 4, 6, 1, 3, 5, 7, 8, 9]
        );
    }

    #[test]
    fn available_paths_start_with_scalar() {
        let paths = available_paths();
        assert_eq!(paths[0], Path::Scalar);
        assert!(paths.contains(&best_path()));
    }
}
