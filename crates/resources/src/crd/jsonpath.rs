//! The JSONPath subset that CRD `additionalPrinterColumns` use.
//!
//! Supported: `.field`, `['field']`, `[n]` (negative counts from the end),
//! `[start:end]`, `[*]` / `.*`, `..field` (recursive descent) and filters
//! `[?(@.a.b == "x")]` with `==`, `!=`, `<`, `<=`, `>`, `>=` or a bare `@.a` for
//! existence. An optional `{...}` wrapper is accepted, as Kubernetes wraps the
//! column path in braces before parsing it.

use serde_json::Value;

/// Deepest recursion for `..` descent; JSON from the API is at most this deep.
const MAX_DESCENT_DEPTH: usize = 128;

/// A parsed path, ready to evaluate against many objects.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JsonPath {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Field(String),
    Descend(String),
    Wildcard,
    Index(i64),
    Slice(Option<i64>, Option<i64>),
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    path: Vec<Segment>,
    cmp: Option<(Op, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl JsonPath {
    /// Parse a column path. `Err` carries a human reason.
    pub(crate) fn parse(src: &str) -> Result<JsonPath, String> {
        let s = src.trim();
        let s = match s.strip_prefix('{') {
            Some(inner) => inner
                .strip_suffix('}')
                .ok_or_else(|| "unclosed '{'".to_string())?,
            None => s,
        };
        let s = s.strip_prefix('$').unwrap_or(s);
        if s.is_empty() {
            return Err("empty path".into());
        }
        let segments = parse_segments(s)?;
        Ok(JsonPath { segments })
    }

    /// Every value the path selects, in document order.
    pub(crate) fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        apply(&self.segments, vec![root])
    }
}

fn parse_segments(s: &str) -> Result<Vec<Segment>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        match chars[i] {
            '.' => {
                let descend = chars.get(i + 1) == Some(&'.');
                i += if descend { 2 } else { 1 };
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                match (descend, name.as_str()) {
                    (_, "") if descend => {
                        return Err("'..' must be followed by a field name".into())
                    }
                    (_, "") => return Err(format!("empty field name at position {start}")),
                    (false, "*") => out.push(Segment::Wildcard),
                    (true, _) => out.push(Segment::Descend(name)),
                    (false, _) => out.push(Segment::Field(name)),
                }
            }
            '[' => {
                let close = find_close(&chars, i)?;
                let inner: String = chars[i + 1..close].iter().collect();
                out.push(parse_bracket(inner.trim())?);
                i = close + 1;
            }
            c => {
                return Err(format!(
                    "unexpected {c:?} at position {i}; paths start with '.'"
                ))
            }
        }
    }
    Ok(out)
}

/// The index of the `]` closing the `[` at `open`, skipping quoted strings and
/// nested brackets inside filters.
fn find_close(chars: &[char], open: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for (j, &c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Ok(j);
                }
            }
            _ => {}
        }
    }
    Err("unclosed '['".into())
}

fn parse_bracket(inner: &str) -> Result<Segment, String> {
    if inner == "*" {
        return Ok(Segment::Wildcard);
    }
    if let Some(name) = unquote(inner) {
        return Ok(Segment::Field(name));
    }
    if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
        return parse_filter(filter.trim()).map(Segment::Filter);
    }
    if let Some((a, b)) = inner.split_once(':') {
        let bound = |t: &str| -> Result<Option<i64>, String> {
            let t = t.trim();
            if t.is_empty() {
                Ok(None)
            } else {
                t.parse()
                    .map(Some)
                    .map_err(|_| format!("invalid slice bound {t:?}"))
            }
        };
        let b = b.split(':').next().unwrap_or("");
        return Ok(Segment::Slice(bound(a)?, bound(b)?));
    }
    inner
        .parse()
        .map(Segment::Index)
        .map_err(|_| format!("invalid array index {inner:?}"))
}

fn unquote(s: &str) -> Option<String> {
    let q = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = s.strip_prefix(q)?.strip_suffix(q)?;
    (!body.contains(q)).then(|| body.to_string())
}

fn parse_filter(f: &str) -> Result<Filter, String> {
    const OPS: &[(&str, Op)] = &[
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];
    let split = OPS
        .iter()
        .find_map(|(tok, op)| f.split_once(tok).map(|(l, r)| (l, *op, r)));
    let (lhs, cmp) = match split {
        Some((l, op, r)) => (l.trim(), Some((op, parse_literal(r.trim())?))),
        None => (f, None),
    };
    let rel = lhs
        .strip_prefix('@')
        .ok_or_else(|| format!("filter must start with '@': {lhs:?}"))?;
    let path = if rel.is_empty() {
        Vec::new()
    } else {
        parse_segments(rel)?
    };
    Ok(Filter { path, cmp })
}

fn parse_literal(s: &str) -> Result<Value, String> {
    if let Some(text) = unquote(s) {
        return Ok(Value::String(text));
    }
    match s {
        "true" => Ok(Value::Bool(true)),
        "false" => Ok(Value::Bool(false)),
        "null" => Ok(Value::Null),
        _ => serde_json::from_str::<serde_json::Number>(s)
            .map(Value::Number)
            .map_err(|_| format!("invalid filter literal {s:?}")),
    }
}

fn apply<'a>(segments: &[Segment], mut cur: Vec<&'a Value>) -> Vec<&'a Value> {
    for seg in segments {
        let mut next = Vec::new();
        for v in cur {
            step(seg, v, &mut next);
        }
        cur = next;
    }
    cur
}

