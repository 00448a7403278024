//! [`Distiller`]: the training-loop callback that adds a teacher's knowledge to the loss.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use fasterai_core::graph::{Activation, Graph, InitScheme, Layer, LayerSpec};
use fasterai_core::model::Model;
use fasterai_core::schedule::cos_anneal;
use fasterai_train::learner::{Callback, LossContext, TrainConfig};
use fasterai_train::{Result, TrainError};

use crate::losses;

/// Zagoruyko & Komodakis's weight of the attention-transfer term.
const ATTENTION_BETA: f64 = 1e3;
/// Which knowledge to transfer.
#[derive(Debug, Clone, PartialEq)]
pub enum KdLoss {
    /// Hinton's soft targets at `temperature` (scaled by T²).
    SoftTarget {
        /// Softmax temperature (4 is common).
        temperature: f64,
    },
    /// Mean squared difference of logits.
    LogitMse,
    /// KL of the output distributions at temperature 1.
    MutualKl,
    /// Decoupled KD: `alpha·TCKD + beta·NCKD` at `temperature`.
    Decoupled {
        /// Weight of the target-class part (1).
        alpha: f64,
        /// Weight of the non-target part (8).
        beta: f64,
        /// Temperature (4).
        temperature: f64,
    },
    /// Attention transfer between pairs of layers (same spatial size), scaled by the paper's
    /// β = 10³ (the normalised maps differ by ~1/(H·W) per entry; without it the term would
    /// not move the student with a weight in [0, 1]).
    Attention {
        /// `(student path, teacher path)` pairs.
        pairs: Vec<(String, String)>,
        /// Exponent of the attention map (2).
        p: f64,
    },
    /// FitNet hints: the student's features, through a learned 1×1 conv when the channel
    /// counts differ, regress the teacher's.
    FitNet {
        /// `(student path, teacher path)` pairs.
        pairs: Vec<(String, String)>,
    },
    /// Similarity preserving between pairs of layers.
    Similarity {
        /// `(student path, teacher path)` pairs.
        pairs: Vec<(String, String)>,
    },
    /// Activation boundaries between pairs of layers (same shape).
    ActivationBoundaries {
        /// `(student path, teacher path)` pairs.
        pairs: Vec<(String, String)>,
        /// Hinge margin (1).
        margin: f64,
    },
}

impl KdLoss {
    fn pairs(&self) -> &[(String, String)] {
        match self {
            KdLoss::Attention { pairs, .. }
            | KdLoss::FitNet { pairs }
            | KdLoss::Similarity { pairs }
            | KdLoss::ActivationBoundaries { pairs, .. } => pairs,
            _ => &[],
        }
    }
}

/// The weight `w` of the distillation loss in `(1 − w)·task + w·kd`, over training progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KdWeight {
    /// The same weight throughout.
    Constant(f64),
    /// Cosine from `start` to `end` over training.
    Cosine {
        /// Weight at the start.
        start: f64,
        /// Weight at the end.
        end: f64,
    },
}

impl KdWeight {
    /// The weight at progress `t`.
    pub fn at(&self, t: f64) -> f64 {
        match *self {
            KdWeight::Constant(w) => w,
            KdWeight::Cosine { start, end } => cos_anneal(start, end, t),
        }
    }
}

/// Trains a student against a frozen teacher: add it to [`fasterai_train::fit`]'s callbacks.
pub struct Distiller {
    teacher: Model,
    loss: KdLoss,
    weight: KdWeight,
    /// FitNet's 1×1 adapters (identity placeholders for pairs whose widths agree).
    adapters: Option<Graph>,
}

impl Distiller {
    /// `teacher` runs in evaluation mode on a plain device (no gradients reach it).
    pub fn new(teacher: Model, loss: KdLoss, weight: KdWeight) -> Self {
        Self {
            teacher,
            loss,
            weight,
            adapters: None,
        }
    }

