//! SVG charts of a run (latency second by second) and of a load sweep
//! (latency against offered load), drawn with plotters.

use std::path::Path;

use plotters::prelude::*;

use super::report::Report;

const SIZE: (u32, u32) = (960, 540);
const FONT: (&str, u32) = ("sans-serif", 18);

/// A line of a chart: its name, colour and points.
struct Line<'a> {
    name: &'a str,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
}

/// Draws lines on one chart with axes from 0 to the largest value.
fn chart(
    path: &Path,
    caption: &str,
    x_label: &str,
    y_label: &str,
    lines: &[Line],
) -> Result<(), String> {
    let failed = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    let max = |axis: fn(&(f64, f64)) -> f64| {
        lines
            .iter()
            .flat_map(|l| l.points.iter().map(axis))
            .fold(0.0_f64, f64::max)
            .max(f64::EPSILON)
            * 1.05
    };
    let (x_max, y_max) = (max(|p| p.0), max(|p| p.1));
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, FONT)
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(|e| failed(&e))?;
    for line in lines {
        let colour = line.colour;
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(|e| failed(&e))?
            .label(line.name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], colour.stroke_width(2)));
        chart
            .draw_series(
                line.points
                    .iter()
                    .map(|p| Circle::new(*p, 3, colour.filled())),
            )
            .map_err(|e| failed(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))
}

/// End-to-end latency (p50, p99, max) of the deliveries in each second.
pub fn latency_over_time(report: &Report, path: &Path) -> Result<(), String> {
    let series = |value: fn(&super::report::Second) -> f64| {
        report
            .timeline
            .iter()
            .map(|s| (s.second as f64, value(s)))
            .collect::<Vec<_>>()
    };
    let caption = format!(
        "End-to-end latency over time: {:.0} msg/s offered, {:.0} msg/s in, {:.0} deliveries/s out",
        report.scenario.message_rate, report.ingress_per_sec, report.egress_per_sec
    );
    chart(
        path,
        &caption,
        "seconds since the first message was offered",
        "latency (ms)",
        &[
            Line {
                name: "p50",
                colour: BLUE,
                points: series(|s| s.p50_ms),
            },
            Line {
                name: "p99",
                colour: RED,
                points: series(|s| s.p99_ms),
            },
            Line {
                name: "max",
                colour: RGBColor(150, 150, 150),
                points: series(|s| s.max_ms),
            },
        ],
    )
}

/// End-to-end latency (p50, p99) against the offered load, one point per
/// run of a sweep.
pub fn load_sweep(reports: &[Report], path: &Path) -> Result<(), String> {
    let series = |value: fn(&Report) -> f64| {
        reports
            .iter()
            .map(|r| (r.scenario.message_rate, value(r)))
            .collect::<Vec<_>>()
    };
    chart(
        path,
        "End-to-end latency against offered load",
        "offered load (messages/s)",
        "latency (ms)",
        &[
            Line {
                name: "p50",
                colour: BLUE,
                points: series(|r| r.end_to_end_latency.p50_ms),
            },
            Line {
                name: "p99",
                colour: RED,
                points: series(|r| r.end_to_end_latency.p99_ms),
            },
        ],
    )
}
