//! One training loop for plain training, distillation and sparsifying, extended through
//! [`Callback`]s at fastai's points: before a batch, after the loss, after the optimiser step,
//! after an epoch.
//!
//! Burn's `burn-train` `Learner` owns its loop and offers no point after the optimiser step
//! (where sparsifying re-applies its masks) and no way to change the loss from outside the
//! model (distillation), so the loop is written here. It uses Burn's autodiff, optimisers
//! (`Sgd` with momentum, `Adam`, `AdamW`) and cross-entropy; the metrics are a few lines in
//! [`crate::eval`].

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Int, Tensor};
use fasterai_core::graph::{Activation, Graph};
use fasterai_core::io::save_model;
use fasterai_core::model::Model;
use fasterai_core::schedule::LrSchedule;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::data::{Augment, ImageSet, Normalize};
use crate::eval::{EvalReport, evaluate};
use crate::resume::{self, CallbackState, Progress, RunKey, Snapshot, Templates};
use crate::{Result, TrainError};

/// The optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with (heavy-ball, undampened) momentum and L2 weight decay.
    Sgd {
        /// Momentum factor (0.9).
        momentum: f64,
        /// Weight decay (5e-4).
        weight_decay: f64,
    },
    /// Adam with L2 weight decay.
    Adam {
        /// Weight decay (0).
        weight_decay: f64,
    },
    /// AdamW (Loshchilov & Hutter 2019): Adam with weight decay decoupled from the gradient,
    /// what transformers are trained with.
    AdamW {
        /// Decoupled weight decay (0.05 for ViTs).
        weight_decay: f64,
    },
}

impl OptimizerKind {
    fn init(&self) -> ModuleOptimizer {
        match *self {
            OptimizerKind::Sgd {
                momentum,
                weight_decay,
            } => SgdConfig::new()
                .with_momentum(Some(MomentumConfig {
                    momentum,
                    dampening: 0.0,
                    nesterov: false,
                }))
                .with_weight_decay(
                    (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32)),
                )
                .init(),
            OptimizerKind::Adam { weight_decay } => AdamConfig::new()
                .with_weight_decay(
                    (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32)),
                )
                .init(),
            OptimizerKind::AdamW { weight_decay } => AdamWConfig::new()
                .with_weight_decay(weight_decay as f32)
                .init(),
        }
    }
}

/// How to train.
#[derive(Debug, Clone, Serialize)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per optimiser step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Learning-rate policy over the whole run.
    pub schedule: LrSchedule,
    /// Optimiser.
    pub optimizer: OptimizerKind,
    /// Training augmentation.
    pub augment: Augment,
    /// Seed of the weights' random draws (dropout), the shuffling and the augmentation.
    pub seed: u64,
    /// Save the returned model here whenever it changes.
    pub checkpoint: Option<PathBuf>,
    /// Return the best epoch's model (by validation accuracy); `false`: the last epoch's (when
    /// the model changes structure during training, as when sparsifying on a schedule).
    pub keep_best: bool,
    /// Draw a progress bar per epoch (on a terminal).
    pub progress: bool,
    /// Write the state a run resumes from (weights, optimiser, callbacks, history) to this
    /// folder after every epoch.
    pub state_dir: Option<PathBuf>,
    /// Continue from the state in `state_dir` when a previous run of the same settings left
    /// one there (a run with nothing to resume starts from the first epoch).
    pub resume: bool,
}

impl Default for TrainConfig {
    /// One-cycle SGD (momentum 0.9, weight decay 5e-4) at 0.05, batches of 128, crop + flip.
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 128,
            lr: 0.05,
            schedule: LrSchedule::one_cycle(),
            optimizer: OptimizerKind::Sgd {
                momentum: 0.9,
                weight_decay: 5e-4,
            },
            augment: Augment { pad: 4, flip: true },
            seed: 0,
            checkpoint: None,
            keep_best: true,
            progress: true,
            state_dir: None,
            resume: false,
        }
    }
}

/// Where training stands, as callbacks see it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TrainState {
    /// Current epoch (0-based).
    pub epoch: usize,
    /// Optimiser steps done so far.
    pub step: usize,
    /// All optimiser steps of the run.
    pub total_steps: usize,
    /// Learning rate of the current step.
    pub lr: f64,
}

impl TrainState {
    /// Training progress in [0, 1] (fraction of the steps done).
    pub fn progress(&self) -> f64 {
        self.step as f64 / self.total_steps.max(1) as f64
    }
}

