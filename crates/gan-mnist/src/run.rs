//! The `train` subcommand: a run directory, the training loop with its progress bar, and
//! the outputs written at every save interval.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use autograd::Tensor;
use gan::history::History;
use gan::images::{gif_from_pngs, grid_png, sorted_pngs};
use gan::mnist::{default_data_dir, Mnist};
use gan::train::{MnistBatches, TrainError, Trainer};
use indicatif::{ProgressBar, ProgressStyle};
use layers::checkpoint;

use crate::cli::TrainArgs;
use crate::config::{RunConfig, CONFIG_KEY};
use crate::summary::summary;

/// File names inside a run directory.
pub const CHECKPOINT: &str = "checkpoint.safetensors";
const HISTORY_CSV: &str = "history.csv";
const HISTORY_SVG: &str = "history.svg";
const CONFIG_JSON: &str = "config.json";
const SAMPLES_DIR: &str = "samples";
const SAMPLES_GIF: &str = "samples.gif";

/// Each sample grid is 10 × 10 digits from the same fixed noise.
const GRID_SIDE: usize = 10;
/// Each grid pixel is drawn as a 2 × 2 block.
const GRID_SCALE: usize = 2;
/// Frame time of the animation, in hundredths of a second.
const GIF_DELAY_CS: u16 = 25;
/// Exit status after Ctrl-C, the shell's convention for SIGINT.
const INTERRUPTED: u8 = 130;

/// A run in progress: its directory, configuration, trainer and history so far.
struct Run {
    dir: PathBuf,
    config: RunConfig,
    trainer: Trainer,
    history: History,
    fixed_noise: Tensor,
}

/// Runs `train`; returns the process's exit status.
pub fn train(args: TrainArgs) -> Result<ExitCode> {
    let threads = rayon::current_num_threads();
    let (mut run, mnist) = match &args.resume {
        Some(ckpt) => resume(ckpt, &args, threads)?,
        None => start(&args, threads)?,
    };
    if run.trainer.iteration() >= run.config.iters {
        println!(
            "{}: already at iteration {} of {}; nothing to do",
            run.dir.display(),
            run.trainer.iteration(),
            run.config.iters
        );
        return Ok(ExitCode::SUCCESS);
    }

    print_summaries(&run);
    write_text(&run.dir.join(CONFIG_JSON), &run.config.to_json())?;
    if run.trainer.iteration() == 0 {
        write_grid(&run)?;
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            // A second Ctrl-C while the checkpoint is written: give up at once.
            std::process::exit(i32::from(INTERRUPTED));
        }
    })
    .context("cannot install the Ctrl-C handler")?;

    train_loop(&mut run, &mnist, &interrupted)
}

