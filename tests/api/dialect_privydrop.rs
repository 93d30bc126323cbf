//! The PrivyDrop dialect (issue 14), driven by the real socket.io-client from
//! `tests/node/privydrop.test.mjs`.

#[test]
fn privydrop_clients_signal_through_the_dialect_listener() {
    crate::node_suites::run_node_suite("privydrop.test.mjs");
}
