//! Jobs and CronJobs end to end on fake nodes, driven by kubectl: completions
//! and parallelism, backoffLimit, Indexed completion, activeDeadlineSeconds,
//! ttlSecondsAfterFinished, suspend, a CronJob firing every minute with its
//! history limit, and schedule validation. Every wait is bounded; nothing
//! asserts on timing.

mod common;

use std::time::Duration;

use common::{wait_for, Server};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

fn fake_cluster() -> Server {
    Server::start_with(&["--fake-nodes", "2"])
}

/// A Job manifest; `extra_spec` is indented job-spec YAML, `annotations` the
/// pod template's fake-node annotations.
fn job(name: &str, extra_spec: &str, annotations: &str, restart: &str) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{extra_spec}
  template:
    metadata:
      annotations: {{{annotations}}}
    spec:
      restartPolicy: {restart}
      containers:
      - name: main
        image: busybox
"#
    )
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

fn pods_of(s: &Server, ns: &str, job: &str) -> Vec<Value> {
    let list = s.get_json(&[
        "pods",
        "-n",
        ns,
        "-l",
        &format!("batch.kubernetes.io/job-name={job}"),
    ]);
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Wait until the Job has the condition `type_` (True); returns the Job.
fn wait_condition(s: &Server, ns: &str, name: &str, type_: &str) -> Value {
    wait_for(WAIT, &format!("job {name} to be {type_}"), || {
        let j = s.get_json(&["job", name, "-n", ns]);
        if condition(&j, type_).is_some() {
            Ok(j)
        } else {
            Err(j["status"].to_string())
        }
    })
}

fn event_reasons(s: &Server, ns: &str, kind: &str, name: &str) -> Vec<String> {
    let list = s.get_json(&["events", "-n", ns]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["kind"] == kind && e["involvedObject"]["name"] == name)
        .filter_map(|e| e["reason"].as_str().map(String::from))
        .collect()
}

#[test]
fn job_with_completions_and_parallelism_completes() {
    let s = fake_cluster();
    s.create_ns("j1");
    s.ok_stdin(
        &["apply", "-n", "j1", "-f", "-"],
        &job("work", "  completions: 3\n  parallelism: 2", "", "Never"),
    );
    s.ok(&[
        "wait",
        "-n",
        "j1",
        "--for=condition=complete",
        "job/work",
        "--timeout=90s",
    ]);
    let j = s.get_json(&["job", "work", "-n", "j1"]);
    let st = &j["status"];
    assert_eq!(st["succeeded"], 3, "{st}");
    assert!(st["failed"].is_null() || st["failed"] == 0, "{st}");
    assert_eq!(st["active"].as_i64().unwrap_or(0), 0, "{st}");
    assert!(
        st["startTime"].is_string() && st["completionTime"].is_string(),
        "{st}"
    );
    assert!(condition(&j, "SuccessCriteriaMet").is_some(), "{st}");
    // Every pod carries the Job's labels and owner, and lost its finalizer.
    let uid = j["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    wait_for(WAIT, "finalizers removed from the job's pods", || {
        let pods = pods_of(&s, "j1", "work");
        let with_finalizer = pods
            .iter()
            .filter(|p| {
                p["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty())
            })
            .count();
        if pods.len() == 3 && with_finalizer == 0 {
            Ok(())
        } else {
            Err(format!(
                "{} pods, {with_finalizer} with finalizers",
                pods.len()
            ))
        }
    });
    for p in pods_of(&s, "j1", "work") {
        assert_eq!(p["status"]["phase"], "Succeeded", "{p}");
        assert_eq!(
            p["metadata"]["labels"]["batch.kubernetes.io/controller-uid"],
            uid.as_str()
        );
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Job");
        assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
        assert!(p["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .starts_with("work-"));
    }
    let reasons = wait_for(WAIT, "Completed event", || {
        let r = event_reasons(&s, "j1", "Job", "work");
        if r.iter().any(|x| x == "Completed") && r.iter().any(|x| x == "SuccessfulCreate") {
            Ok(r)
        } else {
            Err(format!("{r:?}"))
        }
    });
    assert!(!reasons.iter().any(|r| r == "BackoffLimitExceeded"));
}

#[test]
fn failing_pods_reach_the_backoff_limit() {
    let s = fake_cluster();
    s.create_ns("j2");
    s.ok_stdin(
        &["apply", "-n", "j2", "-f", "-"],
        &job(
            "crash",
            "  backoffLimit: 1",
            r#""fake.skiff.dev/exit-code": "1""#,
            "Never",
        ),
    );
    let j = wait_condition(&s, "j2", "crash", "Failed");
    let failed = condition(&j, "Failed").cloned().unwrap_or_default();
    assert_eq!(failed["reason"], "BackoffLimitExceeded", "{j}");
    assert!(condition(&j, "FailureTarget").is_some(), "{j}");
    assert_eq!(j["status"]["failed"], 2, "{}", j["status"]);
    assert_eq!(j["status"]["active"].as_i64().unwrap_or(0), 0);
    assert!(j["status"]["completionTime"].is_null());
    let pods = pods_of(&s, "j2", "crash");
    assert_eq!(pods.len(), 2, "one pod per attempt");
    assert!(pods.iter().all(|p| p["status"]["phase"] == "Failed"));
    wait_for(WAIT, "BackoffLimitExceeded event", || {
        let r = event_reasons(&s, "j2", "Job", "crash");
        if r.iter().any(|x| x == "BackoffLimitExceeded") {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    });
}

#[test]
fn indexed_job_completes_every_index() {
    let s = fake_cluster();
    s.create_ns("j3");
    s.ok_stdin(
        &["apply", "-n", "j3", "-f", "-"],
        &job(
            "idx",
            "  completions: 3\n  parallelism: 3\n  completionMode: Indexed",
            "",
            "Never",
        ),
    );
    let j = wait_condition(&s, "j3", "idx", "Complete");
    assert_eq!(j["status"]["completedIndexes"], "0-2", "{}", j["status"]);
    assert_eq!(j["status"]["succeeded"], 3);
    let mut indexes: Vec<String> = Vec::new();
    for p in pods_of(&s, "j3", "idx") {
        let ix = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"],
            ix.as_str()
        );
        assert_eq!(p["spec"]["hostname"], format!("idx-{ix}").as_str());
        assert!(p["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("idx-{ix}-")));
        let env = p["spec"]["containers"][0]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            env.iter().any(|e| e["name"] == "JOB_COMPLETION_INDEX"
                && e["valueFrom"]["fieldRef"]["fieldPath"]
                    == "metadata.annotations['batch.kubernetes.io/job-completion-index']"),
            "{env:?}"
        );
        indexes.push(ix);
    }
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);
}

#[test]
fn active_deadline_fails_the_job_and_stops_its_pods() {
    let s = fake_cluster();
    s.create_ns("j4");
    s.ok_stdin(
        &["apply", "-n", "j4", "-f", "-"],
        &job(
            "slow",
            "  activeDeadlineSeconds: 3\n  parallelism: 2\n  completions: 2",
            r#""fake.skiff.dev/run-seconds": "600""#,
            "Never",
        ),
    );
    let j = wait_condition(&s, "j4", "slow", "Failed");
    let failed = condition(&j, "Failed").cloned().unwrap_or_default();
    assert_eq!(failed["reason"], "DeadlineExceeded", "{j}");
    assert_eq!(j["status"]["active"].as_i64().unwrap_or(0), 0);
    wait_for(WAIT, "the job's pods to be gone or finished", || {
        let pods = pods_of(&s, "j4", "slow");
        let running = pods
            .iter()
            .filter(|p| {
                p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
            })
            .count();
        if running == 0 {
            Ok(())
        } else {
            Err(format!("{running} still running"))
        }
    });
}

#[test]
fn ttl_after_finished_deletes_the_job_and_its_pods() {
    let s = fake_cluster();
    s.create_ns("j5");
    s.ok_stdin(
        &["apply", "-n", "j5", "-f", "-"],
        &job("brief", "  ttlSecondsAfterFinished: 2", "", "Never"),
    );
    wait_for(WAIT, "the finished job to be deleted", || {
        let out = s.kubectl(&["get", "job", "brief", "-n", "j5"]);
        if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound") {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stdout).into_owned())
        }
    });
    wait_for(WAIT, "its pods to be collected", || {
        let n = pods_of(&s, "j5", "brief").len();
        if n == 0 {
            Ok(())
        } else {
            Err(format!("{n} pods left"))
        }
    });
}

#[test]
fn suspended_job_runs_nothing_until_resumed() {
    let s = fake_cluster();
    s.create_ns("j6");
    s.ok_stdin(
        &["apply", "-n", "j6", "-f", "-"],
        &job("later", "  suspend: true\n  completions: 2", "", "Never"),
    );
    let j = wait_condition(&s, "j6", "later", "Suspended");
    assert!(j["status"]["startTime"].is_null(), "{}", j["status"]);
    assert!(pods_of(&s, "j6", "later").is_empty());
    s.ok(&[
        "patch",
        "job",
        "later",
        "-n",
        "j6",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    let j = wait_condition(&s, "j6", "later", "Complete");
    assert_eq!(j["status"]["succeeded"], 2);
    let suspended = j["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Suspended")
        .cloned()
        .unwrap_or_default();
    assert_eq!(suspended["status"], "False", "{j}");
    assert_eq!(suspended["reason"], "JobResumed");
}

#[test]
fn cronjob_fires_every_minute_and_honours_history_limits() {
    let s = fake_cluster();
    s.create_ns("c1");
    let cron = |name: &str, suspend: bool| {
        format!(
            r#"apiVersion: batch/v1
kind: CronJob
metadata:
  name: {name}
spec:
  schedule: "* * * * *"
  suspend: {suspend}
  successfulJobsHistoryLimit: 0
  failedJobsHistoryLimit: 1
  jobTemplate:
    metadata:
      labels: {{from: {name}}}
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: busybox
"#
        )
    };
    s.ok_stdin(&["apply", "-n", "c1", "-f", "-"], &cron("tick", false));
    s.ok_stdin(&["apply", "-n", "c1", "-f", "-"], &cron("idle", true));
    // The first activation is at most a minute away.
    let job = wait_for(
        Duration::from_secs(75),
        "the cronjob to create a job",
        || {
            let list = s.get_json(&["jobs", "-n", "c1", "-l", "from=tick"]);
            list["items"]
                .as_array()
                .and_then(|a| a.first().cloned())
                .ok_or_else(|| list.to_string())
        },
    );
    let name = job["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let minutes = name.strip_prefix("tick-").unwrap_or_default();
    assert!(
        !minutes.is_empty() && minutes.chars().all(|c| c.is_ascii_digit()),
        "{name}"
    );
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    let stamp = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(stamp.ends_with(":00Z") || stamp.len() > 20, "{stamp}");
    // It completes; with a success history of 0 it is then deleted, and the
    // CronJob records the success.
    let cj = wait_for(WAIT, "the finished job to be pruned", || {
        let cj = s.get_json(&["cronjob", "tick", "-n", "c1"]);
        let gone = !s
            .kubectl(&["get", "job", &name, "-n", "c1"])
            .status
            .success();
        if gone && cj["status"]["lastSuccessfulTime"].is_string() {
            Ok(cj)
        } else {
            Err(cj["status"].to_string())
        }
    });
    assert!(
        cj["status"]["lastScheduleTime"].is_string(),
        "{}",
        cj["status"]
    );
    let reasons = event_reasons(&s, "c1", "CronJob", "tick");
    // (The history cleanup runs before the active list is reconciled, as
    // upstream, so a Job pruned at once is not also reported as SawCompletedJob.)
    for want in ["SuccessfulCreate", "SuccessfulDelete"] {
        assert!(
            reasons.iter().any(|r| r == want),
            "{want} missing from {reasons:?}"
        );
    }
    // A minute boundary has passed: the suspended CronJob made nothing.
    let idle = s.get_json(&["cronjob", "idle", "-n", "c1"]);
    assert!(idle["status"]["lastScheduleTime"].is_null(), "{idle}");
    let idle_jobs = s.get_json(&["jobs", "-n", "c1", "-l", "from=idle"]);
    assert_eq!(idle_jobs["items"].as_array().map_or(0, Vec::len), 0);
}

#[test]
fn bad_cron_schedule_is_rejected() {
    let s = Server::start();
    let cj = |schedule: &str, tz: Option<&str>| {
        let mut spec = serde_json::json!({
            "schedule": schedule,
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox"}]}}}}
        });
        if let Some(tz) = tz {
            spec["timeZone"] = Value::from(tz);
        }
        serde_json::json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "bad"}, "spec": spec})
    };
    let path = "/apis/batch/v1/namespaces/default/cronjobs";
    for (schedule, tz, field) in [
        ("61 * * * *", None, "spec.schedule"),
        ("* * * *", None, "spec.schedule"),
        ("CRON_TZ=UTC * * * * *", None, "spec.schedule"),
        ("* * * * *", Some("Not/A Zone"), "spec.timeZone"),
    ] {
        let (code, body) = s.curl_json("POST", path, Some(&cj(schedule, tz)));
        assert_eq!(code, 422, "{schedule}: {body}");
        assert_eq!(body["reason"], "Invalid");
        let causes = body["details"]["causes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            causes.iter().any(|c| c["field"] == field),
            "{schedule}: {body}"
        );
    }
}

#[test]
fn counts_survive_a_server_restart() {
    let mut s = fake_cluster();
    s.create_ns("j7");
    s.ok_stdin(
        &["apply", "-n", "j7", "-f", "-"],
        &job(
            "steady",
            "  completions: 4\n  parallelism: 2",
            r#""fake.skiff.dev/run-seconds": "2""#,
            "Never",
        ),
    );
    // Kill the server (no shutdown path) once some pods have been counted.
    wait_for(WAIT, "a first success to be recorded", || {
        let j = s.get_json(&["job", "steady", "-n", "j7"]);
        let st = &j["status"];
        let uncounted = st["uncountedTerminatedPods"]["succeeded"]
            .as_array()
            .map_or(0, Vec::len);
        if st["succeeded"].as_i64().unwrap_or(0) + uncounted as i64 >= 1 {
            Ok(())
        } else {
            Err(st.to_string())
        }
    });
    s.restart();
    let j = wait_condition(&s, "j7", "steady", "Complete");
    // Exactly the completions: nothing counted twice, nothing lost.
    assert_eq!(j["status"]["succeeded"], 4, "{}", j["status"]);
    let succeeded_pods = pods_of(&s, "j7", "steady")
        .iter()
        .filter(|p| p["status"]["phase"] == "Succeeded")
        .count();
    assert_eq!(succeeded_pods, 4);
}
