//! `kubectl attach` and interactive containers on the real node: stdin
//! pipes kept by the supervisor, terminals from runc's console socket,
//! output streamed to attached clients and still in the logs. Needs root.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{wait_for, Server};

fn until<T>(
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
    mut describe: impl FnMut() -> String,
) -> T {
    wait_for(timeout, "a pod condition", || f().ok_or_else(&mut describe))
}

/// busybox-static as `busybox:test` (entrypoint-less, cmd `sh`).
fn busybox_archive(dir: &Path) -> PathBuf {
    let path = dir.join("busybox.oci.tar");
    skiff_image::build::ImageBuilder::busybox()
        .expect("busybox image")
        .cmd(["sh"])
        .write_oci_archive(&path, Some("busybox:test"))
        .expect("write image");
    path
}

fn node_server() -> Server {
    let s = Server::start_node(&[]);
    let archive = busybox_archive(s.dir.path());
    s.import_image(&archive);
    until(
        Duration::from_secs(30),
        || {
            let out = s.kubectl(&[
                "get",
                "node",
                "skiff-node",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
        },
        || s.log(),
    );
    s
}

fn wait_phase(s: &Server, name: &str, phase: &str) -> serde_json::Value {
    until(
        Duration::from_secs(60),
        || {
            let p = s.get_json(&["pod", name]);
            (p["status"]["phase"] == phase).then_some(p)
        },
        || format!("{}\n{}", s.get_json(&["pod", name]), s.log()),
    )
}

/// Wait (bounded) for a child's output; kill it (by its pid) on timeout.
fn output_within(child: std::process::Child, what: &str, s: &Server) -> std::process::Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(90)) {
        Ok(out) => out.expect("child output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{what} did not end\n{}", s.log());
        }
    }
}

/// kubectl with `input` on its stdin (then EOF), bounded in time.
fn kubectl_input(s: &Server, args: &[&str], input: &str) -> std::process::Output {
    let mut child = s
        .kubectl_cmd()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    output_within(child, &format!("kubectl {args:?}"), s)
}

/// A busybox pod running `script` in one container `main`.
fn create_pod(s: &Server, name: &str, script: &str, stdin: bool, tty: bool) {
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": "busybox:test",
                "command": ["sh", "-c", script],
                "stdin": stdin,
                "tty": tty,
            }],
        },
    });
    s.ok_stdin(&["create", "-f", "-"], &pod.to_string());
}

#[test]
fn run_i_pipes_stdin_into_the_container() {
    let s = node_server();
    // kubectl's own flow: stdin and stdinOnce on the container, attach
    // once it runs, the pod deleted afterwards.
    let out = kubectl_input(
        &s,
        &[
            "run",
            "-i",
            "--rm",
            "--restart=Never",
            "--image=busybox:test",
            "once",
            "--",
            "sh",
            "-c",
            "read l; echo got $l",
        ],
        "hello\n",
    );
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("got hello"), "{out}\n{}", s.log());
    until(
        Duration::from_secs(30),
        || (!s.kubectl(&["get", "pod", "once"]).status.success()).then_some(()),
        || s.log(),
    );

    // Without --rm: stdout and stderr both reach kubectl, the container
    // ends once stdin closes (stdinOnce), and the logs keep the output.
    let out = kubectl_input(
        &s,
        &[
            "run",
            "-i",
            "--restart=Never",
            "--image=busybox:test",
            "kept",
            "--",
            "sh",
            "-c",
            "while read l; do echo out $l; echo err $l >&2; done; echo stdin closed",
        ],
        "one\ntwo\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", s.log());
    assert!(stdout.contains("out one"), "{stdout}\n{stderr}");
    assert!(stdout.contains("out two"), "{stdout}\n{stderr}");
    assert!(stdout.contains("stdin closed"), "{stdout}\n{stderr}");
    assert!(stderr.contains("err two"), "{stdout}\n{stderr}");
    let pod = wait_phase(&s, "kept", "Succeeded");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 0,
        "{pod}"
    );
    // Both streams are in the log (their order across streams is the
    // copiers').
    let logs = s.ok(&["logs", "kept"]);
    for line in ["out one", "err one", "out two", "err two", "stdin closed"] {
        assert!(
            logs.lines().any(|l| l == line),
            "{line:?} missing in {logs}"
        );
    }
}

