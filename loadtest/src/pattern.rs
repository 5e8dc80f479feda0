//! Address patterns: `4479{seq:8}` (the iteration number, zero-padded to 8 digits),
//! `1555{rand:7}` (7 random digits), or a literal (`Bank`). Every placeholder has a fixed
//! width, so a pattern renders to the same length every time and can be patched in
//! place inside a pre-encoded PDU.

use std::fmt;

/// The longest address a submit_sm carries (source_addr and destination_addr are
/// C-Octet Strings of 21 octets, NUL included).
pub const MAX_ADDRESS_LEN: usize = 20;

/// What fills a placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// The iteration number modulo 10^width.
    Seq,
    /// Uniformly random digits.
    Rand,
}

/// A placeholder: `width` digits at offset `at` of the rendered address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hole {
    pub at: usize,
    pub width: usize,
    pub fill: Fill,
}

/// A parsed pattern: the address with every placeholder rendered as zeros, and where
/// the placeholders are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    template: Vec<u8>,
    holes: Vec<Hole>,
}

/// Why a pattern does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    #[error("`{{` without a closing `}}`")]
    Unclosed,
    #[error("unknown placeholder `{{{0}}}` (use {{seq:N}} or {{rand:N}})")]
    Unknown(String),
    #[error("placeholder width must be 1..=19, got `{0}`")]
    Width(String),
    #[error("renders to {len} characters; an SMPP address holds at most {MAX_ADDRESS_LEN}")]
    TooLong { len: usize },
    #[error("is empty")]
    Empty,
    #[error("holds a NUL or non-ASCII character")]
    NotAscii,
}

impl Pattern {
    pub fn parse(s: &str) -> Result<Self, PatternError> {
        if !s.is_ascii() || s.contains('\0') {
            return Err(PatternError::NotAscii);
        }
        let mut template = Vec::new();
        let mut holes = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            template.extend_from_slice(&rest.as_bytes()[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or(PatternError::Unclosed)?;
            let inner = &after[..close];
            let (name, width) = inner.split_once(':').ok_or(PatternError::Unknown(inner.into()))?;
            let fill = match name.trim() {
                "seq" => Fill::Seq,
                "rand" => Fill::Rand,
                _ => return Err(PatternError::Unknown(inner.into())),
            };
            let width: usize = match width.trim().parse() {
                Ok(w) if (1..=19).contains(&w) => w,
                _ => return Err(PatternError::Width(width.into())),
            };
            holes.push(Hole { at: template.len(), width, fill });
            template.resize(template.len() + width, b'0');
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(PatternError::Unknown(rest.into()));
        }
        template.extend_from_slice(rest.as_bytes());
        if template.is_empty() {
            return Err(PatternError::Empty);
        }
        if template.len() > MAX_ADDRESS_LEN {
            return Err(PatternError::TooLong { len: template.len() });
        }
        Ok(Self { source: s.to_owned(), template, holes })
    }

    /// The address with zeros in every placeholder (what the PDU template holds).
    pub fn template(&self) -> &[u8] {
        &self.template
    }

    pub fn holes(&self) -> &[Hole] {
        &self.holes
    }

    /// Whether the rendered address is all digits (an MSISDN: TON 1, NPI 1), rather than
    /// an alphanumeric sender (TON 5, NPI 0).
    pub fn is_numeric(&self) -> bool {
        self.template.iter().all(u8::is_ascii_digit)
    }

    /// Fills the placeholders of an address already written at `out` (as long as the
    /// template): `seq` for `{seq:N}`, digits from `rng` for `{rand:N}`.
    #[inline]
    pub fn patch(&self, out: &mut [u8], seq: u64, rng: &mut Rng) {
        for h in &self.holes {
            let Some(field) = out.get_mut(h.at..h.at + h.width) else { continue };
            let v = match h.fill {
                Fill::Seq => seq,
                Fill::Rand => rng.next_u64(),
            };
            write_digits(field, v);
        }
    }

    /// Renders the address for `seq` (tests and the summary's header).
    pub fn render(&self, seq: u64, rng: &mut Rng) -> String {
        let mut out = self.template.clone();
        self.patch(&mut out, seq, rng);
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// "00" to "99", so that digits go two at a time.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes the low `out.len()` decimal digits of `v`, zero-padded.
#[inline]
fn write_digits(out: &mut [u8], mut v: u64) {
    let mut i = out.len();
    while i >= 2 {
        let pair = (v % 100) as usize * 2;
        out[i - 2..i].copy_from_slice(&PAIRS[pair..pair + 2]);
        v /= 100;
        i -= 2;
    }
    if i == 1 {
        out[0] = b'0' + (v % 10) as u8;
    }
}

/// xorshift64*: a few instructions per number, plenty for digits and message mixes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so that neighbouring seeds give unrelated streams and 0
        // (a fixed point of xorshift) never occurs.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)) | 1)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (n > 0), by multiply-shift rather than modulo.
    #[inline]
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_render_fixed_width() {
        let p = Pattern::parse("4479{seq:8}").expect("parses");
        assert_eq!(p.template(), b"447900000000");
        assert!(p.is_numeric());
        let mut rng = Rng::new(1);
        assert_eq!(p.render(42, &mut rng), "447900000042");
        assert_eq!(p.render(1_234_567_890, &mut rng), "447934567890", "modulo 10^8");
        let r = Pattern::parse("1555{rand:7}").expect("parses");
        let a = r.render(0, &mut rng);
        assert_eq!(a.len(), 11);
        assert!(a.starts_with("1555") && a.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(a, r.render(0, &mut rng), "random digits change");
        let lit = Pattern::parse("Bank").expect("parses");
        assert!(!lit.is_numeric());
        assert_eq!(lit.render(7, &mut rng), "Bank");
        let two = Pattern::parse("{rand:2}x{seq:3}").expect("parses");
        assert_eq!(two.holes().len(), 2);
        assert_eq!(&two.render(5, &mut rng)[2..], "x005");
    }

    #[test]
    fn bad_patterns_are_named() {
        assert_eq!(Pattern::parse("44{seq:8"), Err(PatternError::Unclosed));
        assert_eq!(Pattern::parse("44{msisdn:8}"), Err(PatternError::Unknown("msisdn:8".into())));
        assert_eq!(Pattern::parse("44{seq}"), Err(PatternError::Unknown("seq".into())));
        assert_eq!(Pattern::parse("44{seq:0}"), Err(PatternError::Width("0".into())));
        assert_eq!(Pattern::parse("44{seq:x}"), Err(PatternError::Width("x".into())));
        assert_eq!(Pattern::parse("4479{seq:19}"), Err(PatternError::TooLong { len: 23 }));
        assert_eq!(Pattern::parse(""), Err(PatternError::Empty));
        assert_eq!(Pattern::parse("44}"), Err(PatternError::Unknown("44}".into())));
        assert_eq!(Pattern::parse("Bänk"), Err(PatternError::NotAscii));
    }

    #[test]
    fn digits() {
        for (v, width, want) in [
            (0u64, 1, "0"),
            (7, 3, "007"),
            (1234, 4, "1234"),
            (98_765, 5, "98765"),
            (123_456_789, 8, "23456789"),
            (u64::MAX, 19, "8446744073709551615"),
        ] {
            let mut out = vec![b'x'; width];
            write_digits(&mut out, v);
            assert_eq!(std::str::from_utf8(&out), Ok(want));
        }
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = Rng::new(7);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[rng.below(10) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }
}
