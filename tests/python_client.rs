//! The official Python `kubernetes` client against a real server: each test
//! runs one script from `tests/python/` with the admin kubeconfig.

mod common;

use std::process::Command;

use common::Server;

/// Run `tests/python/<script>` against `s`; panics with its output unless it exits 0.
fn run_script(s: &Server, script: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = Command::new("python3")
        .arg(&path)
        .arg(&s.kubeconfig)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env_remove("KUBECONFIG")
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server log (tail)\n{}",
        out.status,
        s.log().lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    assert!(
        stdout.contains("all checks passed"),
        "{script} did not finish:\n{stdout}"
    );
}

#[test]
fn python_crud_selectors_pagination_conflicts() {
    run_script(&Server::start(), "crud.py");
}

#[test]
fn python_list_watch_and_resume() {
    run_script(&Server::start(), "watch_resume.py");
}

#[test]
fn python_dynamic_client_with_crd() {
    run_script(&Server::start(), "dynamic_crd.py");
}

/// Needs compaction: the server runs with the shortest history (10 s), and the
/// script waits up to 60 s for a 410.
#[test]
fn python_gone_after_compaction() {
    run_script(
        &Server::start_with(&["--history-seconds", "10"]),
        "expired.py",
    );
}
