//! What the driver asks of a dev server over HTTP: fresh OIDC tokens from its Actions
//! token endpoint, and uploads. Depends on [`crate::server`].

use anyhow::{Context, bail};
use futures_util::StreamExt as _;
use serde_json::Value;

use crate::server::DevServer;

/// A fresh OIDC token for the server's audience from its Actions token endpoint.
pub(crate) async fn mint(http: &reqwest::Client, server: &DevServer) -> anyhow::Result<String> {
    let audience: String =
        url::form_urlencoded::byte_serialize(server.audience.as_bytes()).collect();
    let resp = http
        .get(format!("{}&audience={audience}", server.token_url))
        .header("authorization", format!("bearer {}", server.token_secret))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("token request answered {}", resp.status());
    }
    let body: Value = resp.json().await?;
    body.get("value")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("token response without `value`")
}

/// `n` fresh tokens, `concurrency` requests in flight.
pub(crate) async fn mint_many(
    http: &reqwest::Client,
    server: &DevServer,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    futures_util::stream::iter(0..n)
        .map(|_| mint(http, server))
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// POSTs one upload and returns the server's JSON answer; anything but 201 is an error.
pub(crate) async fn upload(
    http: &reqwest::Client,
    server: &DevServer,
    token: &str,
    body: reqwest::Body,
) -> anyhow::Result<Value> {
    let resp = http
        .post(format!("{}/v1/uploads?name=bench.bin", server.url))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await?;
    if status.as_u16() != 201 {
        bail!("upload answered {status}: {text}");
    }
    Ok(serde_json::from_str(&text)?)
}
