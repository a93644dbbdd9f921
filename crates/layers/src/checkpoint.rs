//! Checkpoints in the safetensors format: named f32 tensors plus string metadata.
//!
//! A file is an 8-byte little-endian header length, a JSON header giving each tensor's dtype,
//! shape and byte range, then the raw little-endian data. The names are dotted paths such as
//! `generator.0.weight`, `generator.2.running_mean` or `optim_g.m.0.weight`, so the first
//! component groups a model or an optimizer; Python's `safetensors.torch.load_file` reads the
//! file into a dict of tensors as is.
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use std::path::Path;
//! use layers::{checkpoint, Dense, Init, Module};
//!
//! let mut rng = rand::thread_rng();
//! let model = Dense::<f32>::new(4, 2, Init::GlorotUniform, &mut rng);
//! let path = Path::new("model.safetensors");
//!
//! let tensors = checkpoint::prefixed("generator", model.parameters());
//! checkpoint::save(path, &tensors, &BTreeMap::new())?;
//!
//! let loaded = checkpoint::load(path)?;
//! loaded.restore("generator", &model.parameters())?;
//! # Ok::<(), checkpoint::CheckpointError>(())
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use autograd::shape::fmt_shape;
use autograd::Tensor;
use safetensors::{Dtype, SafeTensors};

/// What can go wrong saving or loading a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading, writing, syncing or renaming a file failed.
    #[error("checkpoint {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid safetensors, or the tensors could not be serialised.
    #[error("checkpoint {}: not a valid safetensors file: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What the safetensors crate reported.
        reason: String,
    },
    /// A tensor is stored in a type other than f32.
    #[error("checkpoint {}: tensor `{name}` is {dtype}, expected F32", path.display())]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// Its stored type, as safetensors names it (`F64`, `BF16`, …).
        dtype: String,
    },
    /// Two tensors given to [`save`] share a name.
    #[error("checkpoint {}: tensor name `{name}` given twice", path.display())]
    DuplicateName {
        /// The file that was to be written.
        path: PathBuf,
        /// The repeated name.
        name: String,
    },
    /// The checkpoint does not fit the model; nothing was restored.
    #[error(
        "checkpoint does not match the model under `{prefix}`:{}",
        list(differences)
    )]
    Mismatch {
        /// The prefix that was restored.
        prefix: String,
        /// Every difference found, in name order.
        differences: Vec<Difference>,
    },
}

/// One way in which a checkpoint and a model differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Difference {
    /// The model has this tensor; the file does not.
    MissingInFile(String),
    /// The file has this tensor under the prefix; the model does not.
    NotInModel(String),
    /// Both have it, with different shapes.
    Shape {
        /// The full name.
        name: String,
        /// Its shape in the file.
        file: Vec<usize>,
        /// Its shape in the model.
        model: Vec<usize>,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::MissingInFile(n) => write!(f, "{n}: missing in the file"),
            Difference::NotInModel(n) => write!(f, "{n}: in the file but not in the model"),
            Difference::Shape { name, file, model } => {
                let (file, model) = (fmt_shape(file), fmt_shape(model));
                write!(f, "{name}: file {file}, model {model}")
            }
        }
    }
}

/// The differences as an indented list, one per line.
fn list(differences: &[Difference]) -> String {
    differences.iter().map(|d| format!("\n  {d}")).collect()
}

/// A loaded checkpoint: every tensor by full name, and the metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    /// Full name → (shape, values in row-major order).
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// The header's `__metadata__` strings (step counts, configuration, …).
    pub metadata: BTreeMap<String, String>,
}

/// Renames `tensors` to `prefix.name`, the form [`save`] expects and [`Checkpoint::restore`]
/// looks up.
pub fn prefixed(prefix: &str, tensors: Vec<(String, Tensor<f32>)>) -> Vec<(String, Tensor<f32>)> {
    let named = tensors.into_iter();
    named.map(|(n, t)| (join(prefix, &n), t)).collect()
}

/// `prefix.name`, or `name` alone under the empty prefix.
fn join(prefix: &str, name: &str) -> String {
    match prefix {
        "" => name.to_string(),
        p => format!("{p}.{name}"),
    }
}

/// Writes `tensors` and `metadata` to `path` in the safetensors format, atomically: the data
/// goes to `path` + `.tmp` in the same directory, is synced to disk, and is then renamed over
/// `path`, so that a crash leaves either the old checkpoint or the new one, never half of one.
pub fn save(
    path: &Path,
    tensors: &[(String, Tensor<f32>)],
    metadata: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    let mut seen = std::collections::BTreeSet::new();
    if let Some((name, _)) = tensors.iter().find(|(n, _)| !seen.insert(n.as_str())) {
        let (path, name) = (path.to_path_buf(), name.clone());
        return Err(CheckpointError::DuplicateName { path, name });
    }

    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = write_synced(&tmp, tensors, metadata);
    if written.is_err() {
        // Best effort: the write's error is the one worth reporting.
        let _ = fs::remove_file(&tmp);
    }
    written?;
    fs::rename(&tmp, path).map_err(io_error(path))?;

    // The rename itself is durable only once the directory entry is synced.
    sync_parent(path).map_err(io_error(path))
}

