//! View "Fig. 3 toy" (SPEC §8): f(x) = b·xᵀa trained by GD from the LoRA start (b = 0) and the
//! spectral start (ab = g) for many draws, in a 3-D figure (the figure of `toy_plot`, shared with
//! the CLI) that rotates by dragging or with the arrow keys; the camera is in the URL.

use super::export;
use super::util::{self, fmt3};
use crate::toy3d::{self, ToyInit, ToyReport, ToyRun, ToySpec};
use crate::toy_plot;
use crate::urlstate::ToyParams;
use leptos::html::{Canvas, Div};
use leptos::prelude::*;
use plotters::prelude::*;
use plotters_canvas::CanvasBackend;
use std::sync::Arc;

/// First step within `tol` of the minimiser set (‖ab − β‖), if any.
fn steps_to_curve(r: &ToyRun, tol: f64) -> Option<usize> {
    r.path
        .iter()
        .position(|&[a1, a2, b]| (a1 * b - toy3d::BETA[0]).hypot(a2 * b - toy3d::BETA[1]) < tol)
}

/// Per start: the median steps to within 0.01 of the curve (None: not reached in half the
/// draws), and how many draws diverged.
fn summary(r: &ToyReport, init: ToyInit) -> (Option<usize>, usize, usize) {
    let runs: Vec<&ToyRun> = r.runs.iter().filter(|x| x.init == init).collect();
    let mut t: Vec<usize> = runs
        .iter()
        .map(|x| steps_to_curve(x, 1e-2).unwrap_or(usize::MAX))
        .collect();
    t.sort_unstable();
    let med = t.get(t.len() / 2).copied().filter(|&v| v != usize::MAX);
    let div = runs.iter().filter(|x| x.diverged_at.is_some()).count();
    (med, div, runs.len())
}

