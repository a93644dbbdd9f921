//! MNIST in IDX format: a checked reader (gzipped or plain files), a writer, and the
//! [`Mnist`] set kept as bytes.
//!
//! # IDX layout
//!
//! ```text
//! offset       bytes        field
//! 0            4            magic 0x00 0x00 0x08 nd   (0x08: unsigned bytes, nd: dimensions)
//! 4            4 · nd       one big-endian u32 per dimension
//! 4 + 4 · nd   d₁ · … · d_nd the data, row-major
//! ```
//!
//! Images are `0x00000803` (count × rows × cols), labels `0x00000801` (count). Pixel 0 is
//! background and 255 is ink. A file is read whole, decompressed when it starts with the
//! gzip magic `1f 8b`, and checked against its header before anything is returned: bad
//! input gives a [`DataError`] naming the file, never a panic.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use byteorder::{BigEndian, ByteOrder, LittleEndian, WriteBytesExt};
use flate2::read::MultiGzDecoder;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::atomic::write_atomic;

/// Magic number of an IDX file of unsigned-byte images (3 dimensions).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned-byte labels (1 dimension).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Side of an MNIST image in pixels.
pub const MNIST_SIDE: usize = 28;
/// Number of digit classes; labels lie in `0..NUM_CLASSES`.
pub const NUM_CLASSES: u8 = 10;
/// Environment variable that, when set and non-empty, names the MNIST directory.
pub const DATA_DIR_ENV: &str = "GAN_MNIST_DATA";

/// Training images file name.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte.gz";
/// Training labels file name.
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte.gz";
/// Test images file name.
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte.gz";
/// Test labels file name.
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte.gz";
/// The four files an MNIST directory should hold.
pub const EXPECTED_FILES: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The top three magic bytes shared by every unsigned-byte IDX file.
const UBYTE_PREFIX: u32 = 0x0000_0800;

/// Everything that can be wrong with an MNIST directory or IDX file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The data directory does not exist.
    #[error(
        "MNIST directory {} does not exist; it should hold {} \
         (set {DATA_DIR_ENV} to point elsewhere)",
        .dir.display(),
        EXPECTED_FILES.join(", ")
    )]
    MissingDir {
        /// The directory looked for.
        dir: PathBuf,
    },

    /// A data file does not exist.
    #[error(
        "file {} does not exist; an MNIST directory holds {} (gzipped or not)",
        .path.display(),
        EXPECTED_FILES.join(", ")
    )]
    MissingFile {
        /// The file looked for.
        path: PathBuf,
    },

    /// The file exists but could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// The file starts with the gzip magic but does not decompress.
    #[error("{}: bad gzip stream: {source}", .path.display())]
    BadGzip {
        /// The file.
        path: PathBuf,
        /// What the decompressor reported.
        source: io::Error,
    },

    /// The magic number is not that of an unsigned-byte IDX file.
    #[error(
        "{}: bad IDX magic number: expected 0x{expected:08x}, found 0x{found:08x}",
        .path.display()
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic number wanted.
        expected: u32,
        /// The magic number found.
        found: u32,
    },

    /// An unsigned-byte IDX file, but with the wrong number of dimensions.
    #[error(
        "{}: expected {expected} IDX dimensions (magic 0x{:08x}), found {found} (magic 0x{:08x})",
        .path.display(),
        UBYTE_PREFIX | *.expected as u32,
        UBYTE_PREFIX | *.found as u32
    )]
    WrongDims {
        /// The file.
        path: PathBuf,
        /// Dimensions wanted.
        expected: u8,
        /// Dimensions found.
        found: u8,
    },

    /// The (decompressed) file is shorter than its header says.
    #[error(
        "{}: truncated: expected {expected} bytes, found {actual}",
        .path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header (or the header's own size) calls for.
        expected: u64,
        /// Bytes present after decompression.
        actual: u64,
    },

    /// The (decompressed) file is longer than its header says.
    #[error(
        "{}: trailing data: expected {expected} bytes, found {actual}",
        .path.display()
    )]
    TrailingData {
        /// The file.
        path: PathBuf,
        /// Bytes the header calls for.
        expected: u64,
        /// Bytes present after decompression.
        actual: u64,
    },

    /// The dimensions multiply to more bytes than this machine can address.
    #[error("{}: dimensions {dims:?} are too large", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The dimensions from the header.
        dims: Vec<usize>,
    },

    /// Images that are not 28 × 28.
    #[error(
        "{}: expected {MNIST_SIDE} × {MNIST_SIDE} images, found {rows} × {cols}",
        .path.display()
    )]
    BadShape {
        /// The images file.
        path: PathBuf,
        /// Rows per image found.
        rows: usize,
        /// Columns per image found.
        cols: usize,
    },

    /// The images and labels files hold different numbers of items.
    #[error(
        "{} holds {image_count} images but {} holds {label_count} labels",
        .images.display(),
        .labels.display()
    )]
    CountMismatch {
        /// The images file.
        images: PathBuf,
        /// Number of images.
        image_count: usize,
        /// The labels file.
        labels: PathBuf,
        /// Number of labels.
        label_count: usize,
    },

    /// A label outside `0..10`.
    #[error("{}: label {index} is {value}, expected 0 to 9", .path.display())]
    BadLabel {
        /// The labels file.
        path: PathBuf,
        /// Position of the bad label.
        index: usize,
        /// Its value.
        value: u8,
    },
}

