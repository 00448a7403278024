//! One module per subcommand.

pub mod bench;
mod bench_tokens;
pub mod decompose;
pub mod distill;
pub mod eval;
pub mod export;
pub mod fold;
pub mod generate;
pub mod import;
pub mod inspect;
pub mod predict;
pub mod prune;
pub mod quantize;
pub mod sparsify;
pub mod train;
