//! The wgpu context: adapter and device creation, error capture (device loss, validation and
//! out-of-memory errors come back as `EngineError::Device`, never panics), buffer helpers and
//! readback (awaiting the map callback through a oneshot channel; natively the device is polled).

use crate::engine::EngineError;
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// Default size limit of the batched path (see `GpuOptions::batched_max_dim`; BENCHMARKS.md has
/// the crossover measured on the H200).
pub const BATCHED_MAX_DIM: usize = 1024;
/// Default of `GpuOptions::batched_min_packs` (BENCHMARKS.md, issue 7: the `alignment` preset).
pub const BATCHED_MIN_PACKS: usize = 16;

/// Options for creating the GPU context.
#[derive(Clone, Copy, Debug)]
pub struct GpuOptions {
    /// Compile shaders without wgpu's injected bounds checks (the kernels check their own
    /// indices). Off by default; the benchmarks measure both.
    pub trusted_shaders: bool,
    /// Ask for a software (fallback) adapter.
    pub force_fallback: bool,
    /// k-chunk of the split-K tall-skinny kernel (32..=256, multiple of 32; tuning).
    pub ts_kchunk: usize,
    /// Largest max(d, k) that runs on the batched small-problem path (many trajectories and
    /// many steps per dispatch); larger problems take the single-run path. 0: never batched.
    pub batched_max_dim: usize,
    /// Most optimiser steps in one dispatch of the batched path (None: sized by time, and on a
    /// software adapter by its loop budget). Tests use it to force many chunks.
    pub batched_steps_per_dispatch: Option<usize>,
    /// Workgroup memory the batched kernel may use for its packs (None: the adapter's limit;
    /// Some(0) keeps every pack in storage). Tests use it to cover both variants.
    pub batched_wg_bytes: Option<usize>,
    /// A small batch is spread over at least this many packs (workgroups, one per SM of a
    /// GPU) before trajectories share a pack: a lone pack's step is latency-bound, so five runs
    /// in five packs finish sooner than in two. None: [`BATCHED_MIN_PACKS`] on a hardware
    /// adapter, 1 on a software one (a CPU emulating the GPU gains nothing from spreading and
    /// pays for every pack's reads of Σ̂ and G). Tests set it to cover both.
    pub batched_min_packs: Option<usize>,
    /// Submissions of the batched path in flight at once: the next chunk is queued before the
    /// last one's records are read back and parsed, so the GPU does not wait on the host (1:
    /// one at a time; benchmarks compare).
    pub batched_in_flight: usize,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            trusted_shaders: false,
            force_fallback: false,
            ts_kchunk: 256,
            batched_max_dim: BATCHED_MAX_DIM,
            batched_steps_per_dispatch: None,
            batched_wg_bytes: None,
            batched_min_packs: None,
            batched_in_flight: 2,
        }
    }
}

pub struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub options: GpuOptions,
    /// First uncaptured error or device-loss message (sticky).
    error: Arc<Mutex<Option<String>>>,
}

pub(crate) fn dev_err(m: impl Into<String>) -> EngineError {
    EngineError::Device(m.into())
}

