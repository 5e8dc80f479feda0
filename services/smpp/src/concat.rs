//! Concatenated SMS: the User Data Header (3GPP TS 23.040 §9.2.3.24) and
//! splitting long text into parts, either UDH-prefixed or for the SMPP SAR
//! TLVs (`sar_msg_ref_num` 0x020C, `sar_total_segments` 0x020E,
//! `sar_segment_seqnum` 0x020F).
//!
//! Part sizes are set by the 140-octet air interface even though SMPP
//! carries `data_coding` 0 unpacked: a GSM7 part holds 160 septets, less the
//! septets the UDH occupies once packed.

use crate::text::{self, Alphabet, GSM7_ESC, TextError};

/// `esm_class` bit saying `short_message` starts with a UDH.
pub const ESM_CLASS_UDHI: u8 = 0x40;
/// Concatenated short message, 8-bit reference.
pub const IEI_CONCAT_8: u8 = 0x00;
/// Application port addressing, 8-bit ports.
pub const IEI_PORT_8: u8 = 0x04;
/// Application port addressing, 16-bit ports.
pub const IEI_PORT_16: u8 = 0x05;
/// Concatenated short message, 16-bit reference.
pub const IEI_CONCAT_16: u8 = 0x08;

/// UDH failures. Malformed headers are rejected whole, as 23.040 tells a
/// receiver to ignore a UDH whose lengths do not add up.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConcatError {
    /// UDHI was set but there is not even a UDHL octet.
    #[error("user data is empty, expected a UDHL octet")]
    Empty,
    /// The UDHL claims more octets than follow it.
    #[error("UDHL {udhl} exceeds the {available} octets after it")]
    UdhlBeyondData {
        /// The UDHL octet.
        udhl: u8,
        /// Octets after it.
        available: usize,
    },
    /// An IEI at `offset` (from the start of user data) has no length octet.
    #[error("information element at offset {offset} has no length octet")]
    IeTruncated {
        /// Offset of the IEI.
        offset: usize,
    },
    /// An IE's length runs past the end of the UDH.
    #[error("information element 0x{iei:02X} at offset {offset} runs {len} octets past the UDH")]
    IeBeyondUdhl {
        /// Offset of the IEI from the start of user data.
        offset: usize,
        /// The IE identifier.
        iei: u8,
        /// Its claimed length.
        len: u8,
    },
    /// Adding an IE would make the header longer than UDHL can express.
    #[error("UDH would need {len} octets, UDHL allows 255")]
    HeaderTooLong {
        /// Octets after UDHL the header would need.
        len: usize,
    },
}

/// Concatenation IE contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConcatInfo {
    /// Same for every part of one message. With `wide_ref == false` only
    /// the low 8 bits are sent.
    pub reference: u16,
    /// Number of parts, 1..=255.
    pub total: u8,
    /// This part's number, 1..=`total`.
    pub seq: u8,
    /// IEI 0x08 (16-bit reference) rather than 0x00.
    pub wide_ref: bool,
}

impl ConcatInfo {
    fn ie(self) -> (u8, Vec<u8>) {
        let [hi, lo] = self.reference.to_be_bytes();
        if self.wide_ref {
            (IEI_CONCAT_16, vec![hi, lo, self.total, self.seq])
        } else {
            (IEI_CONCAT_8, vec![lo, self.total, self.seq])
        }
    }

    /// Writes a complete UDH holding only this IE (6 or 7 octets).
    fn write_udh(self, out: &mut Vec<u8>) {
        let [hi, lo] = self.reference.to_be_bytes();
        if self.wide_ref {
            out.extend_from_slice(&[6, IEI_CONCAT_16, 4, hi, lo, self.total, self.seq]);
        } else {
            out.extend_from_slice(&[5, IEI_CONCAT_8, 3, lo, self.total, self.seq]);
        }
    }
}

/// One information element, kept raw so unknown IEs survive a round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ie {
    /// Information element identifier.
    pub iei: u8,
    /// Contents, without the IEI and length octets.
    pub data: Vec<u8>,
}

/// A User Data Header: its IEs in wire order. The list is private so the
/// encoded header always fits the one-octet UDHL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Udh {
    ies: Vec<Ie>,
}

impl Udh {
    /// An empty header.
    pub fn new() -> Self {
        Self::default()
    }

