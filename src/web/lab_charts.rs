//! The dynamics lab's charts, drawn with plotters on canvases (devicePixelRatio-sized).

use super::palette::{rgb, SERIES};
use crate::engine::Report;
use plotters::prelude::*;
use plotters_canvas::CanvasBackend;
use web_sys::HtmlCanvasElement;

pub struct ChartTheme {
    pub dark: bool,
    /// Device pixels per CSS pixel.
    pub scale: f64,
    pub font: f64,
}

impl ChartTheme {
    fn fg(&self) -> RGBColor {
        if self.dark {
            RGBColor(232, 232, 232)
        } else {
            RGBColor(26, 26, 26)
        }
    }
    fn bg(&self) -> RGBColor {
        if self.dark {
            RGBColor(21, 23, 28)
        } else {
            RGBColor(255, 255, 255)
        }
    }
    fn grid(&self) -> RGBAColor {
        if self.dark {
            RGBColor(255, 255, 255).mix(0.08)
        } else {
            RGBColor(0, 0, 0).mix(0.08)
        }
    }
    fn px(&self, v: f64) -> u32 {
        (v * self.scale).round().max(1.0) as u32
    }
}

pub fn run_colour(i: usize) -> &'static str {
    SERIES[i % SERIES.len()]
}

fn col(hex: &str) -> RGBColor {
    let (r, g, b) = rgb(hex);
    RGBColor(r, g, b)
}

pub struct Series {
    pub colour: &'static str,
    pub dashed: bool,
    pub pts: Vec<(f64, f64)>,
    /// An ensemble's 10–90 % band around the line: (x, low, high), drawn translucent.
    pub band: Vec<(f64, f64, f64)>,
}

fn range(series: &[Series], pad: f64) -> ((f64, f64), (f64, f64)) {
    let mut x = (f64::INFINITY, f64::NEG_INFINITY);
    let mut y = (f64::INFINITY, f64::NEG_INFINITY);
    for s in series {
        let band = s.band.iter().flat_map(|&(a, lo, hi)| [(a, lo), (a, hi)]);
        for (a, b) in s.pts.iter().copied().chain(band) {
            if a.is_finite() && b.is_finite() {
                x = (x.0.min(a), x.1.max(a));
                y = (y.0.min(b), y.1.max(b));
            }
        }
    }
    if !x.0.is_finite() {
        x = (0.0, 1.0);
        y = (0.0, 1.0);
    }
    if x.1 <= x.0 {
        x.1 = x.0 + 1.0;
    }
    if y.1 <= y.0 {
        y = (y.0 - 0.5, y.1 + 0.5);
    }
    let py = (y.1 - y.0) * pad;
    (x, (y.0 - py, y.1 + py))
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// A line chart; returns nothing but errors. `y_fixed` pins the y range.
pub fn line_chart(
    c: &HtmlCanvasElement,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    y_fixed: Option<(f64, f64)>,
    th: &ChartTheme,
) -> DrawResult {
    let be = CanvasBackend::with_canvas_object(c.clone()).ok_or("no 2D context")?;
    let root = be.into_drawing_area();
    root.fill(&th.bg())?;
    let (xr, yr) = range(series, 0.05);
    let yr = y_fixed.unwrap_or(yr);
    let fs = th.px(th.font);
    let fg = th.fg();
    let mut chart = ChartBuilder::on(&root)
        .margin(th.px(10.0))
        .margin_right(th.px(24.0))
        .x_label_area_size(th.px(2.6 * th.font))
        .y_label_area_size(th.px(4.2 * th.font))
        .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(6)
        .y_labels(6)
        .label_style(("sans-serif", fs).into_font().color(&fg))
        .axis_desc_style(("sans-serif", fs).into_font().color(&fg))
        .axis_style(fg.stroke_width(th.px(1.0)))
        .bold_line_style(th.grid())
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| short(*v))
        .draw()?;
    for s in series {
        let band: Vec<(f64, f64)> = s
            .band
            .iter()
            .map(|&(a, lo, _)| (a, lo))
            .chain(s.band.iter().rev().map(|&(a, _, hi)| (a, hi)))
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        if band.len() > 2 {
            chart.draw_series(std::iter::once(Polygon::new(
                band,
                col(s.colour)
                    .mix(if s.dashed { 0.10 } else { 0.22 })
                    .filled(),
            )))?;
        }
    }
    for s in series {
        let style = ShapeStyle {
            color: col(s.colour).to_rgba(),
            filled: false,
            stroke_width: th.px(2.0),
        };
        let pts: Vec<(f64, f64)> = s
            .pts
            .iter()
            .cloned()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        if s.dashed {
            chart.draw_series(DashedLineSeries::new(pts, th.px(7.0), th.px(5.0), style))?;
        } else {
            chart.draw_series(LineSeries::new(pts, style))?;
        }
    }
    root.present()?;
    Ok(())
}

