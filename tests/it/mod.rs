mod cli;
mod common;
mod dedup;
mod formats;
mod incremental;
mod rejections;
mod search;
