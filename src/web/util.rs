//! Small browser helpers: yielding to the event loop, timing, device pixel ratio, formatting.

use js_sys::Promise;
use leptos::prelude::window;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// Give the browser a turn (a `setTimeout(0)` task), so input and painting go on between chunks
/// of engine work.
pub async fn yield_now() {
    let p = Promise::new(&mut |resolve, _| {
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
    });
    let _ = JsFuture::from(p).await;
}

/// Wait for the next animation frame; resolves with its timestamp (ms).
pub async fn next_frame() -> f64 {
    let p = Promise::new(&mut |resolve, _| {
        let _ = window().request_animation_frame(&resolve);
    });
    JsFuture::from(p)
        .await
        .ok()
        .and_then(|v| v.as_f64())
        .unwrap_or_else(now_ms)
}

/// The next animation frame, or `ms` milliseconds, whichever comes first. An iframe that was
/// hidden (a reveal.js slide not on screen) may get no animation frames for seconds after it is
/// shown again; the timer keeps an animation clock going meanwhile.
pub async fn next_frame_or(ms: i32) -> f64 {
    let p = Promise::new(&mut |resolve, _| {
        let _ = window().request_animation_frame(&resolve);
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = JsFuture::from(p).await;
    // the rAF timestamp and now() share the clock; now() serves both cases
    now_ms()
}

pub fn now_ms() -> f64 {
    window().performance().map_or(0.0, |p| p.now())
}

pub fn dpr() -> f64 {
    let r = window().device_pixel_ratio();
    if r.is_finite() && r > 0.0 {
        r.min(4.0)
    } else {
        1.0
    }
}

/// Whether the system asks for a dark theme.
pub fn prefers_dark() -> bool {
    window()
        .match_media("(prefers-color-scheme: dark)")
        .ok()
        .flatten()
        .is_some_and(|m| m.matches())
}

/// Compact number formatting for readouts and inputs.
pub fn fmt(x: f64) -> String {
    compact(x, 1e-3, 1e5, 4, 3)
}

/// Three significant digits, compact (read-outs that must not wrap).
pub fn fmt3(x: f64) -> String {
    compact(x, 1e-2, 1e4, 3, 2)
}

/// Fixed-point with `fixed` decimals (trailing zeros dropped) inside [lo, hi), else scientific
/// with `sci` decimals.
fn compact(x: f64, lo: f64, hi: f64, fixed: usize, sci: usize) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let a = x.abs();
    if a != 0.0 && !(lo..hi).contains(&a) {
        format!("{x:.sci$e}")
    } else {
        let s = format!("{x:.fixed$}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() || s == "-0" {
            "0".into()
        } else {
            s.to_string()
        }
    }
}

/// Size a canvas for crisp drawing: CSS size `w`×`h`, backing store × devicePixelRatio.
/// Returns the scale (device pixels per CSS pixel).
pub fn size_canvas(c: &web_sys::HtmlCanvasElement, w: f64, h: f64) -> f64 {
    let r = dpr();
    let (pw, ph) = ((w * r).round() as u32, (h * r).round() as u32);
    if c.width() != pw {
        c.set_width(pw);
    }
    if c.height() != ph {
        c.set_height(ph);
    }
    let st = c.style();
    let _ = st.set_property("width", &format!("{w}px"));
    let _ = st.set_property("height", &format!("{h}px"));
    r
}

pub fn ctx2d(c: &web_sys::HtmlCanvasElement) -> Option<web_sys::CanvasRenderingContext2d> {
    c.get_context("2d").ok().flatten()?.dyn_into().ok()
}

/// Resolve after `ms` milliseconds (a timer task: the page runs in between).
pub async fn sleep_ms(ms: i32) {
    let p = Promise::new(&mut |resolve, _| {
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = JsFuture::from(p).await;
}
