//! The sweep figure (SPEC §8, Fig. 2 style), drawn the same way by the CLI (SVG/PNG) and the web
//! app (canvas): per panel one curve per y value — the median over the draws with its 10–90 %
//! band — against x; panels min_t sin θ_A, final ln risk and t*(θ) with the theorem's prediction
//! when d is on the x axis. Ordered y values (d, …) take viridis colours, dark to light.

use crate::sweep::{Cell, Spread, SweepReport};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::ops::Range;

/// A 2-D chart of the figures.
pub type Chart2d<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Text sizes of a panel (nominal pixels): the sweep figures' and the denser digits figure's.
#[derive(Clone, Copy)]
pub struct PanelText {
    pub caption: f64,
    pub label: f64,
    pub margin: f64,
    pub x_area: f64,
    pub y_area: f64,
}

impl PanelText {
    pub const SWEEP: PanelText = PanelText {
        caption: 15.0,
        label: 12.0,
        margin: 10.0,
        x_area: 36.0,
        y_area: 52.0,
    };
    pub const DENSE: PanelText = PanelText {
        caption: 14.0,
        label: 11.0,
        margin: 8.0,
        x_area: 30.0,
        y_area: 40.0,
    };
}

/// One panel in the figures' common style: caption, axes in the foreground colour, only the
/// grid's bold lines.
pub fn panel<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    th: &Theme,
    sizes: PanelText,
    caption: &str,
    x: Range<f64>,
    y: Range<f64>,
    x_desc: &str,
) -> Result<Chart2d<'a, DB>, Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let fs = |v: f64| (v * th.scale) as u32;
    let fg = th.fg;
    let mut chart = ChartBuilder::on(area)
        .caption(
            caption,
            ("sans-serif", fs(sizes.caption)).into_font().color(&fg),
        )
        .margin(fs(sizes.margin))
        .x_label_area_size(fs(sizes.x_area))
        .y_label_area_size(fs(sizes.y_area))
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .label_style(("sans-serif", fs(sizes.label)).into_font().color(&fg))
        .axis_desc_style(("sans-serif", fs(sizes.label)).into_font().color(&fg))
        .axis_style(fg)
        .bold_line_style(th.grid)
        .light_line_style(TRANSPARENT)
        .draw()?;
    Ok(chart)
}

/// The figures' legend box: page background, grid-coloured border, text in the foreground.
pub fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart2d<'a, DB>,
    th: &Theme,
    at: SeriesLabelPosition,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .background_style(th.bg.mix(0.85))
        .border_style(th.grid)
        .label_font(
            ("sans-serif", (12.0 * th.scale) as u32)
                .into_font()
                .color(&th.fg),
        )
        .position(at)
        .draw()?;
    Ok(())
}

/// A line in a method's dash (solid, or dashed with the pattern scaled like the text).
pub fn styled_line<DB: DrawingBackend>(
    chart: &mut Chart2d<'_, DB>,
    pts: Vec<(f64, f64)>,
    style: ShapeStyle,
    dash: crate::style::Dash,
    scale: f64,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    match dash.pattern() {
        [on, off, ..] => {
            let px = |v: f64| (v * scale) as u32;
            chart.draw_series(DashedLineSeries::new(pts, px(*on), px(*off), style))?;
        }
        _ => {
            chart.draw_series(LineSeries::new(pts, style))?;
        }
    }
    Ok(())
}

/// Colours and text scale of the figure.
pub struct Theme {
    pub bg: RGBColor,
    pub fg: RGBColor,
    pub grid: RGBColor,
    /// Pixels per nominal pixel (devicePixelRatio in the browser; 1 for the CLI).
    pub scale: f64,
    /// The part of viridis the y values use (its dark end does not show on a dark page).
    pub ramp: (f64, f64),
}

impl Theme {
    pub fn light() -> Theme {
        Theme {
            bg: WHITE,
            fg: RGBColor(26, 26, 26),
            grid: RGBColor(225, 225, 225),
            scale: 1.0,
            ramp: (0.0, 0.85),
        }
    }
    /// The page's theme at a pixel scale (devicePixelRatio × the text enlargement).
    pub fn for_page(dark: bool, scale: f64) -> Theme {
        let mut th = if dark { Theme::dark() } else { Theme::light() };
        th.scale = scale;
        th
    }
    pub fn dark() -> Theme {
        Theme {
            bg: RGBColor(21, 23, 28),
            fg: RGBColor(232, 232, 232),
            grid: RGBColor(58, 63, 72),
            scale: 1.0,
            ramp: (0.35, 1.0),
        }
    }
}

