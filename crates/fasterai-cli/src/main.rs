//! `fasterai`: inspect, benchmark, import and run models, and (as the algorithm crates land)
//! compress them. Run `fasterai --help` or `fasterai <command> --help`.

mod commands;
mod files;
mod model_arg;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Make trained neural networks smaller and faster.
///
/// MODEL arguments take either a built-in architecture (vgg11, vgg13, vgg16, vgg19, with
/// optional `_bn` and `_small` suffixes, e.g. vgg16_bn) or a model file written by fasterai
/// (`.safetensors` with the architecture in its metadata).
///
/// Examples:
///   fasterai inspect vgg16_bn --num-classes 10
///   fasterai bench vgg16_bn --num-classes 10 --input 3x32x32 --batch 1 --runs 20
///   fasterai import vgg16_bn --num-classes 10 --weights vgg16_bn.pth -o vgg16_bn.safetensors
///   fasterai predict vgg16_bn.safetensors --input x.npy --output y.npy
///   fasterai fold vgg16_bn.safetensors -o folded.safetensors
///   fasterai decompose folded.safetensors -o small.safetensors --fc 0.5
#[derive(Parser)]
#[command(name = "fasterai", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Inspect(commands::inspect::Args),
    Bench(commands::bench::Args),
    Import(commands::import::Args),
    Predict(commands::predict::Args),
    Fold(commands::fold::Args),
    Decompose(commands::decompose::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Import(args) => commands::import::run(args),
        Command::Predict(args) => commands::predict::run(args),
        Command::Fold(args) => commands::fold::run(args),
        Command::Decompose(args) => commands::decompose::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
