//! TLS on real nodes with real clients and certificates the test generates (rcgen): the client
//! port with mutual TLS (`redis-cli --tls`, redis-py `ssl=True`), a follower forwarding writes to
//! the leader over TLS, mutual TLS between peers (a peer without a certificate from the
//! cluster's CA is refused and counted while the cluster serves), certificates of both ports
//! swapped for another CA's on SIGHUP, and damaged certificate files stopping a node at start with
//! the key and the file named.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use redraft_tests::cluster::WAIT_DEADLINE;
use redraft_tests::{NodeOptions, TestCluster, tools};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const REDRAFT: &str = env!("CARGO_BIN_EXE_redraft");
const REFUSAL_DEADLINE: Duration = Duration::from_secs(30);

/// PEM files of one test PKI: a CA, a certificate for the nodes (127.0.0.1 and localhost) and
/// one for a client.
struct Pki {
    ca: PathBuf,
    node_cert: PathBuf,
    node_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

fn pki(dir: &Path, prefix: &str) -> Pki {
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, format!("{prefix} test CA"));
    let ca_cert = ca_params.self_signed(&ca_key).expect("a CA certificate");
    let issuer = Issuer::new(ca_params, &ca_key);
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().expect("a key");
        let cert = CertificateParams::new(names).expect("params").signed_by(&key, &issuer).expect("a certificate");
        (cert.pem(), key.serialize_pem())
    };
    let (node_cert, node_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()]);
    let (client_cert, client_key) = leaf(vec!["client".into()]);
    Pki {
        ca: write(dir, &format!("{prefix}-ca.pem"), &ca_cert.pem()),
        node_cert: write(dir, &format!("{prefix}-node.pem"), &node_cert),
        node_key: write(dir, &format!("{prefix}-node.key"), &node_key),
        client_cert: write(dir, &format!("{prefix}-client.pem"), &client_cert),
        client_key: write(dir, &format!("{prefix}-client.key"), &client_key),
    }
}

fn tls_yaml(pki: &Pki) -> String {
    format!(
        "tls:\n  cert_file: {node}\n  key_file: {key}\n  ca_file: {ca}\n  client_ca_file: {ca}\n\
         peer_tls:\n  cert_file: {node}\n  key_file: {key}\n  ca_file: {ca}\n",
        node = pki.node_cert.display(),
        key = pki.node_key.display(),
        ca = pki.ca.display()
    )
}

/// `redis-cli --tls` with the client certificate against node `id`: its output, trimmed.
fn cli(cluster: &TestCluster, pki: &Pki, id: u64, args: &[&str]) -> String {
    let port = cluster.node(id).redis_addr.port().to_string();
    let (ca, cert, key) =
        (pki.ca.display().to_string(), pki.client_cert.display().to_string(), pki.client_key.display().to_string());
    let mut all = vec!["-h", "127.0.0.1", "-p", &port, "--tls", "--cacert", &ca, "--cert", &cert, "--key", &key];
    all.extend_from_slice(args);
    let out = tools::redis_cli(&all, None);
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)).trim().to_owned()
}

fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/.venv/bin/python");
    assert!(venv.exists(), "{} is missing: run `make client-deps`", venv.display());
    venv
}

