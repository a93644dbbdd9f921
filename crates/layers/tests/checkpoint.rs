//! Checkpoints: round trips, mismatch reports, optimizer state, atomic writes, the file
//! layout other safetensors readers expect, and the error cases.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use autograd::Tensor;
use layers::checkpoint::{self, Difference};
use layers::{
    Adam, AdamConfig, BatchNorm, CheckpointError, Dense, Init, Module, Optimizer, Sequential, Tanh,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A fresh, empty directory for one test.
fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("layers-{}-{test}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Dense(3 → width) then BatchNorm(width), seeded.
fn model(width: usize, seed: u64) -> Sequential<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Sequential::new()
        .with(Dense::new(3, width, Init::GlorotUniform, &mut rng))
        .with(BatchNorm::new(width).momentum(0.8))
}

/// Everything a checkpoint holds for a module: parameters, then buffers.
fn state(m: &dyn Module<f32>) -> Vec<(String, Tensor<f32>)> {
    let mut all = m.parameters();
    all.extend(m.buffers());
    all
}

fn batch(seed: u64) -> Tensor<f32> {
    Tensor::rand_uniform(&[6, 3], -2.0, 2.0, &mut ChaCha8Rng::seed_from_u64(seed))
}

/// A model whose every parameter and running statistic has moved from its initial value.
fn trained_model() -> Sequential<f32> {
    let m = model(4, 1);
    let mut adam = Adam::new(
        m.parameters(),
        AdamConfig {
            lr: 0.05,
            ..Default::default()
        },
    );
    for seed in 0..3 {
        adam.zero_grad();
        m.forward(&batch(seed)).powf(2.0).mean().backward();
        adam.step();
    }
    m
}

fn bits(t: &Tensor<f32>) -> Vec<u32> {
    t.data().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn round_trip_restores_bit_identical_outputs() {
    let dir = scratch_dir("round-trip");
    let path = dir.join("model.safetensors");
    let saved = trained_model();
    let metadata = BTreeMap::from([("epoch".to_string(), "3".to_string())]);
    checkpoint::save(
        &path,
        &checkpoint::prefixed("generator", state(&saved)),
        &metadata,
    )
    .unwrap();

    let loaded = checkpoint::load(&path).unwrap();
    let restored = model(4, 99);
    loaded.restore("generator", &state(&restored)).unwrap();

    saved.set_training(false);
    restored.set_training(false);
    let x = batch(10);
    assert_eq!(bits(&restored.forward(&x)), bits(&saved.forward(&x)));
    assert_eq!(loaded.metadata, metadata);
    assert_eq!(loaded.tensors["generator.1.running_var"].0, [4]);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn mismatched_checkpoint_is_rejected_with_every_difference_and_nothing_changes() {
    let dir = scratch_dir("mismatch");
    let path = dir.join("gan.safetensors");
    let mut tensors = checkpoint::prefixed("generator", state(&model(4, 1)));
    // Another model under another prefix: out of scope for a `generator` restore.
    tensors.extend(checkpoint::prefixed("discriminator", state(&model(2, 2))));
    checkpoint::save(&path, &tensors, &BTreeMap::new()).unwrap();

    // Dense(3 → 5), then a Tanh that shifts BatchNorm to position 2.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let other = Sequential::<f32>::new()
        .with(Dense::new(3, 5, Init::GlorotUniform, &mut rng))
        .with(Tanh)
        .with(BatchNorm::new(5));
    let before: Vec<Vec<u32>> = state(&other).iter().map(|(_, t)| bits(t)).collect();

    let err = checkpoint::load(&path)
        .unwrap()
        .restore("generator", &state(&other))
        .unwrap_err();

    let shape = |name: &str, file: &[usize], model: &[usize]| Difference::Shape {
        name: name.to_string(),
        file: file.to_vec(),
        model: model.to_vec(),
    };
    let missing = |n: &str| Difference::MissingInFile(format!("generator.{n}"));
    let extra = |n: &str| Difference::NotInModel(format!("generator.{n}"));
    let expected = vec![
        shape("generator.0.bias", &[4], &[5]),
        shape("generator.0.weight", &[3, 4], &[3, 5]),
        extra("1.bias"),
        extra("1.running_mean"),
        extra("1.running_var"),
        extra("1.weight"),
        missing("2.bias"),
        missing("2.running_mean"),
        missing("2.running_var"),
        missing("2.weight"),
    ];
    let message = err.to_string();
    match err {
        CheckpointError::Mismatch { differences, .. } => assert_eq!(differences, expected),
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert!(
        message.contains("\n  generator.0.weight: file 3 × 4, model 3 × 5\n"),
        "{message}"
    );
    assert!(
        message.contains("generator.2.running_var: missing in the file"),
        "{message}"
    );
    assert!(message.contains("generator.1.weight: in the file but not in the model"));

    let after: Vec<Vec<u32>> = state(&other).iter().map(|(_, t)| bits(t)).collect();
    assert_eq!(before, after, "a rejected restore must change nothing");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn optimizer_state_round_trip_resumes_training_identically() {
    let dir = scratch_dir("optimizer");
    let path = dir.join("run.safetensors");
    let config = AdamConfig {
        lr: 0.05,
        ..Default::default()
    };
    let train_step = |m: &Sequential<f32>, adam: &mut Adam<f32>, seed| {
        adam.zero_grad();
        m.forward(&batch(seed)).powf(2.0).mean().backward();
        adam.step();
    };
    let first = model(4, 1);
    let mut adam = Adam::new(first.parameters(), config);
    (0..3).for_each(|seed| train_step(&first, &mut adam, seed));

    let mut tensors = checkpoint::prefixed("generator", state(&first));
    tensors.extend(checkpoint::prefixed("optim_g", adam.state()));
    let steps = BTreeMap::from([("optim_g.steps".to_string(), adam.steps().to_string())]);
    checkpoint::save(&path, &tensors, &steps).unwrap();

    let loaded = checkpoint::load(&path).unwrap();
    let resumed = model(4, 42);
    loaded.restore("generator", &state(&resumed)).unwrap();
    let mut resumed_adam = Adam::new(resumed.parameters(), config);
    let steps: u64 = loaded.metadata["optim_g.steps"].parse().unwrap();
    let optim_state = loaded.tensors_under("optim_g");
    assert!(
        optim_state.iter().any(|(n, _)| n == "m.0.weight"),
        "{optim_state:?}"
    );
    resumed_adam.load_state(steps, &optim_state).unwrap();

    train_step(&first, &mut adam, 7);
    train_step(&resumed, &mut resumed_adam, 7);
    for ((name, a), (_, b)) in state(&first).iter().zip(state(&resumed)) {
        assert_eq!(bits(a), bits(&b), "{name} after one more step");
    }
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn save_is_atomic_and_replaces_the_old_file() {
    let dir = scratch_dir("atomic");
    let path = dir.join("model.safetensors");
    let t = Tensor::from_vec(vec![1.0f32, 2.0], &[2]);
    let tensors = vec![("w".to_string(), t.clone())];
    checkpoint::save(&path, &tensors, &BTreeMap::new()).unwrap();
    t.data_mut()[0] = 5.0;
    checkpoint::save(&path, &tensors, &BTreeMap::new()).unwrap();

    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        ["model.safetensors"],
        "no .tmp file may be left behind"
    );
    assert_eq!(checkpoint::load(&path).unwrap().tensors["w"].1, [5.0, 2.0]);
    fs::remove_dir_all(dir).unwrap();
}

/// The layout Python's `safetensors.torch.load_file` parses: an 8-byte little-endian header
/// length, a JSON header with dtype "F32", shape and data_offsets per tensor plus
/// `__metadata__`, then the little-endian bytes.
#[test]
fn file_layout_is_plain_safetensors() {
    let dir = scratch_dir("layout");
    let path = dir.join("x.safetensors");
    let t = Tensor::from_vec(vec![1.5f32, -2.0, 0.25, 8.0, 0.0, -0.5], &[2, 3]);
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    checkpoint::save(&path, &[("generator.0.weight".to_string(), t)], &metadata).unwrap();

    let bytes = fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let entry = &header["generator.0.weight"];
    assert_eq!(entry["dtype"], "F32");
    assert_eq!(entry["shape"], serde_json::json!([2, 3]));
    assert_eq!(entry["data_offsets"], serde_json::json!([0, 24]));
    assert_eq!(header["__metadata__"]["format"], "pt");

    let data = &bytes[8 + n..];
    let first = f32::from_le_bytes(data[..4].try_into().unwrap());
    assert_eq!((data.len(), first), (24, 1.5));
    fs::remove_dir_all(dir).unwrap();
}

fn expect_err(result: Result<impl std::fmt::Debug, CheckpointError>, needle: &str, path: &Path) {
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains(needle),
        "{message:?} should mention {needle:?}"
    );
    assert!(
        message.contains(&path.display().to_string()),
        "{message:?} should name the file"
    );
}

#[test]
fn unreadable_files_give_errors_naming_the_file() {
    let dir = scratch_dir("errors");

    let missing = dir.join("missing.safetensors");
    expect_err(checkpoint::load(&missing), "No such file", &missing);

    let garbage = dir.join("garbage.safetensors");
    fs::write(&garbage, b"this is not a checkpoint").unwrap();
    expect_err(
        checkpoint::load(&garbage),
        "not a valid safetensors file",
        &garbage,
    );

    let doubles = dir.join("f64.safetensors");
    let bytes: Vec<u8> = [1.0f64, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F64, vec![2], &bytes);
    fs::write(
        &doubles,
        safetensors::serialize([("w", view.unwrap())], &None).unwrap(),
    )
    .unwrap();
    expect_err(
        checkpoint::load(&doubles),
        "tensor `w` is F64, expected F32",
        &doubles,
    );

    let twice = dir.join("twice.safetensors");
    let t = Tensor::zeros(&[1]);
    let tensors = [("w".to_string(), t.clone()), ("w".to_string(), t)];
    let saved = checkpoint::save(&twice, &tensors, &BTreeMap::new());
    expect_err(saved, "tensor name `w` given twice", &twice);
    assert!(!twice.exists());
    fs::remove_dir_all(dir).unwrap();
}
