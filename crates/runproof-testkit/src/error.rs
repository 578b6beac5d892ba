use std::io;

/// What can go wrong while running the fake GitHub.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// aws-lc-rs could not generate an RSA key pair.
    #[error("RSA key generation failed")]
    KeyGeneration,
    /// aws-lc-rs could not produce a signature.
    #[error("RS256 signing failed")]
    Signing,
    /// A JWT header or claims set could not be serialized.
    #[error("JSON serialization failed: {0}")]
    Json(#[from] serde_json::Error),
    /// Binding or inspecting the loopback listener failed.
    #[error("cannot listen on 127.0.0.1: {0}")]
    Listen(#[source] io::Error),
    /// A blocking helper task did not complete (it panicked or was cancelled).
    #[error("background task failed: {0}")]
    Task(String),
    /// A private key could not be exported or re-encoded (PKCS#8 to PKCS#1).
    #[error("private key encoding failed: {0}")]
    KeyEncoding(&'static str),
    /// The HTTP client could not be built (the message says why).
    #[error("HTTP client unavailable: {0}")]
    HttpClient(String),
    /// An HTTP request (such as a webhook delivery) failed before a response arrived.
    #[error("HTTP request failed: {0}")]
    Http(#[source] reqwest::Error),
}
