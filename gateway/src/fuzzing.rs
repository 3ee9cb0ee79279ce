//! Entry points for the fuzz targets (`fuzz/`, outside the workspace), behind the
//! `fuzzing` feature. Not an API: each calls a crate-private parser as the gateway does.

/// Bytes of the upgrade request head the fast path reads at the start of `bytes`
/// (`echo`: whether the diagnostic echo is routed); `None` when it leaves them to hyper.
pub fn upgrade_head_len(bytes: &[u8], echo: bool) -> Option<usize> {
    crate::ws::FastRequest::parse(bytes, echo).map(|r| r.len)
}
