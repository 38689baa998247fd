//! The shipped digits asset (`assets/digits.bin`, read by `Digits::embedded`) equals smartcore's
//! copy of the UCI optical handwritten digits, pixel for pixel and label for label.
//! `REGENERATE_DIGITS=1 cargo test --test digits_data` rewrites the asset from smartcore.
#![cfg(not(target_arch = "wasm32"))]

use lora_one_lab::digits::{Digits, N_PIXELS, N_SAMPLES};
use std::path::Path;

#[test]
fn asset_equals_smartcore_data() {
    let ds = smartcore::dataset::digits::load_dataset();
    assert_eq!((ds.num_samples, ds.num_features), (N_SAMPLES, N_PIXELS));
    let mut bytes = Vec::with_capacity(N_SAMPLES * (N_PIXELS + 1));
    for &v in &ds.data {
        let x = v as f64;
        assert!(x == x.round() && (0.0..=16.0).contains(&x), "pixel {x}");
        bytes.push(x as u8);
    }
    for &t in &ds.target {
        let y = t as f64;
        assert!(y == y.round() && (0.0..=9.0).contains(&y), "digit {y}");
        bytes.push(y as u8);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/digits.bin");
    if std::env::var_os("REGENERATE_DIGITS").is_some() {
        std::fs::write(&path, &bytes).unwrap();
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "assets/digits.bin differs from smartcore's data"
    );
    // and the library reads it back as the same data
    let d = Digits::parse(&bytes).unwrap();
    assert_eq!(d, Digits::embedded());
    // every class is there, ~180 images each
    for c in 0..10u8 {
        let n = d.digit.iter().filter(|&&x| x == c).count();
        assert!((170..=190).contains(&n), "digit {c}: {n} images");
    }
}
