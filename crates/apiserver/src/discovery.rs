//! API discovery: the legacy documents (`APIVersions`, `APIGroupList`, `APIGroup`,
//! `APIResourceList`) and aggregated discovery (`apidiscovery.k8s.io/v2`), all built
//! from the registry snapshot.

use serde_json::{json, Value};

use crate::registry::{Resource, Snapshot};

/// The Content-Type kubectl keys on to treat a reply as aggregated discovery.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
pub const AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Which aggregated discovery version the client accepts, if any (first match in
/// its preference order).
pub fn wants_aggregated(accept: &str) -> Option<&'static str> {
    for alt in accept.split(',') {
        let params: Vec<&str> = alt.split(';').map(str::trim).collect();
        if params.contains(&"as=APIGroupDiscoveryList") && params.contains(&"g=apidiscovery.k8s.io")
        {
            if params.contains(&"v=v2") {
                return Some("v2");
            }
            if params.contains(&"v=v2beta1") {
                return Some("v2beta1");
            }
        }
        if params.first().is_some_and(|m| *m == "application/json") && params.len() == 1 {
            return None;
        }
    }
    None
}

/// (subresource, response (group, version, kind), verbs).
type Subresource = (String, (String, String, String), Vec<&'static str>);

/// Subresources served by this API server, with their response kinds and verbs.
fn subresources(r: &Resource) -> Vec<Subresource> {
    let mut out = Vec::new();
    let own = (
        r.def.group.clone(),
        r.def.version.clone(),
        r.def.kind.clone(),
    );
    if r.def.has_status {
        out.push((
            "status".to_string(),
            own.clone(),
            vec!["get", "patch", "update"],
        ));
    }
    if r.def.scale.is_some() {
        out.push((
            "scale".to_string(),
            (
                "autoscaling".to_string(),
                "v1".to_string(),
                "Scale".to_string(),
            ),
            vec!["get", "patch", "update"],
        ));
    }
    if r.is_core("namespaces") {
        out.push(("finalize".to_string(), own, vec!["update"]));
    }
    out
}

fn short_names(r: &Resource) -> Value {
    json!(r.def.short_names)
}

/// `APIResourceList` for one group/version.
pub fn resource_list(snap: &Snapshot, group: &str, version: &str) -> Option<Value> {
    let resources = snap.resources(group, version);
    if resources.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for r in &resources {
        let mut entry = json!({
            "name": r.def.plural,
            "singularName": r.def.singular,
            "namespaced": r.def.namespaced,
            "kind": r.def.kind,
            "verbs": r.def.verbs,
        });
        if !r.def.short_names.is_empty() {
            entry["shortNames"] = short_names(r);
        }
        if !r.def.categories.is_empty() {
            entry["categories"] = json!(r.def.categories);
        }
        list.push(entry);
        for (sub, (g, v, k), verbs) in subresources(r) {
            let mut e = json!({
                "name": format!("{}/{sub}", r.def.plural),
                "singularName": "",
                "namespaced": r.def.namespaced,
                "kind": k,
                "verbs": verbs,
            });
            if g != r.def.group || v != r.def.version {
                e["group"] = json!(g);
                e["version"] = json!(v);
            }
            list.push(e);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({"name": name, "versions": vs, "preferredVersion": preferred})
}

pub fn group_list(snap: &Snapshot) -> Value {
    let groups: Vec<Value> = snap
        .groups()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_entry(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(snap: &Snapshot, name: &str) -> Option<Value> {
    snap.groups()
        .iter()
        .find(|(g, _)| g == name && !g.is_empty())
        .map(|(g, vs)| {
            let mut v = group_entry(g, vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            v
        })
}

fn aggregated_group(snap: &Snapshot, name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = snap
                .resources(name, v)
                .iter()
                .map(|r| {
                    let mut e = json!({
                        "resource": r.def.plural,
                        "responseKind": {"group": r.def.group, "version": r.def.version, "kind": r.def.kind},
                        "scope": if r.def.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": r.def.singular,
                        "verbs": r.def.verbs,
                    });
                    if !r.def.short_names.is_empty() {
                        e["shortNames"] = short_names(r);
                    }
                    if !r.def.categories.is_empty() {
                        e["categories"] = json!(r.def.categories);
                    }
                    let subs: Vec<Value> = subresources(r)
                        .into_iter()
                        .map(|(s, (g, v, k), verbs)| {
                            json!({"subresource": s, "responseKind": {"group": g, "version": v, "kind": k}, "verbs": verbs})
                        })
                        .collect();
                    if !subs.is_empty() {
                        e["subresources"] = json!(subs);
                    }
                    e
                })
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": name, "creationTimestamp": null}, "versions": vs})
}

/// Aggregated discovery: for `/api` only the core group, for `/apis` the rest.
pub fn aggregated(snap: &Snapshot, core: bool, version: &str) -> Value {
    let items: Vec<Value> = snap
        .groups()
        .iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, vs)| aggregated_group(snap, g, vs))
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}
