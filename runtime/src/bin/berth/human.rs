//! Sizes and ages the way Docker's CLI prints them.

/// `4.26MB`: SI units, three significant digits (Docker's `units.HumanSize`).
/// Memory as `docker stats` shows it: binary units, two decimals (64MiB, 2.41MiB).
pub fn mem(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}{}", units[i])
}

pub fn size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[i])
}

/// `2 weeks ago` (Docker's `units.HumanDuration` plus " ago").
pub fn ago(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    let text = if s < 1 {
        "Less than a second".to_string()
    } else if s == 1 {
        "1 second".to_string()
    } else if s < 60 {
        format!("{s} seconds")
    } else if m == 1 {
        "About a minute".to_string()
    } else if m < 60 {
        format!("{m} minutes")
    } else if h == 1 {
        "About an hour".to_string()
    } else if h < 48 {
        format!("{h} hours")
    } else if h < 24 * 7 * 2 {
        format!("{d} days")
    } else if h < 24 * 30 * 2 {
        format!("{} weeks", d / 7)
    } else if h < 24 * 365 * 2 {
        format!("{} months", d / 30)
    } else {
        format!("{} years", d / 365)
    };
    format!("{text} ago")
}

/// Left-aligned columns three spaces apart (Docker's tabwriter settings).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Fills a Go-style template from `v`, as `docker inspect -f` does:
/// `{{.Path.To.Field}}`, `{{json EXPR}}`, `{{index EXPR KEY…}}` (object keys as
/// "strings", array positions as numbers) and parentheses, as in
/// `{{(index .IPAM.Config 0).Subnet}}`. Strings print as they are, anything
/// else as JSON.
pub fn render(template: &str, v: &serde_json::Value) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(a) = rest.find("{{") {
        out.push_str(&rest[..a]);
        let b = rest[a..]
            .find("}}")
            .map(|b| a + b)
            .ok_or_else(|| anyhow::anyhow!("--format {template:?}: an unclosed {{{{"))?;
        let inner = rest[a + 2..b].trim();
        let bad = |why: &str| anyhow::anyhow!("--format {template:?}: {inner:?}: {why}");
        let tokens = tokenize(inner).map_err(|w| bad(&w))?;
        let mut pos = 0;
        let (val, as_json) = match tokens.first().map(String::as_str) {
            Some("json") => {
                pos = 1;
                (expr(&tokens, &mut pos, v).map_err(|w| bad(&w))?, true)
            }
            _ => (expr(&tokens, &mut pos, v).map_err(|w| bad(&w))?, false),
        };
        if pos != tokens.len() {
            return Err(bad("unexpected words at the end"));
        }
        match val {
            serde_json::Value::String(s) if !as_json => out.push_str(&s),
            other => out.push_str(&other.to_string()),
        }
        rest = &rest[b + 2..];
    }
    out.push_str(rest);
    Ok(out.replace("\\n", "\n").replace("\\t", "\t"))
}

/// Words of a template action: `(`, `)`, "strings" (unquoted), paths
/// (`.A.B`, also right after `)`), names and numbers.
fn tokenize(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    while let Some(&c) = it.peek() {
        match c {
            ' ' | '\t' => {
                it.next();
            }
            '(' | ')' => {
                out.push(c.to_string());
                it.next();
            }
            '"' => {
                it.next();
                let mut lit = String::from("\"");
                loop {
                    match it.next() {
                        Some('\\') => lit.extend(it.next()),
                        Some('"') => break,
                        Some(ch) => lit.push(ch),
                        None => return Err("an unclosed string".into()),
                    }
                }
                out.push(lit);
            }
            _ => {
                let mut w = String::new();
                while let Some(&ch) = it.peek() {
                    if matches!(ch, ' ' | '\t' | '(' | ')' | '"') {
                        break;
                    }
                    w.push(ch);
                    it.next();
                }
                out.push(w);
            }
        }
    }
    Ok(out)
}

fn path<'a>(mut cur: &'a serde_json::Value, p: &str) -> Result<&'a serde_json::Value, String> {
    for key in p.split('.').filter(|k| !k.is_empty()) {
        cur = cur.get(key).ok_or_else(|| format!("no field {p}"))?;
    }
    Ok(cur)
}

fn expr(
    t: &[String],
    pos: &mut usize,
    root: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    if t.get(*pos).map(String::as_str) == Some("index") {
        *pos += 1;
        let mut cur = term(t, pos, root)?;
        while *pos < t.len() && t[*pos] != ")" {
            let key = term(t, pos, root)?;
            cur = match (&cur, &key) {
                (serde_json::Value::Object(m), serde_json::Value::String(k)) => {
                    m.get(k)
                        .cloned()
                        .ok_or_else(|| format!("index: no key {k:?}"))?
                }
                (serde_json::Value::Array(a), serde_json::Value::Number(n)) => n
                    .as_u64()
                    .and_then(|i| a.get(i as usize))
                    .cloned()
                    .ok_or_else(|| format!("index: no element {n}"))?,
                _ => return Err(format!("index: cannot index {cur} with {key}")),
            };
        }
        return Ok(cur);
    }
    term(t, pos, root)
}

fn term(
    t: &[String],
    pos: &mut usize,
    root: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let w = t.get(*pos).ok_or("a value is missing")?.clone();
    *pos += 1;
    if w == "(" {
        let v = expr(t, pos, root)?;
        if t.get(*pos).map(String::as_str) != Some(")") {
            return Err("a ( without )".into());
        }
        *pos += 1;
        if let Some(p) = t.get(*pos).filter(|p| p.starts_with('.')) {
            *pos += 1;
            return path(&v, p).cloned();
        }
        return Ok(v);
    }
    if let Some(lit) = w.strip_prefix('"') {
        return Ok(serde_json::Value::String(lit.to_string()));
    }
    if w.starts_with('.') {
        return path(root, &w).cloned();
    }
    if let Ok(n) = w.parse::<u64>() {
        return Ok(serde_json::json!(n));
    }
    Err(format!("{w:?} is not a field such as .State.Status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let v = serde_json::json!({"A": {"B": "x", "m": {"k.1": [1, {"S": "deep"}]}}, "N": 3});
        assert_eq!(render("{{.A.B}}-{{.N}}", &v).expect("ok"), "x-3");
        assert_eq!(render("{{index .A.m \"k.1\" 0}}", &v).expect("ok"), "1");
        assert_eq!(
            render("{{(index (index .A.m \"k.1\") 1).S}}", &v).expect("ok"),
            "deep"
        );
        assert_eq!(render("{{json .A.B}}", &v).expect("ok"), "\"x\"");
        for bad in [
            "{{.Z}}",
            "{{Z}}",
            "{{index .A.m \"no\"}}",
            "{{(.A}}",
            "{{.A.B",
        ] {
            let e = render(bad, &v).expect_err(bad).to_string();
            assert!(e.starts_with("--format "), "{e}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0B");
        assert_eq!(size(999), "999B");
        assert_eq!(size(4_261_000), "4.26MB");
        assert_eq!(size(72_800), "72.8kB");
        assert_eq!(size(1_200_000_000), "1.2GB");
        assert_eq!(size(10_000_000), "10MB");
    }

    #[test]
    fn ages() {
        assert_eq!(ago(0), "Less than a second ago");
        assert_eq!(ago(59), "59 seconds ago");
        assert_eq!(ago(90), "About a minute ago");
        assert_eq!(ago(3 * 3600), "3 hours ago");
        assert_eq!(ago(20 * 86_400), "2 weeks ago");
        assert_eq!(ago(400 * 86_400), "13 months ago");
    }
}
