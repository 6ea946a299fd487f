//! The list of built-in kinds: names, scope, verbs and subresources as upstream
//! serves them, since `kubectl api-resources` and `kubectl get all` read them.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, LimitRange, Namespace, Node, PersistentVolumeClaim, Pod,
    ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::typed::{BuiltinKind, TypedStrategy};
use crate::{ResourceDef, ScaleSubresource};

/// Every verb of a fully-featured resource.
const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Maps k8s-openapi's scope marker types to "is namespaced".
trait Scope {
    const NAMESPACED: bool;
}
impl Scope for k8s_openapi::NamespaceResourceScope {
    const NAMESPACED: bool = true;
}
impl Scope for k8s_openapi::ClusterResourceScope {
    const NAMESPACED: bool = false;
}

/// A [`ResourceDef`] under construction; names come from the k8s-openapi type.
struct Def(ResourceDef);

impl Def {
    fn of<K>() -> Def
    where
        K: BuiltinKind + schemars::JsonSchema,
        K::Scope: Scope,
    {
        Def(ResourceDef {
            group: K::GROUP.into(),
            version: K::VERSION.into(),
            kind: K::KIND.into(),
            list_kind: format!("{}List", K::KIND),
            plural: K::URL_PATH_SEGMENT.into(),
            singular: K::KIND.to_lowercase(),
            short_names: Vec::new(),
            categories: Vec::new(),
            namespaced: <K::Scope as Scope>::NAMESPACED,
            verbs: ALL_VERBS.iter().map(|v| v.to_string()).collect(),
            has_status: false,
            scale: None,
            extra_subresources: Vec::new(),
            schema: Some(|g| g.subschema_for::<K>()),
            strategy: Arc::new(TypedStrategy::<K>::new()),
        })
    }
    fn short(mut self, names: &[&str]) -> Self {
        self.0.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }
    fn categories(mut self, cats: &[&str]) -> Self {
        self.0.categories = cats.iter().map(|s| s.to_string()).collect();
        self
    }
    /// Member of `kubectl get all`.
    fn all(self) -> Self {
        self.categories(&["all"])
    }
    fn status(mut self) -> Self {
        self.0.has_status = true;
        self
    }
    /// `scale` at `.spec.replicas`/`.status.replicas`. The selector path is
    /// `.status.selector` by CRD convention; see [`crate::scale_selector`] for how
    /// the server fills it for built-ins, whose status has no such field.
    fn scale(mut self) -> Self {
        self.0.scale = Some(ScaleSubresource {
            spec_replicas_path: ".spec.replicas".into(),
            status_replicas_path: ".status.replicas".into(),
            label_selector_path: Some(".status.selector".into()),
        });
        self
    }
    fn extra(mut self, subresources: &[&str]) -> Self {
        self.0.extra_subresources = subresources.iter().map(|s| s.to_string()).collect();
        self
    }
    fn verbs(mut self, verbs: &[&str]) -> Self {
        self.0.verbs = verbs.iter().map(|s| s.to_string()).collect();
        self
    }
}

