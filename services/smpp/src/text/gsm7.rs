//! GSM 03.38 (3GPP TS 23.038 §6.2.1) default alphabet, its extension table,
//! and septet packing.
//!
//! SMPP carries `data_coding` 0 as one septet per octet ("unpacked"); the
//! 140-octet air interface packs eight septets into seven octets. Both forms
//! are provided here.

use super::{Alphabet, TextError};

/// Escape to the extension table (§6.2.1.1).
pub const ESC: u8 = 0x1B;

/// Default alphabet, indexed by septet. Entry 0x1B is never read: the escape
/// is handled before the table lookup.
const BASE: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ' ', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// Extension table (§6.2.1.1): `(code after ESC, character)`.
const EXT: [(u8, char); 10] = [
    (0x0A, '\u{0C}'), // form feed (page break)
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Marks an extension-table code in the lookup results below; the low seven
/// bits are the code that follows ESC. No extension code is 0x7F, so
/// `0xFF` is free to mean "not representable".
const EXT_FLAG: u8 = 0x80;
const NONE: u8 = 0xFF;

/// ASCII → septet (or `EXT_FLAG | code`), built from the tables above so the
/// two directions cannot drift apart.
const ASCII_TO_GSM: [u8; 128] = {
    let mut table = [NONE; 128];
    let mut i = 0;
    while i < BASE.len() {
        let c = BASE[i] as u32;
        if i != ESC as usize && c < 128 {
            table[c as usize] = i as u8;
        }
        i += 1;
    }
    let mut j = 0;
    while j < EXT.len() {
        let (code, c) = EXT[j];
        if (c as u32) < 128 {
            table[c as usize] = EXT_FLAG | code;
        }
        j += 1;
    }
    table
};

/// Septet code for `ch`, with `EXT_FLAG` set when it needs the escape.
#[inline]
fn lookup(ch: char) -> Option<u8> {
    if ch.is_ascii() {
        match ASCII_TO_GSM[usize::from(ch as u8 & 0x7F)] {
            NONE => None,
            code => Some(code),
        }
    } else {
        non_ascii(ch)
    }
}

/// The non-ASCII part of the default and extension tables; a match compiles
/// to a compact search and is only reached for non-ASCII input.
fn non_ascii(ch: char) -> Option<u8> {
    Some(match ch {
        '£' => 0x01,
        '¥' => 0x03,
        'è' => 0x04,
        'é' => 0x05,
        'ù' => 0x06,
        'ì' => 0x07,
        'ò' => 0x08,
        'Ç' => 0x09,
        'Ø' => 0x0B,
        'ø' => 0x0C,
        'Å' => 0x0E,
        'å' => 0x0F,
        'Δ' => 0x10,
        'Φ' => 0x12,
        'Γ' => 0x13,
        'Λ' => 0x14,
        'Ω' => 0x15,
        'Π' => 0x16,
        'Ψ' => 0x17,
        'Σ' => 0x18,
        'Θ' => 0x19,
        'Ξ' => 0x1A,
        'Æ' => 0x1C,
        'æ' => 0x1D,
        'ß' => 0x1E,
        'É' => 0x1F,
        '¤' => 0x24,
        '¡' => 0x40,
        'Ä' => 0x5B,
        'Ö' => 0x5C,
        'Ñ' => 0x5D,
        'Ü' => 0x5E,
        '§' => 0x5F,
        '¿' => 0x60,
        'ä' => 0x7B,
        'ö' => 0x7C,
        'ñ' => 0x7D,
        'ü' => 0x7E,
        'à' => 0x7F,
        '€' => EXT_FLAG | 0x65,
        _ => return None,
    })
}

#[inline]
fn base_char(septet: u8) -> char {
    BASE[usize::from(septet & 0x7F)]
}

fn ext_char(code: u8) -> Option<char> {
    EXT.iter().find(|&&(c, _)| c == code).map(|&(_, ch)| ch)
}

/// Encodes `s` as unpacked septets, one per octet, as SMPP `data_coding` 0
/// carries them; extension characters become the two octets `0x1B code`.
///
/// Mapping is strict: look-alikes are not substituted (e.g. `ç` is not
/// turned into `Ç`, Greek `Α` not into Latin `A`), so a caller that needs
/// such folding must do it first; otherwise [`choose`](super::choose) falls
/// back to another alphabet.
pub fn gsm7_encode(s: &str) -> Result<Vec<u8>, TextError> {
    // Extension characters take two septets, so this may grow once.
    let mut out = Vec::with_capacity(s.len());
    for (offset, ch) in s.char_indices() {
        let code = lookup(ch).ok_or(TextError::Unrepresentable {
            ch,
            offset,
            alphabet: Alphabet::Gsm7,
        })?;
        if code & EXT_FLAG == 0 {
            out.push(code);
        } else {
            out.push(ESC);
            out.push(code & 0x7F);
        }
    }
    Ok(out)
}

/// Decodes unpacked septets.
///
/// * An octet above 0x7F is not a septet: [`TextError::InvalidByte`].
/// * An extension code with no entry decodes to the main-table character
///   for that code, as the 23.038 note to the extension table tells a
///   receiver to display.
/// * `ESC ESC` is reserved for a further extension table and decodes to a
///   space, as the same table prescribes.
/// * A lone `ESC` at the end decodes to nothing: it carries no character of
///   its own (typically the first half of a pair cut off by a sender), and
///   adding a space would invent text that was never sent.
pub fn gsm7_decode(septets: &[u8]) -> Result<String, TextError> {
    let mut out = String::with_capacity(septets.len());
    let mut iter = septets.iter().copied().enumerate();
    while let Some((offset, byte)) = iter.next() {
        if byte > 0x7F {
            return Err(TextError::InvalidByte { offset, byte });
        }
        if byte != ESC {
            out.push(base_char(byte));
            continue;
        }
        match iter.next() {
            None => break,
            Some((offset, byte)) if byte > 0x7F => {
                return Err(TextError::InvalidByte { offset, byte });
            }
            Some((_, ESC)) => out.push(' '),
            Some((_, code)) => out.push(ext_char(code).unwrap_or_else(|| base_char(code))),
        }
    }
    Ok(out)
}

/// Number of septets `s` takes in the default alphabet (extension characters
/// count two), or `None` if some character is not representable.
pub fn gsm7_septets(s: &str) -> Option<usize> {
    s.chars().try_fold(0usize, |n, ch| lookup(ch).map(|code| n + 1 + usize::from(code >> 7)))
}

/// Whether `ch` is in the default alphabet or its extension table.
pub fn gsm7_contains(ch: char) -> bool {
    lookup(ch).is_some()
}

/// Packs septets (23.038 §6.1.2.1.1): septet *i* occupies bits
/// `fill_bits + 7i ..` counted from the least significant bit of the first
/// octet.
///
/// `fill_bits` zero bits come first; they align the text to a septet
/// boundary after a UDH (see [`udh_fill_bits`]). Values 0..=6 are the useful
/// ones; larger values simply skip more leading bits. Only the low seven bits
/// of each input octet are used. Spare bits in the last octet are zero: SMS
/// carries the septet count in TP-UDL, so the "7 septets then CR" padding
/// used by USSD/cell broadcast is not applied here. No septets pack to no
/// octets, fill or not.
pub fn gsm7_pack(septets: &[u8], fill_bits: u8) -> Vec<u8> {
    if septets.is_empty() {
        return Vec::new();
    }
    let total_bits = usize::from(fill_bits) + septets.len() * 7;
    let mut out = Vec::with_capacity(total_bits.div_ceil(8));
    let mut fill = u32::from(fill_bits);
    while fill >= 8 {
        out.push(0);
        fill -= 8;
    }
    let mut acc: u32 = 0;
    let mut nbits = fill;
    for &septet in septets {
        acc |= u32::from(septet & 0x7F) << nbits;
        nbits += 7;
        if nbits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            nbits -= 8;
        }
    }
    if nbits > 0 {
        out.push(acc as u8);
    }
    out
}

