//! The stock Redis tools (`redis-cli`, `redis-benchmark`, from Debian's `redis-tools`, which
//! `make test` installs with `redis-server`) run as child processes with a deadline.

use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long one `redis-cli` run may take.
pub const REDIS_CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one `redis-benchmark` run may take (a slow machine, every request through Raft).
pub const REDIS_BENCHMARK_TIMEOUT: Duration = Duration::from_secs(600);

/// Finds `program` in the directories of `PATH`, or panics saying how to install it.
pub fn find_on_path(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file()).unwrap_or_else(
        || {
            panic!(
                "`{program}` is not on PATH: install Debian's redis-tools \
                 (`apt-get install redis-tools`; `make test` installs it with redis-server)"
            )
        },
    )
}

/// Runs `redis-cli` with `args`, feeding `stdin` (if any; otherwise stdin is empty), and returns
/// its output once it exits. Panics if it runs longer than [`REDIS_CLI_TIMEOUT`].
pub fn redis_cli(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(find_on_path("redis-cli"));
    cmd.args(args);
    run_with_deadline(cmd, stdin.unwrap_or(""), REDIS_CLI_TIMEOUT)
}

/// Runs `redis-benchmark` with `args` and returns its output once it exits. Panics if it runs
/// longer than [`REDIS_BENCHMARK_TIMEOUT`].
pub fn redis_benchmark(args: &[&str]) -> Output {
    let mut cmd = Command::new(find_on_path("redis-benchmark"));
    cmd.args(args);
    run_with_deadline(cmd, "", REDIS_BENCHMARK_TIMEOUT)
}

/// Runs `cmd` with `stdin` as its input and its stdout and stderr captured in anonymous files (so
/// a chatty child never blocks on a full pipe while we poll it). Kills it and panics, with what
/// it printed, if it is still running after `timeout`.
pub fn run_with_deadline(mut cmd: Command, stdin: &str, timeout: Duration) -> Output {
    let described = format!("{cmd:?}");
    let mut out = tempfile::tempfile().expect("temp file for stdout");
    let mut err = tempfile::tempfile().expect("temp file for stderr");
    cmd.stdin(Stdio::piped())
        .stdout(out.try_clone().expect("clone stdout file"))
        .stderr(err.try_clone().expect("clone stderr file"));
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {described}: {e}"));
    let mut pipe = child.stdin.take().expect("piped stdin");
    let input = stdin.as_bytes().to_vec();
    // A writer thread: a child that does not read its input must not block us.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().unwrap_or_else(|e| panic!("waiting for {described}: {e}")) {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => break None,
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let timed_out = status.is_none();
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        child.wait().unwrap_or_else(|e| panic!("waiting for {described}: {e}"))
    });
    let _ = writer.join();
    let read = |file: &mut std::fs::File| {
        let mut bytes = Vec::new();
        file.rewind().and_then(|()| file.read_to_end(&mut bytes)).expect("read captured output");
        bytes
    };
    let output = Output { status, stdout: read(&mut out), stderr: read(&mut err) };
    if timed_out {
        panic!(
            "{described} still ran after {timeout:?} and was killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_input_are_captured() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "cat; echo oops >&2; exit 3"]);
        let output = run_with_deadline(cmd, "hello\n", Duration::from_secs(30));
        assert_eq!(output.status.code(), Some(3));
        assert_eq!(output.stdout, b"hello\n");
        assert_eq!(output.stderr, b"oops\n");
    }

    #[test]
    fn a_child_past_its_deadline_is_killed() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; exec sleep 1000"]);
        let started = Instant::now();
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_with_deadline(cmd, "", Duration::from_millis(300))
        }))
        .expect_err("the deadline passes");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("still ran after 300ms and was killed"), "{message}");
        assert!(message.contains("started"), "the output is shown: {message}");
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn a_missing_program_names_the_package() {
        let panic = std::panic::catch_unwind(|| find_on_path("redraft-no-such-tool")).expect_err("missing");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("redis-tools"), "{message}");
    }
}
