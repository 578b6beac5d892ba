//! The operator console at `/ui/`: server-rendered pages over the service and the store,
//! signed in with an API key.
//!
//! What it shows is mostly written by outsiders (upload names, workflow names, refs,
//! actors, webhook fields), so every page is an askama template that escapes HTML by
//! default, no page carries a script, and every answer has a strict
//! `Content-Security-Policy` (no inline script or style, no framing). Uploaded content is
//! only ever offered as an attachment. State-changing forms carry a CSRF token tied to the
//! session, and the session cookie is `HttpOnly` and `SameSite=Strict`.
//!
//! Threat model in brief: without a session every page redirects to sign-in; sign-in
//! compares the key in constant time and is rate-limited per address; a session is a
//! random token whose hash the store keeps, so signing out ends it on every replica.

pub(crate) mod chart;
mod page;
mod pages;
mod routes;
mod session;
mod view;

pub(crate) use routes::routes;
