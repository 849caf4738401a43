//! Small SVG charts for the HTML report, written here: horizontal stacked bars and column
//! histograms with optional markers. Every chart carries a `<title>` (screen readers and
//! tooltips) and the report prints its numbers in a table too. Output is plain text, the same
//! bytes for the same numbers.

use std::fmt::Write as _;

/// Escape text for HTML and SVG (element content and attribute values).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// One horizontal bar: a label and its segments (value, series index).
pub struct Bar {
    pub label: String,
    pub values: Vec<u64>,
}

/// A legend entry: series name and its CSS class (which sets the fill).
pub struct Series {
    pub name: &'static str,
    pub class: &'static str,
}

const LABEL_WIDTH: u32 = 230;
const BAR_WIDTH: u32 = 520;
const ROW: u32 = 22;

/// Horizontal stacked bars, one per label, scaled to the largest total.
pub fn stacked_bars(title: &str, bars: &[Bar], series: &[Series]) -> String {
    let max = bars
        .iter()
        .map(|b| b.values.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let height = ROW * (bars.len() as u32 + 1) + 10;
    let width = LABEL_WIDTH + BAR_WIDTH + 110;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\"><title>{}</title>",
        esc(title)
    );
    // Legend.
    let mut x = LABEL_WIDTH;
    for sr in series {
        let _ = write!(
            s,
            "<rect class=\"{}\" x=\"{x}\" y=\"4\" width=\"12\" height=\"12\"/><text x=\"{}\" y=\"15\">{}</text>",
            sr.class,
            x + 16,
            esc(sr.name)
        );
        x += 20 + 8 * sr.name.len() as u32;
    }
    for (i, b) in bars.iter().enumerate() {
        let y = ROW * (i as u32 + 1) + 4;
        let total: u64 = b.values.iter().sum();
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            LABEL_WIDTH - 8,
            y + 14,
            esc(&b.label)
        );
        let mut x = LABEL_WIDTH as f64;
        for (j, &v) in b.values.iter().enumerate() {
            let w = v as f64 / max as f64 * BAR_WIDTH as f64;
            if v > 0 {
                let class = series.get(j).map_or("s0", |sr| sr.class);
                let name = series.get(j).map_or("", |sr| sr.name);
                let _ = write!(
                    s,
                    "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"16\"><title>{}: {} {v}</title></rect>",
                    w.max(1.0),
                    esc(&b.label),
                    esc(name)
                );
            }
            x += w;
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\">{total}</text>",
            x + 6.0,
            y + 13
        );
    }
    s.push_str("</svg>");
    s
}

/// A marker on a histogram: a bucket boundary position (value) and its label.
pub struct Marker {
    pub value: u64,
    pub label: String,
}

/// Columns per bucket of a histogram with bucket upper bounds `bounds` (the last column holds
/// what is above them), with vertical markers at values (placed in the bucket they fall in).
pub fn histogram(title: &str, bounds: &[u64], counts: &[u64], markers: &[Marker]) -> String {
    let n = counts.len() as u32;
    let col = 34u32;
    let (left, top, plot) = (40u32, 18u32, 90u32);
    let width = left + col * n + 20;
    let height = top + plot + 34 + 14 * markers.len() as u32;
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\"><title>{}</title>",
        esc(title)
    );
    let _ = write!(
        s,
        "<line class=\"axis\" x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{max}</text>",
        top + plot,
        left + col * n,
        top + plot,
        left - 4,
        top + 8
    );
    for (i, &c) in counts.iter().enumerate() {
        let h = (c as f64 / max as f64 * plot as f64).round() as u32;
        let x = left + col * i as u32;
        let range = match (i.checked_sub(1).map(|j| bounds[j]), bounds.get(i)) {
            (None, Some(hi)) => format!("≤{hi}"),
            (Some(lo), Some(hi)) => format!("{}–{hi}", lo + 1),
            (Some(lo), None) => format!(">{lo}"),
            (None, None) => String::new(),
        };
        if c > 0 {
            let _ = write!(
                s,
                "<rect class=\"s0\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}: {c}</title></rect>",
                x + 2,
                top + plot - h.max(1),
                col - 4,
                h.max(1),
                esc(&range)
            );
        }
        let tick = bounds.get(i).map_or(String::from("more"), |b| short(*b));
        let _ = write!(
            s,
            "<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x + col / 2,
            top + plot + 12,
            esc(&tick)
        );
    }
    for (k, m) in markers.iter().enumerate() {
        let bucket = bounds.partition_point(|&b| b < m.value) as u32;
        let x = left + col * bucket + col / 2;
        let _ = write!(
            s,
            "<line class=\"marker\" x1=\"{x}\" y1=\"{top}\" x2=\"{x}\" y2=\"{}\"/><text class=\"marker-label\" x=\"{left}\" y=\"{}\">▏{}</text>",
            top + plot,
            top + plot + 28 + 14 * k as u32,
            esc(&m.label)
        );
    }
    s.push_str("</svg>");
    s
}

/// 4096 → "4k", 64 → "64".
fn short(v: u64) -> String {
    if v >= 1024 && v.is_multiple_of(1024) {
        format!("{}k", v / 1024)
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_charts_carry_titles() {
        assert_eq!(esc("a<b & \"c\"'"), "a&lt;b &amp; &quot;c&quot;&#39;");
        let svg = stacked_bars(
            "tokens <by> family",
            &[Bar {
                label: "x&y".into(),
                values: vec![3, 0, 1],
            }],
            &[
                Series {
                    name: "train",
                    class: "s0",
                },
                Series {
                    name: "val",
                    class: "s1",
                },
                Series {
                    name: "test",
                    class: "s2",
                },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.contains("<title>tokens &lt;by&gt; family</title>"));
        assert!(svg.contains("x&amp;y") && !svg.contains("x&y"));
        let h = histogram(
            "h",
            &[2, 4],
            &[1, 0, 5],
            &[Marker {
                value: 3,
                label: "ctx".into(),
            }],
        );
        assert!(h.contains("<title>&gt;4: 5</title>") && h.contains("▏ctx"));
    }
}
