//! (conformance: to be written)
