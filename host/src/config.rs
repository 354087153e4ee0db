//! A node's configuration: a YAML file plus command-line overrides.
//!
//! The file (see `config/*.yaml` and `config/README.md`) holds every setting; [`Overrides`] lets
//! the command line replace the per-node ones (`--id`, `--raft-addr`, ...), so that one file can
//! serve as a template. [`Config::load`] reads the file, applies the overrides, then
//! [`Config::validate`]s the result.
//!
//! Rules:
//! * Every setting's name carries its unit (`_ms`, `_bytes`, `_max`, ...).
//! * Unknown keys are errors, at every level: a misspelt key must not silently leave a default in
//!   place.
//! * Relative paths in the file (`data_dir`, `fsm_module`) are resolved against the directory
//!   holding the file, not the current directory, so a node starts the same way from anywhere.
//!   Paths given on the command line are relative to the current directory, as usual for flags.
//! * Every error names the file and the key (and, for syntax errors, the line and column), so an
//!   operator can go straight to the line to fix.

use crate::storage::Backend;
use clap::builder::TypedValueParser as _;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

/// A node's complete configuration, after defaults, path resolution and overrides.
///
/// Settings marked *required* have no default: the file must give them (or, for the top-level
/// per-node ones, the command line). Everything else may be left out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's Raft id. *Required*; at least 1, unique in the cluster.
    ///
    /// Never reuse the id of a node that was removed or whose data was lost: the cluster may still
    /// hold votes and log positions recorded under that id, and a new node answering to it could
    /// break Raft's safety.
    pub id: u64,
    /// Address of this node's Raft endpoint, which peers send their RPCs to (`host:port`, e.g.
    /// `127.0.0.1:7001`). *Required*. Must differ from `redis_addr`.
    pub raft_addr: SocketAddr,
    /// Address of the Redis-protocol (RESP) endpoint clients connect to (`host:port`, e.g.
    /// `127.0.0.1:9001`). *Required*.
    pub redis_addr: SocketAddr,
    /// Which store holds the state machine's data: `redb` (durable, one file in `data_dir`),
    /// `memory_durable` (in memory like Redis, durable through the Raft log and snapshot files in
    /// `data_dir`; faster, but the whole state must fit in memory and a restart replays the log
    /// since the last snapshot) or `memory` (lost when the process ends; for tests and throwaway
    /// nodes). *Required*, because choosing `memory` by accident would lose data.
    #[serde(deserialize_with = "backend_from_name")]
    pub store_backend: Backend,
    /// Directory for everything this node keeps: the Raft log, the state store, snapshots and the
    /// node identity marker (which ties the directory to this node's id). *Required*. A relative
    /// path is resolved against the config file's directory. Give each node its own.
    pub data_dir: PathBuf,
    /// Path to the state machine this node proposes, a `.wasm` module (`make wasm` builds
    /// `target/wasm32-unknown-unknown/guest/fsm_kv.wasm` and `fsm_kv_v2.wasm`). *Required*, and it
    /// must load at start. A relative path is resolved against the config file's directory. The
    /// cluster runs the module its log says: `BOOTSTRAP` installs this one, `MODULE RELOAD` (or
    /// SIGHUP) proposes it again after a change, and a node whose file names another module
    /// follows the cluster's.
    pub fsm_module: PathBuf,
    /// Whether a fresh node (one with an empty `data_dir`) initialises a one-node cluster of
    /// itself at start. Default `false`. Set it on exactly one node, once, to create a cluster;
    /// other nodes join it. A node that already holds Raft state ignores it.
    #[serde(default)]
    pub bootstrap: bool,
    /// What a follower does with a write command: `forward` it to the leader and relay the reply
    /// (default; clients need not know the leader), or `redirect` the client with an error naming
    /// the leader (one hop less, but the client must retry there).
    #[serde(default)]
    pub follower_writes: FollowerWrites,
    /// How a new connection's reads are served: `linearizable` (default: a read index confirmed
    /// with a quorum, so a read sees every write acknowledged before it) or `stale` (this node's
    /// applied state, no round trip). `READONLY` / `READWRITE` switch one connection.
    #[serde(default)]
    pub reads: ReadMode,
    /// What to log: a `tracing` filter directive such as `info` or `info,openraft=warn`.
    /// Default `info,openraft=warn`. `debug` and `trace` cost throughput on a busy node.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// `--force-new-cluster` (command line only, never from the file): restart as the only voter.
    #[serde(skip)]
    pub force_new_cluster: bool,
    /// Raft timing and replication batch size. All default.
    #[serde(default)]
    pub raft: RaftSettings,
    /// When to snapshot the state and compact the log. All default.
    #[serde(default)]
    pub snapshot: SnapshotPolicy,
    /// Resource bounds: connections, request sizes, wasm budgets, write batching, timeouts. All
    /// default.
    #[serde(default)]
    pub limits: Limits,
    /// Client authentication: the default user's password and the users with their permissions.
    /// Absent (the default): every client may run every command, as with Redis's default
    /// `nopass` user. Must be the same on every node.
    #[serde(default)]
    pub auth: AuthSettings,
    /// A file holding the secret every node of the cluster shares (at least 32 bytes; `openssl
    /// rand -hex 32 > cluster.secret`). With it, peers prove they hold it on every Raft
    /// connection, and a peer that cannot is refused. Absent (the default): any process that
    /// reaches the Raft port and knows the cluster id is taken for a peer. A relative path is
    /// resolved against the config file's directory.
    #[serde(default)]
    pub cluster_secret_file: Option<PathBuf>,
    /// `ip:port` of the Prometheus metrics endpoint (`GET /metrics`, plain HTTP). Absent (the
    /// default): no endpoint. It reveals counts and timings, never data: bind it where only your
    /// monitoring reaches.
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
    /// TLS on the client port. Absent (the default): plain TCP.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// Mutual TLS on the peer port. Absent (the default): plain TCP.
    #[serde(default)]
    pub peer_tls: Option<PeerTlsSettings>,
}

/// The `tls` section: TLS on the client port (`redis-cli --tls`, redis-py `ssl=True`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The node's certificate chain, PEM. *Required*.
    pub cert_file: PathBuf,
    /// Its private key, PEM. *Required*.
    pub key_file: PathBuf,
    /// The CA that signed the nodes' client-port certificates, PEM. *Required*: a follower
    /// forwarding writes connects to the leader's client port and checks its certificate
    /// against it.
    pub ca_file: PathBuf,
    /// With it, clients must present a certificate this CA signed (mutual TLS); a follower
    /// forwarding writes presents its own `cert_file`. Default: no client certificates.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// The `peer_tls` section: mutual TLS between nodes. Every node presents `cert_file`, signed by
/// the cluster's CA `ca_file`, and accepts only peers whose certificate that CA signed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerTlsSettings {
    /// This node's certificate chain, PEM. *Required*.
    pub cert_file: PathBuf,
    /// Its private key, PEM. *Required*.
    pub key_file: PathBuf,
    /// The cluster's CA, PEM. *Required*. Keep it for nodes alone: any certificate it signed is
    /// taken for a node.
    pub ca_file: PathBuf,
}

/// TLS for the client port, ready to use: what the listener presents and what a forwarding
/// follower connects to the leader with.
#[derive(Clone)]
pub struct ClientTls {
    /// The listener's side.
    pub server: std::sync::Arc<rustls::ServerConfig>,
    /// A follower's side when it forwards to the leader.
    pub upstream: std::sync::Arc<rustls::ClientConfig>,
}

/// Mutual TLS for the peer port, ready to use.
#[derive(Clone)]
pub struct PeerTls {
    /// Accepting peers.
    pub server: std::sync::Arc<rustls::ServerConfig>,
    /// Connecting to peers.
    pub client: std::sync::Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientTls(..)")
    }
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerTls(..)")
    }
}

/// Checks one TLS file: that it holds what its key says (a certificate, a key, a CA).
type FileCheck = fn(&Path) -> Result<(), crate::tls::TlsError>;

