//! Drawing the phase portrait on a 2D canvas: heatmap of log10(L + ε), contours, the −∇L field,
//! the minimiser hyperbola, the saddle and the trajectories up to the current step.

use super::phase_model::PhaseData;
use crate::phase::Window;
use leptos::prelude::document;
use wasm_bindgen::{Clamped, JsCast};
use web_sys::{CanvasRenderingContext2d as Ctx, HtmlCanvasElement};

/// Plot-area geometry in CSS pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Frame {
    pub x0: f64,
    pub y0: f64,
    pub w: f64,
    pub h: f64,
    pub win: Window,
}

impl Frame {
    pub fn new(css_w: f64, css_h: f64, win: Window, font: f64) -> Self {
        let left = 3.6 * font;
        let bottom = 3.0 * font;
        let top = 0.8 * font;
        // the colour bar and its labels
        let right = 5.6 * font;
        Frame {
            x0: left,
            y0: top,
            w: (css_w - left - right).max(10.0),
            h: (css_h - top - bottom).max(10.0),
            win,
        }
    }
    pub fn px(&self, a: f64, b: f64) -> (f64, f64) {
        let w = &self.win;
        (
            self.x0 + (a - w.a_min) / (w.a_max - w.a_min) * self.w,
            self.y0 + (1.0 - (b - w.b_min) / (w.b_max - w.b_min)) * self.h,
        )
    }
    /// CSS pixel → (a, b), None outside the plot area.
    pub fn ab(&self, x: f64, y: f64) -> Option<(f64, f64)> {
        let u = (x - self.x0) / self.w;
        let v = 1.0 - (y - self.y0) / self.h;
        if !(0.0..=1.0).contains(&u) || !(0.0..=1.0).contains(&v) {
            return None;
        }
        let w = &self.win;
        Some((
            w.a_min + u * (w.a_max - w.a_min),
            w.b_min + v * (w.b_max - w.b_min),
        ))
    }
}

pub struct Theme {
    pub dark: bool,
    pub font: f64,
}

impl Theme {
    pub fn fg(&self) -> &'static str {
        if self.dark {
            "#e8e8e8"
        } else {
            "#1a1a1a"
        }
    }
    pub fn bg(&self) -> &'static str {
        if self.dark {
            "#15171c"
        } else {
            "#ffffff"
        }
    }
    /// Heatmap colours: viridis (perceptual; low loss dark, high loss bright), both themes.
    pub fn ramp(&self, t: f64) -> (u8, u8, u8) {
        crate::style::viridis(t)
    }
}

/// Ink that reads on the surface where its value is `t` ∈ [0, 1]: dark on viridis' bright end,
/// light on its dark end.
pub fn ink_on(t: f64, alpha: f64) -> String {
    let (r, g, b) = crate::style::viridis(t);
    let lum = crate::style::luminance(&format!("#{r:02X}{g:02X}{b:02X}"));
    if lum > 0.3 {
        format!("rgba(0,0,0,{alpha})")
    } else {
        format!("rgba(255,255,255,{alpha})")
    }
}

impl PhaseData {
    /// The surface's value at (a, b) on the [0, 1] colour scale (nearest grid cell).
    pub fn t_at(&self, a: f64, b: f64) -> f64 {
        let s = &self.portrait.surface;
        let w = self.window();
        if s.nx == 0 || s.ny == 0 {
            return 0.5;
        }
        let i = (((a - w.a_min) / (w.a_max - w.a_min)) * (s.nx - 1) as f64).round();
        let j = (((b - w.b_min) / (w.b_max - w.b_min)) * (s.ny - 1) as f64).round();
        let i = (i.max(0.0) as usize).min(s.nx - 1);
        let j = (j.max(0.0) as usize).min(s.ny - 1);
        ((s.values[j * s.nx + i] - self.lo) / (self.hi - self.lo).max(1e-12)).clamp(0.0, 1.0)
    }
    /// A contour level on the [0, 1] colour scale.
    pub fn t_of(&self, level: f64) -> f64 {
        ((level - self.lo) / (self.hi - self.lo).max(1e-12)).clamp(0.0, 1.0)
    }
}

/// Colour-bar ticks: (value, position 0..1 from the bottom).
pub fn bar_ticks(lo: f64, hi: f64) -> Vec<(f64, f64)> {
    nice_ticks(lo, hi, 4)
        .into_iter()
        .map(|v| (v, (v - lo) / (hi - lo).max(1e-12)))
        .collect()
}

