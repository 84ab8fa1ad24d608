//! End-to-end tests of the HTTP API: the real server on 127.0.0.1, driven over HTTP, on
//! SQLite and on a throw-away PostgreSQL.
