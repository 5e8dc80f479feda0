//! Pre-encoded submit_sm: each kind of message is encoded once with the codec, and an
//! iteration copies it into the session's write buffer and patches, in place, the
//! sequence_number, the address placeholders, registered_delivery and the UDH reference.
//! Nothing is allocated per message.

use bytes::BytesMut;
use smsc_smpp::concat::{self, IEI_CONCAT_8};
use smsc_smpp::pdu::{ShortMessage, SubmitSm};
use smsc_smpp::text::{self, Alphabet};
use smsc_smpp::{Address, Body, DataCoding, EsmClass, Npi, Pdu, RegisteredDelivery, Ton};

use crate::config::{Message, Mix};
use crate::pattern::{Pattern, Rng};

/// The three kinds of the message mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gsm,
    Ucs2,
    Long,
}

/// Why the templates cannot be built (the config checks make this unexpected).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum TemplateError {
    #[error("address: {0}")]
    Address(#[from] smsc_smpp::types::FieldError),
    #[error("text: {0}")]
    Text(#[from] smsc_smpp::text::TextError),
    #[error("encode: {0}")]
    Encode(#[from] smsc_smpp::EncodeError),
    #[error("long text split into {got} parts, not {want}")]
    Parts { got: usize, want: usize },
}

/// One submit_sm on the wire, and where its variable fields are.
#[derive(Debug, Clone)]
struct Part {
    bytes: Vec<u8>,
    src_at: usize,
    dst_at: usize,
    rd_at: usize,
    /// The 8-bit concatenation reference, in parts of a long message.
    udh_ref_at: Option<usize>,
}

#[derive(Debug, Clone)]
struct KindTemplate {
    parts: Vec<Part>,
    /// Cumulative share, scaled to 2^32, for the weighted pick.
    upto: u64,
}

/// Every kind of the scenario's mix, ready to copy.
#[derive(Debug, Clone)]
pub(crate) struct Templates {
    kinds: Vec<KindTemplate>,
    source: Pattern,
    dest: Pattern,
    /// registered_delivery share scaled to 2^32 (0: never, 2^32: always).
    rd_share: u64,
    /// The only PDU, when the mix is one kind of one part (the closed loop's fast path).
    single: Option<Part>,
}

const SCALE: f64 = 4_294_967_296.0;

impl Templates {
    pub(crate) fn new(m: &Message) -> Result<Self, TemplateError> {
        let Mix { gsm, ucs2, long } = m.mix;
        let total = gsm + ucs2 + long;
        let mut kinds = Vec::new();
        let mut acc = 0.0;
        for (kind, w) in [(Kind::Gsm, gsm), (Kind::Ucs2, ucs2), (Kind::Long, long)] {
            if w <= 0.0 {
                continue;
            }
            acc += w;
            let parts = match kind {
                Kind::Gsm => {
                    vec![part(m, DataCoding::DEFAULT, text::gsm7_encode(&m.text)?, false)?]
                }
                Kind::Ucs2 => {
                    vec![part(m, DataCoding::UCS2, text::ucs2_encode(&m.text_ucs2), false)?]
                }
                Kind::Long => long_parts(m)?,
            };
            kinds.push(KindTemplate { parts, upto: (acc / total * SCALE) as u64 });
        }
        if let Some(last) = kinds.last_mut() {
            last.upto = 1 << 32;
        }
        let single = match kinds.as_slice() {
            [only] if only.parts.len() == 1 => only.parts.first().cloned(),
            _ => None,
        };
        Ok(Self {
            single,
            kinds,
            source: m.source.clone(),
            dest: m.destination.clone(),
            rd_share: (m.registered_delivery * SCALE) as u64,
        })
    }

    /// Picks the kind of the next iteration (an index for [`Self::parts`]).
    #[inline]
    pub(crate) fn pick(&self, rng: &mut Rng) -> usize {
        if self.kinds.len() == 1 {
            return 0;
        }
        let r = rng.next_u64() >> 32;
        self.kinds.iter().position(|k| r < k.upto).unwrap_or(0)
    }

    /// Whether the next iteration asks for a receipt.
    #[inline]
    pub(crate) fn wants_receipt(&self, rng: &mut Rng) -> bool {
        match self.rd_share {
            0 => false,
            s if s >= 1 << 32 => true,
            s => (rng.next_u64() >> 32) < s,
        }
    }

    /// submit_sm PDUs of kind `k`.
    #[inline]
    pub(crate) fn parts(&self, k: usize) -> usize {
        self.kinds.get(k).map_or(1, |t| t.parts.len())
    }

    /// Whether every iteration is the same single PDU: then [`Self::write_single`] applies.
    pub(crate) fn is_single(&self) -> bool {
        self.single.is_some()
    }

    /// Octets of the single PDU (0 when there is none).
    pub(crate) fn single_len(&self) -> usize {
        self.single.as_ref().map_or(0, |p| p.bytes.len())
    }

    /// [`Self::write`] for the one-kind, one-part mix, without looking the part up.
    #[inline]
    pub(crate) fn write_single(
        &self,
        out: &mut Vec<u8>,
        seq: u32,
        iteration: u64,
        receipt: bool,
        rng: &mut Rng,
    ) {
        let Some(part) = &self.single else { return };
        let start = out.len();
        out.extend_from_slice(&part.bytes);
        let pdu = &mut out[start..];
        pdu[12..16].copy_from_slice(&seq.to_be_bytes());
        if !self.source.holes().is_empty() {
            let src = &mut pdu[part.src_at..part.src_at + self.source.template().len()];
            self.source.patch(src, iteration, rng);
        }
        let dst = &mut pdu[part.dst_at..part.dst_at + self.dest.template().len()];
        self.dest.patch(dst, iteration, rng);
        if receipt {
            pdu[part.rd_at] = RegisteredDelivery::FINAL.0;
        }
    }

    /// Appends part `p` of kind `k` to `out`. `first`: where part 0 of this iteration
    /// starts in `out` (its addresses are copied, so that every part goes to the same
    /// number); `None` for part 0 itself, whose placeholders are filled from
    /// `iteration` and `rng`.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write(
        &self,
        k: usize,
        p: usize,
        out: &mut Vec<u8>,
        seq: u32,
        iteration: u64,
        receipt: bool,
        first: Option<usize>,
        rng: &mut Rng,
    ) {
        let Some(part) = self.kinds.get(k).and_then(|t| t.parts.get(p)) else { return };
        let start = out.len();
        out.extend_from_slice(&part.bytes);
        let (src_len, dst_len) = (self.source.template().len(), self.dest.template().len());
        match first {
            Some(first) if first + part.dst_at + dst_len <= start => {
                // Same layout up to short_message: the addresses sit at the same offsets.
                out.copy_within(
                    first + part.src_at..first + part.src_at + src_len,
                    start + part.src_at,
                );
                out.copy_within(
                    first + part.dst_at..first + part.dst_at + dst_len,
                    start + part.dst_at,
                );
            }
            _ => {
                let pdu = &mut out[start..];
                self.source.patch(&mut pdu[part.src_at..part.src_at + src_len], iteration, rng);
                self.dest.patch(&mut pdu[part.dst_at..part.dst_at + dst_len], iteration, rng);
            }
        }
        let pdu = &mut out[start..];
        pdu[12..16].copy_from_slice(&seq.to_be_bytes());
        if receipt {
            pdu[part.rd_at] = RegisteredDelivery::FINAL.0;
        }
        if let Some(at) = part.udh_ref_at {
            pdu[at] = iteration as u8;
        }
    }
}

fn address(p: &Pattern) -> Result<Address, TemplateError> {
    let text = std::str::from_utf8(p.template()).unwrap_or_default();
    Ok(if p.is_numeric() {
        Address::new(Ton::INTERNATIONAL, Npi::ISDN, text)?
    } else {
        Address::new(Ton::ALPHANUMERIC, Npi::UNKNOWN, text)?
    })
}

/// Encodes one submit_sm with the codec and works out where its fields are.
fn part(m: &Message, coding: DataCoding, sm: Vec<u8>, udhi: bool) -> Result<Part, TemplateError> {
    let submit = SubmitSm {
        source: address(&m.source)?,
        dest: address(&m.destination)?,
        esm_class: if udhi { EsmClass::DEFAULT.with(EsmClass::UDHI) } else { EsmClass::DEFAULT },
        registered_delivery: RegisteredDelivery::NONE,
        data_coding: coding,
        short_message: ShortMessage::new(sm)?,
        ..SubmitSm::default()
    };
    let mut out = BytesMut::new();
    Pdu::new(1, Body::SubmitSm(submit)).encode(&mut out)?;
    // header, service_type "" (1), source TON and NPI (2)
    let src_at = smsc_smpp::HEADER_LEN + 1 + 2;
    // source and its NUL, destination TON and NPI
    let dst_at = src_at + m.source.template().len() + 1 + 2;
    // destination and its NUL, then esm_class, protocol_id, priority_flag, two empty times
    let rd_at = dst_at + m.destination.template().len() + 1 + 5;
    // registered_delivery, replace_if_present, data_coding, sm_default_msg_id, sm_length
    let sm_at = rd_at + 5;
    let udh_ref_at = udhi.then_some(sm_at + 3);
    Ok(Part { bytes: out.to_vec(), src_at, dst_at, rd_at, udh_ref_at })
}

/// A GSM text of exactly `long_parts` parts, each with an 8-bit reference UDH.
fn long_parts(m: &Message) -> Result<Vec<Part>, TemplateError> {
    let want = usize::from(m.long_parts);
    // 153 septets per part with the UDH; the last part half full.
    let len = 153 * (want - 1) + 80;
    let filler = "Long message from smsc-load, concatenated with a UDH. 0123456789 ";
    let body: String = filler.chars().cycle().take(len).collect();
    let parts = concat::split(&body, Alphabet::Gsm7, 0, false)?;
    if parts.len() != want {
        return Err(TemplateError::Parts { got: parts.len(), want });
    }
    parts
        .into_iter()
        .map(|p| {
            debug_assert_eq!(p.short_message.get(..3), Some(&[5, IEI_CONCAT_8, 3][..]));
            part(m, DataCoding::DEFAULT, p.short_message, p.udhi)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use smsc_smpp::concat::parse_udh;

    use super::*;
    use crate::config::Plan;

    fn message(yaml: &str) -> Message {
        let plan = Plan::from_yaml(&format!("duration: 1s\nmessage: {yaml}\n")).expect("valid");
        plan.scenarios[0].message.clone()
    }

    fn decode(bytes: &[u8]) -> SubmitSm {
        match smsc_smpp::decode(Bytes::copy_from_slice(bytes)).expect("decodes") {
            Pdu { body: Body::SubmitSm(s), .. } => s,
            other => panic!("not a submit_sm: {other:?}"),
        }
    }

    #[test]
    fn patched_fields_decode() {
        let m = message(
            r#"{ source: "Bank{seq:3}", destination: "4479{seq:8}", registered_delivery: 1 }"#,
        );
        let t = Templates::new(&m).expect("builds");
        let mut rng = Rng::new(3);
        let mut out = Vec::new();
        t.write(0, 0, &mut out, 77, 1234, true, None, &mut rng);
        let s = decode(&out);
        assert_eq!(u32::from_be_bytes(out[12..16].try_into().expect("4")), 77);
        assert_eq!((s.source.addr.as_str(), s.source.ton), (Some("Bank234"), Ton::ALPHANUMERIC));
        assert_eq!(
            (s.dest.addr.as_str(), s.dest.ton, s.dest.npi),
            (Some("447900001234"), Ton::INTERNATIONAL, Npi::ISDN)
        );
        assert_eq!(s.registered_delivery, RegisteredDelivery::FINAL);
        assert_eq!(s.data_coding, DataCoding::DEFAULT);
        assert_eq!(
            text::gsm7_decode(s.short_message.as_bytes()).expect("gsm"),
            crate::config::DEFAULT_TEXT
        );
        out.clear();
        t.write(0, 0, &mut out, 78, 1, false, None, &mut rng);
        assert_eq!(decode(&out).registered_delivery, RegisteredDelivery::NONE);
        assert!(t.is_single());
        let mut fast = Vec::new();
        t.write_single(&mut fast, 78, 1, false, &mut rng);
        assert_eq!(fast, out, "the fast path writes the same PDU");
        assert_eq!(t.single_len(), out.len());
    }

    #[test]
    fn ucs2_and_long_parts() {
        let m =
            message(r#"{ mix: { ucs2: 1, long: 1 }, long_parts: 4, destination: "1555{rand:7}" }"#);
        let t = Templates::new(&m).expect("builds");
        assert_eq!(
            (t.parts(0), t.parts(1), t.parts(2)),
            (1, 4, 1),
            "ucs2 then long; out of range: 1"
        );
        let mut rng = Rng::new(9);
        let mut out = Vec::new();
        t.write(0, 0, &mut out, 1, 0, false, None, &mut rng);
        let s = decode(&out);
        assert_eq!(s.data_coding, DataCoding::UCS2);
        assert_eq!(
            text::ucs2_decode(s.short_message.as_bytes()).expect("ucs2"),
            crate::config::DEFAULT_TEXT_UCS2
        );

        out.clear();
        let mut starts = Vec::new();
        for p in 0..4 {
            starts.push(out.len());
            t.write(
                1,
                p,
                &mut out,
                10 + p as u32,
                0x1_05,
                true,
                starts.first().copied().filter(|_| p > 0),
                &mut rng,
            );
        }
        starts.push(out.len());
        let mut dest = None;
        for (i, w) in starts.windows(2).enumerate() {
            let s = decode(&out[w[0]..w[1]]);
            assert!(s.esm_class.udhi());
            let (udh, _) = parse_udh(s.short_message.as_bytes()).expect("udh");
            let c = udh.concat().expect("concat IE");
            assert_eq!((c.reference, c.total, c.seq), (0x05, 4, i as u8 + 1));
            assert_eq!(s.registered_delivery, RegisteredDelivery::FINAL);
            let d = s.dest.addr.as_str().expect("ascii").to_owned();
            assert_eq!(*dest.get_or_insert_with(|| d.clone()), d, "every part to the same number");
        }
    }

    #[test]
    fn mix_and_receipt_shares() {
        let m = message(r#"{ mix: { gsm: 8, ucs2: 1, long: 1 }, registered_delivery: 0.25 }"#);
        let t = Templates::new(&m).expect("builds");
        let mut rng = Rng::new(1);
        let mut kinds = [0u32; 3];
        let mut receipts = 0;
        for _ in 0..100_000 {
            kinds[t.pick(&mut rng)] += 1;
            receipts += u32::from(t.wants_receipt(&mut rng));
        }
        assert!((79_000..81_000).contains(&kinds[0]), "{kinds:?}");
        assert!(
            (9_500..10_500).contains(&kinds[1]) && (9_500..10_500).contains(&kinds[2]),
            "{kinds:?}"
        );
        assert!((24_000..26_000).contains(&receipts), "{receipts}");
        let never = Templates::new(&message("{ registered_delivery: 0 }")).expect("builds");
        let always = Templates::new(&message("{ registered_delivery: 1 }")).expect("builds");
        assert!((0..100).all(|_| !never.wants_receipt(&mut rng) && always.wants_receipt(&mut rng)));
    }
}
