//! The seen–unseen curve as a PNG, with the calibration points marked on it.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::EvalError;
use crate::curve::SeenUnseenCurve;
use crate::io::write_atomic;

const WIDTH: u32 = 800;
const HEIGHT: u32 = 640;
const MARK_COLOURS: [RGBColor; 8] = [
    RGBColor(0, 0, 0),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];
const CURVE_COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(127, 127, 127),
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
    let plot_error = plot_error(path);
    if !curve.is_defined() {
        return Err(plot_error(
            "the test samples lack S or U, so there is no seen–unseen curve to draw".into(),
        ));
    }
    let line = CurveLine {
        label: "seen–unseen curve".into(),
        points: curve_points(curve),
    };
    plot_seen_unseen_overlay(&[line], marks, title, path)
}

/// A seen–unseen curve of one model, as (Acc_{S/Y}, Acc_{U/Y}) points in percent, for an overlay.
#[derive(Clone, Debug, PartialEq)]
pub struct CurveLine {
    /// Legend text, e.g. the method.
    pub label: String,
    /// The curve's points in order of increasing γ.
    pub points: Vec<(f64, f64)>,
}

/// The points of `curve` in percent, those where S/Y or U/Y is undefined left out.
pub fn curve_points(curve: &SeenUnseenCurve) -> Vec<(f64, f64)> {
    (curve.points().iter())
        .filter_map(|p| Some((p.s_y.percent()?, p.u_y.percent()?)))
        .collect()
}

/// Draws several seen–unseen curves in one chart (e.g. fine-tuning and Holistic Transfer on one
/// benchmark: the paper's Figure 1) with `marks`, and writes a PNG atomically to `path`.
pub fn plot_seen_unseen_overlay(
    curves: &[CurveLine],
    marks: &[PlotMark],
    title: &str,
    path: &Path,
) -> Result<(), EvalError> {
    let plot_error = plot_error(path);
    if curves.iter().all(|curve| curve.points.is_empty()) {
        return Err(plot_error("no curve to draw".into()));
    }
    register_font();
    let mut buffer = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    draw(&mut buffer, curves, marks, title).map_err(plot_error)?;
    write_png(&buffer, (WIDTH, HEIGHT), path)
}

