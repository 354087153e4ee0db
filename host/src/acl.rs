//! Who may run what: users, their passwords, and the commands and keys each may use. Redis's ACL
//! model, cut down to what a config file declares (`auth` in the node's YAML).
//!
//! * A **user** has a name, an enabled flag, passwords stored as SHA-256 digests (never the
//!   passwords themselves), command rules and key patterns.
//! * **Command rules** are applied in order, as `ACL SETUSER` applies them: `+@category`,
//!   `-@category`, `+command`, `-command` (also `+command|subcommand`), `allcommands`
//!   (`+@all`) and `nocommands` (`-@all`). A user starts with no commands.
//! * **Key patterns** are globs (`app:*`); `*` (or `allkeys`) is every key. A command may run
//!   when every key it names matches one of them.
//! * The **default user** is the one a new connection starts as. With no `auth` section it has
//!   no password and every permission (Redis's `nopass`): today's open node.
//!
//! Categories come from the command, never from the client: the server's own commands have fixed
//! ones ([`local_categories`]), a module's commands get `@read` or `@write` from the module's own
//! table plus the type group Redis gives the command of that name ([`module_categories`]).

use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::sync::Arc;

/// A set of command categories, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Categories(u32);

impl Categories {
    /// No category.
    pub const NONE: Categories = Categories(0);
    /// Reads keys.
    pub const READ: Categories = Categories(1);
    /// Changes keys.
    pub const WRITE: Categories = Categories(1 << 1);
    /// Works on keys whatever their type (`DEL`, `EXPIRE`, `SCAN`, ...).
    pub const KEYSPACE: Categories = Categories(1 << 2);
    /// Administers the node or the cluster (`JOIN`, `MODULE RELOAD`, `CONFIG`, ...).
    pub const ADMIN: Categories = Categories(1 << 3);
    /// Can harm the cluster or its data, or leak what other clients do.
    pub const DANGEROUS: Categories = Categories(1 << 4);
    /// Manages the connection itself (`PING`, `HELLO`, `CLIENT SETNAME`, ...).
    pub const CONNECTION: Categories = Categories(1 << 5);
    /// `MULTI`, `EXEC`, `WATCH`, ...
    pub const TRANSACTION: Categories = Categories(1 << 6);
    /// Constant-time, cheap.
    pub const FAST: Categories = Categories(1 << 7);
    /// Everything that is not `@fast`.
    pub const SLOW: Categories = Categories(1 << 8);
    /// String commands.
    pub const STRING: Categories = Categories(1 << 9);
    /// Hash commands.
    pub const HASH: Categories = Categories(1 << 10);
    /// List commands.
    pub const LIST: Categories = Categories(1 << 11);
    /// Set commands.
    pub const SET: Categories = Categories(1 << 12);
    /// Sorted-set commands.
    pub const SORTEDSET: Categories = Categories(1 << 13);

    /// Both sets' categories.
    pub const fn with(self, other: Categories) -> Categories {
        Categories(self.0 | other.0)
    }

    /// Whether any category of `other` is in `self`.
    pub const fn intersects(self, other: Categories) -> bool {
        self.0 & other.0 != 0
    }
}

/// Every category by the name `ACL CAT` and the rules use, in `ACL CAT`'s order.
pub const CATEGORY_NAMES: &[(&str, Categories)] = &[
    ("keyspace", Categories::KEYSPACE),
    ("read", Categories::READ),
    ("write", Categories::WRITE),
    ("set", Categories::SET),
    ("sortedset", Categories::SORTEDSET),
    ("list", Categories::LIST),
    ("hash", Categories::HASH),
    ("string", Categories::STRING),
    ("admin", Categories::ADMIN),
    ("fast", Categories::FAST),
    ("slow", Categories::SLOW),
    ("dangerous", Categories::DANGEROUS),
    ("connection", Categories::CONNECTION),
    ("transaction", Categories::TRANSACTION),
];

