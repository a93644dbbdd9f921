//! The `sample` subcommand: images from a checkpoint's generator, in evaluation mode.

use anyhow::{Context, Result};
use gan::samples::{write_samples, SampleFormat};
use layers::checkpoint;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::cli::SampleArgs;
use crate::config::RunConfig;

/// Images generated per forward pass, to bound memory for large counts.
const CHUNK: usize = 256;

/// Runs `sample`: loads the generator, draws `count` images and writes them to `out`.
pub fn sample(args: SampleArgs) -> Result<()> {
    // A bad output name fails before any work is done.
    SampleFormat::from_path(&args.out)?;
    let count = usize::try_from(args.count).context("--count is too large for this machine")?;

    let ckpt = checkpoint::load(&args.checkpoint)?;
    let context = || format!("cannot sample from {}", args.checkpoint.display());
    let config = RunConfig::from_checkpoint(&ckpt).with_context(context)?;
    let gan = crate::run::new_trainer(&config).gan;
    gan.restore_generator(&ckpt).with_context(context)?;

    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let images = gan.generate_many(count, CHUNK, &mut rng);
    let (rows, cols) = (gan.sample_shape[1], gan.sample_shape[2]);
    write_samples(&args.out, &images, count, rows, cols)?;

    let iteration = ckpt.metadata.get("iteration").map_or("?", String::as_str);
    println!(
        "wrote {count} samples from {} (iteration {iteration}) to {}",
        args.checkpoint.display(),
        args.out.display()
    );
    Ok(())
}
