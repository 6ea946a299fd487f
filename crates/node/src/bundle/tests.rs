//! The Kubernetes rules of [`super::resolve`] and the shape of
//! [`super::spec`], without runc (the runc tests are in
//! `tests/bundle_runc.rs`).
#![allow(clippy::unwrap_used)]

use k8s_openapi::api::core::v1::{Container, Pod};
use oci_spec::image::ImageConfiguration;
use serde_json::json;

use super::*;

struct Rootfs(tempfile::TempDir);

fn rootfs() -> Rootfs {
    let dir = tempfile::Builder::new()
        .prefix("skiff-bundle-unit-")
        .tempdir()
        .unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nweb:x:33:33::/var/www:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("etc/group"),
        "root:x:0:\nweb:x:33:\nlog:x:4:web\n",
    )
    .unwrap();
    Rootfs(dir)
}

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
        "spec": spec,
    }))
    .unwrap()
}

fn container(v: serde_json::Value) -> Container {
    let mut v = v;
    v["name"] = json!("c");
    serde_json::from_value(v).unwrap()
}

fn image(config: serde_json::Value) -> ImageConfiguration {
    serde_json::from_value(json!({
        "architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": []},
    }))
    .unwrap()
}

fn plan_with(
    pod_spec: serde_json::Value,
    c: serde_json::Value,
    img: serde_json::Value,
    env: &[(&str, &str)],
) -> Result<ContainerPlan, BundleError> {
    let root = rootfs();
    let c = container(c);
    let mut spec = pod_spec;
    spec["containers"] = json!([c.clone()]);
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    let prepared = Prepared {
        id: "cid".into(),
        rootfs: root.0.path().to_path_buf(),
        rootfs_overlay: None,
        image_layers: Vec::new(),
        cgroups_path: "/skiff/podu-1/cid".into(),
        ..Default::default()
    };
    resolve(
        &pod(spec),
        &c,
        &image(img),
        &env,
        prepared,
        &NodeSettings::new(1 << 30),
    )
}

fn plan(c: serde_json::Value, img: serde_json::Value) -> ContainerPlan {
    plan_with(json!({}), c, img, &[]).unwrap()
}

#[test]
fn command_and_args_against_entrypoint_and_cmd() {
    let img = json!({"Entrypoint": ["/ep"], "Cmd": ["c1", "c2"]});
    assert_eq!(plan(json!({}), img.clone()).args, ["/ep", "c1", "c2"]);
    assert_eq!(plan(json!({"args": ["a"]}), img.clone()).args, ["/ep", "a"]);
    assert_eq!(plan(json!({"command": ["/x"]}), img.clone()).args, ["/x"]);
    assert_eq!(
        plan(json!({"command": ["/x"], "args": ["a"]}), img.clone()).args,
        ["/x", "a"]
    );
    assert_eq!(plan(json!({}), json!({"Cmd": ["sh"]})).args, ["sh"]);
    let err = plan_with(json!({}), json!({}), json!({}), &[]).unwrap_err();
    assert_eq!(err.to_string(), "no command specified");
    assert_eq!(err.reason(), "CreateContainerConfigError");
}

#[test]
fn env_is_expanded_ordered_and_overrides_the_image() {
    let c = json!({
        "command": ["/bin/echo", "$(A)", "$(B)", "$$(A)", "$(NOPE)"],
        "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "value": "$(A)-$(SECRET)"},
            {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "IMG", "value": "pod"},
        ],
    });
    let env = [
        ("A", "1"),
        ("B", "$(A)-$(SECRET)"),
        ("SECRET", "$(A)"),
        ("IMG", "pod"),
    ];
    let p = plan_with(
        json!({"hostname": "h"}),
        c,
        json!({"Env": ["IMG=image", "PATH=/opt/bin", "ONLY=img"]}),
        &env,
    )
    .unwrap();
    // SECRET comes later, so B cannot see it; the secret's value is not
    // expanded.
    assert_eq!(p.args, ["/bin/echo", "1", "1-$(SECRET)", "$(A)", "$(NOPE)"]);
    let names: Vec<&str> = p.env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["PATH", "HOSTNAME", "IMG", "ONLY", "A", "B", "SECRET"]
    );
    let get = |k: &str| p.env.iter().find(|(n, _)| n == k).unwrap().1.clone();
    assert_eq!(get("IMG"), "pod");
    assert_eq!(get("PATH"), "/opt/bin");
    assert_eq!(get("HOSTNAME"), "h");
    assert_eq!(get("SECRET"), "$(A)");
}

