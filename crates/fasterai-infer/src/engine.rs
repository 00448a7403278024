//! [`Inference`]: a graph prepared once, run on host buffers with the engine's kernels.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use fasterai_core::graph::{Activation, Graph, channel_axis};

use crate::kernels::conv::ConvPath;
use crate::kernels::eltwise::{self, affine};
use crate::kernels::simd::Isa;
use crate::kernels::{norm, pool};
use crate::plan::{Plan, Step};
use crate::value::{Pool, Value};

/// How each convolution's [`ConvPath`] is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathChoice {
    /// Timed on the first input of each shape: every path a convolution offers, three times
    /// each on up to four of its images, the fastest kept if it beats the rule's by 10 %; then the whole prepared graph
    /// against the graph as built, up to three times each in turns (fewer once one is twice
    /// as fast as the other), the faster kept (so that preparing does not make a model slower
    /// on the CPU at hand, up to timing noise).
    Measure,
    /// By rule, without timing: the depthwise loop where it applies, GEMM otherwise.
    Rules,
    /// This path wherever a convolution offers it, the rule's elsewhere (tests and
    /// comparisons: every path runs on any CPU).
    Force(ConvPath),
}

impl PathChoice {
    /// The choice `FASTERAI_CONV` names: `auto` (or unset) measures, `rules` applies the rule,
    /// `gemm`, `winograd` or `depthwise` forces that path.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("FASTERAI_CONV") {
            Err(_) => Ok(PathChoice::Measure),
            Ok(name) => Self::parse(&name),
        }
    }

    /// Parses a name as `FASTERAI_CONV` takes it.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "" | "auto" => Ok(PathChoice::Measure),
            "rules" => Ok(PathChoice::Rules),
            _ => ConvPath::ALL
                .into_iter()
                .find(|p| p.name() == name)
                .map(PathChoice::Force)
                .ok_or_else(|| {
                    format!(
                        "FASTERAI_CONV={name}: expected auto, rules, gemm, winograd or depthwise"
                    )
                }),
        }
    }
}

/// What was chosen for one input shape.
#[derive(Debug, Clone)]
struct Tuned {
    /// Per node: the path of a convolution.
    paths: Vec<Option<ConvPath>>,
    /// The graph as built was faster: run it.
    plain: bool,
}

#[derive(Default)]
struct State {
    pool: Pool,
    tuned: HashMap<Vec<usize>, Tuned>,
    last: Option<Vec<usize>>,
}

/// A graph prepared for fast inference on the CPU; see the [crate docs](crate).
pub struct Inference {
    graph: Graph,
    plan: Plan,
    /// Whether the graph was prepared (flex), not just wrapped.
    prepared: bool,
    choice: PathChoice,
    state: Mutex<State>,
}

/// What a prepared graph runs, for reports (`fasterai bench`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// Nodes folded into the kernel before them (batch norms, sums, activations).
    pub fused_nodes: usize,
    /// Squeeze-and-excitation gates run as one step each.
    pub gates: usize,
    /// Convolutions by the path they take for the last input shape run (the rule's before any).
    pub conv_paths: Vec<(ConvPath, usize)>,
    /// Kinds of nodes with weights that run as the graph runs them (no kernel here yet), with
    /// counts.
    pub as_built: Vec<(&'static str, usize)>,
    /// Whether the whole graph as built was measured faster for the last input shape, and runs.
    pub runs_as_built: bool,
    /// The instruction set of the engine's own loops ([`Isa::current`]).
    pub isa: Option<Isa>,
}

impl Inference {
    /// Prepares `graph` for `device`: packs the weights of every kernel once and finds the
    /// fusable chains; paths are chosen as `FASTERAI_CONV` says (measured when unset or
    /// invalid: callers that take the variable from users check it with
    /// [`PathChoice::from_env`]). On devices other than flex, nothing is prepared.
    pub fn new(graph: Graph, device: &Device) -> Self {
        Self::with_choice(
            graph,
            device,
            PathChoice::from_env().unwrap_or(PathChoice::Measure),
        )
    }

