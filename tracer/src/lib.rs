//! tcptrace: watch the Linux TCP stack from inside the kernel.
//!
//! The data goes one way, through one door. A source, [`live`] (the
//! kernel programs [`hooks`] loads, with offsets from [`tracefs`] and
//! [`btf`], their records decoded by [`wire`], sockets from before start-up
//! read by [`procnet`]) or [`replay`] (a [`record`]ing), only pushes
//! [`pipeline::Input`]s into the [`pipeline`]. There the [`engine`] annotates
//! each [`event::Event`] (owners, flows, census, connect outcomes), the
//! [`filter`] is applied once, a view of [`views`] says what happened as
//! typed records, and the output of [`sinks`] renders them (text, JSON
//! Lines, a recording) and owns the clock, `--count` and lost records.
//! The kernel's own TCP [`counters`] enter through the same door. For
//! `doctor`, [`sockdiag`] reads the socket tables with their queues and
//! timers, and [`sysctls`] the TCP settings and what they mean.
//! [`agent`] taps that output into Prometheus [`metrics`].

pub mod agent;
pub mod btf;
pub mod cli;
pub mod counters;
pub mod doctor;
pub mod engine;
pub mod event;
pub mod filter;
pub mod generate;
pub mod hooks;
pub mod keys;
pub mod live;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod procnet;
pub mod record;
pub mod replay;
pub mod sinks;
pub mod sockdiag;
pub mod stderr;
pub mod sysctls;
pub mod tracefs;
pub mod views;
pub mod wire;
