//! Turns (method, path, query) into a typed [`RequestInfo`], the way Kubernetes'
//! request-info resolver does, before any handler runs.

use http::Method;

/// What a resource request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRequest {
    /// API group, `""` for core (`/api`).
    pub group: String,
    pub version: String,
    /// Namespace from the URL (`/namespaces/<ns>/...`), if any.
    pub namespace: Option<String>,
    /// Plural resource name.
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    pub verb: Verb,
}

/// The Kubernetes verb of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// A request routed by path shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestInfo {
    /// `/api`: core versions (or aggregated core discovery).
    CoreVersions,
    /// `/apis`: group list (or aggregated discovery).
    Groups,
    /// `/apis/<group>`.
    Group {
        group: String,
    },
    /// `/api/v1`, `/apis/<g>/<v>`: resource list.
    GroupVersion {
        group: String,
        version: String,
    },
    Resource(ResourceRequest),
    /// Anything else (`/version`, `/healthz`, `/openapi/...`, `/metrics`).
    NonResource {
        path: String,
    },
}

impl RequestInfo {
    /// A short label for metrics: the resource, or the non-resource path class.
    pub fn resource_label(&self) -> String {
        match self {
            RequestInfo::Resource(r) => match &r.subresource {
                Some(s) => format!("{}/{}", r.resource, s),
                None => r.resource.clone(),
            },
            RequestInfo::NonResource { .. } => String::new(),
            _ => "discovery".into(),
        }
    }
}

fn is_watch(query: Option<&str>) -> bool {
    let Some(q) = query else { return false };
    q.split('&').any(|kv| {
        let mut it = kv.splitn(2, '=');
        it.next() == Some("watch") && matches!(it.next(), Some("1") | Some("true") | Some("True"))
    })
}

/// Resolve a request. Never fails: unknown shapes become `NonResource`.
pub fn resolve(method: &Method, path: &str, query: Option<&str>) -> RequestInfo {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return RequestInfo::CoreVersions,
        ["apis"] => return RequestInfo::Groups,
        ["apis", g] => return RequestInfo::Group { group: (*g).into() },
        ["api", v] => {
            return RequestInfo::GroupVersion {
                group: String::new(),
                version: (*v).into(),
            }
        }
        ["apis", g, v] => {
            return RequestInfo::GroupVersion {
                group: (*g).into(),
                version: (*v).into(),
            }
        }
        ["api", v, rest @ ..] => (String::new(), (*v).to_string(), rest),
        ["apis", g, v, rest @ ..] => ((*g).to_string(), (*v).to_string(), rest),
        _ => {
            return RequestInfo::NonResource {
                path: path.to_string(),
            }
        }
    };
    // `namespaces/<ns>/<resource>...` vs. the namespaces resource itself.
    let (namespace, rest): (Option<String>, &[&str]) = match rest {
        // `namespaces/<name>/status|finalize` are subresources of the namespace itself.
        ["namespaces", _name, "status" | "finalize"] => (None, rest),
        ["namespaces", ns, _resource, ..] => (Some((*ns).to_string()), tail_after(rest, 2)),
        _ => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [r] => ((*r).to_string(), None, None),
        [r, n] => ((*r).to_string(), Some((*n).to_string()), None),
        [r, n, s] => (
            (*r).to_string(),
            Some((*n).to_string()),
            Some((*s).to_string()),
        ),
        // Deeper paths (pod proxy paths) keep the first subresource segment.
        [r, n, s, ..] => (
            (*r).to_string(),
            Some((*n).to_string()),
            Some((*s).to_string()),
        ),
        _ => {
            return RequestInfo::NonResource {
                path: path.to_string(),
            }
        }
    };
    let watch = is_watch(query);
    let verb = match (method, name.is_some()) {
        (&Method::GET, _) if watch => Verb::Watch,
        (&Method::GET, false) => Verb::List,
        (&Method::GET, true) => Verb::Get,
        (&Method::POST, _) => Verb::Create,
        (&Method::PUT, _) => Verb::Update,
        (&Method::PATCH, _) => Verb::Patch,
        (&Method::DELETE, false) => Verb::DeleteCollection,
        (&Method::DELETE, true) => Verb::Delete,
        _ => Verb::Get,
    };
    RequestInfo::Resource(ResourceRequest {
        group,
        version,
        namespace,
        resource,
        name,
        subresource,
        verb,
    })
}

fn tail_after<'a>(rest: &'a [&'a str], skip: usize) -> &'a [&'a str] {
    rest.get(skip..).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(m: Method, p: &str, q: Option<&str>) -> ResourceRequest {
        match resolve(&m, p, q) {
            RequestInfo::Resource(r) => r,
            other => panic!("not a resource request: {other:?}"),
        }
    }

    #[test]
    fn namespaced_item_and_subresource() {
        let r = res(
            Method::GET,
            "/apis/apps/v1/namespaces/ns1/deployments/web/scale",
            None,
        );
        assert_eq!(r.group, "apps");
        assert_eq!(r.namespace.as_deref(), Some("ns1"));
        assert_eq!(r.resource, "deployments");
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource.as_deref(), Some("scale"));
        assert_eq!(r.verb, Verb::Get);
    }

    #[test]
    fn namespaces_resource_itself() {
        let r = res(Method::GET, "/api/v1/namespaces/ns1", None);
        assert_eq!(r.resource, "namespaces");
        assert_eq!(r.name.as_deref(), Some("ns1"));
        assert_eq!(r.namespace, None);
        let r = res(Method::PUT, "/api/v1/namespaces/ns1/finalize", None);
        assert_eq!(r.resource, "namespaces");
        assert_eq!(r.subresource.as_deref(), Some("finalize"));
        let r = res(Method::GET, "/api/v1/namespaces", Some("watch=true"));
        assert_eq!(r.verb, Verb::Watch);
    }

    #[test]
    fn collections_and_verbs() {
        assert_eq!(res(Method::GET, "/api/v1/pods", None).verb, Verb::List);
        assert_eq!(
            res(Method::GET, "/api/v1/namespaces/a/pods", Some("watch=1")).verb,
            Verb::Watch
        );
        assert_eq!(
            res(Method::DELETE, "/api/v1/namespaces/a/pods", None).verb,
            Verb::DeleteCollection
        );
        assert_eq!(resolve(&Method::GET, "/apis", None), RequestInfo::Groups);
        assert!(matches!(
            resolve(&Method::GET, "/version", None),
            RequestInfo::NonResource { .. }
        ));
    }
}
