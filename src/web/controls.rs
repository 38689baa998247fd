//! Small reusable controls: a slider with a numeric input, and the legend swatch.

use super::palette::Method;
use super::util::fmt;
use leptos::prelude::*;

/// A labelled slider with a numeric input beside it (the keyboard / exact alternative).
/// `log`: the slider moves over log10 of the value.
#[component]
pub fn NumSlider(
    label: &'static str,
    /// Short key for ids and tests.
    key: &'static str,
    min: f64,
    max: f64,
    #[prop(default = false)] log: bool,
    #[prop(default = false)] integer: bool,
    value: Signal<f64>,
    on_change: Callback<f64>,
    #[prop(optional)] help: &'static str,
) -> impl IntoView {
    let to_slider = move |v: f64| if log { v.max(1e-12).log10() } else { v };
    let from_slider = move |s: f64| if log { 10f64.powf(s) } else { s };
    let (smin, smax) = (to_slider(min), to_slider(max));
    let sstep = if integer && !log {
        1.0
    } else {
        (smax - smin) / 400.0
    };
    let id = format!("in-{key}");
    let rid = format!("range-{key}");
    let fix = move |v: f64| if integer { v.round() } else { v };
    view! {
        <div class="ctl" title=help>
            <label for=id.clone()>{label}</label>
            <input
                type="range"
                id=rid
                aria-label=format!("{label} slider")
                min=smin
                max=smax
                step=sstep
                prop:value=move || to_slider(value.get()).to_string()
                on:input=move |ev| {
                    if let Ok(s) = event_target_value(&ev).parse::<f64>() {
                        let v = from_slider(s);
                        let v = if log { (v * 1e4).round() / 1e4 } else { v };
                        on_change.run(fix(v));
                    }
                }
            />
            <input
                type="number"
                id=id
                data-key=key
                step="any"
                prop:value=move || fmt(value.get())
                on:change=move |ev| {
                    if let Ok(v) = event_target_value(&ev).trim().parse::<f64>() {
                        if v.is_finite() {
                            on_change.run(fix(v));
                        }
                    }
                }
            />
        </div>
    }
}

/// A line sample in a method's colour and dash pattern (SVG, so it scales crisply).
#[component]
pub fn Swatch(method: Method) -> impl IntoView {
    let dash = method
        .dash()
        .pattern()
        .iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    view! {
        <svg class="swatch" width="40" height="12" viewBox="0 0 40 12" aria-hidden="true">
            <line x1="1" y1="6" x2="39" y2="6" stroke=method.colour() stroke-width="3" stroke-dasharray=dash />
        </svg>
    }
}

/// A swatch for a run colour and an explicit dash pattern.
#[component]
pub fn LineSwatch(colour: &'static str, dash: &'static [f64]) -> impl IntoView {
    let d = dash
        .iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    view! {
        <svg class="swatch" width="40" height="12" viewBox="0 0 40 12" aria-hidden="true">
            <line x1="1" y1="6" x2="39" y2="6" stroke=colour stroke-width="3" stroke-dasharray=d />
        </svg>
    }
}