/// The category named `name` (without the `@`), case-insensitively.
pub fn category(name: &str) -> Option<Categories> {
    CATEGORY_NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, c)| *c)
}

/// The categories of a command the server answers itself. `sub` is its subcommand, for the
/// commands whose subcommands differ (`ACL LIST` is `@admin`, `ACL WHOAMI` is not).
pub fn local_categories(name: &str, sub: Option<&[u8]>) -> Categories {
    use Categories as C;
    let admin = C::ADMIN.with(C::SLOW).with(C::DANGEROUS);
    let is_sub = |s: &str| sub.is_some_and(|sub| sub.eq_ignore_ascii_case(s.as_bytes()));
    match name {
        "ping" | "echo" | "hello" | "auth" | "quit" | "select" | "readonly" | "readwrite" => {
            C::FAST.with(C::CONNECTION)
        }
        "client" if is_sub("list") => C::CONNECTION.with(admin),
        "client" | "command" | "leader" | "nodes" => C::SLOW.with(C::CONNECTION),
        "info" => C::SLOW.with(C::DANGEROUS),
        "acl" if is_sub("whoami") || is_sub("cat") || is_sub("help") => C::SLOW,
        "multi" | "discard" | "watch" | "unwatch" => C::FAST.with(C::TRANSACTION),
        "exec" => C::SLOW.with(C::TRANSACTION),
        "blpop" | "brpop" | "blmove" | "brpoplpush" => C::WRITE.with(C::LIST).with(C::SLOW),
        "bzpopmin" | "bzpopmax" => C::WRITE.with(C::SORTEDSET).with(C::FAST),
        // acl list/users, config, debug, the cluster commands, module, and anything new: admin
        // until someone decides otherwise.
        _ => admin,
    }
}

/// The categories of a module command: `@read` or `@write` from the module's table, the type
/// group of the Redis command of that name, `@keyspace` for Redis's generic commands, and
/// `@dangerous` for the ones that touch every key.
pub fn module_categories(info: &fsm_sdk::CommandInfo<String>) -> Categories {
    use Categories as C;
    let name = info.name.to_ascii_lowercase();
    let mut categories = if info.write { C::WRITE } else { C::READ };
    categories = categories.with(match crate::server::command_group(&name) {
        Some("string") => C::STRING,
        Some("hash") => C::HASH,
        Some("list") => C::LIST,
        Some("set") => C::SET,
        Some("sorted-set") => C::SORTEDSET,
        Some("generic" | "server") => C::KEYSPACE,
        _ => C::NONE,
    });
    if matches!(name.as_str(), "keys" | "flushdb" | "flushall") {
        categories = categories.with(C::DANGEROUS).with(C::SLOW);
    }
    categories
}

/// One command rule of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `+@all` / `allcommands`, or `-@all` / `nocommands`.
    All(bool),
    /// `+@category` or `-@category`.
    Category(bool, Categories, String),
    /// `+command`, `+command|subcommand`, or their `-` forms (lower-case).
    Command(bool, String),
}

impl Rule {
    /// Parses one rule as the config writes it. The error says what is wrong, for the config's
    /// message.
    pub fn parse(text: &str) -> Result<Rule, String> {
        if text.eq_ignore_ascii_case("allcommands") {
            return Ok(Rule::All(true));
        }
        if text.eq_ignore_ascii_case("nocommands") {
            return Ok(Rule::All(false));
        }
        let (allow, rest) = match text.as_bytes().first() {
            Some(b'+') => (true, &text[1..]),
            Some(b'-') => (false, &text[1..]),
            _ => {
                return Err(format!(
                    "rule {text:?} must start with + or - (`+@read`, `-flushdb`), or be allcommands / nocommands"
                ));
            }
        };
        if let Some(name) = rest.strip_prefix('@') {
            if name.eq_ignore_ascii_case("all") {
                return Ok(Rule::All(allow));
            }
            let known: Vec<&str> = CATEGORY_NAMES.iter().map(|(n, _)| *n).collect();
            return category(name).map(|c| Rule::Category(allow, c, name.to_ascii_lowercase())).ok_or_else(|| {
                format!("unknown category '@{name}' in rule {text:?}; known: @all, @{}", known.join(", @"))
            });
        }
        if rest.is_empty() || !rest.bytes().all(|c| c.is_ascii_graphic() && c != b'@') {
            return Err(format!("rule {text:?} names no command"));
        }
        Ok(Rule::Command(allow, rest.to_ascii_lowercase()))
    }

