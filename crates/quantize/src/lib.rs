//! `quantize`: llama.cpp mixes, per-tensor plans, calibration (imatrix, AWQ) and the convert pipeline.
