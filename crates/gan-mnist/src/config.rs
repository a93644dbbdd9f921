//! The resolved configuration of a run: every setting, with the model's defaults filled in.
//! It is written to `config.json` and stored in each checkpoint, which is where `--resume`
//! and `sample` read it from.

use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use gan::models::ModelKind;
use gan::train::{GeneratorLoss, TrainOptions};
use layers::checkpoint::Checkpoint;
use layers::AdamConfig;
use serde::{Deserialize, Serialize};

use crate::cli::TrainArgs;

/// The checkpoint metadata key holding the configuration as JSON.
pub const CONFIG_KEY: &str = "config";

/// Every setting of a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Architecture.
    pub model: ModelKind,
    /// Iteration at which training stops.
    pub iters: u64,
    /// Images per minibatch.
    pub batch_size: usize,
    /// Discriminator steps per generator step.
    pub k: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Adam β₁.
    pub beta1: f64,
    /// Noise vector length.
    pub noise_dim: usize,
    /// Generator objective.
    pub g_loss: GeneratorLoss,
    /// Iterations between grids and checkpoints.
    pub save_interval: u64,
    /// Seed of the training random generator.
    pub seed: u64,
    /// Worker threads used.
    pub threads: usize,
    /// MNIST directory.
    pub data_dir: PathBuf,
}

/// The defaults that differ between the models.
struct ModelDefaults {
    iters: u64,
    batch_size: u64,
    lr: f64,
    save_interval: u64,
}

fn defaults(model: ModelKind) -> ModelDefaults {
    match model {
        // The classic Keras example's settings.
        ModelKind::Mlp => ModelDefaults {
            iters: 30_000,
            batch_size: 32,
            lr: 1e-4,
            save_interval: 1000,
        },
        // The DCGAN paper's learning rate and batch size. At seed 42 the digits are shaky at
        // 1,000 iterations and clearly recognisable from about 2,000; 3,000 leaves a margin.
        ModelKind::Dcgan => ModelDefaults {
            iters: 3000,
            batch_size: 64,
            lr: 2e-4,
            save_interval: 250,
        },
    }
}

/// Default Adam β₁ for both models (the Keras example and the DCGAN paper agree).
const BETA1: f64 = 0.5;
/// Default noise length for both models.
const NOISE_DIM: u64 = 100;
/// Default seed.
const SEED: u64 = 42;

impl RunConfig {
    /// A new run's configuration: the flags given, the model's defaults for the rest.
    pub fn from_args(args: &TrainArgs, threads: usize, data_dir: PathBuf) -> Result<RunConfig> {
        let model = args.model.unwrap_or(ModelKind::Mlp);
        let d = defaults(model);
        let config = RunConfig {
            model,
            iters: args.iters.unwrap_or(d.iters),
            batch_size: to_usize(args.batch_size.unwrap_or(d.batch_size))?,
            k: to_usize(args.k.unwrap_or(1))?,
            lr: args.lr.unwrap_or(d.lr),
            beta1: args.beta1.unwrap_or(BETA1),
            noise_dim: to_usize(args.noise_dim.unwrap_or(NOISE_DIM))?,
            g_loss: args.g_loss.unwrap_or_default(),
            save_interval: args.save_interval.unwrap_or(d.save_interval),
            seed: args.seed.unwrap_or(SEED),
            threads,
            data_dir,
        };
        config.check()?;
        Ok(config)
    }

    /// The configuration stored in a checkpoint, with the settings a resume may change
    /// (where to stop, how often to save, threads, data directory) taken from `args`.
    pub fn resumed(
        ckpt: &Checkpoint,
        args: &TrainArgs,
        threads: usize,
        data_dir: Option<PathBuf>,
    ) -> Result<RunConfig> {
        let mut config = RunConfig::from_checkpoint(ckpt)?;
        config.iters = args.iters.unwrap_or(config.iters);
        config.save_interval = args.save_interval.unwrap_or(config.save_interval);
        config.threads = threads;
        config.data_dir = data_dir.unwrap_or(config.data_dir);
        config.check()?;
        Ok(config)
    }

    /// The configuration stored in a checkpoint's metadata.
    pub fn from_checkpoint(ckpt: &Checkpoint) -> Result<RunConfig> {
        let json = ckpt.metadata.get(CONFIG_KEY).with_context(|| {
            format!("the checkpoint has no `{CONFIG_KEY}` metadata: was it written by gan-mnist?")
        })?;
        serde_json::from_str(json)
            .with_context(|| format!("the checkpoint's `{CONFIG_KEY}` metadata is not valid"))
    }

    /// Checks what the flag parser cannot.
    fn check(&self) -> Result<()> {
        ensure!(
            self.lr > 0.0 && self.lr.is_finite(),
            "--lr {}: the learning rate must be positive",
            self.lr
        );
        ensure!(
            (0.0..1.0).contains(&self.beta1),
            "--beta1 {}: expected a value in [0, 1)",
            self.beta1
        );
        Ok(())
    }

    /// The loop's hyper-parameters.
    pub fn train_options(&self) -> TrainOptions {
        TrainOptions {
            batch_size: self.batch_size,
            k: self.k,
            adam: AdamConfig {
                lr: self.lr,
                beta1: self.beta1,
                ..AdamConfig::default()
            },
            g_loss: self.g_loss,
        }
    }

    /// As pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a RunConfig always serialises")
    }
}

fn to_usize(v: u64) -> Result<usize> {
    usize::try_from(v).with_context(|| format!("{v} is too large for this machine"))
}
