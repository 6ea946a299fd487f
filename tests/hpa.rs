//! HorizontalPodAutoscalers end to end: Deployments on a fake node whose pods
//! report the CPU and memory usage their annotations say, evaluated every
//! second. Expected replica counts are worked out from upstream's algorithm
//! in the comments.

mod common;

use std::time::Duration;

use common::{wait_for, Server};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);
const CPU_USAGE: &str = "fake.skiff.dev/cpu-usage";

fn cluster() -> Server {
    Server::start_with(&["--fake-nodes", "1", "--hpa-sync-seconds", "1"])
}

/// A Deployment whose pods request `request` (if any) and carry `annotation`.
fn deployment(name: &str, request: Option<&str>, annotation: (&str, &str)) -> String {
    let resources = match request {
        Some(r) => format!("\n        resources: {{requests: {r}}}"),
        None => String::new(),
    };
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
      annotations: {{"{}": "{}"}}
    spec:
      containers:
      - name: main
        image: busybox{resources}
"#,
        annotation.0, annotation.1
    )
}

/// An autoscaling/v2 HPA on Deployment `name` with one metric (YAML).
fn hpa(name: &str, min: i32, max: i32, metric: &str) -> String {
    format!(
        r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {name}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}
  minReplicas: {min}
  maxReplicas: {max}
  metrics:
  - {metric}
"#
    )
}

const CPU_50: &str =
    "{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}";

fn get(s: &Server, ns: &str, what: &str) -> Value {
    s.get_json(&[what, "-n", ns])
}

