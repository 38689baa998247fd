//! The Fig. 3 toy in 3-D (SPEC §8), drawn the same way by the CLI (SVG/PNG) and the web app
//! (canvas, rotated by dragging): axes a₁, a₂ and b (vertical), the minimiser curve ab = β, and
//! every draw's trajectory from the LoRA start (vanilla's colour, dash and marker) and from the
//! spectral start (LoRA-One's). Starts carry the method's marker; ends a small dot.

use crate::style::rgb;
use crate::sweep_plot::{marker_outline, Theme};
use crate::toy3d::{minimiser_curve, Camera, ToyInit, ToyReport};
use plotters::coord::Shift;
use plotters::prelude::*;

fn colour(hex: &str) -> RGBColor {
    let (r, g, b) = rgb(hex);
    RGBColor(r, g, b)
}

/// The half-width R of the cube [−R, R]³ drawn: it holds every trajectory (capped at 6, so one
/// runaway draw does not shrink the rest to a dot), at least [−2.5, 2.5].
pub fn extent(r: &ToyReport) -> f64 {
    let m = r
        .runs
        .iter()
        .flat_map(|run| run.path.iter())
        .flat_map(|p| p.iter())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    (m * 1.05).clamp(2.5, 6.0)
}

/// A path thinned for drawing: a point is kept when it is at least `eps` from the last one kept
/// (so the fast early steps keep their detail and the slow tail costs little); the end is kept.
pub fn thin(path: &[[f64; 3]], eps: f64) -> Vec<[f64; 3]> {
    let mut out: Vec<[f64; 3]> = Vec::new();
    for p in path {
        let keep = out.last().is_none_or(|q| {
            let d = (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2) + (p[2] - q[2]).powi(2);
            d >= eps * eps
        });
        if keep {
            out.push(*p);
        }
    }
    if let (Some(l), Some(k)) = (path.last(), out.last()) {
        if l != k {
            out.push(*l);
        }
    }
    out
}

