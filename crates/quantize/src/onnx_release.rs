//! ONNX releases by type: f32 (the reference graph), int4, where every linear layer is
//! onnxruntime's `com.microsoft` `MatMulNBits` (4 bits, asymmetric: one f32 scale and one 4-bit
//! zero point per block of `block_size` input columns), or int8 (`MatMulNBits` with 8 bits:
//! ggml's Q8_0 codes, symmetric blocks of 32, the default zero point).
//!
//! The int4 codes are those of [`crate::awq::int4`] (the round-to-nearest quantizer the AWQ
//! search evaluates; with `--awq` the checkpoint handed in is already AWQ-scaled and clipped),
//! shifted from −8..7 to MatMulNBits' unsigned 0..15: `(q + 8) - (zp + 8) = q - zp`, and the
//! bf16-valued scale is stored exactly as f32. onnxruntime's dequantization `(q - zp) * scale`
//! is then exact in f32 (compressed-tensors rounds the same product to bf16).
//!
//! Layouts (onnxruntime's contrib operator schema): `B` is uint8 `[N, k_blocks, block_size / 2]`,
//! two codes per byte along K, the first in the low nibble; `scales` f32 `[N, k_blocks]`;
//! `zero_points` uint8 `[N, ceil(k_blocks / 2)]`, packed the same way. Initializers are named
//! `{weight}.qweight`, `{weight}.scales`, `{weight}.zero_points` (and `{weight}.{e}.…` per expert
//! of a stacked MoE weight), which is how `verify` finds them again.
//!
//! The embedding table (also the tied head) is quantized once: the head is a `MatMulNBits` over
//! it, and the lookup gathers rows of the same `B`, `scales` and `zero_points` and dequantizes
//! them with standard operators by the same formula, so lookup and head see identical weights.
//!
//! A weight whose input width no block size divides falls back: to the largest power of two
//! (at least 16) under `block_size` that divides it, else to f32.

use convert::onnx::graph::{f32_bytes, Attr, GraphBuilder, MS_DOMAIN};
use convert::onnx::linear::{to_f32, Experts, F16Writer, F32Writer, LinearWriter, Weight};
use convert::onnx::onnx_protobuf::tensor_proto::DataType;
use convert::onnx::{write as write_onnx, OnnxSummary};
use convert::Checkpoint;
use convert::Result;
use std::collections::BTreeMap;

use crate::awq::int4::{quantize, Int4Matrix};

/// Block sizes `--block-size` accepts.
pub const BLOCK_SIZES: [usize; 3] = [32, 64, 128];
/// Smallest block MatMulNBits accepts.
const MIN_BLOCK: usize = 16;

/// Weight types of an ONNX release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnnxType {
    /// Every weight f32: the reference graph.
    F32,
    /// Weights f16 (rounded to nearest even), norms and activations f32.
    F16,
    /// Linear layers and the embedding int4 (`MatMulNBits`); norms and scalars f32.
    Int4,
    /// Linear layers and the embedding int8 (`MatMulNBits` with 8 bits): ggml's Q8_0 codes
    /// and scales (symmetric, blocks of 32, the default zero point 128).
    Int8,
}

impl OnnxType {
    /// The `--type` name.
    pub fn name(self) -> &'static str {
        match self {
            OnnxType::F32 => "f32",
            OnnxType::F16 => "f16",
            OnnxType::Int4 => "int4",
            OnnxType::Int8 => "int8",
        }
    }

    /// Parses a `--type` name.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Some(OnnxType::F32),
            "f16" => Some(OnnxType::F16),
            "int4" => Some(OnnxType::Int4),
            "int8" => Some(OnnxType::Int8),
            _ => None,
        }
    }
}

/// What to write.
#[derive(Clone, Debug)]
pub struct OnnxOptions {
    pub ty: OnnxType,
    /// Input columns per int4 block (one of [`BLOCK_SIZES`]).
    pub block_size: usize,
    /// `MatMulNBits` `accuracy_level`: 0 unset (f32 activations), 4 lets onnxruntime quantize
    /// the activations to int8 per block (faster on CPU, not what `verify` computes).
    pub accuracy_level: i64,
    /// int4 releases: bits of the embedding tables (the tied head and the per-layer embedding),
    /// 4 or 8 (Q8_0 blocks, as for int8).
    pub embedding_bits: u8,
    /// AWQ clip bounds by weight name, one per (row, block) at `block_size` (`AwqPlan::clips`
    /// of a search run at that group size); empty for round-to-nearest.
    pub clips: BTreeMap<String, Vec<f32>>,
}

