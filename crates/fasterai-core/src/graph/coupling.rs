//! Channel coupling, derived from the graph (no tracing): which channels must be removed
//! together so that every op still gets inputs it can take.
//!
//! A *space* is a set of channels made by one op: a `Conv2d`/`Linear`'s outputs (or the model
//! input). Per-channel ops (batch norm, activations, pooling, depthwise convolutions) pass a
//! space through; `Add` and `Mul` unify the spaces of their inputs (so a residual stage is one
//! group); `Concat` lays spaces side by side; `Flatten` spreads each channel over `H·W`
//! features. A [`Group`] is a set of unified spaces: removing its channel `c` removes output
//! `c` of every producer, entry `c` of every carrier (batch norm, depthwise filter) and input
//! `c` (or its `H·W` columns) of every consumer.
//!
//! Ops may also hold units of their own that touch neither their input nor their output
//! channels ([`Op::inner_units`](super::op::Op::inner_units)): an attention's heads, its
//! query/key dimensions and its value dimensions. Each is a group of one node.
//!
//! In a transformer (a graph with such units) a channel group that an attention reads or
//! writes is the embedding width (the residual stream), and any other group of token features
//! is an MLP's hidden width.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::activation::channel_count;
use super::dag::Graph;
use super::op::Channels;
use super::spec::INPUT;
use crate::error::{CoreError, Result};

/// A run of channels in a value: all channels of one space, each repeated `spread` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// The space (index into the analysis' spaces).
    pub space: usize,
    /// Features per channel (`H·W` after a flatten, else 1).
    pub spread: usize,
}

/// A node that reads a group's channels as inputs (weight dim 1), at an offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Consumer {
    /// Node name.
    pub node: String,
    /// First input channel (feature) of the node that belongs to the group.
    pub offset: usize,
    /// Features per group channel (`H·W` through a flatten).
    pub spread: usize,
}

/// What a group's units are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    /// Channels of a convolutional network, or features of a flat value.
    Channel,
    /// Hidden units of a transformer's MLP: first Linear's rows, second Linear's columns.
    MlpUnit,
    /// The embedding width of a transformer: one channel across the whole residual stream.
    Embed,
    /// Attention heads: a head's q, k and v rows of the packed projection and its `out_proj`
    /// columns.
    Head,
    /// One dimension of every head's queries and keys (the softmax scale is kept).
    #[serde(rename = "qk_dim")]
    QueryKeyDim,
    /// One dimension of every head's values, with the `out_proj` columns that read it.
    #[serde(rename = "v_dim")]
    ValueDim,
}

impl GroupKind {
    /// Whether the units are inside one op (heads, head dimensions) rather than channels.
    pub fn is_inner(self) -> bool {
        matches!(self, Self::Head | Self::QueryKeyDim | Self::ValueDim)
    }

    /// The unit's name, singular and plural.
    pub fn unit(self) -> (&'static str, &'static str) {
        match self {
            Self::Channel | Self::Embed => ("channel", "channels"),
            Self::MlpUnit => ("unit", "units"),
            Self::Head => ("head", "heads"),
            Self::QueryKeyDim | Self::ValueDim => ("dim", "dims"),
        }
    }
}

impl fmt::Display for GroupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Channel => "channel",
            Self::MlpUnit => "mlp_unit",
            Self::Embed => "embed",
            Self::Head => "head",
            Self::QueryKeyDim => "qk_dim",
            Self::ValueDim => "v_dim",
        })
    }
}

/// Units that are removed together: channels, or an op's heads or head dimensions.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// Index in [`Coupling::groups`].
    pub id: usize,
    /// What the units are.
    pub kind: GroupKind,
    /// Units in the group (channels, heads, dimensions).
    pub channels: usize,
    /// Nodes whose output channels (weight dim 0, bias) form the group; for heads and head
    /// dimensions, the one op that holds them.
    pub producers: Vec<String>,
    /// Per-channel nodes with parameters the group passes through (batch norms, depthwise
    /// convolutions).
    pub carriers: Vec<String>,
    /// Nodes reading the group's channels.
    pub consumers: Vec<Consumer>,
    /// Why the group cannot be pruned (`None`: it can).
    pub locked: Option<String>,
}

