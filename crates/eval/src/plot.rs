//! The seen–unseen curve as a PNG, with the calibration points marked on it.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::EvalError;
use crate::curve::SeenUnseenCurve;
use crate::io::write_atomic;

const WIDTH: u32 = 800;
const HEIGHT: u32 = 640;
const MARK_COLOURS: [RGBColor; 5] = [
    RGBColor(0, 0, 0),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
];

/// A labelled point drawn on the curve, e.g. γ = 0, ALG or the oracle γ\*.
#[derive(Clone, Debug, PartialEq)]
pub struct PlotMark {
    /// Legend text.
    pub label: String,
    /// Acc_{S/Y} in percent.
    pub s_y: f64,
    /// Acc_{U/Y} in percent.
    pub u_y: f64,
}

/// Draws the curve (Acc_{S/Y} on x, Acc_{U/Y} on y, both in percent) with `marks`, and writes a PNG
/// atomically to `path`. Does nothing useful for a curve without S or U samples: that is an error.
pub fn plot_seen_unseen(
    curve: &SeenUnseenCurve,
    marks: &[PlotMark],
    title: &str,
    path: &Path,
) -> Result<(), EvalError> {
    let plot_error = |message: String| EvalError::Plot {
        path: path.to_owned(),
        message,
    };
    if !curve.is_defined() {
        return Err(plot_error(
            "the test samples lack S or U, so there is no seen–unseen curve to draw".into(),
        ));
    }
    let points: Vec<(f64, f64)> = curve
        .points()
        .iter()
        .filter_map(|p| Some((p.s_y.percent()?, p.u_y.percent()?)))
        .collect();
    register_font();
    let mut buffer = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    draw(&mut buffer, &points, marks, title).map_err(plot_error)?;
    write_png(&buffer, path)
}

fn draw(buffer: &mut [u8], points: &[(f64, f64)], marks: &[PlotMark], title: &str) -> Result<(), String> {
    let root = BitMapBackend::with_buffer(buffer, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..100f64, 0f64..100f64)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("Acc S/Y (%)")
        .y_desc("Acc U/Y (%)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| e.to_string())?;
    let curve_colour = RGBColor(31, 119, 180);
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            curve_colour.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?
        .label("seen–unseen curve")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], curve_colour.stroke_width(2)));
    for (mark, colour) in marks.iter().zip(MARK_COLOURS.iter().cycle()) {
        let colour = *colour;
        chart
            .draw_series(std::iter::once(Circle::new(
                (mark.s_y, mark.u_y),
                6,
                colour.filled(),
            )))
            .map_err(|e| e.to_string())?
            .label(mark.label.clone())
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// One line of the per-epoch plot: a label and a value (percent) per epoch, `None` where not measured.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochSeries {
    /// Legend text.
    pub label: String,
    /// One value per entry of the epochs, in percent.
    pub values: Vec<Option<f64>>,
}

/// Draws accuracies (percent) against the epoch, one line per series (e.g. Acc_{S/Y}, Acc_{U/Y} and the
/// NCM probe's Acc_{U/Y}, the paper's view of how U collapses while the features hold), and writes a PNG
/// atomically to `path`.
pub fn plot_epochs(
    epochs: &[i64],
    series: &[EpochSeries],
    title: &str,
    path: &Path,
) -> Result<(), EvalError> {
    let plot_error = |message: String| EvalError::Plot {
        path: path.to_owned(),
        message,
    };
    if epochs.is_empty() {
        return Err(plot_error("no evaluated epoch to draw".into()));
    }
    register_font();
    let mut buffer = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    draw_epochs(&mut buffer, epochs, series, title).map_err(plot_error)?;
    write_png(&buffer, path)
}

fn draw_epochs(buffer: &mut [u8], epochs: &[i64], series: &[EpochSeries], title: &str) -> Result<(), String> {
    let root = BitMapBackend::with_buffer(buffer, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let first = *epochs.iter().min().expect("not empty") as f64;
    let last = (*epochs.iter().max().expect("not empty") as f64).max(first + 1.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(56)
        .build_cartesian_2d(first..last, 0f64..100f64)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("epoch (−1: pre-trained)")
        .y_desc("accuracy (%)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| e.to_string())?;
    for (line, colour) in series.iter().zip(MARK_COLOURS.iter().skip(1).cycle()) {
        let colour = *colour;
        let points: Vec<(f64, f64)> = epochs
            .iter()
            .zip(&line.values)
            .filter_map(|(&epoch, value)| Some((epoch as f64, (*value)?)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(line.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// Encodes an RGB buffer of the plot size as PNG and writes it atomically; a failed write is the
/// [`EvalError::Io`] of `path` (a full disk is not a drawing problem).
fn write_png(buffer: &[u8], path: &Path) -> Result<(), EvalError> {
    let encode = || -> Result<Vec<u8>, png::EncodingError> {
        let mut png_bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut png_bytes, WIDTH, HEIGHT);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.write_header()?.write_image_data(buffer)?;
        Ok(png_bytes)
    };
    let png_bytes = encode().map_err(|e| EvalError::Plot {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    write_atomic(path, &png_bytes)
}

/// Plotters draws text with fonts registered by name; DejaVu Sans ships inside the binary, so plots need
/// no system fonts.
fn register_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The bytes are a valid TrueType font bundled by the `dejavu` crate.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classes::ClassSplit;
    use crate::ranking::RankedScores;
    use crate::scores::Matrix;

    #[test]
    fn writes_a_png_of_the_expected_size() {
        let matrix = Matrix::new(4, 2, vec![1.0f32, 0.0, 3.0, 0.0, 2.0, 0.0, 4.0, 0.0]).unwrap();
        let split = ClassSplit::from_absent(2, &[1]).unwrap();
        let curve = SeenUnseenCurve::new(&RankedScores::new(&matrix, &[0, 0, 1, 1], &split, 1));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curve.png");
        let marks = [PlotMark {
            label: "γ = 0".into(),
            s_y: 100.0,
            u_y: 0.0,
        }];
        plot_seen_unseen(&curve, &marks, "test", &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().unwrap();
        assert_eq!((reader.info().width, reader.info().height), (WIDTH, HEIGHT));
    }

    #[test]
    fn the_epoch_plot_is_a_png_and_needs_an_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("epochs.png");
        let series = [EpochSeries {
            label: "U/Y".into(),
            values: vec![Some(60.0), None, Some(0.0)],
        }];
        plot_epochs(&[-1, 0, 1], &series, "t", &path).unwrap();
        assert!(std::fs::read(&path).unwrap().starts_with(b"\x89PNG"));
        let err = plot_epochs(&[], &series, "t", &path).unwrap_err();
        assert!(err.to_string().contains("no evaluated epoch"), "{err}");
    }

    #[test]
    fn a_curve_without_absent_samples_cannot_be_plotted() {
        let matrix = Matrix::new(1, 2, vec![1.0f32, 0.0]).unwrap();
        let split = ClassSplit::from_absent(2, &[1]).unwrap();
        let curve = SeenUnseenCurve::new(&RankedScores::new(&matrix, &[0], &split, 1));
        let dir = tempfile::tempdir().unwrap();
        let err = plot_seen_unseen(&curve, &[], "t", &dir.path().join("c.png")).unwrap_err();
        assert!(err.to_string().contains("lack S or U"), "{err}");
    }
}