fn draw(buffer: &mut [u8], curves: &[CurveLine], marks: &[PlotMark], title: &str) -> Result<(), String> {
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
    for (curve, colour) in curves.iter().zip(CURVE_COLOURS.iter().cycle()) {
        let colour = *colour;
        chart
            .draw_series(LineSeries::new(
                curve.points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(curve.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
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
    draw_legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
    root.present().map_err(|e| e.to_string())
}

/// The error of a plot that cannot be drawn into `path`, from its message.
fn plot_error(path: &Path) -> impl Fn(String) -> EvalError + '_ {
    move |message| EvalError::Plot {
        path: path.to_owned(),
        message,
    }
}

/// The legend of a chart's labelled series, boxed, at `position`.
fn draw_legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
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
    let plot_error = plot_error(path);
    if epochs.is_empty() {
        return Err(plot_error("no evaluated epoch to draw".into()));
    }
    register_font();
    let mut buffer = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    let axis = ValueAxis {
        label: "accuracy (%)",
        range: (0.0, 100.0),
    };
    draw_epochs(&mut buffer, epochs, series, title, &axis).map_err(plot_error)?;
    write_png(&buffer, (WIDTH, HEIGHT), path)
}

/// Draws any values against the epoch (e.g. the head's weight norms by class group), the y axis from 0 (or
/// the lowest value, if negative) to a little above the highest, and writes a PNG atomically to `path`.
pub fn plot_epoch_values(
    epochs: &[i64],
    series: &[EpochSeries],
    title: &str,
    y_label: &str,
    path: &Path,
) -> Result<(), EvalError> {
    let plot_error = plot_error(path);
    let values: Vec<f64> = (series.iter())
        .flat_map(|line| line.values.iter().flatten().copied())
        .filter(|value| value.is_finite())
        .collect();
    if epochs.is_empty() || values.is_empty() {
        return Err(plot_error("no value to draw".into()));
    }
    let low = values.iter().copied().fold(0.0, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let axis = ValueAxis {
        label: y_label,
        range: (low * 1.1, (high * 1.1).max(low * 1.1 + 1e-6)),
    };
    register_font();
    let mut buffer = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    draw_epochs(&mut buffer, epochs, series, title, &axis).map_err(plot_error)?;
    write_png(&buffer, (WIDTH, HEIGHT), path)
}

/// The y axis of a per-epoch plot.
struct ValueAxis<'a> {
    label: &'a str,
    range: (f64, f64),
}

fn draw_epochs(
    buffer: &mut [u8],
    epochs: &[i64],
    series: &[EpochSeries],
    title: &str,
    axis: &ValueAxis<'_>,
) -> Result<(), String> {
    let root = BitMapBackend::with_buffer(buffer, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let first = *epochs.iter().min().expect("not empty") as f64;
    let last = (*epochs.iter().max().expect("not empty") as f64).max(first + 1.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(56)
        .build_cartesian_2d(first..last, axis.range.0..axis.range.1)
        .map_err(|e| e.to_string())?;
    let span = axis.range.1 - axis.range.0;
    let decimals = if span >= 20.0 {
        0
    } else if span >= 2.0 {
        1
    } else {
        2
    };
    chart
        .configure_mesh()
        .x_desc("epoch (−1: pre-trained)")
        .y_desc(axis.label)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.decimals$}"))
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
    draw_legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
    root.present().map_err(|e| e.to_string())
}

/// One group of bars of a bar chart (e.g. a benchmark), a value per series (`None`: not measured, no bar).
#[derive(Clone, Debug, PartialEq)]
pub struct BarGroup {
    /// The group's label under its bars.
    pub label: String,
    /// One value per series, in percent.
    pub values: Vec<Option<f64>>,
}

/// Draws grouped bars of percentages (e.g. the NCM probe's Acc_{U/Y} before and after fine-tuning, per
/// benchmark), each bar labelled with its value, and writes a PNG atomically to `path`.
pub fn plot_bars(
    groups: &[BarGroup],
    series: &[String],
    title: &str,
    y_label: &str,
    path: &Path,
) -> Result<(), EvalError> {
    let plot_error = plot_error(path);
    if groups.is_empty() || series.is_empty() {
        return Err(plot_error("no bar to draw".into()));
    }
    if let Some(group) = groups.iter().find(|g| g.values.len() != series.len()) {
        return Err(plot_error(format!(
            "group `{}` has {} values for {} series",
            group.label,
            group.values.len(),
            series.len()
        )));
    }
    register_font();
    let width = WIDTH.max(160 * groups.len() as u32);
    let mut buffer = vec![0u8; (width * HEIGHT * 3) as usize];
    draw_bars(&mut buffer, width, groups, series, title, y_label).map_err(plot_error)?;
    write_png(&buffer, (width, HEIGHT), path)
}

fn draw_bars(
    buffer: &mut [u8],
    width: u32,
    groups: &[BarGroup],
    series: &[String],
    title: &str,
    y_label: &str,
) -> Result<(), String> {
    let root = BitMapBackend::with_buffer(buffer, (width, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let n = groups.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..n, 0f64..105f64)
        .map_err(|e| e.to_string())?;
    let labels: Vec<String> = groups.iter().map(|g| g.label.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len() * 2 + 1)
        .x_label_formatter(&|v| {
            // Labels sit at the middle of each group (x = i + 0.5).
            let i = v.floor();
            if (v - i - 0.5).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                labels[i as usize].clone()
            } else {
                String::new()
            }
        })
        .y_desc(y_label)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| e.to_string())?;
    let slot = 0.8 / series.len() as f64;
    for (s, (name, colour)) in series.iter().zip(CURVE_COLOURS.iter().cycle()).enumerate() {
        let colour = *colour;
        let bars: Vec<(f64, f64)> = (groups.iter().enumerate())
            .filter_map(|(g, group)| Some((g as f64 + 0.1 + s as f64 * slot, group.values[s]?)))
            .collect();
        chart
            .draw_series(
                bars.iter()
                    .map(|&(x, value)| Rectangle::new([(x, 0.0), (x + slot * 0.9, value)], colour.filled())),
            )
            .map_err(|e| e.to_string())?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled()));
        chart
            .draw_series(bars.iter().map(|&(x, value)| {
                Text::new(
                    format!("{value:.1}"),
                    (x + slot * 0.45, value + 1.0),
                    TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom)),
                )
            }))
            .map_err(|e| e.to_string())?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present().map_err(|e| e.to_string())
}

