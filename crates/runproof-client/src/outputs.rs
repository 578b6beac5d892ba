//! The step's outputs: `upload-ids` in `$GITHUB_OUTPUT` and a table in
//! `$GITHUB_STEP_SUMMARY`, written so that no value can add an output or break the table.

use std::io::Write as _;

use crate::error::ClientError;
use crate::http::is_canonical_uuid;
use crate::shown::markdown_cell;
use crate::upload::Uploaded;

/// One `$GITHUB_OUTPUT` entry in the delimiter form (`name<<DELIMITER`), with a random
/// delimiter that the value does not contain, so no value can end the entry early or add
/// another output.
///
/// # Errors
/// [`ClientError::OutputName`] when the name is not a plain output name.
pub fn output_entry(name: &str, value: &str) -> Result<String, ClientError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ClientError::OutputName(name.to_owned()));
    }
    // A random UUID cannot be in the value unless the value was made to hold it: then pick
    // another; a few tries are more than enough.
    for _ in 0..8 {
        let delimiter = format!("ghadelimiter_{}", uuid::Uuid::new_v4());
        if !value.contains(&delimiter) {
            return Ok(format!("{name}<<{delimiter}\n{value}\n{delimiter}\n"));
        }
    }
    Err(ClientError::NoDelimiter(name.to_owned()))
}

/// Appends `text` to the file that `var` names, when it is set.
fn append(var: &'static str, text: &str) -> Result<(), ClientError> {
    if let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| ClientError::OutputFile { var, source })?;
        f.write_all(text.as_bytes())?;
    }
    Ok(())
}

/// Writes `upload-ids` to `$GITHUB_OUTPUT` and a table to `$GITHUB_STEP_SUMMARY`, when set.
///
/// # Errors
/// When either file cannot be appended to, or an id is not a canonical UUID.
pub fn write_github_files(uploads: &[Uploaded]) -> Result<(), ClientError> {
    // Ids were checked as canonical UUIDs when the answers were read; checked again here
    // because this is where an id would do harm.
    let mut ids = Vec::with_capacity(uploads.len());
    for u in uploads {
        if !is_canonical_uuid(&u.id) {
            return Err(ClientError::NotCanonicalId);
        }
        ids.push(u.id.as_str());
    }
    append(
        "GITHUB_OUTPUT",
        &output_entry("upload-ids", &ids.join(","))?,
    )?;
    let mut summary = String::from(
        "### runproof uploads\n\n| file | size | sha256 | id | status |\n|---|---:|---|---|---|\n",
    );
    for u in uploads {
        let sha256: String = u
            .sha256
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(12)
            .collect();
        summary.push_str(&format!(
            "| {} | {} | `{sha256}` | `{}` | {} |\n",
            markdown_cell(&u.name),
            u.size,
            u.id,
            markdown_cell(&u.status)
        ));
    }
    append("GITHUB_STEP_SUMMARY", &summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_outputs_use_the_delimiter_form() {
        let entry = output_entry("upload-ids", "a\nupload-ids=pwned").unwrap();
        let mut lines = entry.lines();
        let head = lines.next().unwrap();
        let delimiter = head.strip_prefix("upload-ids<<").unwrap();
        assert!(delimiter.starts_with("ghadelimiter_") && delimiter.len() > 20);
        assert_eq!(entry.lines().filter(|l| *l == delimiter).count(), 1);
        assert!(entry.ends_with(&format!("\n{delimiter}\n")));
        assert!(output_entry("a\nb", "x").is_err());
        assert!(output_entry("a=b", "x").is_err());
    }
}
