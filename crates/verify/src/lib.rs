//! `verify`: the f32 reference forward pass of Gemma 4, accuracy metrics, reports and gates.
