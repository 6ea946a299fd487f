//! Node selectors and affinity, pod (anti-)affinity terms, taints and
//! tolerations: the matching rules, as upstream's component-helpers define them.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, PodAffinityTerm, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::core::{Selector, SelectorExt};

pub type Labels = BTreeMap<String, String>;

/// One `NodeSelectorRequirement` against labels (or, for `matchFields`, the
/// `metadata.name` field). Unknown operators and unparsable numbers match nothing.
fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value, values) else {
                return false;
            };
            let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// A node selector term: every expression and field requirement holds. A
/// term with neither matches nothing (upstream).
pub fn term_matches(term: &NodeSelectorTerm, node_name: &str, labels: &Labels) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            let value = (r.key == "metadata.name").then_some(node_name);
            r.key == "metadata.name" && requirement_matches(r, value)
        })
}

/// `nodeSelectorTerms` are ORed.
pub fn terms_match(terms: &[NodeSelectorTerm], node_name: &str, labels: &Labels) -> bool {
    terms.iter().any(|t| term_matches(t, node_name, labels))
}

/// Every `nodeSelector` entry is a label on the node.
pub fn selector_matches(selector: &Labels, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether `toleration` tolerates `taint` (upstream's ToleratesTaint).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            // An empty key with Equal is invalid (validation rejects it).
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// The first NoSchedule/NoExecute taint no toleration tolerates.
pub fn untolerated<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints.iter().find(|t| {
        (t.effect == "NoSchedule" || t.effect == "NoExecute")
            && !tolerations.iter().any(|tol| tolerates(tol, t))
    })
}

/// How many PreferNoSchedule taints the pod does not tolerate (only
/// tolerations with that effect or none count, as upstream).
pub fn intolerable_prefer_no_schedule(taints: &[Taint], tolerations: &[Toleration]) -> i64 {
    let relevant: Vec<&Toleration> = tolerations
        .iter()
        .filter(|t| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        })
        .collect();
    let n = taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !relevant.iter().any(|tol| tolerates(tol, t)))
        .count();
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A pod (anti-)affinity term, parsed once: which pods (by labels and
/// namespace) it selects, and the topology it counts them in.
#[derive(Debug, Clone)]
pub struct Term {
    /// `None`: the term had no labelSelector and selects no pod.
    selector: Option<Selector>,
    namespaces: HashSet<String>,
    /// `namespaceSelector`; `Some(empty)` selects every namespace.
    namespace_selector: Option<Selector>,
    pub topology_key: String,
    pub weight: i64,
}

impl Term {
    /// Parse `term` of a pod in `namespace` with `labels` (for matchLabelKeys
    /// and mismatchLabelKeys). A malformed selector selects nothing.
    pub fn new(term: &PodAffinityTerm, namespace: &str, labels: &Labels, weight: i64) -> Term {
        let selector = term.label_selector.as_ref().and_then(|ls| {
            let mut ls: LabelSelector = ls.clone();
            let mut extra = Vec::new();
            for (keys, op) in [
                (term.match_label_keys.as_ref(), "In"),
                (term.mismatch_label_keys.as_ref(), "NotIn"),
            ] {
                for k in keys.into_iter().flatten() {
                    if let Some(v) = labels.get(k) {
                        extra.push(LabelSelectorRequirement {
                            key: k.clone(),
                            operator: op.into(),
                            values: Some(vec![v.clone()]),
                        });
                    }
                }
            }
            if !extra.is_empty() {
                ls.match_expressions
                    .get_or_insert_with(Vec::new)
                    .extend(extra);
            }
            Selector::try_from(ls).ok()
        });
        let mut namespaces: HashSet<String> = term.namespaces.iter().flatten().cloned().collect();
        let namespace_selector = term
            .namespace_selector
            .as_ref()
            .map(|s| Selector::try_from(s.clone()).unwrap_or_else(|_| nothing()));
        if namespaces.is_empty() && namespace_selector.is_none() {
            namespaces.insert(namespace.to_string());
        }
        Term {
            selector,
            namespaces,
            namespace_selector,
            topology_key: term.topology_key.clone(),
            weight,
        }
    }

    /// Whether the term selects a pod in `namespace` with `labels`;
    /// `ns_labels` looks up a namespace's labels.
    pub fn matches<'a>(
        &self,
        namespace: &str,
        labels: &Labels,
        ns_labels: impl Fn(&str) -> Option<&'a Labels>,
    ) -> bool {
        let Some(sel) = &self.selector else {
            return false;
        };
        let ns_ok = self.namespaces.contains(namespace)
            || self.namespace_selector.as_ref().is_some_and(|s| {
                let empty = Labels::new();
                s.matches(ns_labels(namespace).unwrap_or(&empty))
            });
        ns_ok && sel.matches(labels)
    }
}

