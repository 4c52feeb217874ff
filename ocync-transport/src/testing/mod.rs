//! Test support: real registries, token server, TLS CA and fixtures (being written).
