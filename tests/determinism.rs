//! Same seed, same problem, on every platform: golden hashes of the seeded draws. The same file
//! runs natively (`cargo test`) and in the browser (wasm-bindgen-test), so a platform whose maths
//! differs in the last bit fails here.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
// in the browser (headless Chromium), not in Node: the platform the page runs on
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use lora_one_lab::config::Preset;
use lora_one_lab::rng::{bits_hash, Rng};
use lora_one_lab::Problem;

/// Golden values, computed once on x86_64 Linux; any platform must reproduce them bit for bit.
const GOLDEN_NORMALS: u64 = 0x7e041b30b277ee4a;
const GOLDEN_X: u64 = 0x9e182f78ec605ac;
const GOLDEN_W0: u64 = 0x53ad1cc1f83092d4;

#[test]
fn seeded_draws_are_bit_identical_everywhere() {
    let m = Rng::new(12345, 0).normal_matrix(7, 9, 1.0);
    assert_eq!(bits_hash(&m), GOLDEN_NORMALS, "normal draws");
    let mut c = Preset::Spectral.config();
    c.d = 20;
    c.k = 10;
    c.r = 4;
    c.seed = 7;
    let p = Problem::generate(&c).unwrap();
    assert_eq!(bits_hash(&p.samples().0), GOLDEN_X, "X");
    assert_eq!(bits_hash(&p.w0), GOLDEN_W0, "W0");
}

/// The digits task (SPEC §9): the shipped data, the seeded split and the seeded network draw.
#[test]
fn digits_split_and_net_draw_are_bit_identical_everywhere() {
    use lora_one_lab::digits::{tasks, Digits, Net};
    let d = Digits::embedded();
    let (odd, even) = tasks(&d, 3);
    let net = Net::init(32, 5, 3);
    let got = [
        bits_hash(&odd.train_x),
        bits_hash(&even.test_x),
        bits_hash(&net.w[0]),
        bits_hash(&net.w[1]),
    ];
    assert_eq!(got, GOLDEN_DIGITS, "{got:#x?}");
}

/// Computed once on x86_64 Linux.
const GOLDEN_DIGITS: [u64; 4] = [
    0x623429fa74e5ba5c,
    0x5f835f2c4e26cb20,
    0xe2890ffb67d4e51b,
    0xd6b58e0038c607e6,
];
