//! View "Digits" (SPEC §9): real data in the browser. The UCI handwritten digits are fetched when
//! the view opens (`digits.bin` beside the page, 44 KB gzipped, not part of the first load); a
//! net pre-trained on the odd digits is fine-tuned on the even ones by every method, in chunks with
//! progress and Stop, on the CPU engine (or the GPU backend: `compute=gpu`, or `auto` on a hardware
//! adapter from the model's measured crossover; a GPU failure restarts the run on the CPU). Shows
//! the talk's table, the curves and the Fig. 1(c) landscape (the figure of `digits_plot`, shared
//! with the CLI).

use super::backend::{self, BackendChoice, Compute};
use super::export;
use super::util::{self, fmt3};
use crate::digits::{self, Digits, FtConfig, FtMethod, FtReport, FtRunner, FT_KEYS};
use crate::digits_plot;
use leptos::html::{Canvas, Div};
use leptos::prelude::*;
use leptos::task::spawn_local;
use plotters::prelude::*;
use plotters_canvas::CanvasBackend;
use std::sync::Arc;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// Fetch and parse `digits.bin` (relative to the page).
async fn load() -> Result<Digits, String> {
    let resp = JsFuture::from(window().fetch_with_str("./digits.bin"))
        .await
        .map_err(|e| format!("could not fetch digits.bin: {e:?}"))?;
    let resp: web_sys::Response = resp.dyn_into().map_err(|_| "fetch: not a response")?;
    if !resp.ok() {
        return Err(format!(
            "could not fetch digits.bin: HTTP {}",
            resp.status()
        ));
    }
    let buf = JsFuture::from(resp.array_buffer().map_err(|e| format!("{e:?}"))?)
        .await
        .map_err(|e| format!("digits.bin: {e:?}"))?;
    Digits::parse(&js_sys::Uint8Array::new(&buf).to_vec())
}

/// Refuse what a tab would take minutes over: about 1 G multiply-add per second in wasm.
const MAX_WORK: f64 = 1.2e11;

use super::controls::RunStatus as State;