/// Unpacks `septet_count` septets from `packed`, skipping `fill_bits`
/// leading bits. The count is explicit (TP-UDL minus the UDH septets), so
/// seven septets in seven octets are never mistaken for eight ending in `@`.
/// Octets beyond those needed are ignored.
pub fn gsm7_unpack(
    packed: &[u8],
    septet_count: usize,
    fill_bits: u8,
) -> Result<Vec<u8>, TextError> {
    let needed = if septet_count == 0 {
        0
    } else {
        septet_count
            .checked_mul(7)
            .and_then(|bits| bits.checked_add(usize::from(fill_bits)))
            .map_or(usize::MAX, |bits| bits.div_ceil(8))
    };
    if packed.len() < needed {
        return Err(TextError::PackedTooShort {
            septets: septet_count,
            needed,
            available: packed.len(),
        });
    }
    let mut out = Vec::with_capacity(septet_count);
    let mut bytes = packed.iter().skip(usize::from(fill_bits / 8)).copied();
    let mut skip = u32::from(fill_bits % 8);
    let mut acc: u32 = 0;
    let mut nbits: u32 = 0;
    for _ in 0..septet_count {
        while nbits < 7 {
            // The length check above guarantees the octet exists.
            let byte = u32::from(bytes.next().unwrap_or(0));
            acc |= (byte >> skip) << nbits;
            nbits += 8 - skip;
            skip = 0;
        }
        out.push((acc & 0x7F) as u8);
        acc >>= 7;
        nbits -= 7;
    }
    Ok(out)
}

