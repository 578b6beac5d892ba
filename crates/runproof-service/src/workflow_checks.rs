//! Recent definite results of the workflow check, shared by every mode that makes it,
//! bounded. Below the service, which holds it; `workflow_check` fills and reads it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use runproof_core::RepositoryId;
use runproof_github::workflow::WorkflowCheck;

/// How long a check's result is kept (the file at a commit never changes).
const CHECK_TTL: Duration = Duration::from_secs(3600);
/// Results kept before expired ones are pruned; past it, new results are not kept.
const CACHE_BOUND: usize = 10_000;

/// A check's cache key: (repository id, workflow path, commit, action).
pub(crate) type CheckKey = (RepositoryId, String, String, String);

/// Recent definite results of the check, shared by every mode, bounded.
#[derive(Debug, Default)]
pub(crate) struct WorkflowChecks {
    results: Mutex<HashMap<CheckKey, (WorkflowCheck, Instant)>>,
}

impl WorkflowChecks {
    pub(crate) fn cached(&self, key: &CheckKey) -> Option<WorkflowCheck> {
        let results = self.results.lock().unwrap_or_else(PoisonError::into_inner);
        results
            .get(key)
            .filter(|(_, at)| at.elapsed() < CHECK_TTL)
            .map(|(c, _)| c.clone())
    }

    pub(crate) fn remember(&self, key: CheckKey, check: WorkflowCheck) {
        let mut results = self.results.lock().unwrap_or_else(PoisonError::into_inner);
        if results.len() >= CACHE_BOUND {
            results.retain(|_, (_, at)| at.elapsed() < CHECK_TTL);
        }
        if results.len() < CACHE_BOUND {
            results.insert(key, (check, Instant::now()));
        }
    }
}
