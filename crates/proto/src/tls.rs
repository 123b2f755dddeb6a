//! TLS between Slipway's services (docs/tls.md): reading the PEM files the
//! settings name, so a missing or malformed file is a start error that
//! names its setting, and telling a failed TLS handshake from an
//! orchestrator that is merely down.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Reads a PEM file of certificates; `setting` names it in errors.
pub fn read_certs(setting: &str, path: &Path) -> Result<Vec<u8>, String> {
    let pem = read(setting, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{setting}: {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{setting}: {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(pem)
}

/// Reads a PEM file holding a private key; `setting` names it in errors.
pub fn read_key(setting: &str, path: &Path) -> Result<Vec<u8>, String> {
    let pem = read(setting, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        format!(
            "{setting}: {} holds no usable private key: {e}",
            path.display()
        )
    })?;
    Ok(pem)
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{setting}: cannot read {}: {e}", path.display()))
}

/// A path setting: `None` when empty (unset).
pub fn path_setting(value: &str) -> Option<&Path> {
    (!value.is_empty()).then(|| Path::new(value))
}

/// The gRPC server's TLS from `SLIPWAY_GRPC_TLS_CERT` and
/// `SLIPWAY_GRPC_TLS_KEY` (paths; empty: unset): `None` when neither is set.
pub fn server_config(
    cert: &str,
    key: &str,
) -> Result<Option<tonic::transport::ServerTlsConfig>, String> {
    match (path_setting(cert), path_setting(key)) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => {
            let cert = read_certs("SLIPWAY_GRPC_TLS_CERT", cert)?;
            let key = read_key("SLIPWAY_GRPC_TLS_KEY", key)?;
            // tonic's server side takes rustls's process default, which
            // rustls cannot pick when both of its back-ends are compiled
            // in; ring is the one this workspace uses. A second install
            // (tests) is refused, harmlessly.
            let _ = rustls::crypto::ring::default_provider().install_default();
            Ok(Some(
                tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(cert, key)),
            ))
        }
        _ => Err(
            "SLIPWAY_GRPC_TLS_CERT and SLIPWAY_GRPC_TLS_KEY go together: set both or neither"
                .to_owned(),
        ),
    }
}

/// The client TLS of an orchestrator URL: `None` for `http://`; for
/// `https://`, the CA in `ca` alone or else the system and webpki roots.
pub(crate) fn client_config(
    url: &str,
    https: bool,
    ca: Option<&Path>,
) -> Result<Option<tonic::transport::ClientTlsConfig>, String> {
    if !https {
        return match ca {
            Some(_) => Err(format!(
                "SLIPWAY_ORCHESTRATOR_CA is set but SLIPWAY_ORCHESTRATOR_URL {url:?} is not https://"
            )),
            None => Ok(None),
        };
    }
    let tls = tonic::transport::ClientTlsConfig::new();
    Ok(Some(match ca {
        Some(path) => {
            let pem = read_certs("SLIPWAY_ORCHESTRATOR_CA", path)?;
            tls.ca_certificate(tonic::transport::Certificate::from_pem(pem))
        }
        None => tls.with_enabled_roots(),
    }))
}

/// The TLS failure somewhere in `err`'s chain of sources, if the error is
/// one: a certificate the client does not trust, a TLS client talking to a
/// plain server, and the like.
pub fn failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        if let Some(tls) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls.to_string());
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_error(cert: &str, key: &str) -> String {
        match server_config(cert, key) {
            Ok(_) => panic!("accepted {cert:?} and {key:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn the_server_needs_both_files_or_neither() {
        assert!(matches!(server_config("", ""), Ok(None)));
        for (cert, key) in [("/x/cert.pem", ""), ("", "/x/key.pem")] {
            let err = start_error(cert, key);
            assert!(
                err.contains("SLIPWAY_GRPC_TLS_CERT") && err.contains("SLIPWAY_GRPC_TLS_KEY"),
                "{err}"
            );
        }
    }

    #[test]
    fn unusable_files_name_their_setting() {
        let dir = std::env::temp_dir().join(format!("proto-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not pem at all\n").unwrap_or_else(|e| panic!("{e}"));
        let junk = junk.display().to_string();
        let err = start_error("/nonexistent/cert.pem", &junk);
        assert!(
            err.starts_with("SLIPWAY_GRPC_TLS_CERT: cannot read"),
            "{err}"
        );
        let err = start_error(&junk, &junk);
        assert!(err.starts_with("SLIPWAY_GRPC_TLS_CERT:"), "{err}");
        assert!(err.contains("no PEM certificate"), "{err}");
        let err = read_key("SLIPWAY_GRPC_TLS_KEY", Path::new(&junk)).unwrap_err();
        assert!(err.starts_with("SLIPWAY_GRPC_TLS_KEY:"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_ca_needs_an_https_url() {
        let err = client_config("http://o:50051", false, Some(Path::new("/ca.pem")))
            .err()
            .unwrap_or_default();
        assert!(err.contains("SLIPWAY_ORCHESTRATOR_CA is set"), "{err}");
        assert!(matches!(
            client_config("http://o:50051", false, None),
            Ok(None)
        ));
        assert!(matches!(
            client_config("https://o", true, None),
            Ok(Some(_))
        ));
    }
}