/// Checks each file of a TLS section on its own, so the error names its key.
fn check_tls_files(section: &'static [(&'static str, FileCheck)], paths: &[&Path]) -> Result<(), InvalidSetting> {
    for ((key, check), path) in section.iter().zip(paths) {
        check(path).map_err(|e| InvalidSetting::new(key, e.to_string()))?;
    }
    Ok(())
}

fn cert_ok(path: &Path) -> Result<(), crate::tls::TlsError> {
    crate::tls::certificates(path).map(drop)
}

fn key_ok(path: &Path) -> Result<(), crate::tls::TlsError> {
    crate::tls::private_key(path).map(drop)
}

fn ca_ok(path: &Path) -> Result<(), crate::tls::TlsError> {
    crate::tls::roots(path).map(drop)
}

/// The `auth` section: who may connect, and what each user may do (see [`crate::acl`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Redis's `requirepass`: the SHA-256 (64 hex digits) of the default user's password, who
    /// may then run everything. `printf %s 'password' | sha256sum` prints it.
    pub requirepass_sha256: Option<String>,
    /// Users by name. A user named `default` replaces `requirepass`. With users listed and no
    /// password for the default user, a connection must `AUTH` before anything else.
    pub users: Vec<UserSettings>,
}

/// One user of [`AuthSettings::users`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSettings {
    /// The name clients give to `AUTH`. *Required*.
    pub name: String,
    /// A disabled user cannot authenticate. Default `true`.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Accept any password (Redis's `nopass`). Default `false`.
    #[serde(default)]
    pub nopass: bool,
    /// SHA-256 digests of the user's passwords (64 hex digits each). Several let a password be
    /// rotated without a moment when clients are refused.
    #[serde(default)]
    pub password_sha256: Vec<String>,
    /// Command rules, applied in order as `ACL SETUSER` does: `+@read`, `-@dangerous`, `+get`,
    /// `-flushdb`, `+acl|whoami`, `allcommands`, `nocommands`. Default: no commands.
    #[serde(default)]
    pub commands: Vec<String>,
    /// Key patterns the user may touch (`app:*`), or `*` for every key. Default: none.
    #[serde(default)]
    pub keys: Vec<String>,
}

fn enabled_by_default() -> bool {
    true
}

impl AuthSettings {
    /// The node's users, parsed. [`Config::validate`] has checked they parse.
    pub fn acl(&self) -> Result<crate::acl::Acl, InvalidSetting> {
        let requirepass = match &self.requirepass_sha256 {
            None => None,
            Some(hex) => Some(crate::acl::parse_sha256(hex).ok_or_else(|| {
                InvalidSetting::new(
                    "auth.requirepass_sha256",
                    "must be 64 hex digits, the SHA-256 of the password (`printf %s 'password' | sha256sum`)",
                )
            })?),
        };
        let mut users = Vec::with_capacity(self.users.len());
        for (i, user) in self.users.iter().enumerate() {
            if self.users[..i].iter().any(|u| u.name == user.name) {
                return Err(InvalidSetting::new("auth.users", format!("user '{}' is defined twice", user.name)));
            }
            if user.name == "default" && requirepass.is_some() {
                return Err(InvalidSetting::new(
                    "auth.users",
                    "user 'default' and auth.requirepass_sha256 both set the default user: keep one",
                ));
            }
            let spec = crate::acl::UserSpec {
                name: user.name.clone(),
                enabled: user.enabled,
                nopass: user.nopass,
                password_sha256: user.password_sha256.clone(),
                commands: user.commands.clone(),
                keys: user.keys.clone(),
            };
            users.push(
                crate::acl::User::from_spec(&spec).map_err(|e| InvalidSetting::new("auth.users", e.to_string()))?,
            );
        }
        Ok(crate::acl::Acl::new(requirepass, users))
    }
}

/// What a follower does with a write command (`follower_writes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FollowerWrites {
    /// Forward the write to the leader and relay its reply to the client.
    #[default]
    Forward,
    /// Refuse the write with an error naming the leader's address, for the client to retry there.
    Redirect,
}

/// How reads are served by default (`reads`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadMode {
    /// Linearizable: a read index, then a local read once applied up to it.
    #[default]
    Linearizable,
    /// Whatever this node has applied (possibly behind the leader).
    Stale,
}

impl fmt::Display for FollowerWrites {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FollowerWrites::Forward => "forward",
            FollowerWrites::Redirect => "redirect",
        })
    }
}

/// Raft timing and replication batch size (`raft:`). Every replica should use the same values.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSettings {
    /// How often the leader sends heartbeats, in milliseconds. Default 100. Must be below
    /// `election_timeout_min_ms` (several heartbeats should fit in it, or followers start
    /// elections while the leader is healthy). Lower detects failures sooner at the cost of more
    /// idle traffic.
    pub heartbeat_interval_ms: u64,
    /// Shortest time, in milliseconds, a follower waits without hearing from a leader before it
    /// starts an election. Default 500. Each follower picks a random timeout between this and
    /// `election_timeout_max_ms`. Lower fails over faster, but too close to the network's round
    /// trip causes needless elections.
    pub election_timeout_min_ms: u64,
    /// Longest election timeout, in milliseconds. Default 1000. Must exceed
    /// `election_timeout_min_ms`; a wider range makes split votes rarer.
    pub election_timeout_max_ms: u64,
    /// Deadline for one Raft RPC to a peer (append entries, vote), in milliseconds. Default 2000.
    /// A peer that does not answer in time is retried later; too low a value fails large appends
    /// on a slow link.
    pub rpc_timeout_ms: u64,
    /// Deadline for sending one snapshot chunk to a peer, in milliseconds. Default 10000. Raise it
    /// with `snapshot.chunk_bytes` or on slow links.
    pub snapshot_chunk_timeout_ms: u64,
    /// Most log entries sent in one AppendEntries RPC, in entries. Default 64. openraft 0.9 gives
    /// each AppendEntries one heartbeat interval to complete (the follower's fsync included), so
    /// a catch-up batch must stay small enough for that; each entry holds up to
    /// `limits.write_batch_bytes_max`.
    pub append_entries_max: u64,
    /// Most bytes of log entries sent in one AppendEntries RPC, in bytes. Default 4194304 (4 MiB).
    /// A batch closes before the entry that would pass it (it always holds at least one entry,
    /// whatever its size), so a follower catching up on large entries gets them a few at a time.
    pub append_entries_bytes_max: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            rpc_timeout_ms: 2000,
            snapshot_chunk_timeout_ms: 10_000,
            append_entries_max: 64,
            append_entries_bytes_max: 4 * MIB,
        }
    }
}

/// When to snapshot the state and compact the log (`snapshot:`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotPolicy {
    /// Take a snapshot once this many log entries were applied since the last one, in entries.
    /// Default 20000; `0` disables this trigger. Lower keeps the log and restart replay short at
    /// the cost of more frequent snapshot work. Once the last snapshot is 64 MiB or larger, either
    /// trigger also waits until the log since it is as large as that snapshot (each snapshot
    /// writes the whole state; this keeps that to at most one byte per byte of log).
    pub logs_since_last: u64,
    /// Also take a snapshot once this many bytes were appended to this node's log since the last
    /// one (or since start), in bytes. Default 536870912 (512 MiB); `0` disables it. Entries of
    /// pipelined writes hold hundreds of writes each, so a count alone lets the log (and a
    /// restart's read of it) grow to gigabytes before a snapshot purges it. With both triggers
    /// at `0` the node takes snapshots only on `SNAPSHOT` (or when one is installed).
    pub log_bytes_since_last: u64,
    /// Target size of one snapshot chunk sent to a peer, in bytes. Default 4194304 (4 MiB). Larger
    /// chunks mean fewer round trips but more memory per transfer and a longer
    /// `raft.snapshot_chunk_timeout_ms` needed per chunk.
    pub chunk_bytes: u64,
    /// Log entries kept behind a snapshot, in entries. Default 1000. A follower lagging by fewer
    /// entries than this catches up from the log instead of receiving a whole snapshot; more costs
    /// disk space.
    pub logs_kept_after: u64,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy {
            logs_since_last: 20_000,
            log_bytes_since_last: 512 * MIB,
            chunk_bytes: 4 * MIB,
            logs_kept_after: 1000,
        }
    }
}

