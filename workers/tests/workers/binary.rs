//! The `workers` binary refuses bad configuration with a clear message, before touching
//! Redis or the database.

use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_workers"))
        .args(args)
        .output()
        .expect("run the workers binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_queue_is_refused_by_name() {
    let (ok, stderr) = run(&["--queues", "ingest,reports", "--no-metrics"]);
    assert!(!ok);
    assert!(stderr.contains("unknown queue \"reports\""), "{stderr}");
    assert!(
        stderr.contains("silence_check"),
        "lists the queues it runs: {stderr}"
    );
}

#[test]
fn a_malformed_queue_width_is_refused() {
    let (ok, stderr) = run(&["--queue-concurrency", "notify", "--no-metrics"]);
    assert!(!ok);
    assert!(stderr.contains("expected queue=width"), "{stderr}");
    let (ok, stderr) = run(&["--queue-concurrency", "notify=many", "--no-metrics"]);
    assert!(!ok);
    assert!(stderr.contains("width of notify"), "{stderr}");
}

#[test]
fn a_negative_priority_aging_or_schedule_period_is_refused_naming_the_flag() {
    let (ok, stderr) = run(&["--priority-aging-secs=-5", "--no-metrics"]);
    assert!(!ok);
    assert!(stderr.contains("--priority-aging-secs"), "{stderr}");
    let (ok, stderr) = run(&["--schedules-every-ms", "soon", "--no-metrics"]);
    assert!(!ok);
    assert!(stderr.contains("--schedules-every-ms"), "{stderr}");
}
