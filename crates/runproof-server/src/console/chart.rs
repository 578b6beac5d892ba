//! Server-rendered SVG charts: stacked bars of hourly counts per series (an upload's mode, a
//! refusal's code) for the console's overview.
//!
//! Pure: it reads no clock and no store. The caller passes the hourly rows and `now`.
//!
//! Bars: a window of up to 48 hours gets one bar per hour. A longer window (the overview's
//! 7 days) gets one bar per 4 hours, aligned to 00:00, 04:00, … UTC, so a day is six bars and
//! each midnight falls on a bar's edge; one bar per hour would be 168 slivers under 4 units
//! wide. The last bar is the one that holds `now`, and the window is as many bars as cover
//! `hours`; so a 7-day chart is 42 bars reaching back between 165 and 168 hours, and its last
//! bar may end up to 3 hours after `now`.
//!
//! Security: series labels come from outsiders (a mode or a code a request carried). Every
//! text and attribute value reaches the markup through askama's HTML escaper; numbers and
//! colours too. Colours and fonts are presentation attributes from a fixed palette, never
//! `style` (the console's Content-Security-Policy forbids inline styles). The output holds no
//! script, no event attribute and no link; tooltips are `<title>` elements, so they need no
//! script either.

use std::collections::BTreeMap;
use std::fmt;

use askama::Template;

/// One row of hourly counts: the hour's start (unix seconds, UTC), the series label (a mode
/// or a code; `None` is drawn as "(none)") and the count. Several rows may share an hour and
/// a label; they add up.
pub(crate) type HourRow<'a> = (i64, Option<&'a str>, u64);

/// The Okabe–Ito palette, which stays distinguishable under the common colour-vision
/// deficiencies. Its black is left out: it reads as an axis.
const PALETTE: [&str; 7] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442",
];

/// The colour of the series that sums those past the cap.
const OTHER_COLOUR: &str = "#999999";

/// The most series a chart draws apart, one per palette colour. Smaller series are summed into
/// one drawn as "(other)".
pub(crate) const MAX_SERIES: usize = PALETTE.len();

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;
/// Windows up to this many hours get hourly bars; longer ones get 4-hour bars.
const HOURLY_UP_TO: u32 = 48;
const WIDE_BAR_HOURS: u32 = 4;
/// A month of 4-hour bars is still over 3 units wide; past that, bars would vanish.
const MAX_HOURS: u32 = 31 * 24;

// Geometry, in SVG user units.
const WIDTH: f64 = 720.0;
const PLOT_LEFT: f64 = 48.0;
const PLOT_RIGHT: f64 = 712.0;
const PLOT_TOP: f64 = 12.0;
const PLOT_BOTTOM: f64 = 172.0;
const X_TICK_LENGTH: f64 = 4.0;
const X_LABEL_Y: f64 = 188.0;
const LEGEND_TOP: f64 = 212.0;
const LEGEND_ROW: f64 = 18.0;
/// A rough average glyph width at font-size 11, to lay out the legend without measuring.
const CHAR_WIDTH: f64 = 6.5;
/// Legend names are cut here (the full name is in the item's tooltip).
const LEGEND_NAME_CHARS: usize = 32;
/// Tooltip names are cut here: a label is a code or a mode, not an essay.
const TIP_NAME_CHARS: usize = 200;
/// Day labels closer than this are thinned out.
const MIN_DAY_LABEL_SPACING: f64 = 84.0;

/// Renders one chart as an inline `<svg>` element with `id`, titled `title`, from `rows` over
/// the window of `hours` (1 to 744; outside that it is clamped) ending with the bar that holds
/// `now` (unix seconds). Rows outside the window and rows counting 0 are ignored. The
/// `max_series` largest series by total (at most [`MAX_SERIES`]) are drawn apart, the rest
/// summed into "(other)". With no count in the window it draws the axes and "no data in
/// this window".
///
/// `id` should be a token (letters, digits, `-`, `_`); other characters are replaced by `-`.
///
/// # Errors
///
/// Returns the template's error if rendering fails (it only can if formatting fails).
pub(crate) fn render(
    id: &str,
    title: &str,
    rows: &[HourRow<'_>],
    now: i64,
    hours: u32,
    max_series: usize,
) -> Result<String, askama::Error> {
    let window = Window::new(now, hours);
    let series = collect_series(rows, &window, max_series);
    build(id, title, &window, &series).render()
}

/// The length of each bar of a window of `hours` (clamped as in [`render`]), in seconds: the
/// bucket a store sums its counts into for this chart.
pub(crate) fn bar_seconds(hours: u32) -> u32 {
    u32::try_from(Window::new(0, hours).bar).unwrap_or(u32::MAX)
}

/// The first instant of a window of `hours` ending with the bar that holds `now`.
pub(crate) fn window_start(now: i64, hours: u32) -> i64 {
    Window::new(now, hours).start
}

/// A chart with no data: the axes and time labels of its window and the text "no data in this
/// window". [`render`] draws one when no row counts in the window; a page draws one directly
/// when it has no rows to give.
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct EmptyChart<'a> {
    /// The `<svg>` element's id; a token, as for [`render`].
    pub(crate) id: &'a str,
    /// The chart's title, for assistive technology and as the SVG's tooltip.
    pub(crate) title: &'a str,
    /// The instant the window ends with (unix seconds).
    pub(crate) now: i64,
    /// The window's length in hours, as for [`render`].
    pub(crate) hours: u32,
}

