//! Shared by the test files: bitwise comparison of runs, and the GPU backend on whatever adapter
//! wgpu finds (lavapipe in CI).

#![allow(dead_code)]

#[cfg(feature = "gpu")]
use lora_one_lab::engine::EngineError;
#[cfg(feature = "gpu")]
use lora_one_lab::gpu::{GpuBackend, GpuOptions};

/// Two computations of one run agree bit for bit: records (step, loss, risk, sin θ_A, sin θ_B)
/// and divergence.
pub fn same_bits(a: &lora_one_lab::RunResult, b: &lora_one_lab::RunResult) {
    assert_eq!(a.records.len(), b.records.len(), "{}", a.label);
    assert_eq!(a.diverged, b.diverged);
    for (x, y) in a.records.iter().zip(&b.records) {
        assert_eq!(x.step, y.step);
        assert_eq!(
            x.loss.to_bits(),
            y.loss.to_bits(),
            "{} step {}",
            a.label,
            x.step
        );
        assert_eq!(x.risk.to_bits(), y.risk.to_bits());
        assert_eq!(x.sin_a.map(f64::to_bits), y.sin_a.map(f64::to_bits));
        assert_eq!(x.sin_b.map(f64::to_bits), y.sin_b.map(f64::to_bits));
    }
}

/// The backend with `opts`. Only a missing adapter or device may skip a test, and only outside
/// CI (`CI` set: it fails); a backend that fails otherwise (broken kernels) always fails.
#[cfg(feature = "gpu")]
pub fn gpu_with(opts: GpuOptions) -> Option<GpuBackend> {
    let dir = std::env::temp_dir().join("lora-one-lab-xdg");
    let _ = std::fs::create_dir_all(&dir);
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
    }
    match pollster::block_on(GpuBackend::with_options(opts)) {
        Ok(g) => Some(g),
        Err(e) => {
            let missing = matches!(&e, EngineError::Device(m) if m.contains("no GPU adapter") || m.contains("cannot create a device"));
            if !missing {
                panic!("GPU backend failed to initialise: {e}");
            }
            if std::env::var_os("CI").is_some() {
                panic!("no GPU adapter in CI (install mesa-vulkan-drivers for lavapipe): {e}");
            }
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}
