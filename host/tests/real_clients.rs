//! The client libraries applications use, against three real nodes: redis-py, node-redis and
//! ioredis, each running a short application-like script (a cache with a time to live, a
//! transaction, optimistic locking with `WATCH`, iterating keys with `SCAN`) on the leader and on
//! a follower. The scripts live in `tests/clients/`; `make client-deps` installs the libraries
//! (pinned in `requirements.txt` and `package-lock.json`) next to them.

use redraft_tests::cluster::WAIT_DEADLINE;
use redraft_tests::{NodeOptions, TestCluster};
use std::path::{Path, PathBuf};
use std::process::Command;

const REDRAFT: &str = env!("CARGO_BIN_EXE_redraft");

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients")
}

/// Runs a client script against `port`; panics with its output unless it printed `OK`.
fn run_script(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {what} ({e}): run `make client-deps`"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim_end().ends_with("OK"),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

fn python() -> PathBuf {
    let venv = clients_dir().join(".venv/bin/python");
    assert!(venv.exists(), "{} is missing: run `make client-deps`", venv.display());
    venv
}

fn node_modules_ready() {
    let modules = clients_dir().join("node_modules");
    assert!(
        modules.join("redis").exists() && modules.join("ioredis").exists(),
        "{} lacks redis or ioredis: run `make client-deps`",
        modules.display()
    );
}

#[test]
fn t60_redis_py_node_redis_and_ioredis_run_an_application_on_leader_and_follower() {
    let python = python();
    node_modules_ready();
    let cluster = TestCluster::form(REDRAFT, 3, NodeOptions::default());
    let leader = cluster.leader(WAIT_DEADLINE);
    let follower = cluster.running_members().into_iter().find(|&id| id != leader).expect("a follower");
    for (id, role) in [(leader, "leader"), (follower, "follower")] {
        let port = cluster.node(id).redis_addr.port().to_string();
        let mut py = Command::new(&python);
        py.arg(clients_dir().join("app.py")).args([&port, &format!("py-{role}")]);
        run_script(py, &format!("redis-py against the {role}"));
        let mut node = Command::new("node");
        node.current_dir(clients_dir()).args(["app.mjs", &port, &format!("js-{role}")]);
        run_script(node, &format!("node-redis and ioredis against the {role}"));
    }
    cluster.wait_converged();
}
