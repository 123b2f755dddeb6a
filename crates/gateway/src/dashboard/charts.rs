//! The insights page's charts, drawn here as SVG (plotters), so they read
//! without JavaScript. Colours are mid-tones that stand on a light and a
//! dark page alike; the background is left transparent.

use std::collections::HashMap;

use chrono::{Duration, NaiveDate};
use plotters::prelude::*;

use crate::json::{DayStats, EnvironmentStats};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 240;
/// Axes, grid and labels.
const INK: RGBColor = RGBColor(128, 128, 128);
/// One colour per series or environment, in order.
const PALETTE: [RGBColor; 6] = [
    RGBColor(59, 130, 246),
    RGBColor(234, 88, 12),
    RGBColor(22, 163, 74),
    RGBColor(168, 85, 247),
    RGBColor(219, 39, 119),
    RGBColor(202, 138, 4),
];

/// The colour of series `i`.
pub fn colour(i: usize) -> String {
    let RGBColor(r, g, b) = PALETTE[i % PALETTE.len()];
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// The period's days, oldest first, each with its figures when it had any.
pub struct Days<'a> {
    dates: Vec<NaiveDate>,
    by_date: HashMap<String, &'a DayStats>,
}

impl<'a> Days<'a> {
    /// The `days` days up to `today`.
    pub fn new(today: NaiveDate, days: i32, daily: &'a [DayStats]) -> Self {
        let days = i64::from(days.max(1));
        let dates = (0..days)
            .rev()
            .filter_map(|n| today.checked_sub_signed(Duration::days(n)))
            .collect();
        let by_date = daily.iter().map(|d| (d.date.clone(), d)).collect();
        Days { dates, by_date }
    }

    fn get(&self, i: usize) -> Option<&&'a DayStats> {
        let date = self.dates.get(i)?;
        self.by_date.get(&date.format("%Y-%m-%d").to_string())
    }

    fn label(&self, i: usize) -> String {
        self.dates
            .get(i)
            .map(|d| d.format("%m-%d").to_string())
            .unwrap_or_default()
    }

    fn len(&self) -> usize {
        self.dates.len()
    }
}

/// A drawing failure, rendered as a note where the chart would be.
fn failed(e: impl std::fmt::Display) -> String {
    format!("<p class=\"empty\">chart unavailable: {e}</p>")
}

/// Lines over the days, one per series (`(name, value of day i)`), with
/// `unit` on the y axis.
fn lines(days: &Days<'_>, series: &[(&str, Vec<Option<f64>>)], unit: &str) -> String {
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0.0_f64, |m, v| m.max(*v));
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let mut svg = String::new();
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let n = days.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(48)
            .build_cartesian_2d(0..n, 0.0..top)?;
        chart
            .configure_mesh()
            .axis_style(INK)
            .bold_line_style(INK.mix(0.2))
            .light_line_style(TRANSPARENT)
            .label_style(("sans-serif", 12).into_font().color(&INK))
            .x_labels(n.min(8))
            .x_label_formatter(&|i| days.label(*i))
            .y_desc(unit)
            .draw()?;
        for (k, (name, values)) in series.iter().enumerate() {
            let colour = PALETTE[k % PALETTE.len()];
            let points: Vec<(usize, f64)> = values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (i, v)))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                });
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 2, colour.filled())),
            )?;
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 12).into_font().color(&INK))
                .border_style(INK.mix(0.3))
                .background_style(TRANSPARENT)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()?;
        }
        root.present()?;
        Ok(())
    })();
    match drawn {
        Ok(()) => svg,
        Err(e) => failed(e),
    }
}

/// Build duration p50 and p90 per day, in seconds.
pub fn durations(days: &Days<'_>) -> String {
    let of = |f: fn(&DayStats) -> Option<f64>| -> Vec<Option<f64>> {
        (0..days.len())
            .map(|i| days.get(i).and_then(|d| f(d)))
            .collect()
    };
    lines(
        days,
        &[
            ("p50", of(|d| d.duration_p50_s)),
            ("p90", of(|d| d.duration_p90_s)),
        ],
        "seconds",
    )
}

/// The share of each day's finished builds that succeeded, in percent.
pub fn success(days: &Days<'_>) -> String {
    let rate = (0..days.len())
        .map(|i| {
            days.get(i).and_then(|d| {
                let finished = d.succeeded + d.failed;
                (finished > 0).then(|| 100.0 * d.succeeded as f64 / finished as f64)
            })
        })
        .collect();
    lines(days, &[("success rate", rate)], "percent")
}

