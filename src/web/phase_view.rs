//! View "Phase portrait" (SPEC §6): the log-loss surface of the rank-one slice with contours,
//! the −∇L field, the hyperbola of minimisers, the saddle, and the animated trajectories.

use super::backend;
use super::controls::{NumSlider, Swatch};
use super::explain::PhaseExplain;
use super::export;
use super::palette::Method;
use super::phase_draw::{self, Frame, Theme};
use super::phase_model::{self, PhaseData, PhaseParams, Traj};
use super::util::{self, fmt, fmt3};
use leptos::ev;
use leptos::html::{Canvas, Div};
use leptos::prelude::*;
use leptos::task::spawn_local;
use std::sync::Arc;
use wasm_bindgen::JsCast;

pub use crate::urlstate::PageOpts;

#[component]
pub fn PhaseView(
    params: RwSignal<PhaseParams>,
    opts: PageOpts,
    dark: RwSignal<bool>,
) -> impl IntoView {
    let data: RwSignal<Option<Arc<PhaseData>>> = RwSignal::new(None);
    let error: RwSignal<Option<String>> = RwSignal::new(None);
    let t = RwSignal::new(0.0f64);
    let playing = RwSignal::new(false);
    let fps = RwSignal::new(0.0f64);
    let css = RwSignal::new((560.0f64, 560.0f64));
    let canvas_ref = NodeRef::<Canvas>::new();
    let wrap_ref = NodeRef::<Div>::new();
    let first = StoredValue::new(true);
    let gen = StoredValue::new(0u64);
    let dragging = StoredValue::new(false);

    // What the engine needs; the custom start, speed and visibility are handled without a rerun.
    let key = Memo::new(move |_| {
        let mut p = params.get();
        p.start = None;
        p.speed = 0.0;
        p.show = [true; 5];
        p
    });
    Effect::new(move |_| {
        let p = key.get();
        spawn_local(async move {
            let mut be = backend::cpu_backend();
            match phase_model::compute(&p, &mut be).await {
                Ok(d) => {
                    error.set(None);
                    let steps = d.steps as f64;
                    data.set(Some(Arc::new(d)));
                    // (try_*: the view may have been closed while this ran)
                    let Some(is_first) = first.try_get_value() else {
                        return;
                    };
                    first.set_value(false);
                    if is_first && opts.autoplay {
                        t.set(0.0);
                        playing.set(true);
                    } else if !playing.try_get_untracked().unwrap_or(false) {
                        t.set(steps);
                    } else {
                        t.set(0.0);
                    }
                }
                Err(e) => error.set(Some(e)),
            }
        });
    });
    let custom: Memo<Option<Traj>> = Memo::new(move |_| {
        let d = data.get()?;
        let p = params.get();
        let st = p.start?;
        Some(phase_model::custom(&d.portrait.coeffs, st, p.eta, p.steps))
    });
    let steps = move || data.with(|d| d.as_ref().map_or(0, |d| d.steps));

    // Canvas size: the container's width, bounded by the window height.
    let resize = move || {
        let w = wrap_ref
            .get_untracked()
            .map_or(560.0, |e| e.client_width() as f64);
        let vh = window()
            .inner_height()
            .ok()
            .and_then(|v| v.as_f64())
            .unwrap_or(800.0);
        let s = if opts.embed {
            let vw = window()
                .inner_width()
                .ok()
                .and_then(|v| v.as_f64())
                .unwrap_or(960.0);
            (vw - 390.0).min(vh - 12.0)
        } else {
            w.min(vh - 140.0)
        };
        let s = s.clamp(260.0, 760.0).floor();
        css.set((s, s));
    };
    Effect::new(move |_| {
        if wrap_ref.get().is_some() {
            resize();
        }
    });
    let rh = window_event_listener(ev::resize, move |_| resize());
    on_cleanup(move || rh.remove());

    // Heatmap cache, rebuilt when the data or the theme changes.
    let heat = StoredValue::new_local(None::<(usize, bool, web_sys::HtmlCanvasElement)>);
    let font = move || if opts.large { 17.0 } else { 12.0 };
    let frame_of = move |d: &PhaseData| {
        let (w, h) = css.get_untracked();
        Frame::new(w, h, d.window(), font())
    };

    // Draw on any change.
    Effect::new(move |_| {
        let (w, h) = css.get();
        let tt = t.get();
        let show = params.with(|p| p.show);
        let dk = dark.get();
        let cu = custom.get();
        let Some(c) = canvas_ref.get() else { return };
        let Some(d) = data.get() else { return };
        let scale = util::size_canvas(&c, w, h);
        let Some(ctx) = util::ctx2d(&c) else { return };
        let theme = Theme {
            dark: dk,
            font: font(),
        };
        let ptr = Arc::as_ptr(&d) as usize;
        let hc = heat.with_value(|h| {
            h.as_ref()
                .filter(|(p, k, _)| *p == ptr && *k == dk)
                .map(|(_, _, c)| c.clone())
        });
        let hc = hc.or_else(|| {
            let c = phase_draw::heat_canvas(&d, &theme)?;
            heat.set_value(Some((ptr, dk, c.clone())));
            Some(c)
        });
        let _ = ctx.set_transform(scale, 0.0, 0.0, scale, 0.0, 0.0);
        let f = Frame::new(w, h, d.window(), theme.font);
        let mut dd = (*d).clone();
        if let Some(cu) = cu {
            dd.trajs.push(cu);
        }
        phase_draw::draw(&ctx, &dd, hc.as_ref(), &f, w, h, tt, show, &theme);
        let pts: usize = dd
            .trajs
            .iter()
            .filter(|tr| show[tr.method.index()])
            .map(|tr| (tt.floor() as usize + 1).min(tr.pts.len()))
            .sum();
        let _ = c.set_attribute("data-points", &pts.to_string());
        let shown = dd.trajs.iter().filter(|tr| show[tr.method.index()]).count();
        let _ = c.set_attribute("data-trajectories", &shown.to_string());
        // each trajectory's end point (a, b, loss): lets a test see that a change recomputed them
        let ends: Vec<String> = dd
            .trajs
            .iter()
            .filter_map(|tr| tr.pts.last())
            .map(|p| format!("{:.6e} {:.6e} {:.6e}", p[0], p[1], p[3]))
            .collect();
        let _ = c.set_attribute("data-ends", &ends.join(";"));
        let _ = c.set_attribute("data-step", &(tt.floor() as usize).to_string());
        let _ = c.set_attribute("data-ready", "1");
    });

    // Animation loop: advance t at `speed` steps per second while playing.
    let play = move || {
        if steps() == 0 {
            return;
        }
        if t.get_untracked() >= steps() as f64 {
            t.set(0.0);
        }
        playing.set(true);
    };
    Effect::new(move |_| {
        if !playing.get() {
            return;
        }
        let my = gen.get_value() + 1;
        gen.set_value(my);
        spawn_local(async move {
            // frames, or 40 ms ticks where the browser withholds frames (a just-shown iframe)
            let mut last = util::now_ms();
            let mut frames = 0u32;
            let mut since = last;
            // try_*: the loop ends quietly when the view is closed (signals disposed)
            while playing.try_get_untracked() == Some(true) && gen.try_get_value() == Some(my) {
                let now = util::next_frame_or(40).await;
                // paused, reset or restarted while this loop waited: it must not step again
                if playing.try_get_untracked() != Some(true) || gen.try_get_value() != Some(my) {
                    break;
                }
                let dt = ((now - last) / 1000.0).clamp(0.0, 0.25);
                last = now;
                let sp = params.with_untracked(|p| p.speed);
                let Some(max) = data.try_with_untracked(|d| d.as_ref().map_or(0, |d| d.steps))
                else {
                    break;
                };
                let max = max as f64;
                let Some(cur) = t.try_get_untracked() else {
                    break;
                };
                let nt = (cur + dt * sp).min(max);
                t.set(nt);
                frames += 1;
                if now - since > 500.0 {
                    fps.set(frames as f64 * 1000.0 / (now - since));
                    frames = 0;
                    since = now;
                }
                if nt >= max {
                    playing.set(false);
                }
            }
        });
    });
    let toggle = move || {
        if playing.get_untracked() {
            playing.set(false)
        } else {
            play()
        }
    };
    let step_once = move || {
        playing.set(false);
        let max = steps() as f64;
        t.update(|x| *x = (x.floor() + 1.0).min(max));
    };
    let reset = move || {
        playing.set(false);
        t.set(0.0);
    };
    let toggle_method = move |i: usize| params.update(|p| p.show[i] = !p.show[i]);

    // Keyboard shortcuts (a deck's navigation keys are passed on by the app: `deck_keys`).
    let kh = window_event_listener(ev::keydown, move |e: web_sys::KeyboardEvent| {
        if e.default_prevented() {
            return;
        }
        let tag = e
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .map(|el| el.tag_name().to_ascii_lowercase())
            .unwrap_or_default();
        let field = matches!(tag.as_str(), "input" | "select" | "textarea");
        if field || tag == "button" {
            return;
        }
        if e.ctrl_key() || e.meta_key() || e.alt_key() {
            return;
        }
        match e.key().as_str() {
            " " => {
                e.prevent_default();
                toggle();
            }
            "." => step_once(),
            "r" | "R" => reset(),
            "1" => toggle_method(0),
            "2" => toggle_method(1),
            "3" => toggle_method(2),
            "4" => toggle_method(3),
            "5" => toggle_method(4),
            _ => {}
        }
    });
    on_cleanup(move || kh.remove());
    // Arriving on a slide: play from the start; the canvas counts restarts (`data-restarts`).
    let restarts = StoredValue::new(0u32);
    let restart = move || {
        t.set(0.0);
        playing.set(true);
        let n = restarts.try_get_value().unwrap_or(0) + 1;
        let _ = restarts.try_set_value(n);
        if let Some(c) = canvas_ref.get_untracked() {
            let _ = c.set_attribute("data-restarts", &n.to_string());
        }
    };
    // reveal.js posts 'slide:start' / 'slide:stop' to iframes on the current slide.
    let mh = window_event_listener(ev::message, move |e: web_sys::MessageEvent| {
        let d = e.data();
        let s = d.as_string().unwrap_or_default();
        let ev_name = if s.starts_with('{') {
            serde_json::from_str::<serde_json::Value>(&s)
                .ok()
                .and_then(|v| {
                    v.get("eventName")
                        .and_then(|x| x.as_str())
                        .map(String::from)
                })
                .unwrap_or_default()
        } else {
            s
        };
        match ev_name.as_str() {
            "slide:start" => restart(),
            "slide:stop" => playing.set(false),
            _ => {}
        }
    });
    on_cleanup(move || mh.remove());
    // Embedded in an iframe: coming into view counts as arriving on the slide and leaving it as
    // leaving, so a deck whose `slide:start` came before the page was ready (or a host that posts
    // nothing) still restarts the animation on arrival and stops it when hidden.
    let in_frame = window()
        .parent()
        .ok()
        .flatten()
        .is_some_and(|p| !js_sys::Object::is(p.as_ref(), window().as_ref()));
    if opts.embed && in_frame {
        let seen = StoredValue::new(None::<bool>);
        Effect::new(move |_| {
            let Some(c) = canvas_ref.get() else { return };
            let cb = wasm_bindgen::closure::Closure::<dyn FnMut(js_sys::Array)>::new(
                move |entries: js_sys::Array| {
                    let Some(e) = entries
                        .iter()
                        .last()
                        .and_then(|e| e.dyn_into::<web_sys::IntersectionObserverEntry>().ok())
                    else {
                        return;
                    };
                    let visible = e.is_intersecting();
                    let before = seen.try_get_value().flatten();
                    let _ = seen.try_set_value(Some(visible));
                    match (before, visible) {
                        (Some(false), true) => restart(),
                        (_, false) => playing.set(false),
                        _ => {}
                    }
                },
            );
            if let Ok(io) = web_sys::IntersectionObserver::new(cb.as_ref().unchecked_ref()) {
                io.observe(&c);
                on_cleanup(move || io.disconnect());
            }
            cb.forget();
        });
    }

    // Pointer: click or drag to place the custom start.
    let place = move |e: &web_sys::PointerEvent| {
        let Some(c) = canvas_ref.get_untracked() else {
            return;
        };
        let Some(d) = data.get_untracked() else {
            return;
        };
        let r = c.get_bounding_client_rect();
        let (x, y) = (
            e.client_x() as f64 - r.left(),
            e.client_y() as f64 - r.top(),
        );
        if let Some((a, b)) = frame_of(&d).ab(x, y) {
            let q = |v: f64| (v * 1e3).round() / 1e3;
            params.update(|p| {
                p.start = Some((q(a), q(b)));
                p.show[3] = true;
            });
        }
    };
    let on_key_canvas = move |e: web_sys::KeyboardEvent| {
        if opts.embed {
            return;
        }
        let Some(d) = data.get_untracked() else {
            return;
        };
        let w = d.window();
        let st = (w.a_max - w.a_min) / 50.0;
        let (da, db) = match e.key().as_str() {
            "ArrowLeft" => (-st, 0.0),
            "ArrowRight" => (st, 0.0),
            "ArrowUp" => (0.0, st),
            "ArrowDown" => (0.0, -st),
            "Delete" | "Backspace" => {
                params.update(|p| p.start = None);
                return;
            }
            _ => return,
        };
        e.prevent_default();
        params.update(|p| {
            let (a, b) = p.start.unwrap_or((0.5 * w.a_max, 0.5 * w.b_max));
            let q = |v: f64| (v * 1e3).round() / 1e3;
            p.start = Some((q(a + da), q(b + db)));
            p.show[3] = true;
        });
    };

    let set =
        move |f: fn(&mut PhaseParams, f64)| Callback::new(move |v: f64| params.update(|p| f(p, v)));
    let get = move |f: fn(&PhaseParams) -> f64| Signal::derive(move || params.with(f));

    let readout = move || {
        let tt = t.get();
        let show = params.with(|p| p.show);
        let mut trajs: Vec<Traj> =
            data.with(|d| d.as_ref().map(|d| d.trajs.clone()).unwrap_or_default());
        if let Some(c) = custom.get() {
            trajs.push(c);
        }
        trajs
            .into_iter()
            // PiSSA is opt-in: no row until it is shown
            .filter(|tr| tr.method != Method::Pissa || show[Method::Pissa.index()])
            .map(|tr| {
                let i = (tt.floor() as usize).min(tr.pts.len().saturating_sub(1));
                let p = tr.pts.get(i).copied().unwrap_or([0.0; 4]);
                let m = tr.method;
                let hidden = !show[m.index()];
                let status = match tr.diverged {
                    Some(s) if i + 1 >= tr.pts.len() => format!(" (diverged at {s})"),
                    _ => String::new(),
                };
                view! {
                    <tr class:muted=hidden data-method=m.label()>
                        <th scope="row" title=tr.label.clone()><Swatch method=m />" " {m.label()}</th>
                        <td>{i}{status}</td>
                        <td data-loss=p[3]>{if p[3].abs() < 1e-12 { "≈ 0".to_string() } else { fmt3(p[3]) }}</td>
                        <td>{format!("({}, {})", fmt3(p[0]), fmt3(p[1]))}</td>
                        <td>{if m == Method::Custom { "0 (in-plane)".to_string() } else { fmt3(p[2]) }}</td>
                    </tr>
                }
            })
            .collect_view()
    };

    let alt_text = move || {
        data.with(|d| {
            let Some(d) = d.as_ref() else {
                return "Phase portrait: computing".to_string();
            };
            let mut s = format!(
                "Phase portrait of L(a,b) = ½(ab − δ)² style loss on the rank-one slice, log scale from {:.1} to {:.1} (log10). Saddle at the origin, minimisers on the hyperbola ab = {}. ",
                d.lo,
                d.hi,
                fmt(d.portrait.coeffs.minimiser_product())
            );
            for tr in &d.trajs {
                if let (Some(a), Some(b)) = (tr.pts.first(), tr.pts.last()) {
                    s.push_str(&format!(
                        "{} starts at ({}, {}) and ends at ({}, {}) with loss {}. ",
                        tr.label,
                        fmt(a[0]),
                        fmt(a[1]),
                        fmt(b[0]),
                        fmt(b[1]),
                        fmt(b[3])
                    ));
                }
            }
            s
        })
    };

    let export_png = move |_| {
        if let Some(c) = canvas_ref.get_untracked() {
            export::download_canvas_png(&c, "lora-one-phase-portrait.png");
        }
    };
    let export_svg = move |_| {
        let Some(d) = data.get_untracked() else {
            return;
        };
        let (w, h) = css.get_untracked();
        let theme = Theme {
            dark: dark.get_untracked(),
            font: font(),
        };
        let heat_url = phase_draw::heat_canvas(&d, &theme).and_then(|c| c.to_data_url().ok());
        let mut dd = (*d).clone();
        if let Some(cu) = custom.get_untracked() {
            dd.trajs.push(cu);
        }
        let f = Frame::new(w, h, d.window(), theme.font);
        let svg = phase_draw::svg(
            &dd,
            heat_url.as_deref(),
            &f,
            w,
            h,
            t.get_untracked(),
            params.with_untracked(|p| p.show),
            &theme,
        );
        export::download_text("lora-one-phase-portrait.svg", "image/svg+xml", &svg);
    };
    let export_json = move |_| {
        if let Some(d) = data.get_untracked() {
            export::download_text(
                "lora-one-phase-runs.json",
                "application/json",
                &export::report_json(&d.portrait.report),
            );
        }
    };
    let export_csv = move |_| {
        if let Some(d) = data.get_untracked() {
            export::download_text(
                "lora-one-phase-runs.csv",
                "text/csv",
                &export::report_csv(&d.portrait.report),
            );
        }
    };

    let legend = move || {
        Method::ALL
            .into_iter()
            .map(|m| {
                let i = m.index();
                let disabled = move || m == Method::Custom && params.with(|p| p.start.is_none());
                view! {
                    <label class="legend-item" title=format!("{} line, key {}", m.dash().name(), i + 1)>
                        <input
                            type="checkbox"
                            prop:checked=move || params.with(|p| p.show[i])
                            prop:disabled=disabled
                            on:change=move |_| toggle_method(i)
                        />
                        <Swatch method=m />
                        {format!(" {} ({})", m.label(), m.dash().name())}
                        {move || (m == Method::Pissa && params.with(|p| p.w0 == 0.0 && p.show[i]))
                            .then(|| view! { <span class="small" id="pissa-note">" — W0 = 0 here, so its adapter starts at 0, on the saddle: raise w0"</span> })}
                    </label>
                }
            })
            .collect_view()
    };

    view! {
        <section class="view phase" aria-labelledby="phase-h" data-view="phase">
            <h2 id="phase-h" class="chrome">"Phase portrait"</h2>
            <div class="phase-grid">
                <div class="plot-col" node_ref=wrap_ref>
                    <canvas
                        id="phase-canvas"
                        node_ref=canvas_ref
                        tabindex="0"
                        role="img"
                        aria-label=alt_text
                        on:pointerdown=move |e: web_sys::PointerEvent| {
                            dragging.set_value(true);
                            if let Some(c) = canvas_ref.get_untracked() {
                                let _ = c.set_pointer_capture(e.pointer_id());
                            }
                            place(&e);
                        }
                        on:pointermove=move |e: web_sys::PointerEvent| {
                            if dragging.get_value() {
                                place(&e);
                            }
                        }
                        on:pointerup=move |_| dragging.set_value(false)
                        on:pointercancel=move |_| dragging.set_value(false)
                        on:keydown=on_key_canvas
                    ></canvas>
                    <p class="sr-only" aria-live="polite">{alt_text}</p>
                    {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
                </div>
                <div class="side-col">
                    <div class="transport" role="group" aria-label="Animation">
                        <button id="play" on:click=move |_| toggle() aria-pressed=move || playing.get().to_string()>
                            {move || if playing.get() { "❚❚ Pause" } else { "▶ Play" }}
                        </button>
                        <button id="step" on:click=move |_| step_once() title="One step (.)">"Step"</button>
                        <button id="reset" on:click=move |_| reset() title="Back to step 0 (r)">"Reset"</button>
                        <span class="stepno" aria-live="off">
                            "step " <b id="phase-step">{move || t.get().floor() as usize}</b> " / " {steps}
                        </span>
                    </div>
                    <NumSlider label="speed (steps/s)" key="speed" min=1.0 max=1000.0 log=true
                        value=get(|p| p.speed) on_change=set(|p, v| p.speed = v) />
                    <fieldset class="legend">
                        <legend>"Methods (colour and line style)"</legend>
                        {legend}
                    </fieldset>
                    // scrolls sideways on a narrow phone instead of widening the page
                    <div class="table-wrap" tabindex="0" role="region" aria-label="Live readout (scrolls sideways)">
                        <table class="readout" aria-label="Live readout">
                            <thead><tr><th>"method"</th><th>"step"</th><th>"loss"</th><th>"(a, b)"</th><th>"off-plane"</th></tr></thead>
                            <tbody>{readout}</tbody>
                        </table>
                    </div>
                    <details class="params" open=!opts.embed>
                        <summary>"Parameters"</summary>
                        <NumSlider label="δ (target size)" key="delta" min=0.1 max=4.0
                            value=get(|p| p.delta) on_change=set(|p, v| p.delta = v) />
                        <NumSlider label="α (vanilla scale)" key="alpha" min=0.001 max=1.0 log=true
                            value=get(|p| p.alpha) on_change=set(|p, v| p.alpha = v) />
                        <NumSlider label="η (step size)" key="eta" min=0.001 max=0.6
                            value=get(|p| p.eta) on_change=set(|p, v| p.eta = v) />
                        <NumSlider label="γ (LoRA-One)" key="gamma" min=0.1 max=4.0
                            value=get(|p| p.gamma) on_change=set(|p, v| p.gamma = v) />
                        <NumSlider label="γ_GA (LoRA-GA)" key="gamma_ga" min=0.25 max=64.0 log=true
                            value=get(|p| p.gamma_ga) on_change=set(|p, v| p.gamma_ga = v) />
                        <NumSlider label="w0 (W0's scale: PiSSA)" key="w0" min=0.0 max=2.0
                            value=get(|p| p.w0) on_change=set(|p, v| p.w0 = v.max(0.0)) />
                        <NumSlider label="steps" key="steps" min=10.0 max=2000.0 integer=true
                            value=get(|p| p.steps as f64) on_change=set(|p, v| p.steps = v.max(1.0) as usize) />
                        <div class="ctl">
                            <label>
                                <input type="checkbox" id="population"
                                    prop:checked=move || params.with(|p| p.population)
                                    on:change=move |e| { let c = event_target_checked(&e); params.update(|p| p.population = c) } />
                                " population Σ̂ = I (off: finite N)"
                            </label>
                        </div>
                        <Show when=move || !params.with(|p| p.population)>
                            <NumSlider label="N (samples)" key="n" min=3.0 max=200.0 integer=true
                                value=get(|p| p.n as f64) on_change=set(|p, v| p.n = v.max(1.0) as usize) />
                            <NumSlider label="seed" key="seed" min=0.0 max=100.0 integer=true
                                value=get(|p| p.seed as f64) on_change=set(|p, v| p.seed = v.max(0.0) as u64) />
                        </Show>
                        <fieldset class="start">
                            <legend>"Custom start (click or drag on the plot; arrow keys on the focused plot)"</legend>
                            <NumSlider label="a₀" key="start_a" min=-3.0 max=3.0
                                value=Signal::derive(move || params.with(|p| p.start.map_or(0.0, |s| s.0)))
                                on_change=Callback::new(move |v: f64| params.update(|p| { let b = p.start.map_or(0.5, |s| s.1); p.start = Some((v, b)); p.show[3] = true; })) />
                            <NumSlider label="b₀" key="start_b" min=-3.0 max=3.0
                                value=Signal::derive(move || params.with(|p| p.start.map_or(0.0, |s| s.1)))
                                on_change=Callback::new(move |v: f64| params.update(|p| { let a = p.start.map_or(0.5, |s| s.0); p.start = Some((a, v)); p.show[3] = true; })) />
                            <button on:click=move |_| params.update(|p| p.start = None)>"Clear custom start"</button>
                        </fieldset>
                    </details>
                    <div class="exports chrome" role="group" aria-label="Export">
                        <button on:click=export_png>"PNG"</button>
                        <button on:click=export_svg>"SVG"</button>
                        <button on:click=export_csv>"CSV"</button>
                        <button on:click=export_json>"JSON"</button>
                        <span class="fps" id="fps" data-fps=move || format!("{:.1}", fps.get())>
                            {move || if fps.get() > 0.0 { format!("{:.0} fps", fps.get()) } else { String::new() }}
                        </span>
                    </div>
                </div>
            </div>
            <PhaseExplain />
        </section>
    }
}