impl Context {
    pub async fn new(options: GpuOptions) -> Result<Self, EngineError> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: options.force_fallback,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| dev_err(format!("no GPU adapter available: {e}")))?;
        let info = adapter.get_info();
        let have = adapter.limits();
        // WebGPU defaults, except the buffer sizes, which we take from the adapter (checked here)
        // so that large problems can run where the adapter allows them.
        let mut limits = wgpu::Limits::default();
        limits.max_storage_buffer_binding_size = have.max_storage_buffer_binding_size;
        limits.max_buffer_size = have.max_buffer_size;
        // the batched kernel keeps its packs in workgroup memory where the adapter allows it
        limits.max_compute_workgroup_storage_size = limits
            .max_compute_workgroup_storage_size
            .max(have.max_compute_workgroup_storage_size);
        limits.max_storage_buffers_per_shader_stage = limits
            .max_storage_buffers_per_shader_stage
            .max(8)
            .min(have.max_storage_buffers_per_shader_stage);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("lora-one-lab"),
                required_features: wgpu::Features::empty(),
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::default(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| dev_err(format!("cannot create a device on {}: {e}", info.name)))?;
        let error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        {
            let e = error.clone();
            device.on_uncaptured_error(Arc::new(move |err: wgpu::Error| {
                let mut g = e.lock().unwrap_or_else(|p| p.into_inner());
                if g.is_none() {
                    *g = Some(format!("GPU error: {err}"));
                }
            }));
        }
        {
            let e = error.clone();
            device.set_device_lost_callback(move |reason, msg| {
                let mut g = e.lock().unwrap_or_else(|p| p.into_inner());
                if g.is_none() {
                    *g = Some(format!("GPU device lost ({reason:?}): {msg}"));
                }
            });
        }
        Ok(Context {
            device,
            queue,
            info,
            limits,
            options,
            error,
        })
    }

    /// Any error the device reported since creation.
    pub fn check(&self) -> Result<(), EngineError> {
        let g = self.error.lock().unwrap_or_else(|p| p.into_inner());
        match &*g {
            Some(m) => Err(dev_err(m.clone())),
            None => Ok(()),
        }
    }

    pub fn module(&self, label: &str, src: &str) -> wgpu::ShaderModule {
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(label),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        };
        if self.options.trusted_shaders {
            // SAFETY: every kernel guards its own indices against the sizes in its parameters
            // (tested against the CPU twin with sizes that are not multiples of the tiles), and
            // every loop is bounded by those sizes.
            unsafe {
                self.device
                    .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        } else {
            self.device.create_shader_module(desc)
        }
    }

    /// Refuse a buffer the device cannot bind.
    /// True for a software adapter (lavapipe/llvmpipe, SwiftShader, WARP): wgpu's
    /// `DeviceType::Cpu`.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Largest buffer the device binds, in bytes.
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    pub fn check_size(&self, what: &str, floats: usize) -> Result<u64, EngineError> {
        let bytes = (floats.max(1) as u64) * 4;
        let max = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size);
        if bytes > max {
            return Err(EngineError::Unsupported(format!(
                "{what} needs {:.1} MiB but this GPU binds at most {:.1} MiB per buffer (adapter {}); \
                 reduce d, k or n, or use the CPU backend",
                bytes as f64 / 1048576.0,
                max as f64 / 1048576.0,
                self.info.name
            )));
        }
        Ok(bytes)
    }

    pub fn storage(&self, label: &str, floats: usize) -> Result<wgpu::Buffer, EngineError> {
        let size = self.check_size(label, floats)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.div_ceil(16) * 16,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    pub fn storage_init(&self, label: &str, data: &[f32]) -> Result<wgpu::Buffer, EngineError> {
        self.check_size(label, data.len())?;
        // padded to whole vec4s (kernels read some operands as array<vec4<f32>>); copied only
        // when it needs the padding
        let padded;
        let v = if !data.is_empty() && data.len() % 4 == 0 {
            data
        } else {
            let mut p = data.to_vec();
            p.resize(data.len().max(1).div_ceil(4) * 4, 0.0);
            padded = p;
            &padded
        };
        Ok(self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(v),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            }))
    }

    pub fn uniform(&self, words: &[u32]) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::cast_slice(words),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    pub fn readback_buffer(&self, bytes: u64) -> Result<wgpu::Buffer, EngineError> {
        if bytes > self.limits.max_buffer_size {
            return Err(EngineError::Unsupported(format!(
                "readback of {bytes} B exceeds the adapter's buffer size limit"
            )));
        }
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes.max(4).div_ceil(4) * 4,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// Map a MAP_READ buffer and return its first `floats` values. Awaits the map callback (on
    /// wasm the browser drives it; natively we poll the device until the latest submission is
    /// done).
    pub async fn read(&self, buf: &wgpu::Buffer, floats: usize) -> Result<Vec<f32>, EngineError> {
        self.read_after(buf, floats, None).await
    }

    /// `read` of a buffer that submission `index` (None: the latest) fills: natively only that
    /// submission is waited for, so later ones already queued keep the GPU busy.
    pub async fn read_after(
        &self,
        buf: &wgpu::Buffer,
        floats: usize,
        index: Option<wgpu::SubmissionIndex>,
    ) -> Result<Vec<f32>, EngineError> {
        let bytes = (floats as u64) * 4;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let slice = buf.slice(0..bytes);
        let (tx, rx) = futures_channel::oneshot::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        #[cfg(target_arch = "wasm32")]
        let _ = index;
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.device
                .poll(wgpu::PollType::Wait {
                    submission_index: index,
                    timeout: None,
                })
                .map_err(|e| dev_err(format!("waiting for the GPU failed: {e}")))?;
        }
        let r = rx
            .await
            .map_err(|_| dev_err("the buffer map callback was dropped (device lost?)"))?;
        r.map_err(|e| dev_err(format!("mapping a readback buffer failed: {e}")))?;
        self.check()?;
        let out = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| dev_err(format!("reading a mapped buffer failed: {e}")))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        buf.unmap();
        Ok(out)
    }

    /// Wait until the queue is idle (timing); on wasm this maps a tiny buffer.
    pub async fn finish(&self) -> Result<(), EngineError> {
        let b = self.readback_buffer(4)?;
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.clear_buffer(&b, 0, None);
        self.queue.submit([enc.finish()]);
        self.read(&b, 1).await?;
        Ok(())
    }

    /// Run `f` inside an out-of-memory + validation error scope and report what it caught.
    pub async fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T, EngineError> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let e_val = val.pop().await;
        let e_oom = oom.pop().await;
        if let Some(e) = e_oom {
            return Err(dev_err(format!("out of GPU memory while {what}: {e}")));
        }
        if let Some(e) = e_val {
            return Err(dev_err(format!("GPU validation error while {what}: {e}")));
        }
        self.check()?;
        Ok(out)
    }
}
