//! Field sets: which fields of an object a manager owns, as in
//! structured-merge-diff, and their `FieldsV1` wire form.
//!
//! A set holds paths. A path is a chain of [`PathElement`]s: `f:<name>` for a
//! map field, `k:<json>` for an item of a list of type map (by its key fields),
//! `v:<json>` for an item of a set, `i:<n>` for an item without identity. In
//! `FieldsV1`, `{}` marks a leaf member and `".": {}` marks a node that is a
//! member and also has children.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// One step of a field path. The variant order is the sort order upstream uses
/// (fields, then keys, then values, then indexes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of a map or struct.
    Field(String),
    /// An item of an associative list: the canonical JSON object of its key
    /// fields, sorted by name (`{"containerPort":80,"protocol":"TCP"}`).
    Key(String),
    /// An item of a set: its canonical JSON.
    Value(String),
    /// An item known only by position.
    Index(usize),
}

impl PathElement {
    /// The key fields of a list item, as a `Key` element.
    pub fn key(fields: &[(&str, &Value)]) -> Self {
        let mut sorted: Vec<_> = fields.to_vec();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let obj: Map<String, Value> = sorted
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        PathElement::Key(Value::Object(obj).to_string())
    }

    /// A set item, as a `Value` element.
    pub fn value(v: &Value) -> Self {
        PathElement::Value(v.to_string())
    }

    /// The `FieldsV1` key (`f:name`, `k:{..}`, `v:..`, `i:0`).
    pub fn to_fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(k) => format!("k:{k}"),
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a `FieldsV1` key; `None` for anything malformed.
    pub fn from_fields_v1_key(s: &str) -> Option<Self> {
        let (kind, rest) = s.split_once(':')?;
        match kind {
            "f" => Some(PathElement::Field(rest.to_string())),
            "k" => {
                let Value::Object(m) = serde_json::from_str::<Value>(rest).ok()? else {
                    return None;
                };
                let fields: Vec<(&str, &Value)> = m.iter().map(|(k, v)| (k.as_str(), v)).collect();
                Some(PathElement::key(&fields))
            }
            "v" => Some(PathElement::value(&serde_json::from_str(rest).ok()?)),
            "i" => Some(PathElement::Index(rest.parse().ok()?)),
            _ => None,
        }
    }

    /// Does this element name `item` (an element of the list it indexes)?
    pub(crate) fn matches_item(&self, item: &Value, index: usize) -> bool {
        match self {
            PathElement::Field(_) => false,
            PathElement::Key(k) => match serde_json::from_str::<Value>(k) {
                Ok(Value::Object(keys)) => keys
                    .iter()
                    .all(|(f, v)| super::walk::key_field(item, f).as_ref() == Some(v)),
                _ => false,
            },
            PathElement::Value(v) => serde_json::from_str::<Value>(v).is_ok_and(|v| &v == item),
            PathElement::Index(i) => *i == index,
        }
    }
}

/// A field path from the object root.
pub type FieldPath = Vec<PathElement>;

/// Renders a path the way Kubernetes prints it in conflicts:
/// `.spec.containers[name="web"].image`, `.metadata.finalizers[="a"]`, `[0]`.
pub fn path_string(path: &[PathElement]) -> String {
    let mut out = String::new();
    for pe in path {
        match pe {
            PathElement::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            PathElement::Key(k) => {
                out.push('[');
                if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(k) {
                    let parts: Vec<String> = m.iter().map(|(f, v)| format!("{f}={v}")).collect();
                    out.push_str(&parts.join(","));
                }
                out.push(']');
            }
            PathElement::Value(v) => {
                let _ = write!(out, "[={v}]"); // writing to a String cannot fail
            }
            PathElement::Index(i) => {
                let _ = write!(out, "[{i}]"); // writing to a String cannot fail
            }
        }
    }
    out
}

/// A set of field paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(BTreeSet<FieldPath>);

