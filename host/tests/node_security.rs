//! Who may talk to a node, on real processes with real clients: users and permissions from the
//! config on the Redis port (on the leader and through a follower, whose forwarded writes the
//! leader checks again), and the cluster secret on the Raft port (a peer without it is refused
//! and counted, and the cluster keeps serving). Bad security settings stop a node at start with
//! a message naming the key and the file.

use redraft_tests::cluster::WAIT_DEADLINE;
use redraft_tests::resp::{RawConn, call_show, show};
use redraft_tests::{NodeOptions, TestCluster, tools};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

const REDRAFT: &str = env!("CARGO_BIN_EXE_redraft");
const REFUSAL_DEADLINE: Duration = Duration::from_secs(30);

fn sha256(password: &str) -> String {
    Sha256::digest(password.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The `auth` section every node of the test cluster gets (or `app_keys` for `app`'s keys),
/// and a cluster secret in `secret_file`.
fn security_yaml(app_keys: &str, secret_file: &Path) -> String {
    format!(
        "auth:\n  users:\n    - name: admin\n      password_sha256: [{}]\n      commands: [allcommands]\n      keys: ['*']\n    \
         - name: reader\n      password_sha256: [{}]\n      commands: ['+@read', '+@connection']\n      keys: ['*']\n    \
         - name: app\n      password_sha256: [{}, {}]\n      commands: ['+@all', '-@admin', '-@dangerous']\n      \
         keys: [{app_keys}]\ncluster_secret_file: {}\n",
        sha256("admin-pw"),
        sha256("reader-pw"),
        sha256("app-pw"),
        sha256("app-pw-next"),
        secret_file.display()
    )
}

fn write_secret(dir: &Path, name: &str, secret: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, secret).expect("write the secret file");
    path
}

/// One request on a raw connection, as the client sees it.
fn request(raw: &mut RawConn, args: &[&str]) -> String {
    let mut bytes = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        bytes.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    raw.request_text(&bytes)
}

/// A raw connection to node `id`, authenticated as `user`.
fn login(cluster: &TestCluster, id: u64, user: &str, password: &str) -> RawConn {
    let mut raw = cluster.raw(id);
    assert_eq!(request(&mut raw, &["AUTH", user, password]), "+OK\r\n", "AUTH {user} on node {id}");
    raw
}

fn three_secured() -> (TestCluster, u64, u64) {
    let cluster = TestCluster::new(REDRAFT).with_credentials("admin", "admin-pw");
    // Nodes read the secret at every start: it lives as long as the cluster's directory.
    let secret = write_secret(cluster.dir(), "cluster.secret", "0123456789abcdef0123456789abcdef-test-secret\n");
    let options = NodeOptions { extra_yaml: security_yaml("'app:*'", &secret), ..NodeOptions::default() };
    let cluster = cluster.formed(3, options);
    let leader = cluster.leader(WAIT_DEADLINE);
    let follower = cluster.running_members().into_iter().find(|&id| id != leader).expect("a follower");
    (cluster, leader, follower)
}

#[test]
fn t70_users_run_only_what_their_rules_allow_on_the_leader_and_through_a_follower() {
    let (cluster, leader, follower) = three_secured();

    // Before AUTH: data and admin commands alike get NOAUTH; AUTH with a wrong password fails.
    let mut anonymous = cluster.raw(follower);
    for args in [&["GET", "k"][..], &["SET", "k", "v"], &["JOIN", "9", "127.0.0.1:1"], &["PING"], &["ACL", "WHOAMI"]] {
        assert_eq!(request(&mut anonymous, args), "-NOAUTH Authentication required.\r\n", "{args:?}");
    }
    assert!(request(&mut anonymous, &["HELLO", "3"]).starts_with("-NOAUTH HELLO must be called"));
    assert_eq!(
        request(&mut anonymous, &["AUTH", "app", "wrong"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        request(&mut anonymous, &["AUTH", "not-a-password"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        "the default user is disabled once users are listed"
    );
    let stats = show(&cluster.call(follower, &["INFO", "stats"]));
    assert!(stats.contains("acl_access_denied_auth:2"), "{stats}");

    // A read-only user reads and writes nothing, on the leader and through a follower.
    assert_eq!(call_show(&mut cluster.client(leader), &["SET", "shared", "before"]), "+OK");
    for id in [leader, follower] {
        let mut reader = login(&cluster, id, "reader", "reader-pw");
        assert_eq!(request(&mut reader, &["GET", "shared"]), "$6\r\nbefore\r\n", "node {id}");
        assert_eq!(
            request(&mut reader, &["SET", "shared", "changed"]),
            "-NOPERM this user has no permissions to run the 'set' command\r\n",
            "node {id}"
        );
        assert_eq!(
            request(&mut reader, &["MULTI"]),
            "-NOPERM this user has no permissions to run the 'multi' command\r\n"
        );
        assert_eq!(
            request(&mut reader, &["ACL", "WHOAMI"]),
            "-NOPERM this user has no permissions to run the 'acl|whoami' command\r\n"
        );
    }
    for id in cluster.ids() {
        cluster.wait_for(&format!("node {id} to hold the admin's write"), WAIT_DEADLINE, || {
            match show(&cluster.call(id, &["GET", "shared"])).as_str() {
                "$before" => Ok(()),
                other => Err(other.to_owned()),
            }
        });
    }

    // A data user writes its own keys (either of its passwords works: rotation), and gets NOPERM
    // for other keys, the cluster commands and the dangerous ones.
    for (id, password) in [(leader, "app-pw"), (follower, "app-pw-next")] {
        let mut app = login(&cluster, id, "app", password);
        assert_eq!(request(&mut app, &["ACL", "WHOAMI"]), "$3\r\napp\r\n");
        assert_eq!(request(&mut app, &["SET", &format!("app:{id}"), "v"]), "+OK\r\n", "node {id}");
        assert_eq!(
            request(&mut app, &["SET", "other", "v"]),
            "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"
        );
        assert_eq!(
            request(&mut app, &["JOIN", "9", "127.0.0.1:1"]),
            "-NOPERM this user has no permissions to run the 'join' command\r\n"
        );
        assert_eq!(
            request(&mut app, &["KEYS", "*"]),
            "-NOPERM this user has no permissions to run the 'keys' command\r\n"
        );
        assert_eq!(
            request(&mut app, &["MODULE", "RELOAD"]),
            "-NOPERM this user has no permissions to run the 'module|reload' command\r\n"
        );
        // A transaction with a refused command is discarded whole, as in Redis.
        assert_eq!(request(&mut app, &["MULTI"]), "+OK\r\n");
        assert_eq!(request(&mut app, &["SET", "app:tx", "1"]), "+QUEUED\r\n");
        assert!(request(&mut app, &["SET", "other", "1"]).starts_with("-NOPERM"));
        assert_eq!(request(&mut app, &["EXEC"]), "-EXECABORT Transaction discarded because of previous errors.\r\n");
        assert_eq!(request(&mut app, &["MULTI"]), "+OK\r\n");
        assert_eq!(request(&mut app, &["INCR", "app:counter"]), "+QUEUED\r\n");
        assert!(request(&mut app, &["EXEC"]).starts_with("*1\r\n:"), "node {id}");
    }
    for id in cluster.ids() {
        cluster.wait_for(&format!("node {id} to hold app's writes only"), WAIT_DEADLINE, || {
            let values = [
                show(&cluster.call(id, &["GET", &format!("app:{leader}")])),
                show(&cluster.call(id, &["GET", &format!("app:{follower}")])),
                show(&cluster.call(id, &["EXISTS", "other", "app:tx"])),
                show(&cluster.call(id, &["GET", "app:counter"])),
            ];
            if values == ["$v", "$v", ":0", "$2"] { Ok(()) } else { Err(format!("{values:?}")) }
        });
    }

    // redis-cli authenticates with --user/--pass; ACL LIST shows digests, never passwords.
    let port = cluster.node(follower).redis_addr.port().to_string();
    let cli = |user: &str, password: &str, args: &[&str]| {
        let mut all = vec!["-p", &port, "--no-auth-warning", "--user", user, "--pass", password];
        all.extend_from_slice(args);
        let out = tools::redis_cli(&all, None);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(cli("app", "app-pw", &["SET", "app:cli", "from redis-cli"]), "OK");
    assert_eq!(cli("app", "app-pw", &["GET", "app:cli"]), "from redis-cli");
    assert!(cli("reader", "reader-pw", &["DEL", "app:cli"]).contains("NOPERM"));
    let acl_list = cli("admin", "admin-pw", &["ACL", "LIST"]);
    assert!(
        acl_list.contains(&format!("user app on #{} #{} ~app:*", sha256("app-pw"), sha256("app-pw-next"))),
        "{acl_list}"
    );
    assert!(acl_list.contains("user default off"), "{acl_list}");
    assert!(!acl_list.contains("app-pw"), "{acl_list}");
}

#[test]
fn t71_the_leader_checks_forwarded_writes_under_the_clients_user() {
    let (cluster, _, follower) = three_secured();
    // The follower's config gives app every key; the leader's does not. (Users must be the same
    // on every node: this shows the leader does not trust a follower's check.)
    cluster.stop(follower);
    let config_path = cluster.node(follower).config_path.clone();
    let text = std::fs::read_to_string(&config_path).unwrap_or_else(|e| panic!("{}: {e}", config_path.display()));
    let mut config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("the follower's config");
    let users = config["auth"]["users"].as_sequence_mut().expect("auth.users");
    let app = users.iter_mut().find(|u| u["name"].as_str() == Some("app")).expect("user app");
    app["keys"] = serde_yaml_ng::from_str("['*']").expect("YAML");
    std::fs::write(&config_path, serde_yaml_ng::to_string(&config).expect("YAML")).expect("rewrite the config");
    cluster.restart(follower);
    let leader = cluster.leader(WAIT_DEADLINE);
    assert_ne!(leader, follower, "a restarted node does not lead at once");
    let mut app = login(&cluster, follower, "app", "app-pw");
    assert_eq!(
        request(&mut app, &["SET", "elsewhere", "v"]),
        "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n",
        "the leader refuses what the follower let through"
    );
    assert_eq!(request(&mut app, &["SET", "app:fine", "v"]), "+OK\r\n");
    assert_eq!(show(&cluster.call(leader, &["EXISTS", "elsewhere"])), ":0");
}

#[test]
fn t72_a_peer_without_the_cluster_secret_is_refused_and_the_cluster_keeps_serving() {
    let (cluster, leader, _) = three_secured();
    let raft_addr = cluster.node(leader).raft_addr;
    let refused_before = cluster.info_number(leader, "raft_peers_refused").expect("INFO raft");

    // Someone who reaches the Raft port and speaks the frame format, but holds no secret.
    let mut forged = TcpStream::connect(raft_addr).expect("connect to the raft port");
    forged.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut frame = b"RDFT".to_vec();
    frame.extend_from_slice(&100u32.to_be_bytes());
    frame.extend_from_slice(&[7u8; 100]);
    forged.write_all(&frame).expect("send");
    let mut buf = [0u8; 64];
    let read = std::io::Read::read(&mut forged, &mut buf);
    assert!(matches!(read, Ok(0) | Err(_)), "the node answered a peer without the secret: {read:?}");
    cluster.wait_for("the refusal to be counted", WAIT_DEADLINE, || {
        match cluster.info_number(leader, "raft_peers_refused") {
            Ok(n) if n > refused_before => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });

    // A node with another secret cannot join: JOIN's probe fails, nothing changes.
    let wrong = write_secret(cluster.dir(), "other.secret", "a-different-secret-of-at-least-32-bytes!!");
    let mut cluster = cluster;
    cluster.start(4, NodeOptions { extra_yaml: security_yaml("'app:*'", &wrong), ..NodeOptions::default() });
    let joined = cluster.try_join(4, leader).expect("JOIN answers");
    let text = show(&joined);
    assert!(text.starts_with('-') && text.contains("secret"), "JOIN of a node without the secret: {text}");
    assert_eq!(cluster.members(leader).expect("NODES").len(), 3);

    // The cluster still commits writes.
    assert_eq!(call_show(&mut cluster.client(leader), &["SET", "still", "serving"]), "+OK");
}

#[test]
fn t73_bad_security_settings_stop_the_node_at_start_naming_the_key_and_file() {
    let cluster = TestCluster::new(REDRAFT);
    let short = write_secret(cluster.dir(), "short.secret", "too-short\n");
    let base = cluster.fresh_config(1, &NodeOptions { bootstrap: true, ..NodeOptions::default() });
    let cases = [
        (
            format!(
                "auth:\n  users:\n    - name: ops\n      password_sha256: [{}]\n      commands: ['+@nosuch']\n",
                sha256("x")
            ),
            vec!["auth.users", "user 'ops'", "unknown category '@nosuch'"],
        ),
        ("auth:\n  requirepass_sha256: not-a-digest\n".to_owned(), vec!["auth.requirepass_sha256", "64 hex digits"]),
        (
            format!("cluster_secret_file: {}\n", cluster.dir().join("missing").display()),
            vec!["cluster_secret_file", "missing"],
        ),
        (format!("cluster_secret_file: {}\n", short.display()), vec!["cluster_secret_file", "at least 32"]),
    ];
    for (extra, expected) in cases {
        let report = cluster.run_expect_exit(&format!("{base}{extra}"), REFUSAL_DEADLINE);
        assert!(!report.status.success(), "{extra}: the node started");
        let config_path = report.config_path.display().to_string();
        for needle in expected.iter().map(|s| s.to_string()).chain([config_path]) {
            assert!(report.output.contains(&needle), "{extra}: no {needle:?} in:\n{}", report.output);
        }
    }
}

#[test]
fn t74_requirepass_gates_the_default_user_and_hello_auth_works() {
    let mut cluster = TestCluster::new(REDRAFT).with_credentials("default", "s3cret");
    let extra = format!("auth:\n  requirepass_sha256: {}\n", sha256("s3cret"));
    cluster.start(1, NodeOptions { bootstrap: true, extra_yaml: extra, ..NodeOptions::default() });
    assert_eq!(cluster.leader(WAIT_DEADLINE), 1);
    let mut raw = cluster.raw(1);
    assert_eq!(request(&mut raw, &["SET", "k", "v"]), "-NOAUTH Authentication required.\r\n");
    assert_eq!(request(&mut raw, &["AUTH", "s3cret"]), "+OK\r\n");
    assert_eq!(request(&mut raw, &["SET", "k", "v"]), "+OK\r\n");
    // The harness's RESP3 client authenticates with HELLO 3 AUTH default s3cret.
    let mut resp3 = cluster.client_resp3(1);
    assert_eq!(call_show(&mut resp3, &["GET", "k"]), "$v");
    let port = cluster.node(1).redis_addr.port().to_string();
    let out = tools::redis_cli(&["-p", &port, "-a", "s3cret", "--no-auth-warning", "GET", "k"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v");
}

/// `auth:` with `admin` and the given extra users (YAML list items, already indented).
fn users_yaml(extra: &str) -> String {
    format!(
        "users:\n  - name: admin\n    password_sha256: [{}]\n    commands: [allcommands]\n    keys: ['*']\n{extra}",
        sha256("admin-pw")
    )
}

fn user_yaml(name: &str, password: &str, keys: &str) -> String {
    format!(
        "  - name: {name}\n    password_sha256: [{}]\n    commands: ['+@all']\n    keys: [{keys}]\n",
        sha256(password)
    )
}

#[test]
fn t79_sighup_reloads_the_users_and_open_connections_follow() {
    let mut cluster = TestCluster::new(REDRAFT).with_credentials("admin", "admin-pw");
    let auth = format!("auth:\n{}", indent(&users_yaml(&user_yaml("app", "app-pw", "'app:*'"))));
    cluster.start(1, NodeOptions { bootstrap: true, extra_yaml: auth, ..NodeOptions::default() });
    assert_eq!(cluster.leader(WAIT_DEADLINE), 1);
    let mut app = login(&cluster, 1, "app", "app-pw");
    assert_eq!(request(&mut app, &["SET", "app:1", "x"]), "+OK\r\n");
    assert!(request(&mut app, &["SET", "other", "x"]).starts_with("-NOPERM"));

    // app may now use every key, and ops exists.
    let widened = users_yaml(&(user_yaml("app", "app-pw", "'*'") + &user_yaml("ops", "ops-pw", "'*'")));
    cluster.set_config_yaml(1, "auth", &widened);
    cluster.sighup(1);
    cluster.wait_for("ops to be able to log in", WAIT_DEADLINE, || {
        match request(&mut cluster.raw(1), &["AUTH", "ops", "ops-pw"]).as_str() {
            "+OK\r\n" => Ok(()),
            other => Err(other.to_owned()),
        }
    });
    assert_eq!(request(&mut app, &["SET", "other", "x"]), "+OK\r\n", "the open connection took app's new rules");

    // app is gone: a new login fails, and the open connection is logged out.
    cluster.set_config_yaml(1, "auth", &users_yaml(&user_yaml("ops", "ops-pw", "'*'")));
    cluster.sighup(1);
    cluster.wait_for("app to be refused", WAIT_DEADLINE, || {
        match request(&mut cluster.raw(1), &["AUTH", "app", "app-pw"]).as_str() {
            text if text.starts_with("-WRONGPASS") => Ok(()),
            other => Err(other.to_owned()),
        }
    });
    assert_eq!(request(&mut app, &["GET", "app:1"]), "-NOAUTH Authentication required.\r\n");

    // A config that does not load changes nothing, and says so in the log.
    cluster.set_config_yaml(1, "auth", "{requirepass_sha256: not-a-digest}");
    cluster.sighup(1);
    cluster.wait_for("the refused reload in the log", WAIT_DEADLINE, || {
        let log = cluster.node(1).log();
        if log.contains("not reloaded") && log.contains("requirepass_sha256") { Ok(()) } else { Err("not yet") }
    });
    let mut ops = login(&cluster, 1, "ops", "ops-pw");
    assert_eq!(request(&mut ops, &["GET", "app:1"]), "$1\r\nx\r\n");
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
