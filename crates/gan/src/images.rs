//! Sample images: grids of generated digits as grayscale PNG, and an animated GIF of grids.
//!
//! Generator outputs lie in [-1, 1] (tanh). They are drawn as MNIST draws digits, white
//! ink on a black background: -1 → 0 (black), 1 → 255 (white). Cells are separated, and
//! the grid framed, by a [`GAP`]-pixel band of the dark gray [`GAP_SHADE`], which stays
//! visible against the black background.
//!
//! Every file is written atomically (`path.tmp`, then a rename), so a viewer that reloads
//! `samples.gif` while training runs never sees half a file.

use std::borrow::Cow;
use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::atomic::{with_path, write_atomic};

/// Width in pixels of the band between cells and around the grid.
pub const GAP: usize = 2;
/// Gray level of the band between cells (0 is black, 255 white).
pub const GAP_SHADE: u8 = 64;

/// A grayscale picture: width, height, and `width · height` bytes, row-major.
pub type GrayFrame = (u32, u32, Vec<u8>);

/// Maps a generator value in [-1, 1] to a gray level: `round((v + 1) · 127.5)`.
///
/// Values outside [-1, 1] are clamped; NaN becomes 0 (black).
pub fn to_gray(v: f32) -> u8 {
    // `as u8` saturates and sends NaN to 0.
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// Lays `n` images of `h × w` values in [-1, 1] out as a grid `cols` cells wide, each
/// pixel drawn as a `scale × scale` block. Returns `(width, height, pixels)`.
///
/// The grid is `cols · w · scale + (cols + 1) · GAP` pixels wide and
/// `rows · h · scale + (rows + 1) · GAP` high, where `rows = ⌈n / cols⌉`; cells past the
/// last image keep the gap shade.
///
/// # Panics
///
/// If `images.len() != n · h · w`, if `cols` or `scale` is 0, or if the grid would be
/// wider or taller than `u32::MAX`.
#[track_caller]
pub fn grid_pixels(
    images: &[f32],
    n: usize,
    h: usize,
    w: usize,
    cols: usize,
    scale: usize,
) -> (u32, u32, Vec<u8>) {
    let (width, height) = match grid_size(images.len(), n, h, w, cols, scale) {
        Ok(size) => size,
        Err(msg) => panic!("grid_pixels: {msg}"),
    };
    let mut pixels = vec![GAP_SHADE; width * height];
    if h == 0 || w == 0 {
        return (width as u32, height as u32, pixels);
    }

    for (i, image) in images.chunks_exact(h * w).enumerate() {
        let x0 = GAP + (i % cols) * (w * scale + GAP);
        let y0 = GAP + (i / cols) * (h * scale + GAP);
        for (y, row) in image.chunks_exact(w).enumerate() {
            // One scaled row, then copied `scale` times downwards.
            let start = (y0 + y * scale) * width + x0;
            let line = &mut pixels[start..start + w * scale];
            for (block, &v) in line.chunks_exact_mut(scale).zip(row) {
                block.fill(to_gray(v));
            }
            for dy in 1..scale {
                pixels.copy_within(start..start + w * scale, start + dy * width);
            }
        }
    }
    (width as u32, height as u32, pixels)
}

/// Checks the grid arguments and returns the grid's `(width, height)` in pixels.
fn grid_size(
    len: usize,
    n: usize,
    h: usize,
    w: usize,
    cols: usize,
    scale: usize,
) -> Result<(usize, usize), String> {
    if cols == 0 || scale == 0 {
        return Err(format!(
            "cols ({cols}) and scale ({scale}) must be at least 1"
        ));
    }
    match n.checked_mul(h).and_then(|x| x.checked_mul(w)) {
        Some(want) if want == len => {}
        Some(want) => {
            return Err(format!(
                "{n} images of {h} × {w} need {want} values, got {len}"
            ))
        }
        None => return Err(format!("{n} images of {h} × {w} are too many values")),
    }

    let rows = n.div_ceil(cols);
    let side = |cells: usize, cell: usize| {
        cell.checked_mul(scale)?
            .checked_mul(cells)?
            .checked_add(GAP.checked_mul(cells + 1)?)
            .filter(|&px| u32::try_from(px).is_ok())
    };
    match (side(cols, w), side(rows, h)) {
        (Some(width), Some(height)) => Ok((width, height)),
        _ => Err(format!(
            "a grid of {rows} × {cols} cells of {h} × {w} is too large"
        )),
    }
}

/// Writes the grid of [`grid_pixels`] to `path` as an 8-bit grayscale PNG, atomically.
///
/// Bad grid arguments give [`io::ErrorKind::InvalidInput`] instead of a panic.
pub fn grid_png(
    path: &Path,
    images: &[f32],
    n: usize,
    h: usize,
    w: usize,
    cols: usize,
    scale: usize,
) -> io::Result<()> {
    grid_size(images.len(), n, h, w, cols, scale).map_err(|msg| invalid_input(path, &msg))?;
    let (width, height, pixels) = grid_pixels(images, n, h, w, cols, scale);
    write_png_gray(path, width, height, &pixels)
}

/// Writes `width · height` gray bytes as an 8-bit grayscale PNG, atomically.
pub fn write_png_gray(path: &Path, width: u32, height: u32, pixels: &[u8]) -> io::Result<()> {
    check_frame(width, height, pixels.len()).map_err(|e| with_path(path, e))?;
    write_atomic(path, |out| {
        let mut encoder = png::Encoder::new(out, width, height);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(pixels)?;
        writer.finish()?;
        Ok(())
    })
}

/// Reads a grayscale PNG (any bit depth; an alpha channel is dropped) as 8-bit gray
/// bytes. Returns `(width, height, pixels)`.
///
/// Colour PNGs give [`io::ErrorKind::InvalidData`]; every error names the file.
pub fn read_png_gray(path: &Path) -> io::Result<GrayFrame> {
    let file = File::open(path).map_err(|e| with_path(path, e))?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| with_path(path, e.into()))?;

    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| with_path(path, e.into()))?;
    let (width, height) = (info.width, info.height);
    let pixels = match info.color_type {
        png::ColorType::Grayscale => buf
            .chunks_exact(info.line_size)
            .flat_map(|line| &line[..width as usize])
            .copied()
            .collect(),
        png::ColorType::GrayscaleAlpha => buf
            .chunks_exact(info.line_size)
            .flat_map(|line| line[..2 * width as usize].iter().step_by(2))
            .copied()
            .collect(),
        other => {
            let msg = format!(
                "{}: expected a grayscale PNG, found {other:?}",
                path.display()
            );
            return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
        }
    };
    Ok((width, height, pixels))
}

