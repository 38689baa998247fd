//! URL state: the query string holds the active view and every parameter of it. Updates use
//! `history.replaceState` (never a new history entry while dragging).

use leptos::prelude::window;

/// The query string's pairs, decoded, in order.
pub fn read_query() -> Vec<(String, String)> {
    let search = window().location().search().unwrap_or_default();
    parse_query(&search)
}

pub use crate::urlstate::{parse_query, to_query};

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
