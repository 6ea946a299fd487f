//! Pod and pod-template validation (`ValidatePodSpec` and friends).

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{
    Container, Pod, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::meta::{validate_annotations, validate_labels};
use super::names::dns1123_label;
use super::{non_negative, one_of, port_number, quantity};
use crate::FieldError;

pub(crate) const RESTART_POLICIES: &[&str] = &["Always", "Never", "OnFailure"];
const DNS_POLICIES: &[&str] = &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
pub(crate) const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];

/// The fields a pod update may touch, as upstream words the refusal.
const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodSpec` under `path` (`spec`, `spec.template.spec`).
pub(crate) fn pod_spec(spec: &PodSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let volumes = volumes(spec, path, &mut errs);
    if spec.containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut names = HashSet::new();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        container(
            c,
            &format!("{path}.initContainers[{i}]"),
            &volumes,
            &mut names,
            &mut errs,
        );
    }
    for (i, c) in spec.containers.iter().enumerate() {
        container(
            c,
            &format!("{path}.containers[{i}]"),
            &volumes,
            &mut names,
            &mut errs,
        );
    }
    one_of(
        &mut errs,
        &format!("{path}.restartPolicy"),
        spec.restart_policy.as_deref(),
        RESTART_POLICIES,
    );
    one_of(
        &mut errs,
        &format!("{path}.dnsPolicy"),
        spec.dns_policy.as_deref(),
        DNS_POLICIES,
    );
    non_negative(
        &mut errs,
        &format!("{path}.terminationGracePeriodSeconds"),
        spec.termination_grace_period_seconds,
    );
    if let Some(ads) = spec.active_deadline_seconds {
        if ads <= 0 {
            errs.push(FieldError::invalid(
                format!("{path}.activeDeadlineSeconds"),
                Value::from(ads),
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    if let Some(sa) = spec
        .service_account_name
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        for msg in super::names::dns1123_subdomain(sa) {
            errs.push(FieldError::invalid(
                format!("{path}.serviceAccountName"),
                Value::String(sa.into()),
                msg,
            ));
        }
    }
    if let Some(node) = spec.node_name.as_deref().filter(|s| !s.is_empty()) {
        for msg in super::names::dns1123_subdomain(node) {
            errs.push(FieldError::invalid(
                format!("{path}.nodeName"),
                Value::String(node.into()),
                msg,
            ));
        }
    }
    errs.extend(validate_labels(
        spec.node_selector.as_ref(),
        &format!("{path}.nodeSelector"),
    ));
    for (field, v) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            for msg in dns1123_label(v) {
                errs.push(FieldError::invalid(
                    format!("{path}.{field}"),
                    Value::String(v.into()),
                    msg,
                ));
            }
        }
    }
    for (i, t) in spec.tolerations.iter().flatten().enumerate() {
        toleration(t, &format!("{path}.tolerations[{i}]"), &mut errs);
    }
    errs
}

/// `ValidateTolerations`: operator and effect enums, and their interplay with
/// `key`/`value`.
fn toleration(t: &Toleration, path: &str, errs: &mut Vec<FieldError>) {
    let key = t.key.as_deref().unwrap_or_default();
    if !key.is_empty() {
        for msg in super::names::qualified_name(key) {
            errs.push(FieldError::invalid(
                format!("{path}.key"),
                Value::String(key.into()),
                msg,
            ));
        }
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "" | "Equal" => {
            if key.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{path}.operator"),
                    Value::String(t.operator.clone().unwrap_or_default()),
                    "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                ));
            }
            let value = t.value.as_deref().unwrap_or_default();
            for msg in super::names::label_value(value) {
                errs.push(FieldError::invalid(
                    format!("{path}.value"),
                    Value::String(value.into()),
                    msg,
                ));
            }
        }
        "Exists" => {
            if t.value.as_deref().is_some_and(|v| !v.is_empty()) {
                errs.push(FieldError::invalid(
                    format!("{path}.operator"),
                    Value::String(t.value.clone().unwrap_or_default()),
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            format!("{path}.operator"),
            Value::String(other.into()),
            &["Equal", "Exists"],
        )),
    }
    if t.toleration_seconds.is_some() && t.effect.as_deref() != Some("NoExecute") {
        errs.push(FieldError::invalid(
            format!("{path}.effect"),
            Value::String(t.effect.clone().unwrap_or_default()),
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        ));
    }
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        one_of(
            errs,
            &format!("{path}.effect"),
            Some(effect),
            &["NoExecute", "NoSchedule", "PreferNoSchedule"],
        );
    }
}

/// Volume names must be unique DNS labels; returns the set of names.
fn volumes(spec: &PodSpec, path: &str, errs: &mut Vec<FieldError>) -> HashSet<String> {
    let mut seen = HashSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let p = format!("{path}.volumes[{i}].name");
        if v.name.is_empty() {
            errs.push(FieldError::required(p, ""));
            continue;
        }
        for msg in dns1123_label(&v.name) {
            errs.push(FieldError::invalid(&p, Value::String(v.name.clone()), msg));
        }
        if !seen.insert(v.name.clone()) {
            errs.push(FieldError::duplicate(p, Value::String(v.name.clone())));
        }
    }
    seen
}

fn container(
    c: &Container,
    path: &str,
    volumes: &HashSet<String>,
    names: &mut HashSet<String>,
    errs: &mut Vec<FieldError>,
) {
    let name_path = format!("{path}.name");
    if c.name.is_empty() {
        errs.push(FieldError::required(name_path, ""));
    } else {
        for msg in dns1123_label(&c.name) {
            errs.push(FieldError::invalid(
                &name_path,
                Value::String(c.name.clone()),
                msg,
            ));
        }
        if !names.insert(c.name.clone()) {
            errs.push(FieldError::duplicate(
                name_path,
                Value::String(c.name.clone()),
            ));
        }
    }
    if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
        errs.push(FieldError::required(format!("{path}.image"), ""));
    }
    one_of(
        errs,
        &format!("{path}.imagePullPolicy"),
        c.image_pull_policy.as_deref(),
        PULL_POLICIES,
    );
    one_of(
        errs,
        &format!("{path}.terminationMessagePolicy"),
        c.termination_message_policy.as_deref(),
        &["FallbackToLogsOnError", "File"],
    );
    let mut port_names = HashSet::new();
    for (i, p) in c.ports.iter().flatten().enumerate() {
        let pp = format!("{path}.ports[{i}]");
        if p.container_port == 0 {
            errs.push(FieldError::required(format!("{pp}.containerPort"), ""));
        } else {
            port_number(errs, &format!("{pp}.containerPort"), p.container_port);
        }
        if let Some(hp) = p.host_port.filter(|h| *h != 0) {
            port_number(errs, &format!("{pp}.hostPort"), hp);
        }
        match p.protocol.as_deref() {
            None | Some("") => errs.push(FieldError::required(format!("{pp}.protocol"), "")),
            proto => one_of(errs, &format!("{pp}.protocol"), proto, PROTOCOLS),
        }
        if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
            for msg in super::names::port_name(n) {
                errs.push(FieldError::invalid(
                    format!("{pp}.name"),
                    Value::String(n.into()),
                    msg,
                ));
            }
            if !port_names.insert(n.to_string()) {
                errs.push(FieldError::duplicate(
                    format!("{pp}.name"),
                    Value::String(n.into()),
                ));
            }
        }
    }
    let mut mount_paths = HashSet::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let mp = format!("{path}.volumeMounts[{i}]");
        if m.name.is_empty() {
            errs.push(FieldError::required(format!("{mp}.name"), ""));
        } else if !volumes.contains(&m.name) {
            errs.push(FieldError::new(
                crate::ErrorType::NotFound,
                format!("{mp}.name"),
                Some(Value::String(m.name.clone())),
                "",
            ));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(format!("{mp}.mountPath"), ""));
        } else if !mount_paths.insert(m.mount_path.as_str()) {
            errs.push(FieldError::invalid(
                format!("{mp}.mountPath"),
                Value::String(m.mount_path.clone()),
                "must be unique",
            ));
        }
    }
    for (i, e) in c.env.iter().flatten().enumerate() {
        let ep = format!("{path}.env[{i}].name");
        if e.name.is_empty() {
            errs.push(FieldError::required(ep, ""));
        } else {
            for msg in super::names::env_var_name(&e.name) {
                errs.push(FieldError::invalid(&ep, Value::String(e.name.clone()), msg));
            }
        }
    }
    let probes = [
        ("livenessProbe", &c.liveness_probe, true),
        ("readinessProbe", &c.readiness_probe, false),
        ("startupProbe", &c.startup_probe, true),
    ];
    for (name, probe, success_must_be_one) in probes {
        if let Some(p) = probe {
            self::probe(p, &format!("{path}.{name}"), success_must_be_one, errs);
        }
    }
    if let Some(r) = &c.resources {
        resources(r, &format!("{path}.resources"), errs);
    }
}

/// A probe has exactly one handler and sane thresholds.
fn probe(p: &Probe, path: &str, success_must_be_one: bool, errs: &mut Vec<FieldError>) {
    let handlers = [
        p.exec.is_some(),
        p.http_get.is_some(),
        p.tcp_socket.is_some(),
        p.grpc.is_some(),
    ];
    match handlers.iter().filter(|h| **h).count() {
        0 => errs.push(FieldError::required(path, "must specify a handler type")),
        1 => {}
        _ => errs.push(FieldError::forbidden(
            path,
            "may not specify more than 1 handler type",
        )),
    }
    for (field, v) in [
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("periodSeconds", p.period_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        non_negative(errs, &format!("{path}.{field}"), v);
    }
    if success_must_be_one {
        if let Some(s) = p.success_threshold.filter(|s| *s != 1) {
            errs.push(FieldError::invalid(
                format!("{path}.successThreshold"),
                Value::from(s),
                "must be 1",
            ));
        }
    }
    if let Some(h) = &p.http_get {
        probe_port(&h.port, &format!("{path}.httpGet.port"), errs);
    }
    if let Some(t) = &p.tcp_socket {
        probe_port(&t.port, &format!("{path}.tcpSocket.port"), errs);
    }
}

fn probe_port(port: &IntOrString, path: &str, errs: &mut Vec<FieldError>) {
    match port {
        IntOrString::Int(n) => port_number(errs, path, *n),
        IntOrString::String(s) => {
            for msg in super::names::port_name(s) {
                errs.push(FieldError::invalid(path, Value::String(s.clone()), msg));
            }
        }
    }
}

/// Quantities must be non-negative and each request at most its limit.
fn resources(r: &ResourceRequirements, path: &str, errs: &mut Vec<FieldError>) {
    let empty = BTreeMap::new();
    let limits = r.limits.as_ref().unwrap_or(&empty);
    let requests = r.requests.as_ref().unwrap_or(&empty);
    for (kind, map) in [("limits", limits), ("requests", requests)] {
        for (name, q) in map {
            match quantity::parse(&q.0) {
                None => errs.push(FieldError::invalid(
                    format!("{path}.{kind}[{name}]"),
                    Value::String(q.0.clone()),
                    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                )),
                Some(v) if v < 0.0 => errs.push(FieldError::invalid(
                    format!("{path}.{kind}[{name}]"),
                    Value::String(q.0.clone()),
                    "must be greater than or equal to 0",
                )),
                Some(_) => {}
            }
        }
    }
    for (name, req) in requests {
        let Some(limit) = limits.get(name) else {
            continue;
        };
        if let (Some(r), Some(l)) = (quantity::parse(&req.0), quantity::parse(&limit.0)) {
            if r > l {
                errs.push(FieldError::invalid(
                    format!("{path}.requests[{name}]"),
                    Value::String(req.0.clone()),
                    format!("must be less than or equal to {name} limit of {}", limit.0),
                ));
            }
        }
    }
}

/// `ValidatePodTemplateSpec` under `path` (`spec.template`).
pub(crate) fn pod_template(t: &PodTemplateSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(meta) = &t.metadata {
        errs.extend(validate_labels(
            meta.labels.as_ref(),
            &format!("{path}.metadata.labels"),
        ));
        errs.extend(validate_annotations(
            meta.annotations.as_ref(),
            &format!("{path}.metadata.annotations"),
        ));
    }
    match &t.spec {
        Some(spec) => errs.extend(pod_spec(spec, &format!("{path}.spec"))),
        None => errs.push(FieldError::required(format!("{path}.spec.containers"), "")),
    }
    errs
}

/// Restricts a template's restart policy (`Always` for Deployments, `OnFailure` or
/// `Never` for Jobs).
pub(crate) fn template_restart_policy(
    t: &PodTemplateSpec,
    path: &str,
    allowed: &[&str],
    errs: &mut Vec<FieldError>,
) {
    let policy = t.spec.as_ref().and_then(|s| s.restart_policy.as_deref());
    if let Some(p) = policy {
        if !allowed.contains(&p) {
            errs.push(FieldError::not_supported(
                format!("{path}.spec.restartPolicy"),
                Value::String(p.into()),
                allowed,
            ));
        }
    }
}

pub(crate) fn pod(pod: &Pod, old: Option<&Pod>) -> Vec<FieldError> {
    let mut errs = match &pod.spec {
        Some(spec) => pod_spec(spec, "spec"),
        None => vec![FieldError::required("spec.containers", "")],
    };
    if let (Some(new), Some(old)) = (pod.spec.as_ref(), old.and_then(|o| o.spec.as_ref())) {
        if !pod_update_allowed(new, old) {
            errs.push(FieldError::forbidden("spec", POD_UPDATE_FORBIDDEN));
        }
    }
    errs
}

/// Whether `new` differs from `old` only in the mutable fields.
fn pod_update_allowed(new: &PodSpec, old: &PodSpec) -> bool {
    let mut munged = new.clone();
    if munged.containers.len() == old.containers.len() {
        for (c, o) in munged.containers.iter_mut().zip(&old.containers) {
            c.image.clone_from(&o.image);
        }
    }
    if let (Some(cs), Some(os)) = (
        munged.init_containers.as_mut(),
        old.init_containers.as_ref(),
    ) {
        if cs.len() == os.len() {
            for (c, o) in cs.iter_mut().zip(os) {
                c.image.clone_from(&o.image);
            }
        }
    }
    munged.active_deadline_seconds = old.active_deadline_seconds;
    munged.termination_grace_period_seconds = old.termination_grace_period_seconds;
    let old_tolerations = old.tolerations.clone().unwrap_or_default();
    let new_tolerations = munged.tolerations.clone().unwrap_or_default();
    if new_tolerations.starts_with(&old_tolerations) {
        munged.tolerations.clone_from(&old.tolerations);
    }
    // The node name is set through the binding subresource, which bypasses this check.
    munged.node_name.clone_from(&old.node_name);
    &munged == old
}
