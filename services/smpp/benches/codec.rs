//! Decode and encode of a 160-character GSM submit_sm and a 70-character UCS2 one.
//! `cargo bench -p smsc-smpp`; figures go in docs/benchmarks.md.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use smsc_smpp::pdu::{ShortMessage, SubmitSm};
use smsc_smpp::{Address, Body, DataCoding, Npi, Pdu, RegisteredDelivery, Ton, decode, text};

fn submit(dc: DataCoding, sm: Vec<u8>) -> Pdu {
    Pdu::new(
        0x0102_0304,
        Body::SubmitSm(SubmitSm {
            source: Address::new(Ton::ALPHANUMERIC, Npi::UNKNOWN, "MyBank").expect("fits"),
            dest: Address::international("447700900123").expect("fits"),
            registered_delivery: RegisteredDelivery::FINAL,
            data_coding: dc,
            short_message: ShortMessage::new(sm).expect("fits"),
            ..SubmitSm::default()
        }),
    )
}

fn bench(c: &mut Criterion) {
    let gsm_text: String =
        "Your code is 123456. Do not share it with anyone! ".chars().cycle().take(160).collect();
    let ucs2_text: String =
        "Ваш код 123456. Никому его не сообщайте! ".chars().cycle().take(70).collect();
    let cases = [
        ("gsm160", submit(DataCoding::DEFAULT, text::gsm7_encode(&gsm_text).expect("gsm"))),
        (
            "ucs2_70",
            submit(DataCoding::UCS2, text::encode(&ucs2_text, text::Alphabet::Ucs2).expect("ucs2")),
        ),
    ];
    let mut g = c.benchmark_group("submit_sm");
    g.throughput(Throughput::Elements(1));
    for (name, pdu) in &cases {
        let wire: Bytes = pdu.to_bytes().expect("encodes");
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| decode(black_box(wire.clone())).expect("decodes"))
        });
        let mut out = BytesMut::with_capacity(64 * 1024);
        g.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| {
                if out.len() > 60 * 1024 {
                    out.clear();
                }
                black_box(pdu).encode(&mut out).expect("encodes");
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
