//! A network of our own for partition faults: one network namespace per node, each joined by a
//! veth pair to a bridge in a hub namespace, where the test's clients run. Partitions are
//! nftables rules inside the nodes' namespaces that drop packets between two nodes' addresses, so
//! peers lose each other while the clients (on the hub's address) still reach every node.
//!
//! ```text
//!   hub namespace: br0 10.77.0.254 (the test process and its clients)
//!     ├─ v1 ══ eth0 10.77.0.1  node 1's namespace (table inet redraft_faults)
//!     ├─ v2 ══ eth0 10.77.0.2  node 2's namespace
//!     └─ v3 ══ eth0 10.77.0.3  node 3's namespace
//! ```
//!
//! Only these namespaces are ever targets of traffic. The process that creates the lab owns it:
//! dropping the [`NetLab`] deletes every namespace (and with them the veths and rules), and a new
//! lab first deletes what a killed test process left behind. The test itself runs in the hub
//! (re-executed there with `ip netns exec`), attached to the lab without owning it
//! ([`NetLab::attach`]), so the owner deletes it even when the test panics or aborts.
//!
//! Needs root, `ip` (iproute2) and `nft` (Debian's `nftables`, installed by `make test-deps`).

use std::net::Ipv4Addr;
use std::process::Command;

/// The name prefix of every namespace a lab creates (then the owner's pid).
pub const NAMESPACE_PREFIX: &str = "redraft-lab-";
/// The environment variable that tells a re-executed test which lab it runs in.
pub const LAB_ENV: &str = "REDRAFT_NETLAB";
/// The nftables table that holds a node namespace's partition rules.
const TABLE: &str = "redraft_faults";
/// The hub's address on the bridge: where the clients' connections come from.
pub const HUB_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 254);

/// Node namespaces around a bridge; see the module docs.
#[derive(Debug)]
pub struct NetLab {
    name: String,
    nodes: Vec<u64>,
    owned: bool,
}

impl NetLab {
    /// Creates a lab with one namespace per node id (ids 1..=253). Fails with what to do when the
    /// machine cannot (not root, no `ip` or `nft`); deletes whatever it made if a step fails.
    pub fn create(nodes: &[u64]) -> Result<NetLab, String> {
        if nodes.iter().any(|&id| id == 0 || id > 253) {
            return Err(format!("node ids must be 1..=253 (they are the last byte of an address): {nodes:?}"));
        }
        for tool in ["ip", "nft"] {
            if Command::new(tool).arg("-V").output().is_err() {
                return Err(format!(
                    "`{tool}` is not installed; partitions need iproute2 and nftables (`make test-deps` installs them)"
                ));
            }
        }
        delete_stale_namespaces();
        let lab =
            NetLab { name: format!("{NAMESPACE_PREFIX}{}", std::process::id()), nodes: nodes.to_vec(), owned: true };
        lab.build().map_err(|e| format!("cannot build the network namespaces (root is needed): {e}"))?;
        Ok(lab)
    }

    /// The lab an owner made, for the test that runs inside its hub: it is not deleted when this
    /// value drops.
    pub fn attach(name: &str, nodes: &[u64]) -> NetLab {
        NetLab { name: name.to_owned(), nodes: nodes.to_vec(), owned: false }
    }

    /// The lab's name ([`LAB_ENV`] carries it to the re-executed test).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The hub namespace, where the clients run.
    pub fn hub(&self) -> String {
        format!("{}-hub", self.name)
    }

    /// Node `id`'s namespace.
    pub fn namespace(&self, id: u64) -> String {
        format!("{}-n{id}", self.name)
    }

