//! A small [`PatchSchema`] with the real Kubernetes metadata of the fields the
//! tests exercise (Pod, Deployment, ConfigMap).

use crate::schema::{FieldMeta, PatchSchema};

pub(crate) struct K8s;

fn merge(key: Option<&str>, map_keys: &[&str]) -> FieldMeta {
    FieldMeta {
        patch_strategy: Some("merge".into()),
        patch_merge_key: key.map(Into::into),
        list_type: Some(if key.is_some() { "map" } else { "set" }.into()),
        list_map_keys: map_keys.iter().map(|k| k.to_string()).collect(),
        map_type: None,
    }
}

impl PatchSchema for K8s {
    fn field(&self, path: &[&str]) -> Option<FieldMeta> {
        let joined = path.join(".");
        // Pod spec fields, bare (Pod) or under a Deployment's template.
        let pod = joined
            .strip_prefix("spec.template.")
            .unwrap_or(&joined)
            .to_string();
        let meta = match pod.as_str() {
            "metadata.finalizers" => merge(None, &[]),
            "metadata.ownerReferences" => merge(Some("uid"), &["uid"]),
            "spec.containers" | "spec.initContainers" => merge(Some("name"), &["name"]),
            "spec.containers.ports" => merge(Some("containerPort"), &["containerPort", "protocol"]),
            "spec.containers.env" => merge(Some("name"), &["name"]),
            "spec.containers.volumeMounts" => merge(Some("mountPath"), &["mountPath"]),
            "spec.containers.args" | "spec.containers.command" => FieldMeta {
                list_type: Some("atomic".into()),
                ..FieldMeta::default()
            },
            "spec.volumes" => FieldMeta {
                patch_strategy: Some("merge,retainKeys".into()),
                ..merge(Some("name"), &["name"])
            },
            "spec.strategy" if joined == "spec.strategy" => FieldMeta {
                patch_strategy: Some("retainKeys".into()),
                ..FieldMeta::default()
            },
            "spec.selector" if joined == "spec.selector" => FieldMeta {
                map_type: Some("atomic".into()),
                ..FieldMeta::default()
            },
            "status.conditions" => merge(Some("type"), &["type"]),
            _ => return None,
        };
        Some(meta)
    }
}
