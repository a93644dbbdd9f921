//! The sample writer: IDX output that the MNIST loader reads back, PNG grids, and a clear
//! error for any other file name.

use std::path::PathBuf;

use gan::images::{read_png_gray, to_gray, GAP};
use gan::mnist::read_idx_images;
use gan::samples::{write_samples, SampleError};

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gan-samples-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Three 2 × 3 images whose values sweep [-1, 1], ends included.
fn images() -> Vec<f32> {
    (0..18).map(|i| -1.0 + 2.0 * i as f32 / 17.0).collect()
}

#[test]
fn idx_output_reads_back_with_the_loader_as_mnist_bytes() {
    let path = temp_file("samples.idx3-ubyte");
    write_samples(&path, &images(), 3, 2, 3).unwrap();

    let idx = read_idx_images(&path).unwrap();
    assert_eq!((idx.count, idx.rows, idx.cols), (3, 2, 3));
    let want: Vec<u8> = images().iter().map(|&v| to_gray(v)).collect();
    assert_eq!(idx.pixels, want);
    // MNIST's convention: −1 (background) is 0, 1 (ink) is 255.
    assert_eq!((idx.pixels[0], idx.pixels[17]), (0, 255));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn png_output_is_a_square_grid() {
    let path = temp_file("samples.png");
    write_samples(&path, &images(), 3, 2, 3).unwrap();

    // ⌈√3⌉ = 2 cells a side, each cell 3 wide and 2 high, with gaps around them.
    let (width, height, _) = read_png_gray(&path).unwrap();
    assert_eq!(width as usize, 2 * 3 + 3 * GAP);
    assert_eq!(height as usize, 2 * 2 + 3 * GAP);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn other_extensions_are_refused_by_name() {
    for name in ["samples.jpg", "samples", "samples.idx1-ubyte"] {
        let path = temp_file(name);
        let err = write_samples(&path, &images(), 3, 2, 3).unwrap_err();
        assert!(
            matches!(err, SampleError::UnknownFormat { .. }),
            "{name}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(name) && msg.contains(".idx3-ubyte") && msg.contains(".png"),
            "{msg}"
        );
        assert!(!path.exists(), "{name} was written");
    }
}
