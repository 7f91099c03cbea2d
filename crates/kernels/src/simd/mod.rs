//! SIMD backends and runtime dispatch (being written).