#[component]
pub fn ToyView(
    params: RwSignal<ToyParams>,
    dark: RwSignal<bool>,
    large: bool,
    embed: bool,
) -> impl IntoView {
    let error = RwSignal::new(None::<String>);
    // the run depends on the spec only: turning the camera does not recompute it
    let spec = Memo::new(move |_| params.with(|p| p.spec.clone()));
    let report = Memo::new(move |_| {
        spec.with(|s: &ToySpec| toy3d::run(s).map(Arc::new).map_err(|e| e.to_string()))
    });

    let canvas = NodeRef::<Canvas>::new();
    let wrap = NodeRef::<Div>::new();
    Effect::new(move |_| {
        let r = report.get();
        let cam = params.with(|p| p.camera());
        let dk = dark.get();
        let (Ok(r), Some(c), Some(d)) = (r, canvas.get(), wrap.get()) else {
            return;
        };
        let w = (d.client_width() as f64).clamp(300.0, 1000.0);
        let h = (w * 0.8).clamp(300.0, 760.0);
        let scale = util::size_canvas(&c, w, h);
        let th = crate::sweep_plot::Theme::for_page(dk, scale * if large { 1.3 } else { 1.0 });
        if let Some(be) = CanvasBackend::with_canvas_object(c.clone()) {
            if let Err(e) = toy_plot::draw(&r, cam, be.into_drawing_area(), &th) {
                let _ = c.set_attribute("data-error", &e.to_string());
            }
        }
        let _ = c.set_attribute("data-runs", &r.runs.len().to_string());
        let _ = c.set_attribute("data-yaw", &format!("{:.1}", cam.yaw.to_degrees()));
        let _ = c.set_attribute("data-pitch", &format!("{:.1}", cam.pitch.to_degrees()));
    });

    // drag to rotate (pointer capture keeps the drag when the pointer leaves the canvas)
    let drag = StoredValue::new(None::<(i32, i32)>);
    let rotate = move |dx: f64, dy: f64| {
        params.update(|p| {
            let c = p.camera().dragged(dx, dy);
            p.set_camera(c);
        })
    };
    let on_down = move |e: web_sys::PointerEvent| {
        if let Some(c) = canvas.get_untracked() {
            let _ = c.set_pointer_capture(e.pointer_id());
        }
        drag.set_value(Some((e.client_x(), e.client_y())));
    };
    let on_move = move |e: web_sys::PointerEvent| {
        if let Some((x, y)) = drag.get_value() {
            let (nx, ny) = (e.client_x(), e.client_y());
            drag.set_value(Some((nx, ny)));
            rotate((nx - x) as f64, (ny - y) as f64);
        }
    };
    let on_up = move |_| drag.set_value(None);
    let on_key = move |e: web_sys::KeyboardEvent| {
        if embed {
            return; // the arrows go to the deck
        }
        let (dx, dy) = match e.key().as_str() {
            "ArrowLeft" => (-10.0, 0.0),
            "ArrowRight" => (10.0, 0.0),
            "ArrowUp" => (0.0, -10.0),
            "ArrowDown" => (0.0, 10.0),
            _ => return,
        };
        e.prevent_default();
        rotate(dx, dy);
    };
    let reset_view = move |_| {
        params.update(|p| {
            let d = ToyParams::default();
            p.yaw_deg = d.yaw_deg;
            p.pitch_deg = d.pitch_deg;
        })
    };

    let line = move |init: ToyInit| {
        report.with(|r| {
            let Ok(r) = r else { return String::new() };
            let (med, div, n) = summary(r, init);
            let t = med.map_or(format!("not within 0.01 in half of {n} draws"), |m| {
                format!("median {m} steps to within 0.01 of ab = β")
            });
            let d = if div > 0 {
                format!(", {div} of {n} diverged")
            } else {
                String::new()
            };
            format!("{}: {t}{d}", init.label())
        })
    };
    let alt = move || {
        format!(
            "3-D figure of GD trajectories in (a1, a2, b) with the minimiser curve ab = β. {}. {}. Drag or use the arrow keys to rotate.",
            line(ToyInit::Lora),
            line(ToyInit::Spectral)
        )
    };
    let field = move |key: &'static str, label: &'static str| {
        super::controls::param_field(params, error, format!("toy-{key}"), key, label, "")
    };
    let export_json = move |_| {
        if let Ok(r) = report.get_untracked() {
            let text = serde_json::to_string(&*r).unwrap_or_default();
            export::download_text("lora-one-lab-fig3.json", "application/json", &text);
        }
    };
    let export_svg = move |_| {
        let Ok(r) = report.get_untracked() else {
            return;
        };
        let cam = params.with_untracked(|p| p.camera());
        let th = crate::sweep_plot::Theme::for_page(dark.get_untracked(), 1.0);
        if let Err(e) = export::download_svg("lora-one-lab-fig3.svg", (900, 760), |root| {
            toy_plot::draw(&r, cam, root, &th)
        }) {
            error.set(Some(e));
        }
    };
    let none = move || report.with(|r| r.is_err());

    view! {
        <section class="view toy" id="toy" aria-labelledby="toy-h" data-view="toy">
            <h2 id="toy-h" class="chrome">"Fig. 3: GD from the LoRA start and the spectral start"</h2>
            <p class="small chrome">"f(x) = b·xᵀa with a ∈ ℝ², b ∈ ℝ, y = xᵀβ with β = (2, 1). From b = 0 (LoRA) the path first climbs out of the saddle; from ab = g (the one-step gradient) it heads for the curve of minimisers at once."</p>
            <div class="fields chrome">
                {field("seeds", "draws")}
                {field("steps", "GD steps")}
                {field("eta", "step size η")}
                {field("n", "samples per draw")}
                {field("seed", "seed")}
            </div>
            {move || report.with(|r| r.as_ref().err().cloned()).map(|e| view! { <p class="field-error" role="alert">{e}</p> })}
            {move || error.get().map(|e| view! { <p class="field-error" role="alert">{e}</p> })}
            <div class="chart" node_ref=wrap>
                <canvas id="toy-canvas" node_ref=canvas role="img" aria-label=alt tabindex="0"
                    style="cursor: grab; touch-action: none"
                    on:pointerdown=on_down on:pointermove=on_move on:pointerup=on_up on:pointercancel=on_up
                    on:keydown=on_key></canvas>
            </div>
            <ul class="toy-summary small" aria-live="polite">
                <li id="toy-lora">{move || line(ToyInit::Lora)}</li>
                <li id="toy-spectral">{move || line(ToyInit::Spectral)}</li>
            </ul>
            <div class="runbar">
                <span class="small">{move || params.with(|p| format!("view: yaw {}°, pitch {}° · drag to rotate", fmt3(p.yaw_deg), fmt3(p.pitch_deg)))}</span>
                <button id="toy-reset-view" on:click=reset_view>"Reset view"</button>
            </div>
            <div class="exports chrome" role="group" aria-label="Export">
                <button on:click=move |_| { if let Some(c) = canvas.get_untracked() { export::download_canvas_png(&c, "lora-one-lab-fig3.png"); } }
                    prop:disabled=none>"Figure as PNG"</button>
                <button id="toy-svg" on:click=export_svg prop:disabled=none>"Figure as SVG"</button>
                <button on:click=export_json prop:disabled=none>"Trajectories as JSON"</button>
            </div>
        </section>
    }
}
