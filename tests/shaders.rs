//! Every shaders/*.wgsl parses and validates with naga (no GPU needed).

use std::path::Path;

fn validate(path: &Path) -> Result<(), String> {
    let src = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let module = naga::front::wgsl::parse_str(&src).map_err(|e| e.emit_to_string(&src))?;
    let mut v = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    );
    let info = v.validate(&module).map_err(|e| e.emit_to_string(&src))?;
    let layouter = {
        let mut l = naga::proc::Layouter::default();
        l.update(module.to_ctx()).map_err(|e| e.to_string())?;
        l
    };
    // WebGPU default limits, per entry point (a pipeline's own): ≤ 256 invocations per
    // workgroup, ≤ 16 KiB of the workgroup memory it uses (directly or through its calls).
    for (i, ep) in module.entry_points.iter().enumerate() {
        let [x, y, z] = ep.workgroup_size;
        if x * y * z > 256 {
            return Err(format!("{}: workgroup size {x}x{y}x{z} > 256", ep.name));
        }
        let uses = info.get_entry_point(i);
        let wg_bytes: u32 = module
            .global_variables
            .iter()
            .filter(|(h, gv)| gv.space == naga::AddressSpace::WorkGroup && !uses[*h].is_empty())
            .map(|(_, gv)| layouter[gv.ty].size)
            .sum();
        if wg_bytes > 16384 {
            return Err(format!(
                "{}: workgroup memory {wg_bytes} B > 16 KiB",
                ep.name
            ));
        }
    }
    Ok(())
}

#[test]
fn every_shader_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut n = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("shaders/ exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
            continue;
        }
        n += 1;
        if let Err(e) = validate(&path) {
            failures.push(format!("{}:\n{e}", path.display()));
        }
    }
    assert!(n >= 6, "expected the shader files, found {n}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
