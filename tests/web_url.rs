//! URL state round trips (wasm-bindgen-test in the browser): every parameter of both views goes
//! into the query string and comes back equal, so a link reproduces the same figure.
#![cfg(all(target_arch = "wasm32", feature = "web"))]

use lora_one_lab::config::Preset;
use lora_one_lab::web::phase_model::PhaseParams;
use lora_one_lab::web::phase_view::PageOpts;
use lora_one_lab::web::{parse_state, state_pairs, url, Compute, UrlState, View};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn through_query(pairs: &[(String, String)]) -> Vec<(String, String)> {
    url::parse_query(&format!("?{}", url::to_query(pairs)))
}

#[wasm_bindgen_test]
fn phase_parameters_round_trip() {
    let p = PhaseParams {
        delta: 1.75,
        alpha: 0.0316,
        eta: 0.05,
        gamma: 2.0,
        gamma_ga: 16.0,
        steps: 321,
        population: false,
        n: 12,
        seed: 9,
        start: Some((-0.5, 1.25)),
        speed: 75.0,
        show: [true, false, true, false, true],
        w0: 0.25,
    };
    let opts = PageOpts {
        embed: true,
        large: true,
        autoplay: false,
    };
    let lab = Preset::Spectral.config();
    let q = through_query(&state_pairs(&UrlState {
        view: View::Phase,
        opts,
        phase: p.clone(),
        lab,
        compute: Compute::Auto,
        ..Default::default()
    }));
    let s = parse_state(&q);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.view, View::Phase);
    assert_eq!(s.opts, opts);
    assert_eq!(s.phase, p);
}

#[wasm_bindgen_test]
fn lab_parameters_round_trip() {
    // every field unlike the default's and spectral's (where parsing starts), so dropping any
    // one from the URL fails
    let c = lora_one_lab::config::testing::unlike_every_preset();
    let opts = PageOpts {
        embed: false,
        large: false,
        autoplay: false,
    };
    let q = through_query(&state_pairs(&UrlState {
        view: View::Lab,
        opts,
        lab: c.clone(),
        compute: Compute::Gpu,
        ..Default::default()
    }));
    let s = parse_state(&q);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.view, View::Lab);
    assert_eq!(s.lab, c);
    assert_eq!(s.compute, Compute::Gpu);
}

#[wasm_bindgen_test]
fn bad_url_values_are_reported_not_fatal() {
    let q = url::parse_query("?view=lab&eta=fast&d=100&bogus=1");
    let s = parse_state(&q);
    assert_eq!(s.view, View::Lab);
    assert_eq!(s.errors.len(), 2, "{:?}", s.errors);
    assert!(s.errors.iter().any(|e| e.starts_with("eta")));
    let s = parse_state(&url::parse_query("?view=lab&compute=fast&seeds=0"));
    assert_eq!(s.compute, Compute::Auto);
    assert!(
        s.errors.iter().any(|e| e.starts_with("compute")),
        "{:?}",
        s.errors
    );
    assert_eq!(s.lab.seeds, 0);
    assert_eq!(s.lab.validate().unwrap_err().field, "seeds");
}
