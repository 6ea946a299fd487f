//! Defaults of workload controllers (apps/v1, batch/v1, autoscaling/v2).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetUpdateStrategy, Deployment, DeploymentStrategy, ReplicaSet,
    RollingUpdateDaemonSet, RollingUpdateDeployment, RollingUpdateStatefulSetStrategy, StatefulSet,
    StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, MetricSpec, MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::pod_template;
use super::{or, or_str};

fn percent(s: &str) -> IntOrString {
    IntOrString::String(s.to_string())
}

pub(crate) fn deployment(d: &mut Deployment) {
    let Some(spec) = d.spec.as_mut() else { return };
    or(&mut spec.replicas, 1);
    let strategy = spec
        .strategy
        .get_or_insert_with(DeploymentStrategy::default);
    or_str(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        or(&mut ru.max_unavailable, percent("25%"));
        or(&mut ru.max_surge, percent("25%"));
    }
    or(&mut spec.revision_history_limit, 10);
    or(&mut spec.progress_deadline_seconds, 600);
    pod_template(&mut spec.template);
}

pub(crate) fn replica_set(rs: &mut ReplicaSet) {
    let Some(spec) = rs.spec.as_mut() else { return };
    or(&mut spec.replicas, 1);
    if let Some(t) = spec.template.as_mut() {
        pod_template(t);
    }
}

pub(crate) fn stateful_set(s: &mut StatefulSet) {
    let Some(spec) = s.spec.as_mut() else { return };
    or(&mut spec.replicas, 1);
    or_str(&mut spec.pod_management_policy, "OrderedReady");
    let strategy = spec
        .update_strategy
        .get_or_insert_with(StatefulSetUpdateStrategy::default);
    or_str(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateStatefulSetStrategy::default);
        or(&mut ru.partition, 0);
    }
    or(&mut spec.revision_history_limit, 10);
    let retention = spec
        .persistent_volume_claim_retention_policy
        .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
    or_str(&mut retention.when_deleted, "Retain");
    or_str(&mut retention.when_scaled, "Retain");
    for pvc in spec.volume_claim_templates.iter_mut().flatten() {
        if let Some(ps) = pvc.spec.as_mut() {
            or_str(&mut ps.volume_mode, "Filesystem");
        }
    }
    pod_template(&mut spec.template);
}

pub(crate) fn daemon_set(ds: &mut DaemonSet) {
    let Some(spec) = ds.spec.as_mut() else { return };
    let strategy = spec
        .update_strategy
        .get_or_insert_with(DaemonSetUpdateStrategy::default);
    or_str(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDaemonSet::default);
        or(&mut ru.max_unavailable, IntOrString::Int(1));
        or(&mut ru.max_surge, IntOrString::Int(0));
    }
    or(&mut spec.revision_history_limit, 10);
    pod_template(&mut spec.template);
}

/// `SetDefaults_Job`, plus the selector and labels the Job strategy generates when
/// `manualSelector` is not set. Generation needs the uid, so it happens once the
/// server has assigned one.
pub(crate) fn job(job: &mut Job) {
    let uid = job.metadata.uid.clone().filter(|u| !u.is_empty());
    let name = job.metadata.name.clone().unwrap_or_default();
    let Some(spec) = job.spec.as_mut() else {
        return;
    };
    job_spec(spec);
    if let Some(uid) = uid {
        generate_selector(spec, &name, &uid);
    }
}

fn job_spec(spec: &mut JobSpec) {
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
    }
    or(&mut spec.parallelism, 1);
    let backoff = if spec.backoff_limit_per_index.is_some() {
        i32::MAX
    } else {
        6
    };
    or(&mut spec.backoff_limit, backoff);
    or_str(&mut spec.completion_mode, "NonIndexed");
    or(&mut spec.suspend, false);
    let replacement = if spec.pod_failure_policy.is_some() {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    or_str(&mut spec.pod_replacement_policy, replacement);
    pod_template(&mut spec.template);
}

fn generate_selector(spec: &mut JobSpec, name: &str, uid: &str) {
    if spec.manual_selector == Some(true) || spec.selector.is_some() {
        return;
    }
    let labels: BTreeMap<String, String> = [
        ("batch.kubernetes.io/controller-uid", uid),
        ("batch.kubernetes.io/job-name", name),
        ("controller-uid", uid),
        ("job-name", name),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let meta = spec
        .template
        .metadata
        .get_or_insert_with(ObjectMeta::default);
    let template_labels = meta.labels.get_or_insert_with(BTreeMap::new);
    for (k, v) in &labels {
        template_labels
            .entry(k.clone())
            .or_insert_with(|| v.clone());
    }
    spec.selector = Some(LabelSelector {
        match_labels: Some(BTreeMap::from([(
            "batch.kubernetes.io/controller-uid".to_string(),
            uid.to_string(),
        )])),
        match_expressions: None,
    });
}

pub(crate) fn cron_job(cj: &mut CronJob) {
    let Some(spec) = cj.spec.as_mut() else { return };
    or_str(&mut spec.concurrency_policy, "Allow");
    or(&mut spec.suspend, false);
    or(&mut spec.successful_jobs_history_limit, 3);
    or(&mut spec.failed_jobs_history_limit, 1);
    if let Some(js) = spec.job_template.spec.as_mut() {
        pod_template(&mut js.template);
    }
}

/// autoscaling/v2 `SetDefaults_HorizontalPodAutoscaler`: one replica minimum, and
/// 80% CPU when no metric is given.
pub(crate) fn hpa(h: &mut HorizontalPodAutoscaler) {
    let Some(spec) = h.spec.as_mut() else { return };
    or(&mut spec.min_replicas, 1);
    if spec.metrics.as_ref().is_none_or(Vec::is_empty) {
        spec.metrics = Some(vec![MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "cpu".into(),
                target: MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(80),
                    ..Default::default()
                },
            }),
            ..Default::default()
        }]);
    }
}
