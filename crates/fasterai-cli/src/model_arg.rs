//! The MODEL argument shared by every command: a built-in name or a model file.

use std::path::Path;

use anyhow::{Context, Result, bail};
use fasterai::core::device::parse_device;
use fasterai::core::graph::Graph;
use fasterai::core::io::load_model;
use fasterai::core::model::Model;
use fasterai::infer::{Inference, Isa, PathChoice};
use fasterai::models::{BUILTIN_HELP, Builtin};
use fasterai::prelude::Device;

/// `3x224x224` → `[3, 224, 224]`.
pub fn parse_shape(s: &str) -> Result<[usize; 3], String> {
    let dims: Vec<usize> = s
        .split(['x', 'X', '×', ','])
        .map(|d| d.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("`{s}` is not a shape like 3x224x224"))?;
    match dims[..] {
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
        _ => Err(format!(
            "`{s}` must be three positive sizes CxHxW, like 3x224x224"
        )),
    }
}

/// Compression steps change weights: they take float models (quantization comes last).
pub fn require_float(model: &Model, step: &str) -> Result<()> {
    if model.is_quantized() {
        bail!(
            "`{}` is quantized; `{step}` changes weights and works on float models: {step} the \
             float model, then quantize the result",
            model.name
        );
    }
    Ok(())
}

/// Options that pick and shape a model.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// A built-in architecture (vgg16_bn, vgg11_small, resnet18, resnet20, mobilenet_v2,
    /// vit_b_16, vit_cifar, …), a fasterai model file, or an ONNX file.
    #[arg(value_name = "MODEL")]
    pub model: String,
    /// Number of classes of a built-in model [default: 1000, or 10 for `_small` and CIFAR
    /// models (ResNet-20/56, vit_cifar)].
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// Channel multiplier of a built-in VGG or mobilenet_v2 (0.25 keeps a quarter).
    #[arg(long)]
    pub width: Option<f64>,
}

/// Where a command writes its model file.
#[derive(clap::Args, Debug, Clone)]
pub struct OutputArgs {
    /// Model file to write.
    #[arg(short, long)]
    pub output: std::path::PathBuf,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    pub force: bool,
}

impl OutputArgs {
    /// Fails early (before any work) if OUTPUT is one of `inputs` or exists without --force.
    pub fn check(&self, inputs: &[&Path]) -> Result<()> {
        crate::files::refuse_overwrite(&self.output, inputs, self.force)
    }

    /// The same checks for a second file the command writes (e.g. `--history`): never over an
    /// input or OUTPUT, and an existing file only with --force.
    pub fn check_also(&self, extra: Option<&Path>, inputs: &[&Path]) -> Result<()> {
        let Some(extra) = extra else {
            return Ok(());
        };
        if extra == self.output {
            bail!(
                "--history and the model output are both {}; give --history another file",
                extra.display()
            );
        }
        let mut protect = inputs.to_vec();
        protect.push(&self.output);
        crate::files::refuse_overwrite(extra, &protect, self.force)
    }

    /// Saves `model` to OUTPUT, atomically.
    pub fn save(&self, model: &Model) -> Result<()> {
        Ok(fasterai::core::io::save_model(
            model,
            &self.output,
            self.force,
        )?)
    }
}

/// Options that pick a device.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Backend: flex, wgpu, vulkan, cuda[:N], tch, tch-cuda[:N] (each needs its cargo feature).
    #[arg(long, default_value = "flex")]
    pub device: String,
}

/// How `bench`, `predict` and `eval` run the model.
#[derive(clap::Args)]
pub struct InferenceArgs {
    /// Run the graph exactly as built, one Burn op per node, instead of prepared by the CPU
    /// engine (on flex: fused convolutions by GEMM, Winograd or a depthwise loop, chosen per
    /// layer by timing them; equal up to float rounding). `FASTERAI_CONV=gemm|winograd|
    /// depthwise|rules` forces the engine's convolution path, `FASTERAI_ISA=baseline|avx2|avx512`
    /// the instruction set of its own loops (default: the widest the CPU has).
    #[arg(long)]
    pub plain: bool,
    /// Threads for the CPU kernels [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
}

impl InferenceArgs {
    /// Sets the kernels' thread count (`--threads`); call first, before anything uses rayon's
    /// pool (loading a model file does).
    pub fn init_threads(&self) -> Result<()> {
        if let Some(threads) = self.threads {
            anyhow::ensure!(threads > 0, "--threads must be at least 1");
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build_global()
                .map_err(|e| anyhow::anyhow!("--threads {threads}: {e}"))?;
        }
        Ok(())
    }

    /// Checks `FASTERAI_CONV` and `FASTERAI_ISA`, then prepares `net` (or wraps it, with
    /// `--plain`).
    pub fn prepare(&self, net: Graph, device: &Device) -> Result<Inference> {
        let choice = PathChoice::from_env().map_err(anyhow::Error::msg)?;
        Isa::from_env().map_err(anyhow::Error::msg)?;
        Ok(if self.plain {
            Inference::plain(net)
        } else {
            Inference::with_choice(net, device, choice)
        })
    }
}

impl DeviceArgs {
    pub fn device(&self) -> Result<Device> {
        Ok(parse_device(&self.device)?)
    }
}

impl ModelArgs {
    /// The built-in model this names, or `None` for a file. `input` overrides the default
    /// input shape (3x224x224, or 3x32x32 for `_small` VGGs and CIFAR ResNets).
    pub fn builtin(&self, input: Option<[usize; 3]>) -> Result<Option<Builtin>> {
        if Path::new(&self.model).is_file() {
            if self.num_classes.is_some() || self.width.is_some() {
                bail!(
                    "--num-classes and --width apply to built-in models, not to the file {}",
                    self.model
                );
            }
            return Ok(None);
        }
        let mut builtin: Builtin = self.model.parse().map_err(|_| {
            anyhow::anyhow!(
                "`{}` is neither an existing model file nor a built-in model ({BUILTIN_HELP})",
                self.model
            )
        })?;
        if let Some(n) = self.num_classes {
            builtin = builtin.with_num_classes(n);
        }
        if let Some(w) = self.width {
            builtin = builtin.with_width(w)?;
        }
        if let Some(shape) = input {
            builtin = builtin.with_input_shape(shape);
        }
        Ok(Some(builtin))
    }

    /// Builds (built-in, fresh weights) or loads (file) the model on `device`, for samples of
    /// shape `input` if given.
    pub fn load(&self, input: Option<[usize; 3]>, device: &Device) -> Result<Model> {
        match self.builtin(input)? {
            Some(config) => Ok(config.init(device)?),
            None => {
                let path = Path::new(&self.model);
                let mut model = if crate::commands::import::is_onnx(path) {
                    fasterai::onnx::import_file(path, &Default::default(), device)
                        .with_context(|| format!("importing {}", self.model))?
                } else {
                    load_model(path, device).with_context(|| format!("loading {}", self.model))?
                };
                if let Some(shape) = input {
                    model
                        .net
                        .output_shape(&shape)
                        .context("the model cannot take that --input shape")?;
                    model.input_shape = shape.to_vec();
                }
                Ok(model)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse() {
        assert_eq!(parse_shape("3x224x224"), Ok([3, 224, 224]));
        assert_eq!(parse_shape("1×28×28"), Ok([1, 28, 28]));
        assert!(parse_shape("3x224").is_err());
        assert!(parse_shape("0x2x2").is_err());
        assert!(parse_shape("axbxc").is_err());
    }
}