#[test]
fn t75_clients_and_peers_speak_mutual_tls_and_strangers_are_refused() {
    let mut cluster = TestCluster::new(REDRAFT);
    let pki = pki(cluster.dir(), "cluster");
    let options = NodeOptions { extra_yaml: tls_yaml(&pki), client_tls: true, ..NodeOptions::default() };
    cluster.start(1, NodeOptions { bootstrap: true, ..options.clone() });
    cluster.start(2, options.clone());
    cluster.start(3, options);
    cluster.wait_for("node 1 to lead over TLS", WAIT_DEADLINE, || match cli(&cluster, &pki, 1, &["LEADER"]).as_str() {
        text if text.starts_with("1\n") => Ok(()),
        other => Err(other.to_owned()),
    });
    // Peers join over mutual TLS (the JOIN probe and replication both need it).
    for id in [2u64, 3] {
        let node = cluster.node(id);
        let (raft, redis) = (node.raft_addr.to_string(), node.redis_addr.to_string());
        assert_eq!(cli(&cluster, &pki, 1, &["JOIN", &id.to_string(), &raft, &redis]), "OK", "JOIN {id}");
    }

    // A write through a follower travels to the leader over TLS, with the follower's certificate.
    assert_eq!(cli(&cluster, &pki, 3, &["SET", "greeting", "over tls"]), "OK");
    for id in [1u64, 2, 3] {
        cluster.wait_for(&format!("node {id} to hold the write"), WAIT_DEADLINE, || {
            match cli(&cluster, &pki, id, &["GET", "greeting"]).as_str() {
                "over tls" => Ok(()),
                other => Err(other.to_owned()),
            }
        });
    }

    // redis-py with ssl=True and the client certificate.
    let script = format!(
        "import redis, sys\n\
         r = redis.Redis(host='127.0.0.1', port={port}, ssl=True, ssl_ca_certs='{ca}', ssl_certfile='{cert}', ssl_keyfile='{key}')\n\
         r.set('py', 'tls')\n\
         assert r.get('py') == b'tls', r.get('py')\n\
         print('OK')\n",
        port = cluster.node(2).redis_addr.port(),
        ca = pki.ca.display(),
        cert = pki.client_cert.display(),
        key = pki.client_key.display()
    );
    let out = Command::new(python()).args(["-c", &script]).output().expect("run redis-py");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "OK",
        "redis-py over TLS: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Without a client certificate, or without TLS at all, a client gets nowhere.
    let port = cluster.node(1).redis_addr.port().to_string();
    let ca = pki.ca.display().to_string();
    let no_cert =
        tools::redis_cli(&["-h", "127.0.0.1", "-p", &port, "--tls", "--cacert", &ca, "GET", "greeting"], None);
    assert!(!String::from_utf8_lossy(&no_cert.stdout).contains("over tls"), "{no_cert:?}");
    let plain = tools::redis_cli(&["-h", "127.0.0.1", "-p", &port, "GET", "greeting"], None);
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("over tls"), "{plain:?}");

    // A peer without a certificate from the cluster's CA is refused before any RPC is read.
    let refused = |cluster: &TestCluster| {
        cli(cluster, &pki, 1, &["INFO", "raft"])
            .lines()
            .find_map(|l| l.trim().strip_prefix("raft_peers_refused:").map(|n| n.parse::<u64>().unwrap_or(0)))
            .unwrap_or(0)
    };
    let before = refused(&cluster);
    let mut stranger = TcpStream::connect(cluster.node(1).raft_addr).expect("connect to the raft port");
    stranger.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut frame = b"RDFT".to_vec();
    frame.extend_from_slice(&10u32.to_be_bytes());
    frame.extend_from_slice(&[0u8; 10]);
    stranger.write_all(&frame).expect("send");
    let mut buf = [0u8; 64];
    let answer = stranger.read(&mut buf);
    assert!(!matches!(answer, Ok(n) if n > 0 && buf.starts_with(b"RDFT")), "a stranger got an RPC answer: {answer:?}");
    cluster.wait_for("the refusal to be counted", WAIT_DEADLINE, || {
        let now = refused(&cluster);
        if now > before { Ok(()) } else { Err(now) }
    });

    // A node whose certificate another CA signed cannot join.
    let other = pki_other(&cluster);
    cluster.start(4, NodeOptions { extra_yaml: tls_yaml(&other), client_tls: true, ..NodeOptions::default() });
    let node4 = cluster.node(4);
    let joined = cli(&cluster, &pki, 1, &["JOIN", "4", &node4.raft_addr.to_string(), &node4.redis_addr.to_string()]);
    assert!(joined.starts_with("ERR") && joined.contains("TLS"), "JOIN of a node from another CA: {joined}");
    assert_eq!(cli(&cluster, &pki, 1, &["SET", "still", "serving"]), "OK");
}

fn pki_other(cluster: &TestCluster) -> Pki {
    pki(cluster.dir(), "other")
}