/// The contents of an IDX images file (magic `0x00000803`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `count · rows · cols` bytes, image after image, each row-major.
    pub pixels: Vec<u8>,
}

/// An MNIST split: images as bytes (0 background, 255 ink) and their labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mnist {
    /// `count · rows · cols` bytes, image after image, each row-major.
    pub images: Vec<u8>,
    /// One label in `0..10` per image.
    pub labels: Vec<u8>,
    /// Number of images.
    pub count: usize,
    /// Rows per image (28).
    pub rows: usize,
    /// Columns per image (28).
    pub cols: usize,
}

impl Mnist {
    /// `count` 28 × 28 images of uniform random bytes, labelled `i mod 10`, drawn from
    /// `seed`: a stand-in for MNIST where only its shape matters (tests, benchmarks).
    pub fn noise(count: usize, seed: u64) -> Mnist {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let len = count * MNIST_SIDE * MNIST_SIDE;
        Mnist {
            images: (0..len).map(|_| rng.gen()).collect(),
            labels: (0..count).map(|i| (i % 10) as u8).collect(),
            count,
            rows: MNIST_SIDE,
            cols: MNIST_SIDE,
        }
    }

    /// Loads the 60,000 training images and labels from `dir`.
    ///
    /// Each file may be gzipped (the names in [`EXPECTED_FILES`]) or plain (the same
    /// names without `.gz`); the gzipped one is used when both exist.
    pub fn load_train(dir: &Path) -> Result<Mnist, DataError> {
        Mnist::load(dir, TRAIN_IMAGES, TRAIN_LABELS)
    }

    /// Loads the 10,000 test images and labels from `dir` (see [`Mnist::load_train`]).
    pub fn load_test(dir: &Path) -> Result<Mnist, DataError> {
        Mnist::load(dir, TEST_IMAGES, TEST_LABELS)
    }

    fn load(dir: &Path, images_name: &str, labels_name: &str) -> Result<Mnist, DataError> {
        if !dir.is_dir() {
            return Err(DataError::MissingDir {
                dir: dir.to_path_buf(),
            });
        }
        let images_path = find_file(dir, images_name)?;
        let labels_path = find_file(dir, labels_name)?;

        let images = read_idx_images(&images_path)?;
        if images.rows != MNIST_SIDE || images.cols != MNIST_SIDE {
            let (rows, cols) = (images.rows, images.cols);
            return Err(DataError::BadShape {
                path: images_path,
                rows,
                cols,
            });
        }

        let labels = read_idx_labels(&labels_path)?;
        if labels.len() != images.count {
            return Err(DataError::CountMismatch {
                images: images_path,
                image_count: images.count,
                labels: labels_path,
                label_count: labels.len(),
            });
        }
        check_labels(&labels_path, &labels)?;

        Ok(Mnist {
            images: images.pixels,
            labels,
            count: images.count,
            rows: images.rows,
            cols: images.cols,
        })
    }

    /// Bytes per image: `rows · cols`.
    pub fn image_len(&self) -> usize {
        self.rows * self.cols
    }

    /// Image `i` as `rows · cols` bytes, row-major.
    ///
    /// # Panics
    ///
    /// If `i >= self.count`.
    #[track_caller]
    pub fn image(&self, i: usize) -> &[u8] {
        if i >= self.count {
            index_out_of_range(i, self.count);
        }
        let len = self.image_len();
        &self.images[i * len..(i + 1) * len]
    }
}