#[test]
fn working_dir_falls_back_to_the_image_then_root() {
    let cmd = json!({"command": ["x"]});
    assert_eq!(plan(cmd.clone(), json!({})).cwd, "/");
    assert_eq!(plan(cmd.clone(), json!({"WorkingDir": "/app"})).cwd, "/app");
    let mut c = cmd;
    c["workingDir"] = json!("/srv");
    assert_eq!(plan(c, json!({"WorkingDir": "/app"})).cwd, "/srv");
}

#[test]
fn users_from_the_image_and_the_security_context() {
    let cmd = json!({"command": ["x"]});
    let p = plan(cmd.clone(), json!({"User": "web"}));
    assert_eq!(
        p.user,
        ProcessUser {
            uid: 33,
            gid: 33,
            additional_gids: vec![33, 4]
        }
    );
    let p = plan_with(
        json!({"securityContext": {"runAsUser": 33, "runAsGroup": 7, "supplementalGroups": [9, 7], "fsGroup": 11}}),
        cmd.clone(),
        json!({"User": "root"}),
        &[],
    )
    .unwrap();
    assert_eq!(p.user.uid, 33);
    assert_eq!(p.user.gid, 7);
    assert_eq!(p.user.additional_gids, vec![7, 4, 9, 11]);
    // The container's runAsUser wins over the pod's.
    let mut c = cmd.clone();
    c["securityContext"] = json!({"runAsUser": 5000});
    let p = plan_with(
        json!({"securityContext": {"runAsUser": 33}}),
        c,
        json!({}),
        &[],
    )
    .unwrap();
    assert_eq!((p.user.uid, p.user.gid), (5000, 0));
    let err = plan_with(json!({}), cmd.clone(), json!({"User": "ghost"}), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to find user ghost: no matching entries in passwd file"
    );
    let mut c = cmd;
    c["securityContext"] = json!({"runAsUser": -1});
    let err = plan_with(json!({}), c, json!({}), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "runAsUser must be between 0 and 4294967295, not -1"
    );
}

#[test]
fn run_as_non_root_is_enforced_with_the_kubelets_messages() {
    let non_root = json!({"securityContext": {"runAsNonRoot": true}});
    let cmd = json!({"command": ["x"]});
    let err = plan_with(non_root.clone(), cmd.clone(), json!({}), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "container has runAsNonRoot and image will run as root (pod: \"p_ns(u-1)\", container: c)"
    );
    assert_eq!(err.reason(), "CreateContainerConfigError");
    let err = plan_with(non_root.clone(), cmd.clone(), json!({"User": "web"}), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "container has runAsNonRoot and image has non-numeric user (web), cannot verify user is non-root (pod: \"p_ns(u-1)\", container: c)"
    );
    let mut c = cmd.clone();
    c["securityContext"] = json!({"runAsUser": 0});
    let err = plan_with(non_root.clone(), c, json!({}), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "container's runAsUser breaks non-root policy (pod: \"p_ns(u-1)\", container: c)"
    );
    assert!(plan_with(non_root.clone(), cmd.clone(), json!({"User": "33:33"}), &[]).is_ok());
    let mut c = cmd;
    c["securityContext"] = json!({"runAsUser": 1000});
    assert!(plan_with(non_root, c, json!({"User": "root"}), &[]).is_ok());
}

