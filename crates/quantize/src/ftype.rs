//! llama.cpp's file types (`llama_ftype`): the named mixes llama-quantize offers, their ids
//! (written as `general.file_type`) and default tensor types.

use std::fmt;
use std::str::FromStr;

use kernels::GgmlType;

/// A whole-file quantization choice, as `llama-quantize` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    AllF32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3KS,
    Q3KM,
    Q3KL,
    Q4KS,
    Q4KM,
    Q5KS,
    Q5KM,
    Q6K,
    IQ4NL,
    IQ4XS,
}

/// (name, ftype, llama_ftype id): names as llama-quantize prints them.
const TABLE: &[(&str, FileType, u32)] = &[
    ("F32", FileType::AllF32, 0),
    ("F16", FileType::F16, 1),
    ("BF16", FileType::BF16, 32),
    ("Q4_0", FileType::Q4_0, 2),
    ("Q4_1", FileType::Q4_1, 3),
    ("Q5_0", FileType::Q5_0, 8),
    ("Q5_1", FileType::Q5_1, 9),
    ("Q8_0", FileType::Q8_0, 7),
    ("Q2_K", FileType::Q2K, 10),
    ("Q3_K_S", FileType::Q3KS, 11),
    ("Q3_K_M", FileType::Q3KM, 12),
    ("Q3_K_L", FileType::Q3KL, 13),
    ("Q4_K_S", FileType::Q4KS, 14),
    ("Q4_K_M", FileType::Q4KM, 15),
    ("Q5_K_S", FileType::Q5KS, 16),
    ("Q5_K_M", FileType::Q5KM, 17),
    ("Q6_K", FileType::Q6K, 18),
    ("IQ4_NL", FileType::IQ4NL, 25),
    ("IQ4_XS", FileType::IQ4XS, 30),
];

impl FileType {
    /// Every supported file type.
    pub fn all() -> impl Iterator<Item = FileType> {
        TABLE.iter().map(|(_, f, _)| *f)
    }

    /// The `llama_ftype` id.
    pub fn id(self) -> u32 {
        TABLE
            .iter()
            .find(|(_, f, _)| *f == self)
            .map(|(_, _, id)| *id)
            .unwrap_or(0)
    }

    /// The name llama-quantize uses.
    pub fn name(self) -> &'static str {
        TABLE
            .iter()
            .find(|(_, f, _)| *f == self)
            .map(|(n, _, _)| *n)
            .unwrap_or("F32")
    }

    /// `llama_ftype_get_default_type`.
    pub fn default_type(self) -> GgmlType {
        use FileType::*;
        match self {
            AllF32 => GgmlType::F32,
            F16 => GgmlType::F16,
            BF16 => GgmlType::BF16,
            Q4_0 => GgmlType::Q4_0,
            Q4_1 => GgmlType::Q4_1,
            Q5_0 => GgmlType::Q5_0,
            Q5_1 => GgmlType::Q5_1,
            Q8_0 => GgmlType::Q8_0,
            Q2K => GgmlType::Q2K,
            Q3KS | Q3KM | Q3KL => GgmlType::Q3K,
            Q4KS | Q4KM => GgmlType::Q4K,
            Q5KS | Q5KM => GgmlType::Q5K,
            Q6K => GgmlType::Q6K,
            IQ4NL => GgmlType::IQ4NL,
            IQ4XS => GgmlType::IQ4XS,
        }
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FileType {
    type Err = String;

    /// Parses a mix name case-insensitively; `Q4_K`, `Q5_K` and `Q3_K` mean their `_M` mixes as
    /// in llama-quantize.
    fn from_str(s: &str) -> Result<Self, String> {
        let upper = s.to_ascii_uppercase();
        let name = match upper.as_str() {
            "Q4_K" => "Q4_K_M",
            "Q5_K" => "Q5_K_M",
            "Q3_K" => "Q3_K_M",
            "F32" | "ALL_F32" => "F32",
            other => other,
        };
        TABLE
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, f, _)| *f)
            .ok_or_else(|| {
                let names: Vec<&str> = TABLE.iter().map(|(n, _, _)| *n).collect();
                format!(
                    "unknown quantization type '{s}' (one of {})",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_ids() {
        assert_eq!("q4_k".parse::<FileType>().unwrap(), FileType::Q4KM);
        assert_eq!(FileType::Q4KM.id(), 15);
        assert_eq!(FileType::IQ4XS.default_type(), GgmlType::IQ4XS);
        assert!("Q9_K".parse::<FileType>().is_err());
        for f in FileType::all() {
            assert_eq!(f.name().parse::<FileType>().unwrap(), f);
        }
    }
}
