//! Upload names: what a client calls its file, checked once at the edge.

/// The longest name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// A validated upload name: 1 to 255 bytes, a relative `/`-separated path (the client names
/// a file by its path under its working directory): never absolute, no empty, `.` or `..`
/// segment, no `\`, no `..` anywhere and no control characters.
///
/// Names are metadata only; blobs are stored under server-chosen ids, so a name can
/// never steer a path. The rules still refuse what would be dangerous if an App later
/// wrote the name to disk under a directory of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadName(String);

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty or longer than [`MAX_NAME_BYTES`].
    #[error("a name is 1 to {MAX_NAME_BYTES} bytes")]
    Length,
    /// The name holds `\`, `..` or a control character, or is not a relative path of
    /// non-empty segments.
    #[error(
        "a name is a relative path of '/'-separated segments, without '\\', '..', '.' segments or control characters"
    )]
    Forbidden,
}

impl UploadName {
    /// Validates a name.
    ///
    /// # Errors
    /// [`NameError`] naming the broken rule.
    pub fn parse(name: &str) -> Result<Self, NameError> {
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(NameError::Length);
        }
        if name.contains('\\') || name.contains("..") || name.chars().any(char::is_control) {
            return Err(NameError::Forbidden);
        }
        if name
            .split('/')
            .any(|segment| segment.is_empty() || segment == ".")
        {
            return Err(NameError::Forbidden);
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in [
            "a",
            "report.json",
            "coverage (1).xml",
            "ünïcode.txt",
            &"x".repeat(255),
            "results/a.json",
            "logs/deep/er/run 1.txt",
        ] {
            assert!(UploadName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rule_upload_names_refuse_paths_and_controls() {
        for bad in [
            "", "a\\b", "..", "a..b", "../etc", "a\nb", "a\0", "\u{7f}", "\u{85}x",
        ] {
            assert!(UploadName::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(UploadName::parse(&"x".repeat(256)), Err(NameError::Length));
    }

    #[test]
    fn rule_upload_names_are_relative_paths_never_absolute_never_dotdot() {
        for bad in [
            "/etc/passwd",
            "a/",
            "a//b",
            "./a",
            "a/./b",
            "a/../b",
            "a/..",
            "/",
            "a/b\\c",
        ] {
            assert_eq!(UploadName::parse(bad), Err(NameError::Forbidden), "{bad:?}");
        }
        assert!(UploadName::parse("dist/linux/report.json").is_ok());
    }
}
