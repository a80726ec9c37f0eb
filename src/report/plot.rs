//! Loss and accuracy (or MAE) curves per epoch as a PNG, like the tutorials' matplotlib plots.
//!
//! Drawn with plotters into an RGB buffer and encoded with the `image` crate. Text uses a font
//! compiled into the binary (DejaVu Sans, see `assets/fonts/`), so plotting works on machines
//! without fontconfig or any system font.

use super::MetricsRow;
use crate::model::Task;
use crate::store::write_atomic;
use crate::{Error, Result};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

/// Size of the whole picture: two panels side by side.
pub const PLOT_WIDTH: u32 = 1200;
pub const PLOT_HEIGHT: u32 = 480;

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VAL: RGBColor = RGBColor(255, 127, 14);
const TEST: RGBColor = RGBColor(44, 160, 44);

/// Draws the history's curves and writes them to `path` (atomically: the PNG is encoded in
/// memory first, so a failure leaves any previous file intact).
pub fn plot_history(path: &Path, rows: &[MetricsRow], task: Task) -> Result<()> {
    let png = render_png(rows, task)
        .map_err(|msg| Error::io(path, std::io::Error::other(format!("cannot draw: {msg}"))))?;
    write_atomic(path, &png)
}

/// One curve: a legend label, its colour and its finite `(epoch, value)` points.
struct Curve {
    label: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

fn curve(
    label: &'static str,
    color: RGBColor,
    rows: &[MetricsRow],
    f: impl Fn(&MetricsRow) -> Option<f64>,
) -> Curve {
    let points = rows
        .iter()
        .filter_map(|r| f(r).map(|v| (r.epoch as f64, v)))
        // A diverged epoch's NaN would poison the axis range; it is simply not drawn.
        .filter(|(_, v)| v.is_finite())
        .collect();
    Curve {
        label,
        color,
        points,
    }
}

/// The PNG bytes of the two panels for `rows`.
pub fn render_png(rows: &[MetricsRow], task: Task) -> std::result::Result<Vec<u8>, String> {
    if rows.is_empty() {
        return Err("there are no epochs to plot".into());
    }
    register_embedded_font()?;

    let loss = vec![
        curve("train", TRAIN, rows, |r| Some(r.train_loss)),
        curve("val", VAL, rows, |r| r.val_loss),
        curve("test", TEST, rows, |r| r.test_loss),
    ];
    let (metric, title, y_desc) = match task {
        Task::Classification => {
            let pct = |v: Option<f64>| v.map(|x| 100.0 * x);
            (
                vec![
                    curve("train", TRAIN, rows, |r| pct(r.train_accuracy)),
                    curve("val", VAL, rows, |r| pct(r.val_accuracy)),
                    curve("test", TEST, rows, |r| pct(r.test_accuracy)),
                ],
                "Accuracy",
                "accuracy (%)",
            )
        }
        Task::Regression => (
            vec![
                curve("train", TRAIN, rows, |r| r.train_mae),
                curve("val", VAL, rows, |r| r.val_mae),
                curve("test", TEST, rows, |r| r.test_mae),
            ],
            "Mean absolute error",
            "MAE",
        ),
    };

    let (w, h) = (PLOT_WIDTH, PLOT_HEIGHT);
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let panels = root.split_evenly((1, 2));
        // Losses and errors fall and accuracies rise, so each legend goes where its curves
        // usually end up far from it.
        draw_panel(
            &panels[0],
            "Loss",
            "loss",
            &loss,
            SeriesLabelPosition::UpperRight,
        )?;
        let corner = match task {
            Task::Classification => SeriesLabelPosition::LowerRight,
            Task::Regression => SeriesLabelPosition::UpperRight,
        };
        draw_panel(&panels[1], title, y_desc, &metric, corner)?;
        root.present().map_err(|e| e.to_string())?;
    }
    let img = image::RgbImage::from_raw(w, h, rgb).ok_or("the pixel buffer has the wrong size")?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(png)
}

