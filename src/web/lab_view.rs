//! View "Dynamics lab": every engine parameter, the presets, the runs on the GPU backend (CPU
//! fallback) in chunks that yield to the browser, and the charts of SPEC §4's records.

use super::backend::{self, AppBackend, BackendChoice, Compute};
use super::controls::LineSwatch;
use super::explain::LabExplain;
use super::export;
use super::lab_charts::{self, ChartTheme, Series};
use super::palette::{Dash, GREY, ORANGE, SKY};
use super::util::{self, fmt};
use crate::config::{Config, InitKind, Preset};
use crate::engine::{EngineError, Experiment, Report};
use leptos::html::Canvas;
use leptos::prelude::*;
use leptos::task::spawn_local;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub enum RunState {
    Idle,
    Running,
    Done,
    Stopped,
    Failed(String),
}

impl RunState {
    fn attr(&self) -> &'static str {
        match self {
            RunState::Idle => "idle",
            RunState::Running => "running",
            RunState::Done => "done",
            RunState::Stopped => "stopped",
            RunState::Failed(_) => "failed",
        }
    }
}

enum Field {
    Text(&'static str),
    Select(&'static [&'static str]),
    Bool,
    Inits,
}

const FIELDS: [(&str, &str, Field); 27] = [
    ("d", "d (input dim)", Field::Text("whole number")),
    ("k", "k (output dim)", Field::Text("whole number")),
    ("r", "r (LoRA rank)", Field::Text("whole number")),
    ("r_star", "r* (target rank)", Field::Text("whole number")),
    ("n", "N (samples)", Field::Text("number or auto (16d)")),
    ("population", "population Σ̂ = I", Field::Bool),
    ("kappa", "κ (condition number)", Field::Text("≥ 1")),
    ("spectrum", "Δ spectrum", Field::Text("comma list or auto")),
    (
        "delta_basis",
        "Δ basis",
        Field::Select(&["random", "canonical"]),
    ),
    ("w0_std", "W0 std", Field::Text("number")),
    ("model", "model", Field::Select(&["linear", "relu"])),
    ("noise", "label noise σ", Field::Text("number")),
    ("alpha2", "α² (vanilla)", Field::Text("comma list")),
    ("eta", "η (step size)", Field::Text("number")),
    ("steps", "steps", Field::Text("whole number")),
    (
        "optimiser",
        "optimiser",
        Field::Select(&["gd", "preconditioned"]),
    ),
    ("damping", "λ (damping)", Field::Text("number")),
    ("gamma", "γ (LoRA-One)", Field::Text("number")),
    ("normalised", "normalised LoRA-One", Field::Bool),
    ("gamma_stable", "γ_stable", Field::Text("number")),
    ("gamma_ga", "γ_GA (LoRA-GA)", Field::Text("number")),
    ("seed", "seed", Field::Text("whole number")),
    (
        "seeds",
        "init draws per α² (ensemble)",
        Field::Text("1 to 4096"),
    ),
    ("inits", "initialisations", Field::Inits),
    ("record_every", "record every", Field::Text("whole number")),
    (
        "step_form",
        "step form",
        Field::Select(&["factored", "residual"]),
    ),
    (
        "divergence_factor",
        "divergence factor",
        Field::Text("number"),
    ),
];