#[cfg(test)]
impl EmptyChart<'_> {
    /// Renders the empty chart as an inline `<svg>` element.
    ///
    /// # Errors
    ///
    /// Returns the template's error if rendering fails (it only can if formatting fails).
    pub(crate) fn render(&self) -> Result<String, askama::Error> {
        build(self.id, self.title, &Window::new(self.now, self.hours), &[]).render()
    }
}

/// The bars a chart spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    /// The first bar's start (unix seconds).
    start: i64,
    /// Each bar's length in seconds.
    bar: i64,
    /// How many bars.
    bars: usize,
    /// The window's length as asked for, for the chart's description.
    hours: u32,
}

impl Window {
    fn new(now: i64, hours: u32) -> Self {
        let hours = hours.clamp(1, MAX_HOURS);
        let bar_hours = if hours <= HOURLY_UP_TO {
            1
        } else {
            WIDE_BAR_HOURS
        };
        let bars = hours.div_ceil(bar_hours);
        let bar = i64::from(bar_hours) * HOUR;
        let end = now.div_euclid(bar).saturating_add(1).saturating_mul(bar);
        Self {
            start: end.saturating_sub(bar.saturating_mul(i64::from(bars))),
            bar,
            // `bars` is at most MAX_HOURS, so it fits any usize.
            bars: usize::try_from(bars).unwrap_or(usize::MAX),
            hours,
        }
    }

    /// The bar holding instant `t`, if it is in the window.
    fn index(&self, t: i64) -> Option<usize> {
        let offset = i128::from(t) - i128::from(self.start);
        if offset < 0 {
            return None;
        }
        usize::try_from(offset / i128::from(self.bar))
            .ok()
            .filter(|i| *i < self.bars)
    }

    fn bar_start(&self, i: usize) -> i64 {
        let i = i64::try_from(i).unwrap_or(i64::MAX);
        self.start.saturating_add(self.bar.saturating_mul(i))
    }

    fn end(&self) -> i64 {
        self.bar_start(self.bars)
    }
}

/// Who a series is. `Other` sorts last among equal totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SeriesKey<'a> {
    Label(&'a str),
    Unlabelled,
    Other,
}

impl SeriesKey<'_> {
    fn name(&self) -> &str {
        match self {
            SeriesKey::Label(label) => label,
            SeriesKey::Unlabelled => "(none)",
            SeriesKey::Other => "(other)",
        }
    }
}

/// One series' counts, bar by bar.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Series<'a> {
    key: SeriesKey<'a>,
    counts: Vec<u64>,
    total: u64,
}

/// Sums `rows` into series over `window`, largest total first (ties by label), keeping
/// `max_series` (at most [`MAX_SERIES`]) and summing the rest into one `Other` series, last.
fn collect_series<'a>(rows: &[HourRow<'a>], window: &Window, max_series: usize) -> Vec<Series<'a>> {
    let mut by_key: BTreeMap<SeriesKey<'a>, Vec<u64>> = BTreeMap::new();
    for &(hour, label, count) in rows {
        if count == 0 {
            continue;
        }
        let Some(i) = window.index(hour) else {
            continue;
        };
        let key = label.map_or(SeriesKey::Unlabelled, SeriesKey::Label);
        let counts = by_key.entry(key).or_insert_with(|| vec![0; window.bars]);
        if let Some(slot) = counts.get_mut(i) {
            *slot = slot.saturating_add(count);
        }
    }
    let mut series: Vec<Series<'a>> = by_key
        .into_iter()
        .map(|(key, counts)| Series {
            key,
            total: sum(counts.iter().copied()),
            counts,
        })
        .collect();
    series.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.key.cmp(&b.key)));
    let keep = max_series.min(MAX_SERIES);
    if series.len() > keep {
        let rest = series.split_off(keep);
        let mut counts = vec![0u64; window.bars];
        for small in &rest {
            for (slot, count) in counts.iter_mut().zip(&small.counts) {
                *slot = slot.saturating_add(*count);
            }
        }
        series.push(Series {
            key: SeriesKey::Other,
            total: sum(counts.iter().copied()),
            counts,
        });
    }
    series
}

