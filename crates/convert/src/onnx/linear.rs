//! How the weights of linear layers and embedding tables become graph nodes, per release type.
//! The decoder graph is the same for every type; only these three building blocks change.

use onnx_protobuf::tensor_proto::DataType;

use super::graph::{f32_bytes, Attr, GraphBuilder};
use crate::error::Result;

/// Writes weight initializers and the nodes that use them.
pub trait LinearWriter {
    /// `x [N, cols] @ W.T` for the `[rows, cols]` weight `name` with values `w`; returns the
    /// output `[N, rows]`.
    fn linear(
        &mut self,
        g: &mut GraphBuilder<'_>,
        x: &str,
        name: &str,
        rows: usize,
        cols: usize,
        w: &[f32],
    ) -> Result<String>;

    /// Writes the `[rows, cols]` table `name` and looks up `ids`; returns `[.., cols]` f32.
    fn embedding(
        &mut self,
        g: &mut GraphBuilder<'_>,
        ids: &str,
        name: &str,
        rows: usize,
        cols: usize,
        e: &[f32],
    ) -> Result<String>;

    /// Per-expert products: `x [E, N, cols]`, expert `e` times its `[rows, cols]` slice of the
    /// `[E * rows, cols]` stack `name`; returns `[E, N, rows]`.
    #[allow(clippy::too_many_arguments)]
    fn experts(
        &mut self,
        g: &mut GraphBuilder<'_>,
        x: &str,
        name: &str,
        experts: usize,
        rows: usize,
        cols: usize,
        w: &[f32],
    ) -> Result<String>;

    /// The tied head: `x [N, cols] @ E.T` with the table `name` written by
    /// [`LinearWriter::embedding`].
    fn head(&mut self, g: &mut GraphBuilder<'_>, x: &str, name: &str) -> Result<String>;
}

/// Every weight as f32 (`Gemm` with `transB`, `Gather`): the exact reference graph.
pub struct F32Writer;

impl LinearWriter for F32Writer {
    fn linear(
        &mut self,
        g: &mut GraphBuilder<'_>,
        x: &str,
        name: &str,
        rows: usize,
        cols: usize,
        w: &[f32],
    ) -> Result<String> {
        g.initializer(
            name,
            DataType::FLOAT,
            &[rows as i64, cols as i64],
            &f32_bytes(w),
        )?;
        Ok(g.op("Gemm", &[x, name], vec![("transB", Attr::Int(1))]))
    }

    fn embedding(
        &mut self,
        g: &mut GraphBuilder<'_>,
        ids: &str,
        name: &str,
        rows: usize,
        cols: usize,
        e: &[f32],
    ) -> Result<String> {
        g.initializer(
            name,
            DataType::FLOAT,
            &[rows as i64, cols as i64],
            &f32_bytes(e),
        )?;
        Ok(g.op("Gather", &[name, ids], vec![]))
    }

    fn experts(
        &mut self,
        g: &mut GraphBuilder<'_>,
        x: &str,
        name: &str,
        experts: usize,
        rows: usize,
        cols: usize,
        w: &[f32],
    ) -> Result<String> {
        g.initializer(
            name,
            DataType::FLOAT,
            &[experts as i64, rows as i64, cols as i64],
            &f32_bytes(w),
        )?;
        let wt = g.op(
            "Transpose",
            &[name],
            vec![("perm", Attr::Ints(vec![0, 2, 1]))],
        );
        Ok(g.op("MatMul", &[x, &wt], vec![]))
    }

    fn head(&mut self, g: &mut GraphBuilder<'_>, x: &str, name: &str) -> Result<String> {
        Ok(g.op("Gemm", &[x, name], vec![("transB", Attr::Int(1))]))
    }
}

/// Weights as f16 (norms, scalars and the graph's activations stay f32): each table is stored
/// once in f16 and widened by a `Cast` where it is used (onnxruntime folds the casts of
/// constant weights when it loads the model, so this halves the file, not the memory).
pub struct F16Writer;

/// Little-endian f16 bytes of `v` (round to nearest even).
fn f16_bytes(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 2);
    for x in v {
        out.extend_from_slice(&half::f16::from_f32(*x).to_bits().to_le_bytes());
    }
    out
}

fn to_f32(g: &mut GraphBuilder<'_>, x: &str) -> String {
    g.op(
        "Cast",
        &[x],
        vec![("to", Attr::Int(DataType::FLOAT as i64))],
    )
}

impl LinearWriter for F16Writer {
    fn linear(
        &mut self,
        g: &mut GraphBuilder<'_>,
        x: &str,
        name: &str,
        rows: usize,
        cols: usize,
        w: &[f32],
    ) -> Result<String> {
        g.initializer(
            name,
            DataType::FLOAT16,
            &[rows as i64, cols as i64],
            &f16_bytes(w),
        )?;
        let w = to_f32(g, name);
        Ok(g.op("Gemm", &[x, &w], vec![("transB", Attr::Int(1))]))
    }

    fn embedding(
        &mut self,
        g: &mut GraphBuilder<'_>,
        ids: &str,
        name: &str,
        rows: usize,
        cols: usize,
        e: &[f32],
    ) -> Result<String> {
        g.initializer(
            name,
            DataType::FLOAT16,
            &[rows as i64, cols as i64],
            &f16_bytes(e),
        )?;
        let rows = g.op("Gather", &[name, ids], vec![]);
        Ok(to_f32(g, &rows))
    }

    fn experts(
        &mut self,
        g: &mut GraphBuilder<'_>,
        x: &str,
        name: &str,
        experts: usize,
        rows: usize,
        cols: usize,
        w: &[f32],
    ) -> Result<String> {
        g.initializer(
            name,
            DataType::FLOAT16,
            &[experts as i64, rows as i64, cols as i64],
            &f16_bytes(w),
        )?;
        let w = to_f32(g, name);
        let wt = g.op(
            "Transpose",
            &[&w],
            vec![("perm", Attr::Ints(vec![0, 2, 1]))],
        );
        Ok(g.op("MatMul", &[x, &wt], vec![]))
    }

    fn head(&mut self, g: &mut GraphBuilder<'_>, x: &str, name: &str) -> Result<String> {
        let w = to_f32(g, name);
        Ok(g.op("Gemm", &[x, &w], vec![("transB", Attr::Int(1))]))
    }
}