fn pair(cfg: &Config, key: &str) -> String {
    cfg.to_pairs()
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// The state of the lab's run, owned by the app so that a run goes on (and its results stay)
/// while the other view is shown.
#[derive(Clone, Copy)]
pub struct LabRun {
    pub report: RwSignal<Option<Arc<Report>>>,
    pub state: RwSignal<RunState>,
    pub progress: RwSignal<f64>,
    pub progress_text: RwSignal<String>,
    pub note: RwSignal<Option<String>>,
    pub stop: StoredValue<bool>,
    pub ran_on: RwSignal<String>,
}

impl LabRun {
    pub fn new() -> Self {
        LabRun {
            report: RwSignal::new(None),
            state: RwSignal::new(RunState::Idle),
            progress: RwSignal::new(0.0),
            progress_text: RwSignal::new(String::new()),
            note: RwSignal::new(None),
            stop: StoredValue::new(false),
            ran_on: RwSignal::new(String::new()),
        }
    }
}

impl Default for LabRun {
    fn default() -> Self {
        Self::new()
    }
}

#[component]
pub fn LabView(
    cfg: RwSignal<Config>,
    preset: RwSignal<Option<Preset>>,
    choice: RwSignal<BackendChoice>,
    /// Where to compute (auto: the faster backend for the configuration).
    compute: RwSignal<Compute>,
    dark: RwSignal<bool>,
    large: bool,
    run_state: LabRun,
) -> impl IntoView {
    let LabRun {
        report,
        state,
        progress,
        progress_text,
        note,
        stop,
        ran_on,
    } = run_state;
    let errors: RwSignal<Vec<(String, String)>> = RwSignal::new(Vec::new());

    let valid = Memo::new(move |_| cfg.with(|c| c.validate().map_err(|e| e.to_string())));

    let run = move || {
        if state.get_untracked() == RunState::Running {
            return;
        }
        let c = cfg.get_untracked();
        if let Err(e) = c.validate() {
            state.set(RunState::Failed(e.to_string()));
            return;
        }
        stop.set_value(false);
        state.set(RunState::Running);
        progress.set(0.0);
        note.set(None);
        let ch = choice.get_untracked();
        let (use_gpu, cpu_why) = ch.for_run(compute.get_untracked(), &c);
        spawn_local(async move {
            // The CPU engine runs in a Web Worker (the page only folds in its updates); where the
            // worker cannot start, it runs here in time-sliced chunks as before.
            if !use_gpu {
                if let Some(w) = super::engine_worker::take() {
                    if let Some(w) = cpu_why.clone() {
                        note.set(Some(format!("On the CPU engine: {w}")));
                    }
                    if run_in_worker(w, c.clone(), run_state).await {
                        return;
                    }
                    note.set(Some(
                        "The engine worker did not start: running on the CPU in the page".into(),
                    ));
                }
            }
            let (mut be, why) = backend::make_backend(use_gpu).await;
            if let Some(w) = why {
                note.set(Some(w));
            } else if let (false, Some(w)) = (use_gpu, cpu_why) {
                note.set(Some(format!("On the CPU engine: {w}")));
            }
            let mut exp = match Experiment::new(&c) {
                Ok(e) => e,
                Err(e) => {
                    state.set(RunState::Failed(e.to_string()));
                    return;
                }
            };
            ran_on.set(be_name(&be, &ch));
            // GPU calls have a fixed latency (submit + readback) and do not block the page while
            // they wait, so they get large chunks; CPU chunks aim at ~30 ms of blocking work.
            let mut chunk = if be.is_gpu() { 128usize } else { 4 };
            let mut last_pub = util::now_ms();
            let t_start = util::now_ms();
            loop {
                // The view closed (its signals disposed) counts as Stop.
                if stop.try_get_value().unwrap_or(true) {
                    exp.stop();
                    state.set(RunState::Stopped);
                    break;
                }
                let t0 = util::now_ms();
                let mut res = exp.step(&mut be, chunk).await;
                // Test hook (`?simulate=device-loss`): the GPU device is lost after the first chunk.
                if be.is_gpu()
                    && matches!(res, Ok(ref p) if p.step > 0)
                    && backend::take_simulated_loss()
                {
                    res = Err(EngineError::Device("device lost (simulated)".into()));
                }
                match res {
                    Ok(p) => {
                        progress.set(p.fraction());
                        progress_text.set(if p.done {
                            format!("{} runs done", p.runs)
                        } else {
                            format!(
                                "{} runs ({} running), step {}/{}",
                                p.runs, p.live, p.step, p.steps
                            )
                        });
                        if p.done {
                            state.set(RunState::Done);
                            break;
                        }
                    }
                    // Device loss, out of GPU memory, or a size beyond the adapter's limits:
                    // the CPU engine takes over and the badge says why.
                    Err(e @ (EngineError::Device(_) | EngineError::Unsupported(_)))
                        if be.is_gpu() =>
                    {
                        let why = match e {
                            EngineError::Device(m) => format!("GPU failed mid-run: {m}"),
                            other => format!("too large for this GPU: {other}"),
                        };
                        note.set(Some(format!("{why}: the run was restarted on the CPU")));
                        choice.update(|c| {
                            c.use_gpu = false;
                            c.gpu_ready = false;
                            c.cpu_reason = Some(why);
                        });
                        be = backend::cpu_backend();
                        ran_on.set(be_name(&be, &ch));
                        match Experiment::new(&c) {
                            Ok(e) => exp = e,
                            Err(e) => {
                                state.set(RunState::Failed(e.to_string()));
                                break;
                            }
                        }
                        continue;
                    }
                    Err(e) => {
                        state.set(RunState::Failed(e.to_string()));
                        break;
                    }
                }
                // Aim for ~30 ms of work per chunk, then give the page a turn.
                let dt = util::now_ms() - t0;
                let (target, min_chunk) = if be.is_gpu() { (150.0, 64) } else { (30.0, 1) };
                chunk = if dt < 1e-3 {
                    chunk * 2
                } else {
                    ((chunk as f64) * (target / dt).clamp(0.5, 2.0)).round() as usize
                }
                .clamp(min_chunk, 10_000);
                if util::now_ms() - last_pub > 250.0 {
                    report.set(Some(Arc::new(exp.report())));
                    last_pub = util::now_ms();
                }
                util::yield_now().await;
            }
            backend::give_back(be);
            report.set(Some(Arc::new(exp.report())));
            let total = util::now_ms() - t_start;
            let _ = leptos::prelude::document()
                .get_element_by_id("lab")
                .map(|e| e.set_attribute("data-run-ms", &format!("{total:.1}")));
        });
    };

    let set_field = move |key: &'static str, v: String| {
        let mut c = cfg.get_untracked();
        match c.set(key, &v) {
            Ok(()) => {
                errors.update(|e| e.retain(|(k, _)| k != key));
                preset.set(None);
                cfg.set(c);
            }
            Err(e) => errors.update(|es| {
                es.retain(|(k, _)| k != key);
                es.push((key.to_string(), e.message));
            }),
        }
    };

    let field_view = move |key: &'static str, label: &'static str, f: &Field| {
        let id = format!("cfg-{key}");
        let err =
            move || errors.with(|es| es.iter().find(|(k, _)| k == key).map(|(_, m)| m.clone()));
        let input = match f {
            Field::Text(hint) => view! {
                <input type="text" id=id.clone() data-key=key placeholder=*hint
                    aria-invalid=move || err().is_some().to_string()
                    prop:value=move || cfg.with(|c| pair(c, key))
                    on:change=move |e| set_field(key, event_target_value(&e)) />
            }
            .into_any(),
            Field::Select(opts) => {
                let opts = *opts;
                view! {
                    <select id=id.clone() data-key=key
                        prop:value=move || cfg.with(|c| pair(c, key))
                        on:change=move |e| set_field(key, event_target_value(&e))>
                        {opts.iter().map(|o| view! { <option value=*o>{*o}</option> }).collect_view()}
                    </select>
                }
                .into_any()
            }
            Field::Bool => view! {
                <input type="checkbox" id=id.clone() data-key=key
                    prop:checked=move || cfg.with(|c| pair(c, key) == "true")
                    on:change=move |e| set_field(key, event_target_checked(&e).to_string()) />
            }
            .into_any(),
            Field::Inits => view! {
                <span class="inits" id=id.clone() role="group" aria-label="initialisations">
                    {InitKind::ALL.iter().map(|&k| {
                        view! {
                            <label>
                                <input type="checkbox"
                                    prop:checked=move || cfg.with(|c| c.inits.contains(&k))
                                    on:change=move |e| {
                                        let on = event_target_checked(&e);
                                        let mut list = cfg.with_untracked(|c| c.inits.clone());
                                        list.retain(|x| *x != k);
                                        if on { list.push(k); }
                                        list.sort_by_key(|x| InitKind::ALL.iter().position(|y| y == x));
                                        let s = list.iter().map(|x| x.name()).collect::<Vec<_>>().join(",");
                                        set_field("inits", s);
                                    } />
                                {format!(" {}", k.name())}
                            </label>
                        }
                    }).collect_view()}
                </span>
            }
            .into_any(),
        };
        view! {
            <div class="field" class:bad=move || err().is_some()>
                <label for=id>{label}</label>
                {input}
                {move || err().map(|m| view! { <span class="field-error" role="alert">{format!("{key}: {m}")}</span> })}
            </div>
        }
    };

    // Charts
    let c_risk = NodeRef::<Canvas>::new();
    let c_sin = NodeRef::<Canvas>::new();
    let c_sv = NodeRef::<Canvas>::new();
    let c_cost = NodeRef::<Canvas>::new();
    let width = RwSignal::new(460.0f64);
    let grid_ref = NodeRef::<leptos::html::Div>::new();
    let measure = move || {
        if let Some(g) = grid_ref.get_untracked() {
            let w = g.client_width() as f64;
            let cols = if w > 880.0 { 2.0 } else { 1.0 };
            width.set(
                ((w - 16.0 * (cols - 1.0)) / cols)
                    .floor()
                    .clamp(240.0, 900.0),
            );
        }
    };
    Effect::new(move |_| {
        if grid_ref.get().is_some() {
            measure();
        }
    });
    let rh = window_event_listener(leptos::ev::resize, move |_| measure());
    on_cleanup(move || rh.remove());

    Effect::new(move |_| {
        let r = report.get();
        let dk = dark.get();
        let w = width.get();
        let h = (w * 0.58).round();
        let Some(r) = r else { return };
        let font = if large { 16.0 } else { 12.0 };
        let lg = |v: f64| v.max(1e-30).log10();
        let mut risk = Vec::new();
        let mut sin = Vec::new();
        // The factored loss carries a constant that cancels as it converges: below ~ε of its
        // start (1e-15 in f64, 1e-6 in f32 on the GPU) it is rounding noise, drawn flat.
        let eps = if r.backend.precision == "f32" {
            1e-6
        } else {
            1e-15
        };
        let (ensemble, _) = crate::ensemble::colour_indices(&r);
        let styles = crate::style::report_styles(&r);
        // the chart's first metric bold with markers, its second thin and translucent, both in
        // the run's colour and line style
        let series = |i: usize, faint: bool, pts: Vec<(f64, f64)>, band: Vec<(f64, f64, f64)>| {
            let st = styles[i];
            Series {
                colour: st.colour,
                dash: st.dash,
                faint,
                marker: (!faint).then_some(st.marker),
                pts,
                band,
            }
        };
        if ensemble {
            // one median line and 10–90 % band per setting, over its init draws
            let floor = r
                .runs
                .iter()
                .filter_map(|x| x.records.first())
                .map(|x| x.loss.abs() * eps)
                .fold(1e-30, f64::max);
            type Metric<'a> = &'a dyn Fn(&crate::engine::Record) -> Option<f64>;
            let metrics: [(bool, bool, Metric); 4] = [
                (true, false, &|x| Some(lg(x.risk))),
                (true, true, &|x| Some(lg(x.loss.max(floor)))),
                (false, false, &|x| x.sin_a),
                (false, true, &|x| x.sin_b),
            ];
            for (to_risk, faint, f) in metrics {
                for b in crate::ensemble::bands(&r, f) {
                    let s = series(
                        b.first_run,
                        faint,
                        b.pts.iter().map(|p| (p.0, p.2)).collect(),
                        b.pts.iter().map(|p| (p.0, p.1, p.3)).collect(),
                    );
                    if to_risk {
                        risk.push(s);
                    } else {
                        sin.push(s);
                    }
                }
            }
        }
        for (i, run) in r.runs.iter().enumerate().filter(|_| !ensemble) {
            let floor = run
                .records
                .first()
                .map_or(1e-30, |x| x.loss.abs() * eps)
                .max(1e-30);
            let recs = &run.records;
            risk.push(series(
                i,
                false,
                recs.iter().map(|x| (x.step as f64, lg(x.risk))).collect(),
                Vec::new(),
            ));
            risk.push(series(
                i,
                true,
                recs.iter()
                    .map(|x| (x.step as f64, lg(x.loss.max(floor))))
                    .collect(),
                Vec::new(),
            ));
            sin.push(series(
                i,
                false,
                recs.iter()
                    .filter_map(|x| x.sin_a.map(|s| (x.step as f64, s)))
                    .collect(),
                Vec::new(),
            ));
            sin.push(series(
                i,
                true,
                recs.iter()
                    .filter_map(|x| x.sin_b.map(|s| (x.step as f64, s)))
                    .collect(),
                Vec::new(),
            ));
        }
        let draw = |nr: NodeRef<Canvas>,
                    f: &dyn Fn(&web_sys::HtmlCanvasElement, &ChartTheme),
                    n: usize| {
            if let Some(c) = nr.get_untracked() {
                let scale = util::size_canvas(&c, w, h);
                let th = ChartTheme {
                    dark: dk,
                    scale,
                    font,
                };
                f(&c, &th);
                let _ = c.set_attribute("data-points", &n.to_string());
            }
        };
        let count = |s: &[Series]| s.iter().map(|x| x.pts.len()).sum::<usize>();
        let (nr, ns) = (count(&risk), count(&sin));
        draw(
            c_risk,
            &|c, th| {
                let _ = lab_charts::line_chart(
                    c,
                    "step",
                    "log10 risk (bold), log10 loss (faint)",
                    &risk,
                    None,
                    th,
                );
            },
            nr,
        );
        draw(
            c_sin,
            &|c, th| {
                let _ = lab_charts::line_chart(
                    c,
                    "step",
                    "sin θ_A (bold), sin θ_B (faint)",
                    &sin,
                    Some((-0.02, 1.02)),
                    th,
                );
            },
            ns,
        );
        let nsv = r.problem.g_s.len()
            + r.runs
                .iter()
                .filter_map(|x| x.last())
                .map(|x| x.sv_ab.len())
                .sum::<usize>();
        draw(
            c_sv,
            &|c, th| {
                let _ = lab_charts::sv_chart(c, &r, th);
            },
            nsv,
        );
        draw(
            c_cost,
            &|c, th| {
                let _ = lab_charts::cost_chart(c, &r, th);
            },
            r.runs.len() * 2,
        );
    });

    let legend = move || {
        report.with(|r| {
            r.as_ref().map(|r| {
                let groups = crate::ensemble::groups(r);
                let ensemble = groups.iter().any(|(_, v)| v.len() > 1);
                let styles = crate::style::report_styles(r);
                let items: Vec<(usize, String)> = if ensemble {
                    groups
                        .iter()
                        .map(|(l, v)| {
                            (
                                v[0],
                                format!(" {l}: median of {} draws, 10–90 % band", v.len()),
                            )
                        })
                        .collect()
                } else {
                    r.runs
                        .iter()
                        .enumerate()
                        .map(|(i, run)| (i, format!(" {}", run.label)))
                        .collect()
                };
                items
                    .into_iter()
                    .map(|(i, text)| {
                        let st = styles[i];
                        view! {
                            <span class="legend-item">
                                <LineSwatch colour=st.colour dash=st.dash marker=st.marker />
                                {text}
                            </span>
                        }
                    })
                    .collect_view()
            })
        })
    };
    let summary = move |what: &'static str| {
        move || {
            report.with(|r| {
                let Some(r) = r.as_ref() else {
                    return format!("{what}: no run yet");
                };
                let mut s = format!("{what}. ");
                for run in &r.runs {
                    if let Some(l) = run.last() {
                        s.push_str(&format!(
                            "{}: step {}, risk {}, loss {}, sin θ_A {}, sin θ_B {}. ",
                            run.label,
                            l.step,
                            fmt(l.risk),
                            fmt(l.loss),
                            l.sin_a.map_or("n/a".into(), fmt),
                            l.sin_b.map_or("n/a".into(), fmt)
                        ));
                    }
                }
                s
            })
        }
    };
    let table = move || {
        report.with(|r| {
            r.as_ref().map(|r| {
                // an ensemble's draws share their setting's style
                let (ensemble, _) = crate::ensemble::colour_indices(r);
                let styles = crate::style::report_styles(r);
                r.runs
                    .iter()
                    .enumerate()
                    .map(|(i, run)| {
                        let l = run.last().cloned();
                        let name = if ensemble {
                            format!("{} · draw {}", run.label, run.draw)
                        } else {
                            run.label.clone()
                        };
                        view! {
                            <tr data-run=i data-records=run.records.len()>
                                <th scope="row"><LineSwatch colour=styles[i].colour dash=styles[i].dash marker=styles[i].marker />" " {name}</th>
                                <td>{l.as_ref().map_or(0, |l| l.step)}</td>
                                <td>{l.as_ref().map_or(String::new(), |l| fmt(l.risk))}</td>
                                <td>{l.as_ref().map_or(String::new(), |l| fmt(l.loss))}</td>
                                <td>{l.as_ref().and_then(|l| l.sin_a).map_or("n/a".into(), fmt)}</td>
                                <td>{l.as_ref().and_then(|l| l.sin_b).map_or("n/a".into(), fmt)}</td>
                                <td>{fmt(run.init_ms)}</td>
                                <td>{fmt(run.train_ms)}</td>
                                <td>{match (&run.diverged, run.stopped) {
                                    (Some(d), _) => format!("diverged at {}", d.step),
                                    (None, true) => "stopped".into(),
                                    _ => "ok".into(),
                                }}</td>
                            </tr>
                        }
                    })
                    .collect_view()
            })
        })
    };
    let cost_text = move || {
        report.with(|r| {
            r.as_ref().map_or(String::new(), |r| {
                format!(
                    "Σ̂ {} ms, form G {} ms, SVD {} ms (backend: {}, {})",
                    fmt(r.cost.sigma_ms),
                    fmt(r.cost.form_g_ms),
                    fmt(r.cost.svd_ms),
                    r.backend.name,
                    r.backend.precision
                )
            })
        })
    };

    let export_json = move |_| {
        if let Some(r) = report.get_untracked() {
            export::download_text(
                "lora-one-lab-run.json",
                "application/json",
                &export::report_json(&r),
            );
        }
    };
    let export_csv = move |_| {
        if let Some(r) = report.get_untracked() {
            export::download_text("lora-one-lab-run.csv", "text/csv", &export::report_csv(&r));
        }
    };
    let png = move |nr: NodeRef<Canvas>, name: &'static str| {
        move |_| {
            if let Some(c) = nr.get_untracked() {
                export::download_canvas_png(&c, name);
            }
        }
    };

    let chart = move |nr: NodeRef<Canvas>,
                      id: &'static str,
                      title: &'static str,
                      file: &'static str| {
        view! {
            <figure class="chart">
                <figcaption>
                    {title}
                    <button class="mini chrome" on:click=png(nr, file) aria-label=format!("Download {title} as PNG")>"PNG"</button>
                </figcaption>
                <canvas id=id node_ref=nr role="img" aria-label=summary(title)></canvas>
            </figure>
        }
    };

    view! {
        <section class="view lab" id="lab" aria-labelledby="lab-h" data-view="lab"
            data-state=move || state.with(|s| s.attr())>
            <h2 id="lab-h" class="chrome">"Dynamics lab"</h2>
            <div class="presets" role="group" aria-label="Presets">
                <span>"Presets: "</span>
                {Preset::ALL.iter().map(|&p| view! {
                    <button class="preset" data-preset=p.name()
                        aria-pressed=move || (preset.get() == Some(p)).to_string()
                        on:click=move |_| {
                            errors.set(Vec::new());
                            cfg.set(p.config());
                            preset.set(Some(p));
                            run();
                        }>{p.name()}</button>
                }).collect_view()}
            </div>
            <details class="params" open=true>
                <summary>"Parameters"</summary>
                <div class="fields">
                    {FIELDS.iter().map(|(k, l, f)| field_view(k, l, f)).collect_view()}
                </div>
            </details>
            <div class="runbar">
                <button id="run" on:click=move |_| run()
                    prop:disabled=move || valid.get().is_err() || state.get() == RunState::Running>"Run"</button>
                <button id="stop" on:click=move |_| stop.set_value(true)
                    prop:disabled=move || state.get() != RunState::Running>"Stop"</button>
                <progress id="progress" max="1" prop:value=move || progress.get()
                    aria-label="Progress"></progress>
                <span aria-live="polite" id="progress-text">{move || progress_text.get()}</span>
                <label class="compute" title="auto: a hardware GPU for batches above the measured GPU/CPU crossover, else the CPU engine (a software WebGPU adapter such as SwiftShader is slower than the CPU)">
                    "compute on "
                    <select id="compute" on:change=move |e| compute.set(Compute::parse(&event_target_value(&e)).unwrap_or_default())
                        prop:value=move || compute.get().key()>
                        <option value="auto">"the faster of GPU and CPU for this size"</option>
                        <option value="gpu">"GPU (WebGPU, f32) when available"</option>
                        <option value="cpu">"CPU reference (f64)"</option>
                    </select>
                </label>
                <span class="ran-on">{move || { let r = ran_on.get(); if r.is_empty() { r } else { format!("on {r}") } }}</span>
                {move || valid.get().err().map(|e| view! { <span class="field-error" role="alert">{e}</span> })}
                {move || match state.get() { RunState::Failed(e) => Some(view! { <span class="field-error" role="alert">{e}</span> }), _ => None }}
                {move || note.get().map(|n| view! { <span class="note" role="status">{n}</span> })}
            </div>
            <div class="legend-row">
                {legend}
                <span class="legend-item"><LineSwatch colour=GREY dash=Dash::Solid />" bold: risk / sin θ_A"</span>
                <span class="legend-item"><LineSwatch colour=GREY dash=Dash::Solid faint=true />" faint: loss / sin θ_B"</span>
            </div>
            <div class="charts" node_ref=grid_ref>
                {chart(c_risk, "chart-risk", "Risk and loss against step", "lora-one-risk.png")}
                {chart(c_sin, "chart-sin", "Alignment sin θ against step", "lora-one-alignment.png")}
                {chart(c_sv, "chart-sv", "Singular values of G and of A_tB_t", "lora-one-spectra.png")}
                {chart(c_cost, "chart-cost", "Cost: forming G + SVD against training", "lora-one-cost.png")}
            </div>
            <p class="cost-legend">
                <span class="legend-item"><LineSwatch colour=ORANGE dash=Dash::Solid />" init (form G + SVD + factors)"</span>
                <span class="legend-item"><LineSwatch colour=SKY dash=Dash::Solid />" training"</span>
                " " {cost_text}
            </p>
            <div class="table-wrap" tabindex="0" role="region" aria-label="Final values of each run (scrolls sideways)">
                <table class="runs" aria-label="Final values of each run">
                    <thead><tr><th>"run"</th><th>"step"</th><th>"risk"</th><th>"loss"</th><th>"sin θ_A"</th><th>"sin θ_B"</th><th>"init ms"</th><th>"train ms"</th><th>"status"</th></tr></thead>
                    <tbody>{table}</tbody>
                </table>
            </div>
            <div class="exports chrome" role="group" aria-label="Export">
                <button on:click=export_csv prop:disabled=move || report.with(|r| r.is_none())>"Runs as CSV"</button>
                <button on:click=export_json prop:disabled=move || report.with(|r| r.is_none())>"Runs as JSON"</button>
            </div>
            <LabExplain />
        </section>
    }
}

