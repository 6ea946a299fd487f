//! Pod and pod-template defaults (`SetDefaults_PodSpec`, `SetDefaults_Container`, ...).

use k8s_openapi::api::core::v1::{
    Container, EnvVar, Pod, PodSecurityContext, PodSpec, PodStatus, PodTemplateSpec, Probe, Volume,
};

use super::{or, or_str};

/// Mode of projected files (secret, configMap, downwardAPI, projected): 0644.
const DEFAULT_FILE_MODE: i32 = 0o644;

/// Defaults shared by pods and pod templates.
pub(crate) fn pod_spec(spec: &mut PodSpec) {
    or_str(&mut spec.dns_policy, "ClusterFirst");
    or_str(&mut spec.restart_policy, "Always");
    or(&mut spec.termination_grace_period_seconds, 30);
    or(&mut spec.security_context, PodSecurityContext::default());
    or_str(&mut spec.scheduler_name, "default-scheduler");
    or(&mut spec.enable_service_links, true);
    let host_network = spec.host_network.unwrap_or(false);
    for c in spec.init_containers.iter_mut().flatten() {
        container(c, host_network);
    }
    for c in spec.containers.iter_mut() {
        container(c, host_network);
    }
    for v in spec.volumes.iter_mut().flatten() {
        volume(v);
    }
}

/// Defaults of a bare pod's spec: the template defaults, plus what the
/// ServiceAccount admission plugin and `SetDefaults_Pod` add.
pub(crate) fn bare_pod_spec(spec: &mut PodSpec) {
    pod_spec(spec);
    or_str(&mut spec.service_account_name, "default");
    // The deprecated alias mirrors the real field, as upstream keeps it in sync.
    if spec.service_account.as_deref().is_none_or(str::is_empty) {
        spec.service_account = spec.service_account_name.clone();
    }
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        requests_from_limits(c);
    }
}

pub(crate) fn pod_template(t: &mut PodTemplateSpec) {
    if let Some(spec) = t.spec.as_mut() {
        pod_spec(spec);
    }
}

/// `SetDefaults_Pod`: a limit without a request implies an equal request.
fn requests_from_limits(c: &mut Container) {
    let Some(resources) = c.resources.as_mut() else {
        return;
    };
    let Some(limits) = resources.limits.clone() else {
        return;
    };
    let requests = resources.requests.get_or_insert_with(Default::default);
    for (k, v) in limits {
        requests.entry(k).or_insert(v);
    }
}

/// `Always` for `:latest` or untagged images, `IfNotPresent` otherwise.
pub(crate) fn image_pull_policy(image: &str) -> &'static str {
    let without_digest = image.split('@').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn container(c: &mut Container, host_network: bool) {
    or_str(&mut c.termination_message_path, "/dev/termination-log");
    or_str(&mut c.termination_message_policy, "File");
    if let Some(image) = c.image.as_deref() {
        let policy = image_pull_policy(image);
        or_str(&mut c.image_pull_policy, policy);
    }
    for p in c.ports.iter_mut().flatten() {
        or_str(&mut p.protocol, "TCP");
        if host_network && p.host_port.unwrap_or(0) == 0 {
            p.host_port = Some(p.container_port);
        }
    }
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        self::probe(probe);
    }
    for e in c.env.iter_mut().flatten() {
        env(e);
    }
}

fn probe(p: &mut Probe) {
    or(&mut p.timeout_seconds, 1);
    or(&mut p.period_seconds, 10);
    or(&mut p.success_threshold, 1);
    or(&mut p.failure_threshold, 3);
    if let Some(h) = p.http_get.as_mut() {
        or_str(&mut h.path, "/");
        or_str(&mut h.scheme, "HTTP");
    }
    if let Some(g) = p.grpc.as_mut() {
        or(&mut g.service, String::new());
    }
}

fn env(e: &mut EnvVar) {
    if let Some(f) = e.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
        or_str(&mut f.api_version, "v1");
    }
}

fn volume(v: &mut Volume) {
    let has_source = v.secret.is_some()
        || v.config_map.is_some()
        || v.empty_dir.is_some()
        || v.host_path.is_some()
        || v.persistent_volume_claim.is_some()
        || v.projected.is_some()
        || v.downward_api.is_some()
        || v.nfs.is_some()
        || v.csi.is_some()
        || v.ephemeral.is_some()
        || v.image.is_some();
    if !has_source {
        // Upstream: a volume with no source is an emptyDir.
        v.empty_dir = Some(Default::default());
    }
    if let Some(s) = v.secret.as_mut() {
        or(&mut s.default_mode, DEFAULT_FILE_MODE);
    }
    if let Some(c) = v.config_map.as_mut() {
        or(&mut c.default_mode, DEFAULT_FILE_MODE);
    }
    if let Some(d) = v.downward_api.as_mut() {
        or(&mut d.default_mode, DEFAULT_FILE_MODE);
    }
    if let Some(p) = v.projected.as_mut() {
        or(&mut p.default_mode, DEFAULT_FILE_MODE);
    }
    if let Some(h) = v.host_path.as_mut() {
        or(&mut h.type_, String::new());
    }
}

/// A new pod starts `Pending` with its QoS class, as the pod strategy sets on create.
/// Never overrides a phase the node has reported.
pub(crate) fn pod_status(pod: &mut Pod) {
    let qos = pod.spec.as_ref().map(qos_class);
    let status = pod.status.get_or_insert_with(PodStatus::default);
    if status.phase.as_deref().is_none_or(str::is_empty) {
        status.phase = Some("Pending".into());
    }
    if status.qos_class.as_deref().is_none_or(str::is_empty) {
        status.qos_class = qos.map(str::to_string);
    }
}

/// `GetPodQOS`: `BestEffort` without any request or limit, `Guaranteed` when every
/// container limits cpu and memory with requests equal to limits, else `Burstable`.
pub(crate) fn qos_class(spec: &PodSpec) -> &'static str {
    let containers: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let any_set = containers.iter().any(|c| {
        c.resources.as_ref().is_some_and(|r| {
            r.requests.as_ref().is_some_and(|m| !m.is_empty())
                || r.limits.as_ref().is_some_and(|m| !m.is_empty())
        })
    });
    if !any_set {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        let Some(r) = c.resources.as_ref() else {
            return false;
        };
        let limits = r.limits.clone().unwrap_or_default();
        let requests = r.requests.clone().unwrap_or_default();
        ["cpu", "memory"].iter().all(|k| limits.contains_key(*k))
            && requests.iter().all(|(k, v)| limits.get(k) == Some(v))
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}
