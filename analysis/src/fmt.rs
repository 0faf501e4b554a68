//! Small pure helpers shared by the writers: number formatting, HTML escaping, natural order.

use std::cmp::Ordering;

/// A number for people: integers without decimals, others with about three significant digits
/// and no trailing zeros (`7.5`, `0.0123`, `1235`).
pub(crate) fn num(v: f64) -> String {
    let s = fixed(v);
    if s.contains('.') {
        let t = s.trim_end_matches('0').trim_end_matches('.');
        return if t == "-0" { "0".into() } else { t.to_string() };
    }
    s
}

fn fixed(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v == 0.0 {
        return "0".into();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let a = v.abs();
    let decimals = if a >= 1000.0 {
        0
    } else if a >= 100.0 {
        1
    } else if a >= 10.0 {
        2
    } else if a >= 1.0 {
        3
    } else {
        // three significant digits, at most 9 decimals
        ((-a.log10()).floor() as usize + 3).min(9)
    };
    format!("{v:.decimals$}")
}

/// An axis tick label (the same form as [`num`]).
pub(crate) fn tick(v: f64) -> String {
    num(v)
}

/// Exact machine form for CSV (shortest round-trip), empty for none.
pub(crate) fn csv_num(v: Option<f64>) -> String {
    match v {
        // -0 and 0 print alike
        Some(v) => (if v == 0.0 { 0.0 } else { v }).to_string(),
        None => String::new(),
    }
}

/// Escapes text for HTML element content and double-quoted attributes.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// An HTML id fragment made of `[a-z0-9-]` only.
pub(crate) fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// Orders `hs2` before `hs10`: digit runs compare as numbers, the rest as text.
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) if p.is_ascii_digit() && q.is_ascii_digit() => {
                let nx = x.iter().take_while(|c| c.is_ascii_digit()).count();
                let ny = y.iter().take_while(|c| c.is_ascii_digit()).count();
                let dx = trim_zeros(&x[..nx]);
                let dy = trim_zeros(&y[..ny]);
                let ord = dx.len().cmp(&dy.len()).then_with(|| dx.cmp(dy));
                if ord != Ordering::Equal {
                    return ord;
                }
                x = &x[nx..];
                y = &y[ny..];
            }
            (Some(p), Some(q)) => {
                if p != q {
                    return p.cmp(q);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|c| **c == b'0').count();
    &d[n..]
}

/// Sorts parameter values: numerically when all parse as numbers, naturally otherwise.
pub(crate) fn sort_values(values: &mut [String]) {
    let all_numeric = values.iter().all(|v| v.trim().parse::<f64>().is_ok());
    if all_numeric {
        values.sort_by(|a, b| {
            let (p, q) = (a.trim().parse::<f64>().unwrap(), b.trim().parse::<f64>().unwrap());
            p.total_cmp(&q).then_with(|| a.cmp(b))
        });
    } else {
        values.sort_by(|a, b| natural_cmp(a, b));
    }
}

/// FNV-1a: a stable hash for naming random streams and jitter (never `DefaultHasher`, whose
/// output may change between Rust releases).
pub(crate) fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Prepares an SVG document for inlining into HTML: drops the XML prolog, DOCTYPE and comments
/// and the namespace declarations (HTML's parser knows `<svg>`; the namespace URLs would only look
/// like network references in a file that must have none).
pub(crate) fn inline_svg(svg: &str) -> String {
    let without_comments = strip_comments(svg);
    let start = without_comments.find("<svg").unwrap_or(0);
    let mut s = without_comments[start..].to_string();
    for ns in [" xmlns=\"http://www.w3.org/2000/svg\"", " xmlns:xlink=\"http://www.w3.org/1999/xlink\""] {
        s = s.replace(ns, "");
    }
    s.trim().to_string()
}

fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("<!--") {
        out.push_str(&rest[..i]);
        match rest[i..].find("-->") {
            Some(j) => rest = &rest[i + j + 3..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(3.0), "3");
        assert_eq!(num(-0.0), "0");
        assert_eq!(num(1234.7), "1235");
        assert_eq!(num(12.345), "12.35");
        assert_eq!(num(7.5), "7.5");
        assert_eq!(num(-0.0001), "-0.0001");
        assert_eq!(num(0.01234), "0.0123");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(csv_num(Some(0.1)), "0.1");
        assert_eq!(csv_num(None), "");
    }

    #[test]
    fn natural_order_puts_hs2_before_hs10() {
        let mut v = vec!["hs10", "hs2", "hs1", "a", "hs02"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["a", "hs1", "hs02", "hs2", "hs10"]);
    }

    #[test]
    fn parameter_values_sort_numerically_when_they_can() {
        let mut v: Vec<String> = ["0.5", "0.05", "1", "0.1"].map(String::from).to_vec();
        sort_values(&mut v);
        assert_eq!(v, ["0.05", "0.1", "0.5", "1"]);
        let mut w: Vec<String> = ["omit", "errcode"].map(String::from).to_vec();
        sort_values(&mut w);
        assert_eq!(w, ["errcode", "omit"]);
    }

    #[test]
    fn escaping_and_svg_inlining() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        let svg = "<?xml version=\"1.0\"?>\n<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" \
                   \"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd\">\n<!-- dot -->\n\
                   <svg width=\"8pt\" xmlns=\"http://www.w3.org/2000/svg\" \
                   xmlns:xlink=\"http://www.w3.org/1999/xlink\"><!-- n1 --><g/></svg>";
        assert_eq!(inline_svg(svg), "<svg width=\"8pt\"><g/></svg>");
        assert_eq!(slug("Room main!"), "room-main");
    }
}
