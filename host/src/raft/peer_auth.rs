//! Peers prove they belong: a challenge-response on every Raft connection over a secret all
//! nodes share (`cluster_secret_file`), before any RPC is sent or decoded.
//!
//! **Why.** The cluster id is an identifier, printed by `INFO raft`; it cannot be a credential.
//! Without a secret, whoever reaches the Raft port and knows the id can forge AppendEntries.
//!
//! **Exchange** (three frames, each in the transport's framing):
//! 1. the connecting node sends [`HELLO`] and a fresh 32-byte nonce `c`;
//! 2. the accepting node answers a fresh nonce `s` and `HMAC(secret, "server" ‖ c ‖ s)`;
//! 3. the connecting node checks it and answers `HMAC(secret, "client" ‖ c ‖ s)`.
//!
//! Both sides prove possession, neither reveals the secret, and fresh nonces on both sides make a
//! recorded exchange useless later. A side that fails the check closes the connection; the
//! accepting side logs the refusal and counts it ([`PeerAuth::refused`]). What this does not do:
//! protect the frames after the exchange from someone who can rewrite traffic on the path; that
//! is TLS's job.

use super::network::TransportError;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// The first bytes of the connecting node's frame: names the exchange and its version.
pub const HELLO: &[u8; 8] = b"RDAUTH01";
/// Bytes of each side's nonce.
const NONCE_BYTES: usize = 32;
/// Bytes of an HMAC-SHA-256 tag.
const TAG_BYTES: usize = 32;
/// The exchange must be over within this long (a peer that stalls is refused).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Shortest secret accepted, in bytes.
pub const SECRET_BYTES_MIN: usize = 32;

/// The cluster secret, from `cluster_secret_file`. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret(Vec<u8>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    /// The secret in a file's bytes, without surrounding whitespace (so `openssl rand -hex 32 >
    /// file` and an editor's trailing newline give the same secret).
    pub fn new(file: &[u8]) -> Result<Self, String> {
        let start = file.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(file.len());
        let end = file.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
        let secret = &file[start..end];
        if secret.len() < SECRET_BYTES_MIN {
            return Err(format!(
                "the cluster secret is {} bytes; it must be at least {SECRET_BYTES_MIN} (`openssl rand -hex 32`)",
                secret.len()
            ));
        }
        Ok(ClusterSecret(secret.to_vec()))
    }

    fn tag(&self, role: &[u8], client: &[u8], server: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(role);
        mac.update(client);
        mac.update(server);
        mac
    }
}

/// A node's side of the exchange: its secret (if the cluster has one) and how many peers it
/// refused.
#[derive(Debug, Default)]
pub struct PeerAuth {
    secret: Option<ClusterSecret>,
    refused: AtomicU64,
}

fn nonce() -> Result<[u8; NONCE_BYTES], TransportError> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce)
        .map_err(|e| TransportError::Io(std::io::Error::other(format!("no random nonce: {e}"))))?;
    Ok(nonce)
}

fn refused(why: &str) -> TransportError {
    TransportError::Refused(why.to_owned())
}

impl PeerAuth {
    /// With `secret`, every connection must pass the exchange; without, none is asked to.
    pub fn new(secret: Option<ClusterSecret>) -> Self {
        PeerAuth { secret, refused: AtomicU64::new(0) }
    }

