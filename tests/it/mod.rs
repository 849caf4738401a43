mod cli;
mod common;
mod crash;
mod dedup;
mod formats;
mod incremental;
mod rejections;
mod search;
