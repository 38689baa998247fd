//! GPU backend (WGSL compute shaders through wgpu). Owned by the GPU work (issue 3).
