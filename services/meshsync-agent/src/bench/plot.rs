//! `lag-<engine>.svg` (`lag-postgres.svg`, `lag-mysql.svg`): steady-workload lag over time,
//! one polyline per system, drawn by hand.

use std::fmt::Write as _;

use super::report::{Report, SystemResult};

/// Picture size and margins, in SVG user units.
const W: f64 = 900.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;

/// Samples are reduced to the largest lag in each window of this many seconds.
const WINDOW_SECS: f64 = 0.1;

/// The largest lag per [`WINDOW_SECS`] window: (window start, lag ms).
fn windows(r: &SystemResult) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for s in &r.steady.samples {
        let w = (s.at_secs / WINDOW_SECS).floor() * WINDOW_SECS;
        match out.last_mut() {
            Some(last) if (last.0 - w).abs() < 1e-9 => last.1 = last.1.max(s.lag_ms),
            _ => out.push((w, s.lag_ms)),
        }
    }
    out
}

/// A round step for about `n` ticks over `0..max`.
fn nice_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// The SVG document for `report`.
pub fn lag_svg(report: &Report) -> String {
    let series = [(&report.native, "#1f77b4"), (&report.meshsync, "#ff7f0e")];
    let points: Vec<Vec<(f64, f64)>> = series.iter().map(|(r, _)| windows(r)).collect();
    let x_max = (report.params.seconds as f64)
        .max(points.iter().flatten().map(|p| p.0).fold(0.0, f64::max));
    let y_top = points.iter().flatten().map(|p| p.1).fold(1.0, f64::max);
    let y_step = nice_step(y_top, 5.0);
    let y_max = (y_top / y_step).ceil() * y_step;
    let x_step = nice_step(x_max, 10.0);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sx = |x: f64| LEFT + x / x_max.max(1e-9) * pw;
    let sy = |y: f64| TOP + ph - y / y_max * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">Replication lag, steady {} rows/s (largest lag per {} ms window)</text>"#,
        W / 2.0,
        report.params.rate,
        WINDOW_SECS * 1000.0
    );
    // Grid and tick labels.
    let mut y = 0.0;
    while y <= y_max + 1e-9 {
        let py = sy(y);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            trim(y)
        );
        y += y_step;
    }
    let mut x = 0.0;
    while x <= x_max + 1e-9 {
        let px = sx(x);
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#999"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 5.0,
            TOP + ph + 18.0,
            trim(x)
        );
        x += x_step;
    }
    // Axes and their labels.
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="black"/><line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>"#,
        TOP + ph,
        TOP + ph,
        W - RIGHT,
        TOP + ph
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time since the steady workload started (s)</text>"#,
        LEFT + pw / 2.0,
        H - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">lag (ms)</text>"#,
        TOP + ph / 2.0
    );
    // The two series and the legend.
    for (i, ((r, colour), pts)) in series.iter().zip(&points).enumerate() {
        let path: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            path.join(" ")
        );
        let ly = TOP + 12.0 + 18.0 * i as f64;
        let lx = W - RIGHT - 260.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="3"/><text x="{}" y="{}">{} (p50 {:.1} ms, p99 {:.1} ms)</text>"#,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            r.name,
            r.lag(0.5),
            r.lag(0.99)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A tick label without needless decimals.
fn trim(v: f64) -> String {
    let t = format!("{v:.3}");
    t.trim_end_matches('0').trim_end_matches('.').to_owned()
}