/// A batch after the forward pass, with the loss a callback may replace.
pub struct LossContext<'a> {
    /// The model being trained (autodiff device).
    pub net: &'a Graph,
    /// The normalised input images.
    pub images: &'a Tensor<4>,
    /// The class indices.
    pub targets: &'a Tensor<1, Int>,
    /// The model's output.
    pub logits: &'a Tensor<2>,
    /// Outputs of the layers callbacks asked for in [`Callback::feature_paths`], in that order.
    pub features: &'a [Activation],
    /// The task loss (cross-entropy) on entry; what is optimised on exit.
    pub loss: Tensor<1>,
    /// Where training stands.
    pub state: TrainState,
}

/// Hooks into the training loop. Every method has a do-nothing default.
pub trait Callback {
    /// Called once before training, with the model on the training device and the shape of
    /// one input (no batch): check paths, build adapters. Errors stop training before it
    /// starts.
    fn before_fit(
        &mut self,
        _net: &Graph,
        _input_shape: &[usize],
        _config: &TrainConfig,
    ) -> Result<()> {
        Ok(())
    }

    /// Layer paths whose outputs this callback needs in [`LossContext::features`].
    fn feature_paths(&self) -> Vec<String> {
        Vec::new()
    }

    /// Before the forward pass of each batch.
    fn before_batch(&mut self, _net: &mut Graph, _state: &TrainState) {}

    /// After the task loss is computed: change `ctx.loss` to change what is optimised.
    fn after_loss(&mut self, _ctx: &mut LossContext<'_>) {}

    /// After each optimiser step (sparsifying re-applies its masks here).
    fn after_step(&mut self, _net: &mut Graph, _state: &TrainState) {}

    /// After each epoch's validation.
    fn after_epoch(&mut self, _net: &mut Graph, _record: &EpochRecord) {}

    /// Modules owned by the callback that train with the model (a FitNet adapter): the
    /// callback's own parameters, updated with the same optimiser settings (and saved with the
    /// run's state for [`TrainConfig::resume`]).
    fn trainable(&mut self) -> Option<&mut Graph> {
        None
    }

    /// What a resumed run needs to continue where this callback stood after the last epoch
    /// (masks, schedule position); written with the run's state after every epoch.
    fn state(&self) -> CallbackState {
        CallbackState::default()
    }

    /// Continues from [`Callback::state`], after [`Callback::before_fit`], when a run resumes.
    fn restore(&mut self, _state: CallbackState) -> Result<()> {
        Ok(())
    }
}

/// What one epoch measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Mean training loss (as optimised, after callbacks).
    pub train_loss: f64,
    /// Validation result.
    pub valid: EvalReport,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Seconds spent training (without validation).
    pub train_seconds: f64,
    /// Training throughput.
    pub train_images_per_second: f64,
    /// Seconds spent validating.
    pub valid_seconds: f64,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    /// One record per epoch.
    pub epochs: Vec<EpochRecord>,
    /// Best validation accuracy and its epoch.
    pub best: (f64, usize),
    /// Validation accuracy and epoch of the model returned (the best, or the last).
    pub kept: (f64, usize),
    /// Wall time of the whole run, seconds.
    pub seconds: f64,
}

