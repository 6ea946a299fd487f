//! The host route that sends the Service CIDR into the pod bridge.
//!
//! Host traffic to a cluster IP is DNATed in nat output, after the kernel
//! picked a route for the cluster IP. Without a route of its own the Service
//! CIDR follows the default route, so whenever the table is missing (before
//! the first sync, after a failed `nft`) a connection to a cluster IP would
//! leave the machine towards the default gateway. Routed into the bridge
//! instead, such packets stay on the node, and connections that are DNATed
//! get the gateway address as source, which pods can always answer.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::process::Command;

use super::NetError;

const IP_TIMEOUT: Duration = Duration::from_secs(10);

async fn ip(args: &[&str]) -> Result<(), NetError> {
    let child = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(NetError::IpSpawn)?;
    let out = tokio::time::timeout(IP_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| NetError::IpTimeout)?
        .map_err(NetError::IpSpawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Ip {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn bridge_exists(bridge: &str) -> bool {
    !bridge.is_empty() && !bridge.contains('/') && Path::new("/sys/class/net").join(bridge).exists()
}

/// Route `cidr` into `bridge` (idempotent). `Ok(false)` when the bridge
/// does not exist yet: the CNI plugin creates it with the first pod, and the
/// next sync pass tries again.
pub async fn ensure(bridge: &str, cidr: Ipv4Net) -> Result<bool, NetError> {
    if !bridge_exists(bridge) {
        return Ok(false);
    }
    ip(&["route", "replace", &cidr.to_string(), "dev", bridge]).await?;
    Ok(true)
}

/// Remove the route; a route (or bridge) that is already gone is fine.
pub async fn remove(bridge: &str, cidr: Ipv4Net) -> Result<(), NetError> {
    if !bridge_exists(bridge) {
        return Ok(());
    }
    match ip(&["route", "del", &cidr.to_string(), "dev", bridge]).await {
        Err(NetError::Ip { stderr, .. }) if stderr.contains("No such process") => Ok(()),
        other => other,
    }
}