/// A weight written at another block size (or f32) than asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct Fallback {
    pub tensor: String,
    /// `None`: written as f32.
    pub block_size: Option<usize>,
}

/// Block size for a weight with `cols` input columns: `want` when it divides `cols`, else the
/// largest power of two in `MIN_BLOCK..want` that does, else `None` (f32).
pub fn block_for(cols: usize, want: usize) -> Option<usize> {
    let mut b = want;
    while b >= MIN_BLOCK {
        if cols.is_multiple_of(b) {
            return Some(b);
        }
        b /= 2;
    }
    None
}

/// Writes the ONNX release folder `out` (or, with `out` `None`, only plans it: every weight is
/// converted and counted, nothing is written); returns the summary and the fallbacks.
pub fn write(
    ckpt: &Checkpoint,
    out: Option<&std::path::Path>,
    opts: &OnnxOptions,
) -> Result<(OnnxSummary, Vec<Fallback>)> {
    let run = |lin: &mut dyn LinearWriter| match out {
        Some(out) => write_onnx(ckpt, out, lin),
        None => convert::onnx::plan(ckpt, lin),
    };
    match opts.ty {
        OnnxType::F32 => Ok((run(&mut F32Writer)?, Vec::new())),
        OnnxType::F16 => Ok((run(&mut F16Writer)?, Vec::new())),
        OnnxType::Int4 | OnnxType::Int8 => {
            let int8 = opts.ty == OnnxType::Int8;
            let mut w = NBitsWriter {
                bits: if int8 { 8 } else { 4 },
                embedding_bits: if int8 { 8 } else { opts.embedding_bits },
                block_size: if int8 { Q8_BLOCK } else { opts.block_size },
                accuracy_level: opts.accuracy_level,
                clips: opts.clips.clone(),
                fallbacks: Vec::new(),
            };
            let s = run(&mut w)?;
            Ok((s, w.fallbacks))
        }
    }
}

/// Block of the int8 type: ggml's Q8_0 block.
pub const Q8_BLOCK: usize = 32;

/// The `MatMulNBits` writer: int4 (asymmetric, [`crate::awq::int4`]) or int8 (Q8_0).
pub struct NBitsWriter {
    /// Bits of the linear layers: 4 or 8.
    pub bits: u8,
    /// Bits of the embedding tables (the tied head and the per-layer embedding): 4 or 8.
    pub embedding_bits: u8,
    pub block_size: usize,
    pub accuracy_level: i64,
    /// AWQ clip bounds (see [`OnnxOptions::clips`]).
    pub clips: BTreeMap<String, Vec<f32>>,
    pub fallbacks: Vec<Fallback>,
}

/// Packs two 4-bit values per byte, the first in the low nibble; an odd count leaves the last
/// high nibble 0. `v` holds values already in 0..15.
fn pack_nibbles(v: impl ExactSizeIterator<Item = u8>) -> Vec<u8> {
    let mut out = vec![0u8; v.len().div_ceil(2)];
    for (i, x) in v.enumerate() {
        out[i / 2] |= (x & 0xF) << (4 * (i % 2));
    }
    out
}

/// `B`, `scales` and `zero_points` bytes of an int4 matrix in MatMulNBits' layout.
pub fn matmulnbits_tensors(m: &Int4Matrix) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let ng = m.groups();
    let b = pack_nibbles(m.q.iter().map(|&q| (q + 8) as u8));
    let scales: Vec<f32> = m
        .scale
        .iter()
        .map(|&s| kernels::fp::bf16_to_f32(s))
        .collect();
    let mut zp = Vec::with_capacity(m.rows * ng.div_ceil(2));
    for r in 0..m.rows {
        zp.extend(pack_nibbles(
            m.zero[r * ng..(r + 1) * ng].iter().map(|&z| (z + 8) as u8),
        ));
    }
    (b, f32_bytes(&scales), zp)
}