    /// [`new`](Self::new) with the path choice given.
    pub fn with_choice(graph: Graph, device: &Device, choice: PathChoice) -> Self {
        if !fasterai_core::device::on_host(device) {
            return Self::plain(graph);
        }
        let plan = Plan::prepared(&graph);
        Self {
            graph,
            plan,
            prepared: true,
            choice,
            state: Mutex::default(),
        }
    }

    /// `graph` run exactly as built, node by node (`--plain`: what [`new`](Self::new) is
    /// compared with).
    pub fn plain(graph: Graph) -> Self {
        let plan = Plan::plain(&graph);
        Self {
            graph,
            plan,
            prepared: false,
            choice: PathChoice::Rules,
            state: Mutex::default(),
        }
    }

    /// The graph it runs.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Nodes folded into the output pass of the kernel before them.
    pub fn fused_nodes(&self) -> usize {
        let fused = |s: &&Step| matches!(s, Step::Pass { fused: true, .. });
        self.plan.steps.iter().filter(fused).count()
    }

    /// Convolutions that take `path` for the last input shape run (by rule before any run).
    pub fn convs_by(&self, path: ConvPath) -> usize {
        self.report()
            .conv_paths
            .iter()
            .find(|(p, _)| *p == path)
            .map_or(0, |(_, n)| *n)
    }

    /// Convolutions computed by Winograd F(4×4, 3×3) (see [`convs_by`](Self::convs_by)).
    pub fn winograd_convs(&self) -> usize {
        self.convs_by(ConvPath::Winograd)
    }

    /// What the prepared graph runs; empty for a plain graph.
    pub fn report(&self) -> Report {
        let mut report = Report::default();
        if !self.prepared {
            return report;
        }
        report.fused_nodes = self.fused_nodes();
        report.isa = Some(Isa::current());
        let state = self.lock();
        let tuned = state.last.as_ref().and_then(|d| state.tuned.get(d));
        report.runs_as_built = tuned.is_some_and(|t| t.plain);
        for (i, (node, step)) in self.graph.nodes.iter().zip(&self.plan.steps).enumerate() {
            match step {
                Step::Conv { kernel, .. } => {
                    let path = tuned
                        .and_then(|t| t.paths[i])
                        .unwrap_or_else(|| kernel.default_path());
                    count(&mut report.conv_paths, path);
                }
                Step::Gate(_) => report.gates += 1,
                Step::Layer if node.layer.spec().own_params() > 0 => {
                    count(&mut report.as_built, node.layer.spec().kind());
                }
                _ => {}
            }
        }
        report
    }

    /// Kinds of nodes with weights that run as the graph runs them, with counts.
    pub fn as_built(&self) -> Vec<(&'static str, usize)> {
        self.report().as_built
    }

    /// Checks the input shape against every node first, then runs the prepared graph.
    pub fn try_forward(&self, x: impl Into<Activation>) -> fasterai_core::Result<Activation> {
        let x = x.into();
        let dims = x.dims();
        self.graph.shapes(&dims[1..])?.check_batch(dims[0])?;
        Ok(self.forward(x))
    }

    /// Runs the prepared graph. Inputs that record a backward pass, and graphs not prepared,
    /// run as the graph runs them ([`Graph::forward`]). The first input of each shape chooses
    /// the paths (see [`PathChoice`]). Calls from several threads take turns: each uses every
    /// core.
    ///
    /// # Panics
    /// As [`Graph::forward`] does, on an input the graph cannot take; see
    /// [`try_forward`](Self::try_forward).
    pub fn forward(&self, x: impl Into<Activation>) -> Activation {
        let x = x.into();
        if !self.prepared || x.is_autodiff() || self.graph.nodes.is_empty() {
            return self.graph.forward(x);
        }
        let dims = x.dims();
        let mut state = self.lock();
        state.last = Some(dims.clone());
        let Some(tuned) = state.tuned.get(&dims).cloned() else {
            let (tuned, y) = self.tune(&x, &mut state.pool);
            state.tuned.insert(dims, tuned);
            return y;
        };
        if tuned.plain {
            drop(state);
            return self.graph.forward(x);
        }
        self.run(&x, &mut tuned.paths.clone(), &mut state.pool, false)
    }

