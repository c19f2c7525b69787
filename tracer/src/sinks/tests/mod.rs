//! What the user sees: each view's records through the text and JSON
//! renderers (schemas, columns, escapes), and the output's accounting of
//! what it could not write: the JSON schemas (`json.rs`), the text
//! columns and escapes (`text.rs`), and the accounting (`accounting.rs`).

use std::io::Write;

use super::{Mode, Output, OutputSpec, testing::capture};
use crate::{
    engine::{
        Annotated, Engine,
        tests::{outcome, owner, retrans, state, tuple},
    },
    event::{Clock, RetransKind, TcpState::*},
    record::Start,
    views::{
        Columns, Emit, View,
        connect::Connect,
        retrans::Retrans,
        states::States,
        testing::context,
        top::{SortBy, Top},
    },
};

/// A start whose clock puts monotonic zero at 2026-11-22T12:00:00Z.
fn start() -> Start {
    Start {
        clock: Clock::with_offset(1_795_348_800_000_000_000),
        ..Start::default()
    }
}

/// Runs `f` against an output in `mode` and returns what it wrote.
fn render(mode: Mode, f: impl FnOnce(&mut dyn Emit)) -> String {
    let (mut out, got) = capture(mode, None);
    out.start(&start(), Columns::None);
    f(&mut out);
    out.close().unwrap();
    got.text()
}

fn keys(v: &serde_json::Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

mod accounting;
mod json;
mod text;