/// Fill bits that put the first septet on a septet boundary after a UDH of
/// `udh_len_octets` octets, counting the UDHL octet itself (23.040
/// §9.2.3.24): 6 octets (8-bit concatenation) → 1, 7 octets → 0.
pub fn udh_fill_bits(udh_len_octets: usize) -> u8 {
    let bits = (udh_len_octets % 7) * 8;
    ((7 - bits % 7) % 7) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_mutual_inverses() {
        for (i, &ch) in BASE.iter().enumerate() {
            if i == usize::from(ESC) {
                continue;
            }
            assert_eq!(lookup(ch), Some(i as u8), "{ch:?}");
            assert_eq!(gsm7_decode(&[i as u8]).expect("valid input"), ch.to_string());
        }
        for &(code, ch) in &EXT {
            assert_eq!(lookup(ch), Some(EXT_FLAG | code), "{ch:?}");
            assert_eq!(gsm7_decode(&[ESC, code]).expect("valid input"), ch.to_string());
        }
        // Every ASCII/extension entry of the reverse table points back.
        for c in 0u8..128 {
            let ch = char::from(c);
            if let Some(code) = lookup(ch) {
                let expect = if code & EXT_FLAG == 0 {
                    BASE[usize::from(code)]
                } else {
                    ext_char(code & 0x7F).expect("valid input")
                };
                assert_eq!(expect, ch);
            }
        }
    }

    #[test]
    fn known_code_points() {
        let cases: &[(&str, &[u8])] = &[
            ("@", &[0x00]),
            ("£", &[0x01]),
            ("$", &[0x02]),
            ("_", &[0x11]),
            ("ß", &[0x1E]),
            ("¤", &[0x24]),
            ("¡", &[0x40]),
            ("Ñ", &[0x5D]),
            ("ñ", &[0x7D]),
            ("ü", &[0x7E]),
            ("Ü", &[0x5E]),
            ("à", &[0x7F]),
            ("Δ", &[0x10]),
            ("\n\r", &[0x0A, 0x0D]),
            ("€", &[0x1B, 0x65]),
            ("{", &[0x1B, 0x28]),
            ("}", &[0x1B, 0x29]),
            ("[~]", &[0x1B, 0x3C, 0x1B, 0x3D, 0x1B, 0x3E]),
            ("\\|^", &[0x1B, 0x2F, 0x1B, 0x40, 0x1B, 0x14]),
            ("\u{0C}", &[0x1B, 0x0A]),
        ];
        for &(s, septets) in cases {
            assert_eq!(gsm7_encode(s).expect("valid input"), septets, "{s:?}");
            assert_eq!(gsm7_decode(septets).expect("valid input"), s);
            assert_eq!(gsm7_septets(s), Some(septets.len()));
        }
    }

    #[test]
    fn unrepresentable() {
        for (s, ch, offset) in [("a`", '`', 1), ("çx", 'ç', 0), ("ab😀", '😀', 2), ("\t", '\t', 0)]
        {
            assert_eq!(
                gsm7_encode(s),
                Err(TextError::Unrepresentable { ch, offset, alphabet: Alphabet::Gsm7 })
            );
            assert_eq!(gsm7_septets(s), None);
        }
    }

    #[test]
    fn decode_edge_cases() {
        assert_eq!(
            gsm7_decode(&[0x41, 0x80]),
            Err(TextError::InvalidByte { offset: 1, byte: 0x80 })
        );
        assert_eq!(
            gsm7_decode(&[ESC, 0xC1]),
            Err(TextError::InvalidByte { offset: 1, byte: 0xC1 })
        );
        assert_eq!(gsm7_decode(&[0x41, ESC]).expect("valid input"), "A");
        assert_eq!(gsm7_decode(&[ESC, ESC, 0x41]).expect("valid input"), " A");
        // Unknown extension code → main-table character.
        assert_eq!(gsm7_decode(&[ESC, 0x41]).expect("valid input"), "A");
        assert_eq!(gsm7_decode(&[]).expect("valid input"), "");
    }

    #[test]
    fn hellohello_packs_to_known_octets() {
        let septets = gsm7_encode("hellohello").expect("valid input");
        let packed = gsm7_pack(&septets, 0);
        assert_eq!(packed, [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]);
        assert_eq!(gsm7_unpack(&packed, 10, 0).expect("valid input"), septets);
    }

    #[test]
    fn pack_boundaries() {
        // 7 septets fill 49 bits → 7 octets, the top 7 bits of the last are
        // zero; the explicit count keeps them from reading as '@'.
        let seven = gsm7_encode("1234567").expect("valid input");
        let packed = gsm7_pack(&seven, 0);
        assert_eq!(packed.len(), 7);
        assert_eq!(packed[6] >> 1, 0);
        assert_eq!(gsm7_unpack(&packed, 7, 0).expect("valid input"), seven);
        assert_eq!(gsm7_unpack(&packed, 8, 0).expect("valid input").last(), Some(&0));
        // 8 septets end exactly on an octet boundary.
        let eight = gsm7_encode("12345678").expect("valid input");
        let packed = gsm7_pack(&eight, 0);
        assert_eq!(packed.len(), 7);
        assert_eq!(gsm7_unpack(&packed, 8, 0).expect("valid input"), eight);
        assert_eq!(gsm7_pack(&[], 0), Vec::<u8>::new());
        assert_eq!(gsm7_pack(&[], 3), Vec::<u8>::new());
        assert_eq!(gsm7_unpack(&[], 0, 3).expect("valid input"), Vec::<u8>::new());
    }

    #[test]
    fn fill_bits_follow_udh() {
        assert_eq!(udh_fill_bits(0), 0);
        assert_eq!(udh_fill_bits(6), 1);
        assert_eq!(udh_fill_bits(7), 0);
        assert_eq!(udh_fill_bits(12), 2); // 96 bits + 2 = 98 = 14 septets
    }

    #[test]
    fn fill_bits_round_trip() {
        let septets = gsm7_encode("The quick brown fox €{}").expect("valid input");
        for fill in 0..=20u8 {
            let packed = gsm7_pack(&septets, fill);
            let bits = usize::from(fill) + septets.len() * 7;
            assert_eq!(packed.len(), bits.div_ceil(8));
            assert_eq!(gsm7_unpack(&packed, septets.len(), fill).expect("valid input"), septets);
        }
        // One fill bit: first octet holds the first septet shifted by one.
        assert_eq!(gsm7_pack(&[0x41], 1), [0x82]);
    }

    #[test]
    fn unpack_rejects_short_input() {
        assert_eq!(
            gsm7_unpack(&[0xE8, 0x32], 3, 0),
            Err(TextError::PackedTooShort { septets: 3, needed: 3, available: 2 })
        );
        assert!(matches!(
            gsm7_unpack(&[0; 4], usize::MAX, 6),
            Err(TextError::PackedTooShort { .. })
        ));
    }
}
