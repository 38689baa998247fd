//! The Leptos web app (wasm32). Owned by the web-app work (issue 4).
