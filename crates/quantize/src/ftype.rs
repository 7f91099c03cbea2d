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

impl FileType {
    /// Every supported file type, in the order llama-quantize lists them.
    pub const ALL: [FileType; 19] = {
        use FileType::*;
        [
            AllF32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2K, Q3KS, Q3KM, Q3KL, Q4KS, Q4KM,
            Q5KS, Q5KM, Q6K, IQ4NL, IQ4XS,
        ]
    };

    /// Every supported file type.
    pub fn all() -> impl Iterator<Item = FileType> {
        Self::ALL.into_iter()
    }

    /// The `llama_ftype` id (written as `general.file_type`). An exhaustive match: a new
    /// variant does not compile until it has its own id.
    pub fn id(self) -> u32 {
        use FileType::*;
        match self {
            AllF32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q8_0 => 7,
            Q5_0 => 8,
            Q5_1 => 9,
            Q2K => 10,
            Q3KS => 11,
            Q3KM => 12,
            Q3KL => 13,
            Q4KS => 14,
            Q4KM => 15,
            Q5KS => 16,
            Q5KM => 17,
            Q6K => 18,
            IQ4NL => 25,
            IQ4XS => 30,
            BF16 => 32,
        }
    }

    /// The name llama-quantize uses.
    pub fn name(self) -> &'static str {
        use FileType::*;
        match self {
            AllF32 => "F32",
            F16 => "F16",
            BF16 => "BF16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q2K => "Q2_K",
            Q3KS => "Q3_K_S",
            Q3KM => "Q3_K_M",
            Q3KL => "Q3_K_L",
            Q4KS => "Q4_K_S",
            Q4KM => "Q4_K_M",
            Q5KS => "Q5_K_S",
            Q5KM => "Q5_K_M",
            Q6K => "Q6_K",
            IQ4NL => "IQ4_NL",
            IQ4XS => "IQ4_XS",
        }
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
        FileType::all().find(|f| f.name() == name).ok_or_else(|| {
            let names: Vec<&str> = FileType::all().map(FileType::name).collect();
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
        let mut ids = std::collections::HashSet::new();
        for f in FileType::all() {
            assert_eq!(f.name().parse::<FileType>().unwrap(), f);
            assert!(ids.insert(f.id()), "{f}: id {} used twice", f.id());
        }
        assert_eq!(ids.len(), FileType::ALL.len());
    }
}