/// A selector that matches no label set.
fn nothing() -> Selector {
    let ls = LabelSelector {
        match_expressions: Some(vec![
            LabelSelectorRequirement {
                key: "x".into(),
                operator: "Exists".into(),
                values: None,
            },
            LabelSelectorRequirement {
                key: "x".into(),
                operator: "DoesNotExist".into(),
                values: None,
            },
        ]),
        match_labels: None,
    };
    Selector::try_from(ls).unwrap_or_default()
}

/// A pod's parsed affinity and anti-affinity terms.
#[derive(Debug, Clone, Default)]
pub struct PodAffinity {
    pub required_affinity: Vec<Term>,
    pub required_anti: Vec<Term>,
    pub preferred_affinity: Vec<Term>,
    pub preferred_anti: Vec<Term>,
}

impl PodAffinity {
    /// Parse the pod (anti-)affinity of a pod; `None` when it has none.
    pub fn of(
        spec: &k8s_openapi::api::core::v1::PodSpec,
        namespace: &str,
        labels: &Labels,
    ) -> Option<PodAffinity> {
        let aff = spec.affinity.as_ref()?;
        let mut out = PodAffinity::default();
        if let Some(pa) = &aff.pod_affinity {
            for t in pa
                .required_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                out.required_affinity
                    .push(Term::new(t, namespace, labels, 1));
            }
            for w in pa
                .preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                out.preferred_affinity.push(Term::new(
                    &w.pod_affinity_term,
                    namespace,
                    labels,
                    i64::from(w.weight),
                ));
            }
        }
        if let Some(pa) = &aff.pod_anti_affinity {
            for t in pa
                .required_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                out.required_anti.push(Term::new(t, namespace, labels, 1));
            }
            for w in pa
                .preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                out.preferred_anti.push(Term::new(
                    &w.pod_affinity_term,
                    namespace,
                    labels,
                    i64::from(w.weight),
                ));
            }
        }
        let empty = out.required_affinity.is_empty()
            && out.required_anti.is_empty()
            && out.preferred_affinity.is_empty()
            && out.preferred_anti.is_empty();
        (!empty).then_some(out)
    }

    pub fn has_required(&self) -> bool {
        !self.required_affinity.is_empty() || !self.required_anti.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn node_selector_operators() {
        let l = labels(&[("zone", "a"), ("cores", "8")]);
        let t = |r: Vec<NodeSelectorRequirement>| NodeSelectorTerm {
            match_expressions: Some(r),
            match_fields: None,
        };
        assert!(term_matches(
            &t(vec![req("zone", "In", &["a", "b"])]),
            "n",
            &l
        ));
        assert!(!term_matches(
            &t(vec![req("zone", "NotIn", &["a"])]),
            "n",
            &l
        ));
        assert!(term_matches(&t(vec![req("gpu", "NotIn", &["x"])]), "n", &l));
        assert!(term_matches(&t(vec![req("zone", "Exists", &[])]), "n", &l));
        assert!(term_matches(
            &t(vec![req("gpu", "DoesNotExist", &[])]),
            "n",
            &l
        ));
        assert!(term_matches(&t(vec![req("cores", "Gt", &["4"])]), "n", &l));
        assert!(!term_matches(&t(vec![req("cores", "Lt", &["4"])]), "n", &l));
        assert!(!term_matches(&t(vec![req("zone", "Gt", &["4"])]), "n", &l));
        assert!(!term_matches(&t(vec![req("zone", "Bogus", &[])]), "n", &l));
        // AND within a term, OR across terms, empty term matches nothing.
        assert!(!term_matches(
            &t(vec![req("zone", "In", &["a"]), req("cores", "In", &["2"])]),
            "n",
            &l
        ));
        assert!(!term_matches(&NodeSelectorTerm::default(), "n", &l));
        assert!(terms_match(
            &[
                t(vec![req("zone", "In", &["z"])]),
                t(vec![req("zone", "In", &["a"])])
            ],
            "n",
            &l
        ));
        let fields = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", "In", &["n1"])]),
        };
        assert!(term_matches(&fields, "n1", &l));
        assert!(!term_matches(&fields, "n2", &l));
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.to_string()),
            operator: Some(op.into()),
            value: (!value.is_empty()).then(|| value.to_string()),
            effect: (!effect.is_empty()).then(|| effect.to_string()),
            toleration_seconds: None,
        }
    }

    #[test]
    fn tolerations() {
        let t = taint("dedicated", "gpu", "NoSchedule");
        assert!(tolerates(
            &tol("dedicated", "Equal", "gpu", "NoSchedule"),
            &t
        ));
        assert!(tolerates(&tol("dedicated", "Equal", "gpu", ""), &t));
        assert!(!tolerates(&tol("dedicated", "Equal", "cpu", ""), &t));
        assert!(!tolerates(
            &tol("dedicated", "Equal", "gpu", "NoExecute"),
            &t
        ));
        assert!(tolerates(&tol("dedicated", "Exists", "", ""), &t));
        assert!(tolerates(&tol("", "Exists", "", ""), &t));
        assert!(!tolerates(&tol("other", "Exists", "", ""), &t));
        let taints = [t.clone(), taint("soft", "", "PreferNoSchedule")];
        assert_eq!(
            untolerated(&taints, &[]).map(|t| t.key.as_str()),
            Some("dedicated")
        );
        assert!(untolerated(&taints, &[tol("dedicated", "Exists", "", "")]).is_none());
        assert_eq!(intolerable_prefer_no_schedule(&taints, &[]), 1);
        assert_eq!(
            intolerable_prefer_no_schedule(&taints, &[tol("soft", "Exists", "", "")]),
            0
        );
        // A toleration for another effect does not count for scoring.
        assert_eq!(
            intolerable_prefer_no_schedule(&taints, &[tol("soft", "Exists", "", "NoSchedule")]),
            1
        );
    }

    #[test]
    fn pod_affinity_terms_select_by_labels_and_namespace() {
        let term = PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                match_expressions: None,
            }),
            topology_key: "kubernetes.io/hostname".into(),
            ..Default::default()
        };
        let t = Term::new(&term, "ns1", &Labels::new(), 1);
        let none = |_: &str| None;
        assert!(t.matches("ns1", &labels(&[("app", "web")]), none));
        assert!(!t.matches("ns2", &labels(&[("app", "web")]), none));
        assert!(!t.matches("ns1", &labels(&[("app", "db")]), none));

        let mut all_ns = term.clone();
        all_ns.namespace_selector = Some(LabelSelector::default());
        let t = Term::new(&all_ns, "ns1", &Labels::new(), 1);
        assert!(t.matches("ns2", &labels(&[("app", "web")]), none));

        let mut by_label = term.clone();
        by_label.namespace_selector = Some(LabelSelector {
            match_labels: Some(labels(&[("team", "x")])),
            match_expressions: None,
        });
        let t = Term::new(&by_label, "ns1", &Labels::new(), 1);
        let team = labels(&[("team", "x")]);
        assert!(
            t.matches("ns3", &labels(&[("app", "web")]), |n| (n == "ns3")
                .then_some(&team))
        );
        assert!(
            !t.matches("ns4", &labels(&[("app", "web")]), |n| (n == "ns3")
                .then_some(&team))
        );

        let mut no_selector = term.clone();
        no_selector.label_selector = None;
        let t = Term::new(&no_selector, "ns1", &Labels::new(), 1);
        assert!(!t.matches("ns1", &labels(&[("app", "web")]), none));

        let mut keyed = term;
        keyed.match_label_keys = Some(vec!["rev".into()]);
        let t = Term::new(&keyed, "ns1", &labels(&[("rev", "2")]), 1);
        assert!(t.matches("ns1", &labels(&[("app", "web"), ("rev", "2")]), none));
        assert!(!t.matches("ns1", &labels(&[("app", "web"), ("rev", "1")]), none));
    }
}
