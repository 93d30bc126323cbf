//! Integration tests: the real server on `127.0.0.1:0` with a temp database, over real HTTP and
//! WebSocket connections. One test binary, so the server code is compiled once for all of them.

mod abuse;
mod cluster;
mod compose_file;
mod dialect_dropsilk;
mod dialect_octatecode;
mod dialect_oodaa;
mod dialect_privydrop;
mod discovery;
mod external;
mod fuzz;
mod helpers;
mod http_limits;
mod lifecycle;
mod nginx_proxy;
mod node_suites;
mod openapi;
mod operating;
mod pairing;
mod rooms;
mod signaling;
mod slow_readers;
mod turn;
mod turn_coturn;
mod web;
