//! compressed-tensors' `pack-quantized` int4 layout, both directions in one place: `g4q convert
//! --format awq` packs with it and the AWQ reader of `verify` unpacks with it.
//!
//! Codes and zero points are signed 4-bit values (−8..7) stored with a +8 offset, eight to a
//! little-endian int32 word, element `k` at bits `4·(k % 8)`:
//! - `weight_packed` `[rows, ceil(cols/8)]`: codes packed along the columns, natural order, the
//!   last word of a row zero-padded;
//! - `weight_zero_point` `[ceil(rows/8), groups]`: zero points packed along the *rows* (the
//!   output dimension).

/// Packs `[rows, cols]` codes into `weight_packed` bytes.
pub fn pack_rows(q: &[i8], rows: usize, cols: usize) -> Vec<u8> {
    let words = cols.div_ceil(8);
    let mut out = Vec::with_capacity(rows * words * 4);
    for r in 0..rows {
        let row = &q[r * cols..(r + 1) * cols];
        for w in 0..words {
            let mut v = 0u32;
            for (i, &c) in row[w * 8..(w * 8 + 8).min(cols)].iter().enumerate() {
                v |= (((c as i32 + 8) as u32) & 0xF) << (4 * i);
            }
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Packs `[rows, groups]` zero points into `weight_zero_point` bytes.
pub fn pack_zero_points(z: &[i8], rows: usize, groups: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.div_ceil(8) * groups * 4);
    for rb in 0..rows.div_ceil(8) {
        for j in 0..groups {
            let mut v = 0u32;
            for i in 0..8 {
                let r = rb * 8 + i;
                if r < rows {
                    v |= (((z[r * groups + j] as i32 + 8) as u32) & 0xF) << (4 * i);
                }
            }
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

fn word(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

/// The code of row `r`, column `k` from `weight_packed` bytes of a matrix with `cols` columns.
/// The caller has checked the bytes hold `[rows, ceil(cols/8)]` words.
pub fn code(packed: &[u8], cols: usize, r: usize, k: usize) -> i32 {
    ((word(packed, r * cols.div_ceil(8) + k / 8) >> (4 * (k % 8))) & 0xF) as i32 - 8
}

/// The zero point of row `r`, group `j` from `weight_zero_point` bytes with `groups` groups.
/// The caller has checked the bytes hold `[ceil(rows/8), groups]` words.
pub fn zero_point(zero: &[u8], groups: usize, r: usize, j: usize) -> i32 {
    ((word(zero, (r / 8) * groups + j) >> (4 * (r % 8))) & 0xF) as i32 - 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_pack_in_natural_order_with_offset_8() {
        let codes: Vec<i8> = (-8..8).collect();
        let b = pack_rows(&codes, 1, 16);
        assert_eq!(
            b,
            [0x76543210u32, 0xFEDCBA98].map(u32::to_le_bytes).concat()
        );
        // A row of 10 codes takes two words, the second zero-padded above its two codes.
        let b = pack_rows(&[0i8; 10], 1, 10);
        assert_eq!(
            b,
            [0x88888888u32, 0x00000088].map(u32::to_le_bytes).concat()
        );
    }

    #[test]
    fn zero_points_pack_along_the_output_dim() {
        // 9 rows, 2 groups: row r, group j has zero point r - 4 + j (within -8..7).
        let z: Vec<i8> = (0..9)
            .flat_map(|r| (0..2).map(move |j| (r - 4 + j) as i8))
            .collect();
        let b = pack_zero_points(&z, 9, 2);
        let words: Vec<u32> = b
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(words.len(), 4);
        // Word (0, 0): rows 0..8 of group 0, zero point + 8 = r + 4.
        assert_eq!(words[0], 0xBA987654);
        assert_eq!(words[1], 0xCBA98765);
        // Word (1, j): row 8 alone.
        assert_eq!(words[2], 12);
        assert_eq!(words[3], 13);
    }

    #[test]
    fn unpacking_inverts_packing() {
        let (rows, cols, groups) = (11, 21, 3);
        let q: Vec<i8> = (0..rows * cols).map(|i| ((i * 7) % 16) as i8 - 8).collect();
        let z: Vec<i8> = (0..rows * groups)
            .map(|i| ((i * 5) % 16) as i8 - 8)
            .collect();
        let packed = pack_rows(&q, rows, cols);
        let zero = pack_zero_points(&z, rows, groups);
        let mut checked = 0;
        for r in 0..rows {
            for k in 0..cols {
                assert_eq!(code(&packed, cols, r, k), q[r * cols + k] as i32);
                checked += 1;
            }
            for j in 0..groups {
                assert_eq!(zero_point(&zero, groups, r, j), z[r * groups + j] as i32);
                checked += 1;
            }
        }
        println!("checked {checked} unpacked values");
    }
}
