//! The operator console against the real binary: an event fails under a
//! misconfiguration (a strict API version the events do not carry), the
//! service is restarted fixed, and the operator replays it from `/console`.
//! Once over HTTP (sign-in, cookie flags, CSRF, filters), once in headless
//! Chromium driven through chromedriver (Debian's `chromium` and
//! `chromium-driver`; `.ci/run` installs them), which also takes the
//! screenshot in docs/ (`BLESS=1` rewrites it).

mod common;

use common::{Server, TOKEN, deliver_once, free_port, payment, start_with};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A service on a fresh SQLite file with one failed event (`evt_con_0000`)
/// and, after a restart with the cause fixed, a few processed ones and two
/// registered tenants. The console is on.
async fn failed_then_fixed(dir: &std::path::Path) -> (Server, reqwest::Client) {
    let url = format!("sqlite://{}", dir.join("console.db").display());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let strict = start_with(
        &url,
        &[
            ("PSA_BILLING_CONSOLE", "true"),
            ("PSA_BILLING_STRIPE_API_VERSION", "1999-01-01"),
            ("PSA_BILLING_STRICT_API_VERSION", "true"),
        ],
        Stdio::null(),
    );
    common::wait_healthy(&client, &strict.base).await;
    let hook = format!("{}/webhooks/stripe", strict.base);
    let (status, _) = deliver_once(&client, &hook, &payment("con", 0, 2))
        .await
        .unwrap();
    assert_eq!(status, 500, "misconfigured: the event fails");
    strict.kill();

    let fixed = start_with(&url, &[("PSA_BILLING_CONSOLE", "true")], Stdio::null());
    common::wait_healthy(&client, &fixed.base).await;
    let hook = format!("{}/webhooks/stripe", fixed.base);
    for i in 1..6 {
        let (status, answer) = deliver_once(&client, &hook, &payment("con", i, 2))
            .await
            .unwrap();
        assert_eq!((status, answer.as_str()), (200, "accepted"));
    }
    for (account, tenant) in [
        ("acct_1ConsoleA", "tenant-0"),
        ("acct_1ConsoleB", "tenant-1"),
    ] {
        let r = client
            .put(format!("{}/v1/tenants/{account}", fixed.base))
            .bearer_auth(TOKEN)
            .json(&json!({ "tenant": tenant }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    (fixed, client)
}

fn cookie_of(r: &reqwest::Response) -> String {
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    set.split(';').next().unwrap().to_string()
}

/// The deliveries table of a page.
fn deliveries(page: &str) -> &str {
    let from = page.find("deliveries-table").expect("the deliveries table");
    let to = from + page[from..].find("</table>").unwrap();
    &page[from..to]
}

fn csrf_in(page: &str) -> String {
    let at = page.find(r#"name="csrf" value=""#).expect("a CSRF field") + 19;
    page[at..at + 64].to_string()
}

#[tokio::test]
async fn the_console_signs_in_with_the_token_and_refuses_forged_posts() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = failed_then_fixed(dir.path()).await;
    let base = &server.base;
    let get = |path: &str, cookie: Option<&str>| {
        let mut r = client.get(format!("{base}{path}"));
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send()
    };

    // Signed out: to the sign-in form.
    let r = get("/console", None).await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/login");
    // Every console answer, a redirect and the form alike, is never framed,
    // cached or sniffed, and sends no referrer.
    let form = get("/console/login", None).await.unwrap();
    for answer in [&r, &form] {
        let h = answer.headers();
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'"),
            "{h:?}"
        );
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
    }
    let r = client
        .post(format!("{base}/console/login"))
        .form(&[("token", "not-the-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());

    let r = client
        .post(format!("{base}/console/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set.contains(flag), "{set}");
    }
    let cookie = cookie_of(&r);

    let page = get("/console", Some(&cookie)).await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    for section in [
        "Failed and dead-lettered",
        "Latest deliveries",
        "Effects outbox",
        "Tenants and connected accounts",
        "<svg",
    ] {
        assert!(page.contains(section), "{section}");
    }
    assert!(page.contains(r#"<tr data-event="evt_con_0000">"#));
    assert!(page.contains("strict mode"), "the last error is shown");
    assert!(
        page.contains("acct_1ConsoleA"),
        "registered accounts are listed"
    );
    let csrf = csrf_in(&page);

    // Filters.
    let failed = get("/console?status=failed", Some(&cookie))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let table = deliveries(&failed);
    assert!(table.contains("evt_con_0000") && !table.contains("evt_con_0001"));
    let typed = get("/console?type=invoice.paid", Some(&cookie))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !deliveries(&typed).contains("evt_con_"),
        "no invoice.paid deliveries"
    );
    let all = get("/console", Some(&cookie))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(deliveries(&all).contains("evt_con_0005"));

    // A forged session, a missing or wrong CSRF token: nothing replayed.
    let forged = cookie.replacen(char::is_numeric, "9", 1);
    assert_eq!(get("/console", Some(&forged)).await.unwrap().status(), 303);
    let replay = |cookie: String, form: Vec<(&'static str, String)>| {
        client
            .post(format!("{base}/console/replay"))
            .header("cookie", cookie)
            .form(&form)
            .send()
    };
    let event = ("event", "evt_con_0000".to_string());
    let r = replay(
        cookie.clone(),
        vec![event.clone(), ("csrf", "0".repeat(64))],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    let r = replay(cookie.clone(), vec![event.clone()]).await.unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let r = replay(forged, vec![event.clone(), ("csrf", csrf.clone())])
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/login");
    let page = get("/console?status=failed", Some(&cookie))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"<tr data-event="evt_con_0000">"#),
        "still failed"
    );

    // The real thing: replayed and processed, once.
    let r = replay(cookie.clone(), vec![event.clone(), ("csrf", csrf.clone())])
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let notice = r.headers()["location"].to_str().unwrap().to_string();
    assert!(notice.contains("processed"), "{notice}");
    let page = get("/console?status=processed", Some(&cookie))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"<tr data-event="evt_con_0000">"#));
    let r = replay(cookie.clone(), vec![event, ("csrf", csrf.clone())])
        .await
        .unwrap();
    let again = r.headers()["location"].to_str().unwrap().to_string();
    assert!(again.contains("not+a+failed"), "{again}");

    // Signed out: the session cookie is cleared.
    let r = client
        .post(format!("{base}/console/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    // The session itself ended: a copy of the old cookie signs nothing in.
    let r = get("/console", Some(&cookie)).await.unwrap();
    assert_eq!(r.status(), 303, "a signed-out session is refused");
    assert_eq!(r.headers()["location"], "/console/login");

    // Guessing the token is held off per address: after ten wrong ones (the
    // one above and nine here), the next is counted and holds the address
    // off: even the right token is refused for a while (429, Retry-After).
    for _ in 0..9 {
        let r = client
            .post(format!("{base}/console/login"))
            .form(&[("token", "a-guess")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = client
        .post(format!("{base}/console/login"))
        .form(&[("token", "another-guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "the eleventh is counted, and holds the address off"
    );
    let r = client
        .post(format!("{base}/console/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // The /v1 API shares the count.
    let r = client
        .get(format!("{base}/v1/effects"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn the_console_is_off_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("off.db").display());
    let server = start_with(&url, &[], Stdio::null());
    let client = reqwest::Client::new();
    common::wait_healthy(&client, &server.base).await;
    let r = client
        .get(format!("{}/console", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// chromedriver on a free port, killed when dropped.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn program(env: &str, default: &str) -> String {
    let path = std::env::var(env).unwrap_or_else(|_| default.to_string());
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: the console's browser test needs Debian's Chromium and ChromeDriver \
         (`apt-get install chromium chromium-driver`, as .ci/run does), or {env} pointing at them"
    );
    path
}

async fn driver() -> Driver {
    let port = free_port();
    let child = Command::new(program("PSA_BILLING_CHROMEDRIVER", "/usr/bin/chromedriver"))
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Driver(child, port)
}

#[tokio::test]
async fn an_operator_replays_a_failed_delivery_in_a_browser() {
    use fantoccini::{ClientBuilder, Locator};
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = failed_then_fixed(dir.path()).await;
    let chromium = program("PSA_BILLING_CHROMIUM", "/usr/bin/chromium");
    let driver = driver().await;
    let capabilities = json!({"goog:chromeOptions": {
        "binary": chromium,
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1400", "--user-data-dir=".to_string() + &dir.path().join("chromium").display().to_string()],
    }});
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities.as_object().unwrap().clone())
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("a chromium session");

    browser
        .goto(&format!("{}/console", server.base))
        .await
        .unwrap();
    assert_eq!(
        browser.current_url().await.unwrap().path(),
        "/console/login"
    );
    browser
        .find(Locator::Css("input[name=token]"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    browser
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // Signed in; the session is out of the page's reach.
    let row = browser
        .wait()
        .for_element(Locator::Css("#failed-table tr[data-event=evt_con_0000]"))
        .await
        .expect("the failed delivery is listed");
    assert!(row.text().await.unwrap().contains("failed"));
    let cookies = browser
        .execute("return document.cookie", vec![])
        .await
        .unwrap();
    assert_eq!(cookies, json!(""), "HttpOnly");

    row.find(Locator::Css("button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let notice = browser
        .wait()
        .for_element(Locator::Css("p.notice"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        notice.contains("evt_con_0000 replayed: processed"),
        "{notice}"
    );
    let status = browser
        .find(Locator::Css(
            "#deliveries-table tr[data-event=evt_con_0000] td.status-processed",
        ))
        .await
        .expect("listed as processed")
        .text()
        .await
        .unwrap();
    assert_eq!(status, "processed");
    assert!(
        browser
            .find(Locator::Css("#failed-table tr[data-event=evt_con_0000]"))
            .await
            .is_err(),
        "no longer failed"
    );

    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    if std::env::var_os("BLESS").is_some() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/console.png");
        std::fs::write(path, &png).unwrap();
    }
    browser.close().await.unwrap();
}
