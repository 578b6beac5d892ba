//! Which URLs runproof will fetch keys from.

use std::net::IpAddr;

use url::Url;

/// Why an issuer or key URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not a valid absolute URL.
    #[error("`{0}` is not a valid URL")]
    Invalid(String),
    /// Plain `http://` to a host that is not loopback.
    #[error("`{0}` must use https (http is accepted only for loopback hosts)")]
    InsecureScheme(String),
    /// Neither `https` nor `http`.
    #[error("`{0}` has an unsupported scheme")]
    UnsupportedScheme(String),
    /// The URL carries credentials, a query or a fragment, which an issuer never has.
    #[error("`{0}` must not carry credentials, a query or a fragment")]
    Extras(String),
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Parses an issuer (or JWKS) URL and checks that runproof may fetch from it.
///
/// # Errors
/// [`UrlError`] when the URL is invalid, not https (unless loopback http), or carries
/// credentials, a query or a fragment.
pub fn check_issuer_url(raw: &str) -> Result<Url, UrlError> {
    let url = Url::parse(raw).map_err(|_| UrlError::Invalid(raw.to_owned()))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => return Err(UrlError::InsecureScheme(raw.to_owned())),
        _ => return Err(UrlError::UnsupportedScheme(raw.to_owned())),
    }
    if url.host().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(UrlError::Extras(raw.to_owned()));
    }
    Ok(url)
}

/// Whether two URLs share scheme, host and port.
#[must_use]
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_http_issuers_only_on_loopback() {
        for ok in [
            "https://token.actions.githubusercontent.com",
            "https://token.actions.githubusercontent.com/octo-enterprise",
            "https://ghes.example.com/_services/token",
            "http://127.0.0.1:8080",
            "http://127.5.0.1",
            "http://[::1]:9000",
            "http://localhost:3000",
        ] {
            assert!(check_issuer_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://token.actions.githubusercontent.com",
            "http://10.0.0.1",
            "http://localhost.evil.com",
            "ftp://127.0.0.1",
            "https://user:pw@issuer.example",
            "https://issuer.example/#frag",
            "https://issuer.example/?q=1",
            "https://issuer.example/?",
            "not a url",
        ] {
            assert!(check_issuer_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn same_origin_compares_scheme_host_port() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(same_origin(
            &u("https://a.example/x"),
            &u("https://A.example:443/y")
        ));
        assert!(!same_origin(
            &u("https://a.example"),
            &u("https://b.example")
        ));
        assert!(!same_origin(
            &u("https://a.example"),
            &u("http://a.example")
        ));
        assert!(!same_origin(
            &u("http://127.0.0.1:1"),
            &u("http://127.0.0.1:2")
        ));
    }
}