/// Draw the figure. `(a1, a2, b)` maps to plotters' (x, z, y): b is vertical.
pub fn draw<DB: DrawingBackend>(
    r: &ToyReport,
    cam: Camera,
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
    let title = format!(
        "Fig. 3 toy: f(x) = b·xᵀa, {} draw{} of {} samples, GD η = {}, {} steps",
        s.seeds,
        if s.seeds == 1 { "" } else { "s" },
        s.n,
        s.eta,
        s.steps
    );
    let (top, body) = root.split_vertically(fs(30.0));
    top.titled(&title, ("sans-serif", fs(15.0)).into_font().color(&fg))?;
    let big = extent(r);
    let clip = |v: f64| v.clamp(-big, big);
    let mut chart = ChartBuilder::on(&body).margin(fs(8.0)).build_cartesian_3d(
        -big..big,
        -big..big,
        -big..big,
    )?;
    chart.with_projection(|mut pb| {
        pb.yaw = cam.yaw;
        pb.pitch = cam.pitch;
        pb.scale = 0.72;
        pb.into_matrix()
    });
    chart
        .configure_axes()
        .label_style(("sans-serif", fs(11.0)).into_font().color(&fg))
        .axis_panel_style(th.grid.mix(0.25))
        .bold_grid_style(th.grid)
        .light_grid_style(TRANSPARENT)
        .max_light_lines(1)
        .x_labels(5)
        .y_labels(5)
        .z_labels(5)
        .draw()?;
    // axis names at the positive ends
    let name_font = ("sans-serif", fs(15.0)).into_font().color(&fg);
    for (name, at) in [
        ("a₁", (big * 1.12, -big, -big)),
        ("b", (-big, big * 1.1, -big)),
        ("a₂", (-big, -big, big * 1.12)),
    ] {
        chart.draw_series(std::iter::once(Text::new(name, at, name_font.clone())))?;
    }
    // the minimisers: ab = β, both branches
    let w = fs(2.0).max(1);
    for (i, br) in minimiser_curve(2.2 / big, big, 160).iter().enumerate() {
        let pts: Vec<(f64, f64, f64)> = br
            .iter()
            .filter(|p| p.iter().all(|v| v.abs() <= big))
            .map(|p| (p[0], p[2], p[1]))
            .collect();
        let anno = chart.draw_series(LineSeries::new(pts, fg.stroke_width(w)))?;
        if i == 0 {
            anno.label("minimisers ab = β").legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], fg.stroke_width(2))
            });
        }
    }
    let eps = big / 400.0;
    let mut labelled = [false; 2];
    for run in &r.runs {
        let m = run.init.method();
        let c = colour(m.colour());
        let style = c.mix(0.85).stroke_width(w);
        let pts: Vec<(f64, f64, f64)> = thin(&run.path, eps)
            .iter()
            .map(|p| (clip(p[0]), clip(p[2]), clip(p[1])))
            .collect();
        let Some(&start) = pts.first() else { continue };
        let end = *pts.last().unwrap_or(&start);
        let anno = match m.dash().pattern() {
            [on, off, ..] => chart.draw_series(DashedLineSeries::new(
                pts,
                (*on * th.scale) as u32 + w,
                (*off * th.scale) as u32 + w,
                style,
            ))?,
            _ => chart.draw_series(LineSeries::new(pts, style))?,
        };
        let k = (run.init == ToyInit::Spectral) as usize;
        if !labelled[k] {
            labelled[k] = true;
            anno.label(run.init.label()).legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (18, 0)], c.stroke_width(2))
                    + Polygon::new(marker_outline(m.marker(), 4.0, 9), c.filled())
            });
        }
        let sz = 4.5 * th.scale;
        chart.draw_series(std::iter::once(
            EmptyElement::at(start) + Polygon::new(marker_outline(m.marker(), sz, 0), c.filled()),
        ))?;
        chart.draw_series(std::iter::once(Circle::new(
            end,
            (2.0 * th.scale) as i32,
            fg.filled(),
        )))?;
        if let Some(t) = run.diverged_at {
            chart.draw_series(std::iter::once(Text::new(
                format!("diverged at step {t}"),
                end,
                ("sans-serif", fs(12.0)).into_font().color(&c),
            )))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(th.bg.mix(0.85))
        .border_style(th.grid)
        .label_font(("sans-serif", fs(12.0)).into_font().color(&fg))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toy3d::{run, ToySpec};

    #[test]
    fn thinning_keeps_ends_and_spacing() {
        let path: Vec<[f64; 3]> = (0..1000).map(|i| [i as f64 * 1e-3, 0.0, 0.0]).collect();
        let t = thin(&path, 0.1);
        assert_eq!(t.first(), path.first());
        assert_eq!(t.last(), path.last());
        assert!(t.len() < 15 && t.len() > 8, "{}", t.len());
    }

    #[test]
    fn extent_holds_the_paths() {
        let r = run(&ToySpec::default()).unwrap();
        let e = extent(&r);
        assert!((2.5..=6.0).contains(&e));
        let m = r
            .runs
            .iter()
            .flat_map(|x| x.path.iter())
            .flat_map(|p| p.iter())
            .fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(e >= m.min(6.0));
    }

    #[cfg(feature = "cli")]
    /// The same figure rotated is a different picture (the projection reads the camera).
    #[test]
    fn rotation_changes_the_picture() {
        crate::sweep_plot::tests::register_test_font();
        let r = run(&ToySpec::default()).unwrap();
        let svg = |cam: Camera| {
            let mut s = String::new();
            {
                let root = SVGBackend::with_string(&mut s, (640, 480)).into_drawing_area();
                draw(&r, cam, root, &Theme::light()).unwrap();
            }
            s
        };
        let a = svg(Camera::default());
        let b = svg(Camera::default().dragged(90.0, 0.0));
        assert!(a.contains("minimisers ab = β") && a.contains("spectral init"));
        assert_ne!(a, b);
        assert_eq!(a, svg(Camera::default()));
    }
}
