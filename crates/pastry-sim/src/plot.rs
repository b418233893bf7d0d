//! SVG charts of a [`Report`]: the hops histogram, the RDP CDF and traffic over time.
//!
//! Drawn with plotters' SVG backend only (no bitmap, no font files): text is written as
//! SVG `<text>` and the viewer renders it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::prelude::*;

use crate::Report;

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e:?}")
}

/// Writes `hops.svg`, `rdp_cdf.svg` and `traffic.svg` into `dir` (created if missing);
/// returns their paths.
///
/// # Errors
/// When the directory cannot be created or a file cannot be written.
pub fn write_plots(report: &Report, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create plot directory {}", dir.display()))?;
    let files = [
        dir.join("hops.svg"),
        dir.join("rdp_cdf.svg"),
        dir.join("traffic.svg"),
    ];
    hops(report, &files[0])?;
    rdp_cdf(report, &files[1])?;
    traffic(report, &files[2])?;
    // plotters reports a failed write only as a panic-free error string at drop; check.
    for f in &files {
        std::fs::metadata(f).with_context(|| format!("cannot write {}", f.display()))?;
    }
    Ok(files.to_vec())
}

fn hops(report: &Report, path: &Path) -> anyhow::Result<()> {
    let pct = &report.lookups.hops_pct;
    let max_h = pct.len().max(1) as u32;
    let top = pct.iter().copied().fold(0.0f64, f64::max).max(1.0) * 1.1;
    let root = SVGBackend::new(path, (640, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Hops per lookup: {} nodes, mean {:.2}",
                report.nodes, report.lookups.mean_hops
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d((0u32..max_h).into_segmented(), 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("hops")
        .y_desc("% of lookups")
        .disable_x_mesh()
        .draw()
        .map_err(err)?;
    chart
        .draw_series(
            Histogram::vertical(&chart)
                .style(BLUE.mix(0.6).filled())
                .margin(6)
                .data(pct.iter().enumerate().map(|(h, p)| (h as u32, *p))),
        )
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn rdp_cdf(report: &Report, path: &Path) -> anyhow::Result<()> {
    let s = &report.rdp_samples; // sorted by LookupReport::finish
    let xmax = s
        .get(((s.len() as f64) * 0.99) as usize)
        .or(s.last())
        .map_or(2.0, |&x| f64::from(x).max(1.5));
    let step = (s.len() / 1000).max(1);
    let pts: Vec<(f64, f64)> = s
        .iter()
        .enumerate()
        .step_by(step)
        .map(|(i, &x)| (f64::from(x), (i + 1) as f64 / s.len() as f64))
        .chain(s.last().map(|&x| (f64::from(x), 1.0)))
        .collect();
    let root = SVGBackend::new(path, (640, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Relative delay penalty CDF: mean {:.2}, p50 {:.2}, p95 {:.2}",
                report.lookups.rdp.mean, report.lookups.rdp.p50, report.lookups.rdp.p95
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(1.0..xmax, 0.0..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("overlay latency / direct latency")
        .y_desc("fraction of lookups")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(pts, &BLUE))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn traffic(report: &Report, path: &Path) -> anyhow::Result<()> {
    let per_node = |m: u32, live: u32| -> f64 {
        if live == 0 {
            0.0
        } else {
            f64::from(m) / f64::from(live)
        }
    };
    // At most ~2000 points: average over buckets of several seconds.
    let n = report.traffic_series.len();
    let bucket = n.div_ceil(2000).max(1);
    let mut ctl = Vec::new();
    let mut look = Vec::new();
    for (b, chunk) in report.traffic_series.chunks(bucket).enumerate() {
        let t = (b * bucket) as f64;
        let k = chunk.len() as f64;
        ctl.push((t, chunk.iter().map(|e| per_node(e.0, e.2)).sum::<f64>() / k));
        look.push((t, chunk.iter().map(|e| per_node(e.1, e.2)).sum::<f64>() / k));
    }
    let ymax = ctl
        .iter()
        .chain(&look)
        .map(|p| p.1)
        .fold(0.0f64, f64::max)
        .max(0.1)
        * 1.1;
    let root = SVGBackend::new(path, (760, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Messages per node per second over simulated time",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..(n.max(1) as f64), 0.0..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("simulated seconds")
        .y_desc("messages / node / s")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(ctl, &RED))
        .map_err(err)?
        .label("control")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
    chart
        .draw_series(LineSeries::new(look, &BLUE))
        .map_err(err)?
        .label("lookups")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