/// plotters looks fonts up by family name; ours is registered once as the sans-serif family,
/// which is what plotters' default text style asks for.
fn register_embedded_font() -> std::result::Result<(), String> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    if *REGISTERED.get_or_init(|| register_font("sans-serif", FontStyle::Normal, FONT).is_ok()) {
        Ok(())
    } else {
        Err("the embedded font is invalid".into())
    }
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    curves: &[Curve],
    legend: SeriesLabelPosition,
) -> std::result::Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let all = || curves.iter().flat_map(|c| c.points.iter());
    let x_range = padded(all().map(|p| p.0), 0.02, 0.5);
    let y_range = padded(all().map(|p| p.1), 0.05, 0.5);
    let x_range = x_range.start.max(0.0)..x_range.end;
    let whole = |x: &f64| {
        if x.fract() == 0.0 {
            format!("{x:.0}")
        } else {
            String::new()
        }
    };

    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range, y_range)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_label_formatter(&whole)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| err(&e))?;

    for c in curves.iter().filter(|c| !c.points.is_empty()) {
        let color = c.color;
        chart
            .draw_series(LineSeries::new(
                c.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(c.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        // Markers, so that a single epoch (a line of one point) still shows.
        chart
            .draw_series(c.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|e| err(&e))?;
    Ok(())
}

/// The range of `values` widened by `frac` of its span on each side, or by `flat` when all
/// values are equal (a single epoch), so that no axis is empty.
fn padded(values: impl Iterator<Item = f64>, frac: f64, flat: f64) -> Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let span = hi - lo;
    if span <= f64::EPSILON * hi.abs().max(1.0) {
        let d = flat.max(lo.abs() * 0.05);
        return lo - d..hi + d;
    }
    lo - frac * span..hi + frac * span
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_rows(n: usize) -> Vec<MetricsRow> {
        (1..=n)
            .map(|e| {
                let t = e as f64;
                MetricsRow {
                    epoch: e,
                    train_loss: 1.0 / t,
                    train_accuracy: Some(1.0 - 0.5 / t),
                    val_loss: Some(1.1 / t),
                    val_accuracy: Some(1.0 - 0.6 / t),
                    test_loss: Some(1.2 / t),
                    test_accuracy: Some(1.0 - 0.7 / t),
                    ..MetricsRow::default()
                }
            })
            .collect()
    }

    fn regression_rows(n: usize) -> Vec<MetricsRow> {
        (1..=n)
            .map(|e| MetricsRow {
                epoch: e,
                train_loss: 0.5 / e as f64,
                train_mae: Some(0.4 / e as f64),
                test_loss: Some(0.6 / e as f64),
                test_mae: Some(0.5 / e as f64),
                ..MetricsRow::default()
            })
            .collect()
    }

    /// Decodes the PNG and checks its size and that it is a picture, not a blank page: many
    /// non-white pixels, each curve's colour present, and anti-aliased text (many shades).
    fn check_png(png: &[u8], expect_val: bool) {
        let img = image::load_from_memory(png).expect("decodes").to_rgb8();
        assert_eq!(img.dimensions(), (PLOT_WIDTH, PLOT_HEIGHT));
        let non_white = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        assert!(non_white > 5_000, "only {non_white} non-white pixels");
        let distinct: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        assert!(distinct.len() > 50, "only {} colours", distinct.len());
        let has = |c: RGBColor| img.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count() > 20;
        assert!(has(TRAIN), "no train curve");
        assert!(has(TEST), "no test curve");
        assert_eq!(has(VAL), expect_val, "val curve presence");
    }

    #[test]
    fn classification_history_draws() {
        check_png(
            &render_png(&class_rows(12), Task::Classification).unwrap(),
            true,
        );
    }

    #[test]
    fn regression_history_draws() {
        check_png(
            &render_png(&regression_rows(30), Task::Regression).unwrap(),
            false,
        );
    }

    #[test]
    fn single_epoch_draws() {
        check_png(
            &render_png(&class_rows(1), Task::Classification).unwrap(),
            true,
        );
        check_png(
            &render_png(&regression_rows(1), Task::Regression).unwrap(),
            false,
        );
    }

    #[test]
    fn non_finite_values_are_skipped() {
        let mut rows = class_rows(5);
        rows[2].train_loss = f64::NAN;
        rows[3].val_loss = Some(f64::INFINITY);
        check_png(&render_png(&rows, Task::Classification).unwrap(), true);
    }

    #[test]
    fn empty_history_is_an_error() {
        assert!(render_png(&[], Task::Classification).is_err());
    }

    #[test]
    fn plot_history_writes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        plot_history(&path, &class_rows(3), Task::Classification).unwrap();
        check_png(&std::fs::read(&path).unwrap(), true);
    }

    #[test]
    fn padded_ranges_are_never_empty() {
        assert_eq!(padded([3.0].into_iter(), 0.05, 0.5), 2.5..3.5);
        assert_eq!(padded(std::iter::empty(), 0.05, 0.5), 0.0..1.0);
        let r = padded([0.0, 10.0].into_iter(), 0.1, 0.5);
        assert_eq!(r, -1.0..11.0);
    }
}