    /// A header holding just a concatenation IE.
    pub fn with_concat(info: ConcatInfo) -> Self {
        let (iei, data) = info.ie();
        Self { ies: vec![Ie { iei, data }] }
    }

    /// Appends an IE, refusing one that would overflow the UDHL octet.
    pub fn push(&mut self, iei: u8, data: Vec<u8>) -> Result<(), ConcatError> {
        let len = self.body_len() + 2 + data.len();
        if len > usize::from(u8::MAX) {
            return Err(ConcatError::HeaderTooLong { len });
        }
        self.ies.push(Ie { iei, data });
        Ok(())
    }

    /// The IEs in wire order.
    pub fn ies(&self) -> &[Ie] {
        &self.ies
    }

    /// The concatenation IE, if a valid one is present. Per 23.040 an IE
    /// with total 0, seq 0 or seq > total is ignored, and when several are
    /// present the last one counts.
    pub fn concat(&self) -> Option<ConcatInfo> {
        self.ies.iter().rev().find_map(|ie| {
            let info = match (ie.iei, ie.data.as_slice()) {
                (IEI_CONCAT_8, &[reference, total, seq]) => {
                    ConcatInfo { reference: u16::from(reference), total, seq, wide_ref: false }
                }
                (IEI_CONCAT_16, &[hi, lo, total, seq]) => ConcatInfo {
                    reference: u16::from_be_bytes([hi, lo]),
                    total,
                    seq,
                    wide_ref: true,
                },
                _ => return None,
            };
            (info.total != 0 && info.seq != 0 && info.seq <= info.total).then_some(info)
        })
    }

    fn body_len(&self) -> usize {
        self.ies.iter().map(|ie| 2 + ie.data.len()).sum()
    }

    /// Encoded size including the UDHL octet.
    pub fn encoded_len(&self) -> usize {
        1 + self.body_len()
    }

    /// Appends UDHL and the IEs to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        // `push` and `parse_udh` keep the body within 255 octets.
        out.push(self.body_len() as u8);
        for ie in &self.ies {
            out.push(ie.iei);
            out.push(ie.data.len() as u8);
            out.extend_from_slice(&ie.data);
        }
    }
}

/// Splits user data that starts with a UDH (esm_class has UDHI set) into
/// the header and the rest.
pub fn parse_udh(user_data: &[u8]) -> Result<(Udh, &[u8]), ConcatError> {
    let (&udhl, after) = user_data.split_first().ok_or(ConcatError::Empty)?;
    let (mut header, rest) = after
        .split_at_checked(usize::from(udhl))
        .ok_or(ConcatError::UdhlBeyondData { udhl, available: after.len() })?;
    let mut ies = Vec::new();
    while !header.is_empty() {
        let offset = 1 + usize::from(udhl) - header.len();
        let [iei, len, tail @ ..] = header else {
            return Err(ConcatError::IeTruncated { offset });
        };
        let (data, next) = tail
            .split_at_checked(usize::from(*len))
            .ok_or(ConcatError::IeBeyondUdhl { offset, iei: *iei, len: *len })?;
        ies.push(Ie { iei: *iei, data: data.to_vec() });
        header = next;
    }
    Ok((Udh { ies }, rest))
}

/// One part of a UDH-split message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Ready for `short_message`: UDH then encoded text (GSM7 unpacked, one
    /// septet per octet, as `data_coding` 0 is carried without a UDH).
    pub short_message: Vec<u8>,
    /// 1-based part number.
    pub seq: u8,
    /// Number of parts.
    pub total: u8,
    /// Whether `short_message` starts with a UDH; false only for a message
    /// that fit in one part.
    pub udhi: bool,
}

impl Part {
    /// Bits to OR into `esm_class`.
    pub fn esm_class_bits(&self) -> u8 {
        if self.udhi { ESM_CLASS_UDHI } else { 0 }
    }
}

/// Values for the three SAR TLVs of one part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SarInfo {
    /// `sar_msg_ref_num` (0x020C), same for all parts.
    pub msg_ref_num: u16,
    /// `sar_total_segments` (0x020E).
    pub total_segments: u8,
    /// `sar_segment_seqnum` (0x020F), 1-based.
    pub segment_seqnum: u8,
}

