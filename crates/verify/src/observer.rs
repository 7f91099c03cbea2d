//! Hook on the input of every linear layer, for calibration (imatrix column sums, AWQ samples).
//!
//! The forward pass calls the observer on the calling thread, in a fixed order (layer by layer,
//! weights in execution order, experts in ascending id), so an observer can accumulate without
//! locks and its results never depend on the thread count.

/// Which linear layer an activation batch feeds.
#[derive(Clone, Copy, Debug)]
pub struct LinearSite<'a> {
    /// Decoder layer, or `None` for model-level weights (PLE projection, tied head).
    pub layer: Option<usize>,
    /// Canonical weight name, e.g. `layers.3.mlp.down_proj.weight`.
    pub weight: &'a str,
    /// For MoE expert stacks, the expert whose slice of the weight this input meets.
    pub expert: Option<usize>,
    /// For MoE experts, the token positions (rows of the sequence) routed to the expert, in the
    /// same order as the activation rows; `None` when every token is present.
    pub token_rows: Option<&'a [usize]>,
}

/// Receives linear-layer inputs. Every method has a no-op default.
pub trait Observer {
    /// `x` is the input of the linear layer at `site`, row-major `[rows, cols]`.
    fn linear_input(&mut self, _site: &LinearSite<'_>, _x: &[f32], _rows: usize, _cols: usize) {}
}

/// The observer that ignores everything.
pub struct NoObserver;

impl Observer for NoObserver {}
