//! Typed reads of keyed values, shared by the `config.json` reader and the GGUF metadata reader:
//! a key present with the wrong type is an error naming the key, never silently dropped.

use crate::error::{ConvertError, Result};

/// A value read by key: what [`TypedKeys`] needs to type it.
pub(crate) trait KeyValue {
    fn as_u64(&self) -> Option<u64>;
    fn as_str(&self) -> Option<&str>;
}

impl KeyValue for serde_json::Value {
    fn as_u64(&self) -> Option<u64> {
        serde_json::Value::as_u64(self)
    }

    fn as_str(&self) -> Option<&str> {
        serde_json::Value::as_str(self)
    }
}

impl KeyValue for crate::gguf::Value {
    fn as_u64(&self) -> Option<u64> {
        crate::gguf::Value::as_u64(self)
    }

    fn as_str(&self) -> Option<&str> {
        crate::gguf::Value::as_str(self)
    }
}

/// Typed access to keyed values; `None` when a key is absent.
pub(crate) trait TypedKeys<'a> {
    type Value: KeyValue + 'a;

    /// The value of `key`, `None` when absent.
    fn get(&self, key: &str) -> Option<&'a Self::Value>;

    /// The error for `key` holding `got` where `expected` belongs.
    fn wrong_type(&self, key: &str, expected: &str, got: &Self::Value) -> ConvertError;

    /// A non-negative integer of any width. Ranges are checked by
    /// [`super::Gemma4Config::validate`].
    fn usize_opt(&self, key: &str) -> Result<Option<usize>> {
        self.get(key)
            .map(|v| {
                v.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| self.wrong_type(key, "a non-negative integer", v))
            })
            .transpose()
    }

    fn str_opt(&self, key: &str) -> Result<Option<&'a str>> {
        self.get(key)
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| self.wrong_type(key, "a string", v))
            })
            .transpose()
    }
}