/// A sweep (Fig. 2 style): per panel one curve per y value (median over the draws, with the
/// 10–90 % band) against x; panels min_t sin θ_A, final ln risk and t*(θ) (with the theorem's
/// prediction when d is on the x axis).
pub fn draw<DB: DrawingBackend>(
    r: &SweepReport,
    root: DrawingArea<DB, Shift>,
    th: &Theme,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    if r.cells.len() == 1 && r.cells[0].runs.iter().any(|x| x.curve.len() > 1) {
        return draw_spread(r, root, th);
    }
    root.fill(&th.bg)?;
    let fs = |x: f64| (x * th.scale) as u32;
    let fg = th.fg;
    let s = &r.spec;
    let slope = r.slope_t_star_ln_d.map_or(String::new(), |v| {
        format!(" · fitted slope of t* against ln d: {v:.1}")
    });
    let title = format!(
        "sweep {} × {} · {} draws per cell · θ = {} · {}{slope}",
        s.x.key,
        s.y.as_ref().map_or("-", |a| a.key.as_str()),
        s.base.seeds,
        s.theta,
        r.backend
    );
    let (top, body) = root.split_vertically(fs(36.0));
    top.titled(&title, ("sans-serif", fs(17.0)).into_font().color(&fg))?;
    type Get = fn(&Cell) -> Option<Spread>;
    let panels: [(&str, Get); 3] = [
        ("min over t of sin θ_A", |c| c.min_sin_a),
        ("final ln risk", |c| c.final_ln_risk),
        ("t*(θ): first step with sin θ_A ≤ θ", |c| c.t_star),
    ];
    let ys: Vec<Option<f64>> = match &s.y {
        Some(a) => a.values.iter().map(|v| Some(*v)).collect(),
        None => vec![None],
    };
    let tx = |x: f64| if s.x.log { x.log10() } else { x };
    let (x0, x1) =
        s.x.values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(tx(*v)), b.max(tx(*v)))
            });
    let (x0, x1) = if x1 > x0 {
        (x0, x1)
    } else {
        (x0 - 0.5, x1 + 0.5)
    };
    let areas = body.split_evenly((1, 3));
    for (pi, ((name, get), area)) in panels.iter().zip(areas.iter()).enumerate() {
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        for c in &r.cells {
            if let Some(v) = get(c) {
                lo = lo.min(v.q10);
                hi = hi.max(v.q90);
            }
            if pi == 2 && s.x.key == "d" && c.t_theory.is_finite() {
                lo = lo.min(c.t_theory);
                hi = hi.max(c.t_theory);
            }
        }
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if hi - lo < 1e-12 {
            hi = lo + 1.0;
        }
        let pad = 0.06 * (hi - lo);
        let x_desc = if s.x.log {
            format!("log10 {}", s.x.key)
        } else {
            s.x.key.clone()
        };
        let mut chart = panel(
            area,
            th,
            PanelText::SWEEP,
            name,
            x0..x1,
            (lo - pad)..(hi + pad),
            &x_desc,
        )?;
        for (k, y) in ys.iter().enumerate() {
            // an ordered quantity (d, …): viridis, dark to light
            let f = if ys.len() > 1 {
                k as f64 / (ys.len() - 1) as f64
            } else {
                0.0
            };
            let (cr, cg, cb) = crate::style::viridis(th.ramp.0 + f * (th.ramp.1 - th.ramp.0));
            let col = RGBColor(cr, cg, cb);
            let pts: Vec<(f64, Spread)> = r
                .cells
                .iter()
                .filter(|c| c.y == *y)
                .filter_map(|c| get(c).map(|v| (tx(c.x), v)))
                .collect();
            let band: Vec<(f64, f64)> = pts
                .iter()
                .map(|(x, v)| (*x, v.q10))
                .chain(pts.iter().rev().map(|(x, v)| (*x, v.q90)))
                .collect();
            if band.len() > 2 {
                chart.draw_series(std::iter::once(Polygon::new(band, col.mix(0.18).filled())))?;
            }
            let line: Vec<(f64, f64)> = pts.iter().map(|(x, v)| (*x, v.median)).collect();
            let label = match (y, &s.y) {
                (Some(v), Some(a)) => format!("{} = {v}", a.key),
                _ => "median, 10–90 % band".to_string(),
            };
            chart
                .draw_series(LineSeries::new(line.clone(), col.stroke_width(fs(2.0))))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2))
                });
            chart.draw_series(line.iter().map(|p| Circle::new(*p, fs(3.0), col.filled())))?;
        }
        if pi == 2 && s.x.key == "d" {
            let thy: Vec<(f64, f64)> = r
                .cells
                .iter()
                .filter(|c| c.t_theory.is_finite())
                .map(|c| (tx(c.x), c.t_theory))
                .collect();
            chart
                .draw_series(DashedLineSeries::new(
                    thy,
                    fs(8.0),
                    fs(5.0),
                    fg.stroke_width(fs(2.0)),
                ))?
                .label("ln(√d/θ) / ln(1 + ηλ_r*(G))")
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], fg.stroke_width(2))
                });
        }
        legend(&mut chart, th, SeriesLabelPosition::UpperRight)?;
    }
    root.present()?;
    Ok(())
}

