//! SMPP `data_coding` values (SMPP 3.4 §5.2.19) and conversion between Rust
//! strings and the octets carried in `short_message` / `message_payload`.

mod gsm7;

use std::fmt;

pub use gsm7::{
    ESC as GSM7_ESC, gsm7_contains, gsm7_decode, gsm7_encode, gsm7_pack, gsm7_septets, gsm7_unpack,
    udh_fill_bits,
};

/// The `data_coding` octet. Kept as a raw newtype because SMSCs send values
/// outside the SMPP table (GSM 03.38 coding groups) that must survive a
/// round trip untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DataCoding(pub u8);

impl DataCoding {
    /// SMSC default alphabet; treated here as GSM 03.38, one septet per octet.
    pub const DEFAULT: Self = Self(0x00);
    /// IA5 (CCITT T.50) / ASCII (ANSI X3.4).
    pub const IA5: Self = Self(0x01);
    /// Octet unspecified (8-bit binary).
    pub const BINARY: Self = Self(0x02);
    /// Latin 1 (ISO-8859-1).
    pub const LATIN1: Self = Self(0x03);
    /// Octet unspecified (8-bit binary); also the GSM 03.38 DCS for 8-bit
    /// data, so it means the same to SMSCs that pass the value through.
    pub const BINARY_ALT: Self = Self(0x04);
    /// JIS (X 0208-1990).
    pub const JIS: Self = Self(0x05);
    /// Cyrillic (ISO-8859-5).
    pub const CYRILLIC: Self = Self(0x06);
    /// Latin/Hebrew (ISO-8859-8).
    pub const HEBREW: Self = Self(0x07);
    /// UCS2 (ISO/IEC-10646); handled as UTF-16BE so surrogate pairs work.
    pub const UCS2: Self = Self(0x08);
    /// Pictogram encoding.
    pub const PICTOGRAM: Self = Self(0x09);
    /// ISO-2022-JP (music codes).
    pub const ISO_2022_JP: Self = Self(0x0A);
    /// Extended Kanji JIS (X 0212-1990).
    pub const KANJI_JIS: Self = Self(0x0D);
    /// KS C 5601.
    pub const KS_C_5601: Self = Self(0x0E);

    /// Human-readable name, for logs.
    pub fn name(self) -> &'static str {
        match self.0 {
            0x00 => "SMSC default alphabet",
            0x01 => "IA5/ASCII",
            0x02 | 0x04 => "octet unspecified (8-bit binary)",
            0x03 => "Latin 1 (ISO-8859-1)",
            0x05 => "JIS (X 0208-1990)",
            0x06 => "Cyrillic (ISO-8859-5)",
            0x07 => "Latin/Hebrew (ISO-8859-8)",
            0x08 => "UCS2 (ISO/IEC-10646)",
            0x09 => "pictogram encoding",
            0x0A => "ISO-2022-JP (music codes)",
            0x0D => "extended Kanji JIS (X 0212-1990)",
            0x0E => "KS C 5601",
            0x0B | 0x0C | 0x0F => "reserved",
            0x10..=0x3F => "GSM general data coding",
            0x40..=0x7F => "GSM automatic deletion group",
            0x80..=0xBF => "GSM reserved coding group",
            0xC0..=0xCF => "GSM message waiting, discard",
            0xD0..=0xDF => "GSM message waiting, store",
            0xE0..=0xEF => "GSM message waiting, store (UCS2)",
            0xF0..=0xFF => "GSM data coding/message class",
        }
    }

    /// The alphabet the user data is in.
    ///
    /// 0x00..=0x0F follow the SMPP table (which defines that range and
    /// overrides the GSM reading of it); higher values follow the GSM 03.38
    /// (TS 23.038 §4) coding groups. Compressed text, reserved groups and
    /// character sets without a converter here give [`Alphabet::Unknown`].
    pub fn alphabet(self) -> Alphabet {
        let v = self.0;
        match v {
            0x00 => Alphabet::Gsm7,
            0x01 => Alphabet::Ia5,
            0x02 | 0x04 => Alphabet::Binary,
            0x03 => Alphabet::Latin1,
            0x08 => Alphabet::Ucs2,
            0x05..=0x07 | 0x09..=0x0F => Alphabet::Unknown,
            // General data coding (00xx) and automatic deletion (01xx):
            // bit 5 = compressed, bits 3..2 = alphabet.
            0x10..=0x7F if v & 0x20 != 0 => Alphabet::Unknown,
            0x10..=0x7F => match (v >> 2) & 0x03 {
                0 => Alphabet::Gsm7,
                1 => Alphabet::Binary,
                2 => Alphabet::Ucs2,
                _ => Alphabet::Unknown,
            },
            0x80..=0xBF => Alphabet::Unknown,
            0xC0..=0xDF => Alphabet::Gsm7,
            0xE0..=0xEF => Alphabet::Ucs2,
            // Data coding/message class: bit 2 = 8-bit data, else GSM7.
            0xF0..=0xFF if v & 0x04 != 0 => Alphabet::Binary,
            0xF0..=0xFF => Alphabet::Gsm7,
        }
    }

    /// GSM message class (0 = flash, 1 = ME, 2 = SIM, 3 = TE) when the
    /// coding group carries one.
    pub fn message_class(self) -> Option<u8> {
        match self.0 {
            v @ 0x10..=0x7F if v & 0x10 != 0 => Some(v & 0x03),
            v @ 0xF0..=0xFF => Some(v & 0x03),
            _ => None,
        }
    }
}

