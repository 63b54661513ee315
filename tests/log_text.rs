//! `log.format: text` written to a file (as a container runtime collects stderr):
//! plain text, without the terminal's colour escape sequences.

#[path = "support/reliability.rs"]
mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn text_logs_written_to_a_file_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = dir.path().join("stderr.log");
    let yaml = config_yaml(dir.path(), "");
    assert!(yaml.contains("format: text"), "{yaml}");
    let server = ServerProcess::launch(
        dir,
        &yaml,
        Launch {
            stderr: Some(stderr.clone()),
            ..Launch::default()
        },
    );
    // An undecodable review is logged as a warning.
    assert_eq!(server.client.review(b"{not json").await.status, 400);
    let path = stderr.clone();
    let logged = eventually(PATIENCE, || {
        let path = path.clone();
        async move {
            std::fs::read_to_string(&path).is_ok_and(|text| text.contains("undecodable review"))
        }
    })
    .await;
    let text = std::fs::read_to_string(&stderr).unwrap();
    assert!(logged, "the warning was not logged: {text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape sequences in a log file: {text:?}"
    );
    assert!(text.contains("WARN"), "{text}");
}
