//! Validation of workload controllers: apps/v1, batch/v1 and autoscaling/v2.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::meta::{selector_is_empty, selector_matches, validate_label_selector};
use super::pod::{pod_template, template_restart_policy};
use super::{immutable, json_of, non_negative, one_of};
use crate::FieldError;

const PERCENT_MSG: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";

/// Selector present, non-empty, valid, and matching the template's labels.
fn selector_and_template(
    selector: Option<&LabelSelector>,
    template: Option<&PodTemplateSpec>,
    kind: &str,
    errs: &mut Vec<FieldError>,
) {
    match selector {
        // k8s-openapi makes `selector` non-optional, so a missing one arrives as `{}`
        // without either list; upstream calls that `Required`.
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) if sel.match_labels.is_none() && sel.match_expressions.is_none() => {
            errs.push(FieldError::required("spec.selector", ""))
        }
        Some(sel) if selector_is_empty(sel) => errs.push(FieldError::invalid(
            "spec.selector",
            json_of(sel),
            format!("empty selector is invalid for {kind}"),
        )),
        Some(sel) => {
            errs.extend(validate_label_selector(sel, "spec.selector"));
            let labels = template
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.as_ref());
            if template.is_some() && !selector_matches(sel, labels) {
                errs.push(FieldError::invalid(
                    "spec.template.metadata.labels",
                    json_of(&labels),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    if let Some(t) = template {
        errs.extend(pod_template(t, "spec.template"));
    }
}

/// An `IntOrString` that is a non-negative int or a `N%` string; returns its value
/// as (number, is_percent).
fn int_or_percent(v: &IntOrString, path: &str, errs: &mut Vec<FieldError>) -> Option<(i64, bool)> {
    match v {
        IntOrString::Int(i) => {
            non_negative(errs, path, Some(*i));
            Some((i64::from(*i), false))
        }
        IntOrString::String(s) => {
            let n = s
                .strip_suffix('%')
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            match n.and_then(|n| n.parse::<i64>().ok()) {
                Some(n) => Some((n, true)),
                None => {
                    errs.push(FieldError::invalid(
                        path,
                        Value::String(s.clone()),
                        PERCENT_MSG,
                    ));
                    None
                }
            }
        }
    }
}

/// `maxUnavailable`/`maxSurge` rules shared by Deployments and DaemonSets.
fn surge_and_unavailable(
    surge: Option<&IntOrString>,
    unavailable: Option<&IntOrString>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let s = surge.and_then(|v| int_or_percent(v, &format!("{path}.maxSurge"), errs));
    let u = unavailable.and_then(|v| int_or_percent(v, &format!("{path}.maxUnavailable"), errs));
    if let Some((n, true)) = u {
        if n > 100 {
            errs.push(FieldError::invalid(
                format!("{path}.maxUnavailable"),
                json_of(&unavailable),
                "must not be greater than 100%",
            ));
        }
    }
    if matches!(s, Some((0, _))) && matches!(u, Some((0, _))) {
        errs.push(FieldError::invalid(
            format!("{path}.maxUnavailable"),
            json_of(&unavailable),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
}

pub(crate) fn deployment(d: &Deployment, old: Option<&Deployment>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(spec) = &d.spec else {
        return vec![FieldError::required("spec.selector", "")];
    };
    non_negative(&mut errs, "spec.replicas", spec.replicas);
    selector_and_template(
        Some(&spec.selector),
        Some(&spec.template),
        "deployment",
        &mut errs,
    );
    template_restart_policy(&spec.template, "spec.template", &["Always"], &mut errs);
    if let Some(strategy) = &spec.strategy {
        one_of(
            &mut errs,
            "spec.strategy.type",
            strategy.type_.as_deref(),
            &["Recreate", "RollingUpdate"],
        );
        match (strategy.type_.as_deref(), &strategy.rolling_update) {
            (Some("Recreate"), Some(_)) => errs.push(FieldError::forbidden(
                "spec.strategy.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            )),
            (_, Some(ru)) => surge_and_unavailable(
                ru.max_surge.as_ref(),
                ru.max_unavailable.as_ref(),
                "spec.strategy.rollingUpdate",
                &mut errs,
            ),
            _ => {}
        }
    }
    non_negative(
        &mut errs,
        "spec.revisionHistoryLimit",
        spec.revision_history_limit,
    );
    non_negative(&mut errs, "spec.minReadySeconds", spec.min_ready_seconds);
    if let Some(pds) = spec.progress_deadline_seconds {
        non_negative(&mut errs, "spec.progressDeadlineSeconds", Some(pds));
        if pds <= spec.min_ready_seconds.unwrap_or(0) {
            errs.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                Value::from(pds),
                "must be greater than minReadySeconds",
            ));
        }
    }
    if let Some(old) = old.and_then(|o| o.spec.as_ref()) {
        immutable(&mut errs, "spec.selector", &spec.selector, &old.selector);
    }
    errs
}

pub(crate) fn replica_set(rs: &ReplicaSet, old: Option<&ReplicaSet>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(spec) = &rs.spec else {
        return vec![FieldError::required("spec.selector", "")];
    };
    non_negative(&mut errs, "spec.replicas", spec.replicas);
    non_negative(&mut errs, "spec.minReadySeconds", spec.min_ready_seconds);
    selector_and_template(
        Some(&spec.selector),
        spec.template.as_ref(),
        "replicaset",
        &mut errs,
    );
    if let Some(t) = &spec.template {
        template_restart_policy(t, "spec.template", &["Always"], &mut errs);
    }
    if let Some(old) = old.and_then(|o| o.spec.as_ref()) {
        immutable(&mut errs, "spec.selector", &spec.selector, &old.selector);
    }
    errs
}

pub(crate) fn stateful_set(s: &StatefulSet, old: Option<&StatefulSet>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(spec) = &s.spec else {
        return vec![FieldError::required("spec.selector", "")];
    };
    non_negative(&mut errs, "spec.replicas", spec.replicas);
    non_negative(&mut errs, "spec.minReadySeconds", spec.min_ready_seconds);
    non_negative(
        &mut errs,
        "spec.revisionHistoryLimit",
        spec.revision_history_limit,
    );
    one_of(
        &mut errs,
        "spec.podManagementPolicy",
        spec.pod_management_policy.as_deref(),
        &["OrderedReady", "Parallel"],
    );
    if let Some(us) = &spec.update_strategy {
        one_of(
            &mut errs,
            "spec.updateStrategy.type",
            us.type_.as_deref(),
            &["OnDelete", "RollingUpdate"],
        );
        if let Some(p) = us.rolling_update.as_ref().and_then(|r| r.partition) {
            non_negative(
                &mut errs,
                "spec.updateStrategy.rollingUpdate.partition",
                Some(p),
            );
        }
    }
    selector_and_template(
        Some(&spec.selector),
        Some(&spec.template),
        "statefulset",
        &mut errs,
    );
    template_restart_policy(&spec.template, "spec.template", &["Always"], &mut errs);
    if let Some(old) = old.and_then(|o| o.spec.as_ref()) {
        // Only these fields may change; everything else is compared as a whole.
        let mut munged = spec.clone();
        munged.replicas = old.replicas;
        munged.ordinals.clone_from(&old.ordinals);
        munged.template.clone_from(&old.template);
        munged.update_strategy.clone_from(&old.update_strategy);
        munged
            .persistent_volume_claim_retention_policy
            .clone_from(&old.persistent_volume_claim_retention_policy);
        munged.min_ready_seconds = old.min_ready_seconds;
        if &munged != old {
            errs.push(FieldError::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
    errs
}

pub(crate) fn daemon_set(ds: &DaemonSet, old: Option<&DaemonSet>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(spec) = &ds.spec else {
        return vec![FieldError::required("spec.selector", "")];
    };
    non_negative(&mut errs, "spec.minReadySeconds", spec.min_ready_seconds);
    non_negative(
        &mut errs,
        "spec.revisionHistoryLimit",
        spec.revision_history_limit,
    );
    selector_and_template(
        Some(&spec.selector),
        Some(&spec.template),
        "daemonset",
        &mut errs,
    );
    template_restart_policy(&spec.template, "spec.template", &["Always"], &mut errs);
    if let Some(us) = &spec.update_strategy {
        one_of(
            &mut errs,
            "spec.updateStrategy.type",
            us.type_.as_deref(),
            &["OnDelete", "RollingUpdate"],
        );
        if let Some(ru) = &us.rolling_update {
            surge_and_unavailable(
                ru.max_surge.as_ref(),
                ru.max_unavailable.as_ref(),
                "spec.updateStrategy.rollingUpdate",
                &mut errs,
            );
        }
    }
    if let Some(old) = old.and_then(|o| o.spec.as_ref()) {
        immutable(&mut errs, "spec.selector", &spec.selector, &old.selector);
    }
    errs
}

fn job_spec(spec: &JobSpec, path: &str, errs: &mut Vec<FieldError>) {
    non_negative(errs, &format!("{path}.parallelism"), spec.parallelism);
    non_negative(errs, &format!("{path}.completions"), spec.completions);
    non_negative(errs, &format!("{path}.backoffLimit"), spec.backoff_limit);
    non_negative(
        errs,
        &format!("{path}.ttlSecondsAfterFinished"),
        spec.ttl_seconds_after_finished,
    );
    if let Some(ads) = spec.active_deadline_seconds {
        non_negative(errs, &format!("{path}.activeDeadlineSeconds"), Some(ads));
    }
    one_of(
        errs,
        &format!("{path}.completionMode"),
        spec.completion_mode.as_deref(),
        &["Indexed", "NonIndexed"],
    );
    if spec.completion_mode.as_deref() == Some("Indexed") && spec.completions.is_none() {
        errs.push(FieldError::required(
            format!("{path}.completions"),
            "when completion mode is Indexed",
        ));
    }
    one_of(
        errs,
        &format!("{path}.podReplacementPolicy"),
        spec.pod_replacement_policy.as_deref(),
        &["Failed", "TerminatingOrFailed"],
    );
    let template_path = format!("{path}.template");
    if spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .is_none()
    {
        errs.push(FieldError::required(
            format!("{template_path}.spec.restartPolicy"),
            "valid values: \"OnFailure\", \"Never\"",
        ));
    }
    template_restart_policy(
        &spec.template,
        &template_path,
        &["OnFailure", "Never"],
        errs,
    );
}

pub(crate) fn job(job: &Job, old: Option<&Job>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(spec) = &job.spec else {
        return vec![FieldError::required("spec.template", "")];
    };
    job_spec(spec, "spec", &mut errs);
    if let Some(sel) = &spec.selector {
        errs.extend(validate_label_selector(sel, "spec.selector"));
        let labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref());
        if !selector_matches(sel, labels) {
            errs.push(FieldError::invalid(
                "spec.template.metadata.labels",
                json_of(&labels),
                "`selector` does not match template `labels`",
            ));
        }
    }
    errs.extend(pod_template(&spec.template, "spec.template"));
    if let Some(old) = old.and_then(|o| o.spec.as_ref()) {
        // A selector generated on the first write after create is not a change.
        if old.selector.is_some() {
            immutable(&mut errs, "spec.selector", &spec.selector, &old.selector);
        }
        immutable(
            &mut errs,
            "spec.completionMode",
            &spec.completion_mode,
            &old.completion_mode,
        );
        if spec.completion_mode.as_deref() != Some("Indexed") {
            immutable(
                &mut errs,
                "spec.completions",
                &spec.completions,
                &old.completions,
            );
        }
        // Upstream lets a suspended Job that never started change scheduling
        // directives; we keep the simpler rule that the template is fixed.
        immutable(&mut errs, "spec.template", &spec.template, &old.template);
    }
    errs
}

pub(crate) fn cron_job(cj: &CronJob, _old: Option<&CronJob>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(spec) = &cj.spec else {
        return vec![FieldError::required("spec.schedule", "")];
    };
    if spec.schedule.is_empty() {
        errs.push(FieldError::required("spec.schedule", ""));
    } else if spec.schedule.contains("TZ") {
        errs.push(FieldError::invalid(
            "spec.schedule",
            Value::String(spec.schedule.clone()),
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        ));
    } else if let Err(e) = super::cron::parse(&spec.schedule) {
        errs.push(FieldError::invalid(
            "spec.schedule",
            Value::String(spec.schedule.clone()),
            e,
        ));
    }
    if let Some(tz) = &spec.time_zone {
        if let Err(msg) = super::cron::time_zone(tz) {
            errs.push(FieldError::invalid(
                "spec.timeZone",
                Value::String(tz.clone()),
                msg,
            ));
        }
    }
    one_of(
        &mut errs,
        "spec.concurrencyPolicy",
        spec.concurrency_policy.as_deref(),
        &["Allow", "Forbid", "Replace"],
    );
    non_negative(
        &mut errs,
        "spec.startingDeadlineSeconds",
        spec.starting_deadline_seconds,
    );
    non_negative(
        &mut errs,
        "spec.successfulJobsHistoryLimit",
        spec.successful_jobs_history_limit,
    );
    non_negative(
        &mut errs,
        "spec.failedJobsHistoryLimit",
        spec.failed_jobs_history_limit,
    );
    match &spec.job_template.spec {
        Some(js) => {
            job_spec(js, "spec.jobTemplate.spec", &mut errs);
            errs.extend(pod_template(&js.template, "spec.jobTemplate.spec.template"));
        }
        None => errs.push(FieldError::required("spec.jobTemplate.spec.template", "")),
    }
    errs
}

pub(crate) fn hpa(
    h: &HorizontalPodAutoscaler,
    _old: Option<&HorizontalPodAutoscaler>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(spec) = &h.spec else {
        return vec![FieldError::required("spec.scaleTargetRef", "")];
    };
    let min = spec.min_replicas.unwrap_or(1);
    if min < 1 {
        errs.push(FieldError::invalid(
            "spec.minReplicas",
            Value::from(min),
            "must be greater than or equal to 1",
        ));
    }
    if spec.max_replicas < 1 {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            Value::from(spec.max_replicas),
            "must be greater than 0",
        ));
    }
    if spec.max_replicas < min {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            Value::from(spec.max_replicas),
            "must be greater than or equal to `minReplicas`",
        ));
    }
    if spec.scale_target_ref.kind.is_empty() {
        errs.push(FieldError::required("spec.scaleTargetRef.kind", ""));
    }
    if spec.scale_target_ref.name.is_empty() {
        errs.push(FieldError::required("spec.scaleTargetRef.name", ""));
    }
    errs
}
