//! The browser client library and the demo page, embedded in the binary so a deployment is one
//! file. Sources live in `web/`.

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, header};
use warp::reply::Response;

const SDK_JS: &str = include_str!("../../web/signalpost.js");
const DEMO_HTML: &str = include_str!("../../web/demo/index.html");
const DEMO_JS: &str = include_str!("../../web/demo/demo.js");
const DEMO_CSS: &str = include_str!("../../web/demo/demo.css");

/// What the demo page may load and connect to: only this server (its REST API and WebSocket),
/// no inline script, no third-party assets.
const DEMO_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// GET /sdk/signalpost.js, GET /demo/ (GET /demo redirects there), GET /demo/demo.js,
/// GET /demo/demo.css
pub fn routes() -> BoxedFilter<(Response,)> {
    let sdk = warp::path!("sdk" / "signalpost.js").map(|| asset(SDK_JS, "text/javascript"));
    let page = warp::path!("demo" / ..)
        .and(warp::path::end())
        .and(warp::path::full())
        .map(|full: warp::path::FullPath| {
            // `/demo` would resolve the page's relative asset links against `/`.
            if full.as_str().ends_with('/') {
                let mut page = asset(DEMO_HTML, "text/html; charset=utf-8");
                page.headers_mut().insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(DEMO_CSP),
                );
                page
            } else {
                let mut redirect = Response::default();
                *redirect.status_mut() = warp::http::StatusCode::MOVED_PERMANENTLY;
                redirect
                    .headers_mut()
                    .insert(header::LOCATION, HeaderValue::from_static("/demo/"));
                redirect
            }
        });
    let script = warp::path!("demo" / "demo.js").map(|| asset(DEMO_JS, "text/javascript"));
    let style = warp::path!("demo" / "demo.css").map(|| asset(DEMO_CSS, "text/css"));
    sdk.or(page)
        .unify()
        .or(script)
        .unify()
        .or(style)
        .unify()
        .and(warp::get())
        .boxed()
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = Response::new(body.into());
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