fn sum(counts: impl Iterator<Item = u64>) -> u64 {
    counts.fold(0, u64::saturating_add)
}

/// The y axis's ticks: 0 up to the first at or above `max`, in at most 5 steps of 1, 2 or 5
/// times a power of ten.
fn axis_ticks(max: u64) -> Vec<u64> {
    if max == 0 {
        return vec![0];
    }
    let mut magnitude: u64 = 1;
    let step = loop {
        let fits = [1, 2, 5]
            .into_iter()
            .filter_map(|m| magnitude.checked_mul(m))
            .find(|step| max.div_ceil(*step) <= 5);
        if let Some(step) = fits {
            break step;
        }
        match magnitude.checked_mul(10) {
            Some(next) => magnitude = next,
            None => break max,
        }
    };
    (0..=max.div_ceil(step))
        .map(|i| i.saturating_mul(step))
        .collect()
}

/// A tick's label: `1.5k` rather than `1500`, so the axis stays narrow.
fn compact(n: u64) -> String {
    let (unit, suffix) = match n {
        1_000_000.. if n.is_multiple_of(100_000) => (1_000_000, "M"),
        1_000.. if n.is_multiple_of(100) => (1_000, "k"),
        _ => return n.to_string(),
    };
    let tenths = n / (unit / 10);
    if tenths.is_multiple_of(10) {
        format!("{}{suffix}", tenths / 10)
    } else {
        format!("{}.{}{suffix}", tenths / 10, tenths % 10)
    }
}

/// A coordinate, printed to a tenth of a unit.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Px(f64);

impl fmt::Display for Px {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Adding 0.0 turns -0.0 into 0.0.
        let tenths = if self.0.is_finite() {
            (self.0 * 10.0).round() + 0.0
        } else {
            0.0
        };
        if tenths % 10.0 == 0.0 {
            write!(f, "{}", tenths / 10.0)
        } else {
            write!(f, "{:.1}", tenths / 10.0)
        }
    }
}

#[derive(Debug, Template)]
#[template(path = "console/chart.svg")]
struct ChartSvg<'a> {
    id: String,
    title: &'a str,
    desc: String,
    width: Px,
    height: Px,
    plot: Plot,
    y_label_x: Px,
    y_ticks: Vec<YTick>,
    segments: Vec<Segment>,
    x_ticks: Vec<Px>,
    x_tick_end: Px,
    x_label_y: Px,
    x_labels: Vec<XLabel>,
    empty: bool,
    legend: Vec<LegendItem>,
}

#[derive(Debug)]
struct Plot {
    left: Px,
    right: Px,
    top: Px,
    bottom: Px,
    middle_x: Px,
    middle_y: Px,
}

#[derive(Debug)]
struct YTick {
    y: Px,
    label: String,
}

/// One series' part of one bar.
#[derive(Debug)]
struct Segment {
    x: Px,
    y: Px,
    width: Px,
    height: Px,
    colour: &'static str,
    /// Plain text (series, time, count); the template escapes it.
    tip: String,
}

#[derive(Debug)]
struct XLabel {
    x: Px,
    text: String,
}

#[derive(Debug)]
struct LegendItem {
    x: Px,
    y: Px,
    swatch_y: Px,
    text_x: Px,
    colour: &'static str,
    name: String,
    full_name: String,
    total: u64,
}

