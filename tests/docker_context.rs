//! scripts/check-docker-context must catch a Dockerfile whose build stage leaves out a file the
//! code needs. Slow on a cold target directory (it checks every dependency once), so it is run
//! on demand: `cargo test --test docker_context -- --ignored`. `.ci/run` runs the script itself
//! on the real Dockerfile.

use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn check(dockerfile: &std::path::Path) -> std::process::Output {
    Command::new(format!("{ROOT}/scripts/check-docker-context")).arg(dockerfile).output().expect("script runs")
}

#[test]
#[ignore = "runs cargo check in a copied build context; slow on a cold target directory"]
fn the_check_passes_on_the_dockerfile_and_fails_when_a_needed_copy_is_removed() {
    let real = std::path::Path::new(ROOT).join("Dockerfile");
    let ok = check(&real);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&real).unwrap();
    let without: String = text.lines().filter(|l| !l.starts_with("COPY config")).map(|l| format!("{l}\n")).collect();
    assert_ne!(without, text, "the Dockerfile has a COPY config line to remove");
    let broken = dir.path().join("Dockerfile");
    std::fs::write(&broken, without).unwrap();
    let bad = check(&broken);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "a build context without config/ passed");
    assert!(err.contains("config/"), "the failure names the missing file: {err}");
}
