//! Container configuration from the API on the real node: env and envFrom
//! (ConfigMaps, Secrets, the downward API), volumes (configMap, secret,
//! downwardAPI, projected, emptyDir, hostPath), updates of mounted
//! ConfigMaps reaching running pods, and the waits for missing sources.
//! Files are inspected inside the containers with `kubectl exec`. Needs root.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::node::*;
use common::Server;
use serde_json::json;

fn apply(s: &Server, obj: &serde_json::Value) {
    s.ok_stdin(&["apply", "-f", "-"], &obj.to_string());
}

fn config_map(name: &str, data: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

/// A Secret with `data` (plain strings, base64-encoded here).
fn secret(name: &str, data: &[(&str, &str)]) -> serde_json::Value {
    let data: serde_json::Map<String, serde_json::Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), base64(v.as_bytes()).into()))
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data})
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn describe(s: &Server, name: &str) -> String {
    let out = s.kubectl(&["get", "pod", name, "-o", "json"]);
    format!(
        "{}\nevents: {:?}\n{}",
        String::from_utf8_lossy(&out.stdout),
        events_of(s, name),
        s.log()
    )
}

fn wait_running(s: &Server, name: &str) -> serde_json::Value {
    until(
        Duration::from_secs(90),
        || {
            let p = s.get_json(&["pod", name]);
            let all_running = p["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|cs| cs.iter().all(|c| c["state"]["running"].is_object()));
            (p["status"]["phase"] == "Running" && all_running).then_some(p)
        },
        || describe(s, name),
    )
}

/// `(type, reason, message)` of the events about pod `name`.
fn events_of(s: &Server, name: &str) -> Vec<(String, String, String)> {
    let list = s.get_json(&["events"]);
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|e| e["involvedObject"]["name"] == name)
                .map(|e| {
                    let f = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                    (f("type"), f("reason"), f("message"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn wait_event(s: &Server, pod: &str, reason: &str, message: &str) {
    until(
        Duration::from_secs(60),
        || {
            events_of(s, pod)
                .into_iter()
                .find(|(t, r, m)| t == "Warning" && r == reason && m == message)
        },
        || describe(s, pod),
    );
}

/// `kubectl exec pod -c container -- args...`, stdout on success.
fn exec(s: &Server, pod: &str, container: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["exec", pod, "-c", container, "--"];
    all.extend_from_slice(args);
    let out = s.kubectl(&all);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn cat(s: &Server, pod: &str, container: &str, path: &str) -> String {
    exec(s, pod, container, &["cat", path])
        .unwrap_or_else(|e| panic!("cat {path} in {pod}/{container}: {e}"))
}

#[test]
fn env_comes_from_literals_config_maps_secrets_and_the_downward_api() {
    let s = node_server();
    apply(
        &s,
        &config_map("envcm", json!({"color": "blue", "size": "L"})),
    );
    apply(
        &s,
        &secret("envsec", &[("password", "s3cret"), ("1st", "skipped")]),
    );
    apply(
        &s,
        &json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-api"},
            "spec": {"selector": {"app": "nothing"}, "ports": [{"name": "http", "port": 8080}]}
        }),
    );
    let svc = s.get_json(&["service", "web-api"]);
    let svc_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let api = s.get_json(&["service", "kubernetes"]);
    let api_ip = api["spec"]["clusterIP"].as_str().unwrap().to_string();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "envpod", "labels": {"app": "envy"}, "annotations": {"note": "hi there"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "main", "image": "busybox:test", "command": ["sleep", "3600"],
                "resources": {
                    "limits": {"memory": "64Mi", "cpu": "500m"},
                    "requests": {"memory": "32Mi", "cpu": "250m"}
                },
                "envFrom": [
                    {"configMapRef": {"name": "envcm"}, "prefix": "CM_"},
                    {"secretRef": {"name": "envsec"}},
                    {"configMapRef": {"name": "absent", "optional": true}}
                ],
                "env": [
                    {"name": "LITERAL", "value": "plain"},
                    {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "envcm", "key": "color"}}},
                    {"name": "EXPANDED", "value": "$(LITERAL)-$(CM_size)-$(FROM_CM)-$(NOPE)"},
                    {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "envsec", "key": "password"}}},
                    {"name": "OPTIONAL", "valueFrom": {"configMapKeyRef": {"name": "envcm", "key": "nokey", "optional": true}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "NOTE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                    {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "REQ_MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory", "divisor": "1Mi"}}},
                    {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
                    {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "EPHEMERAL_GI", "valueFrom": {"resourceFieldRef": {"resource": "limits.ephemeral-storage", "divisor": "1Gi"}}}
                ]
            }]
        }
    });
    apply(&s, &pod);
    let p = wait_running(&s, "envpod");
    let out = until(
        Duration::from_secs(20),
        || exec(&s, "envpod", "main", &["env"]).ok(),
        || describe(&s, "envpod"),
    );
    let env: BTreeMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |k: &str| {
        env.get(k)
            .copied()
            .unwrap_or_else(|| panic!("no {k} in {out}"))
    };
    assert_eq!(get("LITERAL"), "plain");
    assert_eq!(get("CM_color"), "blue");
    assert_eq!(get("CM_size"), "L");
    assert_eq!(get("FROM_CM"), "blue");
    assert_eq!(get("EXPANDED"), "plain-L-blue-$(NOPE)");
    assert_eq!(get("password"), "s3cret");
    assert_eq!(get("FROM_SECRET"), "s3cret");
    assert!(!env.contains_key("1st"), "{out}");
    assert!(!env.contains_key("OPTIONAL"), "{out}");
    assert_eq!(get("POD_NAME"), "envpod");
    assert_eq!(get("POD_NS"), "default");
    assert_eq!(get("POD_UID"), p["metadata"]["uid"].as_str().unwrap());
    assert_eq!(get("APP"), "envy");
    assert_eq!(get("NOTE"), "hi there");
    assert_eq!(get("NODE"), "skiff-node");
    assert_eq!(get("POD_IP"), p["status"]["podIP"].as_str().unwrap());
    assert_eq!(get("HOST_IP"), p["status"]["hostIP"].as_str().unwrap());
    assert_eq!(get("MEM_MI"), "64");
    assert_eq!(get("REQ_MEM_MI"), "32");
    assert_eq!(get("CPU_M"), "250");
    assert_eq!(get("CPU_LIMIT"), "1");
    // Unset limits default to the node's allocatable (100 GiB of ephemeral storage).
    assert_eq!(get("EPHEMERAL_GI"), "100");
    // Service links, and the API server's address for in-cluster clients.
    assert_eq!(get("WEB_API_SERVICE_HOST"), svc_ip);
    assert_eq!(get("WEB_API_SERVICE_PORT"), "8080");
    assert_eq!(get("WEB_API_SERVICE_PORT_HTTP"), "8080");
    assert_eq!(get("WEB_API_PORT"), format!("tcp://{svc_ip}:8080"));
    assert_eq!(get("WEB_API_PORT_8080_TCP_ADDR"), svc_ip);
    assert_eq!(get("KUBERNETES_SERVICE_HOST"), api_ip);
    wait_event(
        &s,
        "envpod",
        "InvalidEnvironmentVariableNames",
        "Keys [1st] from the EnvFrom secret default/envsec were skipped since they are considered invalid environment variable names.",
    );
}