/// `B` and `scales` bytes of `[rows, cols]` as Q8_0 blocks in MatMulNBits' 8-bit layout
/// (codes + 128, one per byte; the default zero point 128 undoes the shift).
pub fn q8_tensors(w: &[f32], rows: usize, cols: usize) -> (Vec<u8>, Vec<u8>) {
    use kernels::blocks::BlockQ8_0;
    let kb = cols / Q8_BLOCK;
    let mut blocks = vec![
        BlockQ8_0 {
            d: 0,
            qs: [0; Q8_BLOCK]
        };
        kb
    ];
    let mut b = Vec::with_capacity(rows * cols);
    let mut scales = Vec::with_capacity(rows * kb);
    for row in w.chunks_exact(cols) {
        kernels::quants::legacy::quantize_row_q8_0(row, &mut blocks, None);
        for blk in &blocks {
            b.extend(blk.qs.iter().map(|&q| (q as i16 + 128) as u8));
            scales.push(kernels::fp::f16_to_f32(blk.d));
        }
    }
    (b, f32_bytes(&scales))
}

impl NBitsWriter {
    fn block(&mut self, name: &str, cols: usize, bits: u8) -> Option<usize> {
        let want = if bits == 8 { Q8_BLOCK } else { self.block_size };
        let b = if bits == 8 {
            cols.is_multiple_of(Q8_BLOCK).then_some(Q8_BLOCK)
        } else {
            block_for(cols, want)
        };
        if b != Some(want) {
            self.fallbacks.push(Fallback {
                tensor: name.to_string(),
                block_size: b,
            });
        }
        b
    }

    /// Writes `{prefix}.qweight/.scales(/.zero_points)` for the `[rows, cols]` matrix `w`,
    /// clipped first to `clip` (one bound per row and block, int4) when given. The `qweight`
    /// initializer carries its `bits` as metadata, so a reader needs no graph walk.
    fn write_q(
        &self,
        g: &mut GraphBuilder<'_>,
        prefix: &str,
        w: &[f32],
        (rows, cols, bs): (usize, usize, usize),
        clip: Option<&[f32]>,
        bits: u8,
    ) -> Result<()> {
        let q = format!("{prefix}.qweight");
        if bits == 8 {
            let (b, s) = q8_tensors(w, rows, cols);
            let kb = (cols / bs) as i64;
            g.initializer(&q, DataType::UINT8, &[rows as i64, kb, bs as i64], &b)?;
            g.annotate(&q, "bits", "8");
            let sn = format!("{prefix}.scales");
            return g.initializer(&sn, DataType::FLOAT, &[rows as i64, kb], &s);
        }
        let m = quantize(w, rows, cols, bs, clip);
        let (b, s, z) = matmulnbits_tensors(&m);
        let kb = (cols / bs) as i64;
        let r = rows as i64;
        g.initializer(
            &format!("{prefix}.qweight"),
            DataType::UINT8,
            &[r, kb, bs as i64 / 2],
            &b,
        )?;
        g.initializer(&format!("{prefix}.scales"), DataType::FLOAT, &[r, kb], &s)?;
        g.initializer(
            &format!("{prefix}.zero_points"),
            DataType::UINT8,
            &[r, (kb + 1) / 2],
            &z,
        )?;
        g.annotate(&q, "bits", "4");
        Ok(())
    }

    fn matmul(
        &self,
        g: &mut GraphBuilder<'_>,
        x: &str,
        prefix: &str,
        (rows, cols, bs): (usize, usize, usize),
        bits: u8,
    ) -> String {
        let (q, s, z) = (
            format!("{prefix}.qweight"),
            format!("{prefix}.scales"),
            format!("{prefix}.zero_points"),
        );
        let inputs: &[&str] = if bits == 8 {
            &[x, &q, &s]
        } else {
            &[x, &q, &s, &z]
        };
        g.node(
            MS_DOMAIN,
            "MatMulNBits",
            inputs,
            1,
            vec![
                ("K", Attr::Int(cols as i64)),
                ("N", Attr::Int(rows as i64)),
                ("bits", Attr::Int(bits as i64)),
                ("block_size", Attr::Int(bs as i64)),
                ("accuracy_level", Attr::Int(self.accuracy_level)),
            ],
        )
        .remove(0)
    }

