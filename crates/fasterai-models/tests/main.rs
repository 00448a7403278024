//! fasterai-models' integration tests, in one binary (each test binary links Burn).

mod backend_parity;
mod decoder;
mod vit;
