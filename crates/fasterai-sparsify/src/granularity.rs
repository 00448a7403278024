//! Granularities: which weights are scored, kept or removed together. Each is the set of
//! weight dimensions a score is reduced over (fasterai's definitions), in PyTorch's layouts:
//! `Conv2d` weight `[out, in, kh, kw]`, `Linear` weight `[out, in]`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Result, SparsifyError};

/// A choice of weight groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)] // each variant's groups are listed in `reduced_dims`
pub enum Granularity {
    Weight,
    SharedWeight,
    Channel,
    Column,
    Row,
    Kernel,
    Filter,
    SharedChannel,
    SharedColumn,
    SharedRow,
    VerticalSlice,
    HorizontalSlice,
    SharedVerticalSlice,
    SharedHorizontalSlice,
    SharedKernel,
    Layer,
    /// Transformers: an attention head (its q, k and v rows of the packed projection, their
    /// biases and its `out_proj` columns).
    Head,
    /// Transformers: a hidden unit of an MLP (a first-Linear row and bias; the second Linear
    /// then reads zero).
    MlpUnit,
    /// Transformers: an embedding channel across the whole residual stream.
    Embed,
}

const ALL: [(Granularity, &str); 19] = [
    (Granularity::Weight, "weight"),
    (Granularity::SharedWeight, "shared_weight"),
    (Granularity::Channel, "channel"),
    (Granularity::Column, "column"),
    (Granularity::Row, "row"),
    (Granularity::Kernel, "kernel"),
    (Granularity::Filter, "filter"),
    (Granularity::SharedChannel, "shared_channel"),
    (Granularity::SharedColumn, "shared_column"),
    (Granularity::SharedRow, "shared_row"),
    (Granularity::VerticalSlice, "vertical_slice"),
    (Granularity::HorizontalSlice, "horizontal_slice"),
    (Granularity::SharedVerticalSlice, "shared_vertical_slice"),
    (
        Granularity::SharedHorizontalSlice,
        "shared_horizontal_slice",
    ),
    (Granularity::SharedKernel, "shared_kernel"),
    (Granularity::Layer, "layer"),
    (Granularity::Head, "head"),
    (Granularity::MlpUnit, "mlp_unit"),
    (Granularity::Embed, "embed"),
];

impl Granularity {
    /// Every granularity, in fasterai's order.
    pub fn all() -> impl Iterator<Item = Granularity> {
        ALL.iter().map(|(g, _)| *g)
    }

    /// The snake_case name (`shared_kernel`).
    pub fn name(&self) -> &'static str {
        ALL.iter().find(|(g, _)| g == self).expect("listed").1
    }

    /// The coupling-group kind a transformer granularity masks (`None` for the others).
    pub fn group_kind(&self) -> Option<fasterai_core::graph::coupling::GroupKind> {
        use fasterai_core::graph::coupling::GroupKind;
        match self {
            Granularity::Head => Some(GroupKind::Head),
            Granularity::MlpUnit => Some(GroupKind::MlpUnit),
            Granularity::Embed => Some(GroupKind::Embed),
            _ => None,
        }
    }

    /// The dimensions a score is summed over for a weight of `rank` 4 (`Conv2d`) or 2
    /// (`Linear`); the remaining dimensions index the groups. The transformer granularities
    /// mask output channels: filters of a `Conv2d`, rows of a `Linear`, and for `head` the
    /// rows of an attention's packed projection seen as `[3, heads, head_dim, embed]` (rank
    /// 4, reduced over all but the head). An error names the granularities that do apply.
    pub fn reduced_dims(&self, rank: usize) -> Result<&'static [usize]> {
        use Granularity::*;
        let dims: Option<&'static [usize]> = match (rank, self) {
            (4, Head) => Some(&[0, 2, 3]),
            (4, Embed) => Some(&[1, 2, 3]),
            (2, MlpUnit) | (2, Embed) => Some(&[1]),
            (4, Weight) | (2, Weight) => Some(&[]),
            (4, SharedWeight) => Some(&[0]),
            (4, Channel) => Some(&[1]),
            (4, Column) => Some(&[2]),
            (4, Row) => Some(&[3]),
            (4, Kernel) => Some(&[2, 3]),
            (4, Filter) => Some(&[1, 2, 3]),
            (4, SharedChannel) => Some(&[0, 1]),
            (4, SharedColumn) => Some(&[0, 2]),
            (4, SharedRow) => Some(&[0, 3]),
            (4, VerticalSlice) => Some(&[1, 2]),
            (4, HorizontalSlice) => Some(&[1, 3]),
            (4, SharedVerticalSlice) => Some(&[0, 1, 2]),
            (4, SharedHorizontalSlice) => Some(&[0, 1, 3]),
            (4, SharedKernel) => Some(&[0, 2, 3]),
            (4, Layer) => Some(&[0, 1, 2, 3]),
            (2, Column) => Some(&[0]),
            (2, Row) => Some(&[1]),
            (2, Layer) => Some(&[0, 1]),
            _ => None,
        };
        dims.ok_or_else(|| {
            let kind = if rank == 4 { "Conv2d" } else { "Linear" };
            SparsifyError::Granularity {
                granularity: self.name(),
                kind,
                allowed: if rank == 2 {
                    "weight, column, row, layer, mlp_unit, embed".into()
                } else {
                    ALL.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
                },
            }
        })
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Granularity {
    type Err = SparsifyError;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.replace('-', "_");
        ALL.iter()
            .find(|(_, n)| *n == s)
            .map(|(g, _)| *g)
            .ok_or_else(|| {
                SparsifyError::Config(format!(
                    "unknown granularity `{s}`; one of: {}",
                    ALL.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
                ))
            })
    }
}
