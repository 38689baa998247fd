//! Headless figures with plotters: the dynamics curves and the phase portrait, as SVG or PNG.

use super::{io_err, CliError};
use lora_one_lab::engine::Report;
use lora_one_lab::phase::Portrait;
use lora_one_lab::style::{self, RunStyle};
use lora_one_lab::sweep::SweepReport;
use lora_one_lab::sweep_plot;
use lora_one_lab::sweep_plot::marker_outline as outline;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use std::path::Path;
use std::sync::Once;

/// A run's colour in plotters' type (the shared style: `lora_one_lab::style`).
fn colour(hex: &str) -> RGBColor {
    let (r, g, b) = style::rgb(hex);
    RGBColor(r, g, b)
}

type Chart2d<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A run's line in its style (solid, or dashed with the style's pattern), with its legend key
/// (line and marker) when labelled.
fn run_line<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart2d<'a, DB>,
    pts: Vec<(f64, f64)>,
    st: RunStyle,
    width: u32,
    label: Option<String>,
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    let shape = colour(st.colour).stroke_width(width);
    let anno = match st.dash.pattern() {
        [on, off, ..] => chart.draw_series(DashedLineSeries::new(
            pts,
            *on as u32 + width,
            *off as u32 + width,
            shape,
        ))?,
        _ => chart.draw_series(LineSeries::new(pts, shape))?,
    };
    if let Some(l) = label {
        anno.label(l).legend(move |(x, y)| {
            EmptyElement::at((x, y))
                + PathElement::new(vec![(0, 0), (18, 0)], colour(st.colour).stroke_width(2))
                + Polygon::new(outline(st.marker, 4.0, 9), colour(st.colour).filled())
        });
    }
    Ok(())
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Bundled DejaVu Sans (free licence, assets/DejaVuSans.LICENSE): PNG text without system fonts.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../../assets/DejaVuSans.ttf"),
        );
    });
}

type DrawResult<T> = Result<T, Box<dyn std::error::Error>>;

fn with_backend(
    out: &Path,
    ext: &str,
    size: (u32, u32),
    draw: impl Fn(DrawingArea<SVGBackend, Shift>) -> DrawResult<()> + Copy,
    draw_png: impl Fn(DrawingArea<BitMapBackend, Shift>) -> DrawResult<()>,
) -> Result<(), CliError> {
    // text is measured with the bundled font in both formats
    register_font();
    let res = if ext == "svg" {
        let root = SVGBackend::new(out, size).into_drawing_area();
        draw(root)
    } else {
        let root = BitMapBackend::new(out, size).into_drawing_area();
        draw_png(root)
    };
    res.map_err(|e| io_err(out, e))
}

pub fn draw_curves(report: &Report, out: &Path, ext: &str) -> Result<(), CliError> {
    with_backend(
        out,
        ext,
        (1200, 860),
        |root| curves(report, root),
        |root| curves(report, root),
    )
}

pub fn draw_sweep(r: &SweepReport, out: &Path, ext: &str) -> Result<(), CliError> {
    with_backend(
        out,
        ext,
        (1200, 420),
        |root| sweep_plot::draw(r, root, &sweep_plot::Theme::light()),
        |root| sweep_plot::draw(r, root, &sweep_plot::Theme::light()),
    )
}

pub fn draw_digits(
    r: &lora_one_lab::digits::FtReport,
    out: &Path,
    ext: &str,
) -> Result<(), CliError> {
    with_backend(
        out,
        ext,
        (1600, 560),
        |root| lora_one_lab::digits_plot::draw(r, root, &sweep_plot::Theme::light()),
        |root| lora_one_lab::digits_plot::draw(r, root, &sweep_plot::Theme::light()),
    )
}

pub fn draw_toy(
    r: &lora_one_lab::toy3d::ToyReport,
    cam: lora_one_lab::toy3d::Camera,
    out: &Path,
    ext: &str,
) -> Result<(), CliError> {
    with_backend(
        out,
        ext,
        (900, 760),
        |root| lora_one_lab::toy_plot::draw(r, cam, root, &sweep_plot::Theme::light()),
        |root| lora_one_lab::toy_plot::draw(r, cam, root, &sweep_plot::Theme::light()),
    )
}

pub fn draw_phase(p: &Portrait, out: &Path, ext: &str) -> Result<(), CliError> {
    with_backend(
        out,
        ext,
        (900, 820),
        |root| phase(p, root),
        |root| phase(p, root),
    )
}

struct Panel {
    title: &'static str,
    y_label: &'static str,
    value: fn(&lora_one_lab::Record) -> Option<f64>,
}

