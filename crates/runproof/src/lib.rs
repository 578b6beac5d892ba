//! The `runproof` command: `serve`, `upload`, `demo` and `verify-token`.
//!
//! This crate wires the library crates together and owns everything a person types:
//! flags, the configuration file, environment overrides, and messages. The client that the
//! GitHub Action runs (`runproof upload`) is the `runproof-client` crate.
//!
//! `demo` and `serve --dev` run against the fake GitHub of `runproof-testkit`; they sit
//! behind the default-on `dev` feature, so `--no-default-features` builds a binary
//! without them and without the fake.
#![forbid(unsafe_code)]

pub mod config;
#[cfg(feature = "dev")]
pub mod demo;
pub mod serve;
pub mod storage;
pub mod verify_token;
pub mod webhook_config;