    /// Splits each uint8 of `x` into its low and high nibble along a new last axis, as f32.
    fn unpack(g: &mut GraphBuilder<'_>, x: &str) -> Result<String> {
        let mask = g.u8(0x0F)?;
        let four = g.u8(4)?;
        let lo = g.op("BitwiseAnd", &[x, &mask], vec![]);
        let hi = g.op(
            "BitShift",
            &[x, &four],
            vec![("direction", Attr::Str("RIGHT"))],
        );
        let ax = g.ints(&[-1])?;
        let lo = g.op("Unsqueeze", &[&lo, &ax], vec![]);
        let hi = g.op("Unsqueeze", &[&hi, &ax], vec![]);
        let both = g.op("Concat", &[&lo, &hi], vec![("axis", Attr::Int(-1))]);
        Ok(to_f32(g, &both))
    }
}

impl LinearWriter for NBitsWriter {
    fn linear(&mut self, g: &mut GraphBuilder<'_>, x: &str, w: Weight<'_>) -> Result<String> {
        let Weight {
            name,
            rows,
            cols,
            values,
        } = w;
        let Some(bs) = self.block(name, cols, self.bits) else {
            return F32Writer.linear(g, x, w);
        };
        // Clip bounds apply only at the block size they were searched for.
        let clip = self
            .clips
            .get(name)
            .filter(|c| bs == self.block_size && c.len() == rows * (cols / bs));
        self.write_q(
            g,
            name,
            values,
            (rows, cols, bs),
            clip.map(Vec::as_slice),
            self.bits,
        )?;
        Ok(self.matmul(g, x, name, (rows, cols, bs), self.bits))
    }

    fn embedding(&mut self, g: &mut GraphBuilder<'_>, ids: &str, e: Weight<'_>) -> Result<String> {
        let (name, rows, cols) = (e.name, e.rows, e.cols);
        let Some(bs) = self.block(name, cols, self.embedding_bits) else {
            return F32Writer.embedding(g, ids, e);
        };
        self.write_q(
            g,
            name,
            e.values,
            (rows, cols, bs),
            None,
            self.embedding_bits,
        )?;
        let kb = (cols / bs) as i64;
        if self.embedding_bits == 8 {
            // codes [.., kb, 32] - 128, times the block scales, -> [.., cols]
            let q = g.op("Gather", &[&format!("{name}.qweight"), ids], vec![]);
            let q = to_f32(g, &q);
            let zp = g.float(128.0)?;
            let d = g.op("Sub", &[&q, &zp], vec![]);
            let axis = g.ints(&[-1])?;
            let sc = g.op("Gather", &[&format!("{name}.scales"), ids], vec![]);
            let sc = g.op("Unsqueeze", &[&sc, &axis], vec![]);
            let w = g.op("Mul", &[&d, &sc], vec![]);
            let lead = g.op("Shape", &[ids], vec![]);
            let tail = g.ints(&[cols as i64])?;
            let shape = g.op("Concat", &[&lead, &tail], vec![("axis", Attr::Int(0))]);
            return Ok(g.op("Reshape", &[&w, &shape], vec![]));
        }
        // codes [.., kb, bs/2] -> [.., kb, bs/2, 2] -> [.., kb, bs]
        let q = g.op("Gather", &[&format!("{name}.qweight"), ids], vec![]);
        let q = Self::unpack(g, &q)?;
        let lead = g.op("Shape", &[ids], vec![]);
        let tail = g.ints(&[kb, bs as i64])?;
        let shape = g.op("Concat", &[&lead, &tail], vec![("axis", Attr::Int(0))]);
        let q = g.op("Reshape", &[&q, &shape], vec![]);
        // zero points [.., ceil(kb/2)] -> [.., kb, 1]
        let z = g.op("Gather", &[&format!("{name}.zero_points"), ids], vec![]);
        let z = Self::unpack(g, &z)?;
        let tail = g.ints(&[(kb + 1) / 2 * 2])?;
        let zshape = g.op("Concat", &[&lead, &tail], vec![("axis", Attr::Int(0))]);
        let z = g.op("Reshape", &[&z, &zshape], vec![]);
        let (start, end, axis) = (g.ints(&[0])?, g.ints(&[kb])?, g.ints(&[-1])?);
        let z = g.op("Slice", &[&z, &start, &end, &axis], vec![]);
        let z = g.op("Unsqueeze", &[&z, &axis], vec![]);
        let s = g.op("Gather", &[&format!("{name}.scales"), ids], vec![]);
        let s = g.op("Unsqueeze", &[&s, &axis], vec![]);
        let d = g.op("Sub", &[&q, &z], vec![]);
        let w = g.op("Mul", &[&d, &s], vec![]);
        let tail = g.ints(&[cols as i64])?;
        let shape = g.op("Concat", &[&lead, &tail], vec![("axis", Attr::Int(0))]);
        Ok(g.op("Reshape", &[&w, &shape], vec![]))
    }

