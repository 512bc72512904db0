//! Progress bars: `gemgate simulate` on a large trace draws one (rate and ETA) on a terminal, and
//! stays quiet when its output is not a terminal or is `--json`. The terminal is a real pty made
//! by util-linux `script`.

use std::process::Command;

const TRACE: &str = "testdata/traces/mooncake-conversation.jsonl";

fn simulate_args(json: bool) -> String {
    let mut cmd = format!("{} simulate --trace {TRACE} --model gemini-2.5-flash", env!("CARGO_BIN_EXE_gemgate"));
    if json {
        cmd.push_str(" --json");
    }
    cmd
}

/// Runs `cmd` with stdout and stderr on a pty; returns everything it wrote.
fn on_a_terminal(cmd: &str) -> String {
    let out = Command::new("script").args(["-qec", cmd, "/dev/null"]).output().expect("util-linux script runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn simulate_shows_progress_only_on_a_terminal_and_never_with_json() {
    let tty = on_a_terminal(&simulate_args(false));
    // One bar over every row's replay: seven strategy rows of 12,031 requests each.
    let total = format!("/{}", 7 * 12_031);
    assert!(tty.contains("ETA") && tty.contains(&total), "a bar with rate and ETA on a terminal:\n{tty}");
    assert!(tty.contains("oracle (lower bound)"), "the report follows:\n{tty}");

    let tty_json = on_a_terminal(&simulate_args(true));
    assert!(!tty_json.contains("ETA"), "--json draws no bar");
    let v: serde_json::Value = serde_json::from_str(tty_json.trim()).expect("only the JSON report is written");
    assert_eq!(v["requests"], 12_031);

    let piped = Command::new(env!("CARGO_BIN_EXE_gemgate"))
        .args(["simulate", "--trace", TRACE, "--model", "gemini-2.5-flash"])
        .output()
        .unwrap();
    assert!(piped.status.success());
    assert!(piped.stderr.is_empty(), "quiet when not a terminal: {}", String::from_utf8_lossy(&piped.stderr));
    assert!(String::from_utf8_lossy(&piped.stdout).contains("oracle (lower bound)"));
}