/// Trains `model` on `train`, validating on `valid` after every epoch; returns the model of
/// the best epoch (by validation accuracy; or the last, see [`TrainConfig::keep_best`]), on
/// `device`, in evaluation mode.
pub fn fit(
    model: &Model,
    train: &ImageSet,
    valid: &ImageSet,
    normalize: &Normalize,
    config: &TrainConfig,
    callbacks: &mut [&mut dyn Callback],
    device: &Device,
) -> Result<(Model, History)> {
    check_data(model, train, valid)?;
    if config.epochs == 0 || config.batch_size == 0 || config.lr.is_nan() || config.lr <= 0.0 {
        return Err(TrainError::Config(format!(
            "epochs ({}), batch size ({}) and learning rate ({}) must be positive",
            config.epochs, config.batch_size, config.lr
        )));
    }
    if config.resume && config.state_dir.is_none() {
        return Err(TrainError::Config(
            "resuming needs the folder the state was written to (TrainConfig::state_dir)".into(),
        ));
    }
    let start = Instant::now();
    let ad = device.clone().autodiff();
    ad.seed(config.seed);
    let mut net = model.net.clone().fork(&ad).train();
    for cb in callbacks.iter_mut() {
        cb.before_fit(&net, &model.input_shape, config)?;
    }
    let paths: Vec<Vec<String>> = callbacks.iter().map(|c| c.feature_paths()).collect();
    let all_paths: Vec<String> = paths.concat();
    let mut optim = config.optimizer.init();
    let mut extra_optims: Vec<ModuleOptimizer> =
        callbacks.iter().map(|_| config.optimizer.init()).collect();
    let cross_entropy = CrossEntropyLossConfig::new().init(&ad);
    let steps_per_epoch = train.len().div_ceil(config.batch_size);
    let mut state = TrainState {
        epoch: 0,
        step: 0,
        total_steps: steps_per_epoch * config.epochs,
        lr: config.lr,
    };
    let mut history = History {
        epochs: Vec::new(),
        best: (f64::NEG_INFINITY, 0),
        kept: (f64::NEG_INFINITY, 0),
        seconds: 0.0,
    };
    let mut best = None;
    let key = RunKey::new(&model.name, &net, train.len(), config, callbacks.len());
    let mut first_epoch = 0;
    if let (true, Some(dir)) = (config.resume, &config.state_dir) {
        let templates = Templates {
            net: net.clone(),
            optim: config.optimizer.init(),
            trainables: callbacks
                .iter_mut()
                .map(|cb| cb.trainable().map(|m| (m.clone(), config.optimizer.init())))
                .collect(),
            kept: model.net.clone(),
        };
        match resume::load(dir, &key, templates)? {
            Some(resumed) => {
                net = resumed.net;
                optim = resumed.optim;
                for ((cb, opt), trainable) in callbacks
                    .iter_mut()
                    .zip(&mut extra_optims)
                    .zip(resumed.trainables)
                {
                    if let (Some(module), Some((saved, saved_optim))) = (cb.trainable(), trainable)
                    {
                        *module = saved;
                        *opt = saved_optim;
                    }
                }
                for (cb, saved) in callbacks.iter_mut().zip(resumed.callbacks) {
                    cb.restore(saved)?;
                }
                let progress = resumed.progress;
                first_epoch = progress.epochs_done;
                state.step = first_epoch * steps_per_epoch;
                history.epochs = progress.records;
                history.best = progress.best;
                if let Some(kept) = progress.kept {
                    history.kept = kept;
                }
                best = resumed.kept.map(|net| Model {
                    name: model.name.clone(),
                    input_shape: model.input_shape.clone(),
                    net,
                    quantized: model.quantized.clone(),
                    text: model.text.clone(),
                });
                if config.progress {
                    eprintln!(
                        "resuming after epoch {first_epoch}/{} from {}",
                        config.epochs,
                        dir.display()
                    );
                }
            }
            None if config.progress => eprintln!(
                "nothing to resume in {}: starting from the first epoch",
                dir.display()
            ),
            None => {}
        }
    }
    for epoch in first_epoch..config.epochs {
        state.epoch = epoch;
        // Seeded per epoch (dropout draws), so a resumed run draws what an uninterrupted one does.
        ad.seed(config.seed.wrapping_add(epoch as u64 * 104_729));
        let bar = progress_bar(config.progress, steps_per_epoch, epoch, config.epochs);
        let epoch_start = Instant::now();
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        let seed = config.seed.wrapping_add(epoch as u64 * 7919);
        for batch in train.shuffled_batches(config.batch_size, normalize, config.augment, seed, &ad)
        {
            state.lr = config.schedule.at(config.lr, state.progress());
            for cb in callbacks.iter_mut() {
                cb.before_batch(&mut net, &state);
            }
            let (out, features) = net.forward_capture(batch.images.clone(), &all_paths);
            let logits = out.flatten();
            let task = cross_entropy.forward(logits.clone(), batch.targets.clone());
            let mut ctx = LossContext {
                net: &net,
                images: &batch.images,
                targets: &batch.targets,
                logits: &logits,
                features: &[],
                loss: task,
                state,
            };
            let mut offset = 0;
            for (cb, own) in callbacks.iter_mut().zip(&paths) {
                ctx.features = &features[offset..offset + own.len()];
                offset += own.len();
                cb.after_loss(&mut ctx);
            }
            let loss = ctx.loss;
            let value: f32 = loss.clone().into_scalar();
            if !value.is_finite() {
                return Err(TrainError::Diverged {
                    epoch,
                    step: state.step,
                    lr: state.lr,
                });
            }
            let mut grads = loss.backward();
            let params = GradientsParams::from_module(&mut grads, &net);
            net = optim.step(state.lr, net, params);
            for (cb, opt) in callbacks.iter_mut().zip(&mut extra_optims) {
                if let Some(module) = cb.trainable() {
                    let params = GradientsParams::from_module(&mut grads, &*module);
                    *module = opt.step(state.lr, module.clone(), params);
                }
            }
            state.step += 1;
            for cb in callbacks.iter_mut() {
                cb.after_step(&mut net, &state);
            }
            let n = batch.labels.len();
            loss_sum += value as f64 * n as f64;
            seen += n;
            bar.set_message(format!("loss {:.4}", loss_sum / seen as f64));
            bar.inc(1);
        }
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let eval_start = Instant::now();
        let eval_net = net.valid();
        let report = evaluate(&eval_net, valid, normalize, 256, device)?;
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            lr: state.lr,
            train_seconds,
            train_images_per_second: seen as f64 / train_seconds,
            valid_seconds: eval_start.elapsed().as_secs_f64(),
            valid: report,
        };
        bar.finish_and_clear();
        if config.progress {
            eprintln!(
                "epoch {:>3}/{}  train loss {:.4}  valid loss {:.4}  accuracy {:.2} %  ({:.0} s, {:.0} img/s)",
                epoch + 1,
                config.epochs,
                record.train_loss,
                record.valid.loss,
                100.0 * record.valid.accuracy,
                record.train_seconds + record.valid_seconds,
                record.train_images_per_second
            );
        }
        for cb in callbacks.iter_mut() {
            cb.after_epoch(&mut net, &record);
        }
        let improved = record.valid.accuracy > history.best.0;
        if improved {
            history.best = (record.valid.accuracy, epoch);
        }
        let keep = if config.keep_best {
            improved
        } else {
            epoch + 1 == config.epochs
        };
        if keep {
            history.kept = (record.valid.accuracy, epoch);
            let snapshot = Model {
                name: model.name.clone(),
                input_shape: model.input_shape.clone(),
                net: eval_net.fork(device),
                quantized: model.quantized.clone(),
                text: model.text.clone(),
            };
            if let Some(path) = &config.checkpoint {
                save_model(&snapshot, path, true)?;
            }
            best = Some(snapshot);
        }
        history.epochs.push(record);
        if let Some(dir) = &config.state_dir {
            let progress = Progress {
                run: key.clone(),
                epochs_done: epoch + 1,
                records: history.epochs.clone(),
                best: history.best,
                kept: history.kept.0.is_finite().then_some(history.kept),
                checksums: Default::default(),
            };
            let snapshot = Snapshot {
                net: &net,
                optim: &optim,
                trainables: callbacks
                    .iter_mut()
                    .zip(&extra_optims)
                    .map(|(cb, opt)| cb.trainable().map(|m| (m.clone(), opt)))
                    .collect(),
                callbacks: callbacks.iter().map(|cb| cb.state()).collect(),
                kept: keep.then(|| &best.as_ref().expect("kept above").net),
            };
            resume::save(dir, &progress, &snapshot)?;
        }
    }
    history.seconds = start.elapsed().as_secs_f64();
    let best = best.ok_or_else(|| {
        TrainError::Config("no epoch ran, so there is no model to return (epochs = 0?)".into())
    })?;
    Ok((best, history))
}

