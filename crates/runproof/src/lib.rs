//! The `runproof` command: `serve`, `upload`, `demo` and `verify-token`.
//!
//! This crate wires the library crates together and owns everything a person types:
//! flags, the configuration file, environment overrides, and messages. The client that the
//! GitHub Action runs (`runproof upload`) is the `runproof-client` crate.
#![forbid(unsafe_code)]

pub mod config;
pub mod demo;
pub mod serve;
pub mod storage;
pub mod verify_token;
pub mod webhook_config;