impl From<u8> for DataCoding {
    fn from(v: u8) -> Self {
        Self(v)
    }
}

impl From<DataCoding> for u8 {
    fn from(dc: DataCoding) -> Self {
        dc.0
    }
}

/// The character repertoire of user data, as far as this crate converts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alphabet {
    /// GSM 03.38 default alphabet plus extension table, unpacked.
    Gsm7,
    /// IA5 / 7-bit ASCII.
    Ia5,
    /// ISO-8859-1.
    Latin1,
    /// UTF-16BE (UCS2 extended with surrogate pairs).
    Ucs2,
    /// 8-bit data; not text.
    Binary,
    /// Anything without a converter here.
    Unknown,
}

impl Alphabet {
    /// The SMPP `data_coding` to send this alphabet with. Binary maps to
    /// 0x04 because that value also means 8-bit data to an SMSC that copies
    /// `data_coding` into the GSM DCS, whereas 0x02 would read as GSM7 there.
    pub fn data_coding(self) -> Option<DataCoding> {
        match self {
            Self::Gsm7 => Some(DataCoding::DEFAULT),
            Self::Ia5 => Some(DataCoding::IA5),
            Self::Latin1 => Some(DataCoding::LATIN1),
            Self::Ucs2 => Some(DataCoding::UCS2),
            Self::Binary => Some(DataCoding::BINARY_ALT),
            Self::Unknown => None,
        }
    }
}

impl fmt::Display for Alphabet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Gsm7 => "GSM 03.38",
            Self::Ia5 => "IA5",
            Self::Latin1 => "Latin-1",
            Self::Ucs2 => "UCS2",
            Self::Binary => "binary",
            Self::Unknown => "unknown alphabet",
        })
    }
}