/// Writes `frames` as an animated grayscale GIF that loops forever, each frame shown for
/// `delay_cs` hundredths of a second. The write is atomic.
///
/// Frames must all have the same size, at most 65,535 pixels on a side. The palette is
/// the 256 gray levels, so the frames are stored without loss.
pub fn write_gif(path: &Path, frames: &[GrayFrame], delay_cs: u16) -> io::Result<()> {
    let frames = frames.iter().map(|f| Ok(Cow::Borrowed(f)));
    write_gif_frames(path, frames, delay_cs)
}

/// Builds an animated GIF from PNG files (see [`write_gif`]), reading one PNG at a time
/// so that memory holds a single frame.
pub fn gif_from_pngs(path: &Path, pngs: &[PathBuf], delay_cs: u16) -> io::Result<()> {
    let frames = pngs.iter().map(|png| read_png_gray(png).map(Cow::Owned));
    write_gif_frames(path, frames, delay_cs)
}

/// The `.png` files directly in `dir`, sorted by name (so zero-padded names such as
/// `iter_000500.png` come out in training order).
pub fn sorted_pngs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut pngs = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| with_path(dir, e))? {
        let path = entry.map_err(|e| with_path(dir, e))?.path();
        if path.extension().is_some_and(|ext| ext == "png") && path.is_file() {
            pngs.push(path);
        }
    }
    pngs.sort();
    Ok(pngs)
}

fn write_gif_frames<'a, I>(path: &Path, mut frames: I, delay_cs: u16) -> io::Result<()>
where
    I: Iterator<Item = io::Result<Cow<'a, GrayFrame>>>,
{
    let first = match frames.next() {
        Some(first) => first?,
        None => return Err(invalid_input(path, "a GIF needs at least one frame")),
    };
    let (width, height) = gif_size(path, first.0, first.1)?;
    let frames = std::iter::once(Ok(first)).chain(frames);

    write_atomic(path, |out| {
        let mut encoder =
            gif::Encoder::new(out, width, height, &gray_palette()).map_err(gif_err)?;
        encoder.set_repeat(gif::Repeat::Infinite).map_err(gif_err)?;
        for (index, frame) in frames.enumerate() {
            let frame = frame?;
            let (w, h, pixels) = frame.as_ref();
            if (*w, *h) != (u32::from(width), u32::from(height)) {
                let msg = format!("frame {index} is {w} × {h}, the first was {width} × {height}");
                return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
            }
            check_frame(*w, *h, pixels.len())?;
            encoder
                .write_frame(&gif_frame(width, height, pixels, delay_cs))
                .map_err(gif_err)?;
        }
        encoder.into_inner()?.flush()
    })
}