fn build<'a>(id: &str, title: &'a str, window: &Window, series: &[Series<'_>]) -> ChartSvg<'a> {
    let colours: Vec<&'static str> = series
        .iter()
        .enumerate()
        .map(|(i, s)| match s.key {
            SeriesKey::Other => OTHER_COLOUR,
            _ => PALETTE.get(i).copied().unwrap_or(OTHER_COLOUR),
        })
        .collect();
    let stacked: Vec<u64> = (0..window.bars)
        .map(|i| sum(series.iter().filter_map(|s| s.counts.get(i).copied())))
        .collect();
    let ticks = axis_ticks(stacked.iter().copied().max().unwrap_or(0));
    let top = ticks.last().copied().unwrap_or(0);
    let plot_height = PLOT_BOTTOM - PLOT_TOP;
    let y_of = |v: u64| {
        if top == 0 {
            PLOT_BOTTOM
        } else {
            PLOT_BOTTOM - (v as f64 / top as f64) * plot_height
        }
    };
    let slot = (PLOT_RIGHT - PLOT_LEFT) / window.bars as f64;

    let mut segments = Vec::new();
    for i in 0..window.bars {
        let mut base = 0u64;
        let range = bar_range(window.bar_start(i), window.bar);
        for (s, colour) in series.iter().zip(&colours) {
            let count = s.counts.get(i).copied().unwrap_or(0);
            if count == 0 {
                continue;
            }
            let bottom = y_of(base);
            base = base.saturating_add(count);
            let top = y_of(base);
            segments.push(Segment {
                x: Px(PLOT_LEFT + slot * (i as f64 + 0.1)),
                y: Px(top),
                width: Px(slot * 0.8),
                height: Px(bottom - top),
                colour,
                tip: format!(
                    "{}, {range}: {count}",
                    display_name(s.key.name(), TIP_NAME_CHARS)
                ),
            });
        }
    }

    let (x_ticks, x_labels) = if window.bar == HOUR {
        hour_labels(window, slot)
    } else {
        day_labels(window)
    };

    let (legend, legend_rows) = legend(series, &colours);
    let height = if legend_rows == 0 {
        LEGEND_TOP - LEGEND_ROW
    } else {
        LEGEND_TOP + LEGEND_ROW * (legend_rows - 1) as f64 + 8.0
    };

    let total = sum(series.iter().map(|s| s.total));
    let span = if window.hours.is_multiple_of(24) && window.hours > 24 {
        format!("{} days", window.hours / 24)
    } else {
        format!("{} hours", window.hours)
    };
    let bars = if window.bar == HOUR {
        "hourly bars".to_owned()
    } else {
        format!("{}-hour bars", window.bar / HOUR)
    };
    let desc = if series.is_empty() {
        format!("No data in the last {span}.")
    } else {
        format!(
            "{total} in the last {span}, in {bars} (UTC), in {} series.",
            series.len()
        )
    };

    ChartSvg {
        id: token(id),
        title,
        desc,
        width: Px(WIDTH),
        height: Px(height),
        plot: Plot {
            left: Px(PLOT_LEFT),
            right: Px(PLOT_RIGHT),
            top: Px(PLOT_TOP),
            bottom: Px(PLOT_BOTTOM),
            middle_x: Px((PLOT_LEFT + PLOT_RIGHT) / 2.0),
            middle_y: Px((PLOT_TOP + PLOT_BOTTOM) / 2.0),
        },
        y_label_x: Px(PLOT_LEFT - 6.0),
        y_ticks: ticks
            .iter()
            .map(|v| YTick {
                y: Px(y_of(*v)),
                label: compact(*v),
            })
            .collect(),
        segments,
        x_ticks,
        x_tick_end: Px(PLOT_BOTTOM + X_TICK_LENGTH),
        x_label_y: Px(X_LABEL_Y),
        x_labels,
        empty: series.is_empty(),
        legend,
    }
}

/// Hourly bars: a tick and a label every 3 hours (every hour for short windows), the date at
/// midnight.
fn hour_labels(window: &Window, slot: f64) -> (Vec<Px>, Vec<XLabel>) {
    let every = if window.bars <= 12 { 1 } else { 3 };
    let mut ticks = Vec::new();
    let mut labels = Vec::new();
    for i in 0..window.bars {
        let at = Civil::of(window.bar_start(i));
        if at.hour % every != 0 {
            continue;
        }
        let x = Px(PLOT_LEFT + slot * i as f64);
        ticks.push(x);
        let text = if at.hour == 0 {
            format!("{} {}", at.month_name(), at.day)
        } else {
            format!("{:02}:00", at.hour)
        };
        labels.push(XLabel { x, text });
    }
    (ticks, labels)
}

/// Wide bars: a tick at each midnight and the day's name under each day that shows at least
/// half, thinned out when days are narrow.
fn day_labels(window: &Window) -> (Vec<Px>, Vec<XLabel>) {
    let (start, end) = (window.start, window.end());
    let span = (end - start) as f64;
    let x_of = |t: i64| Px(PLOT_LEFT + (t - start) as f64 / span * (PLOT_RIGHT - PLOT_LEFT));
    let day_width = DAY as f64 / span * (PLOT_RIGHT - PLOT_LEFT);
    let every = (MIN_DAY_LABEL_SPACING / day_width).ceil().max(1.0) as i64;
    let mut ticks = Vec::new();
    let mut labels = Vec::new();
    let mut day = start.div_euclid(DAY);
    while day.saturating_mul(DAY) < end {
        let midnight = day.saturating_mul(DAY);
        if midnight > start {
            ticks.push(x_of(midnight));
        }
        let (from, to) = (midnight.max(start), midnight.saturating_add(DAY).min(end));
        if to - from >= DAY / 2 && day.rem_euclid(every) == 0 {
            let at = Civil::of(midnight);
            labels.push(XLabel {
                x: x_of(from + (to - from) / 2),
                text: format!("{} {} {}", at.weekday_name(), at.month_name(), at.day),
            });
        }
        day += 1;
    }
    (ticks, labels)
}

/// The legend's items, laid out left to right and wrapped, and how many rows they take.
fn legend(series: &[Series<'_>], colours: &[&'static str]) -> (Vec<LegendItem>, usize) {
    let mut items = Vec::new();
    let (mut x, mut row) = (PLOT_LEFT, 0usize);
    for (s, colour) in series.iter().zip(colours) {
        let name = display_name(s.key.name(), LEGEND_NAME_CHARS);
        let chars = name.chars().count() + 1 + s.total.to_string().len();
        let width = 14.0 + chars as f64 * CHAR_WIDTH + 16.0;
        if x + width > WIDTH && x > PLOT_LEFT {
            x = PLOT_LEFT;
            row += 1;
        }
        let y = LEGEND_TOP + LEGEND_ROW * row as f64;
        items.push(LegendItem {
            x: Px(x),
            y: Px(y),
            swatch_y: Px(y - 9.0),
            text_x: Px(x + 14.0),
            colour,
            name,
            full_name: display_name(s.key.name(), TIP_NAME_CHARS),
            total: s.total,
        });
        x += width;
    }
    let rows = if items.is_empty() { 0 } else { row + 1 };
    (items, rows)
}

/// A label as shown: control characters replaced, cut to `max` characters.
fn display_name(name: &str, max: usize) -> String {
    let clean = name
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c });
    if name.chars().count() > max {
        clean.take(max.saturating_sub(1)).chain(['…']).collect()
    } else {
        clean.collect()
    }
}

