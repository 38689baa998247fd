//! The dynamics lab's charts, drawn with plotters on canvases (devicePixelRatio-sized).

use super::palette::{rgb, Dash, Marker, RunStyle};
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

fn col(hex: &str) -> RGBColor {
    let (r, g, b) = rgb(hex);
    RGBColor(r, g, b)
}

pub struct Series {
    pub colour: &'static str,
    pub dash: Dash,
    /// A chart's secondary metric (loss beside risk, sin θ_B beside sin θ_A): thin, translucent.
    pub faint: bool,
    /// Markers spaced along the line (the method's; None for secondary metrics).
    pub marker: Option<Marker>,
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
                    .mix(if s.faint { 0.10 } else { 0.22 })
                    .filled(),
            )))?;
        }
    }
    for s in series {
        let style = ShapeStyle {
            color: col(s.colour).mix(if s.faint { 0.55 } else { 1.0 }),
            filled: false,
            stroke_width: th.px(if s.faint { 1.25 } else { 2.0 }),
        };
        // at most about one point per device pixel of width (a 1500-step run drawn on a
        // 460-pixel chart needs a third of its points; the page redraws while a run goes on)
        let finite: Vec<(f64, f64)> = s
            .pts
            .iter()
            .cloned()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        let stride = finite.len().div_ceil((c.width() as usize).max(200)).max(1);
        let mut pts: Vec<(f64, f64)> = finite.iter().step_by(stride).cloned().collect();
        if let (Some(l), Some(p)) = (finite.last(), pts.last()) {
            if l != p {
                pts.push(*l);
            }
        }
        match s.dash.pattern() {
            [on, off, ..] => {
                chart.draw_series(DashedLineSeries::new(
                    pts.clone(),
                    th.px(*on),
                    th.px(*off),
                    style,
                ))?;
            }
            _ => {
                chart.draw_series(LineSeries::new(pts.clone(), style))?;
            }
        }
        if let Some(m) = s.marker {
            // six markers along the line, staggered per series so that overlapping lines
            // still show each method's
            let n = pts.len();
            let k = 6usize.min(n);
            let shift = (s.colour.len() + s.colour.as_bytes()[1] as usize) % 7;
            let at = (0..k).map(|j| pts[((2 * j + 1) * n / (2 * k) + shift).min(n - 1)]);
            let sz = th.px(4.5) as f64;
            let fill = col(s.colour).filled();
            chart.draw_series(at.map(|p| marker_element(m, p, sz, fill)))?;
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
    // (run style, points); None: G's singular values, drawn in the foreground colour
    type PointSet = (Option<RunStyle>, Vec<(f64, f64)>);
    let mut sets: Vec<PointSet> = Vec::new();
    sets.push((
        None,
        r.problem
            .g_s
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as f64 + 1.0, lg(v)))
            .collect(),
    ));
    // an ensemble's draws share their setting's style (as in the other charts)
    let styles = crate::style::report_styles(r);
    for (i, run) in r.runs.iter().enumerate() {
        if let Some(last) = run.last() {
            sets.push((
                Some(styles[i]),
                last.sv_ab
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| (j as f64 + 1.0 + 0.08 * (i as f64 + 1.0), lg(v)))
                    .collect(),
            ));
        }
    }
    let all: Vec<Series> = sets
        .iter()
        .map(|(_, p)| Series {
            colour: "#000000",
            dash: Dash::Solid,
            faint: false,
            marker: None,
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
    let sz = th.px(5.0) as f64;
    for (st, pts) in sets {
        // G: outlined foreground diamonds; each run: its method's marker in its colour
        let (m, style) = match st {
            None => (Marker::Diamond, th.fg().stroke_width(th.px(2.0))),
            Some(st) => (st.marker, col(st.colour).filled()),
        };
        chart.draw_series(pts.into_iter().map(|p| marker_element(m, p, sz, style)))?;
    }
    root.present()?;
    Ok(())
}

/// A marker centred on a data point, sized in pixels.
fn marker_element<'a, DB: DrawingBackend + 'a>(
    m: Marker,
    at: (f64, f64),
    size: f64,
    style: ShapeStyle,
) -> DynElement<'a, DB, (f64, f64)> {
    let v = m.vertices(0.0, 0.0, size);
    if v.is_empty() {
        (EmptyElement::at(at) + Circle::new((0, 0), size.round() as i32, style)).into_dyn()
    } else {
        let v: Vec<(i32, i32)> = v
            .into_iter()
            .map(|(x, y)| (x.round() as i32, y.round() as i32))
            .collect();
        (EmptyElement::at(at) + Polygon::new(v, style)).into_dyn()
    }
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