/// `(status, reason, message)` of the HPA's condition `type_`.
fn condition(h: &Value, type_: &str) -> (String, String, String) {
    let c = h["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .cloned()
        .unwrap_or(Value::Null);
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    (s("status"), s("reason"), s("message"))
}

fn utilization(h: &Value) -> Option<i64> {
    h["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"].as_i64()
}

/// "reason: message" of every Event about HPA `name`.
fn events(s: &Server, ns: &str, name: &str) -> Vec<String> {
    get(s, ns, "events")["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| {
            e["involvedObject"]["kind"] == "HorizontalPodAutoscaler"
                && e["involvedObject"]["name"] == name
        })
        .map(|e| {
            format!(
                "{}: {}",
                e["reason"].as_str().unwrap_or_default(),
                e["message"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

fn wait_event(s: &Server, ns: &str, name: &str, wanted: &str) {
    wait_for(WAIT, &format!("event {wanted:?}"), || {
        let all = events(s, ns, name);
        if all.iter().any(|e| e.contains(wanted)) {
            Ok(())
        } else {
            Err(format!("{all:#?}"))
        }
    });
}

/// Wait until Deployment `name` wants `n` replicas and all of them are ready.
fn wait_replicas(s: &Server, ns: &str, name: &str, n: i64) {
    wait_for(WAIT, &format!("{name} at {n} ready replicas"), || {
        let d = get(s, ns, &format!("deploy/{name}"));
        let st = &d["status"];
        if d["spec"]["replicas"] == n && st["readyReplicas"] == n && st["replicas"] == n {
            Ok(())
        } else {
            Err(format!("spec {} status {st}", d["spec"]["replicas"]))
        }
    });
}

/// Wait until HPA `name` has evaluated its current spec and `pred` holds
/// for it.
fn wait_hpa(s: &Server, ns: &str, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_for(WAIT, what, || {
        let h = get(s, ns, &format!("hpa/{name}"));
        let observed = h["status"]["observedGeneration"] == h["metadata"]["generation"];
        if observed && pred(&h) {
            Ok(h)
        } else {
            Err(h["status"].to_string())
        }
    })
}

/// Wait until the HPA has evaluated its current spec with `replicas` pods,
/// all at `percent` % CPU (the average is exact only once all report it).
fn wait_utilization(s: &Server, ns: &str, name: &str, replicas: i64, percent: i64) -> Value {
    wait_hpa(
        s,
        ns,
        name,
        &format!("{name} at {replicas} × {percent}%"),
        |h| utilization(h) == Some(percent) && h["status"]["currentReplicas"] == replicas,
    )
}

/// Set the CPU usage every pod of `app` reports. Pods being deleted may
/// vanish between kubectl's list and its patch: retry (it is idempotent).
fn annotate_pods(s: &Server, ns: &str, app: &str, usage: &str) {
    let selector = format!("app={app}");
    let annotation = format!("{CPU_USAGE}={usage}");
    wait_for(WAIT, "pods annotated", || {
        let args = [
            "annotate",
            "pods",
            "-n",
            ns,
            "-l",
            &selector,
            &annotation,
            "--overwrite",
        ];
        let out = s.kubectl(&args);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
}

#[test]
fn scales_on_cpu_utilization_within_rate_limits_and_bounds() {
    let s = cluster();
    let ns = "hpa-cpu";
    s.create_ns(ns);
    s.ok_stdin(
        &["apply", "-n", ns, "-f", "-"],
        &deployment("web", Some("{cpu: 100m}"), (CPU_USAGE, "200m")),
    );
    wait_replicas(&s, ns, "web", 1);
    s.ok_stdin(&["apply", "-n", ns, "-f", "-"], &hpa("web", 1, 10, CPU_50));

    // 200m of 100m is 200 %, four times the target: ceil(4 × 1) = 4, which
    // is also the most one step may reach from 1 (max(2 × 1, 4)).
    wait_event(
        &s,
        ns,
        "web",
        "SuccessfulRescale: New size: 4; reason: cpu resource utilization (percentage of request) above target",
    );
    // The new pods report 200m too: 16 wanted, at most 2 × 4 = 8; then 32
    // wanted, capped at maxReplicas 10. Pods not yet ready count as 0 % and
    // hold the count meanwhile, so the steps are exactly these.
    wait_event(
        &s,
        ns,
        "web",
        "New size: 8; reason: cpu resource utilization",
    );
    wait_event(
        &s,
        ns,
        "web",
        "New size: 10; reason: cpu resource utilization",
    );
    wait_replicas(&s, ns, "web", 10);
    let h = wait_utilization(&s, ns, "web", 10, 200);
    assert_eq!(h["status"]["currentReplicas"], 10);
    assert_eq!(h["status"]["desiredReplicas"], 10);
    assert_eq!(
        h["status"]["currentMetrics"][0]["resource"]["current"]["averageValue"],
        "200m"
    );
    assert!(h["status"]["lastScaleTime"].is_string(), "{h}");
    assert_eq!(
        condition(&h, "ScalingActive"),
        (
            "True".into(),
            "ValidMetricFound".into(),
            "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)".into()
        )
    );
    assert_eq!(
        condition(&h, "ScalingLimited"),
        (
            "True".into(),
            "TooManyReplicas".into(),
            "the desired replica count is more than the maximum replica count".into()
        )
    );
    assert_eq!(condition(&h, "AbleToScale").0, "True");
    let table = s.ok(&["get", "hpa", "web", "-n", ns]);
    assert!(
        table.contains("Deployment/web") && table.contains("cpu: 200%/50%"),
        "{table}"
    );
    let columns: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(columns.get(4..6), Some(&["1", "10"][..]), "{table}");
    assert_eq!(columns.get(6), Some(&"10"), "{table}");

    // 20 %: the recommendation is 4, but without `behavior` scale-downs wait
    // for the highest recommendation of the last 5 minutes.
    annotate_pods(&s, ns, "web", "20m");
    let h = wait_utilization(&s, ns, "web", 10, 20);
    assert_eq!(condition(&h, "AbleToScale").1, "ScaleDownStabilized", "{h}");
    assert_eq!(h["status"]["desiredReplicas"], 10);
    assert_eq!(get(&s, ns, "deploy/web")["spec"]["replicas"], 10);

    // 46 % is within the tolerance of 50 % (ratio 0.92): even with no
    // stabilization window nothing changes.
    annotate_pods(&s, ns, "web", "46m");
    wait_utilization(&s, ns, "web", 10, 46);
    s.ok(&[
        "patch",
        "hpa",
        "web",
        "-n",
        ns,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":0}}}}"#,
    ]);
    let h = wait_utilization(&s, ns, "web", 10, 46);
    assert_eq!(h["status"]["desiredReplicas"], 10, "{h}");
    assert_eq!(condition(&h, "AbleToScale").1, "ReadyForNewScale", "{h}");
    assert_eq!(
        condition(&h, "ScalingLimited"),
        (
            "False".into(),
            "DesiredWithinRange".into(),
            "the desired count is within the acceptable range".into()
        )
    );
    assert_eq!(get(&s, ns, "deploy/web")["spec"]["replicas"], 10);

    // 20 % with a zero window: down at once (the default policy allows 100 %
    // per 15 s), step by step (ceil(0.4 × n): 10 → 4 → 2 → 1, unless an
    // evaluation sees the pods half re-annotated) to minReplicas.
    annotate_pods(&s, ns, "web", "20m");
    wait_event(&s, ns, "web", "reason: All metrics below target");
    wait_replicas(&s, ns, "web", 1);
    wait_utilization(&s, ns, "web", 1, 20);

    // No usage at all: 0 replicas wanted, held at minReplicas.
    annotate_pods(&s, ns, "web", "0m");
    let h = wait_utilization(&s, ns, "web", 1, 0);
    assert_eq!(
        condition(&h, "ScalingLimited"),
        (
            "True".into(),
            "TooFewReplicas".into(),
            "the desired replica count is less than the minimum replica count".into()
        )
    );
    assert_eq!(h["status"]["desiredReplicas"], 1);
    assert_eq!(get(&s, ns, "deploy/web")["spec"]["replicas"], 1);
}

#[test]
fn memory_average_value_and_failures() {
    let s = cluster();
    let ns = "hpa-misc";
    s.create_ns(ns);

    // Memory against an average value: 64Mi per pod for a 32Mi target is
    // ratio 2: 1 → 2, then 2 → 4 capped at maxReplicas 3.
    s.ok_stdin(
        &["apply", "-n", ns, "-f", "-"],
        &deployment(
            "mem",
            Some("{memory: 64Mi}"),
            ("fake.skiff.dev/memory-usage", "64Mi"),
        ),
    );
    // Pods without a CPU request, for a CPU utilization target.
    s.ok_stdin(
        &["apply", "-n", ns, "-f", "-"],
        &deployment("noreq", None, (CPU_USAGE, "100m")),
    );
    wait_replicas(&s, ns, "mem", 1);
    wait_replicas(&s, ns, "noreq", 1);
    s.ok_stdin(
        &["apply", "-n", ns, "-f", "-"],
        &hpa(
            "mem",
            1,
            3,
            "{type: Resource, resource: {name: memory, target: {type: AverageValue, averageValue: 32Mi}}}",
        ),
    );
    s.ok_stdin(&["apply", "-n", ns, "-f", "-"], &hpa("noreq", 1, 5, CPU_50));

    wait_event(
        &s,
        ns,
        "mem",
        "SuccessfulRescale: New size: 2; reason: memory resource above target",
    );
    wait_event(
        &s,
        ns,
        "mem",
        "New size: 3; reason: memory resource above target",
    );
    wait_replicas(&s, ns, "mem", 3);
    let h = wait_hpa(&s, ns, "mem", "mem at 3", |h| {
        h["status"]["currentReplicas"] == 3 && condition(h, "ScalingLimited").1 == "TooManyReplicas"
    });
    // 64Mi as a canonical decimal quantity, as upstream writes it.
    assert_eq!(
        h["status"]["currentMetrics"][0]["resource"]["current"]["averageValue"],
        "67108864"
    );
    let table = s.ok(&["get", "hpa", "mem", "-n", ns]);
    assert!(table.contains("memory: 67108864/32Mi"), "{table}");

    // Missing requests: ScalingActive False, nothing scaled.
    let h = wait_for(WAIT, "ScalingActive False", || {
        let h = get(&s, ns, "hpa/noreq");
        if condition(&h, "ScalingActive").0 == "False" {
            Ok(h)
        } else {
            Err(h["status"].to_string())
        }
    });
    let (_, reason, message) = condition(&h, "ScalingActive");
    assert_eq!(reason, "FailedGetResourceMetric");
    assert!(
        message.starts_with(
            "the HPA was unable to compute the replica count: failed to get cpu utilization: missing request for cpu in container main of Pod noreq-"
        ),
        "{message}"
    );
    assert_eq!(condition(&h, "AbleToScale").1, "SucceededGetScale");
    assert_eq!(h["status"]["currentReplicas"], 1);
    wait_event(
        &s,
        ns,
        "noreq",
        "FailedGetResourceMetric: failed to get cpu utilization: missing request for cpu",
    );
    wait_event(
        &s,
        ns,
        "noreq",
        "FailedComputeMetricsReplicas: invalid metrics (1 invalid out of 1), first error is: failed to get cpu resource metric value: failed to get cpu utilization: missing request for cpu",
    );
    let table = s.ok(&["get", "hpa", "noreq", "-n", ns]);
    assert!(table.contains("cpu: <unknown>/50%"), "{table}");

    // Custom metrics are not served: ScalingActive False, no crash, and
    // the controller keeps serving the others.
    s.ok_stdin(
        &["apply", "-n", ns, "-f", "-"],
        &hpa(
            "noreq",
            1,
            5,
            "{type: Pods, pods: {metric: {name: qps}, target: {type: AverageValue, averageValue: '10'}}}",
        ),
    );
    wait_for(WAIT, "FailedGetPodsMetric", || {
        let h = get(&s, ns, "hpa/noreq");
        let (status, reason, _) = condition(&h, "ScalingActive");
        if status == "False" && reason == "FailedGetPodsMetric" {
            Ok(())
        } else {
            Err(h["status"].to_string())
        }
    });
    assert_eq!(get(&s, ns, "deploy/noreq")["spec"]["replicas"], 1);

    // A target without a scale subresource.
    s.ok_stdin(
        &["apply", "-n", ns, "-f", "-"],
        r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: nothing
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: missing}
  maxReplicas: 3
"#,
    );
    wait_for(WAIT, "FailedGetScale", || {
        let h = get(&s, ns, "hpa/nothing");
        let (status, reason, _) = condition(&h, "AbleToScale");
        if status == "False" && reason == "FailedGetScale" {
            Ok(())
        } else {
            Err(h["status"].to_string())
        }
    });
}

const SCALABLE_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gizmos.hpa.example.com
spec:
  group: hpa.example.com
  scope: Namespaced
  names: {plural: gizmos, singular: gizmo, kind: Gizmo}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              replicas: {type: integer}
          status:
            type: object
            properties:
              replicas: {type: integer}
              selector: {type: string}
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
"#;

#[test]
fn scales_a_custom_resource_through_its_scale_subresource() {
    let s = cluster();
    let ns = "hpa-crd";
    s.create_ns(ns);
    s.ok_stdin(&["apply", "-f", "-"], SCALABLE_CRD);
    wait_for(WAIT, "CRD served", || {
        let out = s.kubectl(&["get", "gizmos", "-n", ns]);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    s.ok_stdin(
        &["apply", "-n", ns, "-f", "-"],
        "apiVersion: hpa.example.com/v1\nkind: Gizmo\nmetadata: {name: g}\nspec: {replicas: 1}\n",
    );
    s.ok(&[
        "patch",
        "gizmo",
        "g",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":1,"selector":"app=gizmo"}}"#,
    ]);
    // Nothing manages these pods: the custom resource only carries a count.
    s.ok_stdin(
        &["apply", "-n", ns, "-f", "-"],
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: gizmo-0
  labels: {{app: gizmo}}
  annotations: {{"{CPU_USAGE}": "300m"}}
spec:
  containers:
  - name: main
    image: busybox
    resources: {{requests: {{cpu: 100m}}}}
"#
        ),
    );
    wait_for(WAIT, "pod ready", || {
        let p = get(&s, ns, "pod/gizmo-0");
        let ready = p["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        if ready {
            Ok(())
        } else {
            Err(p["status"].to_string())
        }
    });
    s.ok_stdin(
        &["apply", "-n", ns, "-f", "-"],
        r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: g
spec:
  scaleTargetRef: {apiVersion: hpa.example.com/v1, kind: Gizmo, name: g}
  maxReplicas: 5
  metrics:
  - {type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}
"#,
    );
    // 300 % for a 50 % target: 6 wanted, at most 4 from 1; then (still one
    // pod at 300 %) 6 again, capped at maxReplicas 5.
    wait_event(
        &s,
        ns,
        "g",
        "SuccessfulRescale: New size: 4; reason: cpu resource utilization",
    );
    wait_event(
        &s,
        ns,
        "g",
        "SuccessfulRescale: New size: 5; reason: cpu resource utilization",
    );
    wait_for(WAIT, "gizmo at 5", || {
        let g = get(&s, ns, "gizmo/g");
        if g["spec"]["replicas"] == 5 {
            Ok(())
        } else {
            Err(g.to_string())
        }
    });
    let h = wait_hpa(&s, ns, "g", "limited by max", |h| {
        condition(h, "ScalingLimited").1 == "TooManyReplicas"
    });
    assert_eq!(condition(&h, "AbleToScale").0, "True");
    let table = s.ok(&["get", "hpa", "g", "-n", ns]);
    assert!(
        table.contains("Gizmo/g") && table.contains("cpu: 300%/50%"),
        "{table}"
    );
}
