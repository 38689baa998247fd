//! The lab's parameter form: every engine field, each validated as it is typed, with an error
//! that names the field.

use crate::config::{Config, InitKind, Preset};
use leptos::prelude::*;

pub enum Field {
    Text(&'static str),
    Select(&'static [&'static str]),
    Bool,
    Inits,
}

pub const FIELDS: [(&str, &str, Field); 27] = [
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

/// The form (a collapsible `details`); a bad value stays in `errors` next to its field.
#[component]
pub fn LabParams(
    cfg: RwSignal<Config>,
    preset: RwSignal<Option<Preset>>,
    errors: RwSignal<Vec<(String, String)>>,
) -> impl IntoView {
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
                    {InitKind::EVERY.iter().map(|&k| {
                        view! {
                            <label>
                                <input type="checkbox"
                                    prop:checked=move || cfg.with(|c| c.inits.contains(&k))
                                    on:change=move |e| {
                                        let on = event_target_checked(&e);
                                        let mut list = cfg.with_untracked(|c| c.inits.clone());
                                        list.retain(|x| *x != k);
                                        if on { list.push(k); }
                                        list.sort_by_key(|x| InitKind::EVERY.iter().position(|y| y == x));
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

    view! {
        <details class="params" open=true>
            <summary>"Parameters"</summary>
            <div class="fields">
                {FIELDS.iter().map(|(k, l, f)| field_view(k, l, f)).collect_view()}
            </div>
        </details>
    }
}
