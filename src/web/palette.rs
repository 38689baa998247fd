//! Okabe–Ito colour-blind-safe palette and the per-method styles (colour AND line style).

use crate::config::InitKind;

pub const ORANGE: &str = "#E69F00";
pub const SKY: &str = "#56B4E9";
pub const GREEN: &str = "#009E73";
pub const YELLOW: &str = "#F0E442";
pub const BLUE: &str = "#0072B2";
pub const VERMILLION: &str = "#D55E00";
pub const PURPLE: &str = "#CC79A7";

/// Colours for runs in order (vanilla sweeps have up to five runs).
pub const SERIES: [&str; 7] = [VERMILLION, BLUE, GREEN, ORANGE, SKY, PURPLE, YELLOW];

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dash {
    Solid,
    Dashed,
    Dotted,
    DashDot,
}

impl Dash {
    /// Canvas `setLineDash` pattern in CSS pixels.
    pub fn pattern(self) -> &'static [f64] {
        match self {
            Dash::Solid => &[],
            Dash::Dashed => &[9.0, 5.0],
            Dash::Dotted => &[2.0, 4.0],
            Dash::DashDot => &[10.0, 4.0, 2.0, 4.0],
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Dash::Solid => "solid",
            Dash::Dashed => "dashed",
            Dash::Dotted => "dotted",
            Dash::DashDot => "dash-dot",
        }
    }
}

/// A method of the phase portrait: the three inits and a user-placed start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Vanilla,
    LoraGa,
    LoraOne,
    Custom,
}

impl Method {
    pub const ALL: [Method; 4] = [
        Method::Vanilla,
        Method::LoraGa,
        Method::LoraOne,
        Method::Custom,
    ];
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn from_init(k: InitKind) -> Method {
        match k {
            InitKind::Vanilla => Method::Vanilla,
            InitKind::LoraGa => Method::LoraGa,
            InitKind::LoraOne => Method::LoraOne,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Method::Vanilla => "Vanilla LoRA",
            Method::LoraGa => "LoRA-GA",
            Method::LoraOne => "LoRA-One",
            Method::Custom => "Custom start",
        }
    }
    pub fn colour(self) -> &'static str {
        match self {
            Method::Vanilla => VERMILLION,
            Method::LoraGa => BLUE,
            Method::LoraOne => GREEN,
            Method::Custom => PURPLE,
        }
    }
    pub fn dash(self) -> Dash {
        match self {
            Method::Vanilla => Dash::Dashed,
            Method::LoraGa => Dash::DashDot,
            Method::LoraOne => Dash::Solid,
            Method::Custom => Dash::Dotted,
        }
    }
}

/// Parse "#RRGGBB".
pub fn rgb(hex: &str) -> (u8, u8, u8) {
    let h = hex.trim_start_matches('#');
    let p = |i: usize| u8::from_str_radix(h.get(i..i + 2).unwrap_or("00"), 16).unwrap_or(0);
    (p(0), p(2), p(4))
}
