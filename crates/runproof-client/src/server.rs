//! Which server, and which audience to request for it: the server URL is checked before any
//! credential is sent, and an audience the server announces is requested only when its host
//! is the server's.

use serde::Deserialize;

use crate::error::{ClientError, ForeignAudience, ServerUrlError};
use crate::http::{read_json, retry_after, retry_delays, retryable};

/// Refuses plain `http://` to anything but loopback (the credentials are bearer tokens),
/// and a user or password in the URL.
///
/// # Errors
/// [`ServerUrlError`] when the URL is not acceptable.
pub fn check_server_url(url: &str) -> Result<(), ServerUrlError> {
    let parsed = url::Url::parse(url).map_err(|source| ServerUrlError::NotAUrl {
        url: url.to_owned(),
        source,
    })?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ServerUrlError::UserInfo {
            url: url.to_owned(),
        });
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err(ServerUrlError::Cleartext {
                    url: url.to_owned(),
                })
            }
        }
        other => Err(ServerUrlError::Scheme {
            url: url.to_owned(),
            scheme: other.to_owned(),
        }),
    }
}

/// Accepts an audience discovered from the server only when it is a URL whose host is the
/// server URL's host: otherwise a hostile server could have the job's OIDC token minted for
/// another service (a cloud provider's STS) and receive it.
///
/// # Errors
/// [`ForeignAudience`], before any token is requested.
pub fn check_discovered_audience(server_url: &str, audience: &str) -> Result<(), ForeignAudience> {
    let server_host = url::Url::parse(server_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let audience_host = url::Url::parse(audience)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned));
    match audience_host {
        Some(host) if !server_host.is_empty() && host.eq_ignore_ascii_case(&server_host) => Ok(()),
        _ => Err(ForeignAudience {
            server_url: server_url.to_owned(),
            server_host,
            audience: audience.to_owned(),
        }),
    }
}

#[derive(Deserialize)]
struct WellKnown {
    audience: String,
}

/// Asks the server which audience to request, retrying a `429`, `408`, `5xx` or an
/// unreachable server like an upload. The answer is not checked here: see
/// [`check_discovered_audience`].
///
/// # Errors
/// When the server cannot be reached after `attempts` ([`ClientError::GaveUpOnAudience`]),
/// refuses, or answers oddly.
pub async fn discover_audience(
    http: &reqwest::Client,
    base: &str,
    attempts: usize,
) -> Result<String, ClientError> {
    let url = format!("{}/.well-known/runproof", base.trim_end_matches('/'));
    let mut delays = retry_delays(attempts);
    loop {
        let (error, wait) = match http.get(&url).send().await {
            Ok(resp) if resp.status().is_success() => {
                return Ok(read_json::<WellKnown>(resp)
                    .await
                    .map_err(|source| ClientError::AudienceAnswer {
                        url: url.clone(),
                        source,
                    })?
                    .audience);
            }
            Ok(resp) if retryable(resp.status()) => (
                ClientError::Answered {
                    url: url.clone(),
                    status: resp.status(),
                },
                retry_after(&resp),
            ),
            Ok(resp) => {
                return Err(ClientError::Answered {
                    url,
                    status: resp.status(),
                });
            }
            Err(e) => (
                ClientError::Unreachable {
                    url: url.clone(),
                    error: e.without_url(),
                },
                None,
            ),
        };
        match delays.next() {
            Some(delay) => {
                let delay = wait.map_or(delay, |w| w.max(delay));
                eprintln!("{}; retrying in {delay:?}", crate::error::chain(&error));
                tokio::time::sleep(delay).await;
            }
            None => return Err(ClientError::GaveUpOnAudience(Box::new(error))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_server_url_with_user_info_is_never_loopback() {
        for bad in [
            "http://127.0.0.1:@evil.invalid/",
            "http://127.0.0.1@evil.invalid/",
            "http://localhost:x@evil.invalid",
            "https://user:pass@runproof.example.com",
            "http://localhost.evil.invalid",
            "http://127.0.0.1.evil.invalid",
            "ftp://127.0.0.1/",
        ] {
            assert!(check_server_url(bad).is_err(), "{bad}");
        }
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost/",
            "http://[::1]:1/",
            "https://runproof.example.com",
        ] {
            assert!(check_server_url(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rule_discovered_audience_host_is_the_server_host() {
        let server = "https://runproof.example.com:8443/base";
        for bad in [
            "sts.amazonaws.com",
            "https://sts.amazonaws.com",
            "https://runproof.example.com.evil.invalid",
            "https://evil.invalid/runproof.example.com",
            "https://runproof.example.com@evil.invalid",
            "api://AzureADTokenExchange",
            "",
        ] {
            assert!(
                check_discovered_audience(server, bad).is_err(),
                "{bad:?} must be refused"
            );
        }
        for ok in [
            "https://runproof.example.com",
            "https://RunProof.Example.com/tenant",
            "http://runproof.example.com:1",
        ] {
            assert!(check_discovered_audience(server, ok).is_ok(), "{ok}");
        }
        let err = check_discovered_audience("http://127.0.0.1:1", "sts.amazonaws.com")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--audience"), "{err}");
    }
}