/// Resource bounds (`limits:`). `fuel_per_apply` and `memory_bytes_max` are part of the replicated
/// contract: every replica of a cluster must use the same values (the runtime refuses state and
/// snapshots produced under other ones).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most client connections open at once, in connections. Default 10000. Further connections
    /// are refused; each open one costs a task and its buffers.
    pub connections_max: usize,
    /// Largest request (one command with all its arguments), in bytes. Default 67108864 (64 MiB).
    /// Bounds the memory one client can make the node buffer.
    pub request_bytes_max: u64,
    /// Largest single argument (bulk string), in bytes. Default 16777216 (16 MiB). It bounds what
    /// goes through the Raft log and into the state machine; keep it well under a third of
    /// `memory_bytes_max`. At most `request_bytes_max`.
    pub bulk_bytes_max: u64,
    /// Longest inline command (the plain-text form `redis-cli` and telnet send), in bytes.
    /// Default 65536 (64 KiB). At most `request_bytes_max`.
    pub inline_bytes_max: u64,
    /// Fuel for applying one command in the wasm state machine (about one unit per wasm
    /// instruction). Default 50000000. A command that runs out ends in an error and changes
    /// nothing. Part of the replicated contract.
    pub fuel_per_apply: u64,
    /// Cap on the wasm module's linear memory, in bytes. Default 268435456 (256 MiB). Between one
    /// wasm page (65536) and 4 GiB. A command that needs more ends in an error and changes
    /// nothing. Part of the replicated contract.
    pub memory_bytes_max: u64,
    /// Most commands in one Raft entry, in commands. Default 4096. Batching amortises the cost of
    /// a log write and its fsync over many commands; a batch closes at this or at
    /// `write_batch_bytes_max`, whichever comes first.
    pub write_batch_commands_max: usize,
    /// Largest Raft entry (a batch of write commands), in bytes. Default 16777216 (16 MiB).
    pub write_batch_bytes_max: u64,
    /// Most Raft entries proposed and not yet applied, in entries. Default 1. The next entry is
    /// proposed once the previous one is on the leader's disk, so more than 1 overlaps an entry's
    /// append with the previous one's replication and apply; on one machine 4 measured within
    /// noise of 1 (openraft 0.9 appends and fsyncs one entry at a time; see docs/BENCHMARKS.md).
    pub writes_in_flight_max: usize,
    /// Deadline for a linearizable read to confirm this node is still the leader, in
    /// milliseconds. Default 5000. Past it the read fails with an error (it can be retried).
    pub read_timeout_ms: u64,
    /// Deadline for a write to be committed and applied, in milliseconds. Default 10000. Past it
    /// the client is told the outcome is unknown: the write may still be applied later.
    pub write_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections_max: 10_000,
            request_bytes_max: 64 * MIB,
            bulk_bytes_max: 16 * MIB,
            inline_bytes_max: 64 * KIB,
            fuel_per_apply: 50_000_000,
            memory_bytes_max: 256 * MIB,
            write_batch_commands_max: 4096,
            write_batch_bytes_max: 16 * MIB,
            writes_in_flight_max: 1,
            read_timeout_ms: 5000,
            write_timeout_ms: 10_000,
        }
    }
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// One WebAssembly page: the smallest linear memory a module can have.
const WASM_PAGE_BYTES: u64 = 64 * KIB;
/// The largest linear memory of a 32-bit WebAssembly module.
const WASM32_MEMORY_BYTES_MAX: u64 = 4 * 1024 * MIB;

fn default_log_level() -> String {
    "info,openraft=warn".to_owned()
}

/// Reads `store_backend` with [`Backend`]'s own parser, whose error lists the allowed names. The
/// parsing happens inside the visitor so that the YAML error carries the key and the location.
fn backend_from_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Backend, D::Error> {
    struct Name;
    impl serde::de::Visitor<'_> for Name {
        type Value = Backend;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a store backend, `redb` or `memory`")
        }

        fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Backend, E> {
            name.parse().map_err(E::custom)
        }
    }
    deserializer.deserialize_str(Name)
}

/// Why a configuration could not be loaded. Every message names the file and, where there is one,
/// the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the config file: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not valid YAML, has an unknown or missing key, or a value of the wrong type.
    /// The message names the key and, where serde_yaml_ng knows it, the line and column.
    #[error("{}: {error}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The YAML or type error, with its location.
        error: serde_yaml_ng::Error,
    },
    /// The settings parse but do not make sense (a zero id, timeouts in the wrong order, ...).
    #[error("{}: {}", path.display(), describe_invalid(setting, flags))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The setting at fault.
        setting: InvalidSetting,
        /// The command-line flags that set a value involved, if any.
        flags: Vec<&'static str>,
    },
}

fn describe_invalid(setting: &InvalidSetting, flags: &[&str]) -> String {
    if flags.is_empty() {
        setting.to_string()
    } else {
        format!("{setting} (given on the command line by {})", flags.join(", "))
    }
}

/// A setting that fails [`Config::validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct InvalidSetting {
    /// The key at fault, dotted for nested ones (`raft.heartbeat_interval_ms`).
    pub key: &'static str,
    /// What is wrong and what is expected.
    pub message: String,
    /// Every top-level key involved (`key`'s own, and the other side of a comparison), to tell
    /// which of them came from the command line.
    involved: &'static [&'static str],
}

impl InvalidSetting {
    fn new(key: &'static str, message: impl Into<String>) -> Self {
        InvalidSetting { key, message: message.into(), involved: &[] }
    }

    fn involving(mut self, keys: &'static [&'static str]) -> Self {
        self.involved = keys;
        self
    }
}

/// Where a node's configuration came from, so that a running node can read it again (`MODULE
/// RELOAD`, SIGHUP) with the same command-line overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    /// The YAML file.
    pub path: PathBuf,
    /// The flags given at start.
    pub overrides: Overrides,
}

impl ConfigSource {
    /// Reads and validates the configuration again.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(&self.path, &self.overrides)
    }
}

