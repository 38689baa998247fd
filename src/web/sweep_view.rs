//! View "Sweeps" (SPEC §8): a sweep preset or axes of one's own, × init draws per cell, run in
//! chunks with progress and Stop (partial results drawn as they come), drawn as the paper's Fig. 2
//! (the figure of `sweep_plot`, shared with the CLI), with a table of the cells and JSON/CSV
//! exports in the CLI's schema.

use super::backend::{self, BackendChoice, Compute};
use super::export;
use super::util::{self, fmt3};
use crate::sweep::{Spread, Sweep, SweepPreset, SweepReport};
use crate::sweep_plot::{self, Grid, Quantity};
use crate::urlstate::SweepParams;
use leptos::html::{Canvas, Div};
use leptos::prelude::*;
use leptos::task::spawn_local;
use plotters::prelude::*;
use plotters_canvas::CanvasBackend;
use std::sync::Arc;

use super::controls::RunStatus as State;

#[component]
pub fn SweepView(
    params: RwSignal<SweepParams>,
    choice: RwSignal<BackendChoice>,
    compute: RwSignal<Compute>,
    dark: RwSignal<bool>,
    large: bool,
    /// The lab's config, preset and the app's view: a cell opens in the lab.
    lab: RwSignal<crate::config::Config>,
    lab_preset: RwSignal<Option<crate::config::Preset>>,
    view: RwSignal<crate::urlstate::View>,
) -> impl IntoView {
    let report: RwSignal<Option<Arc<SweepReport>>> = RwSignal::new(None);
    let state = RwSignal::new(State::Idle);
    let error = RwSignal::new(None::<String>);
    let progress = RwSignal::new(0.0f64);
    let ran_on = RwSignal::new(String::new());
    let stop = StoredValue::new(false);
    // the sweep the fields describe, and its size, or the error naming the field
    let valid = Memo::new(move |_| {
        params.with(|p| {
            p.spec()
                .and_then(|s| s.trajectory_steps())
                .map_err(|e| e.to_string())
        })
    });

    let run = move || {
        if state.get_untracked() == State::Running {
            return;
        }
        let spec = match params.get_untracked().spec() {
            Ok(s) => s,
            Err(e) => {
                error.set(Some(e.to_string()));
                state.set(State::Failed);
                return;
            }
        };
        error.set(None);
        stop.set_value(false);
        state.set(State::Running);
        progress.set(0.0);
        spawn_local(async move {
            let (use_gpu, _) = backend::settled(choice)
                .await
                .for_run(compute.get_untracked(), &spec.base);
            let (mut be, why) = backend::make_backend(use_gpu).await;
            if let Some(w) = why {
                error.set(Some(w));
            }
            ran_on.set(crate::engine::Backend::info(&be).name);
            let mut sw = match Sweep::new(spec) {
                Ok(s) => s,
                Err(e) => {
                    error.set(Some(e.to_string()));
                    state.set(State::Failed);
                    return;
                }
            };
            // ~30 ms of work per chunk, then the page gets a turn
            let mut chunk = 20usize;
            let mut last_pub = util::now_ms();
            loop {
                if stop.try_get_value().unwrap_or(true) {
                    state.set(State::Stopped);
                    break;
                }
                let t0 = util::now_ms();
                match sw.step(&mut be, chunk).await {
                    Ok(p) => {
                        progress.set(p.fraction());
                        if sw.done() {
                            state.set(State::Done);
                            break;
                        }
                    }
                    Err(e) => {
                        error.set(Some(e.to_string()));
                        state.set(State::Failed);
                        break;
                    }
                }
                let dt = util::now_ms() - t0;
                chunk = ((chunk as f64) * (30.0 / dt.max(1e-3)).clamp(0.5, 2.0))
                    .round()
                    .clamp(1.0, 10_000.0) as usize;
                if util::now_ms() - last_pub > 300.0 {
                    report.set(Some(Arc::new(sw.report())));
                    last_pub = util::now_ms();
                }
                util::yield_now().await;
            }
            backend::give_back(be);
            report.set(Some(Arc::new(sw.report())));
        });
    };

    // the figure
    let canvas = NodeRef::<Canvas>::new();
    let wrap = NodeRef::<Div>::new();
    Effect::new(move |_| {
        let r = report.get();
        let dk = dark.get();
        let (Some(r), Some(c), Some(d)) = (r, canvas.get(), wrap.get()) else {
            return;
        };
        let w = (d.client_width() as f64).clamp(300.0, 1400.0);
        let h = (w * 0.36).max(300.0);
        let scale = util::size_canvas(&c, w, h);
        let th = sweep_plot::Theme::for_page(dk, scale * if large { 1.3 } else { 1.0 });
        if let Some(be) = CanvasBackend::with_canvas_object(c.clone()) {
            let _ = sweep_plot::draw(&r, be.into_drawing_area(), &th);
        }
        let _ = c.set_attribute("data-cells", &r.cells.len().to_string());
        let spread = r.cells.len() == 1 && r.cells[0].runs.iter().any(|x| x.curve.len() > 1);
        let _ = c.set_attribute("data-figure", if spread { "spread" } else { "cells" });
    });

    // a cell's configuration (its x and y set on the base), shown in the dynamics lab
    let open_in_lab = move |x: f64, y: Option<f64>| {
        let Some(r) = report.get_untracked() else {
            return;
        };
        let mut c = r.spec.base.clone();
        c.inits = vec![crate::config::InitKind::Vanilla];
        let text = |v: f64| format!("{v}");
        let mut ok = c.set(&r.spec.x.key, &text(x)).is_ok();
        if let (Some(a), Some(v)) = (&r.spec.y, y) {
            ok &= c.set(&a.key, &text(v)).is_ok();
        }
        if ok {
            lab.set(c);
            lab_preset.set(None);
            view.set(crate::urlstate::View::Lab);
        }
    };
    // 2-D sweeps: a heatmap of one quantity, with a hover read-out; a click opens the cell
    let quantity = RwSignal::new(Quantity::MinSinA);
    let heat = NodeRef::<Canvas>::new();
    let heat_grid = StoredValue::new(None::<(Grid, f64)>);
    let hover = RwSignal::new(String::new());
    let two_d = move || report.with(|r| r.as_ref().is_some_and(|r| r.spec.y.is_some()));
    Effect::new(move |_| {
        let r = report.get();
        let dk = dark.get();
        let q = quantity.get();
        let (Some(r), Some(c), Some(d)) = (r, heat.get(), wrap.get()) else {
            return;
        };
        if r.spec.y.is_none() {
            return;
        }
        let w = (d.client_width() as f64).clamp(300.0, 1100.0);
        let h = (w * 0.42).max(280.0);
        let scale = util::size_canvas(&c, w, h);
        let th = sweep_plot::Theme::for_page(dk, scale * if large { 1.3 } else { 1.0 });
        if let Some(be) = CanvasBackend::with_canvas_object(c.clone()) {
            match sweep_plot::draw_heatmap(&r, be.into_drawing_area(), &th, q) {
                Ok(g) => heat_grid.set_value(Some((g, scale))),
                Err(e) => {
                    let _ = c.set_attribute("data-error", &e.to_string());
                }
            }
        }
        let _ = c.set_attribute("data-cells", &r.cells.len().to_string());
    });
    let cell_at = move |e: &web_sys::MouseEvent| -> Option<crate::sweep::Cell> {
        let (g, scale) = heat_grid.get_value()?;
        let (xi, yi) = g.cell_at(e.offset_x() as f64 * scale, e.offset_y() as f64 * scale)?;
        report.with_untracked(|r| r.as_ref()?.cells.get(yi * g.nx + xi).cloned())
    };
    let on_move = move |e: web_sys::MouseEvent| {
        let text = cell_at(&e).map_or(String::new(), |c| {
            report.with_untracked(|r| {
                let Some(r) = r.as_ref() else {
                    return String::new();
                };
                let q = quantity.get_untracked();
                let y = match (&r.spec.y, c.y) {
                    (Some(a), Some(v)) => format!(", {} = {}", a.key, fmt3(v)),
                    _ => String::new(),
                };
                let v = q.of(&c).map_or("not reached".to_string(), |s| {
                    format!(
                        "{} (10–90 %: {} – {}, {} draws)",
                        fmt3(s.median),
                        fmt3(s.q10),
                        fmt3(s.q90),
                        s.n
                    )
                });
                format!(
                    "{} = {}{y}: {} {v}. Click to open in the lab.",
                    r.spec.x.key,
                    fmt3(c.x),
                    q.label()
                )
            })
        });
        hover.set(text);
    };
    let on_click = move |e: web_sys::MouseEvent| {
        if let Some(c) = cell_at(&e) {
            open_in_lab(c.x, c.y);
        }
    };
    let med = |v: Option<Spread>| v.map_or("–".to_string(), |s| fmt3(s.median));
    let alt = move || {
        report.with(|r| {
            let Some(r) = r.as_ref() else {
                return "Sweep figure: no sweep run yet".to_string();
            };
            let mut s = format!(
                "Sweep over {}{}: median over the draws per cell. ",
                r.spec.x.key,
                r.spec
                    .y
                    .as_ref()
                    .map_or(String::new(), |a| format!(" and {}", a.key))
            );
            for c in &r.cells {
                s.push_str(&format!(
                    "{}={}{}: min sin θ_A {}, final ln risk {}, t* {}. ",
                    r.spec.x.key,
                    fmt3(c.x),
                    c.y.map_or(String::new(), |y| format!(
                        ", {}={}",
                        r.spec.y.as_ref().map_or("y", |a| a.key.as_str()),
                        fmt3(y)
                    )),
                    med(c.min_sin_a),
                    med(c.final_ln_risk),
                    med(c.t_star)
                ));
            }
            if let Some(sl) = r.slope_t_star_ln_d {
                s.push_str(&format!("Fitted slope of t* against ln d: {}.", fmt3(sl)));
            }
            s
        })
    };
    let rows = move || {
        report.with(|r| {
            r.as_ref().map(|r| {
                r.cells
                    .iter()
                    .map(|c| {
                        let (x, y) = (c.x, c.y);
                        view! {
                            <tr>
                                <td>{fmt3(c.x)}</td>
                                <td>{c.y.map_or(String::new(), fmt3)}</td>
                                <td>{med(c.min_sin_a)}</td>
                                <td>{med(c.final_ln_risk)}</td>
                                <td>{med(c.t_star)}</td>
                                <td>{fmt3(c.t_theory)}</td>
                                <td>{c.runs.len()}</td>
                                <td>{c.diverged}</td>
                                <td><button class="mini open-lab" on:click=move |_| open_in_lab(x, y)
                                    aria-label="Open this cell's runs in the dynamics lab">"open in lab"</button></td>
                            </tr>
                        }
                    })
                    .collect_view()
            })
        })
    };
    let field = move |key: &'static str, label: &'static str, hint: &'static str| {
        super::controls::param_field(params, error, format!("sw-{key}"), key, label, hint)
    };
    let export_json = move |_| {
        if let Some(r) = report.get_untracked() {
            let text = serde_json::to_string_pretty(&*r).unwrap_or_default();
            export::download_text("lora-one-lab-sweep.json", "application/json", &text);
        }
    };
    let export_svg = move |_| {
        let Some(r) = report.get_untracked() else {
            return;
        };
        let th = sweep_plot::Theme::for_page(dark.get_untracked(), 1.0);
        if let Err(e) = export::download_svg("lora-one-lab-sweep.svg", (1200, 420), |root| {
            sweep_plot::draw(&r, root, &th)
        }) {
            error.set(Some(e));
        }
    };
    let export_csv = move |_| {
        if let Some(r) = report.get_untracked() {
            export::download_text(
                "lora-one-lab-sweep.csv",
                "text/csv",
                &crate::sweep::to_csv(&r),
            );
        }
    };

    view! {
        <section class="view sweep" id="sweep" aria-labelledby="sweep-h" data-view="sweep"
            data-state=move || state.get().attr()>
            <h2 id="sweep-h" class="chrome">"Sweeps: Fig. 2 and the ln d law"</h2>
            <div class="presets" role="group" aria-label="Sweep presets">
                <span>"Presets: "</span>
                {SweepPreset::ALL.iter().map(|&p| view! {
                    <button class="preset" data-sweep=p.name()
                        aria-pressed=move || (params.with(|x| x.preset) == p).to_string()
                        on:click=move |_| { params.set(SweepParams::browser(p)); run(); }>{p.name()}</button>
                }).collect_view()}
            </div>
            <div class="fields">
                {field("x", "x axis", "alpha2=log:1e-6:1:7")}
                {field("y", "y axis (optional)", "d=32,64")}
                {field("seeds", "init draws per cell", "whole number")}
                {field("steps", "GD steps", "whole number")}
                {field("theta", "θ of t*(θ)", "in (0, 1)")}
            </div>
            <div class="runbar">
                <button id="sweep-run" on:click=move |_| run()
                    prop:disabled=move || valid.get().is_err() || state.get() == State::Running>"Run"</button>
                <button id="sweep-stop" on:click=move |_| stop.set_value(true)
                    prop:disabled=move || state.get() != State::Running>"Stop"</button>
                <progress id="sweep-progress" max="1" prop:value=move || progress.get() aria-label="Sweep progress"></progress>
                <span class="small">{move || match valid.get() { Ok(n) => format!("{n} trajectory-steps"), Err(_) => String::new() }}</span>
                <span class="ran-on">{move || { let r = ran_on.get(); if r.is_empty() { r } else { format!("on {r}") } }}</span>
                {move || valid.get().err().map(|e| view! { <span class="field-error" role="alert">{e}</span> })}
                {move || error.get().map(|e| view! { <span class="field-error" role="alert">{e}</span> })}
            </div>
            <div class="chart" node_ref=wrap>
                <canvas id="sweep-canvas" node_ref=canvas role="img" aria-label=alt></canvas>
            </div>
            <Show when=two_d>
                <div class="heat">
                    <label>"heatmap of "
                        <select id="sweep-quantity" on:change=move |e| {
                            let v = event_target_value(&e);
                            if let Some(q) = Quantity::ALL.into_iter().find(|q| q.key() == v) { quantity.set(q); }
                        } prop:value=move || quantity.get().key()>
                            {Quantity::ALL.iter().map(|q| view! { <option value=q.key()>{q.label()}</option> }).collect_view()}
                        </select>
                    </label>
                    <canvas id="sweep-heat" node_ref=heat role="img" aria-label=alt
                        on:mousemove=on_move on:click=on_click style="cursor: pointer"></canvas>
                    <p id="sweep-hover" class="small" aria-live="polite">{move || hover.get()}</p>
                </div>
            </Show>
            <div class="table-wrap" tabindex="0" role="region" aria-label="Sweep cells (scrolls sideways)">
                <table class="runs" aria-label="Sweep cells: medians over the draws">
                    <thead><tr><th>"x"</th><th>"y"</th><th>"min sin θ_A"</th><th>"final ln risk"</th><th>"t*(θ)"</th><th>"theory t*"</th><th>"draws"</th><th>"diverged"</th><th>"lab"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
            <div class="exports chrome" role="group" aria-label="Export">
                <button on:click=move |_| { if let Some(c) = canvas.get_untracked() { export::download_canvas_png(&c, "lora-one-lab-sweep.png"); } }
                    prop:disabled=move || report.with(|r| r.is_none())>"Figure as PNG"</button>
                <button id="sweep-svg" on:click=export_svg prop:disabled=move || report.with(|r| r.is_none())>"Figure as SVG"</button>
                <button on:click=export_csv prop:disabled=move || report.with(|r| r.is_none())>"Sweep as CSV"</button>
                <button on:click=export_json prop:disabled=move || report.with(|r| r.is_none())>"Sweep as JSON"</button>
            </div>
        </section>
    }
}