    /// Counts a peer refused for another reason (a failed TLS handshake).
    pub fn count_refusal(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Peers refused since start (`INFO raft`'s `raft_peers_refused`).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The connecting side: proves the secret to the peer on `stream` and checks the peer's
    /// proof. Does nothing without a secret.
    pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(&self, stream: &mut S) -> Result<(), TransportError> {
        let Some(secret) = &self.secret else { return Ok(()) };
        let exchange = async {
            let client = nonce()?;
            let mut hello = HELLO.to_vec();
            hello.extend_from_slice(&client);
            super::network::write_frame(stream, &hello).await?;
            let answer =
                super::network::read_small_frame(stream, (NONCE_BYTES + TAG_BYTES) as u32).await.map_err(|e| {
                    refused(&format!(
                        "the peer did not answer the cluster-secret challenge ({e}); does it have cluster_secret_file?"
                    ))
                })?;
            if answer.len() != NONCE_BYTES + TAG_BYTES {
                return Err(refused("the peer's answer to the cluster-secret challenge is malformed"));
            }
            let (server, tag) = answer.split_at(NONCE_BYTES);
            secret
                .tag(b"server", &client, server)
                .verify_slice(tag)
                .map_err(|_| refused("the peer does not hold this cluster's secret"))?;
            let proof = secret.tag(b"client", &client, server).finalize().into_bytes();
            super::network::write_frame(stream, &proof).await
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
            .await
            .map_err(|_| refused("the peer did not finish the cluster-secret challenge in time"))?
    }

    /// The accepting side: challenges the peer on `stream`. Does nothing without a secret. A
    /// failure is counted; the caller closes the connection.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(&self, stream: &mut S) -> Result<(), TransportError> {
        let Some(secret) = &self.secret else { return Ok(()) };
        let exchange = async {
            let hello = super::network::read_small_frame(stream, (HELLO.len() + NONCE_BYTES) as u32).await?;
            let Some(client) = hello.strip_prefix(HELLO.as_slice()).filter(|c| c.len() == NONCE_BYTES) else {
                return Err(refused("the peer did not start the cluster-secret challenge (no cluster_secret_file?)"));
            };
            let server = nonce()?;
            let mut answer = server.to_vec();
            answer.extend_from_slice(&secret.tag(b"server", client, &server).finalize().into_bytes());
            super::network::write_frame(stream, &answer).await?;
            let proof = super::network::read_small_frame(stream, TAG_BYTES as u32).await?;
            secret
                .tag(b"client", client, &server)
                .verify_slice(&proof)
                .map_err(|_| refused("the peer does not hold this cluster's secret"))
        };
        let outcome = match tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange).await {
            Ok(Err(TransportError::Refused(why))) => Err(TransportError::Refused(why)),
            Ok(Err(e)) => Err(refused(&format!(
                "the peer broke off the cluster-secret challenge ({e}): it holds another secret, or none"
            ))),
            Ok(Ok(())) => Ok(()),
            Err(_) => Err(refused("the peer did not finish the cluster-secret challenge in time")),
        };
        if outcome.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime").block_on(future)
    }

    fn secret(byte: u8) -> Option<ClusterSecret> {
        Some(ClusterSecret::new(&[byte; 40]).expect("long enough"))
    }

    fn exchange(client: &PeerAuth, server: &PeerAuth) -> (Result<(), TransportError>, Result<(), TransportError>) {
        block_on(async {
            let (mut a, mut b) = tokio::io::duplex(1024);
            let (c, s) = tokio::join!(client.connect(&mut a), async {
                let outcome = server.accept(&mut b).await;
                drop(b);
                outcome
            });
            (c, s)
        })
    }

    #[test]
    fn peers_with_the_same_secret_pass_and_others_are_refused_and_counted() {
        let (c, s) = exchange(&PeerAuth::new(secret(1)), &PeerAuth::new(secret(1)));
        assert!(c.is_ok() && s.is_ok(), "{c:?} {s:?}");

        let server = PeerAuth::new(secret(1));
        let (c, s) = exchange(&PeerAuth::new(secret(2)), &server);
        assert!(matches!(c, Err(TransportError::Refused(ref why)) if why.contains("does not hold")), "{c:?}");
        assert!(s.is_err());
        assert_eq!(server.refused(), 1);
    }

    #[test]
    fn a_peer_without_the_secret_is_refused_before_any_rpc() {
        let server = PeerAuth::new(secret(1));
        let (_, s) = block_on(async {
            let (mut a, mut b) = tokio::io::duplex(1 << 16);
            // What a node without a secret sends first: an ordinary request frame.
            let request = async {
                let _ = super::super::network::write_frame(&mut a, &[0u8; 100]).await;
            };
            tokio::join!(request, server.accept(&mut b))
        });
        assert!(matches!(s, Err(TransportError::Refused(_)) | Err(TransportError::Malformed(_))), "{s:?}");
        assert_eq!(server.refused(), 1);
    }

    #[test]
    fn short_secrets_are_refused_and_whitespace_is_trimmed() {
        assert!(ClusterSecret::new(b"short\n").is_err());
        let hex = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let mut with_newline = hex.to_vec();
        with_newline.push(b'\n');
        assert_eq!(ClusterSecret::new(hex), ClusterSecret::new(&with_newline));
        assert_eq!(format!("{:?}", ClusterSecret::new(hex).expect("valid")), "ClusterSecret(..)");
    }
}