#[test]
fn volumes_carry_config_maps_secrets_the_downward_api_and_shared_scratch_space() {
    let s = node_server();
    apply(&s, &config_map("volcm", json!({"a": "alpha", "b": "beta"})));
    apply(&s, &secret("volsec", &[("password", "hunter2")]));
    let host_dir = s.dir.path().join("hostvol");
    let host = host_dir.to_str().unwrap();
    let mount = |name: &str, path: &str| json!({"name": name, "mountPath": path});
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "vols", "labels": {"app": "vols", "tier": "web"}},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"fsGroup": 2000},
            "volumes": [
                {"name": "cfg", "configMap": {"name": "volcm", "items": [{"key": "a", "path": "renamed/a.txt", "mode": 0o600}]}},
                {"name": "allcfg", "configMap": {"name": "volcm"}},
                {"name": "sec", "secret": {"secretName": "volsec", "defaultMode": 0o440}},
                {"name": "info", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                    {"path": "mem", "resourceFieldRef": {"containerName": "writer", "resource": "limits.memory", "divisor": "1Mi"}}
                ]}},
                {"name": "proj", "projected": {"sources": [
                    {"configMap": {"name": "volcm", "items": [{"key": "b", "path": "b"}]}},
                    {"secret": {"name": "volsec"}},
                    {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}
                ]}},
                {"name": "scratch", "emptyDir": {}},
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                {"name": "host", "hostPath": {"path": host, "type": "DirectoryOrCreate"}}
            ],
            "containers": [
                {
                    "name": "writer", "image": "busybox:test",
                    "command": ["sh", "-c", "echo shared-data > /scratch/f; sleep 3600"],
                    "resources": {"limits": {"memory": "64Mi"}},
                    "volumeMounts": [
                        mount("scratch", "/scratch"), mount("mem", "/mem"),
                        mount("cfg", "/etc/cfg"), mount("allcfg", "/etc/all"),
                        mount("sec", "/etc/sec"), mount("info", "/etc/info"),
                        mount("proj", "/etc/proj"), mount("host", "/host"),
                        {"name": "allcfg", "mountPath": "/etc/single-b", "subPath": "b"}
                    ]
                },
                {
                    "name": "reader", "image": "busybox:test", "command": ["sleep", "3600"],
                    "volumeMounts": [{"name": "scratch", "mountPath": "/data", "readOnly": true}]
                }
            ]
        }
    });
    apply(&s, &pod);
    let p = wait_running(&s, "vols");
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    // emptyDir: what one container writes, the other reads (read-only there).
    let shared = until(
        Duration::from_secs(20),
        || exec(&s, "vols", "reader", &["cat", "/data/f"]).ok(),
        || describe(&s, "vols"),
    );
    assert_eq!(shared, "shared-data\n");
    let scratch = exec(&s, "vols", "reader", &["stat", "-c", "%a %g", "/data"]);
    assert_eq!(scratch.unwrap().trim(), "2777 2000");
    assert!(exec(&s, "vols", "reader", &["touch", "/data/g"]).is_err());
    // emptyDir medium Memory is a tmpfs of the size asked.
    let mounts = cat(&s, "vols", "writer", "/proc/mounts");
    let mem = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/mem"))
        .unwrap_or_else(|| panic!("no /mem in {mounts}"));
    assert!(mem.starts_with("tmpfs /mem tmpfs "), "{mem}");
    assert!(mem.contains("size=16384k"), "{mem}");
    // Secrets are never on disk.
    let sec = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/etc/sec"))
        .unwrap_or_else(|| panic!("no /etc/sec in {mounts}"));
    assert!(sec.contains(" tmpfs "), "{sec}");
    // configMap with items and a mode (made group-readable for the
    // fsGroup, which owns the files); all keys without items.
    assert_eq!(cat(&s, "vols", "writer", "/etc/cfg/renamed/a.txt"), "alpha");
    let mode = exec(
        &s,
        "vols",
        "writer",
        &["stat", "-L", "-c", "%a %g", "/etc/cfg/renamed/a.txt"],
    );
    assert_eq!(mode.unwrap().trim(), "640 2000");
    assert!(exec(&s, "vols", "writer", &["cat", "/etc/cfg/a"]).is_err());
    assert_eq!(cat(&s, "vols", "writer", "/etc/all/a"), "alpha");
    assert_eq!(cat(&s, "vols", "writer", "/etc/all/b"), "beta");
    assert_eq!(cat(&s, "vols", "writer", "/etc/single-b"), "beta");
    // These volumes are read-only.
    assert!(exec(&s, "vols", "writer", &["touch", "/etc/all/new"]).is_err());
    // secret with defaultMode.
    assert_eq!(cat(&s, "vols", "writer", "/etc/sec/password"), "hunter2");
    let mode = exec(
        &s,
        "vols",
        "writer",
        &["stat", "-L", "-c", "%a %g", "/etc/sec/password"],
    );
    assert_eq!(mode.unwrap().trim(), "440 2000");
    // downwardAPI.
    assert_eq!(
        cat(&s, "vols", "writer", "/etc/info/labels"),
        "app=\"vols\"\ntier=\"web\""
    );
    assert_eq!(cat(&s, "vols", "writer", "/etc/info/name"), "vols");
    assert_eq!(cat(&s, "vols", "writer", "/etc/info/mem"), "64");
    // projected: ConfigMap, Secret and downward API files in one directory.
    assert_eq!(cat(&s, "vols", "writer", "/etc/proj/b"), "beta");
    assert_eq!(cat(&s, "vols", "writer", "/etc/proj/password"), "hunter2");
    assert_eq!(cat(&s, "vols", "writer", "/etc/proj/ns"), "default");
    // hostPath: created by DirectoryOrCreate, shared with the host.
    exec(
        &s,
        "vols",
        "writer",
        &["sh", "-c", "echo from-pod > /host/out"],
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(host_dir.join("out")).unwrap(),
        "from-pod\n"
    );
    // Deleting the pod unmounts its volumes.
    assert!(mounts_of(&uid) > 0);
    s.ok(&["delete", "pod", "vols", "--grace-period=1"]);
    until(
        Duration::from_secs(60),
        || (mounts_of(&uid) == 0).then_some(()),
        || format!("mounts left for {uid}"),
    );
}

