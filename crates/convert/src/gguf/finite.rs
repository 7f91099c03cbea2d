//! Whether ggml tensor bytes hold only finite values, without dequantizing them: a block
//! type's values are its integer codes (always finite) times its f16 scales, so two bytes per
//! block decide; float types are checked value by value. Readers use it to refuse a file with
//! a NaN or infinite weight, writers to refuse values the target type cannot hold (a weight
//! of 70144 is +Inf in F16; a block of huge values overflows its f16 scale).

use kernels::GgmlType;

/// Where a ggml block keeps its scales: the byte offsets of its f16 scales (`d`, and `dmin`,
/// `m` or `s` where it has one), or `None` for the types whose every element is a float.
fn f16_scale_offsets(ty: GgmlType) -> Option<&'static [usize]> {
    use GgmlType::*;
    Some(match ty {
        F32 | F16 | BF16 | Q8K => return None,
        Q4_0 | Q5_0 | Q8_0 | IQ4NL | IQ4XS => &[0],
        Q4_1 | Q5_1 | Q8_1 | Q4K | Q5K => &[0, 2],
        // Scales and quants first, then d (and dmin): block_q2_K, block_q3_K, block_q6_K.
        Q2K => &[80, 82],
        Q3K => &[108],
        Q6K => &[208],
    })
}

/// The first element of `data` (a tensor of type `ty`) that is or would dequantize to a NaN or
/// an infinity, with what is wrong there; `None` when every value is finite.
pub fn first_non_finite(ty: GgmlType, data: &[u8]) -> Option<(usize, String)> {
    let f16_bad = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]) & 0x7c00 == 0x7c00;
    let value = |x: f32| {
        if x.is_nan() {
            "NaN".to_string()
        } else {
            x.to_string()
        }
    };
    let f16_value = |b: &[u8]| value(half::f16::from_le_bytes([b[0], b[1]]).to_f32());
    match ty {
        GgmlType::F32 | GgmlType::Q8K => {
            // Q8_K's scale is an f32 at the start of each block; F32 is one value per "block".
            let size = ty.type_size();
            let step = ty.block_size();
            data.chunks_exact(size).enumerate().find_map(|(i, b)| {
                let x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                (!x.is_finite()).then(|| (i * step, format!("value {}", value(x))))
            })
        }
        GgmlType::F16 => data
            .chunks_exact(2)
            .enumerate()
            .find_map(|(i, b)| f16_bad(b).then(|| (i, format!("value {}", f16_value(b))))),
        GgmlType::BF16 => data.chunks_exact(2).enumerate().find_map(|(i, b)| {
            let bits = u16::from_le_bytes([b[0], b[1]]);
            (bits & 0x7f80 == 0x7f80).then(|| {
                (
                    i,
                    format!("value {}", value(half::bf16::from_bits(bits).to_f32())),
                )
            })
        }),
        _ => {
            let offsets = f16_scale_offsets(ty)?;
            data.chunks_exact(ty.type_size())
                .enumerate()
                .find_map(|(i, block)| {
                    offsets.iter().find_map(|&o| {
                        let b = &block[o..o + 2];
                        f16_bad(b).then(|| {
                            (
                                i * ty.block_size(),
                                format!("{} block scale {}", ty.name(), f16_value(b)),
                            )
                        })
                    })
                })
        }
    }
}

/// Checks `encoded`, the bytes `ty` made of `values` (whole rows of `n_per_row`): `Err` names
/// the first source value that does not fit, with its row and column.
pub fn check_encoded(
    ty: GgmlType,
    values: &[f32],
    encoded: &[u8],
    n_per_row: usize,
) -> Result<(), String> {
    let Some((element, _)) = first_non_finite(ty, encoded) else {
        return Ok(());
    };
    let n_per_row = n_per_row.max(1);
    let block = values
        .get(element..(element + ty.block_size()).min(values.len()))
        .unwrap_or_default();
    // The value that overflowed: for a block type, the block's largest magnitude.
    let (offset, value) = block
        .iter()
        .copied()
        .enumerate()
        .fold((0, 0f32), |best, (i, v)| {
            if v.abs() > best.1.abs() {
                (i, v)
            } else {
                best
            }
        });
    let at = element + offset;
    let why = match ty {
        GgmlType::F16 => "largest finite f16 is 65504".to_string(),
        GgmlType::BF16 | GgmlType::F32 => format!("largest finite {} is {:e}", ty.name(), f32::MAX),
        _ => format!("its {} block scale overflows f16", ty.name()),
    };
    Err(format!(
        "value {value} at row {}, column {} does not fit in {} ({why})",
        at / n_per_row,
        at % n_per_row,
        ty.name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each block type with a NaN or infinite scale in its second block, and each float type
    /// with a non-finite value, is caught at the right element; finite data passes.
    #[test]
    fn non_finite_scales_and_values_are_found() {
        let mut cases = 0;
        for ty in GgmlType::ALL {
            let blocks = 3;
            let clean = vec![0u8; ty.type_size() * blocks];
            assert_eq!(first_non_finite(ty, &clean), None, "{ty:?}");
            let offsets = f16_scale_offsets(ty).map_or(vec![0], <[usize]>::to_vec);
            for &o in &offsets {
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                    let mut data = clean.clone();
                    let at = ty.type_size() + o;
                    match ty {
                        GgmlType::F32 | GgmlType::Q8K => {
                            data[at..at + 4].copy_from_slice(&bad.to_le_bytes())
                        }
                        GgmlType::BF16 => data[at..at + 2]
                            .copy_from_slice(&half::bf16::from_f32(bad).to_le_bytes()),
                        _ => data[at..at + 2]
                            .copy_from_slice(&half::f16::from_f32(bad).to_le_bytes()),
                    }
                    let (element, what) = first_non_finite(ty, &data).expect("found");
                    assert_eq!(element, ty.block_size(), "{ty:?} offset {o}: {what}");
                    cases += 1;
                }
            }
        }
        println!("{cases} corrupt tensors caught");
    }

    #[test]
    fn values_too_large_for_the_target_type_are_named() {
        let mut values = vec![0.5f32; 64];
        values[37] = 70144.0;
        let f16: Vec<u8> = values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let err = check_encoded(GgmlType::F16, &values, &f16, 32).unwrap_err();
        assert!(
            err.starts_with("value 70144 at row 1, column 5 does not fit in f16"),
            "{err}"
        );
        let fine: Vec<u8> = vec![0u8; 128];
        assert_eq!(check_encoded(GgmlType::F16, &[0.0; 64], &fine, 32), Ok(()));
    }
}
