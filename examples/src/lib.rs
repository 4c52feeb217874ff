//! Examples live in this package
