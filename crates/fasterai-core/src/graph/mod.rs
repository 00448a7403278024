//! The rewritable model graph: a [`Layer`] enum of Burn modules and a nestable, named
//! [`Sequential`] container, plus the serialisable [`LayerSpec`] that describes them.

mod layer;
mod sequential;
mod spec;

pub use layer::{Activation, InitScheme, Layer};
pub use sequential::{Child, Sequential};
pub use spec::{LayerSpec, NamedSpec, join};
