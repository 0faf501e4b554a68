//! The page frame the three HTML writers share: one self-contained file, inline CSS, no scripts,
//! no fonts or images fetched from anywhere.

use std::fmt::Write;

use crate::fmt::esc;

const CSS: &str = r#"
:root { color-scheme: light; }
body { margin: 0; background: #f6f7f9; color: #1f2328;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Roboto, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 12px 28px 60px; }
h1 { font-size: 1.65rem; margin: 14px 0 2px; }
h2 { font-size: 1.25rem; margin: 30px 0 8px; padding-bottom: 4px; border-bottom: 2px solid #d8dee4; }
h3 { font-size: 1.05rem; margin: 18px 0 6px; }
.sub { color: #59636e; margin: 0 0 10px; }
.howto { background: #eef4fb; border-left: 4px solid #4a86c8; padding: 8px 14px; margin: 10px 0; }
.howto p { margin: 4px 0; }
.verdict { padding: 12px 16px; border-radius: 6px; font-weight: 600; font-size: 1.1rem; margin: 12px 0; }
.verdict .detail { display: block; font-weight: 400; font-size: .92rem; margin-top: 2px; }
.verdict.ok { background: #e4f4e8; color: #17612e; border: 1px solid #9ccfa9; }
.verdict.bad { background: #fdeceb; color: #a0231a; border: 1px solid #efa59e; }
.verdict.warn { background: #fff6dc; color: #7a5300; border: 1px solid #e8cf83; }
nav { margin: 8px 0; font-size: .95rem; }
nav a { margin-right: 14px; }
a { color: #0b5cad; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; background: #fff; font-size: .88rem; margin: 4px 0 10px; }
th, td { padding: 4px 9px; border-bottom: 1px solid #e4e7eb; text-align: left; vertical-align: top; }
th { background: #eef1f4; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.bad { background: #fdeceb; color: #a0231a; font-weight: 600; }
td.good { color: #17612e; }
td.flag { color: #a0231a; font-weight: 700; text-align: center; }
tr:hover td { background: #f7fafc; }
tr.constant td { color: #8b949e; }
tr.flagged td { background: #fff8e6; }
.cellnote { display: block; font-size: .8rem; color: #a0231a; }
.plots { display: flex; flex-direction: column; gap: 14px; }
figure { margin: 0; background: #fff; border: 1px solid #e1e4e8; border-radius: 5px; padding: 6px;
  display: flex; flex-wrap: wrap; align-items: flex-start; gap: 4px 18px; }
figure svg { display: block; flex: 0 1 auto; max-width: 100%; height: auto; }
figcaption { flex: 1 1 220px; font-size: .9rem; color: #444c56; padding: 40px 6px 4px; }
figcaption .measure { display: block; margin-top: 6px; color: #6e7781; font-size: .82rem; }
.plots.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); }
.plots.grid figure { flex-direction: column; align-items: stretch; }
.plots.grid figure svg { width: 100%; }
.plots.grid figcaption { flex: 0 0 auto; padding-top: 2px; }
.timeline-box { background: #fff; border: 1px solid #e1e4e8; border-radius: 5px; padding: 6px; }
.timeline-box svg { display: block; width: 100%; height: auto; }
.dag { max-height: 720px; overflow: auto; background: #fff; border: 1px solid #e1e4e8; border-radius: 5px; padding: 6px; }
.dag svg { max-width: 100%; height: auto; }
.note { color: #59636e; font-size: .9rem; }
details { margin: 8px 0; }
summary { cursor: pointer; font-weight: 600; }
pre { background: #fff; border: 1px solid #e1e4e8; border-radius: 5px; padding: 10px 12px;
  overflow-x: auto; font-size: .84rem; line-height: 1.4; }
code { font-size: .9em; }
footer { margin-top: 40px; color: #8b949e; font-size: .8rem; }
"#;

/// A complete HTML document.
pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n\
         <footer>Written by roomsim-analysis {} from the files beside this page; \
         nothing in it is fetched from the network.</footer>\n</main>\n</body>\n</html>\n",
        esc(title),
        env!("CARGO_PKG_VERSION"),
    )
}

/// A table cell: HTML content and a class (`num`, `bad`, ...; may be empty).
pub(crate) struct Cell {
    pub html: String,
    pub class: &'static str,
}

impl Cell {
    pub fn text(s: &str) -> Self {
        Cell { html: esc(s), class: "" }
    }
    pub fn num(s: String) -> Self {
        Cell { html: esc(&s), class: "num" }
    }
    /// Adds a class (`bad`, `good`, ...), keeping numbers right-aligned.
    pub fn with_class(mut self, class: &'static str) -> Self {
        self.class = match (self.class, class) {
            ("num", "bad") => "num bad",
            ("num", "good") => "num good",
            (_, c) => c,
        };
        self
    }
}

/// A scrollable table. Headers are escaped; `_` in them may break lines.
pub(crate) fn table(headers: &[(String, &'static str)], rows: &[Vec<Cell>]) -> String {
    table_with_row_classes(headers, rows, &[])
}

/// [`table`] with a class per row (`row_classes[i]` for row i; missing or empty: none).
pub(crate) fn table_with_row_classes(
    headers: &[(String, &'static str)],
    rows: &[Vec<Cell>],
    row_classes: &[&str],
) -> String {
    let mut out = String::from("<div class=\"scroll\"><table>\n<thead><tr>");
    for (h, class) in headers {
        let breakable = esc(h).replace('_', "_<wbr>").replace('.', ".<wbr>");
        let _ = write!(out, "<th class=\"{class}\">{breakable}</th>");
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (i, row) in rows.iter().enumerate() {
        match row_classes.get(i).filter(|c| !c.is_empty()) {
            Some(class) => {
                let _ = write!(out, "<tr class=\"{class}\">");
            }
            None => out.push_str("<tr>"),
        }
        for c in row {
            if c.class.is_empty() {
                let _ = write!(out, "<td>{}</td>", c.html);
            } else {
                let _ = write!(out, "<td class=\"{}\">{}</td>", c.class, c.html);
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
    out
}

/// A chart with its caption (HTML, already escaped); no caption element when empty.
pub(crate) fn figure(svg: &str, caption_html: &str) -> String {
    if caption_html.is_empty() {
        return format!("<figure>{svg}</figure>\n");
    }
    format!("<figure>{svg}<figcaption>{caption_html}</figcaption></figure>\n")
}