impl Config {
    /// Reads the YAML file at `path`, applies `overrides`, and validates the result.
    ///
    /// Relative paths in the file are resolved against the file's directory; relative paths in
    /// `overrides` against the current directory.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_owned(), error })?;
        let mut config = Config::parse(&text, path)?;
        overrides.apply_to(&mut config);
        let files = |config: &Config| -> Result<(), InvalidSetting> {
            config.cluster_secret()?;
            config.client_tls()?;
            config.peer_tls()?;
            Ok(())
        };
        config.validate().and_then(|()| files(&config)).map_err(|setting| {
            let flags = if setting.involved.is_empty() { &[setting.key][..] } else { setting.involved };
            let flags = flags.iter().filter_map(|key| overrides.flag_for(key)).collect();
            ConfigError::Invalid { path: path.to_owned(), setting, flags }
        })?;
        Ok(config)
    }

    /// Parses and validates a configuration given as YAML text. `origin` is the file it came from:
    /// it names the file in error messages, and relative paths are resolved against its directory.
    pub fn from_yaml_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let config = Config::parse(text, origin)?;
        config.validate().map_err(|setting| ConfigError::Invalid {
            path: origin.to_owned(),
            setting,
            flags: Vec::new(),
        })?;
        Ok(config)
    }

    /// Parses without validating (overrides may still fix a value) and resolves relative paths.
    fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let mut config: Config =
            serde_yaml_ng::from_str(text).map_err(|error| ConfigError::Parse { path: origin.to_owned(), error })?;
        let base = Base::of(origin);
        config.data_dir = base.resolve(&config.data_dir);
        config.fsm_module = base.resolve(&config.fsm_module);
        config.cluster_secret_file = config.cluster_secret_file.map(|p| base.resolve(&p));
        if let Some(tls) = &mut config.tls {
            tls.cert_file = base.resolve(&tls.cert_file);
            tls.key_file = base.resolve(&tls.key_file);
            tls.ca_file = base.resolve(&tls.ca_file);
            tls.client_ca_file = tls.client_ca_file.as_ref().map(|p| base.resolve(p));
        }
        if let Some(tls) = &mut config.peer_tls {
            tls.cert_file = base.resolve(&tls.cert_file);
            tls.key_file = base.resolve(&tls.key_file);
            tls.ca_file = base.resolve(&tls.ca_file);
        }
        Ok(config)
    }

    /// Checks that the settings make sense together. [`Config::load`] and
    /// [`Config::from_yaml_str`] call it; call it again after changing a loaded configuration.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.id == 0 {
            return Err(InvalidSetting::new("id", "must be at least 1 (Raft reserves 0)"));
        }
        if addresses_clash(self.raft_addr, self.redis_addr) {
            return Err(InvalidSetting::new(
                "redis_addr",
                format!(
                    "{} clashes with raft_addr {}: the Raft and Redis endpoints need different ports",
                    self.redis_addr, self.raft_addr
                ),
            )
            .involving(&["redis_addr", "raft_addr"]));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(InvalidSetting::new("data_dir", "must not be empty"));
        }
        if self.fsm_module.as_os_str().is_empty() {
            return Err(InvalidSetting::new("fsm_module", "must not be empty"));
        }
        if self.log_level.trim().is_empty() {
            return Err(InvalidSetting::new("log_level", "must not be empty (for example `info`)"));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log_level) {
            return Err(InvalidSetting::new(
                "log_level",
                format!("{:?} is not a valid log filter: {e}", self.log_level),
            ));
        }
        self.raft.validate()?;
        self.snapshot.validate()?;
        self.limits.validate()?;
        self.auth.acl()?;
        if let Some(metrics) = self.metrics_addr
            && (addresses_clash(metrics, self.redis_addr) || addresses_clash(metrics, self.raft_addr))
        {
            return Err(InvalidSetting::new(
                "metrics_addr",
                format!("{metrics} clashes with redis_addr or raft_addr: the metrics endpoint needs its own port"),
            )
            .involving(&["metrics_addr", "redis_addr", "raft_addr"]));
        }
        if self.cluster_secret_file.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(InvalidSetting::new(
                "cluster_secret_file",
                "must not be empty: name a file, or leave the key out",
            ));
        }
        Ok(())
    }

    /// Loads the client port's TLS (`tls`), if any: every file checked, the error naming its key
    /// and the file.
    pub fn client_tls(&self) -> Result<Option<ClientTls>, InvalidSetting> {
        let Some(tls) = &self.tls else { return Ok(None) };
        check_tls_files(
            &[("tls.cert_file", cert_ok), ("tls.key_file", key_ok), ("tls.ca_file", ca_ok)],
            &[&tls.cert_file, &tls.key_file, &tls.ca_file],
        )?;
        if let Some(client_ca) = &tls.client_ca_file {
            check_tls_files(&[("tls.client_ca_file", ca_ok)], &[client_ca])?;
        }
        let server = crate::tls::server_config(&tls.cert_file, &tls.key_file, tls.client_ca_file.as_deref())
            .map_err(|e| InvalidSetting::new("tls.key_file", e.to_string()))?;
        let identity = tls.client_ca_file.as_ref().map(|_| (tls.cert_file.as_path(), tls.key_file.as_path()));
        let upstream = crate::tls::node_client_config(&tls.ca_file, identity)
            .map_err(|e| InvalidSetting::new("tls.ca_file", e.to_string()))?;
        Ok(Some(ClientTls { server, upstream }))
    }

    /// Loads the peer port's mutual TLS (`peer_tls`), if any, like [`Config::client_tls`].
    pub fn peer_tls(&self) -> Result<Option<PeerTls>, InvalidSetting> {
        let Some(tls) = &self.peer_tls else { return Ok(None) };
        check_tls_files(
            &[("peer_tls.cert_file", cert_ok), ("peer_tls.key_file", key_ok), ("peer_tls.ca_file", ca_ok)],
            &[&tls.cert_file, &tls.key_file, &tls.ca_file],
        )?;
        let server = crate::tls::server_config(&tls.cert_file, &tls.key_file, Some(&tls.ca_file))
            .map_err(|e| InvalidSetting::new("peer_tls.key_file", e.to_string()))?;
        let client = crate::tls::node_client_config(&tls.ca_file, Some((&tls.cert_file, &tls.key_file)))
            .map_err(|e| InvalidSetting::new("peer_tls.key_file", e.to_string()))?;
        Ok(Some(PeerTls { server, client }))
    }

    /// Reads the cluster secret `cluster_secret_file` names, if any. The error names the key and
    /// the file.
    pub fn cluster_secret(&self) -> Result<Option<crate::raft::peer_auth::ClusterSecret>, InvalidSetting> {
        let Some(path) = &self.cluster_secret_file else { return Ok(None) };
        let bytes = std::fs::read(path)
            .map_err(|e| InvalidSetting::new("cluster_secret_file", format!("cannot read {}: {e}", path.display())))?;
        crate::raft::peer_auth::ClusterSecret::new(&bytes)
            .map(Some)
            .map_err(|why| InvalidSetting::new("cluster_secret_file", format!("{}: {why}", path.display())))
    }
}

/// Whether two listening addresses would compete for the same port. Port 0 asks the system for a
/// free port, so it never clashes.
fn addresses_clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0 && a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Fails with "`key` must be at least 1" when `value` is 0.
fn positive(key: &'static str, value: u64, why: &str) -> Result<(), InvalidSetting> {
    if value == 0 { Err(InvalidSetting::new(key, format!("must be at least 1: {why}"))) } else { Ok(()) }
}

impl RaftSettings {
    fn validate(&self) -> Result<(), InvalidSetting> {
        positive("raft.heartbeat_interval_ms", self.heartbeat_interval_ms, "the leader must send heartbeats")?;
        positive("raft.election_timeout_min_ms", self.election_timeout_min_ms, "an election timeout of 0 never waits")?;
        if self.election_timeout_min_ms >= self.election_timeout_max_ms {
            return Err(InvalidSetting::new(
                "raft.election_timeout_min_ms",
                format!(
                    "{} must be less than raft.election_timeout_max_ms ({}): timeouts are drawn at random \
                     between the two",
                    self.election_timeout_min_ms, self.election_timeout_max_ms
                ),
            ));
        }
        if self.heartbeat_interval_ms >= self.election_timeout_min_ms {
            return Err(InvalidSetting::new(
                "raft.heartbeat_interval_ms",
                format!(
                    "{} must be less than raft.election_timeout_min_ms ({}), or followers start elections \
                     against a healthy leader",
                    self.heartbeat_interval_ms, self.election_timeout_min_ms
                ),
            ));
        }
        positive("raft.rpc_timeout_ms", self.rpc_timeout_ms, "a zero deadline fails every RPC")?;
        positive(
            "raft.snapshot_chunk_timeout_ms",
            self.snapshot_chunk_timeout_ms,
            "a zero deadline fails every snapshot transfer",
        )?;
        positive("raft.append_entries_max", self.append_entries_max, "replication needs at least one entry per RPC")?;
        positive(
            "raft.append_entries_bytes_max",
            self.append_entries_bytes_max,
            "replication needs room for at least one entry per RPC",
        )
    }
}

impl SnapshotPolicy {
    fn validate(&self) -> Result<(), InvalidSetting> {
        positive("snapshot.chunk_bytes", self.chunk_bytes, "a snapshot cannot be sent in empty chunks")
    }
}

