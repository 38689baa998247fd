//! The CPU engine in a dedicated Web Worker (`www/worker.js` loads this same wasm module there and
//! calls [`worker_start`]), so that a long CPU run never blocks the page: the page posts a
//! configuration, the worker runs the experiment in chunks and posts what is new after each one
//! (progress, the report's small head, the records recorded since the last post); the page posts
//! Stop, which the worker sees between chunks.
//!
//! Messages are JSON strings ([`ToWorker`], [`FromWorker`]); the page keeps the report and appends
//! the records ([`apply`], tested natively).

use crate::config::Config;
use crate::engine::{Experiment, Progress, Record, Report};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum ToWorker {
    Run(Box<Config>),
    Stop,
    /// Run a small experiment silently, so that the engine's code is compiled to optimised
    /// machine code before the visitor's first run; answered by `Warmed`.
    Warm,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProgressMsg {
    pub live: usize,
    pub runs: usize,
    pub step: usize,
    pub steps: usize,
    pub done: bool,
}

impl From<Progress> for ProgressMsg {
    fn from(p: Progress) -> Self {
        ProgressMsg {
            live: p.live,
            runs: p.runs,
            step: p.step,
            steps: p.steps,
            done: p.done,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum FromWorker {
    Ready,
    Warmed,
    /// What is new since the last update: `head` is the report without records (small), `new`
    /// the records of each run since the last update.
    Update {
        progress: ProgressMsg,
        head: Box<Report>,
        new: Vec<Vec<Record>>,
        stopped: bool,
        /// Milliseconds spent in the engine so far (the worker's own time, startup excluded).
        engine_ms: f64,
    },
    Failed(String),
}

/// Fold an update into the page's copy of the report.
pub fn apply(acc: &mut Option<Report>, head: Report, new: Vec<Vec<Record>>) {
    let mut old = acc.take().map(|r| r.runs).unwrap_or_default();
    let mut rep = head;
    for (i, (run, recs)) in rep.runs.iter_mut().zip(new).enumerate() {
        let mut records = if i < old.len() {
            std::mem::take(&mut old[i].records)
        } else {
            Vec::new()
        };
        records.extend(recs);
        run.records = records;
    }
    *acc = Some(rep);
}

/// The head of a report and the records of each run from `sent[i]` on (and advance `sent`).
pub fn update_of(exp: &Experiment, sent: &mut Vec<usize>) -> (Report, Vec<Vec<Record>>) {
    let mut rep = exp.report();
    sent.resize(rep.runs.len(), 0);
    let new = rep
        .runs
        .iter_mut()
        .zip(sent.iter_mut())
        .map(|(run, s)| {
            let recs = std::mem::take(&mut run.records);
            let out = recs[(*s).min(recs.len())..].to_vec();
            *s = recs.len();
            out
        })
        .collect();
    (rep, new)
}

#[cfg(all(feature = "web", target_arch = "wasm32"))]
mod in_worker {
    use super::*;
    use crate::CpuBackend;
    use std::cell::Cell;
    use std::rc::Rc;
    use wasm_bindgen::prelude::*;
    use wasm_bindgen::JsCast;
    use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

    fn post(scope: &DedicatedWorkerGlobalScope, m: &FromWorker) {
        if let Ok(s) = serde_json::to_string(m) {
            let _ = scope.post_message(&JsValue::from_str(&s));
        }
    }

    /// A macrotask turn, so that a Stop message posted by the page is delivered between chunks.
    async fn turn(scope: &DedicatedWorkerGlobalScope) {
        let p = js_sys::Promise::new(&mut |res, _| {
            let _ = scope.set_timeout_with_callback_and_timeout_and_arguments_0(&res, 0);
        });
        let _ = wasm_bindgen_futures::JsFuture::from(p).await;
    }

    async fn run(scope: DedicatedWorkerGlobalScope, cfg: Config, stop: Rc<Cell<bool>>) {
        let mut exp = match Experiment::new(&cfg) {
            Ok(e) => e,
            Err(e) => return post(&scope, &FromWorker::Failed(e.to_string())),
        };
        let mut be = CpuBackend::new();
        let mut sent = Vec::new();
        let mut chunk = 4usize;
        let mut last_post = js_sys::Date::now();
        let mut engine_ms = 0.0;
        loop {
            if stop.get() {
                exp.stop();
                let (head, new) = update_of(&exp, &mut sent);
                return post(
                    &scope,
                    &FromWorker::Update {
                        progress: exp.progress().into(),
                        head: Box::new(head),
                        new,
                        stopped: true,
                        engine_ms,
                    },
                );
            }
            let t0 = js_sys::Date::now();
            let p = match exp.step(&mut be, chunk).await {
                Ok(p) => p,
                Err(e) => return post(&scope, &FromWorker::Failed(e.to_string())),
            };
            // ~50 ms of work per chunk (the worker blocks nothing but its own messages)
            let dt = js_sys::Date::now() - t0;
            engine_ms += dt;
            chunk = if dt < 1e-3 {
                chunk * 2
            } else {
                ((chunk as f64) * (50.0 / dt).clamp(0.5, 2.0)).round() as usize
            }
            .clamp(1, 100_000);
            let now = js_sys::Date::now();
            if p.done || now - last_post > 200.0 {
                let (head, new) = update_of(&exp, &mut sent);
                post(
                    &scope,
                    &FromWorker::Update {
                        progress: p.into(),
                        head: Box::new(head),
                        new,
                        stopped: false,
                        engine_ms,
                    },
                );
                last_post = now;
            }
            if p.done {
                return;
            }
            turn(&scope).await;
        }
    }

    /// A few hundred ms of the engine's hot loops (a small ensemble), nothing posted but `Warmed`.
    async fn warm(scope: DedicatedWorkerGlobalScope) {
        let mut c = crate::config::Preset::Alignment.config();
        c.d = 48;
        c.k = 48;
        c.steps = 300;
        c.record_every = 5;
        if let Ok(mut exp) = Experiment::new(&c) {
            let mut be = CpuBackend::new();
            while let Ok(p) = exp.step(&mut be, 50).await {
                if p.done {
                    break;
                }
                turn(&scope).await;
            }
        }
        post(&scope, &FromWorker::Warmed);
    }

    /// Entry point of `www/worker.js`.
    #[wasm_bindgen]
    pub fn worker_start() {
        console_error_panic_hook::set_once();
        let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
        let stop = Rc::new(Cell::new(false));
        let s2 = scope.clone();
        let on_msg = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let Some(text) = e.data().as_string() else {
                return;
            };
            match serde_json::from_str::<ToWorker>(&text) {
                Ok(ToWorker::Run(cfg)) => {
                    stop.set(false);
                    wasm_bindgen_futures::spawn_local(run(s2.clone(), *cfg, stop.clone()));
                }
                Ok(ToWorker::Stop) => stop.set(true),
                Ok(ToWorker::Warm) => wasm_bindgen_futures::spawn_local(warm(s2.clone())),
                Err(e) => post(&s2, &FromWorker::Failed(format!("bad message: {e}"))),
            }
        });
        scope.set_onmessage(Some(on_msg.as_ref().unchecked_ref()));
        on_msg.forget();
        post(&scope, &FromWorker::Ready);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;
    use crate::CpuBackend;

    #[test]
    fn updates_rebuild_the_report_exactly() {
        let mut c = Preset::Spectral.config();
        c.d = 20;
        c.k = 16;
        c.r = 2;
        c.r_star = 2;
        c.steps = 30;
        let mut exp = Experiment::new(&c).unwrap();
        let mut be = CpuBackend::new();
        let mut sent = Vec::new();
        let mut acc = None;
        loop {
            let p = pollster::block_on(exp.step(&mut be, 7)).unwrap();
            // through JSON, as the messages travel
            let (head, new) = update_of(&exp, &mut sent);
            let msg = FromWorker::Update {
                progress: p.into(),
                head: Box::new(head),
                new,
                stopped: false,
                engine_ms: 1.0,
            };
            let back: FromWorker =
                serde_json::from_str(&serde_json::to_string(&msg).unwrap()).unwrap();
            let FromWorker::Update { head, new, .. } = back else {
                unreachable!()
            };
            apply(&mut acc, *head, new);
            if p.done {
                break;
            }
        }
        assert_eq!(acc.unwrap(), exp.report());
        let m = ToWorker::Run(Box::new(c));
        assert_eq!(
            serde_json::from_str::<ToWorker>(&serde_json::to_string(&m).unwrap()).unwrap(),
            m
        );
    }
}