/// Clear errors before any training: images that do not fit the model, or a model whose
/// output size differs from the number of classes.
pub fn check_data(model: &Model, train: &ImageSet, valid: &ImageSet) -> Result<()> {
    for (name, set) in [("training", train), ("validation", valid)] {
        if set.is_empty() {
            return Err(TrainError::Config(format!("the {name} set is empty")));
        }
        if set.shape().as_slice() != model.input_shape.as_slice() {
            return Err(TrainError::Config(format!(
                "the {name} images are {:?} but model `{}` takes {:?}; build the model for this \
                 data's image shape",
                set.shape(),
                model.name,
                model.input_shape
            )));
        }
    }
    let out = model.net.output_shape(&model.input_shape)?;
    let classes = train.classes().len();
    if out != [classes] {
        return Err(TrainError::Config(format!(
            "model `{}` outputs {out:?} but the data has {classes} classes; use --num-classes \
             {classes}",
            model.name
        )));
    }
    if valid.classes() != train.classes() {
        return Err(TrainError::Config(
            "the training and validation sets have different classes".into(),
        ));
    }
    Ok(())
}

fn progress_bar(show: bool, len: usize, epoch: usize, epochs: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} {bar:30} {pos}/{len} batches {msg} [{elapsed} < {eta}]",
        )
        .expect("valid template"),
    );
    bar.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
    bar
}
