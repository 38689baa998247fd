//! One visual language for every view of the web app and every CLI figure. Per method: a colour
//! of the Okabe–Ito palette (colour-blind safe), a line style and a marker, so that methods are
//! told apart in greyscale too. The settings of a vanilla α² sweep keep vanilla's line style and
//! marker and take vanilla's shades in order. Surfaces use viridis (perceptual, vivid).

use crate::config::InitKind;
use crate::engine::Report;

pub const BLACK: &str = "#000000";
pub const ORANGE: &str = "#E69F00";
pub const SKY: &str = "#56B4E9";
pub const GREEN: &str = "#009E73";
pub const YELLOW: &str = "#F0E442";
pub const BLUE: &str = "#0072B2";
pub const VERMILLION: &str = "#D55E00";
pub const PURPLE: &str = "#CC79A7";
/// PiSSA's colour (Paul Tol's bright purple): apart from the Okabe–Ito colours the talk's
/// methods and vanilla's α² shades use.
pub const WINE: &str = "#AA3377";
/// A neutral grey for things that are not a method (legend keys of line styles).
pub const GREY: &str = "#888888";

/// Vanilla's shades for the settings of an α² sweep, in order (the first is vanilla's own): warm
/// and pink hues only, so none is mistaken for LoRA-GA's blue or LoRA-One's green, and dark
/// enough to read on a white page.
pub const VANILLA_SHADES: [&str; 6] = [VERMILLION, "#8C2D04", ORANGE, PURPLE, "#7A0177", "#B8860B"];

/// Line styles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dash {
    Solid,
    Dashed,
    Dotted,
    LongDash,
    /// Short dashes (PiSSA).
    ShortDash,
}

impl Dash {
    /// Dash pattern (on, off, …) in CSS pixels (canvas `setLineDash`, SVG `stroke-dasharray`;
    /// plotters' `DashedLineSeries` takes the first two).
    pub fn pattern(self) -> &'static [f64] {
        match self {
            Dash::Solid => &[],
            Dash::Dashed => &[8.0, 5.0],
            Dash::Dotted => &[2.0, 4.0],
            Dash::LongDash => &[16.0, 5.0],
            Dash::ShortDash => &[4.0, 3.0],
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Dash::Solid => "solid",
            Dash::Dashed => "dashed",
            Dash::Dotted => "dotted",
            Dash::LongDash => "long-dashed",
            Dash::ShortDash => "short-dashed",
        }
    }
}

/// Point markers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
    TriangleDown,
}

impl Marker {
    /// The marker's outline around (x, y) with half-size `s` (screen coordinates, y down);
    /// empty for the circle, which is drawn as a circle of radius `s`.
    pub fn vertices(self, x: f64, y: f64, s: f64) -> Vec<(f64, f64)> {
        match self {
            Marker::Circle => Vec::new(),
            Marker::Square => {
                let h = 0.85 * s;
                vec![
                    (x - h, y - h),
                    (x + h, y - h),
                    (x + h, y + h),
                    (x - h, y + h),
                ]
            }
            Marker::Triangle => vec![
                (x, y - 1.15 * s),
                (x + s, y + 0.7 * s),
                (x - s, y + 0.7 * s),
            ],
            Marker::Diamond => vec![(x, y - 1.2 * s), (x + s, y), (x, y + 1.2 * s), (x - s, y)],
            Marker::TriangleDown => vec![
                (x, y + 1.15 * s),
                (x + s, y - 0.7 * s),
                (x - s, y - 0.7 * s),
            ],
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Marker::Circle => "circle",
            Marker::Square => "square",
            Marker::Triangle => "triangle",
            Marker::Diamond => "diamond",
            Marker::TriangleDown => "down-triangle",
        }
    }
}

/// A method: the three inits and a user-placed start (phase portrait).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Vanilla,
    LoraGa,
    LoraOne,
    Custom,
    /// PiSSA (not one of the talk's three: off by default in the phase portrait).
    Pissa,
}