/// A tensor as safetensors sees it: F32, its shape, and its values as little-endian bytes,
/// converted only when the writer asks for them, so that one tensor's bytes exist at a
/// time rather than a copy of the whole file.
struct LeF32<'a> {
    tensor: &'a Tensor<f32>,
}

impl safetensors::View for LeF32<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        self.tensor.shape()
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(le_bytes(&self.tensor.data()))
    }

    fn data_len(&self) -> usize {
        self.tensor.numel() * size_of::<f32>()
    }
}

/// Writes the file (a JSON header, then each tensor's data in turn) to `path` and waits
/// until it is on disk.
fn write_synced(
    path: &Path,
    tensors: &[(String, Tensor<f32>)],
    metadata: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    let views = tensors
        .iter()
        .map(|(name, tensor)| (name.as_str(), LeF32 { tensor }));
    let header: HashMap<String, String> = metadata.clone().into_iter().collect();
    let header = (!header.is_empty()).then_some(header);
    safetensors::serialize_to_file(views, &header, path).map_err(|e| match e {
        safetensors::SafeTensorError::IoError(source) => io_error(path)(source),
        other => CheckpointError::Format {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    })?;
    // Opened for writing: some systems sync only a handle that may write.
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_error(path))
}

/// Wraps an I/O error with the path it concerns.
fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(unix)]
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_parent(_path: &Path) -> std::io::Result<()> {
    // Directories cannot be opened for syncing here; the rename is still atomic.
    Ok(())
}

/// Reads a checkpoint written by [`save`] (or by Python's safetensors, if every tensor is
/// F32).
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let bytes = fs::read(path).map_err(io_error(path))?;
    let format_error = |e: safetensors::SafeTensorError| CheckpointError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(format_error)?;
    let file = SafeTensors::deserialize(&bytes).map_err(format_error)?;

    let mut tensors = BTreeMap::new();
    for (name, view) in file.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(CheckpointError::Dtype {
                path: path.to_path_buf(),
                name,
                dtype: format!("{:?}", view.dtype()),
            });
        }
        let values = view.data().chunks_exact(4);
        let values = values.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        tensors.insert(name, (view.shape().to_vec(), values.collect()));
    }
    let metadata = header.metadata().clone().unwrap_or_default();
    Ok(Checkpoint {
        tensors,
        metadata: metadata.into_iter().collect(),
    })
}

impl Checkpoint {
    /// Whether `name` lies under `prefix` (everything does under the empty prefix).
    fn under<'a>(prefix: &str, name: &'a str) -> Option<&'a str> {
        match prefix {
            "" => Some(name),
            p => name.strip_prefix(p)?.strip_prefix('.'),
        }
    }

    /// Copies the values stored as `prefix.name` into each tensor `(name, tensor)` of `into`
    /// (a module's parameters and buffers, an optimizer's state, …).
    ///
    /// It checks everything first: when a name of `into` is missing in the file, the file
    /// holds a name under `prefix` that `into` lacks, or a shape differs, it returns
    /// [`CheckpointError::Mismatch`] listing every difference and changes nothing.
    pub fn restore(
        &self,
        prefix: &str,
        into: &[(String, Tensor<f32>)],
    ) -> Result<(), CheckpointError> {
        let mut differences = Vec::new();
        let wanted: BTreeMap<String, &Tensor<f32>> =
            into.iter().map(|(n, t)| (join(prefix, n), t)).collect();

        for (name, t) in &wanted {
            match self.tensors.get(name) {
                None => differences.push(Difference::MissingInFile(name.clone())),
                Some((shape, _)) if shape != t.shape() => differences.push(Difference::Shape {
                    name: name.clone(),
                    file: shape.clone(),
                    model: t.shape().to_vec(),
                }),
                Some(_) => {}
            }
        }
        let in_file = self
            .tensors
            .keys()
            .filter(|n| Self::under(prefix, n).is_some());
        let extra = in_file.filter(|n| !wanted.contains_key(*n));
        differences.extend(extra.map(|n| Difference::NotInModel(n.clone())));

        if !differences.is_empty() {
            differences.sort_by(|a, b| difference_name(a).cmp(difference_name(b)));
            return Err(CheckpointError::Mismatch {
                prefix: prefix.to_string(),
                differences,
            });
        }
        for (name, t) in wanted {
            t.data_mut().copy_from_slice(&self.tensors[&name].1);
        }
        Ok(())
    }

    /// The tensors under `prefix`, named relative to it (`optim_g.m.0.weight` → `m.0.weight`
    /// under `optim_g`): the form [`Optimizer::load_state`](crate::Optimizer::load_state)
    /// takes.
    pub fn tensors_under(&self, prefix: &str) -> Vec<(String, Tensor<f32>)> {
        let mut out = Vec::new();
        for (name, (shape, values)) in &self.tensors {
            if let Some(rest) = Self::under(prefix, name) {
                out.push((rest.to_string(), Tensor::from_vec(values.clone(), shape)));
            }
        }
        out
    }
}

fn difference_name(d: &Difference) -> &str {
    match d {
        Difference::MissingInFile(n) | Difference::NotInModel(n) => n,
        Difference::Shape { name, .. } => name,
    }
}
