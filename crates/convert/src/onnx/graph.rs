//! A small builder for ONNX graphs: nodes with generated value names, deduplicated constants,
//! typed graph inputs and outputs, and initializers whose bytes go to the external data file
//! (see [`super::external`]) as they are added. Names are counters in build order, so the same
//! model always gives the same bytes.

use std::collections::HashMap;

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::type_proto::{Tensor as TensorType, Value as TypeValue};
use onnx_protobuf::{
    AttributeProto, GraphProto, NodeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use super::external::{ExternalData, EXTERNAL_MIN_BYTES};
use crate::error::Result;

/// The operator domain of onnxruntime's contrib operators (MatMulNBits, GatherBlockQuantized).
pub const MS_DOMAIN: &str = "com.microsoft";

/// One dimension of a graph input or output.
#[derive(Clone, Debug)]
pub enum Dim {
    Fixed(usize),
    Named(&'static str),
}

/// A node attribute value.
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Str(&'static str),
}

fn attribute(name: &str, value: Attr) -> AttributeProto {
    let mut a = AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    match value {
        Attr::Int(i) => {
            a.type_ = AttributeType::INT.into();
            a.i = i;
        }
        Attr::Ints(v) => {
            a.type_ = AttributeType::INTS.into();
            a.ints = v;
        }
        Attr::Float(f) => {
            a.type_ = AttributeType::FLOAT.into();
            a.f = f;
        }
        Attr::Str(s) => {
            a.type_ = AttributeType::STRING.into();
            a.s = s.as_bytes().to_vec();
        }
    }
    a
}

/// A graph input or output declaration.
pub fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => dimension::Value::DimValue(*n as i64),
                Dim::Named(s) => dimension::Value::DimParam(s.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = TensorType {
        elem_type: elem as i32,
        shape: Some(TensorShapeProto {
            dim,
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.to_string(),
        type_: Some(TypeProto {
            value: Some(TypeValue::TensorType(tensor)),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

/// The graph under construction and the data file its initializers stream into.
pub struct GraphBuilder<'d> {
    graph: GraphProto,
    data: &'d mut ExternalData,
    next: usize,
    /// Constant bytes (with type and dims) → initializer name, so repeated constants are one.
    consts: HashMap<(i32, Vec<i64>, Vec<u8>), String>,
}

impl<'d> GraphBuilder<'d> {
    pub fn new(name: &str, data: &'d mut ExternalData) -> Self {
        GraphBuilder {
            graph: GraphProto {
                name: name.to_string(),
                ..Default::default()
            },
            data,
            next: 0,
            consts: HashMap::new(),
        }
    }

    fn fresh(&mut self, op: &str) -> String {
        self.next += 1;
        format!("/{op}_{}", self.next)
    }

    /// Adds a node of the default domain with one generated output; returns the output name.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        self.node("", op, inputs, 1, attrs).remove(0)
    }

    /// Adds a node with `outputs` generated output names (in `domain`, "" for ONNX's own).
    pub fn node(
        &mut self,
        domain: &str,
        op: &str,
        inputs: &[&str],
        outputs: usize,
        attrs: Vec<(&str, Attr)>,
    ) -> Vec<String> {
        let base = self.fresh(op);
        let names: Vec<String> = (0..outputs).map(|i| format!("{base}/out{i}")).collect();
        self.node_named(domain, op, inputs, &names, attrs);
        names
    }

    /// Adds a node whose outputs have the given names (graph outputs).
    pub fn node_named(
        &mut self,
        domain: &str,
        op: &str,
        inputs: &[&str],
        outputs: &[String],
        attrs: Vec<(&str, Attr)>,
    ) {
        let name = self.fresh(op);
        self.graph.node.push(NodeProto {
            name,
            op_type: op.to_string(),
            domain: domain.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.to_vec(),
            attribute: attrs.into_iter().map(|(n, v)| attribute(n, v)).collect(),
            ..Default::default()
        });
    }

    pub fn input(&mut self, name: &str, elem: DataType, dims: &[Dim]) {
        self.graph.input.push(value_info(name, elem, dims));
    }

    pub fn output(&mut self, name: &str, elem: DataType, dims: &[Dim]) {
        self.graph.output.push(value_info(name, elem, dims));
    }

    /// A constant initializer (deduplicated); small, so kept inline in the protobuf unless large.
    fn constant(&mut self, elem: DataType, dims: &[i64], bytes: Vec<u8>) -> Result<String> {
        let key = (elem as i32, dims.to_vec(), bytes);
        if let Some(n) = self.consts.get(&key) {
            return Ok(n.clone());
        }
        self.next += 1;
        let name = format!("/const_{}", self.next);
        self.initializer(&name, elem, dims, &key.2)?;
        self.consts.insert(key, name.clone());
        Ok(name)
    }

    /// An int64 1-D constant.
    pub fn ints(&mut self, v: &[i64]) -> Result<String> {
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.constant(DataType::INT64, &[v.len() as i64], bytes)
    }

    /// An int64 scalar (0-d) constant.
    pub fn int(&mut self, v: i64) -> Result<String> {
        self.constant(DataType::INT64, &[], v.to_le_bytes().to_vec())
    }

    /// A uint8 scalar (0-d) constant.
    pub fn u8(&mut self, v: u8) -> Result<String> {
        self.constant(DataType::UINT8, &[], vec![v])
    }

    /// Adds a `key: value` metadata entry to the initializer `name` (ignored by runtimes; read
    /// back by `verify`). Does nothing when there is no such initializer.
    pub fn annotate(&mut self, name: &str, key: &str, value: &str) {
        if let Some(t) = self.graph.initializer.iter_mut().find(|t| t.name == name) {
            t.metadata_props
                .push(onnx_protobuf::StringStringEntryProto {
                    key: key.to_string(),
                    value: value.to_string(),
                    ..Default::default()
                });
        }
    }

    /// Dims of the initializer `name`, if one was written.
    pub fn dims_of(&self, name: &str) -> Option<&[i64]> {
        self.graph
            .initializer
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.dims.as_slice())
    }

    /// An f32 scalar (0-d) constant.
    pub fn float(&mut self, v: f32) -> Result<String> {
        self.constant(DataType::FLOAT, &[], v.to_le_bytes().to_vec())
    }

    /// An f32 1-D constant.
    pub fn floats(&mut self, v: &[f32]) -> Result<String> {
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.constant(DataType::FLOAT, &[v.len() as i64], bytes)
    }

    /// A named initializer; its bytes go to the data file when large.
    pub fn initializer(
        &mut self,
        name: &str,
        elem: DataType,
        dims: &[i64],
        bytes: &[u8],
    ) -> Result<()> {
        let mut t = TensorProto {
            name: name.to_string(),
            data_type: elem as i32,
            dims: dims.to_vec(),
            ..Default::default()
        };
        if bytes.len() >= EXTERNAL_MIN_BYTES {
            self.data.append(&mut t, bytes)?;
        } else {
            t.raw_data = bytes.to_vec();
        }
        self.graph.initializer.push(t);
        Ok(())
    }

    /// The finished graph.
    pub fn finish(self) -> GraphProto {
        self.graph
    }
}

/// Little-endian bytes of f32 values.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}
