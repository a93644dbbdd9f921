//! Training history: one [`Record`] per logged iteration, saved as CSV (read back on
//! resume) and plotted as a two-panel SVG.
//!
//! # The JS estimate
//!
//! With the discriminator loss taken as the mean of its two cross-entropies,
//! `d_loss = −½ (E log D(x) + E log(1 − D(G(z))))`, the GAN value function is
//! `V = −2 · d_loss`. For the optimal discriminator `V = −ln 4 + 2 · JS(p_data ‖ p_g)`, so
//!
//! ```text
//! JS ≈ ln 2 − d_loss
//! ```
//!
//! It is only an estimate: the trained discriminator is not optimal, so the value is a
//! lower bound that can dip below zero. It reaches ln 2 when D separates the two
//! distributions perfectly and 0 when it cannot tell them apart.

use std::f32::consts::LN_2;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::atomic::{write_atomic, write_bytes_atomic};

/// First line of the CSV file.
pub const CSV_HEADER: &str = "iter,d_loss,g_loss,d_acc,d_real,d_fake,js_estimate";
/// The plot averages consecutive records so that each line has about this many points.
pub const MAX_PLOT_POINTS: usize = 500;

const PLOT_SIZE: (u32, u32) = (1000, 800);
const D_COLOR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const G_COLOR: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
const ACC_COLOR: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const JS_COLOR: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// The statistics of one logged training iteration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Training iteration (generator steps taken so far).
    pub iter: u64,
    /// Discriminator loss: mean of its cross-entropies on the real and the fake batch.
    pub d_loss: f32,
    /// Generator loss.
    pub g_loss: f32,
    /// Discriminator accuracy over the real and fake batches, in [0, 1].
    pub d_acc: f32,
    /// Mean D(x) on the real batch.
    pub d_real: f32,
    /// Mean D(G(z)) on the fake batch.
    pub d_fake: f32,
    /// Jensen–Shannon estimate `ln 2 − d_loss` (see the module docs).
    pub js: f32,
}

impl Record {
    /// A record whose `js` is computed as `ln 2 − d_loss`.
    pub fn new(iter: u64, d_loss: f32, g_loss: f32, d_acc: f32, d_real: f32, d_fake: f32) -> Self {
        let js = LN_2 - d_loss;
        Record {
            iter,
            d_loss,
            g_loss,
            d_acc,
            d_real,
            d_fake,
            js,
        }
    }
}

/// Errors reading or plotting a history; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// The first line is not [`CSV_HEADER`].
    #[error("{}: line 1: expected the header `{CSV_HEADER}`, found `{found}`", .path.display())]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// The line found.
        found: String,
    },

    /// A data row that does not parse.
    #[error("{}: line {line}: {reason}", .path.display())]
    BadRow {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// Plotters failed to draw.
    #[error("{}: cannot draw the plot: {message}", .path.display())]
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// Plotters' message.
        message: String,
    },
}

