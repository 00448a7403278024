//! One module per subcommand.

pub mod bench;
pub mod import;
pub mod inspect;
pub mod predict;
