//! Outside tools some tests drive (promtool, Prometheus, Chromium, twilio-python).
//!
//! A developer's `cargo test` may lack them, so a missing tool skips that one check
//! with a `SKIPPED:` notice. Under CI (`CI` set to anything but empty, `0` or
//! `false`, as `.ci/run` and CI services set it) `.ci/run` has installed them, so a
//! missing tool is a failure: a check that silently skips in CI checks nothing.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// What to do about a tool, decided from the environment alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolDecision {
    /// The tool is there: run the check.
    Run,
    /// Missing outside CI: print `SKIPPED:` and pass.
    Skip,
    /// Missing under CI: fail the test.
    Fail,
}

/// The decision for a tool, given the value of `CI` and whether the tool was found.
pub fn decide(ci: Option<&str>, found: bool) -> ToolDecision {
    let under_ci = ci.is_some_and(|v| !matches!(v.trim(), "" | "0" | "false" | "FALSE" | "False"));
    match (found, under_ci) {
        (true, _) => ToolDecision::Run,
        (false, false) => ToolDecision::Skip,
        (false, true) => ToolDecision::Fail,
    }
}

/// Applies [`decide`] to what was found: `Some` to run the check, `None` to skip
/// it (after printing why); panics under CI when the tool is missing.
fn require<T>(what: &str, found: Option<T>) -> Option<T> {
    let ci = std::env::var("CI").ok();
    match decide(ci.as_deref(), found.is_some()) {
        ToolDecision::Run => found,
        ToolDecision::Skip => {
            eprintln!("SKIPPED: {what} is missing (bash .ci/run installs it)");
            None
        }
        ToolDecision::Fail => {
            panic!("{what} is missing under CI; .ci/run installs it (CI={ci:?})")
        }
    }
}

/// The path of an executable found on `PATH`, or `None` (skip) outside CI.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    });
    require(name, found)
}

/// The `python3` that can import `module`, or `None` (skip) outside CI.
pub fn require_python_module(module: &str) -> Option<PathBuf> {
    let python = require_tool("python3")?;
    let imports = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require(
        &format!("the python3 package `{module}`"),
        imports.then_some(python),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_fails_only_under_ci() {
        use ToolDecision::*;
        for ci in [Some("true"), Some("1"), Some("yes"), Some("TRUE")] {
            assert_eq!(decide(ci, false), Fail, "CI={ci:?}");
            assert_eq!(decide(ci, true), Run, "CI={ci:?}");
        }
        for ci in [None, Some(""), Some("0"), Some("false"), Some(" false ")] {
            assert_eq!(decide(ci, false), Skip, "CI={ci:?}");
            assert_eq!(decide(ci, true), Run, "CI={ci:?}");
        }
    }
}
