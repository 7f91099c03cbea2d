//! The forward pass through wrapped weight sources: streaming mode loads layers in order and
//! releases every tensor it read; a NaN or a wrongly shaped weight is reported by tensor name.

use std::sync::Mutex;

use convert::{Checkpoint, Gemma4Config};
use testkit::fixtures_dir;
use testkit::reference::Reference;
use verify::weights::DenseMatrix;
use verify::{forward_streaming, Matrix, NoObserver, Result, Weights};

/// Delegates to a checkpoint, records requests and releases, and can replace one tensor.
struct Wrapped<'a> {
    inner: &'a Checkpoint,
    log: Mutex<Vec<(bool, String)>>,
    replace: Option<(&'a str, Vec<usize>, f32)>,
}

impl Weights for Wrapped<'_> {
    fn config(&self) -> &Gemma4Config {
        self.inner.config()
    }
    fn has(&self, name: &str) -> bool {
        Weights::has(self.inner, name)
    }
    fn matrix(&self, name: &str) -> Result<Matrix<'_>> {
        self.log.lock().unwrap().push((false, name.to_string()));
        if let Some((n, shape, value)) = &self.replace {
            if *n == name {
                let numel = shape.iter().product();
                return Ok(Box::new(DenseMatrix::from_f32(
                    name,
                    shape[0],
                    shape[1],
                    &vec![*value; numel],
                )?));
            }
        }
        self.inner.matrix(name)
    }
    fn vector(&self, name: &str) -> Result<Vec<f32>> {
        self.log.lock().unwrap().push((false, name.to_string()));
        self.inner.vector(name)
    }
    fn release(&self, name: &str) {
        self.log.lock().unwrap().push((true, name.to_string()));
    }
}

fn e2b() -> (Checkpoint, Vec<u32>) {
    let folder = fixtures_dir().join("e2b-s0");
    let ckpt = Checkpoint::open(&folder.join("released-bf16")).unwrap();
    let ids = Reference::open(&folder).ids("seq1.input_ids");
    (ckpt, ids)
}

fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("layers.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

#[test]
fn streaming_loads_layers_in_order_and_releases_them() {
    let (ckpt, ids) = e2b();
    let w = Wrapped {
        inner: &ckpt,
        log: Mutex::new(Vec::new()),
        replace: None,
    };
    forward_streaming(
        &w,
        &ids,
        Default::default(),
        &mut NoObserver,
        &mut |_, _| {},
    )
    .unwrap();
    let log = w.log.into_inner().unwrap();
    let mut released = std::collections::BTreeSet::new();
    let mut checked = 0;
    let mut last_layer = 0;
    for (is_release, name) in &log {
        let layer = layer_of(name);
        if *is_release {
            released.insert(name.clone());
        } else if let Some(l) = layer {
            assert!(l >= last_layer, "layer {l} loaded after layer {last_layer}");
            assert!(!released.contains(name), "{name} read after its release");
            last_layer = l;
        }
    }
    for (is_release, name) in &log {
        if !is_release && layer_of(name).is_some() {
            assert!(released.contains(name), "{name} never released");
            checked += 1;
        }
    }
    assert!(released.contains("embed_tokens.weight"));
    println!("checked {checked} cases (per-layer tensor loads released)");
}

#[test]
fn nan_and_bad_shape_name_the_tensor() {
    let (ckpt, ids) = e2b();
    let name = "layers.2.mlp.down_proj.weight";
    let shape = {
        let m = ckpt.matrix(name).unwrap();
        vec![m.rows(), m.cols()]
    };
    let cases = [
        (shape.clone(), f32::NAN, "non-finite"),
        (vec![shape[0], shape[1] + 1], 0.5, "shape"),
    ];
    let n = cases.len();
    for (shape, value, what) in cases {
        let w = Wrapped {
            inner: &ckpt,
            log: Mutex::new(Vec::new()),
            replace: Some((name, shape, value)),
        };
        let err = forward_streaming(
            &w,
            &ids,
            Default::default(),
            &mut NoObserver,
            &mut |_, _| {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(name) && err.contains(what), "{what}: {err}");
    }
    println!("checked {n} cases");
}
