//! `docs/openapi.yaml` describes every route: each route filter's doc comment names its route
//! (`/// POST /api/rooms/accept`, the project's convention), and every such route must be in the
//! spec. A new route without a spec entry fails here.

use std::collections::BTreeSet;
use std::path::Path;

const METHODS: [&str; 5] = ["GET", "POST", "DELETE", "PUT", "PATCH"];

/// `(METHOD, /path)` pairs named by route doc comments under `dir`.
fn documented_routes(dir: &Path, found: &mut BTreeSet<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            documented_routes(&path, found);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let Some(doc) = line.trim().strip_prefix("/// ") else {
                continue;
            };
            if !METHODS.iter().any(|m| doc.starts_with(&format!("{m} /"))) {
                continue;
            }
            // "GET / and GET /ws: ..." names two routes; "GET /api/rooms?roomid=" one.
            let words: Vec<&str> = doc.split_whitespace().collect();
            for pair in words.windows(2) {
                if METHODS.contains(&pair[0]) && pair[1].starts_with('/') {
                    let route = pair[1].trim_end_matches([':', ',', '.']);
                    let route = route.split('?').next().unwrap();
                    found.insert((pair[0].to_lowercase(), route.to_owned()));
                }
            }
        }
    }
}

/// `(method, /path)` pairs in the spec's `paths` section (two-space paths, four-space methods).
fn spec_routes(spec: &str) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    let mut in_paths = false;
    let mut current = None;
    for line in spec.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_paths = line == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(path) = line.strip_prefix("  /") {
            current = Some(format!("/{}", path.trim_end_matches(':')));
        } else if let Some(method) = line.strip_prefix("    ").and_then(|l| l.strip_suffix(':'))
            && !method.starts_with(' ')
            && let Some(path) = &current
        {
            routes.insert((method.to_owned(), path.clone()));
        }
    }
    routes
}

#[test]
fn every_documented_route_is_in_the_openapi_spec() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut code = BTreeSet::new();
    documented_routes(&root.join("src"), &mut code);
    let spec = spec_routes(&std::fs::read_to_string(root.join("docs/openapi.yaml")).unwrap());
    assert!(code.len() >= 10, "route doc comments not found: {code:?}");
    let missing: Vec<_> = code.iter().filter(|r| !spec.contains(*r)).collect();
    assert!(
        missing.is_empty(),
        "routes missing from docs/openapi.yaml: {missing:?}"
    );
}

#[test]
fn the_spec_reader_finds_paths_and_methods() {
    let spec = "openapi: 3.0.3\npaths:\n  /a:\n    get:\n      x: 1\n    post:\n  /b/{id}:\n    delete:\ncomponents:\n  /c:\n    get:\n";
    let routes = spec_routes(spec);
    let expected: BTreeSet<(String, String)> =
        [("get", "/a"), ("post", "/a"), ("delete", "/b/{id}")]
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
    assert_eq!(routes, expected);
}
