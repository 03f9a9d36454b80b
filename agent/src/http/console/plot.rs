//! The overview's throughput plot as inline SVG: produce and fetch bytes per second over the
//! samples kept, newest on the right. Pure string building.

use super::html::bytes;
use super::throughput::Sample;
use std::fmt::Write;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 220.0;
/// Room for the axis labels on the left and below.
const LEFT: f64 = 80.0;
const BOTTOM: f64 = 26.0;
const TOP: f64 = 12.0;
const RIGHT: f64 = 16.0;
const PRODUCE_COLOUR: &str = "#1f77b4";
const FETCH_COLOUR: &str = "#e8702a";

/// An SVG plot of `samples` (oldest first) spanning `window_seconds`.
pub fn throughput(samples: &[Sample], window_seconds: f64) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         role=\"img\" aria-label=\"produce and fetch bytes per second\" style=\"background:#fff\">"
    );
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let peak = samples.iter().map(|sample| sample.produce_bytes_per_second.max(sample.fetch_bytes_per_second)).fold(0.0, f64::max);
    let top = if peak > 0.0 { peak * 1.1 } else { 1.0 };
    // Grid: four horizontal lines labelled with their rate.
    for step in 0..=4 {
        let fraction = f64::from(step) / 4.0;
        let y = TOP + plot_height * (1.0 - fraction);
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e3e8ef\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#5b6676\">{}/s</text>",
            LEFT + plot_width,
            LEFT - 6.0,
            y + 4.0,
            bytes(top * fraction)
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{LEFT}\" y=\"{:.1}\" font-size=\"11\" fill=\"#5b6676\">−{} min</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#5b6676\">now</text>",
        HEIGHT - 8.0,
        (window_seconds / 60.0).round(),
        LEFT + plot_width,
        HEIGHT - 8.0
    );
    if let Some(newest) = samples.last() {
        let point = |sample: &Sample, value: f64| {
            let age = (newest.unix_ms - sample.unix_ms) as f64 / 1000.0;
            let x = LEFT + plot_width * (1.0 - (age / window_seconds).min(1.0));
            let y = TOP + plot_height * (1.0 - value / top);
            format!("{x:.1},{y:.1}")
        };
        for (colour, value) in [
            (PRODUCE_COLOUR, (|sample: &Sample| sample.produce_bytes_per_second) as fn(&Sample) -> f64),
            (FETCH_COLOUR, |sample: &Sample| sample.fetch_bytes_per_second),
        ] {
            let points: Vec<String> = samples.iter().map(|sample| point(sample, value(sample))).collect();
            let _ = write!(svg, "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>", points.join(" "));
        }
    } else {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\" text-anchor=\"middle\" fill=\"#7a8594\">collecting samples…</text>",
            LEFT + plot_width / 2.0,
            TOP + plot_height / 2.0
        );
    }
    // Legend.
    let _ = write!(
        svg,
        "<rect x=\"{0:.1}\" y=\"{1:.1}\" width=\"10\" height=\"10\" fill=\"{PRODUCE_COLOUR}\"/>\
         <text x=\"{2:.1}\" y=\"{3:.1}\" font-size=\"11\">produce</text>\
         <rect x=\"{4:.1}\" y=\"{1:.1}\" width=\"10\" height=\"10\" fill=\"{FETCH_COLOUR}\"/>\
         <text x=\"{5:.1}\" y=\"{3:.1}\" font-size=\"11\">fetch</text></svg>",
        LEFT + 10.0,
        TOP + 2.0,
        LEFT + 24.0,
        TOP + 11.0,
        LEFT + 90.0,
        LEFT + 104.0
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plot_draws_one_line_per_direction_with_a_point_per_sample() {
        let samples: Vec<Sample> = (0..4)
            .map(|index| Sample {
                unix_ms: index * 3_000,
                produce_bytes_per_second: 1_000.0 * index as f64,
                fetch_bytes_per_second: 500.0,
                puts_per_second: 1.0,
            })
            .collect();
        let svg = throughput(&samples, 300.0);
        assert_eq!(svg.matches("<polyline").count(), 2);
        let first_line = svg.split("points=\"").nth(1).expect("a polyline").split('"').next().expect("its points");
        assert_eq!(first_line.split(' ').count(), 4);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }

    #[test]
    fn without_samples_the_plot_says_it_is_collecting() {
        let svg = throughput(&[], 300.0);
        assert!(svg.contains("collecting samples") && !svg.contains("<polyline"));
    }
}
