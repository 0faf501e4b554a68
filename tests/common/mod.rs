//! Helpers shared by the integration tests that run the `roomsim` binary.
#![allow(dead_code)] // each test file uses its own subset

use std::path::Path;
use std::process::{Command, Output};

/// Runs `roomsim` with `args` in `cwd`.
pub fn roomsim_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roomsim")).current_dir(cwd).args(args).output().expect("run roomsim")
}

/// Runs `roomsim` with `args` in the repository root.
pub fn roomsim(args: &[&str]) -> Output {
    roomsim_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

/// The path of a bundled scenario.
pub fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name).to_string_lossy().into_owned()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Requires success without a panic; returns (stdout, stderr).
pub fn ok(o: Output, what: &str) -> (String, String) {
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{what}: {:?}\nstdout:\n{out}\nstderr:\n{err}", o.status);
    assert!(!err.contains("panicked"), "{what}: {err}");
    (out, err)
}

/// Requires exit code `code` without a panic; returns stderr.
pub fn fails(o: Output, code: i32, what: &str) -> String {
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(code), "{what}: stdout:\n{out}\nstderr:\n{err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    err
}
