//! OctateCode's listener against its conformance suite (`tests/node/octatecode.test.mjs`).

#[test]
fn the_octatecode_listener_passes_its_conformance_suite() {
    crate::node_suites::run_node_suite("octatecode.test.mjs");
}
