//! Ensembles (`seeds` > 1): the runs of one setting (same label, different init draws) summed up
//! step by step as the median and the 10–90 % band of a metric. The lab draws them; the sweep
//! views and the CLI's figures can too.

use crate::engine::{Record, Report};

/// One setting's spread over its draws: per recorded step, (step, q10, median, q90).
#[derive(Clone, Debug, PartialEq)]
pub struct Band {
    pub label: String,
    /// Index of the setting's first run in the report (for its colour).
    pub first_run: usize,
    pub runs: usize,
    pub pts: Vec<(f64, f64, f64, f64)>,
}

/// Linear-interpolated quantile of sorted values (q in [0, 1]).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let x = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (i, f) = (x.floor() as usize, x - x.floor());
    if i + 1 < sorted.len() {
        sorted[i] * (1.0 - f) + sorted[i + 1] * f
    } else {
        sorted[i]
    }
}

/// Runs grouped by label, in order of first appearance: (label, run indices).
pub fn groups(r: &Report) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, run) in r.runs.iter().enumerate() {
        match out.iter_mut().find(|(l, _)| *l == run.label) {
            Some((_, v)) => v.push(i),
            None => out.push((run.label.clone(), vec![i])),
        }
    }
    out
}

/// For colouring: whether the report is an ensemble (some setting has several draws), and per
/// run the colour index to use: its setting's index in an ensemble, else its own index.
pub fn colour_indices(r: &Report) -> (bool, Vec<usize>) {
    let groups = groups(r);
    let ensemble = groups.iter().any(|(_, v)| v.len() > 1);
    let mut of = (0..r.runs.len()).collect::<Vec<_>>();
    if ensemble {
        for (gi, (_, idx)) in groups.iter().enumerate() {
            for &i in idx {
                of[i] = gi;
            }
        }
    }
    (ensemble, of)
}

/// The 10 / 50 / 90 % quantiles of `metric` over each group's runs at every step that all of
/// them recorded with a finite value (a diverged or stopped run drops out from its last step).
pub fn bands(r: &Report, metric: impl Fn(&Record) -> Option<f64>) -> Vec<Band> {
    groups(r)
        .into_iter()
        .map(|(label, idx)| {
            let mut by_step: std::collections::BTreeMap<usize, Vec<f64>> = Default::default();
            for &i in &idx {
                for rec in &r.runs[i].records {
                    if let Some(v) = metric(rec).filter(|v| v.is_finite()) {
                        by_step.entry(rec.step).or_default().push(v);
                    }
                }
            }
            let pts = by_step
                .into_iter()
                .map(|(s, mut v)| {
                    v.sort_by(f64::total_cmp);
                    (
                        s as f64,
                        quantile(&v, 0.1),
                        quantile(&v, 0.5),
                        quantile(&v, 0.9),
                    )
                })
                .collect();
            Band {
                label,
                first_run: idx[0],
                runs: idx.len(),
                pts,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;
    use crate::{CpuBackend, Experiment};

    #[test]
    fn quantiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert!((quantile(&v, 0.1) - 1.4).abs() < 1e-12);
        assert!((quantile(&v, 0.9) - 4.6).abs() < 1e-12);
        assert_eq!(quantile(&[7.0], 0.9), 7.0);
    }

    #[test]
    fn bands_of_an_ensemble_bracket_the_median() {
        let mut c = Preset::Alignment.config();
        c.d = 30;
        c.k = 30;
        c.alpha2 = vec![1e-2, 1e-4];
        c.seeds = 9;
        c.steps = 40;
        c.record_every = 10;
        let mut e = Experiment::new(&c).unwrap();
        pollster::block_on(e.run_to_end(&mut CpuBackend::new(), 100, |_| {})).unwrap();
        let r = e.report();
        let b = bands(&r, |x| Some(x.risk.log10()));
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].runs, b[1].runs, b[1].first_run), (9, 9, 9));
        assert_eq!(b[0].pts.len(), 5);
        for band in &b {
            for &(_, lo, mid, hi) in &band.pts[1..] {
                assert!(lo <= mid && mid <= hi && lo < hi, "{lo} {mid} {hi}");
            }
        }
        // the median at the end is the median of the runs' final values
        let mut fin: Vec<f64> = r.runs[..9]
            .iter()
            .map(|x| x.last().unwrap().risk.log10())
            .collect();
        fin.sort_by(f64::total_cmp);
        assert_eq!(b[0].pts.last().unwrap().2, fin[4]);
        let (ens, colours) = colour_indices(&r);
        assert!(ens);
        assert_eq!(colours, [vec![0; 9], vec![1; 9]].concat());
    }
}
