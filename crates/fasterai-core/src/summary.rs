//! Parameter counts, MACs and the per-layer table (`fasterai inspect`).

use std::fmt;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use serde::Serialize;

use crate::error::Result;
use crate::graph::{Graph, INPUT};

/// Counts the trainable parameters of any Burn module from its live tensors, as PyTorch's
/// `sum(p.numel() for p in model.parameters())` does: batch-norm running statistics are buffers,
/// not parameters, so they are left out (Burn's own `num_params()` includes them).
pub fn count_parameters<M: Module>(module: &M) -> usize {
    #[derive(Default)]
    struct Counter {
        leaf: Vec<String>,
        total: usize,
    }
    impl ModuleVisitor for Counter {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.leaf.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.leaf.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let is_buffer = matches!(
                self.leaf.last().map(String::as_str),
                Some("running_mean" | "running_var")
            );
            if !is_buffer {
                self.total += param.lazy_shape().num_elements();
            }
        }
    }
    let mut counter = Counter::default();
    module.visit(&mut counter);
    counter.total
}

/// One row of the layer table.
#[derive(Debug, Clone, Serialize)]
pub struct LayerRow {
    /// Dotted path (`features.0`).
    pub path: String,
    /// Layer type (`Conv2d`).
    pub kind: String,
    /// Short hyper-parameter description (`3→64, k3×3, s1, p1`).
    pub detail: String,
    /// Output shape without the batch dimension.
    pub output_shape: Vec<usize>,
    /// Trainable parameters.
    pub params: usize,
    /// Multiply-accumulates per sample.
    pub macs: u64,
}

/// The whole-model report: one row per leaf layer and the totals.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Model name, if known.
    pub name: String,
    /// Input shape without the batch dimension.
    pub input_shape: Vec<usize>,
    /// Output shape without the batch dimension.
    pub output_shape: Vec<usize>,
    /// Per-layer rows.
    pub layers: Vec<LayerRow>,
    /// Total trainable parameters.
    pub total_params: usize,
    /// Total multiply-accumulates per sample.
    pub total_macs: u64,
    /// Size of the float32 parameters and buffers in bytes.
    pub weight_bytes: u64,
}

impl Summary {
    /// Builds the report for `graph` fed with samples of shape `input` (no batch dimension).
    pub fn new(name: &str, graph: &Graph, input: &[usize]) -> Result<Self> {
        let spec = graph.spec();
        let shapes = spec.check(input)?;
        let mut previous = INPUT;
        let layers: Vec<LayerRow> = spec
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let mut detail = node.op.op().detail();
                // Say where a node reads from when it is not simply the node before it.
                if node.inputs != [previous] {
                    let from = format!("← {}", node.inputs.join(", "));
                    detail = if detail.is_empty() {
                        from
                    } else {
                        format!("{detail}  {from}")
                    };
                }
                previous = &node.name;
                LayerRow {
                    path: node.name.clone(),
                    kind: node.op.kind().to_string(),
                    detail,
                    output_shape: shapes.outputs[i].clone(),
                    params: node.op.own_params(),
                    macs: shapes.macs[i],
                }
            })
            .collect();
        let total_params = layers.iter().map(|r| r.params).sum();
        let total_macs = layers.iter().map(|r| r.macs).sum();
        Ok(Summary {
            name: name.to_string(),
            input_shape: input.to_vec(),
            output_shape: shapes.outputs.last().cloned().unwrap_or_default(),
            layers,
            total_params,
            total_macs,
            weight_bytes: 4 * graph.num_params() as u64,
        })
    }
}

/// `134309962` → `134,309,962`.
pub fn thousands(n: impl Into<u128>) -> String {
    let digits = n.into().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1.53e10` → `15.35 G`.
pub fn si(n: f64) -> String {
    let (value, unit) = match n {
        n if n >= 1e12 => (n / 1e12, "T"),
        n if n >= 1e9 => (n / 1e9, "G"),
        n if n >= 1e6 => (n / 1e6, "M"),
        n if n >= 1e3 => (n / 1e3, "k"),
        n => (n, ""),
    };
    format!("{value:.2} {unit}")
}

fn shape_str(shape: &[usize]) -> String {
    shape
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("×")
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = ["layer", "type", "", "output", "params", "MACs"];
        let body: Vec<[String; 6]> = self
            .layers
            .iter()
            .map(|r| {
                [
                    r.path.clone(),
                    r.kind.clone(),
                    r.detail.clone(),
                    shape_str(&r.output_shape),
                    if r.params == 0 {
                        String::new()
                    } else {
                        thousands(r.params as u64)
                    },
                    if r.macs == 0 {
                        String::new()
                    } else {
                        si(r.macs as f64)
                    },
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &body {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: &[String; 6]| {
            // Text left-aligned, numbers right-aligned.
            writeln!(
                f,
                "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:>w4$}  {:>w5$}",
                cells[0],
                cells[1],
                cells[2],
                cells[3],
                cells[4],
                cells[5],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
                w4 = widths[4],
                w5 = widths[5]
            )
        };
        writeln!(f, "{} — input {}", self.name, shape_str(&self.input_shape))?;
        line(f, &header.map(String::from))?;
        let total_width = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        writeln!(f, "{}", "─".repeat(total_width))?;
        for row in &body {
            line(f, row)?;
        }
        writeln!(f, "{}", "─".repeat(total_width))?;
        writeln!(f, "output              {}", shape_str(&self.output_shape))?;
        writeln!(
            f,
            "total parameters    {}",
            thousands(self.total_params as u64)
        )?;
        writeln!(
            f,
            "total MACs          {} ({})",
            thousands(self.total_macs),
            si(self.total_macs as f64)
        )?;
        write!(
            f,
            "weights (float32)   {:.1} MiB",
            self.weight_bytes as f64 / (1024.0 * 1024.0)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formatting() {
        assert_eq!(thousands(134_309_962u64), "134,309,962");
        assert_eq!(thousands(999u64), "999");
        assert_eq!(thousands(1000u64), "1,000");
        assert_eq!(si(15.47e9), "15.47 G");
    }
}