#[component]
pub fn DigitsView(
    params: RwSignal<FtConfig>,
    choice: RwSignal<BackendChoice>,
    compute: RwSignal<Compute>,
    dark: RwSignal<bool>,
    large: bool,
) -> impl IntoView {
    let data = StoredValue::new(None::<Arc<Digits>>);
    let report: RwSignal<Option<Arc<FtReport>>> = RwSignal::new(None);
    let state = RwSignal::new(State::Loading);
    let error = RwSignal::new(None::<String>);
    let progress = RwSignal::new(0.0f64);
    let run_ms = RwSignal::new(0.0f64);
    let stop = StoredValue::new(false);
    let ran_on = RwSignal::new(String::new());
    let why_cpu = RwSignal::new(String::new());
    let methods = FtMethod::defaults();
    let n_methods = methods.len();
    let valid = Memo::new(move |_| {
        params.with(|p| {
            p.validate().map_err(|e| e.to_string())?;
            let w = p.work(n_methods);
            if w > MAX_WORK {
                return Err(format!(
                    "`steps`: seeds × (pre_steps + {n_methods} × steps) × hidden is about {:.0} s of work here; the page allows about {:.0} s",
                    w / 1e9,
                    MAX_WORK / 1e9
                ));
            }
            Ok(w)
        })
    });

    let run = move || {
        if state.get_untracked() == State::Running {
            return;
        }
        let Some(d) = data.get_value() else { return };
        let cfg = params.get_untracked();
        if let Err(e) = valid.get_untracked() {
            error.set(Some(e));
            state.set(State::Failed);
            return;
        }
        error.set(None);
        stop.set_value(false);
        state.set(State::Running);
        progress.set(0.0);
        let methods = FtMethod::for_config(&cfg);
        spawn_local(async move {
            let (use_gpu, why) = backend::settled(choice)
                .await
                .for_digits(compute.get_untracked(), &cfg);
            let (mut be, failed) = backend::make_backend(use_gpu).await;
            // the CPU is the default below the crossover: say so only when the GPU was asked for
            if compute.get_untracked() == Compute::Gpu {
                error.set(failed.or(why.clone()));
            }
            ran_on.set(crate::engine::Backend::info(&be).name);
            why_cpu.set(if be.is_gpu() {
                String::new()
            } else {
                why.clone().unwrap_or_default()
            });
            let t0 = util::now_ms();
            let mut r = FtRunner::new((*d).clone(), cfg.clone(), methods.clone());
            // the figure is redrawn when a seed's runs arrive, not between
            let mut published = 0;
            while !r.done() {
                if stop.try_get_value().unwrap_or(true) {
                    state.set(State::Stopped);
                    break;
                }
                let mut res = r.step_on(&mut be, 25.0).await;
                // test hook (`?simulate=device-loss`): the GPU device is lost after a chunk
                if res.is_ok() && be.is_gpu() && backend::take_simulated_loss() {
                    res = Err(crate::engine::EngineError::Device(
                        "device lost (simulated)".into(),
                    ));
                }
                if let Err(e) = res {
                    if !be.is_gpu() {
                        error.set(Some(e.to_string()));
                        state.set(State::Failed);
                        break;
                    }
                    // the GPU failed (device lost): the whole run again on the CPU engine
                    error.set(Some(format!(
                        "GPU failed mid-run: {e}: the run was restarted on the CPU"
                    )));
                    be = backend::cpu_backend();
                    ran_on.set(crate::engine::Backend::info(&be).name);
                    r = FtRunner::new((*d).clone(), cfg.clone(), methods.clone());
                    published = 0;
                    report.set(None);
                    continue;
                }
                progress.set(r.progress());
                if r.finished_runs() != published {
                    published = r.finished_runs();
                    report.set(Some(Arc::new(r.report())));
                }
                util::yield_now().await;
            }
            backend::give_back(be);
            run_ms.set(util::now_ms() - t0);
            report.set(Some(Arc::new(r.report())));
            if r.done() {
                state.set(State::Done);
            }
        });
    };

    // the data, then the default run
    spawn_local(async move {
        match load().await {
            Ok(d) => {
                data.set_value(Some(Arc::new(d)));
                state.set(State::Idle);
                run();
            }
            Err(e) => {
                error.set(Some(e));
                state.set(State::Failed);
            }
        }
    });

    // the animation of the landscape's paths: None shows them whole
    let anim: RwSignal<Option<usize>> = RwSignal::new(None);
    let playing = RwSignal::new(false);
    let play = move |_| {
        if playing.get_untracked() {
            playing.set(false);
            return;
        }
        let Some(steps) = report.with_untracked(|r| r.as_ref().map(|r| r.config.steps.max(1)))
        else {
            return;
        };
        playing.set(true);
        spawn_local(async move {
            // about 4 s from W_pre to the end
            let t0 = util::now_ms();
            loop {
                let now = util::next_frame_or(40).await;
                if !playing.try_get_untracked().unwrap_or(false) {
                    break;
                }
                let t = (((now - t0) / 4000.0) * steps as f64).round() as usize;
                if t >= steps {
                    anim.set(None);
                    playing.set(false);
                    break;
                }
                anim.set(Some(t));
            }
        });
    };

    let canvas = NodeRef::<Canvas>::new();
    let wrap = NodeRef::<Div>::new();
    Effect::new(move |_| {
        let r = report.get();
        let dk = dark.get();
        let upto = anim.get();
        let (Some(r), Some(c), Some(d)) = (r, canvas.get(), wrap.get()) else {
            return;
        };
        let w = (d.client_width() as f64).clamp(320.0, 1600.0);
        let h = (w * 0.36).max(380.0);
        let scale = util::size_canvas(&c, w, h);
        let th = crate::sweep_plot::Theme::for_page(dk, scale * if large { 1.3 } else { 1.0 });
        if let Some(be) = CanvasBackend::with_canvas_object(c.clone()) {
            if let Err(e) = digits_plot::draw_at(&r, be.into_drawing_area(), &th, upto) {
                let _ = c.set_attribute("data-error", &e.to_string());
            }
        }
        let _ = c.set_attribute("data-runs", &r.runs.len().to_string());
        let _ = c.set_attribute("data-step", &upto.map_or("end".into(), |t| t.to_string()));
        let _ = c.set_attribute(
            "data-landscape",
            &r.landscape
                .as_ref()
                .map_or(0, |l| l.ln_loss.len())
                .to_string(),
        );
    });

    let rows = move || {
        report.with(|r| {
            r.as_ref().map(|r| {
                digits::table(r)
                    .into_iter()
                    .map(|t| {
                        view! {
                            <tr>
                                <td>{t.label.clone()}</td>
                                <td>{format!("{:.1} %", 100.0 * t.acc_median)}</td>
                                <td>{format!("{:.1}–{:.1} %", 100.0 * t.acc_q10, 100.0 * t.acc_q90)}</td>
                                <td>{fmt3(t.init_ms)}</td>
                                <td>{fmt3(t.train_ms)}</td>
                                <td>{t.seeds}</td>
                                <td>{if t.diverged > 0 { format!("{} of {}", t.diverged, t.seeds) } else { "–".to_string() }}</td>
                            </tr>
                        }
                    })
                    .collect_view()
            })
        })
    };
    let pre_line = move || {
        report.with(|r| {
            let r = r.as_ref()?;
            let mut odd: Vec<f64> = r.pretraining.iter().map(|p| p.odd_test_acc).collect();
            let mut even: Vec<f64> = r.pretraining.iter().map(|p| p.even_test_acc).collect();
            if odd.is_empty() {
                return None;
            }
            odd.sort_by(f64::total_cmp);
            even.sort_by(f64::total_cmp);
            Some(format!(
                "Pre-trained on the odd digits: {:.1} % held-out accuracy there, {:.1} % on the even digits before fine-tuning (medians over {} seed{}).",
                100.0 * crate::ensemble::quantile(&odd, 0.5),
                100.0 * crate::ensemble::quantile(&even, 0.5),
                odd.len(),
                if odd.len() == 1 { "" } else { "s" }
            ))
        })
    };
    let alt = move || {
        report.with(|r| {
            let Some(r) = r.as_ref() else {
                return "Digits figure: not run yet".to_string();
            };
            let mut s = "Test accuracy on the even digits by method (median over seeds): ".to_string();
            for t in digits::table(r) {
                s.push_str(&format!("{} {:.1} %; ", t.label, 100.0 * t.acc_median));
            }
            if let Some(l) = &r.landscape {
                s.push_str(&format!(
                    "Landscape: ln loss on the plane of the full fine-tuning path ({:.0} % of its variance), with each method's path.",
                    100.0 * l.explained
                ));
            }
            s
        })
    };
    let field = move |key: &'static str| {
        super::controls::param_field(params, error, format!("dg-{key}"), key, key, "")
    };
    let export_json = move |_| {
        if let Some(r) = report.get_untracked() {
            let text = serde_json::to_string(&*r).unwrap_or_default();
            export::download_text("lora-one-lab-digits.json", "application/json", &text);
        }
    };
    let export_csv = move |_| {
        if let Some(r) = report.get_untracked() {
            export::download_text("lora-one-lab-digits.csv", "text/csv", &digits::to_csv(&r));
        }
    };
    let export_svg = move |_| {
        let Some(r) = report.get_untracked() else {
            return;
        };
        let th = crate::sweep_plot::Theme::for_page(dark.get_untracked(), 1.0);
        if let Err(e) = export::download_svg("lora-one-lab-digits.svg", (1600, 560), |root| {
            digits_plot::draw(&r, root, &th)
        }) {
            error.set(Some(e));
        }
    };
    let none = move || report.with(|r| r.is_none());

    view! {
        <section class="view digits" id="digits" aria-labelledby="digits-h" data-view="digits"
            data-state=move || state.get().attr() data-run-ms=move || format!("{:.0}", run_ms.get())>
            <h2 id="digits-h" class="chrome">"Real data: one step on handwritten digits"</h2>
            <p class="small chrome">"A two-layer ReLU net (64 → h → 5, shared 5-way head: class = digit / 2) pre-trained on the odd digits of the UCI optical handwritten digits, then fine-tuned on the even ones by one full step, the spectral init alone (one rank-r step W + η*P_r(G), no training), full fine-tuning, and LoRA_r from four inits. Computed in your browser: on the CPU engine, or on WebGPU from h = 128 (where a GPU is measured faster) or with compute=gpu."</p>
            <details class="chrome" id="digits-settings">
                <summary>"Settings"</summary>
                <div class="fields">{FT_KEYS.iter().map(|k| field(k)).collect_view()}</div>
            </details>
            <div class="runbar">
                <button id="digits-run" on:click=move |_| run()
                    prop:disabled=move || valid.get().is_err() || matches!(state.get(), State::Running | State::Loading)>"Run"</button>
                <button id="digits-stop" on:click=move |_| stop.set_value(true)
                    prop:disabled=move || state.get() != State::Running>"Stop"</button>
                <progress id="digits-progress" max="1" prop:value=move || progress.get() aria-label="Fine-tuning progress"></progress>
                <span class="small">{move || match state.get() {
                    State::Loading => "loading the digits…".to_string(),
                    State::Done | State::Stopped => format!("{:.1} s", run_ms.get() / 1000.0),
                    _ => valid.get().map(|w| format!("~{:.1} G multiply-adds", w / 1e9)).unwrap_or_default(),
                }}</span>
                <span class="ran-on" id="digits-ran-on" title=move || why_cpu.get()>{move || { let r = ran_on.get(); if r.is_empty() { r } else { format!("on {r}") } }}</span>
                {move || valid.get().err().map(|e| view! { <span class="field-error" role="alert">{e}</span> })}
                {move || error.get().map(|e| view! { <span class="field-error" role="alert">{e}</span> })}
            </div>
            <p class="small" id="digits-pre">{pre_line}</p>
            <div class="chart" node_ref=wrap>
                <canvas id="digits-canvas" node_ref=canvas role="img" aria-label=alt></canvas>
            </div>
            <div class="runbar">
                <button id="digits-play" on:click=play prop:disabled=none aria-pressed=move || playing.get().to_string()>
                    {move || if playing.get() { "❚❚ Pause the paths" } else { "▶ Play the paths" }}
                </button>
                <label for="digits-step">"step"</label>
                <input type="range" id="digits-step" min="0"
                    prop:max=move || report.with(|r| r.as_ref().map_or(1, |r| r.config.steps.max(1)).to_string())
                    prop:value=move || anim.get().unwrap_or_else(|| report.with(|r| r.as_ref().map_or(1, |r| r.config.steps.max(1)))).to_string()
                    prop:disabled=none
                    on:input=move |e| {
                        playing.set(false);
                        let v = event_target_value(&e).parse::<usize>().ok();
                        let max = report.with_untracked(|r| r.as_ref().map_or(1, |r| r.config.steps.max(1)));
                        anim.set(v.filter(|&t| t < max));
                    } />
                <span class="small">{move || anim.get().map_or("all steps".to_string(), |t| format!("step {t}"))}</span>
            </div>
            <div class="table-wrap" tabindex="0" role="region" aria-label="The talk's table (scrolls sideways)">
                <table class="runs" id="digits-table" aria-label="Test accuracy on the even digits per method">
                    <thead><tr><th>"method"</th><th>"test accuracy (median)"</th><th>"10–90 %"</th><th>"init ms"</th><th>"train ms"</th><th>"seeds"</th><th>"diverged"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
            <div class="exports chrome" role="group" aria-label="Export">
                <button on:click=move |_| { if let Some(c) = canvas.get_untracked() { export::download_canvas_png(&c, "lora-one-lab-digits.png"); } }
                    prop:disabled=none>"Figure as PNG"</button>
                <button id="digits-svg" on:click=export_svg prop:disabled=none>"Figure as SVG"</button>
                <button on:click=export_csv prop:disabled=none>"Runs as CSV"</button>
                <button on:click=export_json prop:disabled=none>"Runs as JSON"</button>
            </div>
        </section>
    }
}
