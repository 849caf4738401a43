//! idx: turns a pile of JSON/JSONL training data into an indexed, de-duplicated, traceable dataset.
//!
//! The pipeline, one module per stage: [`source`] finds objects → [`parse`] reads records and
//! [`normalize`]s them → [`fingerprint`] hashes them → [`store`] (redb, the source of truth) and
//! [`search`] (tantivy, derived) keep them → [`ingest`] drives the whole, and [`query`] answers.
//! [`families`] classifies object keys; [`model`] holds the values passed between stages.

pub mod check;
pub mod config;
pub mod config_file;
pub mod curriculum;
pub mod daemon;
pub mod decontaminate;
pub mod derive;
pub mod error;
pub mod export;
pub mod failpoint;
pub mod families;
pub mod fingerprint;
pub mod index;
pub mod ingest;
pub mod init;
pub mod keep;
pub mod model;
pub mod neardup;
pub mod normalize;
pub mod overlap;
pub mod parallel;
pub mod parse;
pub mod pii;
pub mod query;
pub mod recipes;
pub mod repair;
pub mod rng;
pub mod scale;
pub mod search;
pub mod select;
pub mod source;
pub mod store;
pub mod structure;
pub mod verify;

pub use error::{Error, Result};