/// A method's marker at (x, y) on the canvas: filled in `fill`, outlined in `edge`.
fn marker(ctx: &Ctx, m: crate::style::Marker, x: f64, y: f64, size: f64, fill: &str, edge: &str) {
    ctx.set_fill_style_str(fill);
    ctx.begin_path();
    let v = m.vertices(x, y, size);
    if v.is_empty() {
        let _ = ctx.arc(x, y, size, 0.0, std::f64::consts::TAU);
    } else {
        for (k, &(px, py)) in v.iter().enumerate() {
            if k == 0 {
                ctx.move_to(px, py);
            } else {
                ctx.line_to(px, py);
            }
        }
        ctx.close_path();
    }
    ctx.fill();
    ctx.set_stroke_style_str(edge);
    ctx.set_line_width(1.5);
    ctx.stroke();
}

/// The same marker as an SVG element.
fn svg_marker(
    m: crate::style::Marker,
    x: f64,
    y: f64,
    size: f64,
    fill: &str,
    edge: &str,
) -> String {
    let v = m.vertices(x, y, size);
    if v.is_empty() {
        format!(
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="{size}" fill="{fill}" stroke="{edge}" stroke-width="1.5"/>"#
        )
    } else {
        let pts: Vec<String> = v.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        format!(
            r#"<polygon points="{}" fill="{fill}" stroke="{edge}" stroke-width="1.5"/>"#,
            pts.join(" ")
        )
    }
}

/// The heatmap as a small canvas (one pixel per grid cell), drawn scaled with smoothing.
pub fn heat_canvas(d: &PhaseData, theme: &Theme) -> Option<HtmlCanvasElement> {
    let s = &d.portrait.surface;
    let c: HtmlCanvasElement = document().create_element("canvas").ok()?.dyn_into().ok()?;
    c.set_width(s.nx as u32);
    c.set_height(s.ny as u32);
    let ctx = super::util::ctx2d(&c)?;
    let mut px = vec![0u8; s.nx * s.ny * 4];
    let span = (d.hi - d.lo).max(1e-12);
    for j in 0..s.ny {
        let row = s.ny - 1 - j; // b grows upwards
        for i in 0..s.nx {
            let t = (s.values[j * s.nx + i] - d.lo) / span;
            let (r, g, b) = theme.ramp(t);
            let k = (row * s.nx + i) * 4;
            px[k..k + 4].copy_from_slice(&[r, g, b, 255]);
        }
    }
    let img = web_sys::ImageData::new_with_u8_clamped_array_and_sh(
        Clamped(&px),
        s.nx as u32,
        s.ny as u32,
    )
    .ok()?;
    ctx.put_image_data(&img, 0.0, 0.0).ok()?;
    Some(c)
}

fn line(ctx: &Ctx, pts: &[(f64, f64)]) {
    ctx.begin_path();
    for (k, &(x, y)) in pts.iter().enumerate() {
        if k == 0 {
            ctx.move_to(x, y);
        } else {
            ctx.line_to(x, y);
        }
    }
    ctx.stroke();
}

fn dash(ctx: &Ctx, pattern: &[f64], scale: f64) {
    let arr = js_sys::Array::new();
    for p in pattern {
        arr.push(&(p * scale).into());
    }
    let _ = ctx.set_line_dash(&arr);
}