#[test]
fn updated_config_maps_secrets_and_labels_reach_the_mounted_files_of_a_running_pod() {
    let s = node_server();
    apply(&s, &config_map("live", json!({"greeting": "hello"})));
    apply(&s, &secret("livesec", &[("token", "old")]));
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "watcher", "labels": {"version": "1"}},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [
                {"name": "cfg", "configMap": {"name": "live"}},
                {"name": "sec", "secret": {"secretName": "livesec"}},
                {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}
            ],
            "containers": [{
                "name": "main", "image": "busybox:test", "command": ["sleep", "3600"],
                "volumeMounts": [
                    {"name": "cfg", "mountPath": "/etc/cfg"},
                    {"name": "cfg", "mountPath": "/etc/pinned", "subPath": "greeting"},
                    {"name": "info", "mountPath": "/etc/info"},
                    {"name": "sec", "mountPath": "/etc/sec"}
                ]
            }]
        }
    });
    apply(&s, &pod);
    wait_running(&s, "watcher");
    assert_eq!(cat(&s, "watcher", "main", "/etc/cfg/greeting"), "hello");
    apply(
        &s,
        &config_map("live", json!({"greeting": "bonjour", "added": "new"})),
    );
    until(
        Duration::from_secs(30),
        || {
            let now = exec(&s, "watcher", "main", &["cat", "/etc/cfg/greeting"]).ok()?;
            (now == "bonjour").then_some(())
        },
        || describe(&s, "watcher"),
    );
    assert_eq!(cat(&s, "watcher", "main", "/etc/cfg/added"), "new");
    apply(&s, &secret("livesec", &[("token", "rotated")]));
    until(
        Duration::from_secs(30),
        || {
            let now = exec(&s, "watcher", "main", &["cat", "/etc/sec/token"]).ok()?;
            (now == "rotated").then_some(())
        },
        || describe(&s, "watcher"),
    );
    // A subPath mount is a bind of the file: as in Kubernetes, it keeps
    // what it had when the container started.
    assert_eq!(cat(&s, "watcher", "main", "/etc/pinned"), "hello");
    // Labels of the running pod reach its downward API file.
    s.ok(&["label", "pod", "watcher", "version=2", "--overwrite"]);
    until(
        Duration::from_secs(30),
        || {
            let now = exec(&s, "watcher", "main", &["cat", "/etc/info/labels"]).ok()?;
            (now == "version=\"2\"").then_some(())
        },
        || describe(&s, "watcher"),
    );
}

