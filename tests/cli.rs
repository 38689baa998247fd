//! The CLI end to end: outputs, dumps, figures, and exit code 2 with a field-naming message on bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lora-one-lab"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lora-one-lab-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Shape of a C-order float64 .npy file, read from its header.
fn npy_shape(path: &Path) -> Vec<usize> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header = String::from_utf8_lossy(&bytes[10..128.min(bytes.len())]).to_string();
    assert!(header.contains("'descr': '<f8'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let inner = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    inner
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect()
}

#[test]
fn run_writes_json_csv_and_npy_dump() {
    let dir = tmp("run");
    let json = dir.join("run.json");
    let csv = dir.join("run.csv");
    let dump = dir.join("dump");
    let st = bin()
        .args([
            "run", "--preset", "spectral", "--set", "steps=20", "--set", "d=30", "--set", "k=20",
            "-q",
        ])
        .arg("--out")
        .arg(&json)
        .arg("--dump")
        .arg(&dump)
        .status()
        .unwrap();
    assert!(st.success());
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["schema"], "lora-one-lab/run@1");
    assert_eq!(v["config"]["steps"], 20);
    assert_eq!(v["config"]["n"], 480, "N resolved to 16·d");
    assert_eq!(v["runs"].as_array().unwrap().len(), 3);
    assert_eq!(v["runs"][0]["records"].as_array().unwrap().len(), 21);
    assert!(v["cost"]["svd_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(npy_shape(&dump.join("X.npy")), vec![480, 30]);
    assert_eq!(npy_shape(&dump.join("W0.npy")), vec![30, 20]);
    assert_eq!(npy_shape(&dump.join("G.npy")), vec![30, 20]);
    assert_eq!(npy_shape(&dump.join("lora-one_A0.npy")), vec![30, 8]);
    assert_eq!(npy_shape(&dump.join("lora-ga_B0.npy")), vec![8, 20]);

    let st = bin()
        .args([
            "run",
            "--preset",
            "alignment",
            "--set",
            "steps=10",
            "--set",
            "alpha2=1e-2,1e-4",
            "-q",
        ])
        .arg("--out")
        .arg(&csv)
        .status()
        .unwrap();
    assert!(st.success());
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("run,init,alpha2,step,loss,risk"));
    assert_eq!(lines.count(), 2 * 11);
}

#[test]
fn figures_are_written() {
    let dir = tmp("fig");
    let json = dir.join("r.json");
    assert!(bin()
        .args(["run", "--set", "steps=15", "-q", "--out"])
        .arg(&json)
        .status()
        .unwrap()
        .success());
    for ext in ["svg", "png"] {
        let out = dir.join(format!("curves.{ext}"));
        assert!(bin()
            .arg("plot")
            .arg(&json)
            .arg("--out")
            .arg(&out)
            .status()
            .unwrap()
            .success());
        assert!(std::fs::metadata(&out).unwrap().len() > 10_000);
        let out = dir.join(format!("phase.{ext}"));
        assert!(bin()
            .args(["phase", "--grid", "40", "--set", "steps=50", "--out"])
            .arg(&out)
            .status()
            .unwrap()
            .success());
        assert!(std::fs::metadata(&out).unwrap().len() > 10_000);
    }
    let png = std::fs::read(dir.join("phase.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
}

fn fails_with(args: &[&str], needle: &str) {
    let out = bin().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "{args:?}: stderr was {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_exits_2_naming_the_field() {
    fails_with(&["run", "--set", "r=500"], "`r`: must be in 1..=100");
    fails_with(&["run", "--set", "r_star=0"], "`r_star`");
    fails_with(&["run", "--set", "n=0"], "`n`");
    fails_with(&["run", "--set", "eta=nan"], "`eta`");
    fails_with(&["run", "--set", "eta=inf"], "`eta`");
    fails_with(&["run", "--set", "steps=-1"], "`steps`");
    fails_with(&["run", "--set", "wat=1"], "`wat`: unknown parameter");
    fails_with(&["run", "--set", "steps"], "KEY=VALUE");
    fails_with(&["run", "--preset", "nope"], "`--preset`");
    fails_with(&["run", "--out", "x.txt"], ".json or .csv");
    fails_with(&["phase", "--set", "r=2", "--out", "x.png"], "`r`");
    fails_with(&["run", "--bogus-flag"], "bogus");
}

#[test]
fn divergence_is_reported_not_a_crash() {
    let dir = tmp("div");
    let json = dir.join("d.json");
    let out = bin()
        .args([
            "run",
            "--set",
            "optimiser=gd",
            "--set",
            "eta=100",
            "--set",
            "inits=lora-one",
            "--out",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DIVERGED"), "{err}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(v["runs"][0]["diverged"]["step"].as_u64().unwrap() >= 1);
}

#[cfg(feature = "gpu")]
#[test]
fn gpu_backend_runs_from_the_cli_and_agrees_with_cpu() {
    let dir = tmp("gpu");
    let (cpu, gpu) = (dir.join("cpu.json"), dir.join("gpu.json"));
    for (backend, out) in [("cpu", &cpu), ("gpu", &gpu)] {
        let o = bin()
            .args([
                "run",
                "--set",
                "steps=20",
                "-q",
                "--backend",
                backend,
                "--out",
            ])
            .arg(out)
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let read = |p: &PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let (c, g) = (read(&cpu), read(&gpu));
    assert_eq!(g["backend"]["kind"], "gpu");
    assert_eq!(g["backend"]["precision"], "f32");
    for i in 0..3 {
        for step in [0, 10, 20] {
            let a = c["runs"][i]["records"][step]["risk"].as_f64().unwrap();
            let b = g["runs"][i]["records"][step]["risk"].as_f64().unwrap();
            // in log space, where f32 resolves the value (the residual AB − Δ is formed
            // directly, so its relative error is ~1e-7·‖Δ‖/‖AB − Δ‖): an absolute floor would
            // pass a GPU risk of 0
            let r0 = c["runs"][i]["records"][0]["risk"].as_f64().unwrap();
            assert!(
                b.is_finite() && b > 0.0,
                "run {i} step {step}: GPU risk {b}"
            );
            if a > 1e-9 * r0 {
                assert!(
                    (a.ln() - b.ln()).abs() < 0.02,
                    "run {i} step {step}: {a} vs {b}"
                );
            } else {
                assert!(b < 1e-7 * r0, "run {i} step {step}: {a} vs {b}");
            }
            eprintln!("run {i} step {step}: risk cpu {a:.3e} gpu {b:.3e}");
        }
    }
}

/// `sweep` writes the sweep as JSON and CSV, `plot` draws the JSON, and a bad axis is refused
/// with exit code 2 naming the field.
#[test]
fn sweep_writes_json_csv_and_plots() {
    let dir = tmp("sweep");
    let json = dir.join("law.json");
    let csv = dir.join("law.csv");
    let svg = dir.join("law.svg");
    for out in [&json, &csv] {
        let o = bin()
            .args([
                "sweep",
                "--preset",
                "ln-d-law",
                "--x",
                "d=16,24,32",
                "--set",
                "seeds=2",
                "--set",
                "steps=120",
                "-q",
                "--out",
            ])
            .arg(out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["schema"], "lora-one-lab/sweep@1");
    assert_eq!(v["cells"].as_array().unwrap().len(), 3);
    assert_eq!(v["cells"][0]["runs"].as_array().unwrap().len(), 2);
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert!(rows.starts_with("d,y,draw,min_sin_a"), "{rows}");
    assert_eq!(rows.lines().count(), 1 + 3 * 2);
    let o = bin()
        .arg("plot")
        .arg(&json)
        .arg("--out")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg") && text.contains("t*(θ)"),
        "{}",
        &text[..200.min(text.len())]
    );
    let o = bin()
        .args(["sweep", "--preset", "fig2", "--x", "model=1,2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("`model`"));
}

/// `finetune --preset digits`: JSON (schema, table rows, landscape), CSV, a figure from the JSON
/// by `plot`, the toy figure and its JSON; bad settings name the field.
#[test]
fn finetune_and_toy_write_files_and_plots() {
    let dir = tmp("finetune");
    let json = dir.join("digits.json");
    let csv = dir.join("digits.csv");
    for out in [&json, &csv] {
        let o = bin()
            .args([
                "finetune",
                "--set",
                "seeds=1",
                "--set",
                "steps=20",
                "--set",
                "pre_steps=100",
                "--out",
            ])
            .arg(out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).contains("spectral init alone"));
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["schema"], "lora-one-lab/digits/1");
    assert_eq!(v["runs"].as_array().unwrap().len(), 9);
    assert_eq!(v["landscape"]["ln_loss"].as_array().unwrap().len(), 25 * 25);
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert!(rows.starts_with("label,seed,step,") && rows.lines().count() == 1 + 6 * 5 + 1 + 2 * 2);
    let svg = dir.join("digits.svg");
    let o = bin()
        .arg("plot")
        .arg(&json)
        .arg("--out")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.contains("Fig. 1(c)") && s.contains("LoRA-One"));
    fails_with(
        &["finetune", "--set", "rank=99"],
        "`rank`: must be in 1..=32, got 99",
    );
    fails_with(&["finetune", "--set", "bogus=1"], "`bogus`");
    // the Fig. 3 toy
    let toy = dir.join("fig3.svg");
    let o = bin()
        .args(["toy", "--seeds", "4", "--out"])
        .arg(&toy)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read_to_string(&toy)
        .unwrap()
        .contains("minimisers ab = β"));
    let tj = dir.join("fig3.json");
    let o = bin()
        .args(["toy", "--seeds", "4", "--out"])
        .arg(&tj)
        .output()
        .unwrap();
    assert!(o.status.success());
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tj).unwrap()).unwrap();
    assert_eq!(v["runs"].as_array().unwrap().len(), 8);
    fails_with(
        &["toy", "--seeds", "0", "--out", "x.svg"],
        "`--seeds`: must be in 1..=256",
    );
}
