//! A self-contained SVG line chart of each domain's share (percent of one
//! CPU) per sampling window over the run: plain SVG text, no dependencies.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::report::Report;

/// Line colours, cycled over the domains.
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 48.0;

/// Writes the shares-over-time chart of `report` as SVG.
pub fn write_svg(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    out.write_all(render(report).as_bytes())
}

/// The chart as SVG text.
pub fn render(report: &Report) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let peak = report
        .samples
        .iter()
        .flatten()
        .copied()
        .fold(100.0_f64, f64::max);
    // The y axis ends at the next multiple of 50 %.
    let y_max = (peak / 50.0).ceil() * 50.0;
    let duration_s = report.duration_ns as f64 / 1e9;
    let x = |t_s: f64| {
        LEFT + plot_w
            * if duration_s > 0.0 {
                t_s / duration_s
            } else {
                0.0
            }
    };
    let y = |pct: f64| TOP + plot_h * (1.0 - pct / y_max);

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(
        svg,
        "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"24\" font-size=\"15\">{} on {} CPUs: share per domain (% of one CPU), {} ms windows</text>",
        escape(&report.policy),
        report.cpus,
        report.sample_ns / 1_000_000
    );
    // Horizontal grid lines and labels every 25 % (50 % past 200 %).
    let step = if y_max > 200.0 { 50.0 } else { 25.0 };
    let mut level = 0.0;
    while level <= y_max + 1e-9 {
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{level}%</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            y(level) + 4.0,
            yy = y(level)
        );
        level += step;
    }
    // Time ticks: about ten.
    let tick_s = nice_step(duration_s / 10.0);
    let mut t = 0.0;
    while t <= duration_s + 1e-9 && tick_s > 0.0 {
        let _ = writeln!(
            svg,
            "<line x1=\"{xx:.1}\" y1=\"{:.1}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>\
             <text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + plot_h,
            TOP + plot_h + 5.0,
            TOP + plot_h + 18.0,
            trim(t),
            xx = x(t)
        );
        t += tick_s;
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">time (s)</text>\n\
         <rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#333\"/>",
        LEFT + plot_w / 2.0,
        HEIGHT - 10.0
    );
    let window_s = report.sample_ns as f64 / 1e9;
    for (index, domain) in report.domains.iter().enumerate() {
        let colour = PALETTE[index % PALETTE.len()];
        let mut points = String::new();
        for (w, row) in report.samples.iter().enumerate() {
            let mid = ((w as f64 + 0.5) * window_s).min(duration_s);
            let _ = write!(points, "{:.1},{:.1} ", x(mid), y(row[index]));
        }
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            points.trim_end()
        );
        let legend_y = TOP + 10.0 + 20.0 * index as f64;
        let legend_x = LEFT + plot_w + 16.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{legend_x}\" y1=\"{legend_y}\" x2=\"{:.1}\" y2=\"{legend_y}\" stroke=\"{colour}\" stroke-width=\"3\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{} {:.1}%</text>",
            legend_x + 20.0,
            legend_x + 26.0,
            legend_y + 4.0,
            escape(&domain.name),
            domain.share_pct
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 0.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    for factor in [1.0, 2.0, 5.0, 10.0] {
        if factor * magnitude >= raw {
            return factor * magnitude;
        }
    }
    10.0 * magnitude
}

/// A tick label without needless decimals.
fn trim(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps() {
        assert!((nice_step(0.3) - 0.5).abs() < 1e-12);
        assert!((nice_step(0.1) - 0.1).abs() < 1e-12);
        assert!((nice_step(1.7) - 2.0).abs() < 1e-12);
        assert_eq!(nice_step(0.0), 0.0);
    }

    #[test]
    fn labels_are_trimmed() {
        assert_eq!(trim(1.5), "1.5");
        assert_eq!(trim(2.0), "2");
        assert_eq!(trim(0.25), "0.25");
    }
}