#[test]
fn bad_security_contexts_are_typed_errors() {
    let err = plan_with(
        json!({}),
        json!({"command": ["x"], "securityContext": {"capabilities": {"add": ["SYS_WIZARD"]}}}),
        json!({}),
        &[],
    )
    .unwrap_err();
    assert!(matches!(err, BundleError::UnknownCapability { ref name } if name == "SYS_WIZARD"));
    let err = plan_with(
        json!({}),
        json!({"command": ["x"], "securityContext": {"privileged": true, "allowPrivilegeEscalation": false}}),
        json!({}),
        &[],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot set allowPrivilegeEscalation to false and privileged to true"
    );
    let err = plan_with(
        json!({"securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}}),
        json!({"command": ["x"]}),
        json!({}),
        &[],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "seccomp profile type \"Localhost\" is not supported"
    );
}

fn spec_json(p: &ContainerPlan) -> serde_json::Value {
    serde_json::to_value(spec(p).unwrap()).unwrap()
}

#[test]
fn the_default_spec_has_containerds_protections() {
    let p = plan(json!({"command": ["x"]}), json!({}));
    assert_eq!(p.seccomp, Some(SeccompMode::RuntimeDefault));
    assert!(!p.no_new_privileges);
    let s = spec_json(&p);
    let caps = s["process"]["capabilities"]["bounding"].as_array().unwrap();
    assert_eq!(caps.len(), 14);
    assert!(caps.contains(&json!("CAP_NET_RAW")));
    assert_eq!(s["process"]["capabilities"]["inheritable"], json!([]));
    assert_eq!(s["process"]["rlimits"], json!([]));
    assert!(s["linux"]["maskedPaths"]
        .as_array()
        .unwrap()
        .contains(&json!("/proc/kcore")));
    assert!(s["linux"]["readonlyPaths"]
        .as_array()
        .unwrap()
        .contains(&json!("/proc/sys")));
    assert_eq!(
        s["linux"]["seccomp"]["defaultAction"],
        json!("SCMP_ACT_ALLOW")
    );
    assert_eq!(
        s["linux"]["resources"]["devices"],
        json!([{"allow": false, "access": "rwm"}])
    );
    assert_eq!(s["linux"]["cgroupsPath"], json!("/skiff/podu-1/cid"));
    let dests: Vec<&str> = s["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["destination"].as_str().unwrap())
        .collect();
    assert_eq!(
        dests,
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/dev/shm"
        ]
    );
    let shm = &s["mounts"][6];
    assert!(shm["options"]
        .as_array()
        .unwrap()
        .contains(&json!("size=65536k")));
    // BestEffort, 2 shares, no quota, no memory limit.
    assert_eq!(s["process"]["oomScoreAdj"], json!(1000));
    assert_eq!(s["linux"]["resources"]["cpu"], json!({"shares": 2}));
    assert_eq!(s["linux"]["resources"]["pids"], json!({"limit": 4096}));
    let types: Vec<&str> = s["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["pid", "network", "ipc", "uts", "mount", "cgroup"]);
}

#[test]
fn privileged_gets_everything_and_no_filters() {
    let p = plan(
        json!({"command": ["x"], "securityContext": {"privileged": true}}),
        json!({}),
    );
    let s = spec_json(&p);
    assert_eq!(
        s["process"]["capabilities"]["effective"]
            .as_array()
            .unwrap()
            .len(),
        41
    );
    assert!(s["linux"].get("seccomp").is_none());
    assert_eq!(s["linux"]["maskedPaths"], json!([]));
    assert_eq!(s["linux"]["readonlyPaths"], json!([]));
    assert_eq!(
        s["linux"]["resources"]["devices"],
        json!([{"allow": true, "access": "rwm"}])
    );
    let sys = s["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/sys")
        .unwrap();
    assert!(sys["options"].as_array().unwrap().contains(&json!("rw")));
}

#[test]
fn resources_and_qos_reach_the_spec() {
    let p = plan(
        json!({"command": ["x"], "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"cpu": "1500m", "memory": "512Mi"}}}),
        json!({}),
    );
    let s = spec_json(&p);
    let r = &s["linux"]["resources"];
    assert_eq!(
        r["cpu"],
        json!({"shares": 256, "quota": 150000, "period": 100000})
    );
    assert_eq!(r["memory"], json!({"limit": 536870912, "swap": 536870912}));
    // Burstable: 1000 - 1000 * 256Mi / 1Gi.
    assert_eq!(s["process"]["oomScoreAdj"], json!(750));
    let g = plan(
        json!({"command": ["x"], "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}),
        json!({}),
    );
    assert_eq!(g.oom_score_adj, Some(-997));
    assert_eq!(g.resources.cpu_shares, Some(1024));
}

#[test]
fn mounts_files_and_propagation() {
    let mut p = plan(json!({"command": ["x"]}), json!({}));
    p.readonly_rootfs = true;
    p.files = ContainerFiles {
        hosts: Some("/run/p/hosts".into()),
        resolv_conf: Some("/run/p/resolv.conf".into()),
        hostname: None,
        termination_log: Some(("/run/p/c/term".into(), "/dev/termination-log".into())),
        shm: Some("/run/p/shm".into()),
    };
    let vol = |src: &str, dest: &str, prop| BindMount {
        source: src.into(),
        destination: dest.into(),
        read_only: true,
        propagation: prop,
    };
    p.mounts = vec![
        vol("/v/deep", "/data/deep/er", Propagation::Private),
        vol("/v/data", "/data", Propagation::HostToContainer),
        vol("/v/mq", "/dev/mqueue", Propagation::Private),
    ];
    let s = spec_json(&p);
    let mounts = s["mounts"].as_array().unwrap();
    let find = |d: &str| mounts.iter().find(|m| m["destination"] == d).unwrap();
    assert_eq!(
        find("/etc/hosts")["options"],
        json!(["rbind", "rprivate", "ro"])
    );
    assert_eq!(
        find("/dev/termination-log")["options"],
        json!(["rbind", "rprivate", "rw"])
    );
    assert_eq!(find("/dev/shm")["source"], json!("/run/p/shm"));
    assert_eq!(find("/data")["options"], json!(["rbind", "rslave", "ro"]));
    // The volume replaced the standard mqueue mount.
    assert_eq!(find("/dev/mqueue")["type"], json!("bind"));
    let order: Vec<&str> = mounts
        .iter()
        .map(|m| m["destination"].as_str().unwrap())
        .filter(|d| d.starts_with("/data"))
        .collect();
    assert_eq!(order, ["/data", "/data/deep/er"]);
    assert_eq!(s["linux"]["rootfsPropagation"], json!("rslave"));
    assert_eq!(s["root"]["readonly"], json!(true));
}

#[test]
fn host_namespaces_are_left_out_and_joined_ones_have_paths() {
    let mut p = plan(json!({"command": ["x"]}), json!({}));
    p.namespaces = PodNamespaces {
        network: NamespaceMode::Host,
        ipc: NamespaceMode::Join("/run/skiff/ipc/u".into()),
        uts: NamespaceMode::Join("/run/skiff/uts/u".into()),
        pid: NamespaceMode::New,
    };
    let s = spec_json(&p);
    assert_eq!(
        s["linux"]["namespaces"],
        json!([
            {"type": "pid"},
            {"type": "ipc", "path": "/run/skiff/ipc/u"},
            {"type": "uts", "path": "/run/skiff/uts/u"},
            {"type": "mount"},
            {"type": "cgroup"},
        ])
    );
}

#[test]
fn write_bundle_writes_config_json() {
    let dir = tempfile::Builder::new()
        .prefix("skiff-bundle-write-")
        .tempdir()
        .unwrap();
    let p = plan(json!({"command": ["x"], "tty": true}), json!({}));
    let path = write_bundle(&dir.path().join("b"), &spec(&p).unwrap()).unwrap();
    let back: oci_spec::runtime::Spec = oci_spec::runtime::Spec::load(&path).unwrap();
    assert_eq!(back.process().as_ref().unwrap().terminal(), Some(true));
    assert_eq!(back.hostname().as_deref(), Some("p"));
}