/// One part of a SAR-split message: plain encoded text, no UDH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SarPart {
    /// Encoded text for `short_message`.
    pub short_message: Vec<u8>,
    /// `None` when the message fit in one part and needs no SAR TLVs.
    pub sar: Option<SarInfo>,
}

#[derive(Clone, Copy)]
enum Header {
    None,
    Concat8,
    Concat16,
}

/// Room per part in encoded octets (septets for GSM7, unpacked). Derived
/// from the 140-octet TP-UD and the 6/7-octet concatenation UDH: GSM7
/// 160/153/152, 8-bit 140/134/133, UCS2 140/134/132 octets (70/67/66 units).
/// IA5 is sized as 8-bit: SMPP leaves its air-interface mapping to the SMSC,
/// so prefer GSM7 when part sizes must be exact.
fn capacity(alphabet: Alphabet, header: Header) -> Option<usize> {
    let udh = match header {
        Header::None => 0,
        Header::Concat8 => 6,
        Header::Concat16 => 7,
    };
    match alphabet {
        Alphabet::Gsm7 => Some(160 - (udh * 8usize).div_ceil(7)),
        Alphabet::Ucs2 => Some((140 - udh) / 2 * 2),
        Alphabet::Ia5 | Alphabet::Latin1 | Alphabet::Binary => Some(140 - udh),
        Alphabet::Unknown => None,
    }
}

/// Length of the indivisible unit starting at `i`: a GSM escape pair or a
/// UTF-16 surrogate pair must not straddle two parts.
fn atom_len(data: &[u8], i: usize, alphabet: Alphabet) -> usize {
    let n = match alphabet {
        Alphabet::Gsm7 if data.get(i) == Some(&GSM7_ESC) => 2,
        Alphabet::Ucs2 => {
            let unit = |j: usize| {
                data.get(j..).and_then(|b| b.first_chunk::<2>()).map(|&b| u16::from_be_bytes(b))
            };
            match (unit(i), unit(i + 2)) {
                (Some(0xD800..=0xDBFF), Some(0xDC00..=0xDFFF)) => 4,
                _ => 2,
            }
        }
        _ => 1,
    };
    n.min(data.len().saturating_sub(i)).max(1)
}

/// Greedy chunking of encoded data into pieces of at most `cap` octets,
/// cutting only between atoms.
struct Chunks<'a> {
    data: &'a [u8],
    alphabet: Alphabet,
    cap: usize,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.data.is_empty() {
            return None;
        }
        let mut end = 0;
        while end < self.data.len() {
            let atom = atom_len(self.data, end, self.alphabet);
            if end + atom > self.cap {
                break;
            }
            end += atom;
        }
        // Unreachable with real capacities (>= 132 > any atom); guarantees
        // progress regardless.
        if end == 0 {
            end = self.cap.clamp(1, self.data.len());
        }
        let (chunk, rest) = self.data.split_at_checked(end)?;
        self.data = rest;
        Some(chunk)
    }
}

/// Splits `data` into chunks for parts, or `Ok(None)` if it fits in one
/// message without a header.
fn plan(
    data: &[u8],
    alphabet: Alphabet,
    header: Header,
) -> Result<Option<(u8, Chunks<'_>)>, TextError> {
    let single = capacity(alphabet, Header::None).ok_or(TextError::NotText { alphabet })?;
    if alphabet == Alphabet::Ucs2 && !data.len().is_multiple_of(2) {
        return Err(TextError::OddLength { len: data.len() });
    }
    if data.len() <= single {
        return Ok(None);
    }
    let cap = capacity(alphabet, header).ok_or(TextError::NotText { alphabet })?;
    let chunks = || Chunks { data, alphabet, cap };
    let parts = chunks().count();
    let total = u8::try_from(parts).map_err(|_| TextError::TooManyParts { parts })?;
    Ok(Some((total, chunks())))
}

fn header_for(wide_ref: bool) -> Header {
    if wide_ref { Header::Concat16 } else { Header::Concat8 }
}

/// Encodes `text` in `coding` and splits it into UDH-prefixed parts (send
/// each with [`Part::esm_class_bits`] ORed into `esm_class`). Text that fits
/// one message comes back as a single part without a UDH. With
/// `wide_ref == false` only the low 8 bits of `reference` are used.
pub fn split(
    text: &str,
    coding: Alphabet,
    reference: u16,
    wide_ref: bool,
) -> Result<Vec<Part>, TextError> {
    split_encoded(&text::encode(text, coding)?, coding, reference, wide_ref)
}

