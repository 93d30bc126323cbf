//! The Oodaa messenger's listener against its conformance suite (`tests/node/oodaa.test.mjs`).

#[test]
fn the_oodaa_listener_passes_its_conformance_suite() {
    crate::node_suites::run_node_suite("oodaa.test.mjs");
}
