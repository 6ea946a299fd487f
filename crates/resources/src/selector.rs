//! Label selectors rendered as strings (`app=web,tier in (a,b),!canary`), as
//! `metav1.LabelSelectorAsSelector(...).String()` prints them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

/// The string form of a structured label selector: requirements sorted by key,
/// values sorted. An empty selector gives `""`.
pub fn label_selector_string(selector: &LabelSelector) -> String {
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, v) in selector.match_labels.iter().flatten() {
        reqs.push((k.clone(), format!("{k}={v}")));
    }
    for e in selector.match_expressions.iter().flatten() {
        let mut values = e.values.clone().unwrap_or_default();
        values.sort();
        let key = &e.key;
        let rendered = match e.operator.as_str() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        };
        reqs.push((key.clone(), rendered));
    }
    reqs.sort();
    reqs.into_iter()
        .map(|(_, r)| r)
        .collect::<Vec<_>>()
        .join(",")
}

/// The `status.selector` of the `scale` subresource of Deployments, ReplicaSets and
/// StatefulSets. Their status has no selector field (unlike CRDs, whose
/// `labelSelectorPath` points at one), so the server derives it from `spec.selector`
/// with this function. `None` when the object has no structured `spec.selector`.
pub fn scale_selector(obj: &Value) -> Option<String> {
    let sel = obj.pointer("/spec/selector")?;
    let sel: LabelSelector = serde_json::from_value(sel.clone()).ok()?;
    Some(label_selector_string(&sel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_like_kubernetes() {
        let obj = json!({"spec": {"selector": {
        "matchLabels": {"tier": "web", "app": "x"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "dev"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "zone", "operator": "Exists"}
        ]}}});
        assert_eq!(
            scale_selector(&obj).unwrap(),
            "app=x,!canary,env in (dev,prod),tier=web,zone"
        );
        assert_eq!(
            scale_selector(&json!({"spec": {"selector": {}}})).unwrap(),
            ""
        );
        assert_eq!(scale_selector(&json!({"spec": {"selector": []}})), None);
    }
}
