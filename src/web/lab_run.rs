//! Running the lab's configuration: on the GPU backend when chosen, else on the CPU engine in a
//! Web Worker (in the page where no worker starts), in chunks with progress and Stop; a GPU that
//! fails or refuses the size hands over to the CPU with the reason on the badge.

use super::backend::{self, AppBackend, BackendChoice, Compute};
use super::lab_view::{LabRun, RunState};
use super::util;
use crate::config::Config;
use crate::engine::{EngineError, Experiment, Report};
use leptos::prelude::*;
use leptos::task::spawn_local;
use std::sync::Arc;

/// Start a run of `cfg` (ignored while one is running).
pub fn start(cfg: Config, choice: RwSignal<BackendChoice>, compute: Compute, run_state: LabRun) {
    let LabRun {
        report,
        state,
        progress,
        progress_text,
        note,
        stop,
        ran_on,
    } = run_state;
    if state.get_untracked() == RunState::Running {
        return;
    }
    let c = cfg;
    if let Err(e) = c.validate() {
        state.set(RunState::Failed(e.to_string()));
        return;
    }
    stop.set_value(false);
    state.set(RunState::Running);
    progress.set(0.0);
    note.set(None);
    spawn_local(async move {
        let ch = super::backend::settled(choice).await;
        let (use_gpu, cpu_why) = ch.for_run(compute, &c);
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
                Err(e @ (EngineError::Device(_) | EngineError::Unsupported(_))) if be.is_gpu() => {
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