/// Every built-in kind, each exactly once.
pub(crate) fn all() -> Vec<ResourceDef> {
    let defs = vec![
        // Namespaces are deleted one at a time (finalization), so no deletecollection.
        Def::of::<Namespace>().short(&["ns"]).status().verbs(&[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ]),
        Def::of::<Pod>().short(&["po"]).all().status().extra(&[
            "log",
            "exec",
            "attach",
            "portforward",
            "binding",
            "eviction",
            "proxy",
        ]),
        Def::of::<Service>()
            .short(&["svc"])
            .all()
            .status()
            .extra(&["proxy"]),
        Def::of::<Endpoints>().short(&["ep"]),
        Def::of::<ConfigMap>().short(&["cm"]),
        Def::of::<Secret>(),
        Def::of::<ServiceAccount>().short(&["sa"]).extra(&["token"]),
        Def::of::<Event>().short(&["ev"]),
        Def::of::<Node>().short(&["no"]).status().extra(&["proxy"]),
        Def::of::<ResourceQuota>().short(&["quota"]).status(),
        Def::of::<LimitRange>().short(&["limits"]),
        Def::of::<PersistentVolumeClaim>().short(&["pvc"]).status(),
        Def::of::<Deployment>()
            .short(&["deploy"])
            .all()
            .status()
            .scale(),
        Def::of::<ReplicaSet>()
            .short(&["rs"])
            .all()
            .status()
            .scale(),
        Def::of::<StatefulSet>()
            .short(&["sts"])
            .all()
            .status()
            .scale(),
        Def::of::<DaemonSet>().short(&["ds"]).all().status(),
        Def::of::<ControllerRevision>(),
        Def::of::<Job>().all().status(),
        Def::of::<CronJob>().short(&["cj"]).all().status(),
        Def::of::<EndpointSlice>(),
        Def::of::<Lease>(),
        Def::of::<HorizontalPodAutoscaler>()
            .short(&["hpa"])
            .all()
            .status(),
        Def::of::<NetworkPolicy>().short(&["netpol"]),
        Def::of::<Ingress>().short(&["ing"]).status(),
        Def::of::<RuntimeClass>(),
        Def::of::<Role>(),
        Def::of::<RoleBinding>(),
        Def::of::<ClusterRole>(),
        Def::of::<ClusterRoleBinding>(),
        Def::of::<CustomResourceDefinition>()
            .short(&["crd", "crds"])
            .categories(&["api-extensions"])
            .status(),
    ];
    defs.into_iter().map(|d| d.0).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn find(plural: &str) -> ResourceDef {
        all().into_iter().find(|d| d.plural == plural).unwrap()
    }

    #[test]
    fn every_kind_is_registered_once_with_upstream_names() {
        let defs = all();
        let mut seen = HashSet::new();
        for d in &defs {
            assert!(
                seen.insert((d.group.clone(), d.plural.clone())),
                "duplicate {}",
                d.plural
            );
            assert!(d.schema.is_some());
            assert_eq!(d.list_kind, format!("{}List", d.kind));
        }
        let expected = [
            ("", "namespaces", "namespace", &["ns"][..]),
            ("", "pods", "pod", &["po"]),
            ("", "services", "service", &["svc"]),
            ("", "endpoints", "endpoints", &["ep"]),
            ("", "configmaps", "configmap", &["cm"]),
            ("", "secrets", "secret", &[]),
            ("", "serviceaccounts", "serviceaccount", &["sa"]),
            ("", "events", "event", &["ev"]),
            ("", "nodes", "node", &["no"]),
            ("", "resourcequotas", "resourcequota", &["quota"]),
            ("", "limitranges", "limitrange", &["limits"]),
            (
                "",
                "persistentvolumeclaims",
                "persistentvolumeclaim",
                &["pvc"],
            ),
            ("apps", "deployments", "deployment", &["deploy"]),
            ("apps", "replicasets", "replicaset", &["rs"]),
            ("apps", "statefulsets", "statefulset", &["sts"]),
            ("apps", "daemonsets", "daemonset", &["ds"]),
            ("apps", "controllerrevisions", "controllerrevision", &[]),
            ("batch", "jobs", "job", &[]),
            ("batch", "cronjobs", "cronjob", &["cj"]),
            ("discovery.k8s.io", "endpointslices", "endpointslice", &[]),
            ("coordination.k8s.io", "leases", "lease", &[]),
            (
                "autoscaling",
                "horizontalpodautoscalers",
                "horizontalpodautoscaler",
                &["hpa"],
            ),
            (
                "networking.k8s.io",
                "networkpolicies",
                "networkpolicy",
                &["netpol"],
            ),
            ("networking.k8s.io", "ingresses", "ingress", &["ing"]),
            ("node.k8s.io", "runtimeclasses", "runtimeclass", &[]),
            ("rbac.authorization.k8s.io", "roles", "role", &[]),
            (
                "rbac.authorization.k8s.io",
                "rolebindings",
                "rolebinding",
                &[],
            ),
            (
                "rbac.authorization.k8s.io",
                "clusterroles",
                "clusterrole",
                &[],
            ),
            (
                "rbac.authorization.k8s.io",
                "clusterrolebindings",
                "clusterrolebinding",
                &[],
            ),
            (
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                "customresourcedefinition",
                &["crd", "crds"],
            ),
        ];
        assert_eq!(defs.len(), expected.len());
        for (group, plural, singular, short) in expected {
            let d = defs
                .iter()
                .find(|d| d.plural == plural && d.group == group)
                .unwrap();
            assert_eq!(d.singular, singular);
            assert_eq!(d.short_names, short, "{plural}");
        }
    }

    #[test]
    fn get_all_members_match_upstream() {
        let mut all_members: Vec<String> = all()
            .into_iter()
            .filter(|d| d.categories.contains(&"all".to_string()))
            .map(|d| d.plural)
            .collect();
        all_members.sort();
        assert_eq!(
            all_members,
            [
                "cronjobs",
                "daemonsets",
                "deployments",
                "horizontalpodautoscalers",
                "jobs",
                "pods",
                "replicasets",
                "services",
                "statefulsets"
            ]
        );
    }

    #[test]
    fn scope_verbs_and_subresources() {
        assert!(!find("nodes").namespaced);
        assert!(!find("namespaces").namespaced);
        assert!(!find("customresourcedefinitions").namespaced);
        assert!(!find("clusterroles").namespaced);
        assert!(find("pods").namespaced);
        assert!(!find("namespaces")
            .verbs
            .contains(&"deletecollection".to_string()));
        assert!(find("events")
            .verbs
            .contains(&"deletecollection".to_string()));
        let deploy = find("deployments");
        assert_eq!(deploy.api_version(), "apps/v1");
        assert_eq!(deploy.scale.unwrap().spec_replicas_path, ".spec.replicas");
        assert!(find("daemonsets").scale.is_none());
        assert!(find("pods")
            .extra_subresources
            .contains(&"eviction".to_string()));
        assert_eq!(find("serviceaccounts").extra_subresources, ["token"]);
        assert_eq!(find("horizontalpodautoscalers").version, "v2");
    }
}