impl Method {
    /// Every method, in the phase portrait's order (its `show` flags and keys 1–5).
    pub const ALL: [Method; 5] = [
        Method::Vanilla,
        Method::LoraGa,
        Method::LoraOne,
        Method::Custom,
        Method::Pissa,
    ];
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn from_init(k: InitKind) -> Method {
        match k {
            InitKind::Vanilla => Method::Vanilla,
            InitKind::LoraGa => Method::LoraGa,
            InitKind::LoraOne => Method::LoraOne,
            InitKind::Pissa => Method::Pissa,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Method::Vanilla => "Vanilla LoRA",
            Method::LoraGa => "LoRA-GA",
            Method::LoraOne => "LoRA-One",
            Method::Custom => "Custom start",
            Method::Pissa => "PiSSA",
        }
    }
    /// "#RRGGBB".
    pub fn colour(self) -> &'static str {
        match self {
            Method::Vanilla => VERMILLION,
            Method::LoraGa => BLUE,
            Method::LoraOne => GREEN,
            Method::Custom => SKY,
            Method::Pissa => WINE,
        }
    }
    pub fn dash(self) -> Dash {
        match self {
            Method::Vanilla => Dash::Dashed,
            Method::LoraGa => Dash::LongDash,
            Method::LoraOne => Dash::Solid,
            Method::Custom => Dash::Dotted,
            Method::Pissa => Dash::ShortDash,
        }
    }
    pub fn marker(self) -> Marker {
        match self {
            Method::Vanilla => Marker::Triangle,
            Method::LoraGa => Marker::Square,
            Method::LoraOne => Marker::Circle,
            Method::Custom => Marker::Diamond,
            Method::Pissa => Marker::TriangleDown,
        }
    }
}

/// How one run is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunStyle {
    pub method: Method,
    pub colour: &'static str,
    pub dash: Dash,
    pub marker: Marker,
}

/// The style of a run of `init`; `setting` is the index of its α² value (vanilla only).
pub fn run_style(init: InitKind, setting: usize) -> RunStyle {
    let method = Method::from_init(init);
    let colour = if init == InitKind::Vanilla {
        VANILLA_SHADES[setting % VANILLA_SHADES.len()]
    } else {
        method.colour()
    };
    RunStyle {
        method,
        colour,
        dash: method.dash(),
        marker: method.marker(),
    }
}

/// The style of each run of a report (the draws of an ensemble share their setting's).
pub fn report_styles(r: &Report) -> Vec<RunStyle> {
    r.runs
        .iter()
        .map(|run| {
            let setting = run
                .alpha2
                .and_then(|a| r.config.alpha2.iter().position(|x| *x == a))
                .unwrap_or(0);
            run_style(run.init, setting)
        })
        .collect()
}

/// Parse "#RRGGBB".
pub fn rgb(hex: &str) -> (u8, u8, u8) {
    let h = hex.trim_start_matches('#');
    let p = |i: usize| u8::from_str_radix(h.get(i..i + 2).unwrap_or("00"), 16).unwrap_or(0);
    (p(0), p(2), p(4))
}

/// Viridis at t ∈ [0, 1] (plotters' colormap): dark purple for low values through blue and
/// green to yellow for high ones; perceptually uniform and readable in greyscale.
#[cfg(any(feature = "cli", feature = "web"))]
pub fn viridis(t: f64) -> (u8, u8, u8) {
    use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};
    let c = ViridisRGB.get_color(t.clamp(0.0, 1.0) as f32);
    (c.0, c.1, c.2)
}

/// WCAG relative luminance of "#RRGGBB" (for contrast checks).
pub fn luminance(hex: &str) -> f64 {
    let (r, g, b) = rgb(hex);
    let lin = |c: u8| {
        let c = c as f64 / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Methods differ in colour, line style and marker, each on its own.
    #[test]
    fn methods_are_told_apart_three_ways() {
        for (i, a) in Method::ALL.iter().enumerate() {
            for b in &Method::ALL[i + 1..] {
                assert_ne!(a.colour(), b.colour());
                assert_ne!(a.dash(), b.dash());
                assert_ne!(a.marker(), b.marker());
            }
        }
        // vanilla's shades never take another method's colour
        for s in VANILLA_SHADES {
            for m in [Method::LoraGa, Method::LoraOne, Method::Custom] {
                assert_ne!(s, m.colour());
            }
        }
    }

    #[cfg(any(feature = "cli", feature = "web"))]
    #[test]
    fn viridis_runs_dark_to_light() {
        let lum = |t: f64| {
            let (r, g, b) = viridis(t);
            luminance(&format!("#{r:02X}{g:02X}{b:02X}"))
        };
        let mut last = -1.0;
        for i in 0..=10 {
            let l = lum(i as f64 / 10.0);
            assert!(l > last, "luminance rises monotonically");
            last = l;
        }
        // the surface's ends differ strongly (≥ 10:1 contrast), unlike the old pale ramp
        assert!((lum(1.0) + 0.05) / (lum(0.0) + 0.05) > 10.0);
    }
}