/// A grid of values over two settings (e.g. learning rate × weight decay), one panel per value of a
/// third (e.g. the optimizer): the paper's appendix heatmaps.
#[derive(Clone, Debug, PartialEq)]
pub struct Heatmap {
    /// The figure's title, e.g. `AUSUC of the fine-tuned model`.
    pub title: String,
    /// The setting along the rows, e.g. `lr`.
    pub row_label: String,
    /// The setting along the columns, e.g. `wd`.
    pub column_label: String,
    /// One label per column, left to right, shared by the panels.
    pub columns: Vec<String>,
    /// Decimals of the values written in the cells.
    pub decimals: usize,
    /// The panels, left to right.
    pub panels: Vec<HeatmapPanel>,
}

/// One panel of a [`Heatmap`].
#[derive(Clone, Debug, PartialEq)]
pub struct HeatmapPanel {
    /// e.g. `optimizer=adam`.
    pub title: String,
    /// One label per row, top to bottom (each panel has its own: e.g. each optimizer its lr range).
    pub rows: Vec<String>,
    /// `cells[row][column]`.
    pub cells: Vec<Vec<HeatCell>>,
}

/// A cell of a heatmap: a value coloured on the figure's scale, or a state written in grey (`diverged`,
/// `failed`, `missing`), never a number.
#[derive(Clone, Debug, PartialEq)]
pub enum HeatCell {
    /// A measured value.
    Value(f64),
    /// No value: what the cell is instead.
    State(String),
}

const CELL_WIDTH: u32 = 96;
const CELL_HEIGHT: u32 = 44;

/// Draws `heatmap` (every panel on one colour scale, from the smallest value to the largest, values
/// written in the cells) and writes a PNG atomically to `path`.
pub fn plot_heatmap(heatmap: &Heatmap, path: &Path) -> Result<(), EvalError> {
    let plot_error = plot_error(path);
    let shape_ok = !heatmap.panels.is_empty()
        && !heatmap.columns.is_empty()
        && heatmap.panels.iter().all(|panel| {
            !panel.rows.is_empty()
                && panel.cells.len() == panel.rows.len()
                && panel.cells.iter().all(|row| row.len() == heatmap.columns.len())
        });
    if !shape_ok {
        return Err(plot_error(
            "a heatmap needs at least one panel, row and column, and every panel a cell for each".into(),
        ));
    }
    let layout = HeatmapLayout::of(heatmap);
    register_font();
    let mut buffer = vec![0u8; (layout.width * layout.height * 3) as usize];
    draw_heatmap(&mut buffer, heatmap, &layout).map_err(plot_error)?;
    write_png(&buffer, (layout.width, layout.height), path)
}

/// Pixel positions of a heatmap's parts.
struct HeatmapLayout {
    width: u32,
    height: u32,
    /// Width of each panel's row labels, left of its grid; panels follow each other `panel_width` apart.
    left: u32,
    top: u32,
    panel_width: u32,
}

impl HeatmapLayout {
    fn of(heatmap: &Heatmap) -> Self {
        let left = 120;
        let top = 96;
        let panel_width = left + CELL_WIDTH * heatmap.columns.len() as u32 + 20;
        let width = (panel_width * heatmap.panels.len() as u32 + 20).max(480);
        let most_rows = heatmap
            .panels
            .iter()
            .map(|panel| panel.rows.len())
            .max()
            .unwrap_or(0);
        let height = top + CELL_HEIGHT * most_rows as u32 + 110;
        Self {
            width,
            height,
            left,
            top,
            panel_width,
        }
    }
}