impl Limits {
    fn validate(&self) -> Result<(), InvalidSetting> {
        positive("limits.connections_max", self.connections_max as u64, "no client could connect")?;
        positive("limits.request_bytes_max", self.request_bytes_max, "no request would fit")?;
        positive("limits.bulk_bytes_max", self.bulk_bytes_max, "no argument would fit")?;
        let within_request = |key: &'static str, value: u64, why: &str| {
            if value > self.request_bytes_max {
                return Err(InvalidSetting::new(
                    key,
                    format!("{value} exceeds limits.request_bytes_max ({}): {why}", self.request_bytes_max),
                ));
            }
            Ok(())
        };
        within_request("limits.bulk_bytes_max", self.bulk_bytes_max, "one argument cannot be larger than the request")?;
        positive("limits.inline_bytes_max", self.inline_bytes_max, "no inline command would fit")?;
        within_request("limits.inline_bytes_max", self.inline_bytes_max, "an inline command is a request")?;
        positive("limits.fuel_per_apply", self.fuel_per_apply, "every command would run out of fuel")?;
        if !(WASM_PAGE_BYTES..=WASM32_MEMORY_BYTES_MAX).contains(&self.memory_bytes_max) {
            return Err(InvalidSetting::new(
                "limits.memory_bytes_max",
                format!(
                    "{} is out of range: a wasm32 memory is between one page ({WASM_PAGE_BYTES}) and 4 GiB \
                     ({WASM32_MEMORY_BYTES_MAX}) bytes",
                    self.memory_bytes_max
                ),
            ));
        }
        if usize::try_from(self.memory_bytes_max).is_err() {
            return Err(InvalidSetting::new(
                "limits.memory_bytes_max",
                format!("{} is more than this machine can address", self.memory_bytes_max),
            ));
        }
        positive(
            "limits.write_batch_commands_max",
            self.write_batch_commands_max as u64,
            "a Raft entry must hold a command",
        )?;
        if self.write_batch_commands_max > crate::raft::COMMANDS_PER_ENTRY_MAX {
            return Err(InvalidSetting::new(
                "limits.write_batch_commands_max",
                format!(
                    "{} is more than a node accepts in one entry ({})",
                    self.write_batch_commands_max,
                    crate::raft::COMMANDS_PER_ENTRY_MAX
                ),
            ));
        }
        positive("limits.write_batch_bytes_max", self.write_batch_bytes_max, "a Raft entry must hold a command")?;
        positive("limits.writes_in_flight_max", self.writes_in_flight_max as u64, "no write could be proposed")?;
        positive("limits.read_timeout_ms", self.read_timeout_ms, "a zero deadline fails every read")?;
        positive("limits.write_timeout_ms", self.write_timeout_ms, "a zero deadline fails every write")
    }
}

/// The directory relative paths in a config file are resolved against.
struct Base {
    dir: PathBuf,
    /// Whether `dir` is canonical (absolute, no symbolic links), so that a leading `..` can be
    /// resolved by dropping its last component.
    canonical: bool,
}

impl Base {
    fn of(origin: &Path) -> Base {
        let dir = match origin.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        match std::fs::canonicalize(dir) {
            Ok(dir) => Base { dir, canonical: true },
            // The file need not exist (`from_yaml_str`): resolve without touching the filesystem.
            Err(_) => Base { dir: std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned()), canonical: false },
        }
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        if path.as_os_str().is_empty() || path.is_absolute() {
            return path.to_owned();
        }
        let mut resolved = self.dir.clone();
        let mut components = path.components().peekable();
        while let Some(component) = components.peek() {
            match component {
                Component::CurDir => {}
                Component::ParentDir if self.canonical => {
                    resolved.pop();
                }
                _ => break,
            }
            components.next();
        }
        resolved.extend(components);
        resolved
    }
}

/// The node's command line.
#[derive(clap::Parser, Debug, Default)]
#[command(
    name = "redraft",
    version,
    about = "A Redis-protocol key-value server replicated with Raft, whose state machine is a WebAssembly module.",
    long_about = "A Redis-protocol key-value server replicated with Raft, whose state machine is a WebAssembly \
                  module.\n\nSettings come from the YAML file given with --config (see config/README.md); the \
                  flags below replace the file's values."
)]
pub struct Args {
    /// The node's YAML configuration file. Relative paths inside it are resolved against the
    /// file's directory.
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// Settings that replace the file's.
    #[command(flatten)]
    pub overrides: Overrides,
    /// Disaster recovery, once, when a majority of the voters is lost for good: restart this
    /// node as the only voter of its cluster, from its own log and state (acknowledged writes it
    /// held are kept; writes it never received are lost). Then JOIN fresh nodes with new ids.
    /// Never restart the lost nodes on their old data. Not a config key, so it cannot stay on by
    /// mistake. See docs/operations.md.
    #[arg(long)]
    pub force_new_cluster: bool,
}

/// Command-line values that replace the config file's. Each is optional; paths given here are
/// relative to the current directory.
#[derive(clap::Args, Debug, Default, Clone, PartialEq, Eq)]
pub struct Overrides {
    /// This node's Raft id (at least 1, unique in the cluster, never reused). Replaces `id`.
    #[arg(long, value_name = "ID")]
    pub id: Option<u64>,
    /// Address peers send Raft RPCs to, host:port. Replaces `raft_addr`.
    #[arg(long, value_name = "HOST:PORT")]
    pub raft_addr: Option<SocketAddr>,
    /// Address Redis clients connect to, host:port. Replaces `redis_addr`.
    #[arg(long, value_name = "HOST:PORT")]
    pub redis_addr: Option<SocketAddr>,
    /// Store for the state machine's data: redb (durable), memory_durable (in memory, durable by
    /// log and snapshots) or memory (lost at exit). Replaces `store_backend`.
    #[arg(
        long,
        value_name = "BACKEND",
        value_parser = clap::builder::PossibleValuesParser::new(["redb", "memory_durable", "memory"]).try_map(|name| name.parse::<Backend>())
    )]
    pub store_backend: Option<Backend>,
    /// Directory for the Raft log, state store, snapshots and node identity. Replaces `data_dir`.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Path to the state machine's .wasm module. Replaces `fsm_module`.
    #[arg(long, value_name = "FILE")]
    pub fsm_module: Option<PathBuf>,
    /// Initialise a one-node cluster of this node if its data directory is fresh. `--bootstrap`
    /// alone means true; `--bootstrap=false` turns off the file's setting. Replaces `bootstrap`.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub bootstrap: Option<bool>,
    /// What a follower does with a write: forward it to the leader, or redirect the client there.
    /// Replaces `follower_writes`.
    #[arg(long, value_name = "MODE")]
    pub follower_writes: Option<FollowerWrites>,
    /// Log filter, a tracing directive such as `info` or `info,openraft=warn`. Replaces
    /// `log_level`.
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

impl Overrides {
    /// Replaces `config`'s values with those given here. Relative paths are made absolute against
    /// the current directory.
    pub fn apply_to(&self, config: &mut Config) {
        let Overrides {
            id,
            raft_addr,
            redis_addr,
            store_backend,
            data_dir,
            fsm_module,
            bootstrap,
            follower_writes,
            log_level,
        } = self;
        let from_cwd = |path: &PathBuf| {
            if path.as_os_str().is_empty() { path.clone() } else { std::path::absolute(path).unwrap_or(path.clone()) }
        };
        if let Some(id) = id {
            config.id = *id;
        }
        if let Some(addr) = raft_addr {
            config.raft_addr = *addr;
        }
        if let Some(addr) = redis_addr {
            config.redis_addr = *addr;
        }
        if let Some(backend) = store_backend {
            config.store_backend = *backend;
        }
        if let Some(dir) = data_dir {
            config.data_dir = from_cwd(dir);
        }
        if let Some(module) = fsm_module {
            config.fsm_module = from_cwd(module);
        }
        if let Some(bootstrap) = bootstrap {
            config.bootstrap = *bootstrap;
        }
        if let Some(mode) = follower_writes {
            config.follower_writes = *mode;
        }
        if let Some(filter) = log_level {
            config.log_level = filter.clone();
        }
    }

    /// The flag that set top-level `key`, if this command line set it.
    fn flag_for(&self, key: &str) -> Option<&'static str> {
        let (set, flag) = match key {
            "id" => (self.id.is_some(), "--id"),
            "raft_addr" => (self.raft_addr.is_some(), "--raft-addr"),
            "redis_addr" => (self.redis_addr.is_some(), "--redis-addr"),
            "store_backend" => (self.store_backend.is_some(), "--store-backend"),
            "data_dir" => (self.data_dir.is_some(), "--data-dir"),
            "fsm_module" => (self.fsm_module.is_some(), "--fsm-module"),
            "bootstrap" => (self.bootstrap.is_some(), "--bootstrap"),
            "follower_writes" => (self.follower_writes.is_some(), "--follower-writes"),
            "log_level" => (self.log_level.is_some(), "--log-level"),
            _ => return None,
        };
        set.then_some(flag)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    const ORIGIN: &str = "/etc/redraft/node.yaml";

