//! View "Dynamics lab": the presets, the parameter form (`lab_params`), the run bar, the charts
//! (`lab_plots`), the table and exports (`lab_table`); runs are driven by `lab_run`.

use super::backend::{BackendChoice, Compute};
use super::explain::LabExplain;
use super::lab_params::LabParams;
use super::lab_plots::LabCharts;
use super::lab_run;
use super::lab_table::{RunExports, RunsTable};
use crate::config::{Config, Preset};
use crate::engine::Report;
use leptos::prelude::*;
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
    pub fn attr(&self) -> &'static str {
        match self {
            RunState::Idle => "idle",
            RunState::Running => "running",
            RunState::Done => "done",
            RunState::Stopped => "stopped",
            RunState::Failed(_) => "failed",
        }
    }
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
        lab_run::start(
            cfg.get_untracked(),
            choice,
            compute.get_untracked(),
            run_state,
        )
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
            <LabParams cfg=cfg preset=preset errors=errors />
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
            <LabCharts report=report dark=dark large=large />
            <RunsTable report=report />
            <RunExports report=report />
            <LabExplain />
        </section>
    }
}
