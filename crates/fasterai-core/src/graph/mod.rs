//! The rewritable model graph: a DAG of named nodes ([`Graph`]), each an op ([`Layer`]) that
//! reads named values, and its serialisable description ([`GraphSpec`], [`LayerSpec`]).
//!
//! Every op lives in one file under [`ops`] and answers the questions passes ask through the
//! [`Op`] and [`LiveOp`] traits: shapes, parameters, MACs, how its channels couple, how to
//! remove channels. [`coupling`] derives, from the graph alone, which channels must be removed
//! together.

mod activation;
pub mod coupling;
mod dag;
mod layer;
mod op;
pub mod ops;
pub mod sequence;
mod spec;

pub use activation::{Activation, channel_axis, channel_count};
pub use dag::{Graph, Node};
pub use layer::{Layer, LayerSpec, check_sample_shape, leaf};
pub use op::{Arity, Channels, InitScheme, LiveOp, Op};
pub use spec::{GraphBuilder, GraphSpec, INPUT, NodeSpec, Shapes};

/// Joins a parent path and a child name with a dot (`""` + `"features"` = `"features"`).
pub fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}