/// Everything for one frame. `t` is the animation step (fractional), `scale` the CSS-pixel scale
/// applied by the caller (devicePixelRatio).
#[allow(clippy::too_many_arguments)]
pub fn draw(
    ctx: &Ctx,
    d: &PhaseData,
    heat: Option<&HtmlCanvasElement>,
    f: &Frame,
    css_w: f64,
    css_h: f64,
    t: f64,
    show: [bool; 5],
    theme: &Theme,
) {
    let fs = theme.font;
    ctx.set_fill_style_str(theme.bg());
    ctx.fill_rect(0.0, 0.0, css_w, css_h);

    // heatmap
    if let Some(h) = heat {
        ctx.set_image_smoothing_enabled(true);
        let _ = ctx.draw_image_with_html_canvas_element_and_dw_and_dh(h, f.x0, f.y0, f.w, f.h);
    }
    ctx.save();
    ctx.begin_path();
    ctx.rect(f.x0, f.y0, f.w, f.h);
    ctx.clip();

    // contours, in an ink that reads on the surface under them
    ctx.set_line_width(1.0);
    dash(ctx, &[], 1.0);
    for (level, [p, q]) in &d.contours {
        ctx.set_stroke_style_str(&ink_on(d.t_of(*level), 0.35));
        ctx.begin_path();
        let (x0, y0) = f.px(p.0, p.1);
        let (x1, y1) = f.px(q.0, q.1);
        ctx.move_to(x0, y0);
        ctx.line_to(x1, y1);
        ctx.stroke();
    }

    // −∇L arrows: direction, length grows with log-magnitude
    let arrows = &d.portrait.field;
    let n = (arrows.len() as f64).sqrt().max(1.0);
    let cell = f.w.min(f.h) / n;
    let mags: Vec<f64> = arrows.iter().map(|a| a.da.hypot(a.db)).collect();
    let mmax = mags.iter().cloned().fold(0.0, f64::max).max(1e-300);
    ctx.set_line_width(1.0);
    for (a, m) in arrows.iter().zip(&mags) {
        if *m <= 0.0 {
            continue;
        }
        let ink = ink_on(d.t_at(a.a, a.b), 0.6);
        ctx.set_stroke_style_str(&ink);
        ctx.set_fill_style_str(&ink);
        let rel = (1.0 + 9.0 * m / mmax).log10(); // 0..1
        let len = cell * (0.25 + 0.5 * rel);
        let (x, y) = f.px(a.a, a.b);
        let (ux, uy) = (a.da / m, -a.db / m);
        let (x1, y1) = (x + ux * len * 0.5, y + uy * len * 0.5);
        let (x0, y0) = (x - ux * len * 0.5, y - uy * len * 0.5);
        line(ctx, &[(x0, y0), (x1, y1)]);
        let hl = (0.3 * len).max(3.0);
        ctx.begin_path();
        ctx.move_to(x1, y1);
        ctx.line_to(x1 - hl * (ux - 0.5 * uy), y1 - hl * (uy + 0.5 * ux));
        ctx.line_to(x1 - hl * (ux + 0.5 * uy), y1 - hl * (uy - 0.5 * ux));
        ctx.close_path();
        ctx.fill();
    }

    // hyperbola ab = g/s
    ctx.set_stroke_style_str(theme.fg());
    ctx.set_line_width(2.0);
    for br in &d.portrait.hyperbola {
        let pts: Vec<(f64, f64)> = br.iter().map(|&(a, b)| f.px(a, b)).collect();
        line(ctx, &pts);
    }

    // saddle
    let (sx, sy) = f.px(d.portrait.saddle.0, d.portrait.saddle.1);
    ctx.set_fill_style_str(theme.bg());
    ctx.set_stroke_style_str(theme.fg());
    ctx.set_line_width(2.0);
    ctx.begin_path();
    let _ = ctx.arc(sx, sy, 5.0, 0.0, std::f64::consts::TAU);
    ctx.fill();
    ctx.stroke();

    // trajectories
    let step = t.floor().max(0.0) as usize;
    for tr in &d.trajs {
        if !show[tr.method.index()] || tr.pts.is_empty() {
            continue;
        }
        let upto = step.min(tr.pts.len() - 1);
        let pts: Vec<(f64, f64)> = tr.pts[..=upto].iter().map(|p| f.px(p[0], p[1])).collect();
        let col = tr.method.colour();
        // halo for contrast on the heatmap
        ctx.set_stroke_style_str(if theme.dark {
            "rgba(0,0,0,0.7)"
        } else {
            "rgba(255,255,255,0.85)"
        });
        ctx.set_line_width(5.0);
        dash(ctx, &[], 1.0);
        line(ctx, &pts);
        ctx.set_stroke_style_str(col);
        ctx.set_line_width(2.5);
        dash(ctx, tr.method.dash().pattern(), 1.0);
        line(ctx, &pts);
        dash(ctx, &[], 1.0);
        // start: a small hollow ring; current: the method's marker
        let (x0, y0) = pts[0];
        ctx.set_line_width(2.0);
        ctx.begin_path();
        let _ = ctx.arc(x0, y0, 3.5, 0.0, std::f64::consts::TAU);
        ctx.stroke();
        let (x, y) = *pts.last().expect("non-empty");
        marker(ctx, tr.method.marker(), x, y, 6.0, col, theme.bg());
    }
    ctx.restore();

    // frame and axes
    ctx.set_stroke_style_str(theme.fg());
    ctx.set_line_width(1.0);
    ctx.stroke_rect(f.x0, f.y0, f.w, f.h);
    colour_bar(ctx, d, f, theme);
    ctx.set_fill_style_str(theme.fg());
    ctx.set_font(&format!("{}px system-ui, sans-serif", fs));
    let w = f.win;
    let ticks = nice_ticks(w.a_min, w.a_max, 5);
    ctx.set_text_align("center");
    ctx.set_text_baseline("top");
    for &a in &ticks {
        let (x, y) = f.px(a, w.b_min);
        line(ctx, &[(x, y), (x, y + 4.0)]);
        let _ = ctx.fill_text(&tick_label(a), x, y + 6.0);
    }
    let _ = ctx.fill_text(
        "a = uᵀA  (input side)",
        f.x0 + f.w / 2.0,
        f.y0 + f.h + 1.5 * fs,
    );
    ctx.set_text_align("right");
    ctx.set_text_baseline("middle");
    for &b in &nice_ticks(w.b_min, w.b_max, 5) {
        let (x, y) = f.px(w.a_min, b);
        line(ctx, &[(x - 4.0, y), (x, y)]);
        let _ = ctx.fill_text(&tick_label(b), x - 6.0, y);
    }
    ctx.save();
    let _ = ctx.translate(0.9 * fs, f.y0 + f.h / 2.0);
    let _ = ctx.rotate(-std::f64::consts::FRAC_PI_2);
    ctx.set_text_align("center");
    let _ = ctx.fill_text("b = Bv  (output side)", 0.0, 0.0);
    ctx.restore();
    // labels in the plot
    ctx.set_text_align("left");
    ctx.set_text_baseline("bottom");
    let _ = ctx.fill_text("saddle", sx + 7.0, sy - 4.0);
    if let Some(br) = d.portrait.hyperbola.first() {
        if let Some(&(a, b)) = br.get(br.len() * 3 / 4) {
            let (x, y) = f.px(a, b);
            let label = "ab = δ (minimisers)";
            let tw = ctx.measure_text(label).map_or(8.0 * fs, |m| m.width());
            let x = (x + 6.0).min(f.x0 + f.w - tw - 4.0);
            let _ = ctx.fill_text(label, x, y - 6.0);
        }
    }
}

