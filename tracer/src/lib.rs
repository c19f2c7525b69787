//! tcptrace: watch the Linux TCP stack from inside the kernel.
//!
//! The pipeline follows the data: [`hooks`] loads and attaches the kernel
//! programs (offsets from [`tracefs`]), [`live`] drains their ring buffer,
//! [`wire`] decodes records into [`event::Event`]s, the [`engine`] annotates
//! them (owners, time in state), [`filter`] keeps what the user asked for,
//! and a [`views`] view writes records to a [`sinks`] output.

pub mod btf;
pub mod cli;
pub mod engine;
pub mod event;
pub mod filter;
pub mod hooks;
pub mod live;
pub mod procnet;
pub mod sinks;
pub mod tracefs;
pub mod views;
pub mod wire;
