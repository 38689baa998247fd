//! The digits figure (SPEC §9), drawn the same way by the CLI and the web app: the talk's table
//! as bars (median test accuracy over the seeds, 10–90 % whiskers, init + training time), the
//! test accuracy over the steps, and Fig. 1(c): ln loss on the plane of the full-FT path with every
//! method's path projected on it.

use crate::digits::{table, AdapterInit, FtMethod, FtOpt, FtReport, FtRun};
use crate::style::{self, rgb, Dash};
use crate::sweep_plot::{panel, styled_line, PanelText, Theme};
use plotters::coord::Shift;
use plotters::prelude::*;

/// One colour and line style per method, in the engine's visual language: the LoRA inits take
/// their method's colour and dash (PiSSA its own), full fine-tuning the foreground colour.
pub fn method_style(m: &FtMethod, fg: RGBColor) -> (RGBColor, Dash) {
    let c = |hex: &str| {
        let (r, g, b) = rgb(hex);
        RGBColor(r, g, b)
    };
    match m {
        FtMethod::Pretrained => (c(style::GREY), Dash::Dotted),
        FtMethod::OneStepFull => (fg, Dash::Dotted),
        FtMethod::OneStepRank => (c(style::SKY), Dash::Dotted),
        FtMethod::Full { opt: FtOpt::Adam } => (fg, Dash::Dashed),
        FtMethod::Full { .. } => (fg, Dash::Solid),
        FtMethod::Lora { init, .. } => match init {
            AdapterInit::Vanilla => (
                c(style::Method::Vanilla.colour()),
                style::Method::Vanilla.dash(),
            ),
            AdapterInit::LoraGa => (
                c(style::Method::LoraGa.colour()),
                style::Method::LoraGa.dash(),
            ),
            AdapterInit::LoraOne => (
                c(style::Method::LoraOne.colour()),
                style::Method::LoraOne.dash(),
            ),
            AdapterInit::Pissa => (
                c(style::Method::Pissa.colour()),
                style::Method::Pissa.dash(),
            ),
        },
    }
}

fn series_of<'a>(r: &'a FtReport, label: &str) -> Vec<&'a FtRun> {
    r.runs.iter().filter(|x| x.label == label).collect()
}

/// The whole figure: bars, curves, landscape (left to right).
pub fn draw<DB: DrawingBackend>(
    r: &FtReport,
    root: DrawingArea<DB, Shift>,
    th: &Theme,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    draw_at(r, root, th, None)
}

/// The figure with the landscape's paths drawn up to step `upto` (None: whole), a dot at each
/// method's point at that step and a marker line on the curves: the animation of Fig. 1(c).
pub fn draw_at<DB: DrawingBackend>(
    r: &FtReport,
    root: DrawingArea<DB, Shift>,
    th: &Theme,
    upto: Option<usize>,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    root.fill(&th.bg)?;
    let fs = |x: f64| (x * th.scale) as u32;
    let fg = th.fg;
    let c = &r.config;
    let mut accs: Vec<f64> = r.pretraining.iter().map(|p| p.odd_test_acc).collect();
    accs.sort_by(f64::total_cmp);
    let pre_acc = crate::ensemble::quantile(&accs, 0.5);
    let title = format!(
        "Digits, {}{}: 64 → {} → {}, rank {}, {} steps, {} seed{} · pre-trained: {:.1} % held-out accuracy (median)",
        c.task.label(),
        if c.ft_frac < 1.0 {
            format!(", {:.0} % of the fine-tuning data", 100.0 * c.ft_frac)
        } else {
            String::new()
        },
        c.hidden,
        c.task.classes(),
        c.rank,
        c.steps,
        c.seeds,
        if c.seeds == 1 { "" } else { "s" },
        100.0 * pre_acc
    );
    let (top, body) = root.split_vertically(fs(32.0));
    top.titled(&title, ("sans-serif", fs(15.0)).into_font().color(&fg))?;
    let (w, _) = body.dim_in_pixel();
    let (left, rest) = body.split_horizontally(w * 36 / 100);
    let (mid, right) = rest.split_horizontally(w * 32 / 100);
    let (_, hgt) = mid.dim_in_pixel();
    let (mid_top, mid_bottom) = mid.split_vertically(hgt * 55 / 100);
    bars(r, &left, th)?;
    curves(r, &mid_top, th, upto)?;
    alignment(r, &mid_bottom, th)?;
    landscape(r, &right, th, upto)?;
    root.present()?;
    Ok(())
}

