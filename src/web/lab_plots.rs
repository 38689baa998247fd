//! The lab's charts: log-risk and loss, the alignment sines, the singular values and the cost
//! split, each a canvas with a PNG export and a text alternative that states the values.

use super::controls::LineSwatch;
use super::export;
use super::lab_charts::{self, ChartTheme, Series};
use super::palette::{Dash, GREY, ORANGE, SKY};
use super::util::{self, fmt};
use crate::engine::Report;
use leptos::html::Canvas;
use leptos::prelude::*;
use std::sync::Arc;

/// The legend, the four charts and the cost line of the lab's report.
#[component]
pub fn LabCharts(
    report: RwSignal<Option<Arc<Report>>>,
    dark: RwSignal<bool>,
    large: bool,
) -> impl IntoView {
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
            // vanilla: the linearised (power-iteration) prediction from the same A0, dotted
            let lin: Vec<(f64, f64)> = recs
                .iter()
                .filter_map(|x| x.lin_sin_a.map(|s| (x.step as f64, s)))
                .collect();
            if !lin.is_empty() {
                sin.push(Series {
                    colour: styles[i].colour,
                    dash: Dash::Dotted,
                    faint: false,
                    marker: None,
                    pts: lin,
                    band: Vec::new(),
                });
            }
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
        // points of the linearised predictions (dotted), for tests and the curious
        let nlin: usize = sin
            .iter()
            .filter(|x| x.dash == Dash::Dotted)
            .map(|x| x.pts.len())
            .sum();
        if let Some(c) = c_sin.get_untracked() {
            let _ = c.set_attribute("data-linear", &nlin.to_string());
        }
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
        <div class="legend-row">
            {legend}
            <span class="legend-item"><LineSwatch colour=GREY dash=Dash::Solid />" bold: risk / sin θ_A"</span>
            <span class="legend-item"><LineSwatch colour=GREY dash=Dash::Solid faint=true />" faint: loss / sin θ_B"</span>
            {move || report.with(|r| r.as_ref().is_some_and(|r| r.runs.iter().any(|x| x.records.iter().any(|y| y.lin_sin_a.is_some()))).then(|| view! {
                <span class="legend-item" title="GD near the saddle is a power iteration on [[I, ηG], [ηGᵀ, I]]; where the dotted line leaves the run's own, the nonlinear term has taken over">
                    <LineSwatch colour=GREY dash=Dash::Dotted />" dotted: linearised prediction of sin θ_A (vanilla)"
                </span>
            }))}
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
    }
}
