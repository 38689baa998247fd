//! URL state: the query string holds the active view and every parameter of it. Updates use
//! `history.replaceState` (never a new history entry while dragging).

use leptos::prelude::window;

/// The query string's pairs, decoded, in order.
pub fn read_query() -> Vec<(String, String)> {
    let search = window().location().search().unwrap_or_default();
    parse_query(&search)
}

pub fn parse_query(search: &str) -> Vec<(String, String)> {
    search
        .trim_start_matches('?')
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    js_sys::decode_uri_component(&s)
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or(s)
}

fn encode(s: &str) -> String {
    js_sys::encode_uri_component(s).into()
}

pub fn to_query(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Replace the query string (keeps the path, so it works under any sub-path).
pub fn replace_query(pairs: &[(String, String)]) {
    let q = to_query(pairs);
    let current = window().location().search().unwrap_or_default();
    if current.trim_start_matches('?') == q {
        return;
    }
    if let Ok(h) = window().history() {
        let _ = h.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&format!("?{q}")));
    }
}

/// The page URL without query or fragment.
pub fn base_url() -> String {
    let loc = window().location();
    format!(
        "{}{}",
        loc.origin().unwrap_or_default(),
        loc.pathname().unwrap_or_default()
    )
}

pub fn current_url() -> String {
    window().location().href().unwrap_or_default()
}