fn curves<DB: DrawingBackend>(report: &Report, root: DrawingArea<DB, Shift>) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let c = &report.config;
    let title = format!(
        "d={} k={} r={} r*={} N={} · {:?} η={} · {}",
        c.d, c.k, c.r, c.r_star, report.problem.n, c.optimiser, c.eta, report.backend.name
    );
    let (top, body) = root.split_vertically(40);
    top.titled(&title, ("sans-serif", 18))?;
    let panels = [
        Panel {
            title: "ln risk  ½‖W_t − W*‖²",
            y_label: "ln risk",
            value: |r| (r.risk > 0.0).then(|| r.risk.ln()),
        },
        Panel {
            title: "loss (log10)",
            y_label: "log10 loss",
            value: |r| (r.loss > 0.0).then(|| r.loss.log10()),
        },
        Panel {
            title: "sin θ_A (A vs G's top-r* left subspace)",
            y_label: "sin θ_A",
            value: |r| r.sin_a,
        },
        Panel {
            title: "sin θ_B (B vs G's top-r* right subspace)",
            y_label: "sin θ_B",
            value: |r| r.sin_b,
        },
    ];
    let areas = body.split_evenly((2, 2));
    let max_step = report
        .runs
        .iter()
        .flat_map(|r| r.records.last().map(|x| x.step))
        .max()
        .unwrap_or(1)
        .max(1);
    for (panel, area) in panels.iter().zip(areas.iter()) {
        let series: Vec<(usize, Vec<(f64, f64)>)> = report
            .runs
            .iter()
            .enumerate()
            .map(|(i, run)| {
                (
                    i,
                    run.records
                        .iter()
                        .filter_map(|r| (panel.value)(r).map(|v| (r.step as f64, v)))
                        .collect(),
                )
            })
            .collect();
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for (_, s) in &series {
            for &(_, v) in s {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        if !lo.is_finite() {
            lo = 0.0;
            hi = 1.0;
        }
        if hi - lo < 1e-12 {
            hi = lo + 1.0;
        }
        let pad = 0.05 * (hi - lo);
        let mut chart = ChartBuilder::on(area)
            .caption(panel.title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..max_step as f64, (lo - pad)..(hi + pad))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc(panel.y_label)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        let styles = style::report_styles(report);
        for (i, pts) in series {
            let run = &report.runs[i];
            let st = styles[i];
            run_line(&mut chart, pts.clone(), st, 2, Some(run.label.clone()))?;
            // six markers along each line, as in the web app
            let n = pts.len();
            let k = 6usize.min(n);
            let fill = colour(st.colour).filled();
            let m = outline(st.marker, 4.5, 0);
            chart.draw_series((0..k).map(|j| {
                EmptyElement::at(pts[((2 * j + 1) * n / (2 * k)).min(n - 1)])
                    + Polygon::new(m.clone(), fill)
            }))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font(("sans-serif", 13))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// Marching-squares segments of one level of a row-major grid (rows over b, columns over a).
fn contour_segments(v: &[f64], nx: usize, ny: usize, level: f64) -> Vec<[(f64, f64); 2]> {
    let mut segs = Vec::new();
    let at = |i: usize, j: usize| v[j * nx + i];
    let lerp = |a: f64, b: f64| {
        if (b - a).abs() < 1e-300 {
            0.5
        } else {
            (level - a) / (b - a)
        }
    };
    for j in 0..ny.saturating_sub(1) {
        for i in 0..nx.saturating_sub(1) {
            let (v00, v10, v01, v11) = (at(i, j), at(i + 1, j), at(i, j + 1), at(i + 1, j + 1));
            let mut pts = Vec::with_capacity(4);
            let (fi, fj) = (i as f64, j as f64);
            if (v00 < level) != (v10 < level) {
                pts.push((fi + lerp(v00, v10), fj));
            }
            if (v10 < level) != (v11 < level) {
                pts.push((fi + 1.0, fj + lerp(v10, v11)));
            }
            if (v01 < level) != (v11 < level) {
                pts.push((fi + lerp(v01, v11), fj + 1.0));
            }
            if (v00 < level) != (v01 < level) {
                pts.push((fi, fj + lerp(v00, v01)));
            }
            if pts.len() >= 2 {
                segs.push([pts[0], pts[1]]);
            }
            if pts.len() == 4 {
                segs.push([pts[2], pts[3]]);
            }
        }
    }
    segs
}

fn phase<DB: DrawingBackend>(p: &Portrait, root: DrawingArea<DB, Shift>) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let w = p.window;
    let s = &p.surface;
    let (vmin, vmax) = s
        .values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let (plot_area, bar_area) = root.split_horizontally(780);
    let cfg = &p.report.config;
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(
            format!(
                "log10(L + ε) on the rank-one slice, δ={}, η={}, {} steps",
                p.report.problem.delta_s.first().copied().unwrap_or(0.0),
                cfg.eta,
                cfg.steps
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(48)
        .build_cartesian_2d(w.a_min..w.a_max, w.b_min..w.b_max)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("a = uᵀA")
        .y_desc("b = Bv")
        .draw()?;
    // heatmap
    let da = (w.a_max - w.a_min) / (s.nx - 1) as f64;
    let db = (w.b_max - w.b_min) / (s.ny - 1) as f64;
    chart.draw_series((0..s.ny).flat_map(|j| {
        (0..s.nx).map(move |i| {
            let v = s.values[j * s.nx + i];
            let a = w.a_min + i as f64 * da;
            let b = w.b_min + j as f64 * db;
            let c = ViridisRGB.get_color_normalized(v as f32, vmin as f32, vmax as f32);
            Rectangle::new(
                [(a - da / 2.0, b - db / 2.0), (a + da / 2.0, b + db / 2.0)],
                c.filled(),
            )
        })
    }))?;
    // contours at integer decades
    let to_ab = |(fi, fj): (f64, f64)| (w.a_min + fi * da, w.b_min + fj * db);
    let mut level = vmin.ceil();
    while level < vmax {
        for seg in contour_segments(&s.values, s.nx, s.ny, level) {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![to_ab(seg[0]), to_ab(seg[1])],
                WHITE.mix(0.45).stroke_width(1),
            )))?;
        }
        level += 1.0;
    }
    // −∇L field as arrows of equal length (direction only)
    let arrow_len = 0.35 * (w.a_max - w.a_min) / (p.field.len() as f64).sqrt();
    for ar in &p.field {
        let n = (ar.da * ar.da + ar.db * ar.db).sqrt();
        if n < 1e-12 {
            continue;
        }
        let (ux, uy) = (ar.da / n * arrow_len, ar.db / n * arrow_len);
        let tip = (ar.a + ux, ar.b + uy);
        let head = |rot: f64| {
            let (c, s) = (rot.cos(), rot.sin());
            (
                tip.0 - 0.35 * (c * ux - s * uy),
                tip.1 - 0.35 * (s * ux + c * uy),
            )
        };
        let style = WHITE.mix(0.7).stroke_width(1);
        chart.draw_series([
            PathElement::new(vec![(ar.a, ar.b), tip], style),
            PathElement::new(vec![head(0.5), tip, head(-0.5)], style),
        ])?;
    }
    // minimiser hyperbola (dashed) and saddle
    for br in &p.hyperbola {
        chart.draw_series(DashedLineSeries::new(
            br.iter().copied(),
            8,
            5,
            WHITE.stroke_width(2),
        ))?;
    }
    chart
        .draw_series(std::iter::once(Cross::new(
            p.saddle,
            8,
            WHITE.stroke_width(3),
        )))?
        .label("saddle (0,0) · minimisers ab = δ (dashed)")
        .legend(|(x, y)| Cross::new((x + 8, y), 5, BLACK.stroke_width(2)));
    // trajectories, in the methods' shared styles
    let styles = style::report_styles(&p.report);
    for (i, run) in p.report.runs.iter().enumerate() {
        let st = styles[i];
        let pts: Vec<(f64, f64)> = run
            .records
            .iter()
            .filter_map(|r| r.proj.map(|q| (q[0], q[1])))
            .collect();
        // a white halo under each line keeps it readable on the surface
        chart.draw_series(LineSeries::new(pts.clone(), WHITE.mix(0.8).stroke_width(6)))?;
        let label = format!(
            "{} (start off-plane {:.2})",
            run.label,
            run.records
                .first()
                .and_then(|r| r.proj)
                .map_or(0.0, |q| q[2])
        );
        run_line(&mut chart, pts.clone(), st, 3, Some(label))?;
        if let Some(&start) = pts.first() {
            chart.draw_series([
                Circle::new(start, 5, WHITE.stroke_width(2)),
                Circle::new(start, 4, colour(st.colour).stroke_width(2)),
            ])?;
        }
        if let Some(&end) = pts.last() {
            chart.draw_series([
                EmptyElement::at(end) + Polygon::new(outline(st.marker, 8.5, 0), WHITE.filled()),
                EmptyElement::at(end)
                    + Polygon::new(outline(st.marker, 6.5, 0), colour(st.colour).filled()),
            ])?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::LowerLeft)
        .draw()?;
    // colour bar
    let mut bar = ChartBuilder::on(&bar_area)
        .margin_top(50)
        .margin_bottom(52)
        .margin_left(4)
        .margin_right(46)
        .y_label_area_size(0)
        .right_y_label_area_size(60)
        .build_cartesian_2d(0f64..1f64, vmin..vmax)?;
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_label_style(("sans-serif", 13))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    bar_area.draw_text(
        "log10(L+ε)",
        &("sans-serif", 13).into_text_style(&bar_area),
        (8, 28),
    )?;
    let steps = 100;
    bar.draw_series((0..steps).map(|k| {
        let v0 = vmin + (vmax - vmin) * k as f64 / steps as f64;
        let v1 = vmin + (vmax - vmin) * (k + 1) as f64 / steps as f64;
        Rectangle::new(
            [(0.0, v0), (1.0, v1)],
            ViridisRGB
                .get_color_normalized(v0 as f32, vmin as f32, vmax as f32)
                .filled(),
        )
    }))?;
    root.present()?;
    Ok(())
}