    /// FitNet's learned 1×1 adapters (one per layer pair), once training has started.
    pub fn adapters(&self) -> Option<&Graph> {
        self.adapters.as_ref()
    }

    fn bad(reason: String) -> TrainError {
        TrainError::Config(reason)
    }
}

/// Output shape (without batch) of the layer at each path, for one input of `shape`.
fn feature_shapes(
    net: &Graph,
    shape: &[usize],
    paths: &[String],
    device: &Device,
) -> Vec<Vec<usize>> {
    let mut dims = vec![1];
    dims.extend(shape);
    let x = Tensor::<4>::zeros([dims[0], dims[1], dims[2], dims[3]], device);
    let (_, found) = net.valid().forward_capture(x, paths);
    found.iter().map(|a| a.dims()[1..].to_vec()).collect()
}

impl Callback for Distiller {
    fn before_fit(
        &mut self,
        net: &Graph,
        _input_shape: &[usize],
        _config: &TrainConfig,
    ) -> Result<()> {
        let device = self
            .teacher
            .net
            .devices()
            .first()
            .cloned()
            .ok_or_else(|| Self::bad("the teacher has no parameters".into()))?;
        let shape = self.teacher.input_shape.clone();
        if shape.len() != 3 {
            return Err(Self::bad(format!(
                "the teacher takes {shape:?}, not images"
            )));
        }
        let teacher_out = self.teacher.net.output_shape(&shape)?;
        let student_out = net.output_shape(&shape).map_err(|e| {
            Self::bad(format!(
                "the student cannot take the teacher's input {shape:?}: {e}"
            ))
        })?;
        if teacher_out != student_out {
            return Err(Self::bad(format!(
                "teacher and student disagree on the classes: the teacher outputs {teacher_out:?}, \
                 the student {student_out:?}"
            )));
        }
        let w = [self.weight.at(0.0), self.weight.at(1.0)];
        if w.iter().any(|w| !(0.0..=1.0).contains(w)) {
            return Err(Self::bad(format!(
                "the distillation weight must stay in [0, 1], got {w:?}"
            )));
        }
        if let KdLoss::SoftTarget { temperature } | KdLoss::Decoupled { temperature, .. } =
            self.loss
            && (temperature.is_nan() || temperature <= 0.0)
        {
            return Err(Self::bad(format!(
                "temperature {temperature} must be positive"
            )));
        }
        let pairs = self.loss.pairs();
        if matches!(
            self.loss,
            KdLoss::Attention { .. }
                | KdLoss::FitNet { .. }
                | KdLoss::Similarity { .. }
                | KdLoss::ActivationBoundaries { .. }
        ) && pairs.is_empty()
        {
            return Err(Self::bad(
                "feature losses need at least one student:teacher layer pair".into(),
            ));
        }
        for (s, t) in pairs {
            net.get(s)
                .ok_or_else(|| Self::bad(format!("the student has no layer `{s}`")))?;
            self.teacher
                .net
                .get(t)
                .ok_or_else(|| Self::bad(format!("the teacher has no layer `{t}`")))?;
        }
        let student_paths: Vec<String> = pairs.iter().map(|p| p.0.clone()).collect();
        let teacher_paths: Vec<String> = pairs.iter().map(|p| p.1.clone()).collect();
        let s_shapes = feature_shapes(&net.valid(), &shape, &student_paths, &device);
        let t_shapes = feature_shapes(&self.teacher.net, &shape, &teacher_paths, &device);
        let train_device = net
            .devices()
            .first()
            .cloned()
            .expect("the student has parameters");
        let mut adapters = Graph::default();
        for ((s, t), (ss, ts)) in pairs.iter().zip(s_shapes.iter().zip(&t_shapes)) {
            let same_size = ss.len() == 3 && ts.len() == 3 && ss[1..] == ts[1..];
            let ok = match &self.loss {
                KdLoss::Attention { .. } | KdLoss::FitNet { .. } => same_size,
                KdLoss::ActivationBoundaries { .. } => ss.len() == 3 && ss == ts,
                _ => true,
            };
            if !ok {
                return Err(Self::bad(format!(
                    "student `{s}` gives {ss:?} and teacher `{t}` gives {ts:?}: this loss needs {}",
                    if matches!(self.loss, KdLoss::ActivationBoundaries { .. }) {
                        "image features ([C, H, W]) of equal shapes"
                    } else {
                        "image features of the same height and width"
                    }
                )));
            }
            if let KdLoss::FitNet { .. } = self.loss {
                let spec = LayerSpec::conv(ss[0], ts[0], 1, 1);
                adapters.push(
                    adapters.nodes.len().to_string(),
                    Layer::from_spec(&spec, InitScheme::PyTorchDefault, &train_device),
                );
            }
        }
        self.adapters = matches!(self.loss, KdLoss::FitNet { .. }).then_some(adapters);
        self.teacher.net = self.teacher.net.valid();
        Ok(())
    }

