//! Writing generated samples to a file whose extension names the format.
//!
//! - `.idx3-ubyte`: an IDX images file exactly like MNIST's (magic `0x00000803`, unsigned
//!   bytes, 0 = background, 255 = ink), which [`crate::mnist::read_idx_images`] reads back;
//! - `.png`: one grayscale grid of all the samples, ⌈√count⌉ cells wide.

use std::io;
use std::path::{Path, PathBuf};

use crate::images::{grid_png, to_gray};
use crate::mnist::write_idx_images;

/// The file formats [`write_samples`] knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleFormat {
    /// An IDX3 file of unsigned bytes (`.idx3-ubyte`).
    Idx,
    /// A PNG grid (`.png`).
    Png,
}

/// What can go wrong writing samples.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// The file name ends in neither `.idx3-ubyte` nor `.png`.
    #[error("{}: unknown output format; the name should end in `.idx3-ubyte` (MNIST's IDX \
             format) or `.png` (a grid)", .path.display())]
    UnknownFormat {
        /// The requested file.
        path: PathBuf,
    },
    /// Writing failed; the message names the file.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl SampleFormat {
    /// The format that `path`'s name asks for.
    pub fn from_path(path: &Path) -> Result<SampleFormat, SampleError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        if name.ends_with(".idx3-ubyte") {
            Ok(SampleFormat::Idx)
        } else if name.ends_with(".png") {
            Ok(SampleFormat::Png)
        } else {
            Err(SampleError::UnknownFormat {
                path: path.to_path_buf(),
            })
        }
    }
}

/// Writes `count` images of `rows × cols` values in [-1, 1] to `path`, in the format its
/// extension names (see the module docs). The write is atomic.
pub fn write_samples(
    path: &Path,
    images: &[f32],
    count: usize,
    rows: usize,
    cols: usize,
) -> Result<(), SampleError> {
    match SampleFormat::from_path(path)? {
        SampleFormat::Idx => {
            let bytes: Vec<u8> = images.iter().map(|&v| to_gray(v)).collect();
            write_idx_images(path, count, rows, cols, &bytes)?;
        }
        SampleFormat::Png => {
            let grid_cols = (1..).find(|c| c * c >= count).unwrap_or(1).max(1);
            grid_png(path, images, count, rows, cols, grid_cols, 1)?;
        }
    }
    Ok(())
}
