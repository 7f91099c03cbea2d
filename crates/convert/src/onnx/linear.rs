//! How the weights of linear layers and embedding tables become graph nodes, per release type.
//! The decoder graph is the same for every type; only these three building blocks change.

use onnx_protobuf::tensor_proto::DataType;

use super::graph::{f32_bytes, Attr, GraphBuilder};
use crate::error::Result;

/// A weight handed to a [`LinearWriter`]: the `[rows, cols]` matrix `name`, row-major f32.
#[derive(Clone, Copy)]
pub struct Weight<'a> {
    pub name: &'a str,
    pub rows: usize,
    pub cols: usize,
    pub values: &'a [f32],
}

/// A stack of `count` expert matrices under one name: `weight.values` holds each expert's
/// `[weight.rows, weight.cols]` matrix, one after another.
#[derive(Clone, Copy)]
pub struct Experts<'a> {
    pub count: usize,
    pub weight: Weight<'a>,
}

/// Writes weight initializers and the nodes that use them.
pub trait LinearWriter {
    /// `x [N, cols] @ W.T` for the weight `w`; returns the output `[N, rows]`.
    fn linear(&mut self, g: &mut GraphBuilder<'_>, x: &str, w: Weight<'_>) -> Result<String>;

    /// Writes the table `e` and looks up `ids`; returns `[.., cols]` f32.
    fn embedding(&mut self, g: &mut GraphBuilder<'_>, ids: &str, e: Weight<'_>) -> Result<String>;

    /// Per-expert products: `x [E, N, cols]`, expert `e` times its `[rows, cols]` matrix of the
    /// stack `w`; returns `[E, N, rows]`.
    fn experts(&mut self, g: &mut GraphBuilder<'_>, x: &str, w: Experts<'_>) -> Result<String>;

    /// The tied head: `x [N, cols] @ E.T` with the table `name` written by
    /// [`LinearWriter::embedding`].
    fn head(&mut self, g: &mut GraphBuilder<'_>, x: &str, name: &str) -> Result<String>;
}

/// Every weight as f32 (`Gemm` with `transB`, `Gather`): the exact reference graph.
pub struct F32Writer;

/// Weights as f16 (norms, scalars and the graph's activations stay f32): each table is stored
/// once in f16 and widened by a `Cast` where it is used (onnxruntime folds the casts of
/// constant weights when it loads the model, so this halves the file, not the memory).
pub struct F16Writer;

/// A writer that stores every weight whole in one float type: the f32 and f16 releases build
/// the same nodes and differ only in the stored type and the `Cast` that widens it.
trait FloatStore {
    const TYPE: DataType;
    /// Little-endian bytes of `v` in [`FloatStore::TYPE`].
    fn bytes(v: &[f32]) -> Vec<u8>;
    /// `x` (a stored weight or rows gathered from one) as f32.
    fn widen(g: &mut GraphBuilder<'_>, x: &str) -> String;
}

impl FloatStore for F32Writer {
    const TYPE: DataType = DataType::FLOAT;
    fn bytes(v: &[f32]) -> Vec<u8> {
        f32_bytes(v)
    }
    fn widen(_: &mut GraphBuilder<'_>, x: &str) -> String {
        x.to_string()
    }
}

impl FloatStore for F16Writer {
    const TYPE: DataType = DataType::FLOAT16;
    /// Round to nearest even.
    fn bytes(v: &[f32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(v.len() * 2);
        for x in v {
            out.extend_from_slice(&half::f16::from_f32(*x).to_bits().to_le_bytes());
        }
        out
    }
    fn widen(g: &mut GraphBuilder<'_>, x: &str) -> String {
        to_f32(g, x)
    }
}

/// A `Cast` of `x` to f32.
pub fn to_f32(g: &mut GraphBuilder<'_>, x: &str) -> String {
    g.op(
        "Cast",
        &[x],
        vec![("to", Attr::Int(DataType::FLOAT as i64))],
    )
}

/// Writes `w` as one initializer of `dims` in `T`'s type.
fn store<T: FloatStore>(g: &mut GraphBuilder<'_>, w: Weight<'_>, dims: &[i64]) -> Result<()> {
    g.initializer(w.name, T::TYPE, dims, &T::bytes(w.values))
}

impl<T: FloatStore> LinearWriter for T {
    fn linear(&mut self, g: &mut GraphBuilder<'_>, x: &str, w: Weight<'_>) -> Result<String> {
        store::<T>(g, w, &[w.rows as i64, w.cols as i64])?;
        let wf = T::widen(g, w.name);
        Ok(g.op("Gemm", &[x, &wf], vec![("transB", Attr::Int(1))]))
    }

    fn embedding(&mut self, g: &mut GraphBuilder<'_>, ids: &str, e: Weight<'_>) -> Result<String> {
        store::<T>(g, e, &[e.rows as i64, e.cols as i64])?;
        let rows = g.op("Gather", &[e.name, ids], vec![]);
        Ok(T::widen(g, &rows))
    }

    fn experts(&mut self, g: &mut GraphBuilder<'_>, x: &str, w: Experts<'_>) -> Result<String> {
        let (e, w) = (w.count, w.weight);
        store::<T>(g, w, &[e as i64, w.rows as i64, w.cols as i64])?;
        let wf = T::widen(g, w.name);
        let wt = g.op(
            "Transpose",
            &[&wf],
            vec![("perm", Attr::Ints(vec![0, 2, 1]))],
        );
        Ok(g.op("MatMul", &[x, &wt], vec![]))
    }

    fn head(&mut self, g: &mut GraphBuilder<'_>, x: &str, name: &str) -> Result<String> {
        let wf = T::widen(g, name);
        Ok(g.op("Gemm", &[x, &wf], vec![("transB", Attr::Int(1))]))
    }
}