impl FieldSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, path: FieldPath) {
        self.0.insert(path);
    }

    pub fn contains(&self, path: &[PathElement]) -> bool {
        self.0.contains(path)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &FieldPath> {
        self.0.iter()
    }

    /// Is `prefix` itself or anything below it in the set?
    pub fn covers_prefix(&self, prefix: &[PathElement]) -> bool {
        self.0
            .range(prefix.to_vec()..)
            .next()
            .is_some_and(|p| p.starts_with(prefix))
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.union(&other.0).cloned().collect())
    }

    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.difference(&other.0).cloned().collect())
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.intersection(&other.0).cloned().collect())
    }

    /// Drops every path for which `ignored` says so.
    pub fn retain(&mut self, mut keep: impl FnMut(&FieldPath) -> bool) {
        self.0.retain(|p| keep(p));
    }

    /// Decodes `FieldsV1` JSON. Malformed keys are skipped.
    pub fn from_fields_v1(v: &Value) -> FieldSet {
        let mut set = FieldSet::new();
        let mut path = Vec::new();
        decode(v, &mut path, &mut set, 0);
        set
    }

    /// Encodes as `FieldsV1` JSON, children sorted, `"."` first.
    pub fn to_fields_v1(&self) -> Value {
        let mut root = Node::default();
        for path in &self.0 {
            let mut node = &mut root;
            for pe in path {
                node = node.children.entry(pe.clone()).or_default();
            }
            node.member = true;
        }
        root.encode()
    }
}

impl FromIterator<FieldPath> for FieldSet {
    fn from_iter<I: IntoIterator<Item = FieldPath>>(iter: I) -> Self {
        FieldSet(iter.into_iter().collect())
    }
}

fn decode(v: &Value, path: &mut FieldPath, set: &mut FieldSet, depth: usize) {
    let Value::Object(m) = v else {
        return;
    };
    if depth > crate::error::MAX_DEPTH {
        return;
    }
    if m.is_empty() && !path.is_empty() {
        set.insert(path.clone());
        return;
    }
    for (k, child) in m {
        if k == "." {
            if !path.is_empty() {
                set.insert(path.clone());
            }
            continue;
        }
        let Some(pe) = PathElement::from_fields_v1_key(k) else {
            continue;
        };
        path.push(pe);
        decode(child, path, set, depth + 1);
        path.pop();
    }
}

#[derive(Default)]
struct Node {
    member: bool,
    children: std::collections::BTreeMap<PathElement, Node>,
}

impl Node {
    fn encode(&self) -> Value {
        let mut out = Map::new();
        if self.member && !self.children.is_empty() {
            out.insert(".".to_string(), Value::Object(Map::new()));
        }
        for (pe, child) in &self.children {
            out.insert(pe.to_fields_v1_key(), child.encode());
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(s: &str) -> PathElement {
        PathElement::Field(s.into())
    }

    #[test]
    fn fields_v1_round_trip() {
        let v = json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}},
                       "f:finalizers": {"v:\"a\"": {}},
                       "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {}}}
        });
        let set = FieldSet::from_fields_v1(&v);
        assert_eq!(set.len(), 6);
        assert!(set.contains(&[f("metadata"), f("labels"), f("app")]));
        let web = PathElement::key(&[("name", &json!("web"))]);
        assert!(set.contains(&[f("spec"), f("containers"), web.clone()]));
        assert!(set.contains(&[f("spec"), f("containers"), web, f("image")]));
        assert_eq!(set.to_fields_v1(), v);
    }

    #[test]
    fn key_order_is_canonical_and_paths_print_like_upstream() {
        let a = PathElement::key(&[("protocol", &json!("TCP")), ("containerPort", &json!(80))]);
        let b =
            PathElement::from_fields_v1_key(r#"k:{"protocol":"TCP","containerPort":80}"#).unwrap();
        assert_eq!(a, b);
        let p = vec![f("spec"), f("ports"), a, f("name")];
        assert_eq!(
            path_string(&p),
            r#".spec.ports[containerPort=80,protocol="TCP"].name"#
        );
        let p = vec![
            f("metadata"),
            f("finalizers"),
            PathElement::value(&json!("x")),
        ];
        assert_eq!(path_string(&p), r#".metadata.finalizers[="x"]"#);
        assert_eq!(path_string(&[f("a"), PathElement::Index(3)]), ".a[3]");
    }

    #[test]
    fn malformed_fields_v1_is_skipped() {
        let v = json!({"f:a": {}, "zz": {}, "k:notjson": {}, "i:x": {}, "f:b": "str", "f:c": {"f:d": {}}});
        let set = FieldSet::from_fields_v1(&v);
        assert_eq!(set.len(), 2);
        assert!(set.covers_prefix(&[f("c")]));
        assert!(!set.covers_prefix(&[f("b")]));
        assert_eq!(FieldSet::from_fields_v1(&json!("x")).len(), 0);
    }
}
