//! Feeds arbitrary bytes through the framer and the decoder. Every PDU that decodes must
//! encode again and decode to itself; every error must map to a response without panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    loop {
        match smsc_smpp::split_frame(&mut buf, 4096) {
            Ok(Some(frame)) => match smsc_smpp::decode(frame) {
                Ok(pdu) => {
                    let bytes = pdu.to_bytes().expect("a decoded PDU encodes");
                    assert_eq!(bytes.len(), pdu.encoded_len());
                    assert_eq!(smsc_smpp::decode(bytes).expect("re-decodes"), pdu);
                }
                Err(e) => {
                    let _ = e.response().map(|r| r.to_bytes());
                }
            },
            Ok(None) => break,
            Err(e) => {
                let _ = e.response().map(|r| r.to_bytes());
                break;
            }
        }
    }
    // The text paths see peer bytes too.
    let _ = smsc_smpp::text::decode(data, smsc_smpp::text::Alphabet::Gsm7);
    let _ = smsc_smpp::text::decode(data, smsc_smpp::text::Alphabet::Ucs2);
    let _ = smsc_smpp::concat::parse_udh(data);
    let _ = smsc_smpp::time::SmppTime::parse(data);
    let _ = smsc_smpp::receipt::Receipt::parse_bytes(data);
});