/// All records of a run, in iteration order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The records, oldest first.
    pub records: Vec<Record>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        History::default()
    }

    /// Appends a record.
    pub fn push(&mut self, record: Record) {
        self.records.push(record);
    }

    /// Drops the records after iteration `iter`, e.g. when resuming from a checkpoint
    /// older than the CSV file.
    pub fn truncate_after(&mut self, iter: u64) {
        self.records.retain(|r| r.iter <= iter);
    }

    /// Writes the records as CSV with the header [`CSV_HEADER`], atomically. Floats are
    /// written in their shortest exact form, so [`History::read_csv`] gives them back
    /// bit for bit.
    pub fn write_csv(&self, path: &Path) -> io::Result<()> {
        write_atomic(path, |out| {
            writeln!(out, "{CSV_HEADER}")?;
            for r in &self.records {
                let Record {
                    iter,
                    d_loss,
                    g_loss,
                    d_acc,
                    d_real,
                    d_fake,
                    js,
                } = r;
                writeln!(
                    out,
                    "{iter},{d_loss},{g_loss},{d_acc},{d_real},{d_fake},{js}"
                )?;
            }
            Ok(())
        })
    }

    /// Reads a CSV file written by [`History::write_csv`]. Blank lines are skipped.
    pub fn read_csv(path: &Path) -> Result<History, HistoryError> {
        let text = fs::read_to_string(path).map_err(|source| HistoryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut lines = text.lines().enumerate();

        let header = lines
            .next()
            .map_or("", |(_, l)| l.trim_start_matches('\u{feff}'));
        if header.trim() != CSV_HEADER {
            let found = header.to_string();
            return Err(HistoryError::BadHeader {
                path: path.to_path_buf(),
                found,
            });
        }

        let mut records = Vec::new();
        for (index, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
            let record = parse_row(line).map_err(|reason| HistoryError::BadRow {
                path: path.to_path_buf(),
                line: index + 1,
                reason,
            })?;
            records.push(record);
        }
        Ok(History { records })
    }

    /// Plots the history as an SVG of two stacked panels, written atomically: D and G
    /// loss on top; D accuracy and the JS estimate below, with a dashed line at ln 2.
    ///
    /// Runs longer than [`MAX_PLOT_POINTS`] records are averaged over consecutive windows
    /// of [`plot_window`] records, one point per window; the axis label and the legends
    /// say so. Non-finite values are left out.
    pub fn plot_svg(&self, path: &Path, title: &str) -> Result<(), HistoryError> {
        let mut svg = String::new();
        self.draw(&mut svg, title)
            .map_err(|message| HistoryError::Plot {
                path: path.to_path_buf(),
                message,
            })?;
        write_bytes_atomic(path, svg.as_bytes()).map_err(|source| HistoryError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    fn draw(&self, svg: &mut String, title: &str) -> Result<(), String> {
        let window = plot_window(self.records.len());
        let series = |f: fn(&Record) -> f32| window_means(&self.records, window, f);
        let (d_loss, g_loss) = (series(|r| r.d_loss), series(|r| r.g_loss));
        let (d_acc, js) = (series(|r| r.d_acc), series(|r| r.js));

        let suffix = match window {
            1 => String::new(),
            w => format!(" (mean of {w})"),
        };
        let x_desc = match window {
            1 => "iteration".to_string(),
            w => format!("iteration (each point: mean of {w} consecutive records)"),
        };
        let top = [
            Line {
                label: format!("D loss{suffix}"),
                color: D_COLOR,
                points: &d_loss,
            },
            Line {
                label: format!("G loss{suffix}"),
                color: G_COLOR,
                points: &g_loss,
            },
        ];
        let bottom = [
            Line {
                label: format!("D accuracy{suffix}"),
                color: ACC_COLOR,
                points: &d_acc,
            },
            Line {
                label: format!("JS estimate, ln 2 − D loss{suffix}"),
                color: JS_COLOR,
                points: &js,
            },
        ];

        let root = SVGBackend::with_string(svg, PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(title, ("sans-serif", 24))
            .map_err(|e| e.to_string())?;
        let panels = root.split_evenly((2, 1));
        let x_range = self.x_range();
        draw_panel(&panels[0], &top, x_range.clone(), &x_desc, "loss", None)?;
        draw_panel(
            &panels[1],
            &bottom,
            x_range,
            &x_desc,
            "accuracy / nats",
            Some(LN_2.into()),
        )?;
        root.present().map_err(|e| e.to_string())
    }

    fn x_range(&self) -> std::ops::Range<f64> {
        let first = self.records.first().map_or(0.0, |r| r.iter as f64);
        let last = self.records.last().map_or(0.0, |r| r.iter as f64);
        if last > first {
            first..last
        } else {
            first..first + 1.0
        }
    }
}

/// One plotted line.
struct Line<'a> {
    label: String,
    color: RGBColor,
    points: &'a [(f64, f64)],
}

/// The window the plot averages over: `max(1, n / MAX_PLOT_POINTS)` records.
pub fn plot_window(n: usize) -> usize {
    (n / MAX_PLOT_POINTS).max(1)
}

/// Means over consecutive windows of `window` records: x is the mean iteration, y the
/// mean of the finite values of `field`. A window with no finite value gives no point.
fn window_means(records: &[Record], window: usize, field: fn(&Record) -> f32) -> Vec<(f64, f64)> {
    let mut points = Vec::with_capacity(records.len() / window + 1);
    for chunk in records.chunks(window) {
        let finite: Vec<f64> = chunk
            .iter()
            .map(field)
            .filter(|v| v.is_finite())
            .map(f64::from)
            .collect();
        if finite.is_empty() {
            continue;
        }
        let x = chunk.iter().map(|r| r.iter as f64).sum::<f64>() / chunk.len() as f64;
        let y = finite.iter().sum::<f64>() / finite.len() as f64;
        points.push((x, y));
    }
    points
}

/// The y range covering every point (and `reference`), padded by 5 %.
fn y_range(lines: &[Line], reference: Option<f64>) -> std::ops::Range<f64> {
    let ys = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .chain(reference);
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    if lo > hi {
        return 0.0..1.0;
    }
    let pad = if hi > lo { 0.05 * (hi - lo) } else { 0.5 };
    lo - pad..hi + pad
}

fn draw_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    lines: &[Line],
    x_range: std::ops::Range<f64>,
    x_desc: &str,
    y_desc: &str,
    reference: Option<f64>,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range.clone(), y_range(lines, reference))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(|e| err(&e))?;

    for line in lines {
        let color = line.color;
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(line.label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }

    if let Some(y) = reference {
        let ends = [(x_range.start, y), (x_range.end, y)];
        let style = BLACK.stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new(ends, 8, 6, style))
            .map_err(|e| err(&e))?
            .label("ln 2 ≈ 0.693 (largest possible JS)")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
    }

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))
}

