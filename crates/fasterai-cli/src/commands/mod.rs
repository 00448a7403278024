//! One module per subcommand.

pub mod bench;
pub mod decompose;
pub mod fold;
pub mod import;
pub mod inspect;
pub mod predict;