    /// Node `id`'s address (its only one besides loopback).
    pub fn ip(id: u64) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, u8::try_from(id).expect("node ids are at most 253"))
    }

    /// The node ids the lab has namespaces for.
    pub fn nodes(&self) -> &[u64] {
        &self.nodes
    }

    fn build(&self) -> Result<(), String> {
        let hub = self.hub();
        let result = (|| {
            ip(&["netns", "add", &hub])?;
            ip(&["-n", &hub, "link", "set", "lo", "up"])?;
            ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
            ip(&["-n", &hub, "addr", "add", &format!("{HUB_IP}/24"), "dev", "br0"])?;
            ip(&["-n", &hub, "link", "set", "br0", "up"])?;
            for &id in &self.nodes {
                let ns = self.namespace(id);
                let port = format!("v{id}");
                ip(&["netns", "add", &ns])?;
                ip(&["-n", &ns, "link", "set", "lo", "up"])?;
                ip(&["link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port, "netns", &hub])?;
                ip(&["-n", &ns, "addr", "add", &format!("{}/24", Self::ip(id)), "dev", "eth0"])?;
                ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
                ip(&["-n", &hub, "link", "set", &port, "master", "br0"])?;
                ip(&["-n", &hub, "link", "set", &port, "up"])?;
                nft(
                    &ns,
                    &format!(
                        "add table inet {TABLE}\n\
                         add chain inet {TABLE} input {{ type filter hook input priority 0; policy accept; }}\n\
                         add chain inet {TABLE} output {{ type filter hook output priority 0; policy accept; }}\n"
                    ),
                )?;
            }
            Ok(())
        })();
        if result.is_err() {
            self.delete();
        }
        result
    }

    /// Drops every packet between nodes `a` and `b`, both ways (both keep reaching the others and
    /// the clients reach both).
    pub fn cut(&self, a: u64, b: u64) -> Result<(), String> {
        for (here, there) in [(a, b), (b, a)] {
            let peer = Self::ip(there);
            nft(
                &self.namespace(here),
                &format!(
                    "add rule inet {TABLE} input ip saddr {peer} drop\nadd rule inet {TABLE} output ip daddr {peer} drop\n"
                ),
            )?;
        }
        Ok(())
    }

    /// Cuts node `id` from every other node; clients still reach it.
    pub fn isolate(&self, id: u64) -> Result<(), String> {
        for &other in self.nodes.iter().filter(|&&other| other != id) {
            self.cut(id, other)?;
        }
        Ok(())
    }

    /// Removes every partition rule.
    pub fn heal(&self) -> Result<(), String> {
        for &id in &self.nodes {
            nft(&self.namespace(id), &format!("flush chain inet {TABLE} input\nflush chain inet {TABLE} output\n"))?;
        }
        Ok(())
    }

    /// Kills every process still running in the lab's namespaces (a test that was itself killed
    /// leaves its nodes behind), then deletes the namespaces (the veths and rules go with them).
    /// Errors are ignored, so it also cleans up after a half-built lab.
    fn delete(&self) {
        let namespaces: Vec<String> = self.nodes.iter().map(|&id| self.namespace(id)).chain([self.hub()]).collect();
        for ns in &namespaces {
            kill_processes_in(ns);
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        if self.owned {
            self.delete();
        }
    }
}

/// Deletes the namespaces of labs whose owner no longer runs (a test process killed outright).
fn delete_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(NAMESPACE_PREFIX) else { continue };
        let owner = rest.split('-').next().unwrap_or_default();
        if owner.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{owner}")).exists() {
            kill_processes_in(name);
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// SIGKILLs the processes `ip netns pids` lists for namespace `ns`.
fn kill_processes_in(ns: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else { return };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace().filter(|p| p.parse::<u32>().is_ok()) {
        let _ = Command::new("kill").args(["-KILL", pid]).output();
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    run(Command::new("ip").args(args), &format!("ip {}", args.join(" ")))
}

/// Runs an nft script inside namespace `ns`.
fn nft(ns: &str, script: &str) -> Result<(), String> {
    use std::io::Write;
    let what = format!("ip netns exec {ns} nft -f - <<< {script:?}");
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(|e| format!("{what}: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what}: {} {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let out = command.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what}: {} {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}
