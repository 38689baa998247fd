//! Shared by the GPU test files: the GPU backend on whatever adapter wgpu finds (lavapipe in CI).

#![allow(dead_code)]

use lora_one_lab::engine::EngineError;
use lora_one_lab::gpu::{GpuBackend, GpuOptions};

/// The backend with `opts`. Only a missing adapter or device may skip a test, and only outside
/// CI (`CI` set: it fails); a backend that fails otherwise (broken kernels) always fails.
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