fn bars<DB: DrawingBackend>(
    r: &FtReport,
    area: &DrawingArea<DB, Shift>,
    th: &Theme,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let fs = |x: f64| (x * th.scale) as u32;
    let fg = th.fg;
    let rows = table(r);
    let n = rows.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(
            "test accuracy on the even digits",
            ("sans-serif", fs(14.0)).into_font().color(&fg),
        )
        .margin(fs(8.0))
        .x_label_area_size(fs(30.0))
        .y_label_area_size(fs(8.0))
        .build_cartesian_2d(0.0..1.0f64, 0.0..n as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("test accuracy (median over seeds, 10–90 %)")
        .label_style(("sans-serif", fs(11.0)).into_font().color(&fg))
        .axis_desc_style(("sans-serif", fs(11.0)).into_font().color(&fg))
        .axis_style(fg)
        .bold_line_style(th.grid)
        .light_line_style(TRANSPARENT)
        .draw()?;
    for (i, row) in rows.iter().enumerate() {
        let y = (n - 1 - i) as f64;
        let m = series_of(r, &row.label)[0].method;
        let (col, _) = method_style(&m, fg);
        chart.draw_series(std::iter::once(Rectangle::new(
            [(0.0, y + 0.15), (row.acc_median.clamp(0.0, 1.0), y + 0.85)],
            col.mix(0.55).filled(),
        )))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(row.acc_q10, y + 0.5), (row.acc_q90, y + 0.5)],
            fg.stroke_width(fs(1.5)),
        )))?;
        let ms = row.init_ms + row.train_ms;
        let time = if ms < 1000.0 {
            format!("{ms:.0} ms")
        } else {
            format!("{:.1} s", ms / 1000.0)
        };
        chart.draw_series(std::iter::once(Text::new(
            format!("{} · {:.1} % · {time}", row.label, 100.0 * row.acc_median),
            (0.02, y + 0.62),
            ("sans-serif", fs(11.0)).into_font().color(&fg),
        )))?;
    }
    Ok(())
}

fn curves<DB: DrawingBackend>(
    r: &FtReport,
    area: &DrawingArea<DB, Shift>,
    th: &Theme,
    upto: Option<usize>,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let fs = |x: f64| (x * th.scale) as u32;
    let fg = th.fg;
    let t_max = r.config.steps.max(1) as f64;
    let mut chart = panel(
        area,
        th,
        PanelText::DENSE,
        "test accuracy over the steps (seed median)",
        0.0..t_max,
        0.0..1.0,
        "step",
    )?;
    if let Some(t) = upto {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(t as f64, 0.0), (t as f64, 1.0)],
            fg.mix(0.6).stroke_width(1),
        )))?;
    }
    for row in table(r) {
        let runs = series_of(r, &row.label);
        let m = runs[0].method;
        let (col, dash) = method_style(&m, fg);
        // median over the seeds at each recorded step (one-step methods: their step 0 → 1 drawn
        // flat across the axis, so they read as levels)
        let steps: Vec<usize> = runs[0].records.iter().map(|x| x.step).collect();
        let mut pts: Vec<(f64, f64)> = steps
            .iter()
            .enumerate()
            .map(|(k, &t)| {
                let mut v: Vec<f64> = runs
                    .iter()
                    .filter_map(|x| x.records.get(k).map(|q| q.test_acc))
                    .collect();
                v.sort_by(f64::total_cmp);
                (t as f64, crate::ensemble::quantile(&v, 0.5))
            })
            .collect();
        if steps.len() <= 2 {
            let last = pts.last().map_or(0.0, |p| p.1);
            pts = vec![(0.0, last), (t_max, last)];
        }
        let style = col.stroke_width(fs(2.0));
        styled_line(&mut chart, pts, style, dash, th.scale)?;
    }
    Ok(())
}