#[test]
fn a_volume_of_a_missing_config_map_waits_with_failed_mount_until_it_exists() {
    let s = node_server();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "early"},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "late", "configMap": {"name": "latecm"}}],
            "containers": [{
                "name": "main", "image": "busybox:test", "command": ["sleep", "3600"],
                "volumeMounts": [{"name": "late", "mountPath": "/etc/late"}]
            }]
        }
    });
    apply(&s, &pod);
    wait_event(
        &s,
        "early",
        "FailedMount",
        "MountVolume.SetUp failed for volume \"late\" : configmap \"latecm\" not found",
    );
    let p = s.get_json(&["pod", "early"]);
    assert_eq!(p["status"]["phase"], "Pending", "{p}");
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "ContainerCreating",
        "{p}"
    );
    // A hostPath of the wrong type fails its check the same way.
    let missing = s.dir.path().join("no-such-file");
    let missing = missing.to_str().unwrap();
    apply(
        &s,
        &json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "wrongtype"},
            "spec": {
                "restartPolicy": "Never",
                "volumes": [{"name": "h", "hostPath": {"path": missing, "type": "File"}}],
                "containers": [{
                    "name": "main", "image": "busybox:test", "command": ["sleep", "3600"],
                    "volumeMounts": [{"name": "h", "mountPath": "/h"}]
                }]
            }
        }),
    );
    wait_event(
        &s,
        "wrongtype",
        "FailedMount",
        &format!("MountVolume.SetUp failed for volume \"h\" : hostPath type check failed: {missing} is not a file"),
    );
    apply(&s, &config_map("latecm", json!({"k": "finally"})));
    wait_running(&s, "early");
    assert_eq!(cat(&s, "early", "main", "/etc/late/k"), "finally");
    let p = s.get_json(&["pod", "wrongtype"]);
    assert_eq!(p["status"]["phase"], "Pending", "{p}");
}