/// Parses one CSV data row; the error says which field is wrong.
fn parse_row(line: &str) -> Result<Record, String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if fields.len() != 7 {
        return Err(format!(
            "expected 7 comma-separated fields, found {}",
            fields.len()
        ));
    }

    let iter = fields[0].parse::<u64>().map_err(|_| {
        format!(
            "iter: expected a non-negative integer, found `{}`",
            fields[0]
        )
    })?;
    let names = [
        "d_loss",
        "g_loss",
        "d_acc",
        "d_real",
        "d_fake",
        "js_estimate",
    ];
    let mut values = [0f32; 6];
    for ((value, name), text) in values.iter_mut().zip(names).zip(&fields[1..]) {
        *value = text
            .parse::<f32>()
            .map_err(|_| format!("{name}: expected a number, found `{text}`"))?;
    }

    let [d_loss, g_loss, d_acc, d_real, d_fake, js] = values;
    Ok(Record {
        iter,
        d_loss,
        g_loss,
        d_acc,
        d_real,
        d_fake,
        js,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atomic::scratch_dir;

    /// A synthetic run: losses that decay with a wiggle, accuracy drifting towards ½.
    fn synthetic(n: u64) -> History {
        let mut history = History::new();
        for i in 0..n {
            let t = i as f32 / n.max(1) as f32;
            let wiggle = 0.05 * (i as f32 * 0.37).sin();
            let d_loss = 0.2 + 0.45 * t + wiggle;
            let g_loss = 3.0 - 2.2 * t - wiggle;
            history.push(Record::new(
                i,
                d_loss,
                g_loss,
                1.0 - 0.5 * t,
                0.9 - 0.4 * t,
                0.1 + 0.4 * t,
            ));
        }
        history
    }

    fn write_text(test: &str, text: &str) -> (PathBuf, PathBuf) {
        let dir = scratch_dir(test);
        let path = dir.join("history.csv");
        fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn record_new_computes_js_estimate() {
        let r = Record::new(7, 0.5, 1.0, 0.75, 0.6, 0.3);
        assert_eq!(r.js, LN_2 - 0.5);
        assert_eq!((r.iter, r.d_acc, r.d_fake), (7, 0.75, 0.3));
    }

    #[test]
    fn csv_round_trips_exactly() {
        let dir = scratch_dir("history-csv");
        let path = dir.join("history.csv");
        let mut history = synthetic(20);
        history.push(Record::new(
            1_000_000,
            1e-7,
            -3.25,
            0.0,
            1.0,
            f32::MIN_POSITIVE,
        ));

        history.write_csv(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let read = History::read_csv(&path).unwrap();

        assert_eq!(text.lines().next(), Some(CSV_HEADER));
        assert_eq!(text.lines().count(), 22);
        assert_eq!(read, history);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_number_names_file_line_and_field() {
        let text = format!("{CSV_HEADER}\n0,1,2,0.5,0.5,0.5,0.1\n\n5,abc,2,0.5,0.5,0.5,0.1\n");
        let (dir, path) = write_text("history-badnum", &text);

        let err = History::read_csv(&path).unwrap_err();

        assert!(
            matches!(err, HistoryError::BadRow { line: 4, .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        for part in ["history.csv", "line 4", "d_loss", "`abc`"] {
            assert!(msg.contains(part), "message lacks {part}: {msg}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wrong_field_count_and_negative_iter_are_errors() {
        let (dir, path) = write_text("history-fields", &format!("{CSV_HEADER}\n1,2,3\n"));
        let err = History::read_csv(&path).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected 7 comma-separated fields, found 3"),
            "{err}"
        );

        fs::write(&path, format!("{CSV_HEADER}\n-1,1,2,0.5,0.5,0.5,0.1\n")).unwrap();
        let err = History::read_csv(&path).unwrap_err();
        assert!(err.to_string().contains("line 2: iter"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_header_and_missing_file_are_errors() {
        let (dir, path) = write_text("history-header", "step,loss\n1,2\n");
        let err = History::read_csv(&path).unwrap_err();
        assert!(matches!(err, HistoryError::BadHeader { .. }), "{err:?}");
        assert!(err.to_string().contains("`step,loss`"), "{err}");

        fs::write(&path, "").unwrap();
        assert!(matches!(
            History::read_csv(&path),
            Err(HistoryError::BadHeader { .. })
        ));

        let absent = dir.join("absent.csv");
        let err = History::read_csv(&absent).unwrap_err();
        assert!(matches!(err, HistoryError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("absent.csv"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn truncate_after_keeps_earlier_records() {
        let mut history = synthetic(10);
        history.truncate_after(4);
        let iters: Vec<u64> = history.records.iter().map(|r| r.iter).collect();
        assert_eq!(iters, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn plot_window_targets_max_points() {
        assert_eq!(plot_window(0), 1);
        assert_eq!(plot_window(999), 1);
        assert_eq!(plot_window(1000), 2);
        assert_eq!(plot_window(30_000), 60);
    }

    #[test]
    fn window_means_average_and_skip_non_finite() {
        let mut records: Vec<Record> = (0..5)
            .map(|i| Record::new(i, i as f32, 0.0, 0.0, 0.0, 0.0))
            .collect();
        records[3].d_loss = f32::NAN;

        let points = window_means(&records, 2, |r| r.d_loss);

        // Windows {0, 1}, {2, 3 (NaN, skipped)}, {4}: x is the mean iteration.
        assert_eq!(points, [(0.5, 0.5), (2.5, 2.0), (4.0, 4.0)]);
        let all_nan = window_means(&records[3..4], 1, |r| r.d_loss);
        assert!(all_nan.is_empty());
    }

    #[test]
    fn y_range_pads_and_handles_flat_or_empty_data() {
        let points = [(0.0, 1.0), (1.0, 3.0)];
        let line = Line {
            label: String::new(),
            color: BLACK,
            points: &points,
        };
        let range = y_range(std::slice::from_ref(&line), Some(0.0));
        assert!(
            (range.start + 0.15).abs() < 1e-12 && (range.end - 3.15).abs() < 1e-12,
            "{range:?}"
        );

        let flat = [(0.0, 2.0)];
        let line = Line {
            label: String::new(),
            color: BLACK,
            points: &flat,
        };
        assert_eq!(y_range(&[line], None), 1.5..2.5);
        assert_eq!(y_range(&[], None), 0.0..1.0);
    }

    #[test]
    fn plots_long_run_as_svg_with_smoothing_note() {
        let dir = scratch_dir("history-plot");
        let path = dir.join("history.svg");

        synthetic(30_000).plot_svg(&path, "GAN on MNIST").unwrap();

        let svg = fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        for part in [
            "GAN on MNIST",
            "D loss (mean of 60)",
            "G loss",
            "D accuracy",
            "JS estimate",
            "ln 2",
            "mean of 60 consecutive records",
        ] {
            assert!(svg.contains(part), "SVG lacks {part}");
        }
        assert!(!dir.join("history.svg.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn plots_short_empty_and_nan_histories() {
        let dir = scratch_dir("history-plot-small");
        let path = dir.join("h.svg");

        let mut short = synthetic(3);
        short.records[1].g_loss = f32::INFINITY;
        short.plot_svg(&path, "short").unwrap();
        let svg = fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && !svg.contains("mean of"));

        History::new().plot_svg(&path, "empty").unwrap();
        assert!(fs::read_to_string(&path).unwrap().contains("empty"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
