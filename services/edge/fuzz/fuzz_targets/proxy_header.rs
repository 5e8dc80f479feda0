//! Feeds arbitrary bytes to the PROXY protocol header parser (`smsc_edge::proxy::parse`),
//! as a trusted balancer's connection would deliver them, whole and cut at every length.
//!
//! Checked: nothing panics; a header found is no longer than the bytes and within the
//! protocol's bounds; an incomplete one asks for more bytes than it was given, within the
//! same bounds; and once a prefix is final (a header or an error) every longer input
//! agrees with it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsc_edge::proxy::{Parsed, V1_MAX, V2_MAX, parse};

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(V2_MAX + 64)];
    let mut settled: Option<Result<Parsed, ()>> = None;
    for n in 0..=data.len() {
        let got = parse(&data[..n]);
        match &got {
            Ok(Parsed::Header { len, .. }) => assert!(*len <= n && *len <= V2_MAX.max(V1_MAX)),
            Ok(Parsed::Incomplete { at_least }) => {
                assert!(*at_least > n && *at_least <= V2_MAX.max(V1_MAX), "{n}: {at_least}")
            }
            Err(_) => {}
        }
        let now = got.map_err(|_| ());
        match (&settled, now) {
            (None, Ok(Parsed::Incomplete { .. })) => {}
            (None, final_) => settled = Some(final_),
            (Some(before), now) => {
                assert_eq!(*before, now, "longer input changed the outcome at {n}")
            }
        }
    }
});