    fn feature_paths(&self) -> Vec<String> {
        self.loss.pairs().iter().map(|p| p.0.clone()).collect()
    }

    fn after_loss(&mut self, ctx: &mut LossContext<'_>) {
        let x = ctx.images.clone().without_autodiff();
        let teacher_paths: Vec<String> = self.loss.pairs().iter().map(|p| p.1.clone()).collect();
        let (t_out, t_features) = self.teacher.net.forward_capture(x, &teacher_paths);
        let t_logits = t_out.flatten().autodiff();
        let s_logits = ctx.logits.clone();
        let spatial = |a: &Activation| a.clone().into_spatial().expect("checked in before_fit");
        let feature_pairs = || {
            ctx.features.iter().zip(t_features.iter().map(|a| {
                a.clone()
                    .map(|x| x.autodiff(), |x| x.autodiff(), |x| x.autodiff())
            }))
        };
        let kd = match &self.loss {
            KdLoss::SoftTarget { temperature } => {
                losses::soft_target(s_logits, t_logits, *temperature)
            }
            KdLoss::LogitMse => losses::logits_mse(s_logits, t_logits),
            KdLoss::MutualKl => losses::mutual_kl(s_logits, t_logits),
            KdLoss::Decoupled {
                alpha,
                beta,
                temperature,
            } => losses::decoupled(
                s_logits,
                t_logits,
                ctx.targets.clone(),
                *alpha,
                *beta,
                *temperature,
            ),
            KdLoss::Attention { p, .. } => {
                sum(feature_pairs()
                    .map(|(s, t)| losses::attention_transfer(spatial(s), spatial(&t), *p)))
                    * ATTENTION_BETA
            }
            KdLoss::FitNet { .. } => {
                let adapters = self.adapters.as_ref().expect("built in before_fit");
                sum(feature_pairs()
                    .zip(&adapters.nodes)
                    .map(|((s, t), adapter)| {
                        let adapted = adapter
                            .layer
                            .forward_one(s.clone())
                            .into_spatial()
                            .expect("a conv keeps images");
                        losses::fitnet(adapted, spatial(&t))
                    }))
            }
            KdLoss::Similarity { .. } => sum(feature_pairs()
                .map(|(s, t)| losses::similarity_preserving(s.clone().flatten(), t.flatten()))),
            KdLoss::ActivationBoundaries { margin, .. } => sum(feature_pairs()
                .map(|(s, t)| losses::activation_boundaries(spatial(s), spatial(&t), *margin))),
        };
        let w = self.weight.at(ctx.state.progress());
        ctx.loss = ctx.loss.clone() * (1.0 - w) + kd * w;
    }

    fn trainable(&mut self) -> Option<&mut Graph> {
        self.adapters.as_mut()
    }
}

fn sum(parts: impl Iterator<Item = Tensor<1>>) -> Tensor<1> {
    parts
        .reduce(|a, b| a + b)
        .expect("at least one pair, checked in before_fit")
}