fn gif_frame(width: u16, height: u16, pixels: &[u8], delay_cs: u16) -> gif::Frame<'_> {
    gif::Frame {
        width,
        height,
        delay: delay_cs,
        buffer: Cow::Borrowed(pixels),
        ..gif::Frame::default()
    }
}

/// Palette entry k is the gray (k, k, k), so a gray level is its own palette index.
fn gray_palette() -> Vec<u8> {
    (0..=255u8).flat_map(|k| [k, k, k]).collect()
}

fn gif_size(path: &Path, width: u32, height: u32) -> io::Result<(u16, u16)> {
    match (u16::try_from(width), u16::try_from(height)) {
        (Ok(w), Ok(h)) => Ok((w, h)),
        _ => {
            let msg = format!("a {width} × {height} frame exceeds GIF's 65535 × 65535");
            Err(invalid_input(path, &msg))
        }
    }
}

/// Checks that a `width × height` picture has `len` bytes; the error does not name a file.
fn check_frame(width: u32, height: u32, len: usize) -> io::Result<()> {
    if (width as usize).checked_mul(height as usize) == Some(len) {
        return Ok(());
    }
    let msg = format!("a {width} × {height} picture needs {width} · {height} bytes, got {len}");
    Err(io::Error::new(io::ErrorKind::InvalidInput, msg))
}

fn gif_err(err: gif::EncodingError) -> io::Error {
    match err {
        gif::EncodingError::Io(e) => e,
        other => io::Error::other(other),
    }
}