    fn describe(&self) -> String {
        let sign = |allow: bool| if allow { '+' } else { '-' };
        match self {
            Rule::All(allow) => format!("{}@all", sign(*allow)),
            Rule::Category(allow, _, name) => format!("{}@{name}", sign(*allow)),
            Rule::Command(allow, name) => format!("{}{name}", sign(*allow)),
        }
    }
}

/// A user as the config declares it, before its rules are parsed (see [`crate::config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    /// The name clients give to `AUTH`.
    pub name: String,
    /// A disabled user cannot authenticate.
    pub enabled: bool,
    /// Any password is accepted (Redis's `nopass`).
    pub nopass: bool,
    /// SHA-256 digests of the passwords, 64 hex digits each.
    pub password_sha256: Vec<String>,
    /// Command rules, in order.
    pub commands: Vec<String>,
    /// Key patterns.
    pub keys: Vec<String>,
}

/// Why a user's definition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("user '{user}': {message}")]
pub struct InvalidUser {
    /// The user at fault.
    pub user: String,
    /// What is wrong.
    pub message: String,
}

/// A user that can authenticate: what [`UserSpec`] says, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    name: String,
    enabled: bool,
    nopass: bool,
    passwords: Vec<[u8; 32]>,
    rules: Vec<Rule>,
    /// `None`: every key.
    keys: Option<Vec<Vec<u8>>>,
    /// Every command and every key: no check needed (the hot path's shortcut).
    unrestricted: bool,
}

