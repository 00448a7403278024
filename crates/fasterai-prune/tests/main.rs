//! fasterai-prune's integration tests, in one binary (each test binary links Burn).

mod chain;
mod transformer;