/// Quantiles (10, 50, 90 %) at each step of the curves' `col` (1: sin θ_A, 2: ln risk) over
/// the draws that recorded that step.
pub fn curve_bands(runs: &[crate::sweep::RunSummary], col: usize) -> Vec<(f64, Spread)> {
    let mut by_step: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
    for r in runs {
        for p in &r.curve {
            if p[col].is_finite() {
                by_step.entry(p[0] as u64).or_default().push(p[col]);
            }
        }
    }
    by_step
        .into_iter()
        .filter_map(|(t, v)| Spread::of(v.into_iter()).map(|s| (t as f64, s)))
        .collect()
}

/// One cell's draws (the `seeds` preset): every draw's sin θ_A(t) and ln risk(t) as a thin line,
/// the median over the draws bold with its 10–90 % band, θ and the median t*(θ) marked.
pub fn draw_spread<DB: DrawingBackend>(
    r: &SweepReport,
    root: DrawingArea<DB, Shift>,
    th: &Theme,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    root.fill(&th.bg)?;
    let fs = |x: f64| (x * th.scale) as u32;
    let fg = th.fg;
    let cell = &r.cells[0];
    let s = &r.spec;
    let title = format!(
        "{} draws at {} = {}{} · the spread of the curves · θ = {} · {}",
        cell.runs.len(),
        s.x.key,
        cell.x,
        match (&s.y, cell.y) {
            (Some(a), Some(v)) => format!(", {} = {v}", a.key),
            _ => String::new(),
        },
        s.theta,
        r.backend
    );
    let (top, body) = root.split_vertically(fs(36.0));
    top.titled(&title, ("sans-serif", fs(17.0)).into_font().color(&fg))?;
    let vanilla = {
        let (cr, cg, cb) = crate::style::rgb(crate::style::Method::Vanilla.colour());
        RGBColor(cr, cg, cb)
    };
    let t_max = cell
        .runs
        .iter()
        .filter_map(|x| x.curve.last().map(|p| p[0]))
        .fold(1.0f64, f64::max);
    let areas = body.split_evenly((1, 2));
    let panels = [(1usize, "sin θ_A(t)"), (2, "ln risk(t)")];
    for ((col, name), area) in panels.into_iter().zip(areas.iter()) {
        let bands = curve_bands(&cell.runs, col);
        let (mut lo, mut hi) = cell
            .runs
            .iter()
            .flat_map(|x| x.curve.iter().map(move |p| p[col]))
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if col == 1 {
            (lo, hi) = (0.0, hi.max(s.theta).min(1.0).max(lo + 1e-6));
        }
        let pad = 0.05 * (hi - lo).max(1e-9);
        let mut chart = panel(
            area,
            th,
            PanelText::SWEEP,
            name,
            0.0..t_max,
            (lo - pad)..(hi + pad),
            "step t",
        )?;
        let band: Vec<(f64, f64)> = bands
            .iter()
            .map(|(t, v)| (*t, v.q10))
            .chain(bands.iter().rev().map(|(t, v)| (*t, v.q90)))
            .collect();
        if band.len() > 2 {
            chart
                .draw_series(std::iter::once(Polygon::new(
                    band,
                    vanilla.mix(0.16).filled(),
                )))?
                .label("10–90 % of the draws")
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 18, y + 5)], vanilla.mix(0.3).filled())
                });
        }
        let thin = vanilla.mix(0.35).stroke_width(1);
        for (i, run) in cell.runs.iter().enumerate() {
            let pts: Vec<(f64, f64)> = run
                .curve
                .iter()
                .filter(|p| p[col].is_finite())
                .map(|p| (p[0], p[col]))
                .collect();
            let a = chart.draw_series(LineSeries::new(pts, thin))?;
            if i == 0 {
                a.label("one draw").legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], vanilla.mix(0.5).stroke_width(1))
                });
            }
        }
        let med: Vec<(f64, f64)> = bands.iter().map(|(t, v)| (*t, v.median)).collect();
        chart
            .draw_series(LineSeries::new(med, fg.stroke_width(fs(2.5))))?
            .label("median")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], fg.stroke_width(3)));
        if col == 1 {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(0.0, s.theta), (t_max, s.theta)],
                    fs(6.0),
                    fs(4.0),
                    fg.mix(0.7).stroke_width(1),
                ))?
                .label(format!("θ = {}", s.theta))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], fg.stroke_width(1))
                });
            if let Some(ts) = cell.t_star {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(ts.median, lo - pad), (ts.median, hi + pad)],
                        vanilla.stroke_width(fs(1.5)),
                    )))?
                    .label(format!("median t*(θ) = {}", ts.median))
                    .legend(move |(x, y)| {
                        PathElement::new(
                            vec![(x + 9, y - 6), (x + 9, y + 6)],
                            vanilla.stroke_width(2),
                        )
                    });
            }
        }
        legend(&mut chart, th, SeriesLabelPosition::UpperRight)?;
    }
    root.present()?;
    Ok(())
}