#[cold]
#[track_caller]
fn index_out_of_range(i: usize, count: usize) -> ! {
    panic!("Mnist::image: index {i} is out of range for {count} images")
}

/// Maps pixels 0..=255 to [-1, 1], the range of a tanh generator: `out = x / 127.5 − 1`.
///
/// # Panics
///
/// If `pixels` and `out` differ in length.
#[track_caller]
pub fn scale_to_tanh(pixels: &[u8], out: &mut [f32]) {
    assert_eq!(
        pixels.len(),
        out.len(),
        "scale_to_tanh: pixels has {} values but out has {}",
        pixels.len(),
        out.len()
    );
    for (o, &p) in out.iter_mut().zip(pixels) {
        *o = f32::from(p) / 127.5 - 1.0;
    }
}

/// The MNIST directory to use when none is given.
///
/// In order: the directory named by the environment variable `GAN_MNIST_DATA` (when set
/// and non-empty); `data/mnist` under the current directory, when it exists; else
/// `data/mnist` at the root of the workspace this crate was built from.
pub fn default_data_dir() -> PathBuf {
    resolve_data_dir(std::env::var_os(DATA_DIR_ENV), Path::new("data/mnist"))
}

fn resolve_data_dir(env: Option<OsString>, local: &Path) -> PathBuf {
    if let Some(dir) = env.filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if local.is_dir() {
        return local.to_path_buf();
    }

    // The crate sits at <workspace>/crates/gan.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    match manifest.ancestors().nth(2) {
        Some(root) => root.join("data/mnist"),
        None => manifest.join("../../data/mnist"),
    }
}

/// Reads an IDX images file (magic `0x00000803`), gzipped or plain.
pub fn read_idx_images(path: &Path) -> Result<IdxImages, DataError> {
    let (dims, pixels) = read_idx(path, IMAGES_MAGIC)?;
    Ok(IdxImages {
        count: dims[0],
        rows: dims[1],
        cols: dims[2],
        pixels,
    })
}

/// Reads an IDX labels file (magic `0x00000801`), gzipped or plain: one byte per item.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let (_dims, labels) = read_idx(path, LABELS_MAGIC)?;
    Ok(labels)
}

/// Writes `count` images of `rows × cols` bytes as a plain (uncompressed) IDX file with
/// magic `0x00000803`, exactly MNIST's format. The write is atomic (`path.tmp`, then a
/// rename).
///
/// Fails with [`io::ErrorKind::InvalidInput`] when `pixels` is not `count · rows · cols`
/// bytes long or a dimension does not fit in a u32.
pub fn write_idx_images(
    path: &Path,
    count: usize,
    rows: usize,
    cols: usize,
    pixels: &[u8],
) -> io::Result<()> {
    write_idx(path, IMAGES_MAGIC, &[count, rows, cols], pixels)
}

/// Writes labels as a plain IDX file with magic `0x00000801`, atomically.
pub fn write_idx_labels(path: &Path, labels: &[u8]) -> io::Result<()> {
    write_idx(path, LABELS_MAGIC, &[labels.len()], labels)
}

fn write_idx(path: &Path, magic: u32, dims: &[usize], data: &[u8]) -> io::Result<()> {
    let want = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if want != Some(data.len()) {
        let msg = format!(
            "{}: dimensions {dims:?} do not match {} bytes",
            path.display(),
            data.len()
        );
        return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
    }
    let dims32 = dims
        .iter()
        .map(|&d| u32::try_from(d))
        .collect::<Result<Vec<u32>, _>>()
        .map_err(|_| {
            let msg = format!("{}: dimensions {dims:?} do not fit in u32", path.display());
            io::Error::new(io::ErrorKind::InvalidInput, msg)
        })?;

    write_atomic(path, |w| {
        w.write_u32::<BigEndian>(magic)?;
        for d in &dims32 {
            w.write_u32::<BigEndian>(*d)?;
        }
        w.write_all(data)
    })
}

/// `dir/name` if it exists, else `dir/name` without its `.gz` suffix if that exists.
fn find_file(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let gz = dir.join(name);
    if gz.is_file() {
        return Ok(gz);
    }
    if let Some(plain) = name.strip_suffix(".gz").map(|n| dir.join(n)) {
        if plain.is_file() {
            return Ok(plain);
        }
    }
    Err(DataError::MissingFile { path: gz })
}

