//! Downloads: charts as PNG, runs as JSON (the CLI's report schema) and CSV.

use crate::engine::Report;
use leptos::prelude::document;
use wasm_bindgen::JsCast;

pub fn download_url(name: &str, href: &str) {
    if let Ok(a) = document().create_element("a") {
        if let Ok(a) = a.dyn_into::<web_sys::HtmlAnchorElement>() {
            a.set_href(href);
            a.set_download(name);
            a.set_attribute("style", "display:none").ok();
            if let Some(b) = document().body() {
                let _ = b.append_child(&a);
                a.click();
                let _ = b.remove_child(&a);
            }
        }
    }
}

pub fn download_text(name: &str, mime: &str, text: &str) {
    let parts = js_sys::Array::of1(&wasm_bindgen::JsValue::from_str(text));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type(mime);
    if let Ok(blob) = web_sys::Blob::new_with_str_sequence_and_options(&parts, &opts) {
        if let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob) {
            download_url(name, &url);
            let _ = web_sys::Url::revoke_object_url(&url);
        }
    }
}

pub fn download_canvas_png(c: &web_sys::HtmlCanvasElement, name: &str) {
    if let Ok(u) = c.to_data_url_with_type("image/png") {
        download_url(name, &u);
    }
}

pub fn report_json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// One row per recorded step of every run.
pub fn report_csv(r: &Report) -> String {
    let mut s = String::from(
        "run,label,init,alpha2,step,loss,risk,sin_a,sin_b,err_f,wall_ms,sv_ab,proj_a,proj_b,proj_off\n",
    );
    let opt = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:e}"));
    for (i, run) in r.runs.iter().enumerate() {
        for rec in &run.records {
            let sv = rec
                .sv_ab
                .iter()
                .map(|v| format!("{v:e}"))
                .collect::<Vec<_>>()
                .join(";");
            let (pa, pb, po) = rec
                .proj
                .map_or((None, None, None), |p| (Some(p[0]), Some(p[1]), Some(p[2])));
            s.push_str(&format!(
                "{i},{},{},{},{},{:e},{:e},{},{},{:e},{:.3},{sv},{},{},{}\n",
                run.label,
                run.init.name(),
                opt(run.alpha2),
                rec.step,
                rec.loss,
                rec.risk,
                opt(rec.sin_a),
                opt(rec.sin_b),
                rec.err_f,
                rec.wall_ms,
                opt(pa),
                opt(pb),
                opt(po),
            ));
        }
    }
    s
}

/// A figure drawn by `draw` (the CLI's figure code) into an SVG of `size` pixels, downloaded as
/// `name`; the drawing error, if any, as text.
pub fn download_svg(
    name: &str,
    size: (u32, u32),
    draw: impl FnOnce(
        plotters::drawing::DrawingArea<plotters::prelude::SVGBackend, plotters::coord::Shift>,
    ) -> Result<(), Box<dyn std::error::Error>>,
) -> Result<(), String> {
    use plotters::prelude::IntoDrawingArea;
    let mut svg = String::new();
    let res = {
        let root = plotters::prelude::SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(root)
    };
    res.map_err(|e| format!("SVG export: {e}"))?;
    download_text(name, "image/svg+xml", &svg);
    Ok(())
}
