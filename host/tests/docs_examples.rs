//! The documentation's shell examples, run as a reader pastes them: the
//! README's tour and `docs/operations.md`'s requests, against a started
//! `psa-billing serve` with the README's settings (no Stripe account).
//! `cargo run -q -p psa-billing --` is the built binary and port 8787 a
//! free one; nothing else in a block is changed. What a block's comments
//! show (`"status":"accepted"`, `id: 1`, `94.30`) must be in its output,
//! and no request may be refused for its token, its content type or a
//! body that does not fit the operation.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The README's settings for `serve`.
const SECRET: &str = "whsec_local_dev";
const TOKEN: &str = "dev-token-0123456789";

/// The ```sh blocks of a Markdown file, in order.
fn shell_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```sh") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => blocks.push(current.take().unwrap()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Blocks that start a service, need a Stripe account or a machine's
/// set-up are not run here (the tests of their own cover them).
fn runnable(block: &str) -> bool {
    ![
        " serve",
        "scripts/test",
        "cargo install",
        "sk_live",
        "cargo test",
    ]
    .iter()
    .any(|skip| block.contains(skip))
}

/// What the comments of a block say its output holds.
fn expected(block: &str) -> Vec<String> {
    let mut want = Vec::new();
    for comment in block.lines().filter_map(|l| l.trim().strip_prefix("# ")) {
        // `"key":"value"` and `"key":1`, except elided values.
        let mut rest = comment;
        while let Some(start) = rest.find('"') {
            let tail = &rest[start..];
            let end = tail[1..]
                .find([',', '}', ']'])
                .map_or(tail.len(), |e| e + 1);
            let pair = &tail[..end];
            if pair.contains("\":") && !pair.contains("...") && !pair.contains('{') {
                want.push(pair.to_string());
            }
            rest = &tail[end.min(tail.len())..];
            if end == 0 {
                break;
            }
        }
        // SSE lines and decimal amounts.
        for prefix in ["id: ", "event: "] {
            if let Some(v) = comment.strip_prefix(prefix) {
                want.push(format!("{prefix}{v}"));
            }
        }
        for word in comment.split([' ', ',']) {
            let is_amount = word.split_once('.').is_some_and(|(a, b)| {
                !a.is_empty()
                    && b.len() == 2
                    && a.bytes().all(|c| c.is_ascii_digit())
                    && b.bytes().all(|c| c.is_ascii_digit())
            });
            if is_amount {
                want.push(format!("\"{word}\""));
            }
        }
    }
    want
}

/// Runs a document's runnable blocks in one shell, in order (a variable
/// set by one is there for the next, as in the reader's shell), and
/// checks each block's output.
fn run_document(path: &str, port: u16) -> usize {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let text = std::fs::read_to_string(repo.join(path)).unwrap();
    let bin = env!("CARGO_BIN_EXE_psa-billing");
    let mut script = String::from("set +e\n");
    let mut blocks = Vec::new();
    for block in shell_blocks(&text).into_iter().filter(|b| runnable(b)) {
        let runnable = block
            .replace("cargo run -q -p psa-billing --", &format!("'{bin}'"))
            .replace("cargo run -p psa-billing --", &format!("'{bin}'"))
            .replace(":8787", &format!(":{port}"))
            // An endless stream: read what is there, then stop.
            .replace("curl -N ", "curl -N --max-time 3 ");
        script.push_str(&format!(
            "echo '<<<block {}>>>'\n{{\n{runnable}\n}} 2>&1\necho \"<<<status $?>>>\"\n",
            blocks.len()
        ));
        blocks.push(block);
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(repo)
        .env(
            "PSA_BILLING_WEBHOOK_URL",
            format!("http://127.0.0.1:{port}/webhooks/stripe"),
        )
        .env_remove("PSA_BILLING_API_TOKEN")
        .env_remove("STRIPE_SECRET_KEY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (i, block) in blocks.iter().enumerate() {
        let start = stdout
            .find(&format!("<<<block {i}>>>"))
            .unwrap_or_else(|| panic!("{path}: block {i} did not run:\n{stdout}"));
        let section = &stdout[start..];
        let end = section.find("<<<status ").unwrap();
        let output = &section[..end];
        let status: i32 = section[end + 10..]
            .split(">>>")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let skip = output.chars().count().saturating_sub(3000);
        let tail: String = output.chars().skip(skip).collect();
        let context = || format!("{path}, block {i}:\n{block}\noutput (its end):\n{tail}");
        // curl's 28 is the stream's own timeout above.
        assert!(status == 0 || status == 28, "exit {status}: {}", context());
        let compact: String = output.chars().filter(|c| !c.is_whitespace()).collect();
        for want in expected(block) {
            let want_compact: String = want.chars().filter(|c| !c.is_whitespace()).collect();
            assert!(
                compact.contains(&want_compact),
                "{want} is not in the output: {}",
                context()
            );
        }
        for refused in [
            "\"unauthorized\"",
            "\"bad_request\"",
            "Unsupported Media Type",
            "Content-Type",
        ] {
            assert!(
                !output.contains(refused),
                "refused ({refused}): {}",
                context()
            );
        }
    }
    blocks.len()
}

#[tokio::test]
async fn the_readme_and_the_operations_page_run_as_pasted() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let db = format!("sqlite://{}", dir.path().join("docs.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_psa-billing"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("PSA_BILLING_DATABASE_URL", &db)
        .env("STRIPE_WEBHOOK_SECRET", SECRET)
        .env("PSA_BILLING_API_TOKEN", TOKEN)
        .env_remove("STRIPE_SECRET_KEY")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    common::wait_healthy(&client, &format!("http://127.0.0.1:{port}")).await;
    let readme = tokio::task::spawn_blocking(move || run_document("README.md", port))
        .await
        .unwrap();
    assert!(readme >= 6, "{readme} README blocks ran");
    let operations = tokio::task::spawn_blocking(move || run_document("docs/operations.md", port))
        .await
        .unwrap();
    assert!(operations >= 5, "{operations} operations blocks ran");
    let _ = child.kill();
    let _ = child.wait();
    tokio::time::sleep(Duration::from_millis(10)).await;
}
