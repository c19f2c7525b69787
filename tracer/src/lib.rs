//! tcptrace: watch the Linux TCP stack from inside the kernel.
//!
//! The pipeline follows the data: [`hooks`] loads and attaches the kernel
//! programs (offsets from [`tracefs`] and [`btf`]), [`live`] drains their
//! ring buffer and [`wire`] decodes records into [`event::Event`]s (or
//! [`replay`] reads them back from a [`record`]ing); the [`pipeline`] runs
//! them through the [`engine`] (owners, flows, census, connect outcomes),
//! the [`filter`] and a [`views`] view into a [`sinks`] output.

pub mod btf;
pub mod cli;
pub mod engine;
pub mod event;
pub mod filter;
pub mod hooks;
pub mod live;
pub mod memory;
pub mod pipeline;
pub mod procnet;
pub mod record;
pub mod replay;
pub mod sinks;
pub mod tracefs;
pub mod views;
pub mod wire;