    /// Runs `x` once more after its shape is tuned, timing every node on host buffers:
    /// `(node, kind, ms)` in execution order, folded nodes at 0 (their time is in the kernel
    /// before them). Where a model spends its time (`fasterai bench --profile`); a graph not
    /// prepared is timed node by node as built.
    pub fn profile(&self, x: impl Into<Activation>) -> Vec<(String, &'static str, f64)> {
        let x = x.into();
        drop(self.forward(x.clone()));
        let mut times = vec![Duration::ZERO; self.graph.nodes.len()];
        if !x.is_autodiff() && !self.graph.nodes.is_empty() {
            let mut state = self.lock();
            let tuned = state.tuned.get(&x.dims()).cloned();
            let mut paths = tuned.map_or_else(|| vec![None; times.len()], |t| t.paths);
            drop(self.run_timed(&x, &mut paths, &mut state.pool, false, Some(&mut times)));
        }
        self.graph
            .nodes
            .iter()
            .zip(times)
            .map(|(n, t)| (n.name.clone(), n.layer.spec().kind(), t.as_secs_f64() * 1e3))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another call leaves only recyclable buffers behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Chooses the paths for `x`'s shape; returns them with `x`'s output.
    fn tune(&self, x: &Activation, pool: &mut Pool) -> (Tuned, Activation) {
        let mut paths: Vec<Option<ConvPath>> = vec![None; self.graph.nodes.len()];
        for (path, step) in paths.iter_mut().zip(&self.plan.steps) {
            if let Step::Conv { kernel, .. } = step {
                *path = Some(match self.choice {
                    PathChoice::Force(p) if kernel.paths().contains(&p) => p,
                    _ => kernel.default_path(),
                });
            }
        }
        let measure = self.choice == PathChoice::Measure;
        let y = self.run(x, &mut paths, pool, measure);
        let mut plain = false;
        if measure {
            let (prepared, as_built) = fastest_of_each(
                || drop(self.run(x, &mut paths.clone(), pool, false)),
                || drop(self.graph.forward(x.clone())),
            );
            plain = as_built < prepared;
        }
        for (path, step) in paths.iter().zip(&self.plan.steps) {
            if let Step::Conv { kernel, .. } = step
                && (plain || *path != Some(ConvPath::Winograd))
            {
                kernel.drop_winograd();
            }
        }
        (Tuned { paths, plain }, y)
    }

    /// Runs every step on host buffers; `measure` times each convolution's paths and keeps the
    /// fastest in `paths`.
    fn run(
        &self,
        x: &Activation,
        paths: &mut [Option<ConvPath>],
        pool: &mut Pool,
        measure: bool,
    ) -> Activation {
        self.run_timed(x, paths, pool, measure, None)
    }

    /// [`run`](Self::run), adding each node's time to `times` when given.
    fn run_timed(
        &self,
        x: &Activation,
        paths: &mut [Option<ConvPath>],
        pool: &mut Pool,
        measure: bool,
        mut times: Option<&mut [Duration]>,
    ) -> Activation {
        let device = x.device();
        let n = self.graph.nodes.len();
        let mut values: Vec<Option<Value>> = (0..=n).map(|_| None).collect();
        values[n] = Some(Value::from_activation(x.clone()));
        let mut left = self.plan.reads.clone();
        for i in 0..n {
            let slots = &self.plan.inputs[i];
            let mut run = Run {
                engine: self,
                slots,
                values: &mut values,
                left: &left,
                pool: &mut *pool,
                device: &device,
            };
            let start = Instant::now();
            let y = run.step(i, &mut paths[i], measure);
            if let Some(times) = times.as_deref_mut() {
                times[i] += start.elapsed();
            }
            for &s in slots {
                left[s] -= 1;
                if left[s] == 0
                    && let Some(v) = values[s].take()
                {
                    pool.give(v.data);
                }
            }
            if left[i] > 0 || i + 1 == n {
                values[i] = Some(y);
            } else {
                pool.give(y.data);
            }
        }
        if let Some(v) = values[n].take() {
            pool.give(v.data);
        }
        let y = values[n - 1].take().expect("the last node ran");
        y.into_activation(&device)
    }
}

/// One step's view of the values.
struct Run<'a> {
    engine: &'a Inference,
    slots: &'a [usize],
    values: &'a mut [Option<Value>],
    left: &'a [usize],
    pool: &'a mut Pool,
    device: &'a Device,
}