/// As [`split`] for data already encoded in `coding`, e.g. binary payloads
/// (GSM7 must be unpacked septets).
pub fn split_encoded(
    data: &[u8],
    coding: Alphabet,
    reference: u16,
    wide_ref: bool,
) -> Result<Vec<Part>, TextError> {
    let Some((total, chunks)) = plan(data, coding, header_for(wide_ref))? else {
        return Ok(vec![Part { short_message: data.to_vec(), seq: 1, total: 1, udhi: false }]);
    };
    Ok(chunks
        .zip(1..=total)
        .map(|(chunk, seq)| {
            let mut short_message = Vec::with_capacity(7 + chunk.len());
            ConcatInfo { reference, total, seq, wide_ref }.write_udh(&mut short_message);
            short_message.extend_from_slice(chunk);
            Part { short_message, seq, total, udhi: true }
        })
        .collect())
}

/// Splits for the SAR TLVs: parts carry no UDH, the SMSC builds one from
/// the TLVs. Parts are therefore sized as if they carried a concatenation
/// UDH (153/134/67, or 152/133/66 with `wide_ref`), since that is what the
/// SMSC adds on the air interface; pass `wide_ref = true` when the SMSC
/// uses the 16-bit reference IE (it must for references above 255).
pub fn split_sar(
    text: &str,
    coding: Alphabet,
    msg_ref_num: u16,
    wide_ref: bool,
) -> Result<Vec<SarPart>, TextError> {
    split_sar_encoded(&text::encode(text, coding)?, coding, msg_ref_num, wide_ref)
}

/// As [`split_sar`] for data already encoded in `coding`.
pub fn split_sar_encoded(
    data: &[u8],
    coding: Alphabet,
    msg_ref_num: u16,
    wide_ref: bool,
) -> Result<Vec<SarPart>, TextError> {
    let Some((total, chunks)) = plan(data, coding, header_for(wide_ref))? else {
        return Ok(vec![SarPart { short_message: data.to_vec(), sar: None }]);
    };
    Ok(chunks
        .zip(1..=total)
        .map(|(chunk, seq)| SarPart {
            short_message: chunk.to_vec(),
            sar: Some(SarInfo { msg_ref_num, total_segments: total, segment_seqnum: seq }),
        })
        .collect())
}

