//! Ships the WGSL shaders without their comments and indentation: the browser bundle carries
//! every shader as text, and the comments are about a third of it. `shaders/*.wgsl` stay the
//! sources (validated by naga in `tests/shaders.rs`); the stripped copies in `OUT_DIR` are what
//! `src/gpu/kernels.rs` includes, and a unit test there validates them too. Lines holding a
//! `BEGIN`/`END` marker comment are kept whole: the host code splices variants between them.

use std::{env, fs, path::Path};

fn strip(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    for line in src.lines() {
        let t = line.trim();
        if t.starts_with("// BEGIN ") || t.starts_with("// END ") {
            out.push_str(t);
            out.push('\n');
            continue;
        }
        // WGSL has no string literals, so `//` always starts a comment.
        let code = t.find("//").map_or(t, |i| &t[..i]).trim_end();
        if !code.is_empty() {
            out.push_str(code);
            out.push('\n');
        }
    }
    out
}

fn main() {
    let dir = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("shaders");
    let out = Path::new(&env::var("OUT_DIR").unwrap()).join("shaders");
    fs::create_dir_all(&out).unwrap();
    println!("cargo:rerun-if-changed=shaders");
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
            continue;
        }
        println!("cargo:rerun-if-changed={}", path.display());
        let src = fs::read_to_string(&path).unwrap();
        assert!(
            !src.contains("/*"),
            "{}: use // comments (the stripper handles only those)",
            path.display()
        );
        fs::write(out.join(path.file_name().unwrap()), strip(&src)).unwrap();
    }
}