/// An element id: letters, digits, `-` and `_` kept, anything else made `-`.
fn token(id: &str) -> String {
    let id: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if id.is_empty() {
        "chart".to_owned()
    } else {
        id
    }
}

/// A bar's span for its tooltip: `2026-11-30 14:00–15:00 UTC`.
fn bar_range(start: i64, length: i64) -> String {
    let at = Civil::of(start);
    let end_hour = at.hour + length / HOUR;
    format!(
        "{}-{:02}-{:02} {:02}:00–{:02}:00 UTC",
        at.year, at.month, at.day, at.hour, end_hour
    )
}

/// A UTC calendar date and hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    /// 0 is Sunday.
    weekday: i64,
}

impl Civil {
    /// Howard Hinnant's `civil_from_days`; total over every `i64`.
    fn of(t: i64) -> Self {
        let days = t.div_euclid(DAY);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        Self {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day: doy - (153 * mp + 2) / 5 + 1,
            hour: t.rem_euclid(DAY) / HOUR,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7),
        }
    }

    fn month_name(&self) -> &'static str {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        usize::try_from(self.month - 1)
            .ok()
            .and_then(|i| MONTHS.get(i))
            .copied()
            .unwrap_or("?")
    }

    fn weekday_name(&self) -> &'static str {
        const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
        usize::try_from(self.weekday)
            .ok()
            .and_then(|i| DAYS.get(i))
            .copied()
            .unwrap_or("?")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-30 16:37:20 UTC, a Monday.
    const NOW: i64 = 1_796_056_640;
    /// 2026-11-30 16:00 UTC.
    const THIS_HOUR: i64 = NOW - 37 * 60 - 20;

    /// One tag of the output: its name, whether it closes or closes itself, and its
    /// attribute names.
    #[derive(Debug)]
    struct Tag {
        name: String,
        closing: bool,
        self_closing: bool,
        attributes: Vec<String>,
    }

    /// Splits markup into tags, failing on anything a browser would read as more than one
    /// element or attribute than it seems: a `<` in text, an unquoted value, a quote left open.
    fn tags(svg: &str) -> Vec<Tag> {
        let mut out = Vec::new();
        let mut rest = svg;
        while let Some(open) = rest.find('<') {
            let after = &rest[open + 1..];
            let close = after.find('>').expect("a tag closes");
            let inner = &after[..close];
            rest = &after[close + 1..];
            let (closing, inner) = match inner.strip_prefix('/') {
                Some(inner) => (true, inner),
                None => (false, inner),
            };
            let (self_closing, inner) = match inner.strip_suffix('/') {
                Some(inner) => (true, inner),
                None => (false, inner),
            };
            let name_end = inner
                .find(|c: char| c.is_whitespace())
                .unwrap_or(inner.len());
            let name = inner[..name_end].to_owned();
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()),
                "tag name {name:?}"
            );
            let mut attributes = Vec::new();
            let mut attrs = inner[name_end..].trim_start();
            while !attrs.is_empty() {
                let eq = attrs.find('=').expect("attribute has a value");
                attributes.push(attrs[..eq].to_owned());
                let value = attrs[eq + 1..]
                    .strip_prefix('"')
                    .expect("attribute value is quoted");
                let end = value.find('"').expect("attribute value closes");
                attrs = value[end + 1..].trim_start();
            }
            out.push(Tag {
                name,
                closing,
                self_closing,
                attributes,
            });
        }
        out
    }

    /// The tags nest and close in order, and the whole is one `<svg>`.
    fn assert_balanced(svg: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut roots = 0;
        for tag in tags(svg) {
            if tag.closing {
                assert_eq!(stack.pop().as_deref(), Some(tag.name.as_str()), "{svg}");
            } else {
                if stack.is_empty() {
                    roots += 1;
                    assert_eq!(tag.name, "svg");
                }
                if !tag.self_closing {
                    stack.push(tag.name);
                }
            }
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        assert_eq!(roots, 1);
    }

    fn assert_inert(svg: &str) {
        assert!(!svg.contains("<script"), "{svg}");
        assert!(!svg.contains("<img"), "{svg}");
        assert!(!svg.contains("style="), "{svg}");
        assert!(!svg.contains("href"), "{svg}");
        assert!(!svg.contains("url("), "{svg}");
        for tag in tags(svg) {
            for attribute in &tag.attributes {
                let attribute = attribute.to_ascii_lowercase();
                assert!(!attribute.starts_with("on"), "{attribute} in {svg}");
                assert!(attribute != "style", "{svg}");
            }
        }
        assert_balanced(svg);
    }

    #[test]
    fn an_event_23_hours_ago_lands_in_the_first_hourly_bar() {
        let window = Window::new(NOW, 24);
        assert_eq!(window.bars, 24);
        assert_eq!(window.bar, HOUR);
        assert_eq!(window.start, THIS_HOUR - 23 * HOUR);
        assert_eq!(window.index(THIS_HOUR - 23 * HOUR), Some(0));
        assert_eq!(window.index(NOW - 23 * HOUR), Some(0));
        assert_eq!(window.index(THIS_HOUR - 22 * HOUR), Some(1));
        assert_eq!(window.index(THIS_HOUR), Some(23));
        assert_eq!(window.index(NOW), Some(23));
        assert_eq!(window.index(THIS_HOUR - 24 * HOUR), None);
        assert_eq!(window.index(THIS_HOUR + HOUR), None);
        assert_eq!(window.index(i64::MIN), None);
        assert_eq!(window.index(i64::MAX), None);
    }

    #[test]
    fn seven_days_are_forty_two_four_hour_bars_aligned_to_utc() {
        let window = Window::new(NOW, 168);
        assert_eq!(window.bars, 42);
        assert_eq!(window.bar, 4 * HOUR);
        // The last bar is 16:00–20:00 on Nov 30; the first starts 20:00 on Nov 23.
        assert_eq!(window.end(), THIS_HOUR + 4 * HOUR);
        assert_eq!(window.start, THIS_HOUR + 4 * HOUR - 168 * HOUR);
        assert_eq!(Civil::of(window.start).hour, 20);
        // 23 hours ago is 17:37 on Nov 29, in the bar from 16:00 that day: 140 hours in.
        assert_eq!(window.index(NOW - 23 * HOUR), Some(35));
        assert_eq!(window.index(THIS_HOUR - 23 * HOUR), Some(35));
        assert_eq!(window.index(NOW), Some(41));
        assert_eq!(window.index(window.start - 1), None);
        assert_eq!(window.index(window.end()), None);
    }

    #[test]
    fn windows_are_clamped() {
        assert_eq!(Window::new(NOW, 0).bars, 1);
        assert_eq!(Window::new(NOW, u32::MAX).bars, 186);
        assert_eq!(Window::new(i64::MAX, 24).bars, 24);
        assert_eq!(Window::new(i64::MIN, 168).bars, 42);
        assert!(render("c", "t", &[(i64::MAX, None, 1)], i64::MAX, 168, 6).is_ok());
        assert!(render("c", "t", &[(i64::MIN, None, 1)], i64::MIN, 24, 6).is_ok());
    }

    #[test]
    fn rows_outside_the_window_are_ignored() {
        let window = Window::new(NOW, 24);
        let rows = [
            (THIS_HOUR - 24 * HOUR, Some("token"), 5),
            (THIS_HOUR + HOUR, Some("token"), 7),
            (THIS_HOUR - 2 * HOUR, Some("session"), 0),
        ];
        assert!(collect_series(&rows, &window, 6).is_empty());
        let svg = render("uploads-24h", "Uploads", &rows, NOW, 24, 6).unwrap();
        assert!(svg.contains("no data in this window"), "{svg}");
        assert!(!svg.contains("<rect x"), "{svg}");

        let rows = [
            (THIS_HOUR - 24 * HOUR, Some("token"), 5),
            (THIS_HOUR - 3 * HOUR, Some("token"), 2),
        ];
        let series = collect_series(&rows, &window, 6);
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].total, 2);
        assert_eq!(series[0].counts[20], 2);
    }

    #[test]
    fn bars_stack_and_totals_add_up() {
        let rows = [
            (THIS_HOUR - HOUR, Some("token"), 3),
            (THIS_HOUR - HOUR, Some("session"), 2),
            (THIS_HOUR - HOUR, Some("token"), 1),
            (THIS_HOUR, Some("session"), 6),
            (THIS_HOUR - 5 * HOUR, None, 1),
        ];
        let window = Window::new(NOW, 24);
        let series = collect_series(&rows, &window, 6);
        let summary: Vec<(&str, u64)> = series.iter().map(|s| (s.key.name(), s.total)).collect();
        assert_eq!(summary, [("session", 8), ("token", 4), ("(none)", 1)]);
        assert_eq!(series[0].counts[22], 2);
        assert_eq!(series[1].counts[22], 4);

        let chart = build("c", "t", &window, &series);
        // The tallest bar is 6: the axis runs to 6 in steps of 2.
        let labels: Vec<&str> = chart.y_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["0", "2", "4", "6"]);
        assert_eq!(chart.segments.len(), 4);
        // The two segments of the 15:00 bar stack: session at the bottom, token on top,
        // together 6 units of 6 reaching the top of the plot.
        let bar: Vec<&Segment> = chart
            .segments
            .iter()
            .filter(|s| s.tip.contains("15:00–16:00"))
            .collect();
        assert_eq!(bar.len(), 2);
        assert_eq!(bar[0].y.0 + bar[0].height.0, PLOT_BOTTOM);
        assert!((bar[1].y.0 + bar[1].height.0 - bar[0].y.0).abs() < 1e-9);
        assert!((bar[0].height.0 + bar[1].height.0 - (PLOT_BOTTOM - PLOT_TOP)).abs() < 1e-9);
        assert!((bar[1].height.0 / bar[0].height.0 - 2.0).abs() < 1e-9);

        let svg = chart.render().unwrap();
        assert!(
            svg.contains("<title>token, 2026-11-30 15:00–16:00 UTC: 4</title>"),
            "{svg}"
        );
        assert!(
            svg.contains("session <tspan font-weight=\"bold\">8</tspan>"),
            "{svg}"
        );
        assert!(
            svg.contains("(none) <tspan font-weight=\"bold\">1</tspan>"),
            "{svg}"
        );
        assert!(svg.contains("13 in the last 24 hours"), "{svg}");
        assert!(!svg.contains("no data in this window"));
        assert_inert(&svg);
    }

    #[test]
    fn series_past_the_cap_are_summed_into_other() {
        let labels = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let mut rows: Vec<HourRow<'_>> = labels
            .iter()
            .zip(1u64..)
            .map(|(label, n)| (THIS_HOUR - HOUR, Some(*label), n))
            .collect();
        rows.push((THIS_HOUR, None, 20));
        let window = Window::new(NOW, 24);

        let series = collect_series(&rows, &window, 3);
        let summary: Vec<(&str, u64)> = series.iter().map(|s| (s.key.name(), s.total)).collect();
        assert_eq!(
            summary,
            [("(none)", 20), ("h", 8), ("g", 7), ("(other)", 21)]
        );
        assert_eq!(series[3].counts[22], 21);

        // A cap above the palette is lowered to it: a and b (1 + 2) are folded.
        let series = collect_series(&rows, &window, 100);
        assert_eq!(series.len(), MAX_SERIES + 1);
        assert_eq!(series[MAX_SERIES].key, SeriesKey::Other);
        assert_eq!(series[MAX_SERIES].total, 3);

        let series = collect_series(&rows, &window, 0);
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].total, 56);

        // Exactly at the cap: nothing is folded.
        let series = collect_series(&rows[..3], &window, 3);
        assert!(series.iter().all(|s| s.key != SeriesKey::Other));

        let svg = render("c", "t", &rows, NOW, 24, 3).unwrap();
        assert!(svg.contains("fill=\"#999999\""), "{svg}");
        assert!(svg.contains("(other) <tspan"), "{svg}");
        assert_inert(&svg);
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(axis_ticks(0), [0]);
        assert_eq!(axis_ticks(1), [0, 1]);
        assert_eq!(axis_ticks(5), [0, 1, 2, 3, 4, 5]);
        assert_eq!(axis_ticks(6), [0, 2, 4, 6]);
        assert_eq!(axis_ticks(7), [0, 2, 4, 6, 8]);
        assert_eq!(axis_ticks(11), [0, 5, 10, 15]);
        assert_eq!(axis_ticks(95), [0, 20, 40, 60, 80, 100]);
        assert_eq!(axis_ticks(100), [0, 20, 40, 60, 80, 100]);
        assert_eq!(axis_ticks(101), [0, 50, 100, 150]);
        assert_eq!(axis_ticks(1234), [0, 500, 1000, 1500]);
        assert_eq!(
            axis_ticks(48_000),
            [0, 10_000, 20_000, 30_000, 40_000, 50_000]
        );
        let huge = axis_ticks(u64::MAX);
        assert!(huge.len() <= 6 && huge.last() == Some(&u64::MAX));

        assert_eq!(compact(0), "0");
        assert_eq!(compact(500), "500");
        assert_eq!(compact(1000), "1k");
        assert_eq!(compact(1500), "1.5k");
        assert_eq!(compact(1234), "1234");
        assert_eq!(compact(20_000), "20k");
        assert_eq!(compact(2_500_000), "2.5M");
    }

    #[test]
    fn coordinates_print_to_a_tenth() {
        assert_eq!(Px(48.0).to_string(), "48");
        assert_eq!(Px(12.345).to_string(), "12.3");
        assert_eq!(Px(-0.04).to_string(), "0");
        assert_eq!(Px(f64::NAN).to_string(), "0");
    }

    #[test]
    fn time_labels_are_utc() {
        let at = Civil::of(NOW);
        assert_eq!((at.year, at.month, at.day, at.hour), (2026, 11, 30, 16));
        assert_eq!(at.weekday_name(), "Mon");
        let at = Civil::of(-HOUR);
        assert_eq!((at.year, at.month, at.day, at.hour), (1969, 12, 31, 23));
        let at = Civil::of(951_782_400);
        assert_eq!((at.year, at.month, at.day), (2000, 2, 29));
        assert_eq!(
            bar_range(THIS_HOUR + 4 * HOUR, 4 * HOUR),
            "2026-11-30 20:00–24:00 UTC"
        );

        let day = render("c", "t", &[(THIS_HOUR, Some("token"), 1)], NOW, 24, 6).unwrap();
        assert!(day.contains(">Nov 30</text>"), "{day}");
        assert!(day.contains(">18:00</text>"), "{day}");
        assert!(day.contains(">15:00</text>"), "{day}");
        assert!(!day.contains(">16:00</text>"), "{day}");

        let week = render("c", "t", &[(THIS_HOUR, Some("token"), 1)], NOW, 168, 6).unwrap();
        assert!(week.contains(">Mon Nov 30</text>"), "{week}");
        assert!(week.contains(">Tue Nov 24</text>"), "{week}");
        // Nov 23 shows only its last 4 hours: too little to name.
        assert!(!week.contains("Nov 23"), "{week}");
        assert!(
            week.contains("<title>token, 2026-11-30 16:00–20:00 UTC: 1</title>"),
            "{week}"
        );
        assert!(week.contains("in 4-hour bars"), "{week}");
        assert_inert(&week);
    }

    #[test]
    fn an_empty_chart_keeps_its_axes() {
        let svg = EmptyChart {
            id: "refusals-7d",
            title: "Refusals per hour by code",
            now: NOW,
            hours: 168,
        }
        .render()
        .unwrap();
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.contains("id=\"refusals-7d\""), "{svg}");
        assert!(svg.contains("aria-labelledby=\"refusals-7d-title refusals-7d-desc\""));
        assert!(svg.contains("<title id=\"refusals-7d-title\">Refusals per hour by code</title>"));
        assert!(svg.contains("no data in this window"), "{svg}");
        assert!(svg.contains(">Mon Nov 30</text>"), "{svg}");
        assert!(svg.contains("No data in the last 7 days."), "{svg}");
        assert!(svg.contains("<line x1=\"48\" y1=\"172\" x2=\"712\" y2=\"172\"/>"));
        assert_inert(&svg);
    }

    #[test]
    fn rule_outsider_labels_are_escaped_and_the_chart_is_inert() {
        let hostile = [
            "<img src=x onerror=alert(1)>",
            "\"><script>alert(1)</script>",
            "' onmouseover='alert(1)",
            "a\u{0}b\u{1b}[31m",
        ];
        let rows: Vec<HourRow<'_>> = hostile
            .iter()
            .zip(1u64..)
            .map(|(label, n)| (THIS_HOUR - n as i64 * HOUR, Some(*label), n))
            .collect();
        for hours in [24, 168] {
            let svg = render(
                "x\" onload=\"alert(1)",
                "<script>alert(1)</script>",
                &rows,
                NOW,
                hours,
                6,
            )
            .unwrap();
            assert_inert(&svg);
            assert!(
                svg.contains("&#60;img src=x onerror=alert(1)&#62;"),
                "{svg}"
            );
            assert!(svg.contains("&#34;&#62;&#60;script&#62;"), "{svg}");
            assert!(!svg.contains('\u{0}') && !svg.contains('\u{1b}'), "{svg}");
            assert!(svg.contains("id=\"x--onload--alert-1-\""), "{svg}");
            // Every hostile label shows, as text, in the legend and in a tooltip.
            assert_eq!(svg.matches("&#60;img src=x").count(), 3, "{svg}");
        }
        let empty = EmptyChart {
            id: "<script>",
            title: "<img src=x onerror=alert(1)>",
            now: NOW,
            hours: 24,
        }
        .render()
        .unwrap();
        assert_inert(&empty);
    }
}