/// Fig. 1(b)/Fig. 2 on a real model: sin θ between the adapter's A_t and the one-step
/// gradient's top-r left subspace, per layer (layer 1 bold, layer 2 thin), seed median.
fn alignment<DB: DrawingBackend>(
    r: &FtReport,
    area: &DrawingArea<DB, Shift>,
    th: &Theme,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let fs = |x: f64| (x * th.scale) as u32;
    let fg = th.fg;
    let t_max = r.config.steps.max(1) as f64;
    let mut chart = panel(
        area,
        th,
        PanelText::DENSE,
        "LoRA: sin θ(A_t, top-r of G) per layer",
        0.0..t_max,
        0.0..1.0,
        "step (layer 1 bold, layer 2 thin)",
    )?;
    for row in table(r) {
        let runs = series_of(r, &row.label);
        let m = runs[0].method;
        if !matches!(m, FtMethod::Lora { .. }) {
            continue;
        }
        let (col, dash) = method_style(&m, fg);
        for (layer, width) in [(0usize, 2.0), (1, 1.0)] {
            let pts: Vec<(f64, f64)> = runs[0]
                .records
                .iter()
                .enumerate()
                .filter_map(|(k, q)| {
                    let mut v: Vec<f64> = runs
                        .iter()
                        .filter_map(|x| x.records.get(k).and_then(|q| q.sin_a).map(|s| s[layer]))
                        .collect();
                    v.sort_by(f64::total_cmp);
                    (!v.is_empty()).then(|| (q.step as f64, crate::ensemble::quantile(&v, 0.5)))
                })
                .collect();
            let style = col.stroke_width(fs(width).max(1));
            styled_line(&mut chart, pts, style, dash, th.scale)?;
        }
    }
    Ok(())
}

fn landscape<DB: DrawingBackend>(
    r: &FtReport,
    area: &DrawingArea<DB, Shift>,
    th: &Theme,
    upto: Option<usize>,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let fs = |x: f64| (x * th.scale) as u32;
    let fg = th.fg;
    let Some(l) = &r.landscape else {
        area.titled(
            "no landscape (needs full fine-tuning with GD)",
            ("sans-serif", fs(13.0)).into_font().color(&fg),
        )?;
        return Ok(());
    };
    let (u0, u1) = (l.u[0], l.u[l.u.len() - 1]);
    let (v0, v1) = (l.v[0], l.v[l.v.len() - 1]);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "Fig. 1(c): ln loss on the full-FT path's plane ({:.0} % of it)",
                100.0 * l.explained
            ),
            ("sans-serif", fs(14.0)).into_font().color(&fg),
        )
        .margin(fs(8.0))
        .x_label_area_size(fs(30.0))
        .y_label_area_size(fs(40.0))
        .build_cartesian_2d(u0..u1, v0..v1)?;
    let (lo, hi) = l
        .ln_loss
        .iter()
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let nu = l.u.len();
    let du = (u1 - u0) / (nu - 1).max(1) as f64;
    let dv = (v1 - v0) / (l.v.len() - 1).max(1) as f64;
    chart.draw_series(l.ln_loss.iter().enumerate().map(|(i, &z)| {
        let (x, y) = (l.u[i % nu], l.v[i / nu]);
        let t = if hi > lo { (z - lo) / (hi - lo) } else { 0.5 };
        let (cr, cg, cb) = style::viridis(t.clamp(0.0, 1.0));
        Rectangle::new(
            [(x - du / 2.0, y - dv / 2.0), (x + du / 2.0, y + dv / 2.0)],
            RGBColor(cr, cg, cb).filled(),
        )
    }))?;
    chart
        .configure_mesh()
        .x_desc("PC 1")
        .y_desc("PC 2")
        .label_style(("sans-serif", fs(11.0)).into_font().color(&fg))
        .axis_desc_style(("sans-serif", fs(11.0)).into_font().color(&fg))
        .axis_style(fg)
        .disable_mesh()
        .draw()?;
    let seed0 = r.runs.first().map_or(0, |x| x.seed);
    for run in r
        .runs
        .iter()
        .filter(|x| x.seed == seed0 && x.plane_path.len() > 1)
    {
        let (col, dash) = method_style(&run.method, RGBColor(255, 255, 255));
        // the path up to the animation's step (records carry their steps)
        let pts: Vec<(f64, f64)> = run
            .plane_path
            .iter()
            .zip(&run.records)
            .filter(|(_, q)| upto.is_none_or(|t| q.step <= t))
            .map(|(p, _)| (p[0], p[1]))
            .collect();
        let style = col.stroke_width(fs(2.0));
        let end = *pts.last().unwrap_or(&(0.0, 0.0));
        styled_line(&mut chart, pts, style, dash, th.scale)?;
        chart.draw_series(std::iter::once(Circle::new(
            end,
            fs(3.5) as i32,
            col.filled(),
        )))?;
    }
    chart.draw_series(std::iter::once(Text::new(
        "W_pre",
        (0.0, 0.0),
        ("sans-serif", fs(11.0)).into_font().color(&WHITE),
    )))?;
    Ok(())
}