/// Viridis at a few stops, interpolated: dark violet (low) to yellow (high), readable in grey print.
fn viridis(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 5] = [
        (68, 1, 84),
        (59, 82, 139),
        (33, 145, 140),
        (94, 201, 98),
        (253, 231, 37),
    ];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f64;
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn draw_heatmap(buffer: &mut [u8], heatmap: &Heatmap, layout: &HeatmapLayout) -> Result<(), String> {
    let root = BitMapBackend::with_buffer(buffer, (layout.width, layout.height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let error = |e: DrawingAreaErrorKind<_>| e.to_string();
    let values: Vec<f64> = (heatmap.panels.iter())
        .flat_map(|panel| panel.cells.iter().flatten())
        .filter_map(|cell| match cell {
            HeatCell::Value(value) if value.is_finite() => Some(*value),
            _ => None,
        })
        .collect();
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let scale = |value: f64| {
        if high > low {
            (value - low) / (high - low)
        } else {
            0.5
        }
    };
    let centred = |size: u32| {
        TextStyle::from(("sans-serif", size).into_font()).pos(Pos::new(HPos::Center, VPos::Center))
    };
    let (x, y) = (layout.width as i32 / 2, 24);
    root.draw_text(&heatmap.title, &centred(22), (x, y))
        .map_err(error)?;
    let (cell_w, cell_h) = (CELL_WIDTH as i32, CELL_HEIGHT as i32);
    for (p, panel) in heatmap.panels.iter().enumerate() {
        let label_left = (layout.panel_width * p as u32) as i32;
        let left = label_left + layout.left as i32;
        let top = layout.top as i32;
        let grid_width = cell_w * heatmap.columns.len() as i32;
        root.draw_text(&panel.title, &centred(17), (left + grid_width / 2, top - 44))
            .map_err(error)?;
        for (c, label) in heatmap.columns.iter().enumerate() {
            let x = left + cell_w * c as i32 + cell_w / 2;
            root.draw_text(label, &centred(14), (x, top - 14))
                .map_err(error)?;
        }
        let bottom = top + cell_h * panel.rows.len() as i32;
        root.draw_text(
            &heatmap.column_label,
            &centred(15),
            (left + grid_width / 2, bottom + 20),
        )
        .map_err(error)?;
        for (r, row) in panel.cells.iter().enumerate() {
            let y0 = top + cell_h * r as i32;
            let label = format!("{} = {}", heatmap.row_label, panel.rows[r]);
            root.draw_text(
                &label,
                &centred(14),
                (label_left + layout.left as i32 / 2 + 4, y0 + cell_h / 2),
            )
            .map_err(error)?;
            for (c, cell) in row.iter().enumerate() {
                let x0 = left + cell_w * c as i32;
                let corners = [(x0, y0), (x0 + cell_w, y0 + cell_h)];
                let (fill, text, ink) = match cell {
                    HeatCell::Value(value) if value.is_finite() => {
                        let t = scale(*value);
                        let ink = if t > 0.6 { BLACK } else { WHITE };
                        (viridis(t), format!("{value:.*}", heatmap.decimals), ink)
                    }
                    HeatCell::Value(_) => (RGBColor(220, 220, 220), "not finite".to_string(), BLACK),
                    HeatCell::State(state) => (RGBColor(220, 220, 220), state.clone(), BLACK),
                };
                root.draw(&Rectangle::new(corners, fill.filled()))
                    .map_err(error)?;
                root.draw(&Rectangle::new(corners, WHITE.stroke_width(2)))
                    .map_err(error)?;
                let style = centred(14).color(&ink);
                root.draw_text(&text, &style, (x0 + cell_w / 2, y0 + cell_h / 2))
                    .map_err(error)?;
            }
        }
    }
    if !values.is_empty() {
        // The colour scale: a bar from the lowest value to the highest.
        let y0 = layout.height as i32 - 52;
        let (x0, width) = (layout.left as i32 + 20, 240);
        for step in 0..width {
            let colour = viridis(f64::from(step) / f64::from(width - 1));
            let x = x0 + step;
            root.draw(&Rectangle::new([(x, y0), (x + 1, y0 + 14)], colour.filled()))
                .map_err(error)?;
        }
        let label = |value: f64| format!("{value:.*}", heatmap.decimals);
        root.draw_text(&label(low), &centred(13), (x0, y0 + 28))
            .map_err(error)?;
        root.draw_text(&label(high), &centred(13), (x0 + width, y0 + 28))
            .map_err(error)?;
    }
    root.present().map_err(|e| e.to_string())
}

/// Encodes an RGB buffer of `(width, height)` as PNG and writes it atomically; a failed write is the
/// [`EvalError::Io`] of `path` (a full disk is not a drawing problem).
fn write_png(buffer: &[u8], (width, height): (u32, u32), path: &Path) -> Result<(), EvalError> {
    let encode = || -> Result<Vec<u8>, png::EncodingError> {
        let mut png_bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut png_bytes, width, height);
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
    fn values_of_any_scale_are_plotted_per_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("norms.png");
        let series = [EpochSeries {
            label: "‖w‖ S".into(),
            values: vec![Some(0.8), Some(1.4), None],
        }];
        plot_epoch_values(&[-1, 0, 1], &series, "t", "norm", &path).unwrap();
        assert!(std::fs::read(&path).unwrap().starts_with(b"\x89PNG"));
        let empty = [EpochSeries {
            label: "x".into(),
            values: vec![None],
        }];
        let err = plot_epoch_values(&[0], &empty, "t", "norm", &path).unwrap_err();
        assert!(err.to_string().contains("no value"), "{err}");
    }

    #[test]
    fn a_heatmap_is_a_png_sized_by_its_grid_and_needs_a_full_grid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heatmap.png");
        let panel = |title: &str, cells: Vec<Vec<HeatCell>>| HeatmapPanel {
            title: title.into(),
            rows: vec!["1e-3".into(), "1e-2".into()],
            cells,
        };
        let mut heatmap = Heatmap {
            title: "AUSUC".into(),
            row_label: "lr".into(),
            column_label: "wd".into(),
            columns: vec!["0".into(), "5e-4".into(), "1e-3".into()],
            decimals: 3,
            panels: vec![
                panel(
                    "sgd",
                    vec![vec![HeatCell::Value(0.5); 3], vec![HeatCell::Value(0.7); 3]],
                ),
                panel(
                    "adam",
                    vec![
                        vec![
                            HeatCell::Value(0.6),
                            HeatCell::State("diverged".into()),
                            HeatCell::Value(0.1),
                        ],
                        vec![HeatCell::State("missing".into()); 3],
                    ],
                ),
            ],
        };
        plot_heatmap(&heatmap, &path).unwrap();
        let reader = png::Decoder::new(std::io::Cursor::new(std::fs::read(&path).unwrap()))
            .read_info()
            .unwrap();
        let layout = HeatmapLayout::of(&heatmap);
        assert_eq!(
            (reader.info().width, reader.info().height),
            (layout.width, layout.height)
        );
        heatmap.panels[1].cells[1].pop();
        let error = plot_heatmap(&heatmap, &path).unwrap_err().to_string();
        assert!(error.contains("every panel a cell for each"), "{error}");
    }

    #[test]
    fn overlays_and_bar_charts_are_written_and_refuse_what_they_cannot_draw() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overlay.png");
        let line = |label: &str, points: Vec<(f64, f64)>| CurveLine {
            label: label.into(),
            points,
        };
        let curves = [
            line("fine-tuning", vec![(100.0, 0.0), (80.0, 40.0), (0.0, 100.0)]),
            line("HT", vec![(90.0, 30.0), (0.0, 90.0)]),
        ];
        let mark = PlotMark {
            label: "pre-trained".into(),
            s_y: 50.0,
            u_y: 50.0,
        };
        plot_seen_unseen_overlay(&curves, &[mark], "t", &path).unwrap();
        assert!(std::fs::read(&path).unwrap().starts_with(b"\x89PNG"));
        let empty = [line("none", vec![])];
        let error = plot_seen_unseen_overlay(&empty, &[], "t", &path).unwrap_err();
        assert!(error.to_string().contains("no curve"), "{error}");

        let bars = dir.path().join("bars.png");
        let group = |label: &str, values: Vec<Option<f64>>| BarGroup {
            label: label.into(),
            values,
        };
        let series = ["before".to_string(), "after".to_string()];
        let groups = [
            group("a", vec![Some(40.0), Some(55.5)]),
            group("b", vec![None, Some(10.0)]),
        ];
        plot_bars(&groups, &series, "NCM", "Acc U/Y (%)", &bars).unwrap();
        let reader = png::Decoder::new(std::io::Cursor::new(std::fs::read(&bars).unwrap()))
            .read_info()
            .unwrap();
        assert_eq!((reader.info().width, reader.info().height), (WIDTH, HEIGHT));
        let uneven = [group("a", vec![Some(1.0)])];
        let error = plot_bars(&uneven, &series, "NCM", "%", &bars).unwrap_err();
        assert!(error.to_string().contains("1 values for 2 series"), "{error}");
    }

    #[test]
    fn viridis_runs_from_violet_to_yellow() {
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(253, 231, 37));
        assert_eq!(viridis(0.5), RGBColor(33, 145, 140));
        assert_eq!(viridis(-3.0), viridis(0.0));
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
