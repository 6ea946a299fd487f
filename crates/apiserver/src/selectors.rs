//! Label and field selectors, parsed from query strings and matched against objects.

use serde_json::{Map, Value};

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Exists,
    NotExists,
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector (`app=web,tier!=db,env in (a,b),!legacy`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<Requirement>,
}

impl LabelSelector {
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(parse_requirement(part)?);
        }
        Ok(LabelSelector { reqs })
    }

    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.reqs.iter().all(|r| {
            let v = labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str);
            match &r.op {
                Op::Exists => v.is_some(),
                Op::NotExists => v.is_none(),
                Op::Eq(x) => v == Some(x.as_str()),
                Op::NotEq(x) => v != Some(x.as_str()),
                Op::In(xs) => v.is_some_and(|v| xs.iter().any(|x| x == v)),
                Op::NotIn(xs) => v.is_none_or(|v| !xs.iter().any(|x| x == v)),
            }
        })
    }
}

fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn bad_selector(part: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!("unable to parse requirement: {why}: \"{part}\""))
}

fn check_key(key: &str, part: &str) -> Result<(), ApiError> {
    let ok = !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(bad_selector(part, "invalid label key"))
    }
}

fn check_value(v: &str, part: &str) -> Result<(), ApiError> {
    let ok = v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(bad_selector(part, "invalid label value"))
    }
}

fn parse_set(rest: &str, part: &str) -> Result<Vec<String>, ApiError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| bad_selector(part, "expected a parenthesised set of values"))?;
    let mut vals = Vec::new();
    for v in inner.split(',') {
        let v = v.trim();
        check_value(v, part)?;
        vals.push(v.to_string());
    }
    Ok(vals)
}

fn parse_requirement(part: &str) -> Result<Requirement, ApiError> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        check_key(key, part)?;
        return Ok(Requirement {
            key: key.into(),
            op: Op::NotExists,
        });
    }
    if let Some((k, v)) = part.split_once("!=") {
        let (k, v) = (k.trim(), v.trim());
        check_key(k, part)?;
        check_value(v, part)?;
        return Ok(Requirement {
            key: k.into(),
            op: Op::NotEq(v.into()),
        });
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        let (k, v) = (k.trim(), v.trim());
        check_key(k, part)?;
        check_value(v, part)?;
        return Ok(Requirement {
            key: k.into(),
            op: Op::Eq(v.into()),
        });
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    match words.as_slice() {
        [key] => {
            check_key(key, part)?;
            Ok(Requirement {
                key: (*key).into(),
                op: Op::Exists,
            })
        }
        [key, rest] => {
            check_key(key, part)?;
            let rest = rest.trim_start();
            if let Some(set) = rest.strip_prefix("notin") {
                Ok(Requirement {
                    key: (*key).into(),
                    op: Op::NotIn(parse_set(set, part)?),
                })
            } else if let Some(set) = rest.strip_prefix("in") {
                Ok(Requirement {
                    key: (*key).into(),
                    op: Op::In(parse_set(set, part)?),
                })
            } else {
                Err(bad_selector(part, "found unknown operator"))
            }
        }
        _ => Err(bad_selector(part, "empty requirement")),
    }
}

/// A parsed field selector: `metadata.name=x,status.phase!=Running`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub reqs: Vec<(String, bool, String)>,
}

impl FieldSelector {
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, eq, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            reqs.push((field.trim().to_string(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector { reqs })
    }

    /// The name this selector pins (`metadata.name=x`), if any.
    pub fn pinned_name(&self) -> Option<&str> {
        self.reqs
            .iter()
            .find(|(f, eq, _)| f == "metadata.name" && *eq)
            .map(|(_, _, v)| v.as_str())
    }

    /// Match with `lookup(field)` giving the object's value of a field; unknown
    /// fields were rejected by [`FieldSelector::check_fields`].
    pub fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.reqs.iter().all(|(f, eq, v)| {
            let actual = lookup(f).unwrap_or_default();
            (actual == *v) == *eq
        })
    }

    /// Reject fields the kind does not support: 400, as Kubernetes words it.
    pub fn check_fields(&self, supported: impl Fn(&str) -> bool) -> Result<(), ApiError> {
        match self.reqs.iter().find(|(f, _, _)| !supported(f)) {
            Some((f, _, _)) => Err(ApiError::bad_request(format!(
                "field label not supported: {f}"
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn equality_and_set_based() {
        let l = labels(json!({"app": "web", "tier": "front", "env": "prod"}));
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(Some(&l));
        assert!(m("app=web"));
        assert!(m("app==web,tier!=db"));
        assert!(!m("app=db"));
        assert!(m("env in (prod, staging)"));
        assert!(!m("env notin (prod)"));
        assert!(m("app,!legacy"));
        assert!(!m("!app"));
        assert!(m("env in (prod),app=web"));
        assert!(LabelSelector::parse("app in prod").is_err());
        assert!(LabelSelector::parse("a b c").is_err());
        assert!(LabelSelector::parse("ap p=x").is_err());
    }

    #[test]
    fn field_selector() {
        let f = FieldSelector::parse("metadata.name=x,status.phase!=Running").unwrap();
        assert_eq!(f.pinned_name(), Some("x"));
        assert!(f.matches(|k| match k {
            "metadata.name" => Some("x".into()),
            _ => Some("Pending".into()),
        }));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
