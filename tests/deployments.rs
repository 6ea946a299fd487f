//! Deployments and ReplicaSets end to end on fake nodes, driven by kubectl:
//! rollouts observed step by step, undo, pause/resume, scale, Recreate,
//! progress deadline, cascading deletion.

mod common;

use std::time::Duration;

use common::{wait_for, Server};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn fake_cluster() -> Server {
    Server::start_with(&["--fake-nodes", "2"])
}

fn deployment(name: &str, replicas: i32, image: &str, strategy: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  strategy:
{strategy}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: main
        image: {image}
"#
    )
}

fn rolling(surge: &str, unavailable: &str) -> String {
    format!("    type: RollingUpdate\n    rollingUpdate: {{maxSurge: {surge}, maxUnavailable: {unavailable}}}")
}

fn items(s: &Server, path: &str) -> Vec<Value> {
    let (code, body) = s.curl_json("GET", path, None);
    assert_eq!(code, 200, "GET {path}: {body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn image_of(pod: &Value) -> String {
    pod["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Wait until the Deployment reports every replica ready, updated and available.
fn wait_rolled_out(s: &Server, ns: &str, name: &str, replicas: i64) {
    wait_for(WAIT, "deployment to be rolled out", || {
        let d = s.get_json(&["deploy", name, "-n", ns]);
        let st = &d["status"];
        let done = st["readyReplicas"] == replicas
            && st["updatedReplicas"] == replicas
            && st["availableReplicas"] == replicas
            && st["replicas"] == replicas
            && st["observedGeneration"] == d["metadata"]["generation"];
        if done {
            Ok(())
        } else {
            Err(st.to_string())
        }
    });
}

#[test]
fn rolling_update_respects_surge_and_unavailable_step_by_step() {
    let s = fake_cluster();
    s.create_ns("roll");
    s.ok_stdin(
        &["apply", "-n", "roll", "-f", "-"],
        &deployment("web", 4, "img:v1", &rolling("1", "1")),
    );
    wait_rolled_out(&s, "roll", "web", 4);
    s.ok(&[
        "rollout",
        "status",
        "deploy/web",
        "-n",
        "roll",
        "--timeout=60s",
    ]);

    s.ok(&["set", "image", "deploy/web", "main=img:v2", "-n", "roll"]);
    // Observe pods until the rollout is over, checking the bounds every time.
    let mut saw_mixed = false;
    let mut observations = 0;
    wait_for(WAIT, "rollout to v2", || {
        observations += 1;
        let pods: Vec<Value> = items(&s, "/api/v1/namespaces/roll/pods")
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        let total = pods.len();
        let ready_count = pods.iter().filter(|p| ready(p)).count();
        assert!(total <= 5, "more than replicas + maxSurge pods: {total}");
        assert!(ready_count >= 3, "fewer than replicas - maxUnavailable ready: {ready_count} (observation {observations})");
        let v1 = pods.iter().filter(|p| image_of(p) == "img:v1").count();
        let v2 = pods.iter().filter(|p| image_of(p) == "img:v2").count();
        if v1 > 0 && v2 > 0 {
            saw_mixed = true;
        }
        if v2 == 4 && v1 == 0 && ready_count == 4 {
            Ok(())
        } else {
            Err(format!("v1={v1} v2={v2} ready={ready_count}"))
        }
    });
    assert!(saw_mixed, "never saw old and new pods side by side");
    s.ok(&[
        "rollout",
        "status",
        "deploy/web",
        "-n",
        "roll",
        "--timeout=60s",
    ]);
    wait_rolled_out(&s, "roll", "web", 4);

    // Two ReplicaSets, revisions 1 and 2, the old one scaled to zero.
    let rss = s.get_json(&["rs", "-n", "roll", "-l", "app=web"]);
    let mut revs: Vec<(String, i64)> = rss["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|rs| {
            (
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                rs["spec"]["replicas"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    revs.sort();
    assert_eq!(revs, [("1".to_string(), 0), ("2".to_string(), 4)]);
    // Every pod carries its ReplicaSet's pod-template-hash.
    for rs in rss["items"].as_array().expect("items") {
        let hash = rs["metadata"]["labels"]["pod-template-hash"]
            .as_str()
            .expect("hash");
        assert!(rs["metadata"]["name"]
            .as_str()
            .expect("name")
            .ends_with(hash));
    }
    let d = s.get_json(&["deploy", "web", "-n", "roll"]);
    let conds = d["status"]["conditions"].as_array().expect("conditions");
    assert!(conds
        .iter()
        .any(|c| c["type"] == "Available" && c["status"] == "True"));
    assert!(conds.iter().any(|c| c["type"] == "Progressing"
        && c["status"] == "True"
        && c["reason"] == "NewReplicaSetAvailable"));
    // Events name the scaling steps.
    let described = s.ok(&["describe", "deploy", "web", "-n", "roll"]);
    assert!(described.contains("ScalingReplicaSet"), "{described}");
    assert!(
        described.contains("Scaled up replica set web-"),
        "{described}"
    );
}

#[test]
fn history_undo_pause_resume_restart_and_scale() {
    let s = fake_cluster();
    s.create_ns("hist");
    s.ok_stdin(
        &["apply", "-n", "hist", "-f", "-"],
        &deployment("app", 2, "img:v1", &rolling("25%", "25%")),
    );
    wait_rolled_out(&s, "hist", "app", 2);
    for v in ["v2", "v3"] {
        s.ok(&[
            "set",
            "image",
            "deploy/app",
            &format!("main=img:{v}"),
            "-n",
            "hist",
        ]);
        s.ok(&[
            "annotate",
            "deploy/app",
            &format!("kubernetes.io/change-cause=to {v}"),
            "--overwrite",
            "-n",
            "hist",
        ]);
        s.ok(&[
            "rollout",
            "status",
            "deploy/app",
            "-n",
            "hist",
            "--timeout=60s",
        ]);
    }
    let history = s.ok(&["rollout", "history", "deploy/app", "-n", "hist"]);
    for rev in ["1", "2", "3"] {
        assert!(
            history.lines().any(|l| l.starts_with(rev)),
            "revision {rev} missing:\n{history}"
        );
    }
    assert!(history.contains("to v3"), "{history}");

    // Undo to revision 1: the template goes back to v1 and becomes revision 4.
    s.ok(&[
        "rollout",
        "undo",
        "deploy/app",
        "--to-revision=1",
        "-n",
        "hist",
    ]);
    s.ok(&[
        "rollout",
        "status",
        "deploy/app",
        "-n",
        "hist",
        "--timeout=60s",
    ]);
    let d = s.get_json(&["deploy", "app", "-n", "hist"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "img:v1"
    );
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "4"
    );
    let history = s.ok(&["rollout", "history", "deploy/app", "-n", "hist"]);
    assert!(!history.lines().any(|l| l.starts_with("1 ")), "{history}");
    assert!(history.lines().any(|l| l.starts_with("4 ")), "{history}");
    wait_rolled_out(&s, "hist", "app", 2);
    let pods = s.get_json(&["pods", "-n", "hist", "-l", "app=app"]);
    for p in pods["items"].as_array().expect("items") {
        if p["metadata"]["deletionTimestamp"].is_null() {
            assert_eq!(image_of(p), "img:v1");
        }
    }

    // Paused: a template change makes no new ReplicaSet until resumed.
    s.ok(&["rollout", "pause", "deploy/app", "-n", "hist"]);
    s.ok(&["set", "image", "deploy/app", "main=img:v5", "-n", "hist"]);
    wait_for(WAIT, "paused condition", || {
        let d = s.get_json(&["deploy", "app", "-n", "hist"]);
        let paused = d["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["reason"] == "DeploymentPaused"));
        if paused && d["status"]["observedGeneration"] == d["metadata"]["generation"] {
            Ok(())
        } else {
            Err(d["status"].to_string())
        }
    });
    let count_rs = || {
        s.get_json(&["rs", "-n", "hist"])["items"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(count_rs(), 3, "a paused deployment created a replica set");
    s.ok(&["rollout", "resume", "deploy/app", "-n", "hist"]);
    s.ok(&[
        "rollout",
        "status",
        "deploy/app",
        "-n",
        "hist",
        "--timeout=60s",
    ]);
    assert_eq!(count_rs(), 4);

    // Restart makes a new revision with the restartedAt annotation.
    s.ok(&["rollout", "restart", "deploy/app", "-n", "hist"]);
    s.ok(&[
        "rollout",
        "status",
        "deploy/app",
        "-n",
        "hist",
        "--timeout=60s",
    ]);
    let d = s.get_json(&["deploy", "app", "-n", "hist"]);
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string()
    );
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "6"
    );

    // Scale.
    s.ok(&["scale", "deploy/app", "--replicas=5", "-n", "hist"]);
    wait_rolled_out(&s, "hist", "app", 5);
    s.ok(&["scale", "deploy/app", "--replicas=1", "-n", "hist"]);
    wait_rolled_out(&s, "hist", "app", 1);
    wait_for(WAIT, "pods to go", || {
        let n = items(&s, "/api/v1/namespaces/hist/pods").len();
        if n == 1 {
            Ok(())
        } else {
            Err(format!("{n} pods"))
        }
    });
}

#[test]
fn recreate_stops_old_pods_before_starting_new_ones() {
    let s = fake_cluster();
    s.create_ns("rec");
    s.ok_stdin(
        &["apply", "-n", "rec", "-f", "-"],
        &deployment("db", 3, "img:v1", "    type: Recreate"),
    );
    wait_rolled_out(&s, "rec", "db", 3);
    s.ok(&["set", "image", "deploy/db", "main=img:v2", "-n", "rec"]);
    wait_for(WAIT, "recreate to v2", || {
        let pods = items(&s, "/api/v1/namespaces/rec/pods");
        let v1 = pods.iter().filter(|p| image_of(p) == "img:v1").count();
        let v2 = pods.iter().filter(|p| image_of(p) == "img:v2").count();
        assert!(
            v1 == 0 || v2 == 0,
            "old and new pods at once: v1={v1} v2={v2}"
        );
        if v2 == 3 && pods.iter().all(ready) {
            Ok(())
        } else {
            Err(format!("v1={v1} v2={v2}"))
        }
    });
    s.ok(&[
        "rollout",
        "status",
        "deploy/db",
        "-n",
        "rec",
        "--timeout=60s",
    ]);
}

#[test]
fn progress_deadline_is_reported() {
    let s = fake_cluster();
    s.create_ns("slow");
    let mut yaml = deployment("stuck", 1, "img:v1", &rolling("1", "0"));
    yaml = yaml.replace(
        "spec:\n  replicas: 1",
        "spec:\n  progressDeadlineSeconds: 3\n  replicas: 1",
    );
    s.ok_stdin(&["apply", "-n", "slow", "-f", "-"], &yaml);
    wait_rolled_out(&s, "slow", "stuck", 1);
    // The new revision's pods never become ready.
    s.ok(&[
        "patch",
        "deploy/stuck",
        "-n",
        "slow",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"metadata":{"annotations":{"fake.skiff.dev/ready":"false"}}}}}"#,
    ]);
    wait_for(WAIT, "ProgressDeadlineExceeded", || {
        let d = s.get_json(&["deploy", "stuck", "-n", "slow"]);
        let exceeded = d["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter().any(|c| {
                c["type"] == "Progressing"
                    && c["status"] == "False"
                    && c["reason"] == "ProgressDeadlineExceeded"
            })
        });
        if exceeded {
            Ok(())
        } else {
            Err(d["status"].to_string())
        }
    });
    let err = s.fails(&[
        "rollout",
        "status",
        "deploy/stuck",
        "-n",
        "slow",
        "--timeout=20s",
    ]);
    assert!(err.contains("exceeded its progress deadline"), "{err}");
    // The old pod kept serving (maxUnavailable 0).
    let d = s.get_json(&["deploy", "stuck", "-n", "slow"]);
    assert_eq!(d["status"]["availableReplicas"], 1);
}

#[test]
fn deleting_a_deployment_cascades_or_orphans() {
    let s = fake_cluster();
    s.create_ns("del");
    for (name, cascade) in [("bg", "background"), ("fg", "foreground"), ("or", "orphan")] {
        s.ok_stdin(
            &["apply", "-n", "del", "-f", "-"],
            &deployment(name, 2, "img:v1", &rolling("1", "0")),
        );
        wait_rolled_out(&s, "del", name, 2);
        s.ok(&[
            "delete",
            "deploy",
            name,
            "-n",
            "del",
            &format!("--cascade={cascade}"),
            "--wait=true",
        ]);
        let selector = format!("app={name}");
        if cascade == "orphan" {
            // The ReplicaSet and its pods stay, without an owner.
            let rss = s.get_json(&["rs", "-n", "del", "-l", &selector]);
            let rs = &rss["items"][0];
            assert!(
                rs["metadata"]["ownerReferences"]
                    .as_array()
                    .is_none_or(Vec::is_empty),
                "{rs}"
            );
            let pods = s.get_json(&["pods", "-n", "del", "-l", &selector]);
            assert_eq!(pods["items"].as_array().map_or(0, Vec::len), 2);
        } else {
            wait_for(WAIT, "replica sets and pods to go", || {
                let rss = s.get_json(&["rs", "-n", "del", "-l", &selector])["items"]
                    .as_array()
                    .map_or(0, Vec::len);
                let pods = items(
                    &s,
                    &format!("/api/v1/namespaces/del/pods?labelSelector={selector}"),
                )
                .len();
                if rss == 0 && pods == 0 {
                    Ok(())
                } else {
                    Err(format!("rs={rss} pods={pods}"))
                }
            });
        }
    }
}

#[test]
fn bad_deployments_are_rejected() {
    let s = Server::start_with(&["--no-controllers"]);
    let bad_selector = deployment("x", 1, "img", &rolling("1", "0"))
        .replace("matchLabels: {app: x}", "matchLabels: {app: other}");
    let err = s.fails_stdin(&["apply", "-f", "-"], &bad_selector);
    assert!(err.contains("spec.template.metadata.labels"), "{err}");
    let negative = deployment("x", -1, "img", &rolling("1", "0"));
    let err = s.fails_stdin(&["apply", "-f", "-"], &negative);
    assert!(err.contains("spec.replicas"), "{err}");
    let invalid = deployment("x", 1, "img", &rolling("1", "0")).replace(
        "matchLabels: {app: x}",
        "matchLabels: {\"app\": \"x\"}\n    matchExpressions: [{key: app, operator: Bogus}]",
    );
    let err = s.fails_stdin(&["apply", "-f", "-"], &invalid);
    assert!(err.contains("spec.selector"), "{err}");
}