impl Run<'_> {
    fn get(&self, k: usize) -> &Value {
        self.values[self.slots[k]]
            .as_ref()
            .expect("computed before its readers")
    }

    /// Input `k`'s value to modify in place: taken when this node is its last reader, else
    /// copied.
    fn own(&mut self, k: usize) -> Value {
        let slot = self.slots[k];
        let once = self.slots.iter().filter(|&&s| s == slot).count() == 1;
        if once && self.left[slot] == 1 {
            return self.values[slot]
                .take()
                .expect("computed before its readers");
        }
        let v = self.values[slot]
            .as_ref()
            .expect("computed before its readers");
        let mut data = self.pool.take(v.data.len());
        data.copy_from_slice(&v.data);
        Value {
            data,
            dims: v.dims.clone(),
        }
    }

    fn output(&mut self, dims: Vec<usize>) -> Value {
        Value {
            data: self.pool.take(dims.iter().product()),
            dims,
        }
    }

    /// The node's own layer on Burn tensors.
    fn layer(&mut self, i: usize) -> Value {
        let inputs = (0..self.slots.len())
            .map(|k| {
                let v = self.get(k);
                let copy = Value {
                    data: v.data.clone(),
                    dims: v.dims.clone(),
                };
                copy.into_activation(self.device)
            })
            .collect();
        Value::from_activation(self.engine.graph.nodes[i].layer.forward(inputs))
    }

    fn step(&mut self, i: usize, path: &mut Option<ConvPath>, measure: bool) -> Value {
        match &self.engine.plan.steps[i] {
            Step::Layer => self.layer(i),
            Step::Pass { input, .. } => self.own(*input),
            Step::Act(act) => {
                let mut v = self.own(0);
                act.apply_all(&mut v.data);
                v
            }
            Step::Affine { scale, shift, act } => {
                let mut v = self.own(0);
                let (_, channels, plane) = v.planes();
                affine(&mut v.data, channels, plane, scale, shift, *act);
                v
            }
            Step::Add => {
                if (1..self.slots.len()).any(|k| self.get(k).dims != self.get(0).dims) {
                    return self.layer(i);
                }
                let mut acc = self.own(0);
                for k in 1..self.slots.len() {
                    eltwise::add_into(&mut acc.data, &self.get(k).data);
                }
                acc
            }
            Step::Mul => self.mul(i),
            Step::Concat => self.concat(),
            Step::Flatten => {
                let mut v = self.own(0);
                v.dims = vec![v.dims[0], v.dims[1..].iter().product()];
                v
            }
            Step::MaxPool(spec) => {
                let [oh, ow] = pool::max_pool_dims(spec, self.get(0).hw());
                self.pool_with([oh, ow], |x, hw, y| pool::max_pool(spec, x, hw, y))
            }
            Step::AvgPool(spec) => {
                let [oh, ow] = pool::avg_pool_dims(spec, self.get(0).hw());
                self.pool_with([oh, ow], |x, hw, y| pool::avg_pool(spec, x, hw, y))
            }
            Step::Gate(kernel) => {
                let mut v = self.own(0);
                let (_, channels, plane) = v.planes();
                debug_assert_eq!(channels, kernel.channels(), "shapes checked before the run");
                kernel.run(&mut v.data, plane);
                v
            }
            Step::PooledLinear(kernel) => {
                let x = self.get(0);
                let [n, c, h, w] = x.dims4();
                if let Some(folded) = kernel.folded_for([c, h, w]) {
                    let mut y = self.output(vec![n, folded.outputs()]);
                    folded.run(&self.get(0).data, n, &mut y.data);
                    return y;
                }
                let pooled = self.pool_with(kernel.pool, |x, hw, y| {
                    pool::adaptive_avg_pool(kernel.pool, x, hw, y)
                });
                let mut y = self.output(vec![n, kernel.linear.outputs()]);
                kernel.linear.run(&pooled.data, n, &mut y.data);
                self.pool.give(pooled.data);
                y
            }
            Step::AdaptiveAvgPool(size) => {
                self.pool_with(*size, |x, hw, y| pool::adaptive_avg_pool(*size, x, hw, y))
            }
            Step::Linear(kernel) => {
                let x = self.get(0);
                let mut dims = x.dims.clone();
                let rows = dims[..dims.len() - 1].iter().product();
                *dims.last_mut().expect("rank 2 or more") = kernel.outputs();
                let mut y = self.output(dims);
                kernel.run(&self.get(0).data, rows, &mut y.data);
                y
            }
            Step::LayerNorm(kernel) => {
                if self.get(0).dims.last() != Some(&kernel.features()) {
                    return self.layer(i);
                }
                let mut v = self.own(0);
                kernel.run(&mut v.data);
                v
            }
            Step::Softmax => {
                let dims = &self.get(0).dims;
                if dims.len() == 4 {
                    return self.layer(i); // over channels, a strided axis
                }
                let width = dims[dims.len() - 1];
                let mut v = self.own(0);
                norm::softmax_rows(&mut v.data, width);
                v
            }
            Step::Attention(kernel) => {
                let &[n, t, e] = &self.get(0).dims[..] else {
                    return self.layer(i);
                };
                if e != kernel.inputs() {
                    return self.layer(i);
                }
                let mut y = self.output(vec![n, t, kernel.outputs()]);
                let mut scratch = kernel.scratch_lens([n, t]).map(|len| self.pool.take(len));
                kernel.run(&self.get(0).data, [n, t], &mut y.data, &mut scratch);
                scratch.into_iter().for_each(|b| self.pool.give(b));
                y
            }
            Step::Tokens(op) => {
                let dims = self.get(0).dims.clone();
                let Some(out) = op.out_dims(&dims) else {
                    return self.layer(i);
                };
                let mut y = self.output(out);
                op.run(&self.get(0).data, &dims, &mut y.data);
                y
            }
            Step::Conv { kernel, residual } => {
                let dims = self.get(0).dims4();
                let out = kernel.out_dims(dims);
                let mut y = self.output(out.to_vec());
                let mut scratch = self.pool.take_scratch();
                let x = &self.values[self.slots[0]].as_ref().expect("computed").data;
                let r = residual.map(|s| &self.values[s].as_ref().expect("computed").data[..]);
                assert!(
                    r.is_none_or(|r| r.len() == y.data.len()),
                    "a sum of two shapes"
                );
                // Paths are timed on the first few images: a big batch would make the first
                // call a minute long (VGG16-bn at 224², batch 32), and per image the paths
                // rank alike.
                let timed = dims[0].min(TIMED_IMAGES);
                let share = |len: usize| len.checked_div(dims[0]).unwrap_or(0) * timed;
                let (x_len, y_len) = (share(x.len()), share(y.data.len()));
                let timed_dims = [timed, dims[1], dims[2], dims[3]];
                let mut conv = |p: ConvPath, images: usize| {
                    if images == dims[0] {
                        kernel.run(p, x, dims, r, &mut y.data, &mut scratch)
                    } else {
                        let (x, y) = (&x[..x_len], &mut y.data[..y_len]);
                        let r = r.map(|r| &r[..y_len]);
                        kernel.run(p, x, timed_dims, r, y, &mut scratch)
                    }
                };
                let paths = kernel.paths();
                if measure && paths.len() > 1 {
                    // Another path must beat the rule's by a tenth: timings of a few runs on a
                    // busy machine are noisy, and a wrong switch costs more than it saves.
                    let default = kernel.default_path();
                    // Rounds of one run per path, so that a pause of the machine does not
                    // fall on one path's runs only.
                    let mut times: Vec<(ConvPath, Duration)> =
                        paths.iter().map(|&p| (p, Duration::MAX)).collect();
                    for _ in 0..3 {
                        for (p, best) in &mut times {
                            let start = Instant::now();
                            conv(*p, timed);
                            *best = (*best).min(start.elapsed());
                        }
                    }
                    let base = times
                        .iter()
                        .find(|(p, _)| *p == default)
                        .expect("offered")
                        .1;
                    let best = times
                        .iter()
                        .filter(|(p, t)| {
                            *p == default || t.as_secs_f64() < 0.9 * base.as_secs_f64()
                        })
                        .min_by_key(|(_, t)| *t)
                        .expect("the default")
                        .0;
                    *path = Some(best);
                    if best != ConvPath::Winograd {
                        kernel.drop_winograd(); // one layer's transformed filters at a time
                    }
                }
                conv(path.unwrap_or_else(|| kernel.default_path()), dims[0]);
                self.pool.keep_scratch(scratch);
                y
            }
        }
    }

    /// An element-wise product: equal shapes, or one side a `[N, C, 1, 1]` gate of the other.
    fn mul(&mut self, i: usize) -> Value {
        if self.slots.len() != 2 {
            return self.layer(i);
        }
        let (a, b) = (&self.get(0).dims, &self.get(1).dims);
        let gate = |g: &[usize], x: &[usize]| {
            x.len() == 4 && g.len() == 4 && g[..2] == x[..2] && g[2..] == [1, 1]
        };
        let (keep, other, plane) = if a == b {
            (0, 1, 1)
        } else if gate(b, a) {
            (0, 1, a[2] * a[3])
        } else if gate(a, b) {
            (1, 0, b[2] * b[3])
        } else {
            return self.layer(i);
        };
        let mut acc = self.own(keep);
        eltwise::mul_planes(&mut acc.data, &self.get(other).data, plane);
        acc
    }

    /// Concatenation along the channel axis: per sample, each input's block in turn.
    fn concat(&mut self) -> Value {
        let first = &self.get(0).dims;
        let axis = 1 + channel_axis(&first[1..]);
        let inner: usize = first[axis + 1..].iter().product();
        let mut dims = first.clone();
        dims[axis] = (0..self.slots.len()).map(|k| self.get(k).dims[axis]).sum();
        let outer: usize = dims[..axis].iter().product();
        let mut y = self.output(dims);
        let mut offset = 0;
        for o in 0..outer {
            for k in 0..self.slots.len() {
                let v = self.get(k);
                let block = v.dims[axis] * inner;
                y.data[offset..offset + block].copy_from_slice(&v.data[o * block..][..block]);
                offset += block;
            }
        }
        y
    }

    /// A pooling of input 0 to `[N, C, oh, ow]`.
    fn pool_with(
        &mut self,
        [oh, ow]: [usize; 2],
        f: impl Fn(&[f32], [usize; 2], &mut [f32]),
    ) -> Value {
        let x = self.get(0);
        let (hw, [n, c, _, _]) = (x.hw(), x.dims4());
        let mut y = self.output(vec![n, c, oh, ow]);
        f(&self.get(0).data, hw, &mut y.data);
        y
    }
}