fn invalid_input(path: &Path, msg: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}: {msg}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atomic::scratch_dir;

    /// `n` images of `h × w` whose values step through [-1, 1] so that cells differ.
    fn ramp_images(n: usize, h: usize, w: usize) -> Vec<f32> {
        let len = n * h * w;
        (0..len)
            .map(|k| -1.0 + 2.0 * k as f32 / (len - 1) as f32)
            .collect()
    }

    #[test]
    fn to_gray_maps_range_and_clamps() {
        assert_eq!(to_gray(-1.0), 0);
        assert_eq!(to_gray(1.0), 255);
        // (0 + 1) · 127.5 = 127.5 rounds away from zero.
        assert_eq!(to_gray(0.0), 128);
        assert_eq!(to_gray(-7.0), 0);
        assert_eq!(to_gray(7.0), 255);
        assert_eq!(to_gray(f32::NAN), 0);
    }

    #[test]
    fn grid_places_scaled_cells_between_gaps() {
        // Three 2 × 2 images on a 2-wide grid, scale 2: cells are 4 × 4 pixels.
        let images = [
            -1.0, 1.0, 1.0, -1.0, // image 0: a diagonal
            0.0, 0.0, 0.0, 0.0, // image 1: mid gray
            1.0, 1.0, 1.0, 1.0, // image 2: white
        ];
        let (width, height, px) = grid_pixels(&images, 3, 2, 2, 2, 2);

        assert_eq!(
            (width, height),
            (2 * 4 + 3 * GAP as u32, 2 * 4 + 3 * GAP as u32)
        );
        let at = |x: usize, y: usize| px[y * width as usize + x];
        assert_eq!(at(0, 0), GAP_SHADE, "border");
        assert_eq!((at(2, 2), at(3, 3)), (0, 0), "image 0, pixel (0, 0) scaled");
        assert_eq!(
            (at(4, 2), at(5, 3)),
            (255, 255),
            "image 0, pixel (0, 1) scaled"
        );
        assert_eq!(at(6, 2), GAP_SHADE, "gap between cells");
        assert_eq!(at(8, 2), 128, "image 1 starts after the gap");
        assert_eq!(at(2, 8), 255, "image 2 on the second row");
        assert_eq!(at(8, 8), GAP_SHADE, "empty fourth cell");
    }

    #[test]
    #[should_panic(expected = "3 images of 2 × 2 need 12 values, got 11")]
    fn grid_checks_length() {
        grid_pixels(&[0.0; 11], 3, 2, 2, 2, 1);
    }

    #[test]
    fn png_round_trips_grid() {
        let dir = scratch_dir("images-png");
        let path = dir.join("grid.png");
        let images = ramp_images(5, 7, 6);

        grid_png(&path, &images, 5, 7, 6, 3, 2).unwrap();
        let read = read_png_gray(&path).unwrap();

        assert_eq!(read, grid_pixels(&images, 5, 7, 6, 3, 2));
        assert!(!dir.join("grid.png.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn grid_png_rejects_bad_arguments() {
        let dir = scratch_dir("images-bad");
        let path = dir.join("grid.png");

        let err = grid_png(&path, &[0.0; 10], 3, 2, 2, 2, 1).unwrap_err();

        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("grid.png"), "{err}");
        assert!(!path.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn read_png_names_file_on_garbage() {
        let dir = scratch_dir("images-garbage");
        let path = dir.join("not-a.png");
        fs::write(&path, b"hello").unwrap();

        let err = read_png_gray(&path).unwrap_err();

        assert!(err.to_string().contains("not-a.png"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// What the gif crate's decoder finds in a file.
    struct DecodedGif {
        repeat: gif::Repeat,
        palette: Vec<u8>,
        frames: Vec<DecodedFrame>,
    }

    struct DecodedFrame {
        width: u16,
        height: u16,
        delay: u16,
        pixels: Vec<u8>,
    }

    fn decode_gif(path: &Path) -> DecodedGif {
        let mut options = gif::DecodeOptions::new();
        options.set_color_output(gif::ColorOutput::Indexed);
        let mut decoder = options.read_info(File::open(path).unwrap()).unwrap();
        let palette = decoder.global_palette().unwrap().to_vec();
        let mut frames = Vec::new();
        while let Some(f) = decoder.read_next_frame().unwrap() {
            let (width, height, delay) = (f.width, f.height, f.delay);
            frames.push(DecodedFrame {
                width,
                height,
                delay,
                pixels: f.buffer.to_vec(),
            });
        }
        DecodedGif {
            repeat: decoder.repeat(),
            palette,
            frames,
        }
    }

    #[test]
    fn gif_has_header_loop_and_all_frames() {
        let dir = scratch_dir("images-gif");
        let path = dir.join("anim.gif");
        let frames: Vec<GrayFrame> = (0..3u8)
            .map(|k| (5, 4, (0..20u8).map(|p| p * 12 + k).collect()))
            .collect();

        write_gif(&path, &frames, 25).unwrap();

        let bytes = fs::read(&path).unwrap();
        assert_eq!(&bytes[..6], b"GIF89a");
        assert_eq!(
            bytes[6..10],
            [5, 0, 4, 0],
            "logical screen 5 × 4, little-endian"
        );
        let DecodedGif {
            repeat,
            palette,
            frames: decoded,
        } = decode_gif(&path);
        assert_eq!(repeat, gif::Repeat::Infinite);
        assert_eq!(palette[3 * 200..3 * 201], [200, 200, 200]);
        assert_eq!(decoded.len(), 3);
        for (k, (frame, want)) in decoded.iter().zip(&frames).enumerate() {
            assert_eq!(
                (frame.width, frame.height, frame.delay),
                (5, 4, 25),
                "frame {k}"
            );
            assert_eq!(frame.pixels, want.2, "frame {k} pixels");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn gif_rejects_empty_and_mismatched_frames() {
        let dir = scratch_dir("images-gif-bad");
        let path = dir.join("anim.gif");

        let err = write_gif(&path, &[], 10).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

        let frames = vec![(2, 2, vec![0; 4]), (3, 2, vec![0; 6])];
        let err = write_gif(&path, &frames, 10).unwrap_err();
        assert!(err.to_string().contains("frame 1 is 3 × 2"), "{err}");
        assert!(!path.exists() && !dir.join("anim.gif.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn gif_from_png_files_in_order() {
        let dir = scratch_dir("images-gif-png");
        for (k, name) in ["iter_000200.png", "iter_000000.png", "iter_000100.png"]
            .iter()
            .enumerate()
        {
            let value = [-1.0, 0.0, 1.0][k];
            grid_png(&dir.join(name), &[value; 4], 1, 2, 2, 1, 1).unwrap();
        }
        fs::write(dir.join("notes.txt"), b"not a frame").unwrap();

        let pngs = sorted_pngs(&dir).unwrap();
        let gif_path = dir.join("samples.gif");
        gif_from_pngs(&gif_path, &pngs, 50).unwrap();

        let names: Vec<_> = pngs
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            ["iter_000000.png", "iter_000100.png", "iter_000200.png"]
        );
        let frames = decode_gif(&gif_path).frames;
        // Centre pixel of each 6 × 6 grid: iter 0 was drawn with 0.0, 100 with 1.0, 200 with -1.0.
        let centres: Vec<u8> = frames.iter().map(|f| f.pixels[2 * 6 + 2]).collect();
        assert_eq!(centres, [128, 255, 0]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
