//! TLS for the client port and the peer port, with rustls (never OpenSSL bindings).
//!
//! * **Client port** (`tls`): the node presents `cert_file`; with `client_ca_file`, clients must
//!   present a certificate that CA signed (mutual TLS). A follower forwarding writes connects to
//!   the leader's client port over TLS too, trusting `ca_file`, and presents its own certificate
//!   when the port requires one.
//! * **Peer port** (`peer_tls`): mutual TLS. Every node presents a certificate signed by the
//!   cluster's CA (`ca_file`) and accepts only peers that do, before any RPC is read.
//!
//! **Names.** Nodes reach each other by the addresses in the membership (`127.0.0.1:7002`), not
//! by names a certificate would carry, so a node checks that a peer's (or the leader's)
//! certificate chains to the private CA it was given and is valid now, and does not match the
//! name ([`ChainOnly`]). Whoever holds a certificate from that CA is a node: keep the CA for
//! nodes alone. Clients check the node's name as usual (`redis-cli --tls --sni`, or an IP SAN).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// Why TLS settings could not be loaded: the message names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct TlsError {
    /// The file at fault.
    pub file: String,
    /// What is wrong with it.
    pub message: String,
}

fn error(file: &Path, message: impl Into<String>) -> TlsError {
    TlsError { file: file.display().to_string(), message: message.into() }
}

/// ring, rather than rustls's default aws-lc-rs: it builds in seconds with the C compiler Rust
/// already needs (aws-lc-rs compiles a large C library on every clean build, which CI pays on
/// two cores). rustls 0.23.48 deprecates it for lacking post-quantum key exchange; moving to
/// aws-lc-rs is this function and a feature flag.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in a PEM file (a chain: the node's first).
pub fn certificates(file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(file).map_err(|e| error(file, format!("cannot read: {e}")))?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(file, format!("not a PEM certificate: {e}")))?;
    if certificates.is_empty() {
        return Err(error(file, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    for certificate in &certificates {
        // Parsing now, so that a damaged certificate stops the node at start, not at the first
        // handshake.
        webpki_parse(certificate).map_err(|e| error(file, format!("a certificate does not parse: {e}")))?;
    }
    Ok(certificates)
}

fn webpki_parse(certificate: &CertificateDer<'_>) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    roots.add(certificate.clone()).map_err(|e| e.to_string())
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(file: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(file).map_err(|e| error(file, format!("cannot read: {e}")))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| error(file, format!("holds no usable PEM private key: {e}")))
}

/// The CA certificates in a PEM file, as trust roots.
pub fn roots(file: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(file)? {
        roots.add(certificate).map_err(|e| error(file, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(Arc::new(roots))
}

/// A server side: presents `cert_file` / `key_file`; with `client_ca`, requires client
/// certificates signed by it.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| error(cert_file, e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
                .build()
                .map_err(|e| error(ca, format!("cannot verify clients with it: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certificates(cert_file)?, private_key(key_file)?)
        .map_err(|e| error(key_file, format!("does not match {}: {e}", cert_file.display())))?;
    Ok(Arc::new(config))
}

/// A client side for node-to-node connections: trusts certificates chained to `ca` whatever
/// their name ([`ChainOnly`]); presents `identity` (certificate and key files) when given.
pub fn node_client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Arc<ClientConfig>, TlsError> {
    let verifier = ChainOnly::new(roots(ca)?, ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| error(ca, e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|e| error(key, format!("does not match {}: {e}", cert.display())))?,
    };
    Ok(Arc::new(config))
}

/// The name a node-to-node connection asks for: never checked ([`ChainOnly`]), but rustls needs
/// one.
pub fn node_server_name() -> ServerName<'static> {
    ServerName::try_from("redraft-node").expect("a valid DNS name")
}

/// Verifies a node's certificate by its chain to the cluster's CA and its validity period, not
/// by name (see the module docs).
#[derive(Debug)]
pub struct ChainOnly {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ChainOnly {
    fn new(roots: Arc<RootCertStore>, ca: &Path) -> Result<Self, TlsError> {
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| error(ca, format!("cannot verify nodes with it: {e}")))?;
        Ok(ChainOnly { inner })
    }
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
