//! TLS to Postgres, as RDS and most managed Postgres want it: libpq's `sslmode` and
//! `sslrootcert` in `database.url`, carried out by rustls (aws-lc-rs) through tokio-postgres's
//! TLS hook, since tokio-postgres itself knows only `disable`, `prefer` and `require` and
//! verifies nothing.
//!
//! | `sslmode` | TLS | certificate checked |
//! |---|---|---|
//! | absent, `disable` | no | — |
//! | `allow`, `prefer` | if the server offers it | as `require` |
//! | `require` | yes, or the connection fails | nothing; against the CA when one is given (`sslrootcert` or `ca_file`), as libpq does |
//! | `verify-ca` | yes | chain to the CA (or the system roots) |
//! | `verify-full` | yes | chain and the host name |
//!
//! The CA is `sslrootcert=<file>` in the URL, else `[database] ca_file` (for RDS, Amazon's
//! bundle `global-bundle.pem`); `sslrootcert=system` or neither means the system roots, which do
//! not hold RDS's CA. No `sslmode` means no TLS, unlike libpq's `prefer`: a plain local setup
//! pays no handshake it did not ask for.

use std::str::FromStr as _;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use diesel::ConnectionResult;
use diesel::result::ConnectionError;
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How to reach the database: the URL tokio-postgres is given (libpq-only parameters taken out)
/// and the TLS connector, if any.
pub(crate) struct Target {
    url: String,
    tls: Option<MakeRustlsConnect>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Target {
    /// Reads `sslmode` and `sslrootcert` from `url` (a `postgres://` URL; a key=value string is
    /// passed on as it is) and builds the connector.
    ///
    /// # Errors
    /// An unknown `sslmode`, or a CA file that cannot be read or holds no certificate.
    pub(crate) fn new(url: &str, ca_file: &str) -> anyhow::Result<Self> {
        let parsed = match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => u,
            _ => {
                anyhow::ensure!(ca_file.is_empty(), "database.ca_file needs database.url as a postgres:// URL");
                return Ok(Self { url: url.to_owned(), tls: None });
            }
        };
        let (mut mode, mut root) = (Mode::Disable, (!ca_file.is_empty()).then(|| ca_file.to_owned()));
        let mut kept = Vec::new();
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "sslmode" => {
                    mode = match value.as_ref() {
                        "disable" => Mode::Disable,
                        "allow" | "prefer" => Mode::Prefer,
                        "require" => Mode::Require,
                        "verify-ca" => Mode::VerifyCa,
                        "verify-full" => Mode::VerifyFull,
                        other => bail!(
                            "database.url: sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                        ),
                    }
                }
                "sslrootcert" => root = Some(value.into_owned()),
                _ => kept.push((key.into_owned(), value.into_owned())),
            }
        }
        if mode == Mode::Disable {
            anyhow::ensure!(
                root.is_none(),
                "database.url: a CA (sslrootcert or ca_file) without an sslmode that uses it"
            );
        }
        let mut stripped = parsed.clone();
        stripped.set_query(None);
        if mode != Mode::Disable || !kept.is_empty() {
            let mut query = stripped.query_pairs_mut();
            query.extend_pairs(&kept);
            match mode {
                Mode::Disable => {}
                Mode::Prefer => {
                    query.append_pair("sslmode", "prefer");
                }
                Mode::Require | Mode::VerifyCa | Mode::VerifyFull => {
                    query.append_pair("sslmode", "require");
                }
            }
        }
        let tls = match mode {
            Mode::Disable => None,
            _ => Some(MakeRustlsConnect::new(client_config(mode, root.as_deref())?)),
        };
        Ok(Self { url: stripped.into(), tls })
    }

    /// Whether connections use TLS (for the startup log).
    pub(crate) fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Opens one connection.
    pub(crate) async fn connect(&self) -> ConnectionResult<AsyncPgConnection> {
        let Some(tls) = &self.tls else {
            return AsyncPgConnection::establish(&self.url).await;
        };
        // With its causes: "error performing TLS handshake" alone does not say which check failed.
        let bad = |e: tokio_postgres::Error| {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                text = format!("{text}: {c}");
                cause = c.source();
            }
            ConnectionError::BadConnection(text)
        };
        let config = tokio_postgres::Config::from_str(&self.url).map_err(bad)?;
        let (client, connection) = config.connect(tls.clone()).await.map_err(bad)?;
        AsyncPgConnection::try_from_client_and_connection(client, connection).await
    }
}

fn client_config(mode: Mode, root: Option<&str>) -> anyhow::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    // libpq: `require` checks nothing unless a CA is given, and then checks the chain.
    let mode = if mode == Mode::Require || mode == Mode::Prefer {
        if root.is_some_and(|r| r != "system") { Mode::VerifyCa } else { Mode::Require }
    } else {
        mode
    };
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        Mode::Disable | Mode::Prefer | Mode::Require => Arc::new(AnyCertificate(provider)),
        Mode::VerifyCa | Mode::VerifyFull => {
            let roots = Arc::new(roots(root)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .context("building the certificate verifier")?;
            if mode == Mode::VerifyFull { webpki } else { Arc::new(ChainOnly(webpki)) }
        }
    };
    Ok(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth())
}

fn roots(root: Option<&str>) -> anyhow::Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match root {
        None | Some("system") => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            anyhow::ensure!(added > 0, "no system root certificates found (set database.ca_file or sslrootcert)");
        }
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("reading the database CA file {path}"))?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("the database CA file {path} is not PEM"))?;
            let (added, _) = store.add_parsable_certificates(certs);
            anyhow::ensure!(added > 0, "the database CA file {path} holds no certificate");
        }
    }
    Ok(store)
}

/// `require`: the session is encrypted and the handshake signature checked, but the certificate
/// is not (libpq's meaning; it guards against a passive listener only).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must reach a trusted CA; the host name is not compared. rustls checks
/// the chain before the name, so a name error means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_of(url: &str) -> String {
        Target::new(url, "").expect("a target").url
    }

    #[test]
    fn libpq_parameters_are_taken_out_and_others_kept() {
        assert_eq!(url_of("postgres://u:p@db:5432/app"), "postgres://u:p@db:5432/app");
        assert_eq!(
            url_of("postgres://u:p@db/app?sslmode=require&application_name=sesame"),
            "postgres://u:p@db/app?application_name=sesame&sslmode=require"
        );
        assert_eq!(url_of("postgres://db/app?sslmode=verify-full"), "postgres://db/app?sslmode=require");
        assert_eq!(url_of("postgres://db/app?sslmode=disable"), "postgres://db/app");
        assert!(Target::new("postgres://db/app", "").unwrap().tls.is_none());
        assert!(Target::new("postgres://db/app?sslmode=prefer", "").unwrap().tls.is_some());
    }

    #[test]
    fn bad_settings_are_refused() {
        let err = |url: &str, ca: &str| format!("{:#}", Target::new(url, ca).err().expect("refused"));
        assert!(err("postgres://db/app?sslmode=verify_full", "").contains("not one of"));
        assert!(
            err("postgres://db/app?sslmode=verify-ca&sslrootcert=/nonexistent.pem", "").contains("/nonexistent.pem")
        );
        assert!(err("postgres://db/app", "/etc/hostname").contains("without an sslmode"));
        assert!(err("postgres://db/app?sslmode=verify-full", "/etc/hostname").contains("holds no certificate"));
    }
}
