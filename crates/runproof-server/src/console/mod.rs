//! The operator console at `/ui/`: server-rendered pages over the service and the store,
//! signed in with an API key.

pub(crate) mod chart;
