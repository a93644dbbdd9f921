//! The command line: `train` (the default) and `sample`.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use gan::models::ModelKind;
use gan::train::GeneratorLoss;

/// Train a GAN or a DCGAN on MNIST, and draw digits from a trained generator.
///
/// With no subcommand, `gan-mnist` trains (the options of `train` may be given directly):
/// with no options at all it trains the classic fully connected GAN for 30,000 iterations
/// and writes sample grids, an animation, the loss history and checkpoints into a new
/// directory `runs/mlp-NNN`.
#[derive(Debug, Parser)]
#[command(name = "gan-mnist", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; `train` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Options of `train`, for when the subcommand is omitted.
    #[command(flatten)]
    pub train: TrainArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a generator and a discriminator (the default).
    Train(TrainArgs),
    /// Write samples from a trained generator as an IDX file or a PNG grid.
    Sample(SampleArgs),
}

impl Cli {
    /// The subcommand to run, `train` with the top-level options when none was named.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Train(self.train))
    }
}

fn model_parser() -> impl TypedValueParser<Value = ModelKind> {
    PossibleValuesParser::new(["mlp", "dcgan"]).map(|s| s.parse().expect("listed values parse"))
}

fn g_loss_parser() -> impl TypedValueParser<Value = GeneratorLoss> {
    let names = ["non-saturating", "minimax"];
    PossibleValuesParser::new(names).map(|s| s.parse().expect("listed values parse"))
}

/// Options of `train`. Those that shape the training trajectory cannot be combined with
/// `--resume`, which takes them from the checkpoint.
#[derive(Clone, Debug, Default, Args)]
pub struct TrainArgs {
    /// Architecture: `mlp` is the classic Keras example, `dcgan` the convolutional GAN.
    /// [default: mlp]
    #[arg(long, value_name = "MODEL", value_parser = model_parser(), conflicts_with = "resume")]
    pub model: Option<ModelKind>,

    /// Total number of training iterations (one iteration: k discriminator steps and one
    /// generator step); with --resume, where the continued run stops.
    /// [default: 30000 for mlp, 3000 for dcgan]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub iters: Option<u64>,

    /// Real and generated images per minibatch. [default: 32 for mlp, 64 for dcgan]
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..),
        conflicts_with = "resume"
    )]
    pub batch_size: Option<u64>,

    /// Discriminator steps per generator step. [default: 1]
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..),
        conflicts_with = "resume"
    )]
    pub k: Option<u64>,

    /// Adam learning rate, for both networks. [default: 0.0001 for mlp, 0.0002 for dcgan]
    #[arg(
        long,
        value_name = "LR",
        allow_negative_numbers = true,
        conflicts_with = "resume"
    )]
    pub lr: Option<f64>,

    /// Adam β₁, the decay of the gradient average. [default: 0.5]
    #[arg(
        long,
        value_name = "BETA1",
        allow_negative_numbers = true,
        conflicts_with = "resume"
    )]
    pub beta1: Option<f64>,

    /// Length of the generator's noise vector. [default: 100]
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..),
        conflicts_with = "resume"
    )]
    pub noise_dim: Option<u64>,

    /// Generator objective: `non-saturating` maximises log D(G(z)); `minimax` minimises
    /// log(1 − D(G(z))) as in the original game. [default: non-saturating]
    #[arg(long, value_name = "LOSS", value_parser = g_loss_parser(), conflicts_with = "resume")]
    pub g_loss: Option<GeneratorLoss>,

    /// Iterations between sample grids and checkpoints. [default: 1000 for mlp, 250 for
    /// dcgan]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub save_interval: Option<u64>,

    /// Seed of the random generator behind the weights, the noise and the minibatches.
    /// [default: 42]
    #[arg(long, value_name = "SEED", conflicts_with = "resume")]
    pub seed: Option<u64>,

    /// Worker threads for the tensor kernels. [default: rayon's choice: RAYON_NUM_THREADS,
    /// else one per CPU]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub threads: Option<u64>,

    /// Directory holding the four MNIST files (gzipped or not). [default: $GAN_MNIST_DATA
    /// when set, else data/mnist]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Directory for the run's outputs; it must not exist or be empty. [default: a new
    /// runs/<model>-NNN]
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub out: Option<PathBuf>,

    /// Continue the run that wrote this checkpoint, in its directory, with the settings
    /// stored in it; the result is the same as an uninterrupted run.
    #[arg(long, value_name = "CHECKPOINT")]
    pub resume: Option<PathBuf>,
}

/// Options of `sample`.
#[derive(Clone, Debug, Args)]
pub struct SampleArgs {
    /// A checkpoint written by `train` (checkpoint.safetensors in a run directory).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,

    /// Number of images to generate.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub count: u64,

    /// Output file: `NAME.idx3-ubyte` writes MNIST's IDX format (0 = background,
    /// 255 = ink), `NAME.png` a grid of the images.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// Seed of the noise the images are generated from.
    #[arg(long, value_name = "SEED", default_value_t = 0)]
    pub seed: u64,

    /// Worker threads for the tensor kernels. [default: rayon's choice]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub threads: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        let argv = std::iter::once("gan-mnist").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(Cli::into_command)
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_arguments_means_train_with_defaults() {
        let Command::Train(args) = parse(&[]).unwrap() else {
            panic!("expected train")
        };
        assert_eq!(args.model, None);
        assert_eq!(args.resume, None);
    }

    #[test]
    fn train_options_work_with_and_without_the_subcommand() {
        let argv = ["--model", "dcgan", "--iters", "300", "--g-loss", "minimax"];
        let with: Vec<&str> = std::iter::once("train").chain(argv).collect();
        for args in [&argv[..], &with[..]] {
            let Command::Train(t) = parse(args).unwrap() else {
                panic!("expected train for {args:?}")
            };
            assert_eq!(t.model, Some(ModelKind::Dcgan));
            assert_eq!(t.iters, Some(300));
            assert_eq!(t.g_loss, Some(GeneratorLoss::Minimax));
        }
    }

    #[test]
    fn sample_takes_its_three_options() {
        let args = [
            "sample",
            "--checkpoint",
            "c.safetensors",
            "--count",
            "7",
            "--out",
            "x.png",
        ];
        let Command::Sample(s) = parse(&args).unwrap() else {
            panic!("expected sample")
        };
        assert_eq!((s.count, s.seed), (7, 0));
        assert_eq!(s.out, PathBuf::from("x.png"));
    }

    #[test]
    fn bad_values_are_rejected() {
        let cases: [&[&str]; 5] = [
            &["--model", "vae"],
            &["--g-loss", "wasserstein"],
            &["--iters", "0"],
            &["--lr", "fast"],
            &[
                "sample",
                "--checkpoint",
                "c",
                "--out",
                "x.png",
                "--count",
                "0",
            ],
        ];
        for args in cases {
            let err = parse(args).expect_err(&format!("{args:?} should fail"));
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::InvalidValue | ErrorKind::ValueValidation
                ),
                "{args:?}: {err}"
            );
        }
    }

    #[test]
    fn resume_refuses_settings_it_reads_from_the_checkpoint() {
        let err = parse(&["--resume", "c.safetensors", "--lr", "0.1"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        // Where the run stops may change.
        assert!(parse(&["--resume", "c.safetensors", "--iters", "9"]).is_ok());
    }

    #[test]
    fn top_level_options_conflict_with_a_subcommand() {
        assert!(parse(&[
            "--iters",
            "5",
            "sample",
            "--checkpoint",
            "c",
            "--out",
            "x.png"
        ])
        .is_err());
    }
}