#[test]
fn attach_streams_output_as_it_comes_and_logs_keep_it() {
    let s = node_server();
    // Prints "before", then ticks until told to stop.
    create_pod(
        &s,
        "ticker",
        "echo before; i=0; while [ ! -e /tmp/stop ] && [ $i -lt 3000 ]; do \
         i=$((i+1)); echo tick $i; sleep 0.1; done; echo done; exit 3",
        false,
        false,
    );
    wait_phase(&s, "ticker", "Running");
    until(
        Duration::from_secs(20),
        || s.ok(&["logs", "ticker"]).contains("before").then_some(()),
        || s.log(),
    );
    let mut attach = s.spawn_kubectl(&["attach", "ticker"]);
    let other = s.spawn_kubectl(&["attach", "ticker"]);
    // Output reaches every attached client while the container runs.
    for a in [&attach, &other] {
        until(
            Duration::from_secs(30),
            || a.stdout().contains("tick").then_some(()),
            || format!("{}\n{}\n{}", a.stdout(), a.stderr(), s.log()),
        );
    }
    // One client leaving stops neither the container nor the others.
    drop(other);
    let seen = attach.stdout().len();
    until(
        Duration::from_secs(30),
        || (attach.stdout().len() > seen).then_some(()),
        || format!("{}\n{}", attach.stdout(), s.log()),
    );
    assert_eq!(s.get_json(&["pod", "ticker"])["status"]["phase"], "Running");
    s.ok(&["exec", "ticker", "--", "touch", "/tmp/stop"]);
    // The attach ends with the container.
    attach.wait_exit(Duration::from_secs(30));
    let seen = attach.stdout();
    assert!(seen.contains("done"), "{seen}\n{}", attach.stderr());
    // Attaching does not replay what was written before.
    assert!(!seen.contains("before"), "{seen}");
    let pod = wait_phase(&s, "ticker", "Failed");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 3,
        "{pod}"
    );
    let logs = s.ok(&["logs", "ticker"]);
    assert!(logs.starts_with("before\ntick 1\n"), "{logs}");
    assert!(logs.ends_with("done\n"), "{logs}");

    // A finished container cannot be attached to.
    let err = s.fails(&["attach", "ticker"]);
    assert!(
        err.contains("completed") || err.contains("not running"),
        "{err}"
    );
}

#[test]
fn attach_it_drives_a_terminal_in_the_container() {
    let s = node_server();
    create_pod(&s, "term", "echo started; exec sh", true, true);
    wait_phase(&s, "term", "Running");
    until(
        Duration::from_secs(20),
        || s.ok(&["logs", "term"]).contains("started").then_some(()),
        || s.log(),
    );
    // kubectl needs a terminal of its own: `script` gives it one, sized so
    // the resize reaches the container's terminal.
    let mut script = Command::new("script")
        .arg("-qc")
        .arg(format!(
            "stty cols 91 rows 27; kubectl --kubeconfig {} attach -it term",
            s.kubeconfig.display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    let mut input = script.stdin.take().unwrap();
    // Typed into kubectl's terminal; kept open (no EOF) until the shell
    // in the container exits.
    input
        .write_all(b"tty; stty size; echo hi-$((40+2)); exit 7\n")
        .unwrap();
    let out = output_within(script, "kubectl attach -it", &s);
    drop(input);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("hi-42"), "{text}\n{}", s.log());
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("27 91"), "{text}");
    let pod = wait_phase(&s, "term", "Failed");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 7,
        "{pod}"
    );
    // Terminal output is the container's stdout in its log.
    let logs = s.ok(&["logs", "term"]);
    assert!(logs.contains("started"), "{logs}");
    assert!(logs.contains("hi-42"), "{logs}");
}

#[test]
fn run_it_rm_gives_a_shell_in_a_new_pod() {
    let s = node_server();
    // tty, stdin and stdinOnce: kubectl's interactive `run`.
    let mut script = Command::new("script")
        .arg("-qc")
        .arg(format!(
            "kubectl --kubeconfig {} run -it --rm --restart=Never --image=busybox:test shell -- sh",
            s.kubeconfig.display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    let mut input = script.stdin.take().unwrap();
    input
        .write_all(b"echo in-$(hostname)-$((6*7)); exit\n")
        .unwrap();
    let out = output_within(script, "kubectl run -it", &s);
    drop(input);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("in-shell-42"), "{text}\n{}", s.log());
    until(
        Duration::from_secs(30),
        || (!s.kubectl(&["get", "pod", "shell"]).status.success()).then_some(()),
        || s.log(),
    );
}

/// `kubectl attach -i`: type `line`, read until `expect` shows, then end
/// stdin; kubectl must then exit (the attach ends with its stdin).
fn attach_and_type(s: &Server, pod: &str, line: &str, expect: &str) -> String {
    use std::io::Read;
    let mut child = s
        .kubectl_cmd()
        .args(["attach", "-i", pod])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    stdin.write_all(line.as_bytes()).unwrap();
    let mut seen = String::new();
    while !seen.contains(expect) {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(chunk) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{expect:?} not in {seen:?}\n{}", s.log());
            }
        }
    }
    drop(stdin);
    let out = output_within(child, "kubectl attach -i after its stdin ended", s);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    seen
}

#[test]
fn stdin_and_attach_survive_a_server_restart() {
    let mut s = node_server();
    // The supervisor, not the server, holds the container's stdin.
    create_pod(
        &s,
        "echoer",
        "while read l; do echo got $l; done; echo eof",
        true,
        false,
    );
    wait_phase(&s, "echoer", "Running");
    s.restart(); // SIGKILL, then start again on the same data dir
    wait_phase(&s, "echoer", "Running");
    // Without stdinOnce an attach ends with the client's stdin, and the
    // container's stdin stays open for the next one.
    attach_and_type(&s, "echoer", "after-restart\n", "got after-restart");
    attach_and_type(&s, "echoer", "again\n", "got again");
    assert_eq!(s.get_json(&["pod", "echoer"])["status"]["phase"], "Running");
    let logs = s.ok(&["logs", "echoer"]);
    assert_eq!(logs, "got after-restart\ngot again\n");
}