/// The quantity a heatmap shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantity {
    MinSinA,
    FinalLnRisk,
    TStar,
}

impl Quantity {
    pub const ALL: [Quantity; 3] = [Quantity::MinSinA, Quantity::FinalLnRisk, Quantity::TStar];
    pub fn key(self) -> &'static str {
        match self {
            Quantity::MinSinA => "min_sin_a",
            Quantity::FinalLnRisk => "final_ln_risk",
            Quantity::TStar => "t_star",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Quantity::MinSinA => "min over t of sin θ_A",
            Quantity::FinalLnRisk => "final ln risk",
            Quantity::TStar => "t*(θ)",
        }
    }
    pub fn of(self, c: &Cell) -> Option<Spread> {
        match self {
            Quantity::MinSinA => c.min_sin_a,
            Quantity::FinalLnRisk => c.final_ln_risk,
            Quantity::TStar => c.t_star,
        }
    }
}

/// Where the heatmap's cells lie on the drawing (pixels): for hit-testing a pointer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Grid {
    pub x0: f64,
    pub x1: f64,
    pub y0: f64,
    pub y1: f64,
    pub nx: usize,
    pub ny: usize,
}

impl Grid {
    /// The (x index, y index) under a pixel, y index 0 at the bottom.
    pub fn cell_at(&self, px: f64, py: f64) -> Option<(usize, usize)> {
        let u = (px - self.x0) / (self.x1 - self.x0);
        let v = (self.y1 - py) / (self.y1 - self.y0);
        if !(0.0..1.0).contains(&u) || !(0.0..1.0).contains(&v) {
            return None;
        }
        Some(((u * self.nx as f64) as usize, (v * self.ny as f64) as usize))
    }
}

