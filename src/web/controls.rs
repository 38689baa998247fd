//! Small reusable controls: a slider with a numeric input, and the legend swatch.

use super::palette::{Dash, Marker, Method};
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
    view! { <LineSwatch colour=method.colour() dash=method.dash() marker=method.marker() /> }
}

/// A legend key: a line in a colour and line style, with the method's marker on it; `faint`
/// keys the thin, translucent secondary metric of a chart.
#[component]
pub fn LineSwatch(
    colour: &'static str,
    dash: Dash,
    #[prop(optional)] marker: Option<Marker>,
    #[prop(optional)] faint: bool,
) -> impl IntoView {
    let d = dash
        .pattern()
        .iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let mark = marker.map(|m| {
        let v = m.vertices(20.0, 6.0, 4.0);
        if v.is_empty() {
            view! { <circle cx="20" cy="6" r="4" fill=colour /> }.into_any()
        } else {
            let pts = v
                .iter()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect::<Vec<_>>()
                .join(" ");
            view! { <polygon points=pts fill=colour /> }.into_any()
        }
    });
    view! {
        <svg class="swatch" width="40" height="12" viewBox="0 0 40 12" aria-hidden="true">
            <line x1="1" y1="6" x2="39" y2="6" stroke=colour stroke-width=if faint { "1.5" } else { "3" }
                stroke-opacity=if faint { "0.55" } else { "1" } stroke-dasharray=d />
            {mark}
        </svg>
    }
}

/// A text field for one URL parameter of a view (`id` is the input's id): shows the parameter's
/// text; a change sets it, or puts the error (which names the key and its range) in `error`.
pub fn param_field<P>(
    params: RwSignal<P>,
    error: RwSignal<Option<String>>,
    id: String,
    key: &'static str,
    label: &'static str,
    hint: &'static str,
) -> impl IntoView
where
    P: crate::urlstate::ViewParams + Clone + Send + Sync + 'static,
{
    view! {
        <div class="field">
            <label for=id.clone()>{label}</label>
            <input type="text" id=id placeholder=hint
                prop:value=move || params.with(|p| p.value_of(key))
                on:change=move |e| {
                    let v = event_target_value(&e);
                    let mut p = params.get_untracked();
                    match p.set_pair(key, &v) {
                        Ok(()) => { error.set(None); params.set(p); }
                        Err(m) => error.set(Some(m)),
                    }
                } />
        </div>
    }
}

/// Where a view's chunked run stands (its `data-state` attribute, which the e2e test reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    /// Fetching what the run needs (the digits data).
    Loading,
    Idle,
    Running,
    Done,
    Stopped,
    Failed,
}

impl RunStatus {
    pub fn attr(self) -> &'static str {
        match self {
            RunStatus::Loading => "loading",
            RunStatus::Idle => "idle",
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Stopped => "stopped",
            RunStatus::Failed => "failed",
        }
    }
}
