//! The Leptos web app (wasm32, feature `web`): two views, a GPU status badge, URL state, embed
//! mode for slides. Started from `index.html` by calling the exported `start_app`.

pub mod backend;
pub mod controls;
pub mod digits_view;
pub mod engine_worker;
pub mod explain;
pub mod export;
pub mod lab_charts;
pub mod lab_params;
pub mod lab_plots;
pub mod lab_run;
pub mod lab_table;
pub mod lab_view;
pub mod palette;
pub mod phase_draw;
pub mod phase_model;
pub mod phase_view;
pub mod sweep_view;
pub mod toy_view;
pub mod url;
pub mod util;

pub use backend::{BackendChoice, Compute};
use digits_view::DigitsView;
use lab_view::LabView;
use leptos::prelude::*;
use leptos::task::spawn_local;
use phase_view::{PageOpts, PhaseView};
use sweep_view::SweepView;
use toy_view::ToyView;
use wasm_bindgen::prelude::*;

pub use crate::urlstate::{parse_state, state_pairs, UrlState, View};

/// Whether this bundle holds the phase portrait and the dynamics lab (see `bundle-*` in
/// Cargo.toml: dist/ ships `app` and `studies`; `web` alone holds every view).
pub const HAS_APP_VIEWS: bool = cfg!(feature = "bundle-app") || !cfg!(feature = "bundle-studies");
/// Whether this bundle holds the sweeps and the Fig. 3 toy.
pub const HAS_STUDY_VIEWS: bool = cfg!(feature = "bundle-studies") || !cfg!(feature = "bundle-app");

/// Whether a view is in this bundle (otherwise showing it loads the page of the other bundle,
/// with the whole state in the URL).
pub fn in_bundle(v: View) -> bool {
    match v {
        View::Phase | View::Lab => HAS_APP_VIEWS,
        View::Sweep | View::Toy | View::Digits => HAS_STUDY_VIEWS,
    }
}

/// The bundle (`<name>.js` and `<name>_bg.wasm` in dist/) that shows a view; index.html makes
/// the same choice.
pub fn bundle_of(v: View) -> &'static str {
    match v {
        View::Phase | View::Lab => "app",
        View::Sweep | View::Toy | View::Digits => "studies",
    }
}

/// Entry point, called by index.html after the module is initialised.
#[wasm_bindgen]
pub fn start_app() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}