fn tick(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-2..1e4).contains(&a) {
        format!("{v:.0e}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A 2-D sweep as a heatmap of one quantity's median (viridis; cells no draw reached in grey),
/// x by column and y by row in sweep order, with a labelled colour bar. Returns the grid's place.
pub fn draw_heatmap<DB: DrawingBackend>(
    r: &SweepReport,
    root: DrawingArea<DB, Shift>,
    th: &Theme,
    q: Quantity,
) -> Result<Grid, Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    root.fill(&th.bg)?;
    let fs = |x: f64| (x * th.scale) as u32;
    let fg = th.fg;
    let s = &r.spec;
    let xs = &s.x.values;
    let ys: Vec<f64> = s.y.as_ref().map_or(vec![0.0], |a| a.values.clone());
    let (nx, ny) = (xs.len(), ys.len());
    let vals: Vec<f64> = r
        .cells
        .iter()
        .filter_map(|c| q.of(c).map(|v| v.median))
        .filter(|v| v.is_finite())
        .collect();
    let (lo, hi) = vals
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else if lo.is_finite() {
        (lo - 0.5, lo + 0.5)
    } else {
        (0.0, 1.0)
    };
    let (main, bar) = root.split_horizontally(root.dim_in_pixel().0 as i32 - fs(90.0) as i32);
    let y_name = s.y.as_ref().map_or("", |a| a.key.as_str()).to_string();
    let mut chart = ChartBuilder::on(&main)
        .caption(
            format!("{} (median over the draws)", q.label()),
            ("sans-serif", fs(15.0)).into_font().color(&fg),
        )
        .margin(fs(10.0))
        .x_label_area_size(fs(40.0))
        .y_label_area_size(fs(60.0))
        .build_cartesian_2d(0f64..nx as f64, 0f64..ny as f64)?;
    let xl = |v: &f64| {
        xs.get(v.floor() as usize)
            .map_or(String::new(), |x| tick(*x))
    };
    let yl = |v: &f64| {
        ys.get(v.floor() as usize)
            .map_or(String::new(), |y| tick(*y))
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(s.x.key.clone())
        .y_desc(y_name)
        .x_labels(nx.min(12))
        .y_labels(ny.min(12))
        .x_label_formatter(&|v| xl(&(v + 0.5).min(nx as f64 - 0.5)))
        .y_label_formatter(&|v| yl(&(v + 0.5).min(ny as f64 - 0.5)))
        .label_style(("sans-serif", fs(12.0)).into_font().color(&fg))
        .axis_desc_style(("sans-serif", fs(12.0)).into_font().color(&fg))
        .axis_style(fg)
        .draw()?;
    let nx_ = nx;
    chart.draw_series(r.cells.iter().enumerate().map(|(i, c)| {
        let (xi, yi) = (i % nx_, i / nx_);
        let col = q.of(c).map(|v| v.median).filter(|v| v.is_finite()).map_or(
            RGBColor(128, 128, 128),
            |v| {
                let (a, b, cc) = crate::style::viridis((v - lo) / (hi - lo));
                RGBColor(a, b, cc)
            },
        );
        Rectangle::new(
            [(xi as f64, yi as f64), (xi as f64 + 1.0, yi as f64 + 1.0)],
            col.filled(),
        )
    }))?;
    let (px, py) = chart.plotting_area().get_pixel_range();
    // colour bar
    let mut cb = ChartBuilder::on(&bar)
        .margin_top(fs(40.0))
        .margin_bottom(fs(50.0))
        .margin_right(fs(8.0))
        .right_y_label_area_size(fs(50.0))
        .build_cartesian_2d(0f64..1f64, lo..hi)?;
    cb.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(5)
        .y_label_formatter(&|v| tick(*v))
        .label_style(("sans-serif", fs(11.0)).into_font().color(&fg))
        .axis_style(fg)
        .draw()?;
    let n = 64;
    cb.draw_series((0..n).map(|k| {
        let (a, b) = (k as f64 / n as f64, (k + 1) as f64 / n as f64);
        let (cr, cg, cbb) = crate::style::viridis((a + b) / 2.0);
        Rectangle::new(
            [(0.0, lo + a * (hi - lo)), (1.0, lo + b * (hi - lo))],
            RGBColor(cr, cg, cbb).filled(),
        )
    }))?;
    root.present()?;
    Ok(Grid {
        x0: px.start as f64,
        x1: px.end as f64,
        y0: py.start as f64,
        y1: py.end as f64,
        nx,
        ny,
    })
}

/// A marker's outline in pixel offsets (the circle as a 12-gon), centred `dx` right of the anchor.
pub fn marker_outline(m: crate::style::Marker, size: f64, dx: i32) -> Vec<(i32, i32)> {
    let v = m.vertices(0.0, 0.0, size);
    let v = if v.is_empty() {
        (0..12)
            .map(|k| {
                let a = k as f64 * std::f64::consts::TAU / 12.0;
                (size * a.cos(), size * a.sin())
            })
            .collect()
    } else {
        v
    };
    v.into_iter()
        .map(|(x, y)| (x.round() as i32 + dx, y.round() as i32))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The CLI's bundled font, for tests that draw text (no system fonts in CI).
    #[cfg(feature = "cli")]
    pub(crate) fn register_test_font() {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../assets/DejaVuSans.ttf"),
        );
    }

    /// The pointer maps to the cell under it (x by column, y by row from the bottom).
    #[test]
    fn grid_hit_test() {
        let g = Grid {
            x0: 100.0,
            x1: 500.0,
            y0: 50.0,
            y1: 250.0,
            nx: 4,
            ny: 2,
        };
        assert_eq!(g.cell_at(101.0, 249.0), Some((0, 0)));
        assert_eq!(g.cell_at(499.0, 51.0), Some((3, 1)));
        assert_eq!(g.cell_at(350.0, 140.0), Some((2, 1)));
        assert_eq!(g.cell_at(99.0, 140.0), None);
        assert_eq!(g.cell_at(300.0, 251.0), None);
    }

    /// One cell (the seeds preset): every draw's curve, with the median and band over the
    /// draws at each step.
    #[cfg(feature = "cli")]
    #[test]
    fn one_cell_draws_the_spread_of_the_curves() {
        use crate::sweep::{Sweep, SweepPreset};
        let mut spec = SweepPreset::Seeds.spec();
        spec.base.d = 12;
        spec.base.k = 12;
        spec.base.seeds = 5;
        spec.base.steps = 400;
        let mut sw = Sweep::new(spec).unwrap();
        pollster::block_on(sw.run_to_end(&mut crate::CpuBackend::new(), 1000, |_| {})).unwrap();
        let r = sw.report();
        let runs = &r.cells[0].runs;
        assert_eq!(runs.len(), 5);
        for run in runs {
            assert!(run.curve.len() > 50 && run.curve.len() <= crate::sweep::CURVE_POINTS);
            assert_eq!(run.curve[0][0], 0.0);
            assert_eq!(run.curve.last().unwrap()[0], 400.0);
            assert!(run.curve.windows(2).all(|w| w[1][0] > w[0][0]));
        }
        let b = curve_bands(runs, 1);
        assert_eq!(b.len(), runs[0].curve.len());
        assert!(b
            .iter()
            .all(|(_, s)| s.q10 <= s.median && s.median <= s.q90 && s.n == 5));
        register_test_font();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (900, 360)).into_drawing_area();
            draw(&r, root, &Theme::light()).unwrap();
        }
        assert!(
            svg.contains("the spread of the curves")
                && svg.contains("one draw")
                && svg.contains("median")
        );
        assert!(
            svg.matches("<polyline").count() >= 2 * 5 + 2,
            "{} lines",
            svg.matches("<polyline").count()
        );
    }

    /// The heatmap draws (here into an SVG string) and reports where its grid lies.
    #[cfg(feature = "cli")]
    #[test]
    fn heatmap_draws_and_places_its_grid() {
        use crate::sweep::{Axis, Sweep, SweepPreset};
        let mut spec = SweepPreset::Fig2.spec();
        spec.x = Axis::parse("alpha2=1e-4,1e-2,1").unwrap();
        spec.y = Some(Axis::parse("d=8,12").unwrap());
        spec.base.seeds = 1;
        spec.base.steps = 20;
        let mut sw = Sweep::new(spec).unwrap();
        pollster::block_on(sw.run_to_end(&mut crate::CpuBackend::new(), 100, |_| {})).unwrap();
        register_test_font();
        let mut svg = String::new();
        let g = {
            let root = SVGBackend::with_string(&mut svg, (800, 400)).into_drawing_area();
            draw_heatmap(&sw.report(), root, &Theme::light(), Quantity::MinSinA).unwrap()
        };
        assert_eq!((g.nx, g.ny), (3, 2));
        assert!(g.x0 < g.x1 && g.y0 < g.y1 && g.x1 <= 800.0 && g.y1 <= 400.0);
        assert!(svg.contains("<rect") && svg.contains("median over the draws"));
    }
}