/// Each day's deploys, a bar per environment side by side.
pub fn deploys(days: &Days<'_>, environments: &[String]) -> String {
    let max = (0..days.len())
        .filter_map(|i| days.get(i))
        .flat_map(|d| d.environments.iter().map(|e| e.deploys))
        .max()
        .unwrap_or(0);
    let top = (max.max(1) + 1) as f64;
    let envs = environments.len().max(1);
    let mut svg = String::new();
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let n = days.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..n as f64, 0.0..top)?;
        chart
            .configure_mesh()
            .axis_style(INK)
            .bold_line_style(INK.mix(0.2))
            .light_line_style(TRANSPARENT)
            .label_style(("sans-serif", 12).into_font().color(&INK))
            .x_labels(n.min(8))
            .x_label_formatter(&|x| days.label(x.floor() as usize))
            .y_labels(top as usize + 1)
            .y_label_formatter(&|y| format!("{y:.0}"))
            .y_desc("deploys")
            .draw()?;
        let width = 0.8 / envs as f64;
        for (k, env) in environments.iter().enumerate() {
            let colour = PALETTE[k % PALETTE.len()];
            let bars: Vec<Rectangle<(f64, f64)>> = (0..days.len())
                .filter_map(|i| {
                    let count = days
                        .get(i)?
                        .environments
                        .iter()
                        .find(|e| &e.environment == env)?
                        .deploys;
                    let x = i as f64 + 0.1 + width * k as f64;
                    Some(Rectangle::new(
                        [(x, 0.0), (x + width, count as f64)],
                        colour.filled(),
                    ))
                })
                .collect();
            chart
                .draw_series(bars)?
                .label(env.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled())
                });
        }
        if !environments.is_empty() {
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 12).into_font().color(&INK))
                .border_style(INK.mix(0.3))
                .background_style(TRANSPARENT)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()?;
        }
        root.present()?;
        Ok(())
    })();
    match drawn {
        Ok(()) => svg,
        Err(e) => failed(e),
    }
}

/// One horizontal bar per environment (`None`: no bar, "n/a"), each
/// named on its left.
pub fn per_environment(
    environments: &[EnvironmentStats],
    value: fn(&EnvironmentStats) -> Option<f64>,
    label: fn(f64) -> String,
) -> String {
    let rows = environments.len().max(1);
    let height = 28 * rows as u32 + 16;
    let max = environments
        .iter()
        .filter_map(value)
        .fold(0.0_f64, f64::max);
    let right = if max > 0.0 { max * 1.4 } else { 1.0 };
    // The names take the left third of the width.
    let left = right / 2.0;
    let font = ("sans-serif", 12).into_font().color(&INK);
    let mut svg = String::new();
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, (WIDTH / 2, height)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .build_cartesian_2d(-left..right, 0.0..rows as f64)?;
        for (i, env) in environments.iter().enumerate() {
            let y = (rows - i - 1) as f64;
            let colour = PALETTE[i % PALETTE.len()];
            chart.draw_series(std::iter::once(Text::new(
                env.environment.clone(),
                (-left, y + 0.65),
                font.clone(),
            )))?;
            let text = match value(env) {
                Some(v) => {
                    chart.draw_series(std::iter::once(Rectangle::new(
                        [(0.0, y + 0.2), (v, y + 0.8)],
                        colour.filled(),
                    )))?;
                    label(v)
                }
                None => "n/a".to_owned(),
            };
            let at = value(env).unwrap_or(0.0) + right * 0.02;
            chart.draw_series(std::iter::once(Text::new(
                text,
                (at, y + 0.65),
                font.clone(),
            )))?;
        }
        root.present()?;
        Ok(())
    })();
    match drawn {
        Ok(()) => svg,
        Err(e) => failed(e),
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::{Days, deploys, durations, per_environment, success};
    use crate::json::{DayDeploys, DayStats, EnvironmentStats};

    fn day(date: &str, p50: Option<f64>, dev: i64) -> DayStats {
        DayStats {
            date: date.to_owned(),
            tasks: 3,
            failed: 1,
            duration_p50_s: p50,
            deploys: dev,
            succeeded: 2,
            duration_p90_s: p50.map(|v| v * 2.0),
            environments: vec![DayDeploys {
                environment: "dev".to_owned(),
                deploys: dev,
                failed: 0,
            }],
        }
    }

    #[test]
    fn charts_are_svg_with_their_series_and_days() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 3).expect("date");
        let daily = vec![day("2026-12-01", Some(42.0), 2), day("2026-12-03", None, 1)];
        let days = Days::new(today, 7, &daily);
        for svg in [
            durations(&days),
            success(&days),
            deploys(&days, &["dev".to_owned(), "prod".to_owned()]),
        ] {
            assert!(svg.starts_with("<svg"), "{svg}");
            assert!(svg.contains("12-01") && svg.contains("12-03"), "{svg}");
        }
        assert!(durations(&days).contains("p90"));
        assert!(deploys(&days, &["dev".to_owned()]).contains("<rect"));
        // A day without figures draws nothing, and an empty period still draws.
        let none = Days::new(today, 30, &[]);
        assert!(durations(&none).starts_with("<svg"));
    }

    #[test]
    fn bars_per_environment_say_when_there_is_nothing() {
        let env = |name: &str, cfr: Option<f64>| EnvironmentStats {
            environment: name.to_owned(),
            deploys: 3,
            deploys_per_day: 0.1,
            change_failure_rate: cfr,
            lead_time_p50_s: None,
            mttr_s: None,
            rollbacks: 0,
        };
        let svg = per_environment(
            &[env("dev", Some(0.25)), env("prod", None)],
            |e| e.change_failure_rate,
            |v| format!("{:.0}%", v * 100.0),
        );
        assert!(svg.contains("25%") && svg.contains("n/a"), "{svg}");
        assert!(svg.contains("dev") && svg.contains("prod"), "{svg}");
    }
}