/// Parses 64 hex digits.
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl User {
    /// Parses a user's definition.
    pub fn from_spec(spec: &UserSpec) -> Result<User, InvalidUser> {
        let invalid = |message: String| InvalidUser { user: spec.name.clone(), message };
        if spec.name.is_empty() || !spec.name.bytes().all(|c| c.is_ascii_graphic()) {
            return Err(invalid("a user name must be printable ASCII without spaces".into()));
        }
        let passwords = spec
            .password_sha256
            .iter()
            .map(|hex| {
                parse_sha256(hex).ok_or_else(|| {
                    invalid(format!(
                        "password_sha256 {hex:?} is not 64 hex digits (write the SHA-256 of the password, as \
                         `printf %s 'password' | sha256sum` prints it)"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if spec.nopass && !passwords.is_empty() {
            return Err(invalid("nopass and password_sha256 contradict each other: give one".into()));
        }
        let rules = spec.commands.iter().map(|r| Rule::parse(r).map_err(&invalid)).collect::<Result<Vec<_>, _>>()?;
        let keys = if spec.keys.iter().any(|k| k == "*" || k.eq_ignore_ascii_case("allkeys")) {
            None
        } else {
            if spec.keys.iter().any(String::is_empty) {
                return Err(invalid("an empty key pattern matches nothing: leave it out".into()));
            }
            Some(spec.keys.iter().map(|k| k.as_bytes().to_vec()).collect())
        };
        Ok(User::new(spec.name.clone(), spec.enabled, spec.nopass, passwords, rules, keys))
    }

    fn new(
        name: String,
        enabled: bool,
        nopass: bool,
        passwords: Vec<[u8; 32]>,
        rules: Vec<Rule>,
        keys: Option<Vec<Vec<u8>>>,
    ) -> User {
        let last_all = rules.iter().rposition(|r| *r == Rule::All(true));
        let denied_after = last_all.is_some_and(|at| {
            rules[at..].iter().any(|r| match r {
                Rule::All(allow) | Rule::Category(allow, ..) | Rule::Command(allow, _) => !allow,
            })
        });
        let unrestricted = last_all.is_some() && !denied_after && keys.is_none();
        User { name, enabled, nopass, passwords, rules, keys, unrestricted }
    }

    /// The open default user: no password, every command, every key.
    pub fn open_default() -> User {
        User::new("default".into(), true, true, Vec::new(), vec![Rule::All(true)], None)
    }

    /// The default user of `requirepass`: every command and key, behind the password.
    pub fn default_with_password(sha256: [u8; 32]) -> User {
        User::new("default".into(), true, false, vec![sha256], vec![Rule::All(true)], None)
    }

    /// The user's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the user may run anything on any key: permission checks are skipped.
    pub fn is_unrestricted(&self) -> bool {
        self.unrestricted
    }

    /// Whether a new connection is this user without `AUTH` (enabled and `nopass`).
    fn is_open(&self) -> bool {
        self.enabled && self.nopass
    }

    /// Whether `password` opens this user. The digest comparison takes the same time wherever
    /// the digests differ.
    pub fn accepts(&self, password: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let digest: [u8; 32] = Sha256::digest(password).into();
        self.passwords.iter().fold(false, |found, stored| {
            found | (stored.iter().zip(&digest).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0)
        })
    }

    /// Whether the rules let the user run the command `name` (lower-case), whose full name is
    /// `full` (`acl|whoami`; the same as `name` for a command without subcommands), in
    /// `categories`.
    pub fn may_run(&self, name: &str, full: &str, categories: Categories) -> bool {
        if self.unrestricted {
            return true;
        }
        self.rules.iter().fold(false, |allowed, rule| match rule {
            Rule::All(allow) => *allow,
            Rule::Category(allow, c, _) if categories.intersects(*c) => *allow,
            Rule::Command(allow, c) if c.eq_ignore_ascii_case(name) || c.eq_ignore_ascii_case(full) => *allow,
            _ => allowed,
        })
    }

    /// Whether the user may touch `key`.
    pub fn may_access(&self, key: &[u8]) -> bool {
        match &self.keys {
            None => true,
            Some(patterns) => patterns.iter().any(|p| fsm_sdk::glob::glob_match(p, key)),
        }
    }

    /// The user as `ACL LIST` shows it (`user alice on #<sha256> ~app:* resetchannels -@all +@read`).
    pub fn describe(&self) -> String {
        let mut out = format!("user {} {}", self.name, if self.enabled { "on" } else { "off" });
        if self.nopass {
            out.push_str(" nopass");
        }
        for password in &self.passwords {
            let _ = write!(out, " #{}", to_hex(password));
        }
        match &self.keys {
            None => out.push_str(" ~*"),
            Some(patterns) => {
                for p in patterns {
                    let _ = write!(out, " ~{}", String::from_utf8_lossy(p));
                }
            }
        }
        out.push_str(if self.unrestricted { " &*" } else { " resetchannels" });
        if self.rules.first() != Some(&Rule::All(true)) {
            out.push_str(" -@all");
        }
        for rule in &self.rules {
            let _ = write!(out, " {}", rule.describe());
        }
        out
    }
}

/// Every user a node knows, from its config. Users must be the same on every node: a follower
/// forwards a client's writes under the client's user, and the leader checks them again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    users: Vec<Arc<User>>,
}

impl Default for Acl {
    /// No `auth` section: the open default user only.
    fn default() -> Self {
        Acl { users: vec![Arc::new(User::open_default())] }
    }
}

impl Acl {
    /// The users of a config's `auth` section: `requirepass` (the default user's password) and
    /// the users listed. A listed `default` user replaces the built-in one; with users listed and
    /// neither, the default user is disabled (connections must `AUTH`).
    pub fn new(requirepass_sha256: Option<[u8; 32]>, users: Vec<User>) -> Acl {
        let configured = requirepass_sha256.is_some() || !users.is_empty();
        let default = if users.iter().any(|u| u.name == "default") {
            None
        } else if let Some(digest) = requirepass_sha256 {
            Some(User::default_with_password(digest))
        } else if configured {
            Some(User::new("default".into(), false, false, Vec::new(), Vec::new(), Some(Vec::new())))
        } else {
            Some(User::open_default())
        };
        Acl { users: default.into_iter().chain(users).map(Arc::new).collect() }
    }

    /// The user a new connection starts as, if any: the default user when it needs no password.
    pub fn initial_user(&self) -> Option<Arc<User>> {
        self.default_user().filter(|u| u.is_open()).cloned()
    }

    fn default_user(&self) -> Option<&Arc<User>> {
        self.users.iter().find(|u| u.name == "default")
    }

    /// Whether the default user is open and has no password: `AUTH <password>` then gets Redis's
    /// "called without any password configured" error.
    pub fn default_is_passwordless(&self) -> bool {
        self.default_user().is_some_and(|u| u.is_open())
    }

    /// The user `name` if `password` opens it.
    pub fn authenticate(&self, name: &[u8], password: &[u8]) -> Option<Arc<User>> {
        self.users.iter().find(|u| u.name.as_bytes() == name).filter(|u| u.accepts(password)).cloned()
    }

    /// The enabled user called `name`, if any: what a connection authenticated as `name` becomes
    /// when the users are reloaded.
    pub fn enabled_user(&self, name: &str) -> Option<Arc<User>> {
        self.users.iter().find(|u| u.name == name && u.enabled).cloned()
    }

    /// Every user, the default first.
    pub fn users(&self) -> &[Arc<User>] {
        &self.users
    }
}

/// Why a command was refused to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The user may not run this command (its full name, `acl|list`).
    Command(String),
    /// A key the command names is outside the user's patterns.
    Key,
}

impl Denied {
    /// Redis 7.0's error text.
    pub fn message(&self) -> String {
        match self {
            Denied::Command(name) => format!("NOPERM this user has no permissions to run the '{name}' command"),
            Denied::Key => "NOPERM this user has no permissions to access one of the keys used as arguments".into(),
        }
    }
}

/// Checks a module command for `user`: the command by its categories, then its keys by the
/// module's key positions.
pub fn check_module_command(
    user: &User,
    info: &fsm_sdk::CommandInfo<String>,
    args: &[impl AsRef<[u8]>],
) -> Result<(), Denied> {
    if user.unrestricted {
        return Ok(());
    }
    let name = info.name.to_ascii_lowercase();
    if !user.may_run(&name, &name, module_categories(info)) {
        return Err(Denied::Command(name));
    }
    if user.keys.is_some() {
        for key in info.keys.positions(args.len()).filter_map(|i| args.get(i)) {
            if !user.may_access(key.as_ref()) {
                return Err(Denied::Key);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(password: &str) -> String {
        to_hex(&Sha256::digest(password.as_bytes()))
    }

    fn spec(name: &str, commands: &[&str], keys: &[&str]) -> UserSpec {
        UserSpec {
            name: name.into(),
            enabled: true,
            nopass: false,
            password_sha256: vec![sha("pw")],
            commands: commands.iter().map(|s| (*s).into()).collect(),
            keys: keys.iter().map(|s| (*s).into()).collect(),
        }
    }

    fn info(name: &str, write: bool, keys: fsm_sdk::KeySpec) -> fsm_sdk::CommandInfo<String> {
        fsm_sdk::CommandInfo { name: name.into(), arity: fsm_sdk::Arity::AtLeast(1), write, keys }
    }

    #[test]
    fn rules_apply_in_order_like_acl_setuser() {
        let user = User::from_spec(&spec("u", &["+@all", "-@dangerous", "+keys"], &["*"])).expect("valid");
        let admin = local_categories("join", None);
        assert!(!user.may_run("join", "join", admin));
        assert!(user.may_run("keys", "keys", module_categories(&info("keys", false, fsm_sdk::KeySpec::none()))));
        assert!(user.may_run("get", "get", Categories::READ));
        assert!(!user.is_unrestricted());
        let reader = User::from_spec(&spec("r", &["+@read", "+@connection"], &["*"])).expect("valid");
        assert!(!reader.may_run("set", "set", Categories::WRITE.with(Categories::STRING)));
        assert!(reader.may_run("ping", "ping", local_categories("ping", None)));
        assert!(!reader.may_run("acl", "acl|list", local_categories("acl", Some(b"list"))));
        let sub = User::from_spec(&spec("s", &["+acl|whoami"], &["*"])).expect("valid");
        assert!(sub.may_run("acl", "acl|whoami", local_categories("acl", Some(b"whoami"))));
        assert!(!sub.may_run("acl", "acl|list", local_categories("acl", Some(b"list"))));
    }

    #[test]
    fn keys_are_checked_at_the_modules_key_positions() {
        let user = User::from_spec(&spec("u", &["allcommands"], &["app:*"])).expect("valid");
        let mset = info("mset", true, fsm_sdk::KeySpec { first: 1, last: -1, step: 2 });
        assert_eq!(check_module_command(&user, &mset, &["MSET", "app:1", "x", "app:2", "other"]), Ok(()));
        assert_eq!(check_module_command(&user, &mset, &["MSET", "app:1", "x", "nope", "y"]), Err(Denied::Key));
        let dbsize = info("dbsize", false, fsm_sdk::KeySpec::none());
        assert_eq!(check_module_command(&user, &dbsize, &["DBSIZE"]), Ok(()));
    }

    #[test]
    fn passwords_are_checked_by_digest_and_disabled_users_never_pass() {
        let user = User::from_spec(&spec("u", &[], &[])).expect("valid");
        assert!(user.accepts(b"pw"));
        assert!(!user.accepts(b"pw "));
        let mut off = spec("off", &[], &[]);
        off.enabled = false;
        assert!(!User::from_spec(&off).expect("valid").accepts(b"pw"));
    }

    #[test]
    fn bad_definitions_are_refused_with_the_user_named() {
        let err = User::from_spec(&spec("u", &["+@nosuch"], &[])).expect_err("unknown category");
        assert!(err.to_string().contains("user 'u'") && err.to_string().contains("@nosuch"), "{err}");
        let mut bad = spec("u", &[], &[]);
        bad.password_sha256 = vec!["abc".into()];
        assert!(User::from_spec(&bad).expect_err("short digest").to_string().contains("64 hex digits"));
        assert!(Rule::parse("get").is_err());
    }

    #[test]
    fn the_default_user_follows_requirepass_and_the_user_list() {
        let open = Acl::default();
        assert!(open.initial_user().is_some_and(|u| u.is_unrestricted()));
        let locked = Acl::new(parse_sha256(&sha("secret")), Vec::new());
        assert!(locked.initial_user().is_none());
        assert!(locked.authenticate(b"default", b"secret").is_some());
        assert!(locked.authenticate(b"default", b"wrong").is_none());
        let listed = Acl::new(None, vec![User::from_spec(&spec("app", &["+@all"], &["*"])).expect("valid")]);
        assert!(listed.initial_user().is_none());
        assert!(listed.authenticate(b"default", b"").is_none());
        assert_eq!(listed.users()[1].describe(), format!("user app on #{} ~* &* +@all", sha("pw")), "ACL LIST's shape");
    }
}