fn step<'a>(seg: &Segment, v: &'a Value, out: &mut Vec<&'a Value>) {
    match seg {
        Segment::Field(name) => {
            if let Some(x) = v.get(name.as_str()) {
                out.push(x);
            }
        }
        Segment::Descend(name) => descend(v, name, 0, out),
        Segment::Wildcard => match v {
            Value::Array(a) => out.extend(a.iter()),
            Value::Object(m) => out.extend(m.values()),
            _ => {}
        },
        Segment::Index(i) => {
            if let Value::Array(a) = v {
                let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                if let Some(x) = usize::try_from(idx).ok().and_then(|k| a.get(k)) {
                    out.push(x);
                }
            }
        }
        Segment::Slice(start, end) => {
            if let Value::Array(a) = v {
                let len = a.len() as i64;
                let norm = |b: i64| if b < 0 { (len + b).max(0) } else { b.min(len) };
                let s = start.map_or(0, norm);
                let e = end.map_or(len, norm);
                if s < e {
                    out.extend(a.iter().take(e as usize).skip(s as usize));
                }
            }
        }
        Segment::Filter(f) => {
            let candidates: Vec<&Value> = match v {
                Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            out.extend(candidates.into_iter().filter(|c| filter_matches(f, c)));
        }
    }
}

fn descend<'a>(v: &'a Value, name: &str, depth: usize, out: &mut Vec<&'a Value>) {
    if depth > MAX_DESCENT_DEPTH {
        return;
    }
    match v {
        Value::Object(m) => {
            if let Some(x) = m.get(name) {
                out.push(x);
            }
            for c in m.values() {
                descend(c, name, depth + 1, out);
            }
        }
        Value::Array(a) => {
            for c in a {
                descend(c, name, depth + 1, out);
            }
        }
        _ => {}
    }
}

fn filter_matches(f: &Filter, item: &Value) -> bool {
    let found = apply(&f.path, vec![item]);
    match &f.cmp {
        None => !found.is_empty(),
        Some((op, lit)) => found.iter().any(|x| compare(x, *op, lit)),
    }
}

fn compare(x: &Value, op: Op, lit: &Value) -> bool {
    let ord = match (x, lit) {
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    };
    match op {
        Op::Eq => ord.map_or(x == lit, |o| o.is_eq()),
        Op::Ne => ord.map_or(x != lit, |o| o.is_ne()),
        Op::Lt => ord.is_some_and(|o| o.is_lt()),
        Op::Le => ord.is_some_and(|o| o.is_le()),
        Op::Gt => ord.is_some_and(|o| o.is_gt()),
        Op::Ge => ord.is_some_and(|o| o.is_ge()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj() -> Value {
        json!({
            "metadata": {"name": "w", "creationTimestamp": "2024-01-01T00:00:00Z", "labels": {"app.kubernetes.io/name": "x"}},
            "spec": {"size": 3, "list": [{"name": "a", "n": 1}, {"name": "b", "n": 2}, {"name": "c", "n": 3}]},
            "status": {"conditions": [
                {"type": "Available", "status": "False"},
                {"type": "Ready", "status": "True"}
            ]}
        })
    }

    fn find(path: &str) -> Vec<Value> {
        let o = obj();
        JsonPath::parse(path)
            .unwrap()
            .find(&o)
            .into_iter()
            .cloned()
            .collect()
    }

    #[test]
    fn field_access() {
        assert_eq!(find(".spec.size"), vec![json!(3)]);
        assert_eq!(
            find("{.metadata.creationTimestamp}"),
            vec![json!("2024-01-01T00:00:00Z")]
        );
        assert_eq!(
            find(".metadata.labels['app.kubernetes.io/name']"),
            vec![json!("x")]
        );
        assert_eq!(find(".spec.missing"), Vec::<Value>::new());
        assert_eq!(find(".spec.size.deeper"), Vec::<Value>::new());
    }

    #[test]
    fn arrays() {
        assert_eq!(find(".spec.list[0].name"), vec![json!("a")]);
        assert_eq!(find(".spec.list[-1].name"), vec![json!("c")]);
        assert_eq!(find(".spec.list[7].name"), Vec::<Value>::new());
        assert_eq!(
            find(".spec.list[*].name"),
            vec![json!("a"), json!("b"), json!("c")]
        );
        assert_eq!(find(".spec.list[1:].n"), vec![json!(2), json!(3)]);
        assert_eq!(find(".spec.list[:1].n"), vec![json!(1)]);
        assert_eq!(
            find("..name"),
            vec![json!("w"), json!("a"), json!("b"), json!("c")]
        );
    }

    #[test]
    fn filters() {
        assert_eq!(
            find(".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("True")]
        );
        assert_eq!(
            find(".status.conditions[?(@.type == 'Available')].status"),
            vec![json!("False")]
        );
        assert_eq!(
            find(".spec.list[?(@.n > 1)].name"),
            vec![json!("b"), json!("c")]
        );
        assert_eq!(
            find(".spec.list[?(@.n != 2)].name"),
            vec![json!("a"), json!("c")]
        );
        assert_eq!(find(".spec.list[?(@.missing)].name"), Vec::<Value>::new());
    }

    #[test]
    fn rejects_malformed_paths() {
        for bad in [
            "",
            "spec.x",
            ".spec[",
            ".spec[abc]",
            ".spec..",
            "{.spec",
            ".spec[?(x==1)]",
            ".a[?(@.b==zz)]",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
