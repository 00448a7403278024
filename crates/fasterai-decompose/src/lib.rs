//! # fasterai-decompose
//!
//! Low-rank factorisation of trained layers:
//! - `Linear` into two `Linear`s by truncated SVD (rank by fraction removed, explicit rank or
//!   energy kept);
//! - `Conv2d` by slice-wise SVD (k×1 then 1×k), CP (Lebedev et al., 2015: four convolutions) or
//!   Tucker-2 (Kim et al., 2016: 1×1, k×k core, 1×1), with ranks chosen explicitly, as a ratio,
//!   or by EVBMF (Nakajima et al., 2013).
//!
//! Status: planned. The model graph it will rewrite lives in [`fasterai_core::graph`].