/// The colour bar right of the plot: viridis from the surface's low (bottom) to high (top)
/// log10(L + ε), with ticks and its label.
fn colour_bar(ctx: &Ctx, d: &PhaseData, f: &Frame, theme: &Theme) {
    let fs = theme.font;
    let (x, w) = (f.x0 + f.w + 0.7 * fs, 0.9 * fs);
    let n = 64;
    for i in 0..n {
        let (r, g, b) = theme.ramp((i as f64 + 0.5) / n as f64);
        ctx.set_fill_style_str(&format!("rgb({r},{g},{b})"));
        // bottom-up, each band overlapping the next by a pixel (no seams)
        let y = f.y0 + f.h * (1.0 - (i + 1) as f64 / n as f64);
        ctx.fill_rect(x, y, w, f.h / n as f64 + 1.0);
    }
    ctx.set_stroke_style_str(theme.fg());
    ctx.set_line_width(1.0);
    ctx.stroke_rect(x, f.y0, w, f.h);
    ctx.set_fill_style_str(theme.fg());
    ctx.set_text_align("left");
    ctx.set_text_baseline("middle");
    for (v, pos) in bar_ticks(d.lo, d.hi) {
        let y = f.y0 + (1.0 - pos) * f.h;
        line(ctx, &[(x + w, y), (x + w + 3.0, y)]);
        let _ = ctx.fill_text(&tick_label(v), x + w + 4.0, y);
    }
    ctx.save();
    let _ = ctx.translate(x + w + 3.4 * fs, f.y0 + f.h / 2.0);
    let _ = ctx.rotate(-std::f64::consts::FRAC_PI_2);
    ctx.set_text_align("center");
    let _ = ctx.fill_text("log10(L + ε)", 0.0, 0.0);
    ctx.restore();
}

pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).abs().max(1e-12);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= n as f64)
        .unwrap_or(10.0 * mag);
    let mut v = Vec::new();
    let mut x = (lo / step).ceil() * step;
    while x <= hi + 1e-9 * step {
        v.push(if x.abs() < 1e-12 * step { 0.0 } else { x });
        x += step;
    }
    v
}

fn tick_label(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The same figure as SVG (vector lines and text; the heatmap embedded as a PNG image).
#[allow(clippy::too_many_arguments)]
pub fn svg(
    d: &PhaseData,
    heat_png: Option<&str>,
    f: &Frame,
    css_w: f64,
    css_h: f64,
    t: f64,
    show: [bool; 5],
    theme: &Theme,
) -> String {
    use std::fmt::Write;
    let fs = theme.font;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{css_w}" height="{css_h}" viewBox="0 0 {css_w} {css_h}" font-family="system-ui, sans-serif" font-size="{fs}">"#
    );
    let _ = write!(
        s,
        r#"<title>LoRA-One phase portrait</title><rect width="100%" height="100%" fill="{}"/>"#,
        theme.bg()
    );
    if let Some(u) = heat_png {
        let _ = write!(
            s,
            r#"<image href="{u}" x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" preserveAspectRatio="none"/>"#,
            f.x0, f.y0, f.w, f.h
        );
    }
    let _ = write!(
        s,
        r#"<defs><clipPath id="plot"><rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}"/></clipPath></defs><g clip-path="url(#plot)">"#,
        f.x0, f.y0, f.w, f.h
    );
    for (level, [p, q]) in &d.contours {
        let (x0, y0) = f.px(p.0, p.1);
        let (x1, y1) = f.px(q.0, q.1);
        let _ = write!(
            s,
            r#"<path d="M{x0:.1} {y0:.1}L{x1:.1} {y1:.1}" stroke="{}" fill="none" stroke-width="1"/>"#,
            ink_on(d.t_of(*level), 0.35)
        );
    }
    // arrows
    let arrows = &d.portrait.field;
    let n = (arrows.len() as f64).sqrt().max(1.0);
    let cell = f.w.min(f.h) / n;
    let mmax = arrows
        .iter()
        .map(|a| a.da.hypot(a.db))
        .fold(0.0, f64::max)
        .max(1e-300);
    for a in arrows {
        let m = a.da.hypot(a.db);
        if m <= 0.0 {
            continue;
        }
        let mut ap = String::new();
        let rel = (1.0 + 9.0 * m / mmax).log10();
        let len = cell * (0.25 + 0.5 * rel);
        let (x, y) = f.px(a.a, a.b);
        let (ux, uy) = (a.da / m, -a.db / m);
        let (x1, y1) = (x + ux * len * 0.5, y + uy * len * 0.5);
        let (x0, y0) = (x - ux * len * 0.5, y - uy * len * 0.5);
        let hl = (0.3 * len).max(3.0);
        let _ = write!(
            ap,
            "M{x0:.1} {y0:.1}L{x1:.1} {y1:.1}M{:.1} {:.1}L{x1:.1} {y1:.1}L{:.1} {:.1}",
            x1 - hl * (ux - 0.5 * uy),
            y1 - hl * (uy + 0.5 * ux),
            x1 - hl * (ux + 0.5 * uy),
            y1 - hl * (uy - 0.5 * ux)
        );
        let _ = write!(
            s,
            r#"<path d="{ap}" stroke="{}" fill="none" stroke-width="1"/>"#,
            ink_on(d.t_at(a.a, a.b), 0.6)
        );
    }
    for br in &d.portrait.hyperbola {
        let pts: Vec<String> = br
            .iter()
            .map(|&(a, b)| {
                let (x, y) = f.px(a, b);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(
            s,
            r#"<polyline points="{}" stroke="{}" stroke-width="2" fill="none"/>"#,
            pts.join(" "),
            theme.fg()
        );
    }
    let (sx, sy) = f.px(d.portrait.saddle.0, d.portrait.saddle.1);
    let _ = write!(
        s,
        r#"<circle cx="{sx:.1}" cy="{sy:.1}" r="5" fill="{}" stroke="{}" stroke-width="2"/>"#,
        theme.bg(),
        theme.fg()
    );
    let step = t.floor().max(0.0) as usize;
    for tr in &d.trajs {
        if !show[tr.method.index()] || tr.pts.is_empty() {
            continue;
        }
        let upto = step.min(tr.pts.len() - 1);
        let pts: Vec<(f64, f64)> = tr.pts[..=upto].iter().map(|p| f.px(p[0], p[1])).collect();
        let txt: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let dash: Vec<String> = tr
            .method
            .dash()
            .pattern()
            .iter()
            .map(|x| x.to_string())
            .collect();
        let halo = if theme.dark { "#000000" } else { "#ffffff" };
        let _ = write!(
            s,
            r#"<g><title>{}</title><polyline points="{}" stroke="{halo}" stroke-opacity="0.8" stroke-width="5" fill="none"/><polyline points="{}" stroke="{}" stroke-width="2.5" stroke-dasharray="{}" fill="none"/>"#,
            tr.label,
            txt.join(" "),
            txt.join(" "),
            tr.method.colour(),
            dash.join(" ")
        );
        let (x0, y0) = pts[0];
        let (x, y) = *pts.last().expect("non-empty");
        let _ = write!(
            s,
            r#"<circle cx="{x0:.1}" cy="{y0:.1}" r="3.5" fill="none" stroke="{c}" stroke-width="2"/>{}</g>"#,
            svg_marker(
                tr.method.marker(),
                x,
                y,
                6.0,
                tr.method.colour(),
                theme.bg()
            ),
            c = tr.method.colour()
        );
    }
    s.push_str("</g>");
    let _ = write!(
        s,
        r#"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="none" stroke="{}"/>"#,
        f.x0,
        f.y0,
        f.w,
        f.h,
        theme.fg()
    );
    let w = f.win;
    let fg = theme.fg();
    for &a in &nice_ticks(w.a_min, w.a_max, 5) {
        let (x, y) = f.px(a, w.b_min);
        let _ = write!(
            s,
            r#"<line x1="{x:.1}" y1="{y:.1}" x2="{x:.1}" y2="{:.1}" stroke="{fg}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="{fg}">{}</text>"#,
            y + 4.0,
            y + 6.0 + fs,
            tick_label(a)
        );
    }
    for &b in &nice_ticks(w.b_min, w.b_max, 5) {
        let (x, y) = f.px(w.a_min, b);
        let _ = write!(
            s,
            r#"<line x1="{:.1}" y1="{y:.1}" x2="{x:.1}" y2="{y:.1}" stroke="{fg}"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="{fg}">{}</text>"#,
            x - 4.0,
            x - 6.0,
            y + 0.35 * fs,
            tick_label(b)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{fg}">a = uᵀA (input side)</text>"#,
        f.x0 + f.w / 2.0,
        f.y0 + f.h + 2.4 * fs
    );
    let _ = write!(
        s,
        r#"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle" fill="{fg}">b = Bv (output side)</text>"#,
        1.2 * fs,
        f.y0 + f.h / 2.0
    );
    // colour bar
    let (bx, bw) = (f.x0 + f.w + 0.7 * fs, 0.9 * fs);
    let stops: String = (0..=10)
        .map(|i| {
            let t = i as f64 / 10.0;
            let (r, g, b) = theme.ramp(t);
            format!(r#"<stop offset="{t}" stop-color="rgb({r},{g},{b})"/>"#)
        })
        .collect();
    let _ = write!(
        s,
        r#"<defs><linearGradient id="bar" x1="0" y1="1" x2="0" y2="0">{stops}</linearGradient></defs><rect x="{bx:.1}" y="{:.1}" width="{bw:.1}" height="{:.1}" fill="url(#bar)" stroke="{fg}"/>"#,
        f.y0, f.h
    );
    for (v, pos) in bar_ticks(d.lo, d.hi) {
        let y = f.y0 + (1.0 - pos) * f.h;
        let _ = write!(
            s,
            r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{fg}"/><text x="{:.1}" y="{:.1}" fill="{fg}">{}</text>"#,
            bx + bw,
            bx + bw + 3.0,
            bx + bw + 4.0,
            y + 0.35 * fs,
            tick_label(v)
        );
    }
    let _ = write!(
        s,
        r#"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle" fill="{fg}">log10(L + ε)</text>"#,
        bx + bw + 3.4 * fs,
        f.y0 + f.h / 2.0
    );
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" fill="{fg}">saddle</text></svg>"#,
        sx + 7.0,
        sy - 4.0
    );
    s
}