/// Images of a batch each convolution's paths are timed on.
const TIMED_IMAGES: usize = 4;

/// The fastest of several runs of `a` and of `b`, taken in turns so that a busy spell of the
/// machine slows both rather than one: at least three each and [`GUARD_BUDGET`] in all (a
/// one-millisecond model gets some twenty, so that one slow run cannot decide), at most
/// [`GUARD_MAX_RUNS`]. One pass is enough once one side is twice as fast on runs of
/// [`GUARD_LONG_RUN`] or more (a big model's first call at batch 32 would otherwise take a
/// minute of timing runs).
fn fastest_of_each(mut a: impl FnMut(), mut b: impl FnMut()) -> (Duration, Duration) {
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        f();
        start.elapsed()
    };
    let started = Instant::now();
    let (mut ta, mut tb) = (Duration::MAX, Duration::MAX);
    for pass in 1..=GUARD_MAX_RUNS {
        ta = ta.min(time(&mut a));
        tb = tb.min(time(&mut b));
        let decisive = ta * 2 < tb || tb * 2 < ta;
        if (decisive && ta.min(tb) >= GUARD_LONG_RUN)
            || (pass >= 3 && started.elapsed() >= GUARD_BUDGET)
        {
            break;
        }
    }
    (ta, tb)
}

/// Time the whole-graph guard spends at least (after three runs of each side).
const GUARD_BUDGET: Duration = Duration::from_millis(50);
/// Runs of each side the guard takes at most.
const GUARD_MAX_RUNS: usize = 50;
/// Runs this long settle the guard in one pass when one side is twice as fast.
const GUARD_LONG_RUN: Duration = Duration::from_millis(100);

fn count<K: PartialEq>(counts: &mut Vec<(K, usize)>, key: K) {
    match counts.iter_mut().find(|(k, _)| *k == key) {
        Some((_, n)) => *n += 1,
        None => counts.push((key, 1)),
    }
}
