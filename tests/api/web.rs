//! The embedded browser client and demo page (issue 8).

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_client_library_and_the_demo_are_served_from_the_binary() {
    let app = spawn_app().await;
    let cases = [
        ("/sdk/signalpost.js", "text/javascript", "export"),
        ("/demo/", "text/html", "<html"),
        ("/demo/demo.js", "text/javascript", "signalpost"),
        ("/demo/demo.css", "text/css", "{"),
    ];
    for (path, content_type, needle) in cases {
        let reply = app.get(path).await;
        assert_eq!(reply.status, 200, "{path}");
        assert!(
            reply
                .header("content-type")
                .unwrap()
                .starts_with(content_type),
            "{path}"
        );
        assert!(reply.body.contains(needle), "{path}");
    }
}

#[tokio::test]
async fn the_demo_page_loads_nothing_from_elsewhere() {
    let app = spawn_app().await;
    let page = app.get("/demo/").await;
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    for html in [page.body.as_str(), &app.get("/demo/demo.css").await.body] {
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "external asset"
        );
    }
}

#[tokio::test]
async fn demo_without_a_slash_redirects() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let reply = client.get(app.url("/demo")).send().await.unwrap();
    assert_eq!(reply.status(), 301);
    assert_eq!(reply.headers()["location"], "/demo/");
}

#[tokio::test]
async fn the_readme_pairing_walkthrough_works_when_pasted() {
    if !crate::external::require_program("curl") {
        return;
    }
    let app = crate::helpers::spawn_app().await;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Pairing in five requests")
        .nth(1)
        .expect("the walkthrough section");
    let script = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("its shell block");
    let script = script.replace("localhost:8080", &app.addr.to_string());
    let output = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[0].starts_with("code ") && lines[0].len() == 11,
        "{stdout}"
    );
    assert_eq!(lines[1], "204");
    let accepted: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
    let checked: serde_json::Value = serde_json::from_str(lines[3]).unwrap();
    assert_eq!(accepted["roomid"].as_str().map(str::len), Some(48));
    assert_eq!(accepted, checked);
}
