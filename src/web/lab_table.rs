//! The lab's table of each run's final values, and the run exports (CSV, JSON in the CLI's
//! schema).

use super::controls::LineSwatch;
use super::export;
use super::util::fmt;
use crate::engine::Report;
use leptos::prelude::*;
use std::sync::Arc;

/// Final values of each run (scrolls sideways on a phone).
#[component]
pub fn RunsTable(report: RwSignal<Option<Arc<Report>>>) -> impl IntoView {
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

    view! {
        <div class="table-wrap" tabindex="0" role="region" aria-label="Final values of each run (scrolls sideways)">
            <table class="runs" aria-label="Final values of each run">
                <thead><tr><th>"run"</th><th>"step"</th><th>"risk"</th><th>"loss"</th><th>"sin θ_A"</th><th>"sin θ_B"</th><th>"init ms"</th><th>"train ms"</th><th>"status"</th></tr></thead>
                <tbody>{table}</tbody>
            </table>
        </div>
    }
}

/// Download the runs as CSV or JSON.
#[component]
pub fn RunExports(report: RwSignal<Option<Arc<Report>>>) -> impl IntoView {
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

    view! {
        <div class="exports chrome" role="group" aria-label="Export">
            <button on:click=export_csv prop:disabled=move || report.with(|r| r.is_none())>"Runs as CSV"</button>
            <button on:click=export_json prop:disabled=move || report.with(|r| r.is_none())>"Runs as JSON"</button>
        </div>
    }
}
