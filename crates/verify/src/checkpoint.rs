//! The safetensors checkpoint (`convert::Checkpoint`) as a [`Weights`] source: matrices are
//! zero-copy views of the mmap, widened panel by panel inside the GEMM; `release` drops a
//! tensor's pages so streaming runs hold about one layer.

use std::borrow::Cow;

use convert::{Checkpoint, DType, Gemma4Config};

use crate::error::{Result, VerifyError};
use crate::weights::{DenseMatrix, ElemType, Matrix, Weights};

fn elem_type(d: DType) -> ElemType {
    match d {
        DType::F32 => ElemType::F32,
        DType::F16 => ElemType::F16,
        DType::BF16 => ElemType::BF16,
    }
}

impl Weights for Checkpoint {
    fn config(&self) -> &Gemma4Config {
        Checkpoint::config(self)
    }

    fn has(&self, name: &str) -> bool {
        Checkpoint::has(self, name)
    }

    fn matrix(&self, name: &str) -> Result<Matrix<'_>> {
        let view = self.tensor(name)?;
        let (rows, cols) = match view.shape.as_slice() {
            [r, c] => (*r, *c),
            [e, r, c] => (e.checked_mul(*r).ok_or_else(|| overflow(name))?, *c),
            other => {
                return Err(VerifyError::shape(
                    name,
                    format!("shape {other:?} in {} is not a matrix", view.file.display()),
                ))
            }
        };
        Ok(Box::new(DenseMatrix::new(
            name,
            elem_type(view.dtype),
            rows,
            cols,
            Cow::Borrowed(view.data),
        )?))
    }

    fn vector(&self, name: &str) -> Result<Vec<f32>> {
        Ok(self.tensor(name)?.to_f32()?)
    }

    fn release(&self, name: &str) {
        Checkpoint::release(self, name)
    }
}

fn overflow(name: &str) -> VerifyError {
    VerifyError::shape(name, "element count overflows")
}