/// Trains until the configured iteration or Ctrl-C, saving at every save interval.
fn train_loop(run: &mut Run, mnist: &Mnist, interrupted: &AtomicBool) -> Result<ExitCode> {
    let start_iter = run.trainer.iteration();
    let bar = progress_bar(start_iter, run.config.iters);
    let mut data = MnistBatches::new(mnist);
    let started = Instant::now();

    while run.trainer.iteration() < run.config.iters {
        if interrupted.load(Ordering::SeqCst) {
            bar.abandon();
            save(run, false)?;
            let ckpt = run.dir.join(CHECKPOINT);
            println!(
                "interrupted at iteration {}; saved {}. Continue with --resume {}",
                run.trainer.iteration(),
                ckpt.display(),
                ckpt.display()
            );
            return Ok(ExitCode::from(INTERRUPTED));
        }

        let record = match run.trainer.step(&mut data) {
            Ok(record) => record,
            Err(e @ TrainError::NonFinite { .. }) => {
                bar.abandon();
                return Err(diverged(run, e));
            }
            Err(e) => return Err(e.into()),
        };
        bar.set_message(format!(
            "D loss {:.3}  G loss {:.3}  D acc {:3.0}%",
            record.d_loss,
            record.g_loss,
            100.0 * record.d_acc
        ));
        bar.inc(1);
        let iter = record.iter;
        run.history.push(record);

        if iter % run.config.save_interval == 0 || iter == run.config.iters {
            save(run, true)?;
            let rate = (iter - start_iter) as f64 / started.elapsed().as_secs_f64();
            bar.suspend(|| println!("{}", progress_line(run, rate)));
        }
    }
    bar.finish_and_clear();

    let done = run.trainer.iteration() - start_iter;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "trained {} {} iterations in {} ({:.1} it/s); outputs in {}",
        done,
        run.config.model,
        format_duration(started.elapsed()),
        done as f64 / secs.max(1e-9),
        run.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The error for a diverged run, pointing at the checkpoint left in place.
fn diverged(run: &Run, e: TrainError) -> anyhow::Error {
    let ckpt = run.dir.join(CHECKPOINT);
    let kept = match ckpt.is_file() {
        true => format!("the last good checkpoint, {}, was kept", ckpt.display()),
        false => "no checkpoint had been written yet".to_string(),
    };
    anyhow::Error::new(e).context(format!("training stopped: {kept}"))
}

fn progress_bar(position: u64, len: u64) -> ProgressBar {
    let template = "{elapsed_precise} [{bar:30}] {pos}/{len} {per_sec:.dim} ETA {eta} | {msg}";
    let style = ProgressStyle::with_template(template)
        .expect("the template is valid")
        .progress_chars("=> ");
    let bar = ProgressBar::new(len).with_style(style);
    // Moving first and resetting after keeps a resumed run's jump out of the rate.
    bar.set_position(position);
    bar.reset_eta();
    bar
}

/// A line for logs at each save (the bar is invisible when stderr is not a terminal), with
/// the mean rate since this process started training.
fn progress_line(run: &Run, rate: f64) -> String {
    let r = run
        .history
        .records
        .last()
        .expect("a record was just pushed");
    format!(
        "iter {:>6}/{}  D loss {:.3}  G loss {:.3}  D acc {:3.0}%  D(x) {:.2}  D(G(z)) {:.2}  \
         {:.1} it/s",
        r.iter,
        run.config.iters,
        r.d_loss,
        r.g_loss,
        100.0 * r.d_acc,
        r.d_real,
        r.d_fake,
        rate
    )
}

/// The training images, named in the error when they cannot be read.
fn load_mnist(config: &RunConfig) -> Result<Mnist> {
    Mnist::load_train(&config.data_dir).context("cannot load the MNIST training set")
}

/// A new run: resolve the configuration, load the data, then create the directory (so that
/// a bad data directory leaves no empty run behind) and build the trainer.
fn start(args: &TrainArgs, threads: usize) -> Result<(Run, Mnist)> {
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let config = RunConfig::from_args(args, threads, data_dir)?;
    let mnist = load_mnist(&config)?;
    let dir = match &args.out {
        Some(dir) => create_empty_dir(dir)?,
        None => create_numbered_dir(Path::new("runs"), config.model.name())?,
    };
    fs::create_dir_all(dir.join(SAMPLES_DIR))
        .with_context(|| format!("cannot create {}", dir.join(SAMPLES_DIR).display()))?;

    let trainer = new_trainer(&config);
    let fixed_noise = trainer.fixed_noise(GRID_SIDE * GRID_SIDE);
    let run = Run {
        dir,
        config,
        trainer,
        history: History::new(),
        fixed_noise,
    };
    Ok((run, mnist))
}

/// The trainer of a fresh run: weights drawn from the seed.
pub fn new_trainer(config: &RunConfig) -> Trainer {
    let (model, noise_dim) = (config.model, config.noise_dim);
    Trainer::from_seed(config.seed, config.train_options(), |rng| {
        model.build(noise_dim, rng)
    })
}

/// Continues the run that wrote `ckpt_path`, in its directory.
fn resume(ckpt_path: &Path, args: &TrainArgs, threads: usize) -> Result<(Run, Mnist)> {
    let ckpt = checkpoint::load(ckpt_path)?;
    let config = RunConfig::resumed(&ckpt, args, threads, args.data_dir.clone())
        .with_context(|| format!("cannot resume from {}", ckpt_path.display()))?;
    let mut trainer = new_trainer(&config);
    trainer
        .restore(&ckpt)
        .with_context(|| format!("cannot resume from {}", ckpt_path.display()))?;

    let dir = match ckpt_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let csv = dir.join(HISTORY_CSV);
    let mut history = History::read_csv(&csv).with_context(|| {
        format!(
            "resuming needs the history beside the checkpoint, {}",
            csv.display()
        )
    })?;
    history.truncate_after(trainer.iteration());
    let have = history.records.len() as u64;
    if have != trainer.iteration() {
        bail!(
            "{} holds {have} records up to the checkpoint's iteration {}; expected one per \
             iteration",
            csv.display(),
            trainer.iteration()
        );
    }
    fs::create_dir_all(dir.join(SAMPLES_DIR))
        .with_context(|| format!("cannot create {}", dir.join(SAMPLES_DIR).display()))?;

    let mnist = load_mnist(&config)?;
    let fixed_noise = trainer.fixed_noise(GRID_SIDE * GRID_SIDE);
    let run = Run {
        dir,
        config,
        trainer,
        history,
        fixed_noise,
    };
    Ok((run, mnist))
}

/// Writes the run's outputs, the checkpoint last: it is the one a resume starts from, and
/// the history beside it is truncated to its iteration. `grid` adds this iteration's
/// sample grid (left out on Ctrl-C, so that an interrupted run's grids match an
/// uninterrupted one's).
fn save(run: &Run, grid: bool) -> Result<()> {
    if grid {
        write_grid(run)?;
    }
    let csv = run.dir.join(HISTORY_CSV);
    run.history
        .write_csv(&csv)
        .with_context(|| format!("cannot write {}", csv.display()))?;
    let title = format!(
        "{} GAN on MNIST, seed {}",
        run.config.model, run.config.seed
    );
    run.history.plot_svg(&run.dir.join(HISTORY_SVG), &title)?;

    let mut extra = BTreeMap::new();
    extra.insert(CONFIG_KEY.to_string(), run.config.to_json());
    run.trainer.save(&run.dir.join(CHECKPOINT), &extra)?;
    Ok(())
}

/// The 10 × 10 grid of the fixed noise at the current iteration, and the animation of all
/// grids so far.
fn write_grid(run: &Run) -> Result<()> {
    let gan = &run.trainer.gan;
    let images = gan.generate(&run.fixed_noise);
    let (rows, cols) = (gan.sample_shape[1], gan.sample_shape[2]);
    let name = format!("iter_{:06}.png", run.trainer.iteration());
    let samples = run.dir.join(SAMPLES_DIR);
    let n = GRID_SIDE * GRID_SIDE;
    grid_png(
        &samples.join(name),
        &images.data(),
        n,
        rows,
        cols,
        GRID_SIDE,
        GRID_SCALE,
    )?;

    let pngs = sorted_pngs(&samples)?;
    gif_from_pngs(&run.dir.join(SAMPLES_GIF), &pngs, GIF_DELAY_CS)?;
    Ok(())
}

fn print_summaries(run: &Run) {
    let gan = &run.trainer.gan;
    let model = run.config.model;
    let title = format!("Generator ({model})");
    println!("{}", summary(&title, &gan.generator, &gan.noise_shape));
    let title = format!("Discriminator ({model})");
    println!("{}", summary(&title, &gan.discriminator, &gan.sample_shape));
    println!(
        "configuration: {}",
        run.config.to_json().replace('\n', "").replace("  ", " ")
    );
    println!("output directory: {}", run.dir.display());
}

/// Creates `dir`, or accepts it when it exists and is empty; never reuses an earlier run.
fn create_empty_dir(dir: &Path) -> Result<PathBuf> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} already exists and is not empty; choose another --out, or continue \
                     that run with --resume {}",
                    dir.display(),
                    dir.join(CHECKPOINT).display()
                );
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
    Ok(dir.to_path_buf())
}

/// Creates `parent/<name>-NNN` with the next number after the highest one present.
fn create_numbered_dir(parent: &Path, name: &str) -> Result<PathBuf> {
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let entries =
        fs::read_dir(parent).with_context(|| format!("cannot read {}", parent.display()))?;
    let prefix = format!("{name}-");
    let highest = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_prefix(&prefix)?.parse::<u32>().ok())
        .max()
        .unwrap_or(0);

    // Another process may take a number between the scan and the creation: try the next.
    for number in highest + 1.. {
        let dir = parent.join(format!("{prefix}{number:03}"));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
    }
    unreachable!("u32 run numbers ran out")
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    gan::atomic::write_bytes_atomic(path, format!("{text}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `1h 02m 03s`, `2m 03s` or `4.2s`.
fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{:.1}s", d.as_secs_f64()),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m {:02}s", s / 3600, s / 60 % 60, s % 60),
    }
}
