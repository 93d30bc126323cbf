//! The DropSilk dialect against its conformance suite (tests/node/dropsilk.test.mjs), driven
//! with the `ws` package and `fetch` as the DropSilk web client drives its backend.

#[test]
fn dropsilk_clients_work_against_the_dialect_listener() {
    crate::node_suites::run_node_suite("dropsilk.test.mjs");
}