/// Text conversion failures. Fields are plain values so errors are cheap on
/// the hot path and callers can match on them.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TextError {
    /// `ch` at byte `offset` of the input string has no code in `alphabet`.
    #[error("character {ch:?} at byte {offset} cannot be encoded in {alphabet}")]
    Unrepresentable {
        /// The offending character.
        ch: char,
        /// Its byte offset in the input `&str`.
        offset: usize,
        /// The target alphabet.
        alphabet: Alphabet,
    },
    /// An octet that is not a valid code (above 0x7F for GSM7 / IA5).
    #[error("invalid octet 0x{byte:02X} at offset {offset}")]
    InvalidByte {
        /// Offset in the input.
        offset: usize,
        /// The octet found.
        byte: u8,
    },
    /// UCS2 data must be whole 16-bit units.
    #[error("UCS2 data has odd length {len}")]
    OddLength {
        /// Input length in octets.
        len: usize,
    },
    /// A UTF-16 surrogate without its partner, at byte `offset`.
    #[error("unpaired UTF-16 surrogate 0x{unit:04X} at byte offset {offset}")]
    UnpairedSurrogate {
        /// Byte offset of the unit in the input.
        offset: usize,
        /// The surrogate code unit.
        unit: u16,
    },
    /// Binary or unknown data asked to be text (or text asked to be binary).
    #[error("{alphabet} data has no text conversion")]
    NotText {
        /// `Binary` or `Unknown`.
        alphabet: Alphabet,
    },
    /// Packed GSM data shorter than the septet count implies.
    #[error("{septets} packed septets need {needed} octets, only {available} present")]
    PackedTooShort {
        /// Septets requested.
        septets: usize,
        /// Octets those septets and the fill bits need.
        needed: usize,
        /// Octets given.
        available: usize,
    },
    /// A concatenated message may have at most 255 parts.
    #[error("message needs {parts} parts, at most 255 allowed")]
    TooManyParts {
        /// Parts the message would need.
        parts: usize,
    },
}

/// Encodes as IA5 / ASCII; every character must be U+0000..=U+007F.
pub fn ia5_encode(s: &str) -> Result<Vec<u8>, TextError> {
    match s.char_indices().find(|(_, ch)| !ch.is_ascii()) {
        Some((offset, ch)) => {
            Err(TextError::Unrepresentable { ch, offset, alphabet: Alphabet::Ia5 })
        }
        None => Ok(s.as_bytes().to_vec()),
    }
}