    fn experts(&mut self, g: &mut GraphBuilder<'_>, x: &str, w: Experts<'_>) -> Result<String> {
        let (experts, name, rows, cols) = (w.count, w.weight.name, w.weight.rows, w.weight.cols);
        let Some(bs) = self.block(name, cols, self.bits) else {
            return F32Writer.experts(g, x, w);
        };
        let ax = g.ints(&[0])?;
        let mut outs = Vec::with_capacity(experts);
        for e in 0..experts {
            let prefix = format!("{name}.{e}");
            let we = &w.weight.values[e * rows * cols..(e + 1) * rows * cols];
            self.write_q(g, &prefix, we, (rows, cols, bs), None, self.bits)?;
            let idx = g.int(e as i64)?;
            let xe = g.op("Gather", &[x, &idx], vec![("axis", Attr::Int(0))]);
            let y = self.matmul(g, &xe, &prefix, (rows, cols, bs), self.bits);
            outs.push(g.op("Unsqueeze", &[&y, &ax], vec![]));
        }
        let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
        Ok(g.op("Concat", &refs, vec![("axis", Attr::Int(0))]))
    }

    fn head(&mut self, g: &mut GraphBuilder<'_>, x: &str, name: &str) -> Result<String> {
        // The head reads the table `embedding` wrote: f32 when it fell back, else int4, whose
        // `B` shape [N, k_blocks, block / 2] gives N, K and the block.
        if g.dims_of(name).is_some() {
            return F32Writer.head(g, x, name);
        }
        let q = format!("{name}.qweight");
        let Some(&[rows, kb, half]) = g.dims_of(&q) else {
            return Err(convert::ConvertError::Format {
                file: name.into(),
                message: "the tied head has no embedding table to read".into(),
            });
        };
        let bits = self.embedding_bits;
        let bs = if bits == 8 { half } else { half * 2 } as usize;
        Ok(self.matmul(g, x, name, (rows as usize, kb as usize * bs, bs), bits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_falls_back_to_a_dividing_power_of_two() {
        assert_eq!(block_for(256, 128), Some(128));
        assert_eq!(block_for(320, 128), Some(64));
        assert_eq!(block_for(96, 128), Some(32));
        assert_eq!(block_for(2112, 128), Some(64));
        assert_eq!(block_for(704, 32), Some(32));
        assert_eq!(block_for(40, 32), None);
    }

    #[test]
    fn nibbles_pack_low_first() {
        assert_eq!(pack_nibbles([1u8, 2, 3].into_iter()), vec![0x21, 0x03]);
    }

    #[test]
    fn matmulnbits_layout_dequantizes_to_the_int4_matrix() {
        let (rows, cols, bs) = (3, 64, 32);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        let m = quantize(&w, rows, cols, bs, None);
        let (b, s, z) = matmulnbits_tensors(&m);
        let kb = cols / bs;
        let scales: Vec<f32> = s
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let want = m.dequantize();
        let mut checked = 0;
        for r in 0..rows {
            for c in 0..cols {
                let blk = c / bs;
                let byte = b[r * cols / 2 + c / 2];
                let q = (byte >> (4 * (c % 2))) & 0xF;
                let zb = z[r * kb.div_ceil(2) + blk / 2];
                let zp = (zb >> (4 * (blk % 2))) & 0xF;
                let got = (q as f32 - zp as f32) * scales[r * kb + blk];
                // compressed-tensors rounds the product to bf16; MatMulNBits keeps it exact.
                let want_exact = want[r * cols + c];
                assert!((got - want_exact).abs() <= want_exact.abs() * 1e-2 + 1e-6);
                checked += 1;
            }
        }
        assert_eq!(checked, rows * cols);
    }
}