#[test]
fn t76_damaged_certificates_stop_the_node_at_start_naming_the_key_and_file() {
    let cluster = TestCluster::new(REDRAFT);
    let pki = pki(cluster.dir(), "bad");
    let garbage =
        write(cluster.dir(), "garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n");
    let empty = write(cluster.dir(), "empty.pem", "");
    let base = cluster.fresh_config(1, &NodeOptions { bootstrap: true, ..NodeOptions::default() });
    let good = tls_yaml(&pki);
    let cases = [
        (
            good.replacen(&pki.node_cert.display().to_string(), &garbage.display().to_string(), 1),
            "tls.cert_file",
            garbage.clone(),
        ),
        (
            good.replacen(&pki.node_key.display().to_string(), &empty.display().to_string(), 1),
            "tls.key_file",
            empty.clone(),
        ),
        (
            good.replace(&format!("  ca_file: {}\n", pki.ca.display()), &format!("  ca_file: {}\n", empty.display())),
            "tls.ca_file",
            empty.clone(),
        ),
        (
            good.replacen(&pki.node_key.display().to_string(), &pki.client_key.display().to_string(), 1),
            "tls.key_file",
            pki.client_key.clone(),
        ),
    ];
    for (extra, key, file) in cases {
        let report = cluster.run_expect_exit(&format!("{base}{extra}"), REFUSAL_DEADLINE);
        assert!(!report.status.success(), "{extra}: the node started");
        let config_path = report.config_path.display().to_string();
        for needle in [key.to_owned(), file.display().to_string(), config_path] {
            assert!(report.output.contains(&needle), "{extra}: no {needle:?} in:\n{}", report.output);
        }
    }
}

#[test]
fn t78_sighup_swaps_the_certificates_of_both_ports_without_a_restart() {
    let mut cluster = TestCluster::new(REDRAFT);
    let (old, new) = (pki(cluster.dir(), "old"), pki(cluster.dir(), "new"));
    // Nodes 1 and 2 read their certificates from these paths; the test swaps what is in them.
    let live = Pki {
        ca: cluster.dir().join("live-ca.pem"),
        node_cert: cluster.dir().join("live-node.pem"),
        node_key: cluster.dir().join("live-node.key"),
        client_cert: old.client_cert.clone(),
        client_key: old.client_key.clone(),
    };
    let install = |from: &Pki| {
        for (source, target) in
            [(&from.ca, &live.ca), (&from.node_cert, &live.node_cert), (&from.node_key, &live.node_key)]
        {
            std::fs::copy(source, target).unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
        }
    };
    install(&old);
    let options = NodeOptions { extra_yaml: tls_yaml(&live), client_tls: true, ..NodeOptions::default() };
    cluster.start(1, NodeOptions { bootstrap: true, ..options.clone() });
    cluster.start(2, options);
    cluster.wait_for("node 1 to lead over TLS", WAIT_DEADLINE, || match cli(&cluster, &old, 1, &["LEADER"]).as_str() {
        text if text.starts_with("1\n") => Ok(()),
        other => Err(other.to_owned()),
    });
    let node2 = cluster.node(2);
    let (raft, redis) = (node2.raft_addr.to_string(), node2.redis_addr.to_string());
    assert_eq!(cli(&cluster, &old, 1, &["JOIN", "2", &raft, &redis]), "OK");

    install(&new);
    for id in [1u64, 2] {
        cluster.sighup(id);
        cluster.wait_for(&format!("node {id} to serve the new certificates"), WAIT_DEADLINE, || {
            match cli(&cluster, &new, id, &["PING"]).as_str() {
                "PONG" => Ok(()),
                other => Err(other.to_owned()),
            }
        });
        assert_ne!(cli(&cluster, &old, id, &["PING"]), "PONG", "node {id} refuses a client of the old CA now");
        assert!(cluster.node(id).log().contains("users and TLS certificates reloaded"));
    }
    // The peer port changed too: a node of the new CA joins, which needs the leader to present a
    // certificate of the new CA and to accept one.
    cluster.start(3, NodeOptions { extra_yaml: tls_yaml(&new), client_tls: true, ..NodeOptions::default() });
    let node3 = cluster.node(3);
    let (raft, redis) = (node3.raft_addr.to_string(), node3.redis_addr.to_string());
    assert_eq!(cli(&cluster, &new, 1, &["JOIN", "3", &raft, &redis]), "OK", "JOIN of a node of the new CA");
    assert_eq!(cli(&cluster, &new, 2, &["SET", "after", "rotation"]), "OK", "a follower forwards over the new TLS");
}