impl Group {
    /// Whether channels of this group may be removed.
    pub fn prunable(&self) -> bool {
        self.locked.is_none()
    }
}

/// The coupling analysis of one graph.
#[derive(Debug, Clone, Serialize)]
pub struct Coupling {
    /// The groups, in order of their first producer.
    pub groups: Vec<Group>,
    /// Per node, the layout of its output value.
    #[serde(skip)]
    pub layouts: Vec<Vec<Segment>>,
    /// Per node, the layouts of its inputs.
    #[serde(skip)]
    pub input_layouts: Vec<Vec<Vec<Segment>>>,
    /// Group of each space.
    #[serde(skip)]
    pub space_group: Vec<usize>,
    /// Per node, the groups of its inner units (in [`Op::inner_units`](super::op::Op::inner_units)
    /// order; empty for most ops).
    #[serde(skip)]
    pub inner_groups: Vec<Vec<usize>>,
}

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn find(&mut self, mut x: usize) -> usize {
        while self.0[x] != x {
            self.0[x] = self.0[self.0[x]];
            x = self.0[x];
        }
        x
    }
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a.max(b)] = a.min(b);
        }
    }
}

impl Coupling {
    /// Analyses `graph` for inputs of shape `input` (no batch dimension).
    pub fn new(graph: &Graph, input: &[usize]) -> Result<Self> {
        let graph_spec = graph.spec();
        let shapes = graph_spec.check(input)?;
        let mut sizes: Vec<usize> = vec![channel_count(input)];
        let mut locks: Vec<Option<String>> = vec![Some("the model input".into())];
        let mut producer_of: Vec<Option<usize>> = vec![None];
        let input_layout = vec![Segment {
            space: 0,
            spread: 1,
        }];
        let index = graph_spec.index();
        let mut layouts: Vec<Vec<Segment>> = Vec::with_capacity(graph.nodes.len());
        let mut input_layouts = Vec::with_capacity(graph.nodes.len());
        let mut unions: Vec<(usize, usize)> = Vec::new();
        let new_space = |size: usize,
                         lock: Option<String>,
                         producer: Option<usize>,
                         sizes: &mut Vec<usize>,
                         locks: &mut Vec<Option<String>>,
                         producer_of: &mut Vec<Option<usize>>| {
            sizes.push(size);
            locks.push(lock);
            producer_of.push(producer);
            sizes.len() - 1
        };
        for (i, node) in graph.nodes.iter().enumerate() {
            let ins: Vec<Vec<Segment>> = node
                .inputs
                .iter()
                .map(|n| match index.get(n.as_str()) {
                    Some(&j) if n != INPUT => layouts[j].clone(),
                    _ => input_layout.clone(),
                })
                .collect();
            let out_shape = &shapes.outputs[i];
            let spec = node.layer.spec();
            let layout = match spec.channels() {
                Channels::Transform => {
                    let s = new_space(
                        channel_count(out_shape),
                        None,
                        Some(i),
                        &mut sizes,
                        &mut locks,
                        &mut producer_of,
                    );
                    vec![Segment {
                        space: s,
                        spread: 1,
                    }]
                }
                Channels::PerChannel => ins[0].clone(),
                Channels::Elementwise => {
                    let first = &ins[0];
                    for other in &ins[1..] {
                        let aligned = other.len() == first.len()
                            && other.iter().zip(first).all(|(a, b)| {
                                a.spread == b.spread && sizes[a.space] == sizes[b.space]
                            });
                        if aligned {
                            unions.extend(other.iter().zip(first).map(|(a, b)| (a.space, b.space)));
                        } else {
                            let why = format!(
                                "`{}` joins values whose channel layouts differ",
                                node.name
                            );
                            for s in first.iter().chain(other) {
                                locks[s.space].get_or_insert(why.clone());
                            }
                        }
                    }
                    first.clone()
                }
                Channels::Concat => ins.concat(),
                Channels::Flatten => {
                    let hw: usize = shapes.inputs_of(&graph_spec, i)[0][1..].iter().product();
                    ins[0]
                        .iter()
                        .map(|s| Segment {
                            spread: s.spread * hw,
                            ..*s
                        })
                        .collect()
                }
                Channels::Opaque => {
                    let why = format!(
                        "read by `{}` ({}), which mixes channels in groups",
                        node.name,
                        spec.detail_or_kind()
                    );
                    for s in &ins[0] {
                        locks[s.space].get_or_insert(why.clone());
                    }
                    let s = new_space(
                        channel_count(out_shape),
                        Some(format!("made by `{}`, a grouped convolution", node.name)),
                        Some(i),
                        &mut sizes,
                        &mut locks,
                        &mut producer_of,
                    );
                    vec![Segment {
                        space: s,
                        spread: 1,
                    }]
                }
            };
            layouts.push(layout);
            input_layouts.push(ins);
        }
        if let Some(out) = layouts.last() {
            for s in out {
                locks[s.space].get_or_insert("the model output".into());
            }
        }
        let mut uf = UnionFind((0..sizes.len()).collect());
        for (a, b) in unions {
            uf.union(a, b);
        }
        // Groups in order of their root space; a lock on any space locks the group.
        let mut group_of_root: BTreeMap<usize, usize> = BTreeMap::new();
        let space_group: Vec<usize> = (0..sizes.len())
            .map(|s| {
                let root = uf.find(s);
                let next = group_of_root.len();
                *group_of_root.entry(root).or_insert(next)
            })
            .collect();
        let mut groups: Vec<Group> = (0..group_of_root.len())
            .map(|id| Group {
                id,
                kind: GroupKind::Channel,
                channels: 0,
                producers: Vec::new(),
                carriers: Vec::new(),
                consumers: Vec::new(),
                locked: None,
            })
            .collect();
        for s in 0..sizes.len() {
            let g = &mut groups[space_group[s]];
            g.channels = sizes[s];
            if g.locked.is_none() {
                g.locked = locks[s].clone();
            }
            if let Some(p) = producer_of[s] {
                g.producers.push(graph.nodes[p].name.clone());
            }
        }
        for (i, node) in graph.nodes.iter().enumerate() {
            let channels = node.layer.spec().channels();
            let has_weights = node.layer.spec().own_params() > 0;
            match channels {
                Channels::Transform | Channels::Opaque => {
                    let mut offset = 0;
                    for seg in &input_layouts[i][0] {
                        let g = &mut groups[space_group[seg.space]];
                        g.consumers.push(Consumer {
                            node: node.name.clone(),
                            offset,
                            spread: seg.spread,
                        });
                        offset += sizes[seg.space] * seg.spread;
                    }
                }
                Channels::PerChannel if has_weights => {
                    for seg in &input_layouts[i][0] {
                        let g = &mut groups[space_group[seg.space]];
                        if !g.carriers.contains(&node.name) {
                            g.carriers.push(node.name.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        // Inner units: a group per unit kind per node, after the channel groups.
        let mut inner_groups = vec![Vec::new(); graph.nodes.len()];
        for (i, node) in graph.nodes.iter().enumerate() {
            for (kind, units) in node.layer.spec().op().inner_units() {
                let (one, _) = kind.unit();
                inner_groups[i].push(groups.len());
                groups.push(Group {
                    id: groups.len(),
                    kind,
                    channels: units,
                    producers: vec![node.name.clone()],
                    carriers: Vec::new(),
                    consumers: Vec::new(),
                    locked: (units < 2)
                        .then(|| format!("a single {one}: removing it empties `{}`", node.name)),
                });
            }
        }
        let transformer = inner_groups.iter().any(|g| !g.is_empty());
        if transformer {
            let touches_inner = |name: &String| {
                index
                    .get(name.as_str())
                    .is_some_and(|&i| !inner_groups[i].is_empty())
            };
            let makes_tokens = |name: &String| {
                index
                    .get(name.as_str())
                    .is_some_and(|&i| shapes.outputs[i].len() == 2)
            };
            for g in groups.iter_mut().filter(|g| g.kind == GroupKind::Channel) {
                let tokens = g.producers.iter().all(makes_tokens);
                if g.producers.iter().any(touches_inner)
                    || g.consumers.iter().any(|c| touches_inner(&c.node))
                {
                    g.kind = GroupKind::Embed;
                } else if tokens && !g.producers.is_empty() {
                    g.kind = GroupKind::MlpUnit;
                }
            }
        }
        Ok(Coupling {
            groups,
            layouts,
            input_layouts,
            space_group,
            inner_groups,
        })
    }

    /// Per-feature keep mask of a layout, from per-group channel masks.
    pub fn expand(&self, layout: &[Segment], keep: &[Vec<bool>]) -> Vec<bool> {
        layout
            .iter()
            .flat_map(|seg| {
                keep[self.space_group[seg.space]]
                    .iter()
                    .flat_map(move |&k| std::iter::repeat_n(k, seg.spread))
            })
            .collect()
    }

    /// Removes the channels where `keep[group][c]` is false from every member of every group.
    /// `keep` has one mask per group (all `true` for groups left alone). A mask of the wrong
    /// length, one that empties a group, or one that touches a locked group is an error and
    /// leaves `graph` as it was.
    pub fn remove_channels(&self, graph: &mut Graph, keep: &[Vec<bool>]) -> Result<()> {
        let bad = |reason: String| {
            Err(CoreError::InvalidLayer {
                path: "<channel groups>".into(),
                reason,
            })
        };
        if keep.len() != self.groups.len() {
            return bad(format!(
                "{} masks for {} groups",
                keep.len(),
                self.groups.len()
            ));
        }
        for (g, k) in self.groups.iter().zip(keep) {
            let kept = k.iter().filter(|k| **k).count();
            if k.len() != g.channels {
                return bad(format!(
                    "group {}: a mask of {} for {} channels",
                    g.id,
                    k.len(),
                    g.channels
                ));
            }
            if kept == 0 && g.channels > 0 {
                return bad(format!(
                    "group {} would lose all {} channels",
                    g.id, g.channels
                ));
            }
            if let (Some(why), true) = (&g.locked, kept < g.channels) {
                return bad(format!("group {} is locked: {why}", g.id));
            }
        }
        for (i, node) in graph.nodes.iter_mut().enumerate() {
            let channels = node.layer.spec().channels();
            let input_mask = || self.expand(&self.input_layouts[i][0], keep);
            let trimmed = |m: Vec<bool>| (!m.iter().all(|k| *k)).then_some(m);
            match channels {
                Channels::Transform => {
                    let inputs = trimmed(input_mask());
                    let outputs = trimmed(self.expand(&self.layouts[i], keep));
                    if inputs.is_some() || outputs.is_some() {
                        node.layer
                            .live_mut()
                            .select_channels(inputs.as_deref(), outputs.as_deref());
                    }
                }
                Channels::PerChannel => {
                    if let Some(m) = trimmed(input_mask()) {
                        node.layer.live_mut().select_channels(Some(&m), Some(&m));
                    }
                }
                _ => {}
            }
            let inner = &self.inner_groups[i];
            if inner.iter().any(|&g| keep[g].iter().any(|k| !k)) {
                let masks: Vec<Vec<bool>> = inner.iter().map(|&g| keep[g].clone()).collect();
                node.layer.live_mut().select_inner(&masks);
            }
        }
        Ok(())
    }

    /// Which channels of each group carry exactly zero to every reader, for every input:
    /// removing them changes no output. Locked groups are answered too: the caller decides.
    ///
    /// Embedding channels are the exception: one is answered zero when the residual stream
    /// carries zero in it (every producer writes zero, every learned token is zero there),
    /// though removing it is not exact, since the LayerNorms then take their statistics over
    /// fewer channels. Callers say so.
    pub fn zero_channels(&self, graph: &Graph, input: &[usize]) -> Result<Vec<Vec<bool>>> {
        let spec = graph.spec();
        let shapes = spec.check(input)?;
        let index = spec.index();
        let input_channels = input.first().copied().unwrap_or(0);
        let unknown_input: Vec<Option<f32>> = vec![None; input_channels];
        let mut constants: Vec<Vec<Option<f32>>> = Vec::with_capacity(graph.nodes.len());
        // What each node reads, per input feature, so consumers can be checked afterwards.
        let mut read: Vec<Vec<Option<f32>>> = Vec::with_capacity(graph.nodes.len());
        for (i, node) in graph.nodes.iter().enumerate() {
            let ins: Vec<Vec<Option<f32>>> = node
                .inputs
                .iter()
                .map(|n| match index.get(n.as_str()) {
                    Some(&j) => constants[j].clone(),
                    None => unknown_input.clone(),
                })
                .collect();
            let in_shapes = shapes.inputs_of(&spec, i);
            let out = node
                .layer
                .live()
                .constant_channels(&ins, &in_shapes, &shapes.outputs[i]);
            read.push(ins.into_iter().next().unwrap_or_default());
            constants.push(out);
        }
        let positions: BTreeMap<&str, usize> = graph
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        let mut silent: BTreeMap<usize, Vec<bool>> = BTreeMap::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            let units = node.layer.live().silent_inner();
            silent.extend(self.inner_groups[i].iter().copied().zip(units));
        }
        Ok(self
            .groups
            .iter()
            .map(|g| {
                if let Some(units) = silent.remove(&g.id) {
                    return units;
                }
                if g.kind == GroupKind::Embed {
                    // Producers and learned carriers write the stream; a LayerNorm's output
                    // is never constant, and what follows it is not the stream.
                    let writers: Vec<usize> = g
                        .producers
                        .iter()
                        .chain(&g.carriers)
                        .map(|n| positions[n.as_str()])
                        .filter(|&i| !graph.nodes[i].layer.spec().op().normalizes_channels())
                        .collect();
                    return (0..g.channels)
                        .map(|c| {
                            writers
                                .iter()
                                .all(|&i| constants[i].get(c) == Some(&Some(0.0)))
                        })
                        .collect();
                }
                if g.consumers.is_empty() {
                    return vec![false; g.channels];
                }
                (0..g.channels)
                    .map(|c| {
                        g.consumers.iter().all(|r| {
                            let seen = &read[positions[r.node.as_str()]];
                            let start = r.offset + c * r.spread;
                            seen[start..start + r.spread]
                                .iter()
                                .all(|v| *v == Some(0.0))
                        })
                    })
                    .collect()
            })
            .collect())
    }
}

trait DetailOrKind {
    fn detail_or_kind(&self) -> String;
}

impl DetailOrKind for super::layer::LayerSpec {
    fn detail_or_kind(&self) -> String {
        let d = self.op().detail();
        if d.is_empty() {
            self.kind().to_string()
        } else {
            d
        }
    }
}

impl fmt::Display for Coupling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prunable = self.groups.iter().filter(|g| g.prunable()).count();
        writeln!(f, "{} groups ({prunable} prunable)", self.groups.len())?;
        for g in &self.groups {
            let consumers: Vec<String> = g
                .consumers
                .iter()
                .map(|c| match (c.offset, c.spread) {
                    (0, 1) => c.node.clone(),
                    (o, 1) => format!("{}[{o}..]", c.node),
                    (o, s) => format!("{}[{o}.., ×{s}]", c.node),
                })
                .collect();
            let (one, many) = g.kind.unit();
            let line = format!(
                "group {:>3}  {:<8} {:>5} {:<8} {}",
                g.id,
                g.kind,
                g.channels,
                if g.channels == 1 { one } else { many },
                g.locked
                    .as_deref()
                    .map_or(String::new(), |why| format!("locked: {why}"))
            );
            writeln!(f, "{}", line.trim_end())?;
            if g.kind.is_inner() {
                let members = match g.kind {
                    GroupKind::Head => {
                        "q, k and v rows of in_proj (weight, bias), out_proj columns"
                    }
                    GroupKind::QueryKeyDim => "q and k rows of in_proj at that index in every head",
                    _ => "v rows of in_proj at that index in every head, out_proj columns",
                };
                writeln!(f, "    in        {}: {members}", g.producers.join(", "))?;
                continue;
            }
            if !g.producers.is_empty() {
                writeln!(f, "    made by   {}", g.producers.join(", "))?;
            }
            if !g.carriers.is_empty() {
                writeln!(f, "    through   {}", g.carriers.join(", "))?;
            }
            if !consumers.is_empty() {
                writeln!(f, "    read by   {}", consumers.join(", "))?;
            }
        }
        Ok(())
    }
}
