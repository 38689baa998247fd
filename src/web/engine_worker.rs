//! The page's side of the CPU engine's Web Worker (`crate::worker`): start it, post a run, fold
//! its updates into a report, stop it. A browser that cannot start the worker (no module
//! workers) gets `None` and the lab runs the CPU engine in the page as before.
//!
//! One worker is started when the page has settled ([`prewarm`]) and warmed up on a small
//! experiment, so that a visitor's first CPU run does not pay for loading the module and for the
//! engine's code running unoptimised; it is lent to each run and given back when the run ends.

use crate::engine::Report;
use crate::worker::{apply, FromWorker, ToWorker};
use futures_channel::mpsc::{unbounded, UnboundedReceiver};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{MessageEvent, Worker, WorkerOptions, WorkerType};

pub struct EngineWorker {
    worker: Worker,
    /// The module has loaded in the worker (its `Ready` was seen).
    pub ready: bool,
    rx: UnboundedReceiver<FromWorker>,
    _on_msg: Closure<dyn FnMut(MessageEvent)>,
    _on_err: Closure<dyn FnMut(JsValue)>,
}

impl EngineWorker {
    /// Start `worker.js` (beside the page) as a module worker.
    pub fn start() -> Option<Self> {
        let opts = WorkerOptions::new();
        opts.set_type(WorkerType::Module);
        let worker = Worker::new_with_options("./worker.js", &opts).ok()?;
        let (tx, rx) = unbounded();
        let tx2 = tx.clone();
        let on_msg = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let m = e
                .data()
                .as_string()
                .and_then(|s| serde_json::from_str::<FromWorker>(&s).ok())
                .unwrap_or_else(|| FromWorker::Failed("unreadable message from the worker".into()));
            let _ = tx.unbounded_send(m);
        });
        let on_err = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
            let msg = js_sys::Reflect::get(&e, &"message".into())
                .ok()
                .and_then(|m| m.as_string())
                .unwrap_or_else(|| "the engine worker failed".into());
            let _ = tx2.unbounded_send(FromWorker::Failed(msg));
        });
        worker.set_onmessage(Some(on_msg.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_err.as_ref().unchecked_ref()));
        Some(EngineWorker {
            worker,
            ready: false,
            rx,
            _on_msg: on_msg,
            _on_err: on_err,
        })
    }

    pub fn post(&self, m: &ToWorker) {
        if let Ok(s) = serde_json::to_string(m) {
            let _ = self.worker.post_message(&JsValue::from_str(&s));
        }
    }

    /// Every message received so far.
    pub fn drain(&mut self) -> Vec<FromWorker> {
        let mut out = Vec::new();
        while let Ok(m) = self.rx.try_recv() {
            out.push(m);
        }
        out
    }
}

thread_local! {
    /// The idle engine worker, if any.
    static POOL: std::cell::RefCell<Option<EngineWorker>> = const { std::cell::RefCell::new(None) };
}

/// The idle worker (started now if there is none); None where workers cannot start.
pub fn take() -> Option<EngineWorker> {
    POOL.with(|p| p.borrow_mut().take())
        .or_else(EngineWorker::start)
}

/// Give an idle worker back for the next run.
pub fn give_back(w: EngineWorker) {
    POOL.with(|p| *p.borrow_mut() = Some(w));
}

/// Start the worker and warm it up in the background (call once the page has drawn).
pub fn prewarm() {
    if POOL.with(|p| p.borrow().is_some()) {
        return;
    }
    let Some(w) = EngineWorker::start() else {
        return;
    };
    give_back(w);
    leptos::task::spawn_local(async {
        // wait for the module to load; a run that takes the worker first ends the warm-up
        for _ in 0..2000 {
            let done = POOL.with(|p| match p.borrow_mut().as_mut() {
                None => true,
                Some(w) => {
                    if w.drain().contains(&FromWorker::Ready) {
                        w.ready = true;
                        w.post(&ToWorker::Warm);
                        true
                    } else {
                        false
                    }
                }
            });
            if done {
                return;
            }
            super::util::sleep_ms(10).await;
        }
    });
}

impl Drop for EngineWorker {
    fn drop(&mut self) {
        self.worker.terminate();
    }
}

/// What an update says beside its records.
pub struct Folded {
    pub fraction: f64,
    pub text: String,
    pub finished: bool,
    pub stopped: bool,
    pub engine_ms: f64,
}

/// Fold one message into the page's report (None for messages that carry no update).
pub fn fold(acc: &mut Option<Report>, m: FromWorker) -> Result<Option<Folded>, String> {
    match m {
        FromWorker::Ready | FromWorker::Warmed => Ok(None),
        FromWorker::Failed(e) => Err(e),
        FromWorker::Update {
            progress: p,
            head,
            new,
            stopped,
            engine_ms,
        } => {
            apply(acc, *head, new);
            let frac = if p.runs == 0 {
                1.0
            } else {
                (p.step as f64 / p.steps.max(1) as f64).min(1.0)
            };
            let text = if stopped {
                format!("stopped at step {}/{}", p.step, p.steps)
            } else if p.done {
                format!("{} runs done", p.runs)
            } else {
                format!(
                    "{} runs ({} running), step {}/{}",
                    p.runs, p.live, p.step, p.steps
                )
            };
            Ok(Some(Folded {
                fraction: frac,
                text,
                finished: p.done || stopped,
                stopped,
                engine_ms,
            }))
        }
    }
}
