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