    /// The required keys, with the paths absolute so that no resolution happens.
    const REQUIRED: &str = "\
id: 1
raft_addr: 127.0.0.1:7001
redis_addr: 127.0.0.1:9001
store_backend: redb
data_dir: /var/lib/redraft
fsm_module: /opt/redraft/fsm_kv.wasm
";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_str(text, Path::new(ORIGIN))
    }

    /// The error message of `text` (which must fail), checked to name the file.
    fn error_of(text: &str) -> String {
        let message = parse(text).expect_err("the config should be refused").to_string();
        assert!(message.starts_with(&format!("{ORIGIN}: ")), "does not name the file: {message}");
        message
    }

    fn assert_mentions(message: &str, parts: &[&str]) {
        for part in parts {
            assert!(message.contains(part), "{message:?} does not mention {part:?}");
        }
    }

    /// The message for `REQUIRED` plus `extra`, which must be refused by validation naming `key`.
    fn invalid(extra: &str, key: &str) -> String {
        let error = parse(&format!("{REQUIRED}{extra}")).expect_err("the config should be refused");
        let ConfigError::Invalid { setting, .. } = &error else { panic!("not a validation error: {error}") };
        assert_eq!(setting.key, key, "{error}");
        let message = error.to_string();
        assert!(message.starts_with(&format!("{ORIGIN}: {key}: ")), "{message}");
        message
    }

    #[test]
    fn defaults_fill_everything_optional() {
        let config = parse(REQUIRED).unwrap();
        assert_eq!(
            config,
            Config {
                id: 1,
                raft_addr: "127.0.0.1:7001".parse().unwrap(),
                redis_addr: "127.0.0.1:9001".parse().unwrap(),
                store_backend: Backend::Redb,
                data_dir: "/var/lib/redraft".into(),
                fsm_module: "/opt/redraft/fsm_kv.wasm".into(),
                bootstrap: false,
                follower_writes: FollowerWrites::Forward,
                reads: ReadMode::Linearizable,
                log_level: "info,openraft=warn".into(),
                force_new_cluster: false,
                raft: RaftSettings {
                    heartbeat_interval_ms: 100,
                    election_timeout_min_ms: 500,
                    election_timeout_max_ms: 1000,
                    rpc_timeout_ms: 2000,
                    snapshot_chunk_timeout_ms: 10_000,
                    append_entries_max: 64,
                    append_entries_bytes_max: 4 << 20,
                },
                snapshot: SnapshotPolicy {
                    logs_since_last: 20_000,
                    log_bytes_since_last: 512 << 20,
                    chunk_bytes: 4 << 20,
                    logs_kept_after: 1000
                },
                limits: Limits {
                    connections_max: 10_000,
                    request_bytes_max: 64 << 20,
                    bulk_bytes_max: 16 << 20,
                    inline_bytes_max: 64 << 10,
                    fuel_per_apply: 50_000_000,
                    memory_bytes_max: 256 << 20,
                    write_batch_commands_max: 4096,
                    write_batch_bytes_max: 16 << 20,
                    writes_in_flight_max: 1,
                    read_timeout_ms: 5000,
                    write_timeout_ms: 10_000,
                },
                auth: AuthSettings { requirepass_sha256: None, users: Vec::new() },
                cluster_secret_file: None,
                metrics_addr: None,
                tls: None,
                peer_tls: None,
            }
        );
    }

    #[test]
    fn users_parse_and_bad_ones_are_refused_naming_the_key() {
        let digest = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
        let users = format!(
            "auth:\n  requirepass_sha256: {digest}\n  users:\n    - name: app\n      password_sha256: [{digest}]\n      \
             commands: [+@read, +@write, -@dangerous]\n      keys: ['app:*']\n"
        );
        let config = parse(&format!("{REQUIRED}{users}")).unwrap();
        let acl = config.auth.acl().unwrap();
        assert!(acl.authenticate(b"app", b"password").is_some());
        assert!(acl.authenticate(b"default", b"password").is_some());
        assert!(acl.initial_user().is_none(), "a password means connections must AUTH");

        let unknown = users.replace("-@dangerous", "-@dangrous");
        let message = invalid(&unknown, "auth.users");
        assert!(message.contains("user 'app'") && message.contains("'@dangrous'"), "{message}");
        let short = "auth:\n  requirepass_sha256: abc\n";
        invalid(short, "auth.requirepass_sha256");
        let twice = "auth:\n  users: [{name: a, nopass: true}, {name: a, nopass: true}]\n";
        assert!(invalid(twice, "auth.users").contains("defined twice"));
        let misspelt = format!("{REQUIRED}auth:\n  users: [{{name: a, pasword_sha256: []}}]\n");
        assert!(parse(&misspelt).unwrap_err().to_string().contains("pasword_sha256"));
    }

    #[test]
    fn a_partial_section_keeps_the_other_defaults() {
        let config = parse(&format!("{REQUIRED}raft:\n  heartbeat_interval_ms: 50\nlimits: {{}}\n")).unwrap();
        assert_eq!(config.raft, RaftSettings { heartbeat_interval_ms: 50, ..RaftSettings::default() });
        assert_eq!(config.limits, Limits::default());
    }

    #[test]
    fn every_setting_is_read() {
        let text = "\
id: 7
raft_addr: '[::1]:17001'
redis_addr: 0.0.0.0:16379
store_backend: memory
data_dir: /d
fsm_module: /m.wasm
bootstrap: true
follower_writes: redirect
log_level: debug,openraft=warn
raft: {heartbeat_interval_ms: 1, election_timeout_min_ms: 2, election_timeout_max_ms: 3, rpc_timeout_ms: 4,
       snapshot_chunk_timeout_ms: 5, append_entries_max: 6, append_entries_bytes_max: 7}
snapshot: {logs_since_last: 0, log_bytes_since_last: 0, chunk_bytes: 8, logs_kept_after: 0}
limits: {connections_max: 10, request_bytes_max: 11, bulk_bytes_max: 11, inline_bytes_max: 11, fuel_per_apply: 14,
         memory_bytes_max: 65536, write_batch_commands_max: 16, write_batch_bytes_max: 17, writes_in_flight_max: 18,
         read_timeout_ms: 19, write_timeout_ms: 20}
";
        let config = parse(text).unwrap();
        assert_eq!(config.id, 7);
        assert_eq!(config.raft_addr, "[::1]:17001".parse().unwrap());
        assert_eq!(config.redis_addr, "0.0.0.0:16379".parse().unwrap());
        assert_eq!(config.store_backend, Backend::Memory);
        assert!(config.bootstrap);
        assert_eq!(config.follower_writes, FollowerWrites::Redirect);
        assert_eq!(config.log_level, "debug,openraft=warn");
        assert_eq!(
            config.raft,
            RaftSettings {
                heartbeat_interval_ms: 1,
                election_timeout_min_ms: 2,
                election_timeout_max_ms: 3,
                rpc_timeout_ms: 4,
                snapshot_chunk_timeout_ms: 5,
                append_entries_max: 6,
                append_entries_bytes_max: 7
            }
        );
        assert_eq!(
            config.snapshot,
            SnapshotPolicy { logs_since_last: 0, log_bytes_since_last: 0, chunk_bytes: 8, logs_kept_after: 0 }
        );
        assert_eq!(config.limits.memory_bytes_max, 65536);
        assert_eq!(config.limits.write_timeout_ms, 20);
    }

    #[test]
    fn unknown_top_level_key() {
        let message = error_of(&format!("{REQUIRED}bootstrapp: true\n"));
        assert_mentions(&message, &["unknown field `bootstrapp`", "line 7 column 1"]);
    }

    #[test]
    fn unknown_nested_key() {
        let message = error_of(&format!("{REQUIRED}limits:\n  connections_max: 5\n  conections_max: 5\n"));
        assert_mentions(&message, &["limits: unknown field `conections_max`", "line 9 column 3"]);
        let message = error_of(&format!("{REQUIRED}raft:\n  heartbeat_ms: 5\n"));
        assert_mentions(&message, &["raft: unknown field `heartbeat_ms`", "line 8"]);
        let message = error_of(&format!("{REQUIRED}snapshot:\n  chunk_size: 5\n"));
        assert_mentions(&message, &["snapshot: unknown field `chunk_size`", "line 8"]);
    }

    #[test]
    fn bad_type() {
        let message = error_of(&REQUIRED.replace("id: 1", "id: one"));
        assert_mentions(&message, &["id: invalid type: string \"one\"", "line 1 column 5"]);
        let message = error_of(&format!("{REQUIRED}limits:\n  fuel_per_apply: -1\n"));
        assert_mentions(&message, &["limits.fuel_per_apply: invalid type: integer `-1`, expected u64", "line 8"]);
        let message = error_of(&format!("{REQUIRED}bootstrap: maybe\n"));
        assert_mentions(&message, &["bootstrap: invalid type", "line 7"]);
        let message = error_of(&REQUIRED.replace("127.0.0.1:9001", "localhost:9001"));
        assert_mentions(&message, &["redis_addr: ", "line 3"]);
        let message = error_of(&format!("{REQUIRED}follower_writes: proxy\n"));
        assert_mentions(&message, &["follower_writes: unknown variant `proxy`", "`forward`", "`redirect`"]);
    }

    #[test]
    fn bad_backend_names_the_allowed_values() {
        let message = error_of(&REQUIRED.replace("store_backend: redb", "store_backend: rocksdb"));
        assert_mentions(&message, &["store_backend: ", "rocksdb", "`redb`", "`memory`", "line 4"]);
        let message = error_of(&REQUIRED.replace("store_backend: redb", "store_backend: 3"));
        assert_mentions(&message, &["store_backend: ", "line 4"]);
    }

    #[test]
    fn missing_required_key() {
        for key in ["id", "raft_addr", "redis_addr", "store_backend", "data_dir", "fsm_module"] {
            let text: String =
                REQUIRED.lines().filter(|line| !line.starts_with(key)).map(|l| format!("{l}\n")).collect();
            let message = error_of(&text);
            assert_mentions(&message, &[&format!("missing field `{key}`")]);
        }
    }

    #[test]
    fn syntax_error_has_a_location() {
        let message = error_of(&format!("{REQUIRED}raft: [\n"));
        assert_mentions(&message, &["line "]);
        let message = error_of(&format!("{REQUIRED}id: 2\n"));
        assert_mentions(&message, &["duplicate", "id"]);
    }

    #[test]
    fn id_zero() {
        let error = parse(&REQUIRED.replace("id: 1", "id: 0")).unwrap_err();
        let ConfigError::Invalid { setting, .. } = &error else { panic!("not a validation error: {error}") };
        assert_eq!(setting.key, "id");
        assert!(error.to_string().starts_with(&format!("{ORIGIN}: id: must be at least 1")), "{error}");
    }

    #[test]
    fn address_clash() {
        let text = REQUIRED.replace("127.0.0.1:9001", "127.0.0.1:7001");
        let message = parse(&text).unwrap_err().to_string();
        assert_mentions(&message, &[ORIGIN, "redis_addr: ", "raft_addr 127.0.0.1:7001"]);
        // A wildcard address takes the port on every interface.
        let text = REQUIRED.replace("127.0.0.1:9001", "0.0.0.0:7001");
        assert_mentions(&parse(&text).unwrap_err().to_string(), &["redis_addr: "]);
        // Same port on distinct interfaces, or two ephemeral ports: fine.
        parse(&REQUIRED.replace("127.0.0.1:9001", "127.0.0.2:7001")).unwrap();
        parse(&REQUIRED.replace(":9001", ":0").replace(":7001", ":0")).unwrap();
    }

    #[test]
    fn empty_paths_and_log_level() {
        for key in ["data_dir", "fsm_module"] {
            let text: String = REQUIRED
                .lines()
                .map(|line| if line.starts_with(key) { format!("{key}: ''\n") } else { format!("{line}\n") })
                .collect();
            let error = parse(&text).unwrap_err();
            assert_mentions(&error.to_string(), &[ORIGIN, &format!("{key}: must not be empty")]);
        }
        let message = parse(&format!("{REQUIRED}log_level: ' '\n")).unwrap_err().to_string();
        assert_mentions(&message, &[ORIGIN, "log_level: must not be empty"]);
        let message = parse(&format!("{REQUIRED}log_level: info,openraft=loud\n")).unwrap_err().to_string();
        assert_mentions(&message, &[ORIGIN, "log_level: ", "not a valid log filter"]);
    }

    #[test]
    fn raft_timings() {
        let message = invalid("raft: {election_timeout_min_ms: 1000}\n", "raft.election_timeout_min_ms");
        assert_mentions(&message, &["raft.election_timeout_max_ms (1000)"]);
        invalid("raft: {election_timeout_min_ms: 1001}\n", "raft.election_timeout_min_ms");
        let message = invalid("raft: {heartbeat_interval_ms: 500}\n", "raft.heartbeat_interval_ms");
        assert_mentions(&message, &["raft.election_timeout_min_ms (500)"]);
        invalid("raft: {heartbeat_interval_ms: 0}\n", "raft.heartbeat_interval_ms");
        invalid("raft: {heartbeat_interval_ms: 0, election_timeout_min_ms: 0}\n", "raft.heartbeat_interval_ms");
        invalid("raft: {rpc_timeout_ms: 0}\n", "raft.rpc_timeout_ms");
        invalid("raft: {snapshot_chunk_timeout_ms: 0}\n", "raft.snapshot_chunk_timeout_ms");
        invalid("raft: {append_entries_max: 0}\n", "raft.append_entries_max");
        invalid("raft: {append_entries_bytes_max: 0}\n", "raft.append_entries_bytes_max");
    }

    #[test]
    fn snapshot_policy() {
        invalid("snapshot: {chunk_bytes: 0}\n", "snapshot.chunk_bytes");
        // Zero disables automatic snapshots, and zero entries kept behind one is allowed.
        parse(&format!("{REQUIRED}snapshot: {{logs_since_last: 0, logs_kept_after: 0}}\n")).unwrap();
    }

    #[test]
    fn zero_limits() {
        for key in [
            "connections_max",
            "request_bytes_max",
            "bulk_bytes_max",
            "inline_bytes_max",
            "fuel_per_apply",
            "memory_bytes_max",
            "write_batch_commands_max",
            "write_batch_bytes_max",
            "writes_in_flight_max",
            "read_timeout_ms",
            "write_timeout_ms",
        ] {
            let full_key = format!("limits.{key}");
            let message = parse(&format!("{REQUIRED}limits: {{{key}: 0}}\n")).unwrap_err().to_string();
            assert!(message.starts_with(&format!("{ORIGIN}: {full_key}: ")), "{message}");
        }
    }

    #[test]
    fn limits_that_contradict_each_other() {
        let message = invalid(
            "limits: {request_bytes_max: 100, bulk_bytes_max: 101, inline_bytes_max: 10}\n",
            "limits.bulk_bytes_max",
        );
        assert_mentions(&message, &["limits.request_bytes_max (100)"]);
        invalid(
            "limits: {request_bytes_max: 100, bulk_bytes_max: 100, inline_bytes_max: 101}\n",
            "limits.inline_bytes_max",
        );
        invalid("limits: {memory_bytes_max: 65535}\n", "limits.memory_bytes_max");
        invalid("limits: {memory_bytes_max: 4294967297}\n", "limits.memory_bytes_max");
        parse(&format!("{REQUIRED}limits: {{memory_bytes_max: 4294967296}}\n")).unwrap();
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let conf_dir = dir.path().join("conf");
        std::fs::create_dir(&conf_dir).unwrap();
        let file = conf_dir.join("node.yaml");
        let text = REQUIRED
            .replace("data_dir: /var/lib/redraft", "data_dir: ./data/n1")
            .replace("fsm_module: /opt/redraft/fsm_kv.wasm", "fsm_module: ../../mods/kv.wasm");
        std::fs::write(&file, text).unwrap();
        let config = Config::load(&file, &Overrides::default()).unwrap();
        let base = std::fs::canonicalize(&conf_dir).unwrap();
        assert_eq!(config.data_dir, base.join("data/n1"));
        assert_eq!(config.fsm_module, base.parent().unwrap().parent().unwrap().join("mods/kv.wasm"));
        // Absolute paths are kept as they are.
        let config = Config::from_yaml_str(REQUIRED, &file).unwrap();
        assert_eq!(config.data_dir, Path::new("/var/lib/redraft"));
    }

    #[test]
    fn relative_paths_without_a_file_still_follow_its_directory() {
        let config = Config::from_yaml_str(
            &REQUIRED.replace("data_dir: /var/lib/redraft", "data_dir: data"),
            Path::new("/nonexistent-redraft/conf/node.yaml"),
        )
        .unwrap();
        assert_eq!(config.data_dir, Path::new("/nonexistent-redraft/conf/data"));
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.yaml");
        let error = Config::load(&missing, &Overrides::default()).unwrap_err();
        assert!(matches!(error, ConfigError::Read { .. }));
        assert_mentions(&error.to_string(), &[&missing.display().to_string(), "cannot read the config file"]);
    }

    #[test]
    fn overrides_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.yaml");
        // A template whose per-node values are all wrong: the command line must supply them.
        std::fs::write(&file, REQUIRED.replace("id: 1", "id: 0")).unwrap();
        let args = Args::try_parse_from([
            "redraft",
            "--config",
            file.to_str().unwrap(),
            "--id",
            "4",
            "--raft-addr",
            "127.0.0.1:7004",
            "--redis-addr",
            "127.0.0.1:9004",
            "--store-backend",
            "memory",
            "--data-dir",
            "rel/data",
            "--fsm-module",
            "/abs/m.wasm",
            "--bootstrap",
            "--follower-writes",
            "redirect",
            "--log-level",
            "warn",
        ])
        .unwrap();
        assert_eq!(args.config, file);
        let config = Config::load(&args.config, &args.overrides).unwrap();
        assert_eq!(config.id, 4);
        assert_eq!(config.raft_addr, "127.0.0.1:7004".parse().unwrap());
        assert_eq!(config.redis_addr, "127.0.0.1:9004".parse().unwrap());
        assert_eq!(config.store_backend, Backend::Memory);
        // Relative to the current directory, not to the file.
        assert_eq!(config.data_dir, std::env::current_dir().unwrap().join("rel/data"));
        assert_eq!(config.fsm_module, Path::new("/abs/m.wasm"));
        assert!(config.bootstrap);
        assert_eq!(config.follower_writes, FollowerWrites::Redirect);
        assert_eq!(config.log_level, "warn");
        // Settings not overridden keep the file's values.
        assert_eq!(config.limits, Limits::default());

        // `--bootstrap=false` turns off a file's `bootstrap: true`.
        std::fs::write(&file, format!("{REQUIRED}bootstrap: true\n")).unwrap();
        let args = Args::try_parse_from(["redraft", "-c", file.to_str().unwrap(), "--bootstrap=false"]).unwrap();
        assert!(!Config::load(&args.config, &args.overrides).unwrap().bootstrap);
        let args = Args::try_parse_from(["redraft", "-c", file.to_str().unwrap()]).unwrap();
        assert_eq!(args.overrides, Overrides::default());
        assert!(Config::load(&args.config, &args.overrides).unwrap().bootstrap);
    }

    #[test]
    fn invalid_override_is_blamed_on_its_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.yaml");
        std::fs::write(&file, REQUIRED).unwrap();
        let overrides = Overrides { id: Some(0), ..Overrides::default() };
        let message = Config::load(&file, &overrides).unwrap_err().to_string();
        assert_mentions(&message, &[&file.display().to_string(), "id: must be at least 1", "--id"]);
        let overrides = Overrides { raft_addr: Some("127.0.0.1:9001".parse().unwrap()), ..Overrides::default() };
        let message = Config::load(&file, &overrides).unwrap_err().to_string();
        assert_mentions(&message, &["redis_addr: ", "--raft-addr"]);
        // A value from the file is not blamed on a flag.
        std::fs::write(&file, REQUIRED.replace("id: 1", "id: 0")).unwrap();
        let message = Config::load(&file, &Overrides::default()).unwrap_err().to_string();
        assert!(!message.contains("command line"), "{message}");
    }

    #[test]
    fn bad_flags_are_refused() {
        for bad in [
            &["--store-backend", "rocksdb"][..],
            &["--follower-writes", "proxy"],
            &["--id", "x"],
            &["--raft-addr", "nowhere"],
            &["--bootstrap", "yes"],
        ] {
            let mut argv = vec!["redraft", "-c", "node.yaml"];
            argv.extend_from_slice(bad);
            assert!(Args::try_parse_from(&argv).is_err(), "{argv:?} accepted");
        }
        // --config is required.
        assert!(Args::try_parse_from(["redraft"]).is_err());
    }

    #[test]
    fn help_explains_every_flag() {
        use clap::CommandFactory;
        let help = Args::command().render_long_help().to_string();
        for flag in [
            "--config",
            "--id",
            "--raft-addr",
            "--redis-addr",
            "--store-backend",
            "--data-dir",
            "--fsm-module",
            "--bootstrap",
            "--follower-writes",
            "--log-level",
        ] {
            assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
        }
        assert_mentions(&help, &["redb", "memory", "forward", "redirect"]);
        Args::command().debug_assert();
    }

    #[test]
    fn shipped_files_load() {
        let repo = std::fs::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join("..")).unwrap();
        let module = repo.join("target/wasm32-unknown-unknown/guest/fsm_kv.wasm");
        let shipped = [
            ("node1", 1, 9001, 7001, false),
            ("node2", 2, 9002, 7002, false),
            ("node3", 3, 9003, 7003, false),
            ("single", 1, 9001, 7001, true),
        ];
        for (name, id, redis_port, raft_port, bootstrap) in shipped {
            let path = repo.join("config").join(format!("{name}.yaml"));
            let config = Config::load(&path, &Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(config.id, id, "{name}");
            assert_eq!(config.redis_addr, SocketAddr::from(([127, 0, 0, 1], redis_port)), "{name}");
            assert_eq!(config.raft_addr, SocketAddr::from(([127, 0, 0, 1], raft_port)), "{name}");
            assert_eq!(config.store_backend, Backend::Redb, "{name}");
            assert_eq!(config.bootstrap, bootstrap, "{name}");
            assert_eq!(config.data_dir, repo.join("data").join(name), "{name}");
            assert_eq!(config.fsm_module, module, "{name}");
            // Every key is spelled out, with the default value.
            let defaults = Config {
                id: config.id,
                raft_addr: config.raft_addr,
                redis_addr: config.redis_addr,
                store_backend: config.store_backend,
                data_dir: config.data_dir.clone(),
                fsm_module: config.fsm_module.clone(),
                bootstrap: config.bootstrap,
                follower_writes: FollowerWrites::default(),
                reads: ReadMode::default(),
                log_level: default_log_level(),
                force_new_cluster: false,
                raft: RaftSettings::default(),
                snapshot: SnapshotPolicy::default(),
                limits: Limits::default(),
                auth: AuthSettings::default(),
                cluster_secret_file: None,
                metrics_addr: None,
                tls: None,
                peer_tls: None,
            };
            assert_eq!(config, defaults, "{name}");
            let text = std::fs::read_to_string(&path).unwrap();
            for key in ["follower_writes:", "log_level:", "raft:", "snapshot:", "limits:", "write_timeout_ms:"] {
                assert!(text.contains(key), "{name} lacks {key}");
            }
        }
    }
}
