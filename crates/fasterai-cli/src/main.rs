//! `fasterai`: inspect, benchmark, import and run models, and (as the algorithm crates land)
//! compress them. Run `fasterai --help` or `fasterai <command> --help`.

mod commands;
mod data_arg;
mod files;
mod model_arg;
mod text;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Make trained neural networks smaller and faster.
///
/// MODEL arguments take a built-in architecture (vgg16_bn, vgg11_bn_small, resnet18, resnet20,
/// mobilenet_v2, mobilenet_v3_small, efficientnet_b0, …), a model file written by fasterai
/// (`.safetensors` with the architecture in its metadata), or an ONNX file (`.onnx`).
///
/// Examples:
///   fasterai inspect vgg16_bn --num-classes 10
///   fasterai bench vgg16_bn --num-classes 10 --input 3x32x32 --batch 1 --runs 20
///   fasterai import vgg16_bn --num-classes 10 --weights vgg16_bn.pth -o vgg16_bn.safetensors
///   fasterai import resnet18.onnx -o resnet18.safetensors
///   fasterai export pruned.safetensors -o pruned.onnx
///   fasterai predict vgg16_bn.safetensors --input x.npy --output y.npy
///   fasterai fold vgg16_bn.safetensors -o folded.safetensors
///   fasterai decompose folded.safetensors -o small.safetensors --fc 0.5
///   fasterai train vgg11_bn_small --width 0.25 --data cifar10:DIR --epochs 10 -o cifar.safetensors
///   fasterai eval cifar.safetensors --data cifar10:DIR
///   fasterai sparsify vgg16_bn --num-classes 10 --sparsity 0.4 --granularity filter -o sparse.safetensors
///   fasterai prune sparse.safetensors -o pruned.safetensors
///   fasterai quantize cifar.safetensors --data cifar10:DIR --calibration mse -o int8.safetensors
///   fasterai distill --teacher cifar.safetensors --student vgg11_bn_small --width 0.125 --data cifar10:DIR -o student.safetensors
#[derive(Parser)]
#[command(name = "fasterai", version, verbatim_doc_comment)]
struct Cli {
    /// Most memory one activation or input batch may take (e.g. 16G, 512M): files from
    /// strangers cannot make the tool allocate more. Weights are bounded by the file itself.
    #[arg(long, global = true, default_value = "32G", value_parser = fasterai::core::limits::parse_bytes)]
    max_memory: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Inspect(commands::inspect::Args),
    Bench(commands::bench::Args),
    Import(commands::import::Args),
    Export(commands::export::Args),
    Predict(commands::predict::Args),
    Generate(commands::generate::Args),
    Fold(commands::fold::Args),
    Decompose(commands::decompose::Args),
    Train(commands::train::Args),
    Eval(commands::eval::Args),
    Distill(commands::distill::Args),
    Sparsify(commands::sparsify::Args),
    Prune(commands::prune::Args),
    Quantize(commands::quantize::Args),
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    fasterai::core::limits::set_max_memory(cli.max_memory);
    let result = match cli.command {
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Import(args) => commands::import::run(args),
        Command::Export(args) => commands::export::run(args),
        Command::Predict(args) => commands::predict::run(args),
        Command::Generate(args) => commands::generate::run(args),
        Command::Fold(args) => commands::fold::run(args),
        Command::Decompose(args) => commands::decompose::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Distill(args) => commands::distill::run(args),
        Command::Sparsify(args) => commands::sparsify::run(args),
        Command::Prune(args) => commands::prune::run(args),
        Command::Quantize(args) => commands::quantize::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `fasterai inspect … | head` closes stdout early; `println!` then panics. Rust ignores
/// SIGPIPE, and restoring it needs `unsafe`, so the panic is recognised and the process ends
/// quietly, as other command-line tools do.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info)
    }));
}
