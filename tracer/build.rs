//! Builds the kernel programs (`tracer-ebpf`) with aya-build and leaves the
//! object in OUT_DIR for `include_bytes_aligned!`.
//!
//! With `AYA_BUILD_SKIP=1` (for `cargo check`, clippy and root-free unit
//! tests on machines without bpf-linker) an empty object is written instead;
//! a binary built that way refuses to trace and says how to build properly.
use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    let object = out.join("tracer");
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        // aya-build prints the warning and returns; leave an empty object.
        fs::write(&object, []).context("writing the empty eBPF object")?;
    }
    let manifest = env::var("CARGO_MANIFEST_DIR")?;
    let root = PathBuf::from(manifest).join("../tracer-ebpf");
    let root = root.to_str().context("non-UTF-8 path")?;
    // The kernel programs also change when the shared records do.
    println!("cargo:rerun-if-changed={root}/../tracer-common/src");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "tracer-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