/// Decodes IA5 / ASCII; an octet above 0x7F is an error.
pub fn ia5_decode(bytes: &[u8]) -> Result<String, TextError> {
    match bytes.iter().position(|b| !b.is_ascii()) {
        Some(offset) => Err(TextError::InvalidByte {
            offset,
            byte: bytes.get(offset).copied().unwrap_or_default(),
        }),
        None => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

/// Encodes as ISO-8859-1; every character must be at most U+00FF.
pub fn latin1_encode(s: &str) -> Result<Vec<u8>, TextError> {
    let mut out = Vec::with_capacity(s.len());
    for (offset, ch) in s.char_indices() {
        let byte = u8::try_from(ch).map_err(|_| TextError::Unrepresentable {
            ch,
            offset,
            alphabet: Alphabet::Latin1,
        })?;
        out.push(byte);
    }
    Ok(out)
}

/// Decodes ISO-8859-1; every octet is a character, so this cannot fail.
pub fn latin1_decode(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Encodes as UTF-16BE; characters outside the BMP become surrogate pairs.
pub fn ucs2_encode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 2);
    for unit in s.encode_utf16() {
        out.extend_from_slice(&unit.to_be_bytes());
    }
    out
}

/// Decodes UTF-16BE, rejecting an odd length or an unpaired surrogate.
pub fn ucs2_decode(bytes: &[u8]) -> Result<String, TextError> {
    let (units, rest) = bytes.as_chunks::<2>();
    if !rest.is_empty() {
        return Err(TextError::OddLength { len: bytes.len() });
    }
    let mut out = String::with_capacity(bytes.len());
    let mut unit_offset = 0;
    for r in char::decode_utf16(units.iter().map(|&u| u16::from_be_bytes(u))) {
        match r {
            Ok(ch) => {
                out.push(ch);
                unit_offset += ch.len_utf16();
            }
            Err(e) => {
                return Err(TextError::UnpairedSurrogate {
                    offset: unit_offset * 2,
                    unit: e.unpaired_surrogate(),
                });
            }
        }
    }
    Ok(out)
}

/// Decodes UTF-16BE, replacing unpaired surrogates and a trailing odd octet
/// with U+FFFD; for logging or displaying data from peers that misbehave.
pub fn ucs2_decode_lossy(bytes: &[u8]) -> String {
    let (units, rest) = bytes.as_chunks::<2>();
    let mut out: String = char::decode_utf16(units.iter().map(|&u| u16::from_be_bytes(u)))
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    if !rest.is_empty() {
        out.push(char::REPLACEMENT_CHARACTER);
    }
    out
}

/// Encodes `s` in `alphabet`. Binary and unknown alphabets have no text
/// form: [`TextError::NotText`].
pub fn encode(s: &str, alphabet: Alphabet) -> Result<Vec<u8>, TextError> {
    match alphabet {
        Alphabet::Gsm7 => gsm7_encode(s),
        Alphabet::Ia5 => ia5_encode(s),
        Alphabet::Latin1 => latin1_encode(s),
        Alphabet::Ucs2 => Ok(ucs2_encode(s)),
        Alphabet::Binary | Alphabet::Unknown => Err(TextError::NotText { alphabet }),
    }
}

/// Decodes `bytes` in `alphabet`. Binary and unknown data give
/// [`TextError::NotText`]; the caller keeps such payloads as bytes.
pub fn decode(bytes: &[u8], alphabet: Alphabet) -> Result<String, TextError> {
    match alphabet {
        Alphabet::Gsm7 => gsm7_decode(bytes),
        Alphabet::Ia5 => ia5_decode(bytes),
        Alphabet::Latin1 => Ok(latin1_decode(bytes)),
        Alphabet::Ucs2 => ucs2_decode(bytes),
        Alphabet::Binary | Alphabet::Unknown => Err(TextError::NotText { alphabet }),
    }
}

/// Picks the smallest encoding for `s` and encodes it: GSM7 (`data_coding`
/// 0) if every character is in the default or extension table, else Latin-1
/// (3) if every character is at most U+00FF, else UCS2 (8).
pub fn choose(s: &str) -> (DataCoding, Vec<u8>) {
    choose_with(s, true)
}

/// As [`choose`], but with `allow_latin1 = false` skips Latin-1, which many
/// handsets and SMSCs do not support, and goes straight to UCS2.
pub fn choose_with(s: &str, allow_latin1: bool) -> (DataCoding, Vec<u8>) {
    if let Ok(septets) = gsm7_encode(s) {
        return (DataCoding::DEFAULT, septets);
    }
    if allow_latin1 && let Ok(octets) = latin1_encode(s) {
        return (DataCoding::LATIN1, octets);
    }
    (DataCoding::UCS2, ucs2_encode(s))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn smpp_values_win_below_0x10() {
        assert_eq!(DataCoding::DEFAULT.alphabet(), Alphabet::Gsm7);
        assert_eq!(DataCoding::IA5.alphabet(), Alphabet::Ia5);
        assert_eq!(DataCoding::BINARY.alphabet(), Alphabet::Binary);
        assert_eq!(DataCoding::LATIN1.alphabet(), Alphabet::Latin1);
        assert_eq!(DataCoding::BINARY_ALT.alphabet(), Alphabet::Binary);
        assert_eq!(DataCoding::UCS2.alphabet(), Alphabet::Ucs2);
        for dc in [5u8, 6, 7, 9, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F] {
            assert_eq!(DataCoding(dc).alphabet(), Alphabet::Unknown, "{dc:#x}");
        }
        assert_eq!(DataCoding::UCS2.name(), "UCS2 (ISO/IEC-10646)");
    }

    #[test]
    fn gsm_coding_groups() {
        let cases = [
            (0x10, Alphabet::Gsm7, Some(0)), // class 0 (flash)
            (0x11, Alphabet::Gsm7, Some(1)),
            (0x14, Alphabet::Binary, Some(0)),
            (0x16, Alphabet::Binary, Some(2)),
            (0x18, Alphabet::Ucs2, Some(0)),
            (0x44, Alphabet::Binary, None),
            (0x1C, Alphabet::Unknown, Some(0)), // reserved alphabet
            (0x20, Alphabet::Unknown, None),    // compressed
            (0x40, Alphabet::Gsm7, None),       // auto-delete
            (0x48, Alphabet::Ucs2, None),
            (0x80, Alphabet::Unknown, None),
            (0xC0, Alphabet::Gsm7, None),
            (0xD8, Alphabet::Gsm7, None),
            (0xE0, Alphabet::Ucs2, None),
            (0xF0, Alphabet::Gsm7, Some(0)),
            (0xF4, Alphabet::Binary, Some(0)),
            (0xF6, Alphabet::Binary, Some(2)),
            (0xF3, Alphabet::Gsm7, Some(3)),
        ];
        for (v, alphabet, class) in cases {
            let dc = DataCoding(v);
            assert_eq!(dc.alphabet(), alphabet, "{v:#x}");
            assert_eq!(dc.message_class(), class, "{v:#x}");
        }
        // Every value maps somewhere and has a name.
        for v in 0..=u8::MAX {
            assert!(!DataCoding(v).name().is_empty());
            let _ = DataCoding(v).alphabet();
        }
    }

    #[test]
    fn alphabet_round_trips_through_data_coding() {
        for a in [Alphabet::Gsm7, Alphabet::Ia5, Alphabet::Latin1, Alphabet::Ucs2, Alphabet::Binary]
        {
            assert_eq!(a.data_coding().map(DataCoding::alphabet), Some(a));
        }
        assert_eq!(Alphabet::Unknown.data_coding(), None);
    }

    #[test]
    fn ia5() {
        assert_eq!(ia5_encode("Hi {`}").expect("valid input"), b"Hi {`}");
        assert_eq!(
            ia5_encode("né"),
            Err(TextError::Unrepresentable { ch: 'é', offset: 1, alphabet: Alphabet::Ia5 })
        );
        assert_eq!(ia5_decode(b"ok\x7f").expect("valid input"), "ok\u{7f}");
        assert_eq!(ia5_decode(b"ok\xe9"), Err(TextError::InvalidByte { offset: 2, byte: 0xE9 }));
    }

    #[test]
    fn latin1() {
        assert_eq!(latin1_encode("ñÑüÿ").expect("valid input"), [0xF1, 0xD1, 0xFC, 0xFF]);
        assert_eq!(latin1_decode(&[0xF1, 0xD1, 0xFC, 0xFF, 0x80]), "ñÑüÿ\u{80}");
        assert_eq!(
            latin1_encode("a€"),
            Err(TextError::Unrepresentable { ch: '€', offset: 1, alphabet: Alphabet::Latin1 })
        );
    }

    #[test]
    fn ucs2_with_surrogates() {
        assert_eq!(ucs2_encode("😀"), [0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(ucs2_encode("Añ€"), [0x00, 0x41, 0x00, 0xF1, 0x20, 0xAC]);
        assert_eq!(ucs2_decode(&[0xD8, 0x3D, 0xDE, 0x00]).expect("valid input"), "😀");
        assert_eq!(ucs2_decode(&[0x00, 0x41, 0x00]), Err(TextError::OddLength { len: 3 }));
        assert_eq!(
            ucs2_decode(&[0x00, 0x41, 0xD8, 0x3D]),
            Err(TextError::UnpairedSurrogate { offset: 2, unit: 0xD83D })
        );
        assert_eq!(
            ucs2_decode(&[0xDE, 0x00, 0x00, 0x41]),
            Err(TextError::UnpairedSurrogate { offset: 0, unit: 0xDE00 })
        );
        assert_eq!(
            ucs2_decode(&[0xD8, 0x3D, 0x00, 0x41]),
            Err(TextError::UnpairedSurrogate { offset: 0, unit: 0xD83D })
        );
        assert_eq!(ucs2_decode_lossy(&[0xD8, 0x3D, 0x00, 0x41, 0x00]), "\u{FFFD}A\u{FFFD}");
    }

    #[test]
    fn dispatchers() {
        assert_eq!(encode("@", Alphabet::Gsm7).expect("valid input"), [0]);
        assert_eq!(decode(&[0x1B, 0x65], Alphabet::Gsm7).expect("valid input"), "€");
        for alphabet in [Alphabet::Binary, Alphabet::Unknown] {
            assert_eq!(encode("x", alphabet), Err(TextError::NotText { alphabet }));
            assert_eq!(decode(b"x", alphabet), Err(TextError::NotText { alphabet }));
        }
    }

    #[test]
    fn choose_smallest() {
        assert_eq!(
            choose("Hello €"),
            (DataCoding::DEFAULT, gsm7_encode("Hello €").expect("valid input"))
        );
        assert_eq!(choose("ça"), (DataCoding::LATIN1, vec![0xE7, 0x61]));
        assert_eq!(choose_with("ça", false), (DataCoding::UCS2, vec![0, 0xE7, 0, 0x61]));
        assert_eq!(choose("€ç"), (DataCoding::UCS2, vec![0x20, 0xAC, 0, 0xE7]));
        assert_eq!(choose("😀").0, DataCoding::UCS2);
        assert_eq!(choose(""), (DataCoding::DEFAULT, vec![]));
    }

    /// Tiny deterministic PRNG so the property test needs no dependency.
    pub(crate) struct XorShift(pub(crate) u64);

    impl XorShift {
        pub(crate) fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        /// A string mixing GSM, extension, Latin-1, BMP and astral characters.
        pub(crate) fn string(&mut self, max_len: usize) -> String {
            const POOL: &[char] = &[
                'a',
                'Z',
                '0',
                ' ',
                '@',
                '$',
                '\n',
                '\r',
                '€',
                '{',
                '}',
                '[',
                ']',
                '~',
                '\\',
                '|',
                '^',
                '\u{0C}',
                'ß',
                'ñ',
                'Ñ',
                'ü',
                'Δ',
                'Ç',
                'ç',
                'ÿ',
                '\u{80}',
                '`',
                'Ж',
                '中',
                '😀',
                '🎉',
                '\u{FFFF}',
                '\u{10FFFF}',
            ];
            let len = self.below(max_len + 1);
            (0..len)
                .map(|_| {
                    if self.below(8) == 0 {
                        char::from_u32(self.next() as u32 % 0x11_0000).unwrap_or('?')
                    } else {
                        POOL[self.below(POOL.len())]
                    }
                })
                .collect()
        }

        pub(crate) fn bytes(&mut self, max_len: usize) -> Vec<u8> {
            let len = self.below(max_len + 1);
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    #[test]
    fn random_round_trips_and_no_panics() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..5_000 {
            let s = rng.string(200);
            let (dc, bytes) = choose(&s);
            assert_eq!(decode(&bytes, dc.alphabet()).expect("valid input"), s);
            for alphabet in [Alphabet::Gsm7, Alphabet::Ia5, Alphabet::Latin1, Alphabet::Ucs2] {
                if let Ok(enc) = encode(&s, alphabet) {
                    assert_eq!(decode(&enc, alphabet).expect("valid input"), s, "{alphabet}");
                }
            }
            assert_eq!(gsm7_septets(&s), gsm7_encode(&s).ok().map(|v| v.len()));

            let junk = rng.bytes(64);
            for alphabet in [Alphabet::Gsm7, Alphabet::Ia5, Alphabet::Latin1, Alphabet::Ucs2] {
                let _ = decode(&junk, alphabet);
            }
            let _ = ucs2_decode_lossy(&junk);
            let fill = rng.below(10) as u8;
            let count = rng.below(80);
            let _ = gsm7_unpack(&junk, count, fill);
            let septets: Vec<u8> = junk.iter().map(|b| b & 0x7F).collect();
            let packed = gsm7_pack(&septets, fill);
            assert_eq!(gsm7_unpack(&packed, septets.len(), fill).expect("valid input"), septets);
        }
    }
}