/// Points chart of singular values against index (log10 y): G in the foreground colour.
pub fn sv_chart(c: &HtmlCanvasElement, r: &Report, th: &ChartTheme) -> DrawResult {
    let be = CanvasBackend::with_canvas_object(c.clone()).ok_or("no 2D context")?;
    let root = be.into_drawing_area();
    root.fill(&th.bg())?;
    let lg = |v: f64| v.max(1e-16).log10();
    type PointSet = (RGBColor, Vec<(f64, f64)>, bool);
    let mut sets: Vec<PointSet> = Vec::new();
    sets.push((
        th.fg(),
        r.problem
            .g_s
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as f64 + 1.0, lg(v)))
            .collect(),
        true,
    ));
    // an ensemble's draws share their setting's colour (as in the other charts)
    let (_, colour_of) = crate::ensemble::colour_indices(r);
    for (i, run) in r.runs.iter().enumerate() {
        if let Some(last) = run.last() {
            sets.push((
                col(run_colour(colour_of[i])),
                last.sv_ab
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| (j as f64 + 1.0 + 0.08 * (i as f64 + 1.0), lg(v)))
                    .collect(),
                false,
            ));
        }
    }
    let all: Vec<Series> = sets
        .iter()
        .map(|(_, p, _)| Series {
            colour: "#000000",
            dashed: false,
            pts: p.clone(),
            band: Vec::new(),
        })
        .collect();
    let (xr, yr) = range(&all, 0.08);
    let fs = th.px(th.font);
    let fg = th.fg();
    let mut chart = ChartBuilder::on(&root)
        .margin(th.px(10.0))
        .margin_right(th.px(24.0))
        .x_label_area_size(th.px(2.6 * th.font))
        .y_label_area_size(th.px(4.2 * th.font))
        .build_cartesian_2d((xr.0 - 0.5)..(xr.1 + 0.5), yr.0..yr.1)?;
    chart
        .configure_mesh()
        .x_desc("index i")
        .y_desc("log10 σ_i")
        .label_style(("sans-serif", fs).into_font().color(&fg))
        .axis_desc_style(("sans-serif", fs).into_font().color(&fg))
        .axis_style(fg.stroke_width(th.px(1.0)))
        .bold_line_style(th.grid())
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| short(*v))
        .draw()?;
    let sz = th.px(5.0);
    for (c, pts, is_g) in sets {
        if is_g {
            chart.draw_series(pts.into_iter().map(|p| {
                EmptyElement::at(p)
                    + Polygon::new(
                        vec![
                            (0, -(sz as i32) - 2),
                            (sz as i32 + 2, 0),
                            (0, sz as i32 + 2),
                            (-(sz as i32) - 2, 0),
                        ],
                        c.filled(),
                    )
            }))?;
        } else {
            chart.draw_series(
                pts.into_iter()
                    .map(|p| Circle::new(p, sz, c.stroke_width(th.px(2.0)))),
            )?;
        }
    }
    root.present()?;
    Ok(())
}

/// Horizontal bars: init cost (form G + SVD) and training time per run.
pub fn cost_chart(c: &HtmlCanvasElement, r: &Report, th: &ChartTheme) -> DrawResult {
    let be = CanvasBackend::with_canvas_object(c.clone()).ok_or("no 2D context")?;
    let root = be.into_drawing_area();
    root.fill(&th.bg())?;
    let n = r.runs.len().max(1);
    let xmax = r
        .runs
        .iter()
        .map(|x| x.init_ms + x.train_ms)
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.05;
    let fs = th.px(th.font);
    let fg = th.fg();
    let labels: Vec<String> = r.runs.iter().map(|x| x.label.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .margin(th.px(10.0))
        .margin_right(th.px(24.0))
        .x_label_area_size(th.px(2.6 * th.font))
        .y_label_area_size(th.px(8.0 * th.font))
        .build_cartesian_2d(0.0..xmax, -0.5..(n as f64 - 0.5))?;
    chart
        .configure_mesh()
        .x_desc("milliseconds")
        .y_labels(n)
        .label_style(("sans-serif", fs).into_font().color(&fg))
        .axis_desc_style(("sans-serif", fs).into_font().color(&fg))
        .axis_style(fg.stroke_width(th.px(1.0)))
        .bold_line_style(th.grid())
        .light_line_style(TRANSPARENT)
        .disable_y_mesh()
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .draw()?;
    let init_c = col(super::palette::ORANGE);
    let train_c = col(super::palette::SKY);
    for (i, run) in r.runs.iter().enumerate() {
        let y = i as f64;
        chart.draw_series([
            Rectangle::new([(0.0, y - 0.3), (run.init_ms, y + 0.3)], init_c.filled()),
            Rectangle::new(
                [
                    (run.init_ms, y - 0.3),
                    (run.init_ms + run.train_ms, y + 0.3),
                ],
                train_c.filled(),
            ),
        ])?;
    }
    root.present()?;
    Ok(())
}

fn short(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-2..1e4).contains(&a) {
        format!("{v:.0e}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}