/// The alphabet [`text::choose`] picks for `text` and how many parts it
/// needs with an 8-bit reference UDH (may exceed 255; [`split`] would then
/// fail).
pub fn parts_needed(text: &str) -> (Alphabet, usize) {
    let (coding, data) = text::choose(text);
    let alphabet = coding.alphabet();
    let parts = match (capacity(alphabet, Header::None), capacity(alphabet, Header::Concat8)) {
        (Some(single), _) if data.len() <= single => 1,
        (_, Some(cap)) => Chunks { data: &data, alphabet, cap }.count(),
        _ => 0,
    };
    (alphabet, parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tests::XorShift;

    /// Strips each part's UDH, checks it, and returns the concatenated body.
    fn reassemble(parts: &[Part], alphabet: Alphabet, wide_ref: bool) -> String {
        let mut body = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            if part.udhi {
                let (udh, rest) = parse_udh(&part.short_message).expect("part UDH parses");
                let info = udh.concat().expect("part has a concat IE");
                assert_eq!(info.seq as usize, i + 1);
                assert_eq!(info.total as usize, parts.len());
                assert_eq!(info.wide_ref, wide_ref);
                assert_eq!(udh.encoded_len(), if wide_ref { 7 } else { 6 });
                let cap = capacity(alphabet, header_for(wide_ref)).expect("text alphabet");
                assert!(rest.len() <= cap, "part {} has {} > {cap}", i + 1, rest.len());
                body.extend_from_slice(rest);
            } else {
                assert_eq!(parts.len(), 1);
                body.extend_from_slice(&part.short_message);
            }
        }
        text::decode(&body, alphabet).expect("reassembled text decodes")
    }

    fn body_lens(parts: &[Part]) -> Vec<usize> {
        parts
            .iter()
            .map(|p| {
                if p.udhi {
                    parse_udh(&p.short_message).expect("valid input").1.len()
                } else {
                    p.short_message.len()
                }
            })
            .collect()
    }

    #[test]
    fn gsm7_limits() {
        let cases = [
            (160, vec![160]),
            (161, vec![153, 8]),
            (306, vec![153, 153]),
            (307, vec![153, 153, 1]),
        ];
        for (n, lens) in cases {
            let s = "a".repeat(n);
            let parts = split(&s, Alphabet::Gsm7, 0x1234, false).expect("valid input");
            assert_eq!(body_lens(&parts), lens, "{n}");
            assert_eq!(reassemble(&parts, Alphabet::Gsm7, false), s);
            assert_eq!(parts_needed(&s), (Alphabet::Gsm7, lens.len()));
        }
        let single = split("hi", Alphabet::Gsm7, 7, false).expect("valid input");
        assert_eq!(single, [Part { short_message: b"hi".to_vec(), seq: 1, total: 1, udhi: false }]);
        assert_eq!(single[0].esm_class_bits(), 0);
    }

    #[test]
    fn udh_bytes_8_and_16_bit() {
        let parts = split(&"a".repeat(161), Alphabet::Gsm7, 0x1234, false).expect("valid input");
        assert_eq!(parts[0].short_message[..6], [0x05, 0x00, 0x03, 0x34, 0x02, 0x01]);
        assert_eq!(parts[1].short_message[..6], [0x05, 0x00, 0x03, 0x34, 0x02, 0x02]);
        assert_eq!(parts[0].esm_class_bits(), ESM_CLASS_UDHI);
        let parts = split(&"a".repeat(161), Alphabet::Gsm7, 0x1234, true).expect("valid input");
        assert_eq!(parts[1].short_message[..7], [0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x02]);
    }

    #[test]
    fn wide_ref_limits() {
        let gsm = split(&"a".repeat(161), Alphabet::Gsm7, 1, true).expect("valid input");
        assert_eq!(body_lens(&gsm), [152, 9]);
        let latin = split(&"ç".repeat(141), Alphabet::Latin1, 1, true).expect("valid input");
        assert_eq!(body_lens(&latin), [133, 8]);
        let ucs = split(&"Ж".repeat(71), Alphabet::Ucs2, 1, true).expect("valid input");
        assert_eq!(body_lens(&ucs), [132, 10]);
        assert_eq!(reassemble(&ucs, Alphabet::Ucs2, true), "Ж".repeat(71));
    }

    #[test]
    fn ucs2_and_latin1_limits() {
        let s = "Ж".repeat(70);
        assert_eq!(body_lens(&split(&s, Alphabet::Ucs2, 1, false).expect("valid input")), [140]);
        let s = "Ж".repeat(71);
        let parts = split(&s, Alphabet::Ucs2, 1, false).expect("valid input");
        assert_eq!(body_lens(&parts), [134, 8]); // 67 + 4 units
        assert_eq!(parts_needed(&s), (Alphabet::Ucs2, 2));
        let s = "ç".repeat(140);
        assert_eq!(parts_needed(&s), (Alphabet::Latin1, 1));
        let s = "ç".repeat(141);
        assert_eq!(
            body_lens(&split(&s, Alphabet::Latin1, 1, false).expect("valid input")),
            [134, 7]
        );
        assert_eq!(parts_needed(&s), (Alphabet::Latin1, 2));
    }

    #[test]
    fn escape_pair_not_split() {
        // Septets 152 and 153 (0-based) are ESC and 0x65: the pair would
        // straddle the 153-septet boundary, so part 1 stops at 152.
        let s = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        let parts = split(&s, Alphabet::Gsm7, 9, false).expect("valid input");
        assert_eq!(body_lens(&parts), [152, 12]);
        assert_eq!(parts[1].short_message[6..8], [0x1B, 0x65]);
        assert_eq!(reassemble(&parts, Alphabet::Gsm7, false), s);
        // One earlier, the pair ends exactly on the boundary.
        let s = format!("{}€{}", "a".repeat(151), "b".repeat(10));
        assert_eq!(
            body_lens(&split(&s, Alphabet::Gsm7, 9, false).expect("valid input")),
            [153, 10]
        );
        // 80 two-septet characters exactly fill one message.
        assert_eq!(parts_needed(&"{".repeat(80)), (Alphabet::Gsm7, 1));
        assert_eq!(parts_needed(&"{".repeat(81)), (Alphabet::Gsm7, 2));
    }

    #[test]
    fn surrogate_pair_not_split() {
        // Units 66 and 67 (0-based) are the pair; 67 units would cut it.
        let s = format!("{}😀{}", "Ж".repeat(66), "Ж".repeat(10));
        let parts = split(&s, Alphabet::Ucs2, 3, false).expect("valid input");
        assert_eq!(body_lens(&parts), [132, 24]);
        assert_eq!(reassemble(&parts, Alphabet::Ucs2, false), s);
        let emoji = "😀".repeat(40); // 80 units
        let parts = split(&emoji, Alphabet::Ucs2, 3, false).expect("valid input");
        assert_eq!(body_lens(&parts), [132, 28]);
        assert_eq!(reassemble(&parts, Alphabet::Ucs2, false), emoji);
    }

    #[test]
    fn sar_split() {
        let s = "a".repeat(161);
        let parts = split_sar(&s, Alphabet::Gsm7, 0xBEEF, false).expect("valid input");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].short_message.len(), 153);
        assert_eq!(
            parts[1].sar,
            Some(SarInfo { msg_ref_num: 0xBEEF, total_segments: 2, segment_seqnum: 2 })
        );
        let wide = split_sar(&s, Alphabet::Gsm7, 0xBEEF, true).expect("valid input");
        assert_eq!(wide[0].short_message.len(), 152);
        let one = split_sar("hi", Alphabet::Gsm7, 1, false).expect("valid input");
        assert_eq!(one, [SarPart { short_message: b"hi".to_vec(), sar: None }]);
    }

    #[test]
    fn too_many_parts_and_not_text() {
        let ok = "a".repeat(153 * 255);
        assert_eq!(split(&ok, Alphabet::Gsm7, 1, false).expect("valid input").len(), 255);
        let s = "a".repeat(153 * 255 + 1);
        assert_eq!(
            split(&s, Alphabet::Gsm7, 1, false),
            Err(TextError::TooManyParts { parts: 256 })
        );
        assert_eq!(parts_needed(&s), (Alphabet::Gsm7, 256));
        assert_eq!(
            split("x", Alphabet::Binary, 1, false),
            Err(TextError::NotText { alphabet: Alphabet::Binary })
        );
        assert!(matches!(
            split("€", Alphabet::Latin1, 1, false),
            Err(TextError::Unrepresentable { ch: '€', .. })
        ));
        assert_eq!(
            split_encoded(&[0; 3], Alphabet::Ucs2, 1, false),
            Err(TextError::OddLength { len: 3 })
        );
    }

    #[test]
    fn binary_split() {
        let data: Vec<u8> = (0..=255u8).collect();
        let parts = split_encoded(&data, Alphabet::Binary, 1, false).expect("valid input");
        assert_eq!(body_lens(&parts), [134, 122]);
        let mut joined = Vec::new();
        for p in &parts {
            joined.extend_from_slice(parse_udh(&p.short_message).expect("valid input").1);
        }
        assert_eq!(joined, data);
    }

    #[test]
    fn udh_parse_keeps_other_ies() {
        // Port addressing (16-bit) then 8-bit concatenation, then text.
        let data =
            [0x0B, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x00, 0x03, 0xAA, 0x03, 0x02, b'h', b'i'];
        let (udh, rest) = parse_udh(&data).expect("valid input");
        assert_eq!(rest, b"hi");
        assert_eq!(udh.ies()[0], Ie { iei: IEI_PORT_16, data: vec![0x0B, 0x84, 0x23, 0xF0] });
        assert_eq!(
            udh.concat(),
            Some(ConcatInfo { reference: 0xAA, total: 3, seq: 2, wide_ref: false })
        );
        let mut out = Vec::new();
        udh.encode(&mut out);
        assert_eq!(out, data[..12]);
        assert_eq!(udh.encoded_len(), 12);
    }

    #[test]
    fn udh_build() {
        let info = ConcatInfo { reference: 0x0102, total: 4, seq: 3, wide_ref: true };
        let mut udh = Udh::with_concat(info);
        udh.push(IEI_PORT_8, vec![0x10, 0x20]).expect("valid input");
        let mut out = Vec::new();
        udh.encode(&mut out);
        assert_eq!(out, [0x0A, 0x08, 0x04, 0x01, 0x02, 0x04, 0x03, 0x04, 0x02, 0x10, 0x20]);
        assert_eq!(parse_udh(&out).expect("valid input").0.concat(), Some(info));

        let mut big = Udh::new();
        big.push(0x70, vec![0; 253]).expect("valid input");
        assert_eq!(big.push(0x71, vec![]), Err(ConcatError::HeaderTooLong { len: 257 }));
        assert_eq!(
            Udh::new().push(0x70, vec![0; 254]),
            Err(ConcatError::HeaderTooLong { len: 256 })
        );
    }

    #[test]
    fn udh_malformed() {
        assert_eq!(parse_udh(&[]), Err(ConcatError::Empty));
        assert_eq!(
            parse_udh(&[0x05, 0x00, 0x03, 0x01]),
            Err(ConcatError::UdhlBeyondData { udhl: 5, available: 3 })
        );
        // IE claims 4 octets but the UDH ends after 3 (text follows).
        assert_eq!(
            parse_udh(&[0x05, 0x00, 0x04, 0x01, 0x02, 0x03, b'x', b'y']),
            Err(ConcatError::IeBeyondUdhl { offset: 1, iei: 0x00, len: 4 })
        );
        // Lone IEI with no length octet at the end of the UDH.
        assert_eq!(
            parse_udh(&[0x06, 0x00, 0x03, 0x01, 0x02, 0x03, 0x08, b'x']),
            Err(ConcatError::IeTruncated { offset: 6 })
        );
        // Empty UDH is well formed.
        let (udh, rest) = parse_udh(&[0x00, b'x']).expect("valid input");
        assert!(udh.ies().is_empty());
        assert_eq!(rest, b"x");
    }

    #[test]
    fn concat_ie_validity() {
        let parse = |d: &[u8]| parse_udh(d).expect("valid input").0.concat();
        assert_eq!(parse(&[0x05, 0x00, 0x03, 0x01, 0x00, 0x01]), None); // total 0
        assert_eq!(parse(&[0x05, 0x00, 0x03, 0x01, 0x02, 0x00]), None); // seq 0
        assert_eq!(parse(&[0x05, 0x00, 0x03, 0x01, 0x02, 0x03]), None); // seq > total
        assert_eq!(parse(&[0x04, 0x00, 0x02, 0x01, 0x02]), None); // wrong IE length
        // Last valid occurrence wins.
        let two = [0x0B, 0x00, 0x03, 0x01, 0x02, 0x01, 0x08, 0x04, 0x00, 0x07, 0x05, 0x04];
        assert_eq!(
            parse(&two),
            Some(ConcatInfo { reference: 7, total: 5, seq: 4, wide_ref: true })
        );
    }

    #[test]
    fn random_split_round_trips_and_no_panics() {
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        for i in 0..2_000 {
            let s = rng.string(500);
            let wide_ref = i % 2 == 0;
            let reference = rng.next() as u16;
            let (coding, _) = text::choose_with(&s, i % 3 != 0);
            let alphabet = coding.alphabet();
            let parts = split(&s, alphabet, reference, wide_ref).expect("valid input");
            assert_eq!(reassemble(&parts, alphabet, wide_ref), s);
            if parts.len() == 1 {
                let single = capacity(alphabet, Header::None).expect("valid input");
                assert!(parts[0].short_message.len() <= single);
            }
            if i % 3 != 0 && !wide_ref {
                assert_eq!(parts_needed(&s), (alphabet, parts.len()));
            }
            let sar = split_sar(&s, alphabet, reference, wide_ref).expect("valid input");
            assert_eq!(sar.len(), parts.len());

            let junk = rng.bytes(300);
            if let Ok((udh, rest)) = parse_udh(&junk) {
                let mut out = Vec::new();
                udh.encode(&mut out);
                out.extend_from_slice(rest);
                assert_eq!(out, junk);
                let _ = udh.concat();
            }
            for alphabet in [Alphabet::Gsm7, Alphabet::Ucs2, Alphabet::Binary, Alphabet::Unknown] {
                let _ = split_encoded(&junk, alphabet, reference, wide_ref);
            }
        }
    }
}
