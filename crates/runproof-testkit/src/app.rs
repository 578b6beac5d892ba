use std::fmt;

/// A GitHub App registered with [`crate::FakeGithub::register_app`]: what its owner
/// would configure in runproof (`[github] app_id`, `private_key_file`).
///
/// `Debug` redacts the key.
#[derive(Clone, PartialEq, Eq)]
pub struct AppCredentials {
    /// The App id, which the fake expects as the `iss` of App JWTs.
    pub app_id: u64,
    /// The App's RSA-2048 private key as PKCS#1 PEM
    /// (`-----BEGIN RSA PRIVATE KEY-----`, 64-column base64), the format of the keys
    /// GitHub lets App owners download.
    pub private_key_pem: String,
}

impl fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCredentials")
            .field("app_id", &self.app_id)
            .field("private_key_pem", &"<redacted>")
            .finish()
    }
}
