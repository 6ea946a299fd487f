//! Pod cgroup removal with processes still inside, on the cgroup2 hierarchy
//! of this host read as a pure-v2 layout (cgroup.kill), and on the v1
//! hierarchies with a frozen process (thaw, then SIGKILL). Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use skiff_node::cgroups::{Cgroups, Layout};

/// A process we started, killed and reaped on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        // Already dead when the test passed; kill/wait errors are fine.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A cgroup directory tree we made, removed (children first) on drop.
struct Tree(PathBuf);

impl Drop for Tree {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::process::Command::new("find")
                .arg(&self.0)
                .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                .status();
        }
    }
}

/// Thaws a v1 freezer cgroup on drop, so a failed test does not leave a
/// frozen process (that [`Child`]'s drop would wait on forever).
struct Thaw(PathBuf);

impl Drop for Thaw {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("freezer.state"), "THAWED");
    }
}

fn sleeper() -> Child {
    Child(
        std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .unwrap(),
    )
}

fn enter(dir: &Path, child: &Child) {
    std::fs::write(dir.join("cgroup.procs"), child.0.id().to_string()).unwrap();
}

fn unified_root() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    match Layout::from_mountinfo(&text)? {
        Layout::V2 { root } => Some(root),
        Layout::V1 { hierarchies } => hierarchies
            .into_iter()
            .find(|h| h.controllers.is_empty())
            .map(|h| h.mount),
    }
}

#[tokio::test]
async fn removing_a_v2_pod_kills_its_processes() {
    let root = unified_root().expect("a cgroup2 mount");
    let parent = format!("skiff-test-rm2-{}", std::process::id());
    let _tree = Tree(root.join(&parent));
    let cg = Cgroups::with_layout(Layout::V2 { root: root.clone() }, &parent).unwrap();
    let uid = "u2";
    let container = root.join(
        cg.container_path(uid, "c1")
            .unwrap()
            .trim_start_matches('/'),
    );
    std::fs::create_dir_all(&container).unwrap();
    let mut child = sleeper();
    enter(&container, &child);
    assert_eq!(cg.list_pods().unwrap(), vec![uid.to_string()]);

    cg.remove_pod(uid, Duration::from_secs(20)).await.unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert!(!container.parent().unwrap().exists());
    assert!(cg.list_pods().unwrap().is_empty());
    // Removing again is fine.
    cg.remove_pod(uid, Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn removing_a_v1_pod_thaws_and_kills_a_frozen_process() {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let layout = Layout::from_mountinfo(&text).unwrap();
    let Layout::V1 { hierarchies } = &layout else {
        eprintln!("not a cgroup v1 host; nothing to test");
        return;
    };
    let parent = format!("skiff-test-rm1-{}", std::process::id());
    let trees: Vec<Tree> = hierarchies
        .iter()
        .map(|h| Tree(h.mount.join(&parent)))
        .collect();
    let cg = Cgroups::with_layout(layout.clone(), &parent).unwrap();
    let uid = "u1";
    let rel = cg.container_path(uid, "c1").unwrap();
    let mut child = sleeper();
    let mut thaw = None;
    for name in ["freezer", "memory", "pids"] {
        let h = hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == name))
            .unwrap();
        let dir = h.mount.join(rel.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        enter(&dir, &child);
        if name == "freezer" {
            thaw = Some(Thaw(dir.clone()));
            std::fs::write(dir.join("freezer.state"), "FROZEN").unwrap();
        }
    }
    cg.remove_pod(uid, Duration::from_secs(20)).await.unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    for t in &trees {
        assert!(!t.0.join(format!("pod{uid}")).exists(), "{}", t.0.display());
    }
    drop(thaw);
}