#[test]
fn a_missing_env_source_is_a_create_container_config_error_until_it_exists() {
    let s = node_server();
    apply(&s, &config_map("keycm", json!({"present": "yes"})));
    let env_pod = |name: &str, cm: &str, key: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "main", "image": "busybox:test", "command": ["sleep", "3600"],
                    "env": [{"name": "V", "valueFrom": {"configMapKeyRef": {"name": cm, "key": key}}}]
                }]
            }
        })
    };
    apply(&s, &env_pod("nokey", "keycm", "nope"));
    apply(&s, &env_pod("nocm", "ghost", "k"));
    let waiting = |name: &str, message: &str| {
        until(
            Duration::from_secs(60),
            || {
                let p = s.get_json(&["pod", name]);
                let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
                (w["reason"] == "CreateContainerConfigError" && w["message"] == message)
                    .then_some(())
            },
            || describe(&s, name),
        )
    };
    waiting("nokey", "couldn't find key nope in ConfigMap default/keycm");
    waiting("nocm", "configmap \"ghost\" not found");
    wait_event(&s, "nocm", "Failed", "Error: configmap \"ghost\" not found");
    // The start is retried: once the key exists, the container runs.
    apply(
        &s,
        &config_map("keycm", json!({"present": "yes", "nope": "now"})),
    );
    wait_running(&s, "nokey");
    let env = cat(&s, "nokey", "main", "/proc/1/environ");
    assert!(env.split('\0').any(|v| v == "V=now"), "{env:?}");
}

#[test]
fn mounted_config_maps_keep_following_the_api_after_a_server_restart() {
    let mut s = node_server();
    apply(&s, &config_map("durable", json!({"k": "before"})));
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "survivor"},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [
                {"name": "cfg", "configMap": {"name": "durable"}},
                {"name": "sec", "secret": {"secretName": "durable-sec", "optional": true}},
                {"name": "mem", "emptyDir": {"medium": "Memory"}}
            ],
            "containers": [{
                "name": "main", "image": "busybox:test",
                "command": ["sh", "-c", "echo kept > /mem/f; sleep 3600"],
                "volumeMounts": [
                    {"name": "cfg", "mountPath": "/etc/cfg"},
                    {"name": "sec", "mountPath": "/etc/sec"},
                    {"name": "mem", "mountPath": "/mem"}
                ]
            }]
        }
    });
    apply(&s, &pod);
    let p = wait_running(&s, "survivor");
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    until(
        Duration::from_secs(20),
        || exec(&s, "survivor", "main", &["cat", "/mem/f"]).ok(),
        || describe(&s, "survivor"),
    );
    s.restart(); // SIGKILL, then start again on the same data dir
    wait_running(&s, "survivor");
    // The container and its memory volume are the same ones.
    assert_eq!(
        until(
            Duration::from_secs(30),
            || exec(&s, "survivor", "main", &["cat", "/mem/f"]).ok(),
            || describe(&s, "survivor"),
        ),
        "kept\n"
    );
    // The optional Secret, absent so far, and the ConfigMap change.
    apply(&s, &config_map("durable", json!({"k": "after"})));
    apply(&s, &secret("durable-sec", &[("pw", "late")]));
    until(
        Duration::from_secs(30),
        || {
            let cfg = exec(&s, "survivor", "main", &["cat", "/etc/cfg/k"]).ok()?;
            let sec = exec(&s, "survivor", "main", &["cat", "/etc/sec/pw"]).ok()?;
            (cfg == "after" && sec == "late").then_some(())
        },
        || describe(&s, "survivor"),
    );
    s.ok(&["delete", "pod", "survivor", "--grace-period=1"]);
    until(
        Duration::from_secs(60),
        || (mounts_of(&uid) == 0).then_some(()),
        || format!("mounts left for {uid}"),
    );
}