fn check_labels(path: &Path, labels: &[u8]) -> Result<(), DataError> {
    match labels.iter().position(|&l| l >= NUM_CLASSES) {
        Some(index) => {
            let value = labels[index];
            Err(DataError::BadLabel {
                path: path.to_path_buf(),
                index,
                value,
            })
        }
        None => Ok(()),
    }
}

/// Reads the file, checks it against `magic`, and returns its dimensions and data.
fn read_idx(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let bytes = read_maybe_gzipped(path)?;
    parse_idx(path, bytes, magic)
}

/// The file's bytes, decompressed when they start with the gzip magic.
fn read_maybe_gzipped(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => DataError::MissingFile {
            path: path.to_path_buf(),
        },
        _ => DataError::Io {
            path: path.to_path_buf(),
            source,
        },
    })?;
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }

    // Room for the whole output at once, so that the buffer is not grown by doubling to
    // half again the file's size: gzip's trailer holds the decompressed length (mod 2³²),
    // trusted only up to deflate's largest ratio, 1032 : 1.
    let mut out = Vec::with_capacity(gzip_size_hint(&raw).min(raw.len().saturating_mul(1032)));
    MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|source| DataError::BadGzip {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(out)
}

/// The decompressed length that a gzip member's last four bytes (ISIZE, little-endian)
/// give, or 0 for a file too short to have them.
fn gzip_size_hint(raw: &[u8]) -> usize {
    match raw.len().checked_sub(4) {
        Some(at) => LittleEndian::read_u32(&raw[at..]) as usize,
        None => 0,
    }
}

/// Checks `bytes` (a whole decompressed IDX file) and strips its header in place.
fn parse_idx(
    path: &Path,
    mut bytes: Vec<u8>,
    magic: u32,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let header_len = 4 + 4 * (magic & 0xff) as usize;
    let truncated = |expected: usize, actual: usize| DataError::Truncated {
        path: path.to_path_buf(),
        expected: expected as u64,
        actual: actual as u64,
    };
    if bytes.len() < 4 {
        return Err(truncated(header_len, bytes.len()));
    }
    check_magic(path, BigEndian::read_u32(&bytes[..4]), magic)?;
    if bytes.len() < header_len {
        return Err(truncated(header_len, bytes.len()));
    }

    let (dims, data_len) = parse_dims(path, &bytes[4..header_len])?;
    let expected = data_len
        .checked_add(header_len)
        .ok_or_else(|| too_large(path, &dims))?;
    let actual = bytes.len();
    if actual < expected {
        return Err(truncated(expected, actual));
    }
    if actual > expected {
        let (expected, actual) = (expected as u64, actual as u64);
        return Err(DataError::TrailingData {
            path: path.to_path_buf(),
            expected,
            actual,
        });
    }

    bytes.drain(..header_len);
    Ok((dims, bytes))
}

/// The big-endian u32 dimensions in `header` and their product, the data length.
fn parse_dims(path: &Path, header: &[u8]) -> Result<(Vec<usize>, usize), DataError> {
    let dims: Vec<usize> = header
        .chunks_exact(4)
        .map(|d| BigEndian::read_u32(d) as usize)
        .collect();
    let data_len = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| too_large(path, &dims))?;
    Ok((dims, data_len))
}

fn too_large(path: &Path, dims: &[usize]) -> DataError {
    DataError::TooLarge {
        path: path.to_path_buf(),
        dims: dims.to_vec(),
    }
}