/// Run `cfg` on the CPU engine in the worker; false when the worker never became ready (the
/// caller then runs in the page). Publishes the report at most every 250 ms while running.
async fn run_in_worker(
    mut w: super::engine_worker::EngineWorker,
    cfg: Config,
    run_state: LabRun,
) -> bool {
    use crate::worker::{FromWorker, ToWorker};
    let LabRun {
        report,
        state,
        progress,
        progress_text,
        stop,
        ran_on,
        ..
    } = run_state;
    let t_start = util::now_ms();
    // wait for the module to load in the worker (messages sent before would be lost)
    while !w.ready && util::now_ms() - t_start < 20_000.0 {
        for m in w.drain() {
            match m {
                FromWorker::Ready => w.ready = true,
                FromWorker::Failed(_) => return false,
                _ => {}
            }
        }
        if !w.ready {
            util::sleep_ms(10).await;
        }
    }
    if !w.ready {
        return false;
    }
    ran_on.set("CPU engine in a Web Worker (nalgebra, f64)".into());
    w.post(&ToWorker::Run(Box::new(cfg)));
    let mut acc: Option<Report> = None;
    let mut last_pub = util::now_ms();
    let mut stop_sent = false;
    let mut dirty = false;
    let mut engine_ms = 0.0;
    loop {
        let mut finished = None;
        for m in w.drain() {
            match super::engine_worker::fold(&mut acc, m) {
                Ok(Some(f)) => {
                    dirty = true;
                    engine_ms = f.engine_ms;
                    progress.set(f.fraction);
                    progress_text.set(f.text);
                    if f.finished {
                        finished = Some(if f.stopped {
                            RunState::Stopped
                        } else {
                            RunState::Done
                        });
                    }
                }
                Ok(None) => {}
                Err(e) => finished = Some(RunState::Failed(e)),
            }
        }
        if dirty && (finished.is_some() || util::now_ms() - last_pub > 250.0) {
            if let Some(r) = &acc {
                report.set(Some(Arc::new(r.clone())));
            }
            last_pub = util::now_ms();
            dirty = false;
        }
        if let Some(st) = finished {
            let total = util::now_ms() - t_start;
            if let Some(e) = leptos::prelude::document().get_element_by_id("lab") {
                let _ = e.set_attribute("data-run-ms", &format!("{total:.1}"));
                let _ = e.set_attribute("data-engine-ms", &format!("{engine_ms:.1}"));
            }
            // an idle worker serves the next run (a failed one is dropped, which ends it)
            if !matches!(st, RunState::Failed(_)) {
                super::engine_worker::give_back(w);
            }
            state.set(st);
            return true;
        }
        // The view closed (its signals disposed) counts as Stop.
        if !stop_sent && stop.try_get_value().unwrap_or(true) {
            w.post(&ToWorker::Stop);
            stop_sent = true;
        }
        util::sleep_ms(20).await;
    }
}

fn be_name(be: &AppBackend, ch: &BackendChoice) -> String {
    use crate::engine::Backend;
    let i = be.info();
    match (&ch.gpu, be.is_gpu()) {
        (backend::GpuStatus::WebGpu { adapter, .. }, true) => {
            format!("WebGPU: {adapter} ({})", i.precision)
        }
        _ => format!("{} ({})", i.name, i.precision),
    }
}