#[component]
pub fn App() -> impl IntoView {
    let query = url::read_query();
    let init = parse_state(&query);
    if query
        .iter()
        .any(|(k, v)| k == "simulate" && v == "device-loss")
    {
        backend::set_simulated_loss(true);
    }
    let opts = init.opts;
    let view_sig = RwSignal::new(init.view);
    let phase = RwSignal::new(init.phase.clone());
    let lab = RwSignal::new(init.lab.clone());
    let sweep = RwSignal::new(init.sweep.clone());
    let toy = RwSignal::new(init.toy.clone());
    let digits = RwSignal::new(init.digits.clone());
    let preset = RwSignal::new(init.preset);
    let compute = RwSignal::new(init.compute);
    let lab_run = lab_view::LabRun::new();
    let url_errors = RwSignal::new(init.errors.clone());
    let choice = RwSignal::new(BackendChoice::probing());
    let dark = RwSignal::new(util::prefers_dark());
    let copied = RwSignal::new(false);

    spawn_local(async move {
        // Let the first chart paint before the GPU pipelines are compiled.
        util::next_frame().await;
        util::next_frame().await;
        let c = backend::choose().await;
        choice.set(c);
        // the CPU engine's worker (the lab's), loaded and warmed up while the visitor looks around
        if HAS_APP_VIEWS {
            engine_worker::prewarm();
        }
    });
    // Follow the system theme.
    if let Ok(Some(mq)) = window().match_media("(prefers-color-scheme: dark)") {
        let mq2 = mq.clone();
        let cb = Closure::<dyn FnMut()>::new(move || dark.set(mq2.matches()));
        mq.set_onchange(Some(cb.as_ref().unchecked_ref()));
        cb.forget();
    }
    deck_keys(opts.embed);
    // URL state: replaced (never pushed) on every change.
    Effect::new(move |_| {
        let pairs = state_pairs(&UrlState {
            view: view_sig.get(),
            opts,
            phase: phase.get(),
            lab: lab.get(),
            sweep: sweep.get(),
            toy: toy.get(),
            digits: digits.get(),
            preset: preset.get(),
            compute: compute.get(),
            errors: vec![],
        });
        if in_bundle(view_sig.get()) {
            url::replace_query(&pairs);
        } else {
            // the other bundle's page, with the whole state in its URL
            let _ = window()
                .location()
                .assign(&format!("?{}", url::to_query(&pairs)));
        }
    });
    if let Some(body) = document().body() {
        let mut cls = Vec::new();
        if opts.embed {
            cls.push("embed");
        }
        if opts.large {
            cls.push("large");
        }
        let _ = body.set_attribute("class", &cls.join(" "));
    }

    let copy_link = move |_| {
        let href = url::current_url();
        let p = window().navigator().clipboard().write_text(&href);
        spawn_local(async move {
            let ok = wasm_bindgen_futures::JsFuture::from(p).await.is_ok();
            copied.set(ok);
        });
    };
    let embed_snippet = move || {
        let pairs = state_pairs(&UrlState {
            view: view_sig.get(),
            opts: PageOpts {
                embed: true,
                large: true,
                autoplay: true,
            },
            phase: phase.get(),
            lab: lab.get(),
            sweep: sweep.get(),
            toy: toy.get(),
            digits: digits.get(),
            preset: preset.get(),
            compute: compute.get(),
            errors: vec![],
        });
        // reveal.js: data-src + data-preload, and `Reveal.initialize({ postMessage: true })` so
        // a clicker's PageDown/PageUp pressed inside the demo reach the deck
        format!(
            "<iframe data-src=\"{}?{}\" data-preload width=\"960\" height=\"700\" style=\"border:0\" title=\"LoRA-One Lab\"></iframe>\n<!-- in the deck: Reveal.initialize({{ postMessage: true }}) -->",
            url::base_url(),
            url::to_query(&pairs)
        )
    };

    let badge = move || {
        choice.with(|c| {
            view! {
                <span id="gpu-badge" class="badge" role="status"
                    data-webgpu=c.webgpu_attr()
                    data-backend=if c.use_gpu { "gpu" } else { "cpu" }
                    data-adapter=match &c.gpu { backend::GpuStatus::WebGpu { adapter, .. } => adapter.clone(), _ => String::new() }
                    title=c.badge()
                    class:gpu=c.use_gpu>
                    {short_badge(&c.badge())}
                </span>
            }
        })
    };
    let tab = move |v: View, label: &'static str| {
        view! {
            <button role="tab" class="tab" id=format!("tab-{}", v.key())
                aria-selected=move || (view_sig.get() == v).to_string()
                on:click=move |_| view_sig.set(v)>{label}</button>
        }
    };

    view! {
        <div class="app" data-embed=opts.embed.to_string()>
            <Show when=move || !opts.embed>
                <header class="top">
                    <h1>"LoRA-One Lab"</h1>
                    <nav role="tablist" aria-label="Views">
                        {tab(View::Phase, "Phase portrait")}
                        {tab(View::Lab, "Dynamics lab")}
                        {tab(View::Sweep, "Sweeps")}
                        {tab(View::Toy, "Fig. 3 toy")}
                        {tab(View::Digits, "Digits")}
                    </nav>
                    {badge}
                    <button id="copy-link" on:click=copy_link>
                        {move || if copied.get() { "Link copied" } else { "Copy link" }}
                    </button>
                </header>
            </Show>
            {move || (!url_errors.get().is_empty()).then(|| view! {
                <p class="error" role="alert">{format!("Ignored URL parameters: {}", url_errors.get().join("; "))}</p>
            })}
            <main>
                {move || match view_sig.get() {
                    v if !in_bundle(v) => view! { <p class="loading" role="status">"Loading…"</p> }.into_any(),
                    View::Phase => view! { <PhaseView params=phase opts=opts dark=dark /> }.into_any(),
                    View::Lab => view! { <LabView cfg=lab preset=preset choice=choice compute=compute dark=dark large=opts.large run_state=lab_run /> }.into_any(),
                    View::Sweep => view! { <SweepView params=sweep choice=choice compute=compute dark=dark large=opts.large lab=lab lab_preset=preset view=view_sig /> }.into_any(),
                    View::Toy => view! { <ToyView params=toy dark=dark large=opts.large embed=opts.embed /> }.into_any(),
                    View::Digits => view! { <DigitsView params=digits choice=choice compute=compute dark=dark large=opts.large /> }.into_any(),
                }}
            </main>
            <Show when=move || opts.embed>
                <div class="embed-badge">{badge}</div>
            </Show>
            <Show when=move || !opts.embed>
                <footer>
                    <details>
                        <summary>"Embed this view in slides"</summary>
                        <p>"Paste into a reveal.js slide (960×700; large type and autoplay on; it restarts on slide:start; keys: space . r 1 2 3):"</p>
                        <textarea id="embed-snippet" readonly rows="3" aria-label="Embed snippet">{embed_snippet}</textarea>
                    </details>
                    <p class="small">"LoRA-One (Zhang, Liu, Chen; ICML 2025) · computed in your browser · "
                        <a href="?view=phase">"phase portrait"</a> " · " <a href="?view=lab&preset=spectral">"spectral preset"</a>
                    </p>
                </footer>
            </Show>
        </div>
    }
}

/// In a deck (reveal.js with `postMessage: true`), the keys a presenter's clicker sends go on to
/// the deck, in every view, unless the demo uses them: form fields use all of them, and outside
/// embed mode a focused canvas uses the arrows (the phase plot moves its start, the 3-D toy
/// turns). Registered before the views' own listeners, which skip a key it has taken
/// (`defaultPrevented`).
fn deck_keys(embed: bool) {
    let kh = window_event_listener(leptos::ev::keydown, move |e: web_sys::KeyboardEvent| {
        let tag = e
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .map(|el| el.tag_name().to_ascii_lowercase())
            .unwrap_or_default();
        let deck = match e.key().as_str() {
            "PageDown" => Some("next"),
            "PageUp" => Some("prev"),
            "ArrowRight" | "ArrowDown" if embed || tag != "canvas" => Some("next"),
            "ArrowLeft" | "ArrowUp" if embed || tag != "canvas" => Some("prev"),
            _ => None,
        };
        let field = matches!(tag.as_str(), "input" | "select" | "textarea");
        if let (Some(method), false) = (deck, field) {
            if let Ok(Some(parent)) = window().parent() {
                if !js_sys::Object::is(parent.as_ref(), window().as_ref()) {
                    e.prevent_default();
                    let msg = format!(r#"{{"method":"{method}","args":[]}}"#);
                    let _ = parent.post_message(&msg.into(), "*");
                }
            }
        }
    });
    on_cleanup(move || kh.remove());
}

/// The badge text cut to one short line (the whole text is in its title).
fn short_badge(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() > 90 {
        format!("{}…", line.chars().take(89).collect::<String>())
    } else {
        line.to_string()
    }
}