fn check_magic(path: &Path, found: u32, expected: u32) -> Result<(), DataError> {
    if found == expected {
        return Ok(());
    }
    let path = path.to_path_buf();
    if found & !0xff == UBYTE_PREFIX {
        let (expected, found) = ((expected & 0xff) as u8, (found & 0xff) as u8);
        return Err(DataError::WrongDims {
            path,
            expected,
            found,
        });
    }
    Err(DataError::BadMagic {
        path,
        expected,
        found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atomic::scratch_dir;
    use flate2::write::GzEncoder;
    use flate2::Compression;

    /// An IDX file in memory: magic, big-endian dims, data.
    fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// `count` 28 × 28 images whose pixel k of image i is (i + k) mod 256.
    fn mnist_like_pixels(count: usize) -> Vec<u8> {
        let len = MNIST_SIDE * MNIST_SIDE;
        (0..count * len)
            .map(|k| ((k / len + k % len) % 256) as u8)
            .collect()
    }

    /// Writes a small MNIST training set (gzipped) with `n_images` and `n_labels` items.
    fn write_small_train(dir: &Path, n_images: usize, n_labels: usize) -> Vec<u8> {
        let pixels = mnist_like_pixels(n_images);
        let side = MNIST_SIDE as u32;
        let images = idx_bytes(IMAGES_MAGIC, &[n_images as u32, side, side], &pixels);
        fs::write(dir.join(TRAIN_IMAGES), gzip(&images)).unwrap();

        let labels: Vec<u8> = (0..n_labels).map(|i| (i % 10) as u8).collect();
        let labels_idx = idx_bytes(LABELS_MAGIC, &[n_labels as u32], &labels);
        fs::write(dir.join(TRAIN_LABELS), gzip(&labels_idx)).unwrap();
        pixels
    }

    /// Writes `bytes` to `name` in a fresh scratch dir and reads it as images.
    fn read_images_from(test: &str, bytes: &[u8]) -> (PathBuf, Result<IdxImages, DataError>) {
        let dir = scratch_dir(test);
        let path = dir.join("images.idx");
        fs::write(&path, bytes).unwrap();
        let result = read_idx_images(&path);
        (dir, result)
    }

    #[test]
    fn write_then_read_images_round_trips() {
        let dir = scratch_dir("mnist-roundtrip");
        let path = dir.join("x-idx3-ubyte");
        let pixels: Vec<u8> = (0..2 * 3 * 4).map(|k| (k * 7) as u8).collect();

        write_idx_images(&path, 2, 3, 4, &pixels).unwrap();
        let read = read_idx_images(&path).unwrap();

        let want = IdxImages {
            count: 2,
            rows: 3,
            cols: 4,
            pixels: pixels.clone(),
        };
        assert_eq!(read, want);
        let raw = fs::read(&path).unwrap();
        assert_eq!(raw[..16], [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4]);
        assert_eq!(raw.len(), 16 + pixels.len());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_rejects_wrong_pixel_count() {
        let dir = scratch_dir("mnist-write-bad");
        let path = dir.join("x");
        let err = write_idx_images(&path, 2, 3, 4, &[0; 23]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(!path.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn labels_round_trip() {
        let dir = scratch_dir("mnist-labels");
        let path = dir.join("labels");
        write_idx_labels(&path, &[3, 1, 4, 1, 5]).unwrap();
        assert_eq!(read_idx_labels(&path).unwrap(), vec![3, 1, 4, 1, 5]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_gzipped_images() {
        let pixels: Vec<u8> = (0..5 * 2 * 3).map(|k| (255 - k) as u8).collect();
        let bytes = gzip(&idx_bytes(IMAGES_MAGIC, &[5, 2, 3], &pixels));
        let (dir, result) = read_images_from("mnist-gz", &bytes);

        let read = result.unwrap();
        assert_eq!((read.count, read.rows, read.cols), (5, 2, 3));
        assert_eq!(read.pixels, pixels);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_magic_names_file_and_both_values() {
        let bytes = idx_bytes(0x1234_5678, &[1, 1, 1], &[0]);
        let (dir, result) = read_images_from("mnist-magic", &bytes);

        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                DataError::BadMagic {
                    found: 0x1234_5678,
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        for part in ["images.idx", "0x00000803", "0x12345678"] {
            assert!(msg.contains(part), "message lacks {part}: {msg}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn labels_file_read_as_images_is_wrong_dims() {
        let bytes = idx_bytes(LABELS_MAGIC, &[3], &[1, 2, 3]);
        let (dir, result) = read_images_from("mnist-dims", &bytes);

        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                DataError::WrongDims {
                    expected: 3,
                    found: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("0x00000801"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn truncated_data_reports_byte_counts() {
        let mut bytes = idx_bytes(IMAGES_MAGIC, &[2, 2, 2], &[9; 8]);
        bytes.pop();
        let (dir, result) = read_images_from("mnist-trunc", &bytes);

        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 24,
                    actual: 23,
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("24") && msg.contains("23") && msg.contains("images.idx"),
            "{msg}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn trailing_data_is_an_error() {
        let mut bytes = idx_bytes(IMAGES_MAGIC, &[2, 2, 2], &[9; 8]);
        bytes.extend_from_slice(&[0, 0]);
        let (dir, result) = read_images_from("mnist-trail", &bytes);

        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                DataError::TrailingData {
                    expected: 24,
                    actual: 26,
                    ..
                }
            ),
            "{err:?}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn truncated_header_is_an_error() {
        let bytes = idx_bytes(IMAGES_MAGIC, &[2, 2, 2], &[])[..10].to_vec();
        let (dir, result) = read_images_from("mnist-header", &bytes);
        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 16,
                    actual: 10,
                    ..
                }
            ),
            "{err:?}"
        );

        // Shorter than the magic itself.
        let (dir2, result) = read_images_from("mnist-header2", &[0, 0]);
        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 16,
                    actual: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(&dir2).unwrap();
    }

    #[test]
    fn huge_dimensions_are_an_error_not_an_allocation() {
        let bytes = idx_bytes(IMAGES_MAGIC, &[u32::MAX, u32::MAX, u32::MAX], &[]);
        let (dir, result) = read_images_from("mnist-huge", &bytes);
        let err = result.unwrap_err();
        // On 64-bit targets the product overflows; elsewhere the file is simply short.
        assert!(
            matches!(
                err,
                DataError::TooLarge { .. } | DataError::Truncated { .. }
            ),
            "{err:?}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_gzip_stream_names_file() {
        let mut bytes = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        bytes.extend_from_slice(b"this is not deflate data at all");
        let (dir, result) = read_images_from("mnist-badgz", &bytes);

        let err = result.unwrap_err();
        assert!(matches!(err, DataError::BadGzip { .. }), "{err:?}");
        assert!(err.to_string().contains("images.idx"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cut_gzip_stream_is_bad_gzip() {
        let full = gzip(&idx_bytes(
            IMAGES_MAGIC,
            &[4, 3, 3],
            &mnist_like_pixels(1)[..36],
        ));
        let (dir, result) = read_images_from("mnist-cutgz", &full[..full.len() / 2]);
        let err = result.unwrap_err();
        assert!(matches!(err, DataError::BadGzip { .. }), "{err:?}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_file_names_path() {
        let dir = scratch_dir("mnist-nofile");
        let err = read_idx_images(&dir.join("absent.idx")).unwrap_err();
        assert!(matches!(err, DataError::MissingFile { .. }), "{err:?}");
        assert!(err.to_string().contains("absent.idx"), "{err}");

        // A directory holding only the images: the labels are reported missing.
        write_small_train(&dir, 2, 2);
        fs::remove_file(dir.join(TRAIN_LABELS)).unwrap();
        let err = Mnist::load_train(&dir).unwrap_err();
        assert!(err.to_string().contains(TRAIN_LABELS), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_dir_lists_expected_files() {
        let dir = std::env::temp_dir().join("gan-test-surely-absent-mnist-dir");
        let err = Mnist::load_train(&dir).unwrap_err();
        assert!(matches!(err, DataError::MissingDir { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("gan-test-surely-absent-mnist-dir"), "{msg}");
        for name in EXPECTED_FILES {
            assert!(msg.contains(name), "message lacks {name}: {msg}");
        }
    }

    #[test]
    fn loads_small_train_set() {
        let dir = scratch_dir("mnist-small");
        let pixels = write_small_train(&dir, 3, 3);

        let mnist = Mnist::load_train(&dir).unwrap();

        assert_eq!((mnist.count, mnist.rows, mnist.cols), (3, 28, 28));
        assert_eq!(mnist.labels, vec![0, 1, 2]);
        assert_eq!(mnist.image(2), &pixels[2 * 784..3 * 784]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn loads_uncompressed_files_too() {
        let dir = scratch_dir("mnist-plain");
        let pixels = mnist_like_pixels(2);
        let plain_images = dir.join(TRAIN_IMAGES.strip_suffix(".gz").unwrap());
        write_idx_images(&plain_images, 2, 28, 28, &pixels).unwrap();
        write_idx_labels(
            &dir.join(TRAIN_LABELS.strip_suffix(".gz").unwrap()),
            &[7, 8],
        )
        .unwrap();

        let mnist = Mnist::load_train(&dir).unwrap();

        assert_eq!(mnist.images, pixels);
        assert_eq!(mnist.labels, vec![7, 8]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn count_mismatch_names_both_files() {
        let dir = scratch_dir("mnist-mismatch");
        write_small_train(&dir, 3, 2);

        let err = Mnist::load_train(&dir).unwrap_err();

        assert!(
            matches!(
                err,
                DataError::CountMismatch {
                    image_count: 3,
                    label_count: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(TRAIN_IMAGES) && msg.contains(TRAIN_LABELS),
            "{msg}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn non_mnist_shape_is_rejected() {
        let dir = scratch_dir("mnist-shape");
        write_small_train(&dir, 1, 1);
        write_idx_images(&dir.join(TRAIN_IMAGES), 1, 27, 28, &[0; 27 * 28]).unwrap();

        let err = Mnist::load_train(&dir).unwrap_err();

        assert!(
            matches!(
                err,
                DataError::BadShape {
                    rows: 27,
                    cols: 28,
                    ..
                }
            ),
            "{err:?}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn label_out_of_range_is_rejected() {
        let dir = scratch_dir("mnist-label");
        write_small_train(&dir, 2, 2);
        let labels = gzip(&idx_bytes(LABELS_MAGIC, &[2], &[3, 10]));
        fs::write(dir.join(TRAIN_LABELS), labels).unwrap();

        let err = Mnist::load_train(&dir).unwrap_err();

        assert!(
            matches!(
                err,
                DataError::BadLabel {
                    index: 1,
                    value: 10,
                    ..
                }
            ),
            "{err:?}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[should_panic(expected = "index 3 is out of range for 3 images")]
    fn image_index_out_of_range_panics() {
        let mnist = Mnist {
            images: vec![0; 12],
            labels: vec![0; 3],
            count: 3,
            rows: 2,
            cols: 2,
        };
        let _ = mnist.image(3);
    }

    #[test]
    fn scale_to_tanh_maps_ends_and_middle() {
        let pixels = [0u8, 51, 255, 128];
        let mut out = [f32::NAN; 4];

        scale_to_tanh(&pixels, &mut out);

        // 51 / 127.5 − 1 = −0.6 and 128 / 127.5 − 1 = 1 / 255.
        let want = [-1.0, -0.6, 1.0, 1.0 / 255.0];
        for (k, (&got, &want)) in out.iter().zip(&want).enumerate() {
            assert!(
                (got - want).abs() < 1e-6,
                "pixel {k}: got {got}, want {want}"
            );
        }
        assert_eq!(out[0], -1.0);
        assert_eq!(out[2], 1.0);
    }

    #[test]
    #[should_panic(expected = "pixels has 2 values but out has 3")]
    fn scale_to_tanh_checks_lengths() {
        scale_to_tanh(&[0, 0], &mut [0.0; 3]);
    }

    #[test]
    fn data_dir_prefers_env_then_local_then_workspace() {
        let local = scratch_dir("mnist-local");
        let from_env = resolve_data_dir(Some("/somewhere/else".into()), &local);
        assert_eq!(from_env, PathBuf::from("/somewhere/else"));

        assert_eq!(resolve_data_dir(Some("".into()), &local), local);
        assert_eq!(resolve_data_dir(None, &local), local);

        let fallback = resolve_data_dir(None, &local.join("absent"));
        assert!(fallback.ends_with("data/mnist"), "{}", fallback.display());
        assert!(
            fallback.join("README.md").is_file(),
            "{}",
            fallback.display()
        );
        fs::remove_dir_all(&local).unwrap();
    }

    fn shipped_dir() -> PathBuf {
        resolve_data_dir(None, Path::new("/nonexistent"))
    }

    #[test]
    fn loads_shipped_train_set() {
        let mnist = Mnist::load_train(&shipped_dir()).unwrap();

        assert_eq!((mnist.count, mnist.rows, mnist.cols), (60_000, 28, 28));
        assert_eq!(mnist.images.len(), 60_000 * 784);
        // First labels as listed in data/mnist/README.md.
        assert_eq!(mnist.labels[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
        let first = mnist.image(0);
        assert_eq!(first[0], 0, "corner pixel is background");
        assert_eq!(
            first.iter().max(),
            Some(&255),
            "a digit has full ink somewhere"
        );
    }

    #[test]
    fn loads_shipped_test_set() {
        let mnist = Mnist::load_test(&shipped_dir()).unwrap();
        assert_eq!(mnist.count, 10_000);
        assert_eq!(mnist.labels[..10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    }
}
