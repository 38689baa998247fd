//! `.npy` dumps of a problem and its initial factors, for checking the numbers in numpy.

use super::{io_err, CliError};
use lora_one_lab::init;
use lora_one_lab::{CpuBackend, Experiment};
use nalgebra::DMatrix;
use npyz::WriterBuilder;
use std::path::Path;

/// Write a matrix as a C-order float64 .npy file.
pub fn write_npy(path: &Path, m: &DMatrix<f64>) -> Result<(), CliError> {
    let file = std::fs::File::create(path).map_err(|e| io_err(path, e))?;
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[m.nrows() as u64, m.ncols() as u64])
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(|e| io_err(path, e))?;
    for i in 0..m.nrows() {
        for j in 0..m.ncols() {
            w.push(&m[(i, j)]).map_err(|e| io_err(path, e))?;
        }
    }
    w.finish().map_err(|e| io_err(path, e))
}

/// X, W0, Δ, Y, G (and Σ̂) plus every run's A0, B0 into `dir`.
pub fn dump(dir: &Path, exp: &Experiment, cpu: &CpuBackend) -> Result<Vec<String>, CliError> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let p = &exp.problem;
    let mut written = Vec::new();
    let mut put = |name: &str, m: &DMatrix<f64>| -> Result<(), CliError> {
        write_npy(&dir.join(name), m)?;
        written.push(name.to_string());
        Ok(())
    };
    put("W0.npy", &p.w0)?;
    put("Delta.npy", &p.delta)?;
    if !p.cfg.population {
        // the factored form streams X; the dump materialises it (same draws)
        let (x, y) = p.samples();
        put("X.npy", &x)?;
        put("Y.npy", &y)?;
    }
    if let Some(g) = cpu.g() {
        put("G.npy", g)?;
    }
    if let Some(s) = cpu.sigma() {
        put("Sigma_hat.npy", s)?;
    }
    if let Some(svd) = exp.g_svd() {
        let w0 = p
            .cfg
            .inits
            .contains(&lora_one_lab::InitKind::Pissa)
            .then(|| init::w0_svd(&p.cfg, &p.w0));
        for plan in p.cfg.runs() {
            let f = init::build(&p.cfg, &plan, svd, w0.as_ref());
            let kind = plan.init;
            let mut tag = match plan.alpha2 {
                Some(a) => format!("{}_alpha2_{a:e}", kind.name()),
                None => kind.name().to_string(),
            };
            if plan.draw > 0 {
                tag += &format!("_draw{}", plan.draw);
            }
            put(&format!("{tag}_A0.npy"), &f.a0)?;
            put(&format!("{tag}_B0.npy"), &f.b0)?;
        }
    }
    Ok(written)
}
