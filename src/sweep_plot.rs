//! The sweep figure (SPEC §8, Fig. 2 style), drawn the same way by the CLI (SVG/PNG) and the web
//! app (canvas): per panel one curve per y value — the median over the draws with its 10–90 %
//! band — against x; panels min_t sin θ_A, final ln risk and t*(θ) with the theorem's prediction
//! when d is on the x axis. Ordered y values (d, …) take viridis colours, dark to light.

use crate::sweep::{Cell, Spread, SweepReport};
use plotters::coord::Shift;
use plotters::prelude::*;

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
        let mut chart = ChartBuilder::on(area)
            .caption(*name, ("sans-serif", fs(15.0)).into_font().color(&fg))
            .margin(fs(10.0))
            .x_label_area_size(fs(36.0))
            .y_label_area_size(fs(52.0))
            .build_cartesian_2d(x0..x1, (lo - pad)..(hi + pad))?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .label_style(("sans-serif", fs(12.0)).into_font().color(&fg))
            .axis_desc_style(("sans-serif", fs(12.0)).into_font().color(&fg))
            .axis_style(fg)
            .bold_line_style(th.grid)
            .light_line_style(TRANSPARENT)
            .draw()?;
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
        chart
            .configure_series_labels()
            .background_style(th.bg.mix(0.85))
            .border_style(th.grid)
            .label_font(("sans-serif", fs(12.0)).into_font().color(&fg))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
