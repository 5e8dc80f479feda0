//! The text of an SMSC delivery receipt (SMPP 3.4 Appendix B), carried in the
//! `short_message` of a deliver_sm whose esm_class marks it as a receipt:
//!
//! `id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E Text:...`
//!
//! The appendix calls the format "SMSC vendor specific", so [`Receipt::parse`] is
//! lenient about layout while [`Receipt::format`] writes the most widely parsed form.

use std::fmt;
use std::iter::Peekable;
use std::str::FromStr;

use chrono::NaiveDateTime;

use crate::message_state::MessageState;
use crate::time::{format_receipt_date, parse_receipt_date};

/// Longest `id` value accepted, in bytes: message_id is a C-octet string of at most
/// 65 octets; the limit keeps garbage from growing unbounded ids.
pub const MAX_ID_LEN: usize = 65;

/// Characters of the original message that [`Receipt::format`] keeps in `text:`.
pub const TEXT_LEN: usize = 20;

/// The `stat:` word of a receipt: the message's final (or interim) state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiptStat {
    Delivered,
    Expired,
    Deleted,
    Undeliverable,
    Accepted,
    Unknown,
    Rejected,
    Enroute,
}

/// Words [`ReceiptStat::parse`] accepts, compared case-insensitively. Besides the
/// appendix's seven-letter words: the full `message_state` names, and the
/// non-standard `UNDELIVERED` and `FAILED` that some SMSCs write for a message that
/// could not be delivered (mapped to `Undeliverable`, the only failed state that
/// says nothing more specific).
const STAT_WORDS: [(&str, ReceiptStat); 14] = [
    ("DELIVRD", ReceiptStat::Delivered),
    ("EXPIRED", ReceiptStat::Expired),
    ("DELETED", ReceiptStat::Deleted),
    ("UNDELIV", ReceiptStat::Undeliverable),
    ("ACCEPTD", ReceiptStat::Accepted),
    ("UNKNOWN", ReceiptStat::Unknown),
    ("REJECTD", ReceiptStat::Rejected),
    ("ENROUTE", ReceiptStat::Enroute),
    ("DELIVERED", ReceiptStat::Delivered),
    ("UNDELIVERABLE", ReceiptStat::Undeliverable),
    ("ACCEPTED", ReceiptStat::Accepted),
    ("REJECTED", ReceiptStat::Rejected),
    ("UNDELIVERED", ReceiptStat::Undeliverable),
    ("FAILED", ReceiptStat::Undeliverable),
];

impl ReceiptStat {
    /// Every stat, in declaration order.
    pub const ALL: [Self; 8] = [
        Self::Delivered,
        Self::Expired,
        Self::Deleted,
        Self::Undeliverable,
        Self::Accepted,
        Self::Unknown,
        Self::Rejected,
        Self::Enroute,
    ];

    /// The appendix's seven-letter word, as written by [`Receipt::format`].
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "DELIVRD",
            Self::Expired => "EXPIRED",
            Self::Deleted => "DELETED",
            Self::Undeliverable => "UNDELIV",
            Self::Accepted => "ACCEPTD",
            Self::Unknown => "UNKNOWN",
            Self::Rejected => "REJECTD",
            Self::Enroute => "ENROUTE",
        }
    }

    /// Reads a stat word, case-insensitively, ignoring surrounding whitespace.
    /// See `STAT_WORDS` for the variants accepted beyond the standard words.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        STAT_WORDS.iter().find(|(word, _)| word.eq_ignore_ascii_case(s)).map(|&(_, stat)| stat)
    }

    /// The `message_state` value with the same meaning (§5.2.28).
    pub const fn to_message_state(self) -> MessageState {
        match self {
            Self::Enroute => MessageState::ENROUTE,
            Self::Delivered => MessageState::DELIVERED,
            Self::Expired => MessageState::EXPIRED,
            Self::Deleted => MessageState::DELETED,
            Self::Undeliverable => MessageState::UNDELIVERABLE,
            Self::Accepted => MessageState::ACCEPTED,
            Self::Unknown => MessageState::UNKNOWN,
            Self::Rejected => MessageState::REJECTED,
        }
    }

    /// The stat for a `message_state`; `None` for states a 3.4 receipt cannot name
    /// (SCHEDULED, SKIPPED, unknown values).
    pub const fn from_message_state(state: MessageState) -> Option<Self> {
        Some(match state {
            MessageState::ENROUTE => Self::Enroute,
            MessageState::DELIVERED => Self::Delivered,
            MessageState::EXPIRED => Self::Expired,
            MessageState::DELETED => Self::Deleted,
            MessageState::UNDELIVERABLE => Self::Undeliverable,
            MessageState::ACCEPTED => Self::Accepted,
            MessageState::UNKNOWN => Self::Unknown,
            MessageState::REJECTED => Self::Rejected,
            _ => return None,
        })
    }

    /// Whether the message will not change state again; the same rule as
    /// [`MessageState::is_final`] (so ENROUTE and ACCEPTED are not final).
    pub const fn is_final(self) -> bool {
        self.to_message_state().is_final()
    }
}

impl fmt::Display for ReceiptStat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReceiptStat {
    type Err = ReceiptError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or(ReceiptError::UnknownStat)
    }
}

/// A receipt field, named by [`ReceiptError::Invalid`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReceiptField {
    Sub,
    Dlvrd,
    SubmitDate,
    DoneDate,
    Err,
}

impl fmt::Display for ReceiptField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sub => "sub",
            Self::Dlvrd => "dlvrd",
            Self::SubmitDate => "submit date",
            Self::DoneDate => "done date",
            Self::Err => "err",
        })
    }
}

/// Why a text is not a readable receipt. `Copy` and allocation-free: the caller
/// still has the text if it wants to log it.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReceiptError {
    #[error("receipt has no id")]
    MissingId,
    #[error("receipt id is {len} bytes, more than {MAX_ID_LEN}")]
    IdTooLong { len: usize },
    #[error("receipt has no stat")]
    MissingStat,
    #[error("receipt stat is not a known word")]
    UnknownStat,
    /// A present field whose value cannot be read (not a number, number too big,
    /// date that does not exist or is not 10 or 12 digits).
    #[error("receipt {field} value is invalid")]
    Invalid { field: ReceiptField },
}

/// A parsed or to-be-written delivery receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The message id as the SMSC wrote it (no case or radix normalisation: some
    /// SMSCs write here in decimal the id they returned in hex).
    pub id: String,
    /// Messages originally submitted (for a distribution list), usually 1.
    pub sub: u32,
    /// Of those, messages delivered.
    pub dlvrd: u32,
    pub submit_date: Option<NaiveDateTime>,
    pub done_date: Option<NaiveDateTime>,
    pub stat: ReceiptStat,
    /// The network-specific error code, written as at least 3 digits. Numeric so
    /// the edge can fill it from its own codes; a non-numeric `err:` is rejected.
    pub err: u16,
    /// The start of the original message. [`Receipt::format`] writes its first
    /// [`TEXT_LEN`] characters; [`Receipt::parse`] keeps all it finds.
    pub text: String,
}

impl Receipt {
    /// The standard text with 10-digit dates:
    /// `id:X sub:001 dlvrd:001 submit date:2611270312 done date:2611270312 stat:DELIVRD err:000 text:...`.
    ///
    /// `text:` is lowercase, the form most parsers expect. An absent date is left
    /// out with its key, rather than written as a value that is not a date.
    pub fn format(&self) -> String {
        self.format_with(false)
    }

    /// [`Receipt::format`], with 12-digit (`YYMMDDhhmmss`) dates if `seconds`.
    pub fn format_with(&self, seconds: bool) -> String {
        let mut out = String::with_capacity(self.id.len() + 128);
        out.push_str("id:");
        out.push_str(&self.id);
        out.push_str(&format!(" sub:{:03} dlvrd:{:03}", self.sub, self.dlvrd));
        for (key, date) in [(" submit date:", self.submit_date), (" done date:", self.done_date)] {
            if let Some(date) = date {
                out.push_str(key);
                out.push_str(&format_receipt_date(date, seconds));
            }
        }
        out.push_str(&format!(" stat:{} err:{:03} text:", self.stat, self.err));
        out.extend(self.text.chars().take(TEXT_LEN));
        out
    }

    /// Appends [`Receipt::format`]'s text as Latin-1 bytes (ASCII for the fixed
    /// part), so that [`Receipt::parse_bytes`] reads it back; a character outside
    /// Latin-1 becomes `?`. A different data_coding is the caller's to apply.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        self.write_to_with(out, false);
    }

    /// [`Receipt::write_to`], with 12-digit dates if `seconds`.
    pub fn write_to_with(&self, out: &mut Vec<u8>, seconds: bool) {
        out.extend(self.format_with(seconds).chars().map(|c| u8::try_from(c).unwrap_or(b'?')));
    }

    /// Reads a receipt from bytes as Latin-1 (so never fails on encoding), after
    /// dropping trailing NULs that some peers leave in short_message.
    pub fn parse_bytes(s: &[u8]) -> Result<Self, ReceiptError> {
        let end = s.iter().rposition(|&b| b != 0).map_or(0, |i| i.saturating_add(1));
        let text: String = s.get(..end).unwrap_or(s).iter().map(|&b| char::from(b)).collect();
        Self::parse(&text)
    }

    /// Reads a receipt text, leniently:
    /// - keys in any case and any order, separated by any whitespace; a space may
    ///   stand on either side of the colon, and `submit_date`/`done_date` are
    ///   accepted for `submit date`/`done date`; unknown keys are ignored; when a
    ///   key repeats, the last one counts;
    /// - only `id` and `stat` are required: otherwise `sub`/`dlvrd`/`err` are 0,
    ///   dates `None`, `text` empty; an empty value counts as missing;
    /// - dates of 10 or 12 digits;
    /// - `text:` takes everything after its colon to the end, verbatim (spaces,
    ///   colons, and any keys written after it), so it is best written last.
    ///
    /// Values are strict: a present value that cannot be read is an error naming
    /// its field, since a receipt with garbage in it should not pass as valid.
    pub fn parse(s: &str) -> Result<Self, ReceiptError> {
        let raw = RawFields::scan(s);
        let id = raw.id.ok_or(ReceiptError::MissingId)?;
        if id.len() > MAX_ID_LEN {
            return Err(ReceiptError::IdTooLong { len: id.len() });
        }
        let stat = raw.stat.ok_or(ReceiptError::MissingStat)?;
        let stat = ReceiptStat::parse(stat).ok_or(ReceiptError::UnknownStat)?;
        let invalid = |field| ReceiptError::Invalid { field };
        let sub = parse_number(raw.sub).ok_or(invalid(ReceiptField::Sub))?;
        let dlvrd = parse_number(raw.dlvrd).ok_or(invalid(ReceiptField::Dlvrd))?;
        let date = |v: Option<&str>, field| match v {
            None => Ok(None),
            Some(v) => parse_receipt_date(v).map(Some).ok_or(invalid(field)),
        };
        let submit_date = date(raw.submit_date, ReceiptField::SubmitDate)?;
        let done_date = date(raw.done_date, ReceiptField::DoneDate)?;
        let err = parse_number(raw.err).ok_or(invalid(ReceiptField::Err))?;
        Ok(Self {
            id: id.to_owned(),
            sub,
            dlvrd,
            submit_date,
            done_date,
            stat,
            err,
            text: raw.text.unwrap_or_default().to_owned(),
        })
    }
}

impl fmt::Display for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format())
    }
}

/// A missing value is 0; a present one must be all ASCII digits and fit `T`.
fn parse_number<T: FromStr + Default>(v: Option<&str>) -> Option<T> {
    match v {
        None => Some(T::default()),
        Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => v.parse().ok(),
        Some(_) => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Id,
    Sub,
    Dlvrd,
    SubmitDate,
    DoneDate,
    Stat,
    Err,
    Text,
}

/// The key named by one word (`None` if it names none we read).
fn one_word_key(w: &str) -> Option<Key> {
    const KEYS: [(&str, Key); 8] = [
        ("id", Key::Id),
        ("sub", Key::Sub),
        ("dlvrd", Key::Dlvrd),
        ("stat", Key::Stat),
        ("err", Key::Err),
        ("text", Key::Text),
        ("submit_date", Key::SubmitDate),
        ("done_date", Key::DoneDate),
    ];
    KEYS.iter().find(|(k, _)| k.eq_ignore_ascii_case(w)).map(|&(_, key)| key)
}

/// The key named by two words: `submit date` or `done date`.
fn two_word_key(first: &str, second: &str) -> Option<Key> {
    if !second.eq_ignore_ascii_case("date") {
        return None;
    }
    if first.eq_ignore_ascii_case("submit") {
        Some(Key::SubmitDate)
    } else if first.eq_ignore_ascii_case("done") {
        Some(Key::DoneDate)
    } else {
        None
    }
}

/// The unparsed value of each known key, borrowed from the input.
#[derive(Debug, Default)]
struct RawFields<'a> {
    id: Option<&'a str>,
    sub: Option<&'a str>,
    dlvrd: Option<&'a str>,
    submit_date: Option<&'a str>,
    done_date: Option<&'a str>,
    stat: Option<&'a str>,
    err: Option<&'a str>,
    text: Option<&'a str>,
}

impl<'a> RawFields<'a> {
    fn set(&mut self, key: Key, value: &'a str) {
        let slot = match key {
            Key::Id => &mut self.id,
            Key::Sub => &mut self.sub,
            Key::Dlvrd => &mut self.dlvrd,
            Key::SubmitDate => &mut self.submit_date,
            Key::DoneDate => &mut self.done_date,
            Key::Stat => &mut self.stat,
            Key::Err => &mut self.err,
            Key::Text => &mut self.text,
        };
        *slot = Some(value);
    }

    /// Splits `s` into whitespace-separated words and pairs keys with values.
    ///
    /// A word containing `:` holds a key (before the first colon, possibly
    /// completed by the one or two colon-less words just before it) and maybe its
    /// value (after). A colon-less word right after a key with an empty value is
    /// that value, unless it starts the next `submit date`/`done date` key.
    fn scan(s: &'a str) -> Self {
        let mut fields = Self::default();
        let mut words = Words { s, pos: 0 }.peekable();
        // The last two colon-less words not taken as values, most recent last.
        let mut bare: [Option<&str>; 2] = [None, None];
        let mut awaiting: Option<Key> = None;
        while let Some((start, word)) = words.next() {
            let Some((k, v)) = word.split_once(':') else {
                if let Some(key) = awaiting.take()
                    && !starts_date_key(word, &mut words)
                {
                    fields.set(key, word);
                    continue;
                }
                bare = [bare[1], Some(word)];
                continue;
            };
            let key = if k.is_empty() {
                match bare {
                    [Some(a), Some(b)] => two_word_key(a, b).or_else(|| one_word_key(b)),
                    [_, Some(b)] => one_word_key(b),
                    _ => None,
                }
            } else {
                bare[1].and_then(|b| two_word_key(b, k)).or_else(|| one_word_key(k))
            };
            bare = [None, None];
            awaiting = None;
            match key {
                None => {}
                Some(Key::Text) => {
                    // The colon is ASCII, so the byte after it is a char boundary.
                    let after = start.saturating_add(k.len()).saturating_add(1);
                    fields.text = Some(s.get(after..).unwrap_or(""));
                    break;
                }
                Some(key) if v.is_empty() => awaiting = Some(key),
                Some(key) => fields.set(key, v),
            }
        }
        fields
    }
}

/// Whether `word` is `submit`/`done` and the next word completes a date key.
fn starts_date_key<'a, I>(word: &str, rest: &mut Peekable<I>) -> bool
where
    I: Iterator<Item = (usize, &'a str)>,
{
    let Some(&(_, next)) = rest.peek() else {
        return false;
    };
    let next_key = next.split_once(':').map_or(next, |(k, _)| k);
    two_word_key(word, next_key).is_some()
}

/// Whitespace-separated words with their byte offsets in the string.
#[derive(Debug)]
struct Words<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Iterator for Words<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.s.get(self.pos..)?;
        let skip = rest.find(|c: char| !c.is_whitespace())?;
        let word = rest.get(skip..)?;
        let len = word.find(char::is_whitespace).unwrap_or(word.len());
        let start = self.pos.saturating_add(skip);
        self.pos = start.saturating_add(len);
        Some((start, word.get(..len)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn dt(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|d| d.and_hms_opt(h, mi, s))
            .expect("valid test date")
    }

    fn parse_ok(s: &str) -> Receipt {
        match Receipt::parse(s) {
            Ok(r) => r,
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    fn sample() -> Receipt {
        Receipt {
            id: "0A1B2C3D4E".to_owned(),
            sub: 1,
            dlvrd: 1,
            submit_date: Some(dt(2026, 11, 27, 3, 12, 0)),
            done_date: Some(dt(2026, 11, 27, 3, 12, 41)),
            stat: ReceiptStat::Delivered,
            err: 0,
            text: "Hello world, this is a long message".to_owned(),
        }
    }

    #[test]
    fn format_exact() {
        let r = sample();
        let expected = "id:0A1B2C3D4E sub:001 dlvrd:001 submit date:2611270312 \
                        done date:2611270312 stat:DELIVRD err:000 text:Hello world, this is";
        assert_eq!(r.format(), expected);
        assert_eq!(r.to_string(), expected);
        let mut buf = Vec::new();
        r.write_to(&mut buf);
        assert_eq!(buf, expected.as_bytes());
        assert_eq!(
            r.format_with(true),
            "id:0A1B2C3D4E sub:001 dlvrd:001 submit date:261127031200 \
             done date:261127031241 stat:DELIVRD err:000 text:Hello world, this is"
        );
    }

    #[test]
    fn format_edge_values() {
        let r = Receipt {
            id: "7".to_owned(),
            sub: 1234,
            dlvrd: 0,
            submit_date: None,
            done_date: None,
            stat: ReceiptStat::Undeliverable,
            err: 65535,
            text: "ééééééééééééééééééééé€".to_owned(),
        };
        let s = r.format();
        assert_eq!(s, "id:7 sub:1234 dlvrd:000 stat:UNDELIV err:65535 text:éééééééééééééééééééé");
        let mut buf = Vec::new();
        Receipt { text: "né€".to_owned(), ..r.clone() }.write_to(&mut buf);
        assert!(buf.ends_with(b"text:n\xe9?"));
        assert_eq!(Receipt::parse_bytes(&buf).map(|p| p.text), Ok("né?".to_owned()));
    }

    #[test]
    fn parse_spec_example() {
        let r = parse_ok(
            "id:IIIIIIIIII sub:001 dlvrd:001 submit date:9912310000 done date:0001010000 \
             stat:DELIVRD err:000 Text: . . . . . . . . .",
        );
        assert_eq!(r.id, "IIIIIIIIII");
        assert_eq!((r.sub, r.dlvrd, r.err), (1, 1, 0));
        assert_eq!(r.submit_date, Some(dt(2099, 12, 31, 0, 0, 0)));
        assert_eq!(r.done_date, Some(dt(2000, 1, 1, 0, 0, 0)));
        assert_eq!(r.stat, ReceiptStat::Delivered);
        assert_eq!(r.text, " . . . . . . . . .");
    }

    #[test]
    fn parse_round_trips_format() {
        let r = sample();
        let mut expected = r.clone();
        expected.text = "Hello world, this is".to_owned();
        expected.done_date = Some(dt(2026, 11, 27, 3, 12, 0));
        assert_eq!(Receipt::parse(&r.format()), Ok(expected.clone()));
        expected.done_date = r.done_date;
        assert_eq!(Receipt::parse(&r.format_with(true)), Ok(expected.clone()));
        let mut buf = Vec::new();
        r.write_to_with(&mut buf, true);
        buf.extend([0, 0]);
        assert_eq!(Receipt::parse_bytes(&buf), Ok(expected));
    }

    #[test]
    fn parse_key_case() {
        for s in [
            "ID:abc SUB:002 DLVRD:001 SUBMIT DATE:2611270312 DONE DATE:2611270313 STAT:DELIVRD ERR:005 TEXT:hi",
            "Id:abc Sub:002 Dlvrd:001 Submit Date:2611270312 Done Date:2611270313 Stat:delivrd Err:005 Text:hi",
            "iD:abc sUb:002 dLvRd:001 sUbMiT dAtE:2611270312 DoNe DaTe:2611270313 StAt:DeLiVrD eRr:005 tExT:hi",
        ] {
            let r = parse_ok(s);
            assert_eq!(r.id, "abc", "{s}");
            assert_eq!((r.sub, r.dlvrd, r.err), (2, 1, 5), "{s}");
            assert_eq!(r.submit_date, Some(dt(2026, 11, 27, 3, 12, 0)), "{s}");
            assert_eq!(r.done_date, Some(dt(2026, 11, 27, 3, 13, 0)), "{s}");
            assert_eq!(r.stat, ReceiptStat::Delivered, "{s}");
            assert_eq!(r.text, "hi", "{s}");
        }
    }

    #[test]
    fn parse_order_spacing_and_variants() {
        let r = parse_ok(
            "  stat:UNDELIV\terr:042   done_date:261127031259  id: 12345  \
             submit_date :2611270300 foo:bar  baz dlvrd : 000 sub:1 text:a: b  c ",
        );
        assert_eq!(r.id, "12345");
        assert_eq!(r.stat, ReceiptStat::Undeliverable);
        assert_eq!(r.err, 42);
        assert_eq!(r.done_date, Some(dt(2026, 11, 27, 3, 12, 59)));
        assert_eq!(r.submit_date, Some(dt(2026, 11, 27, 3, 0, 0)));
        assert_eq!((r.sub, r.dlvrd), (1, 0));
        assert_eq!(r.text, "a: b  c ");
    }

    #[test]
    fn empty_value_before_date_key() {
        let r = parse_ok("id:x sub: submit date:2611270312 stat:ENROUTE");
        assert_eq!(r.sub, 0);
        assert_eq!(r.submit_date, Some(dt(2026, 11, 27, 3, 12, 0)));
        let r = parse_ok("id:x err: done date : 2611270312 stat:ENROUTE");
        assert_eq!(r.err, 0);
        assert_eq!(r.done_date, Some(dt(2026, 11, 27, 3, 12, 0)));
    }

    #[test]
    fn parse_missing_fields() {
        let r = parse_ok("id:42 stat:EXPIRED");
        assert_eq!(
            r,
            Receipt {
                id: "42".to_owned(),
                sub: 0,
                dlvrd: 0,
                submit_date: None,
                done_date: None,
                stat: ReceiptStat::Expired,
                err: 0,
                text: String::new(),
            }
        );
        assert_eq!(Receipt::parse("stat:DELIVRD text:x"), Err(ReceiptError::MissingId));
        assert_eq!(Receipt::parse("id: stat:DELIVRD"), Err(ReceiptError::MissingId));
        assert_eq!(Receipt::parse("id:1 sub:001"), Err(ReceiptError::MissingStat));
        assert_eq!(Receipt::parse(""), Err(ReceiptError::MissingId));
        // Fields after text: are part of the text.
        assert_eq!(Receipt::parse("id:1 text:x stat:DELIVRD"), Err(ReceiptError::MissingStat));
    }

    #[test]
    fn parse_invalid_values() {
        let cases = [
            ("id:1 stat:BOGUS", ReceiptError::UnknownStat),
            ("id:1 stat:DELIVRD sub:0x1", ReceiptError::Invalid { field: ReceiptField::Sub }),
            ("id:1 stat:DELIVRD sub:+1", ReceiptError::Invalid { field: ReceiptField::Sub }),
            (
                "id:1 stat:DELIVRD dlvrd:4294967296",
                ReceiptError::Invalid { field: ReceiptField::Dlvrd },
            ),
            ("id:1 stat:DELIVRD err:65536", ReceiptError::Invalid { field: ReceiptField::Err }),
            ("id:1 stat:DELIVRD err:E", ReceiptError::Invalid { field: ReceiptField::Err }),
            (
                "id:1 stat:DELIVRD submit date:2613010000",
                ReceiptError::Invalid { field: ReceiptField::SubmitDate },
            ),
            (
                "id:1 stat:DELIVRD done date:26010100",
                ReceiptError::Invalid { field: ReceiptField::DoneDate },
            ),
            (
                "id:1 stat:DELIVRD done date:20260101000000",
                ReceiptError::Invalid { field: ReceiptField::DoneDate },
            ),
        ];
        for (s, e) in cases {
            assert_eq!(Receipt::parse(s), Err(e), "{s}");
        }
        let long = format!("id:{} stat:DELIVRD", "a".repeat(66));
        assert_eq!(Receipt::parse(&long), Err(ReceiptError::IdTooLong { len: 66 }));
        let ok = format!("id:{} stat:DELIVRD", "f".repeat(65));
        assert_eq!(Receipt::parse(&ok).map(|r| r.id.len()), Ok(65));
        assert_eq!(
            ReceiptError::Invalid { field: ReceiptField::SubmitDate }.to_string(),
            "receipt submit date value is invalid"
        );
    }

    #[test]
    fn stat_words_both_ways() {
        let table = [
            (ReceiptStat::Delivered, "DELIVRD", MessageState::DELIVERED, true),
            (ReceiptStat::Expired, "EXPIRED", MessageState::EXPIRED, true),
            (ReceiptStat::Deleted, "DELETED", MessageState::DELETED, true),
            (ReceiptStat::Undeliverable, "UNDELIV", MessageState::UNDELIVERABLE, true),
            (ReceiptStat::Accepted, "ACCEPTD", MessageState::ACCEPTED, false),
            (ReceiptStat::Unknown, "UNKNOWN", MessageState::UNKNOWN, true),
            (ReceiptStat::Rejected, "REJECTD", MessageState::REJECTED, true),
            (ReceiptStat::Enroute, "ENROUTE", MessageState::ENROUTE, false),
        ];
        assert_eq!(table.map(|t| t.0), ReceiptStat::ALL);
        for (stat, word, state, fin) in table {
            assert_eq!(stat.as_str(), word);
            assert_eq!(stat.to_string(), word);
            assert_eq!(ReceiptStat::parse(word), Some(stat));
            assert_eq!(ReceiptStat::parse(&word.to_ascii_lowercase()), Some(stat));
            assert_eq!(word.parse::<ReceiptStat>(), Ok(stat));
            let full = state.name().expect("named state");
            assert_eq!(ReceiptStat::parse(full), Some(stat), "{full}");
            assert_eq!(stat.to_message_state(), state);
            assert_eq!(ReceiptStat::from_message_state(state), Some(stat));
            assert_eq!(stat.is_final(), fin);
            let r = parse_ok(&format!("id:1 stat:{word}"));
            assert_eq!(r.stat, stat);
            assert!(parse_ok(&Receipt { stat, ..r.clone() }.format()).stat == stat);
        }
        assert_eq!(ReceiptStat::parse("Failed"), Some(ReceiptStat::Undeliverable));
        assert_eq!(ReceiptStat::parse("undelivered"), Some(ReceiptStat::Undeliverable));
        assert_eq!(ReceiptStat::parse(" DELIVRD "), Some(ReceiptStat::Delivered));
        assert_eq!(ReceiptStat::parse(""), None);
        assert_eq!("SCHEDULED".parse::<ReceiptStat>(), Err(ReceiptError::UnknownStat));
        for n in [0u8, 9, 10, 255] {
            assert_eq!(ReceiptStat::from_message_state(MessageState(n)), None);
        }
    }

    /// Deterministic xorshift64, so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap_or(1)).unwrap_or(0)
        }
    }

    /// A successful parse must survive format-and-reparse unchanged (up to the
    /// text's truncation), which also exercises the formatter on odd values.
    fn check_reparse(r: &Receipt) {
        let mut expected = r.clone();
        expected.text = r.text.chars().take(TEXT_LEN).collect();
        assert_eq!(Receipt::parse(&r.format_with(true)).as_ref(), Ok(&expected), "{r:?}");
    }

    #[test]
    fn random_and_mutated_inputs_never_panic() {
        const PIECES: [&[u8]; 16] = [
            b"id:",
            b"sub:",
            b"dlvrd:",
            b"submit date:",
            b"done date:",
            b"stat:",
            b"err:",
            b"text:",
            b" ",
            b":",
            b"DELIVRD",
            b"2611270312",
            b"\xe9",
            b"\t",
            b"0",
            b"date",
        ];
        let base = sample().format().into_bytes();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut parsed = 0;
        for round in 0..30_000 {
            let mut s = if round % 3 == 0 {
                (0..rng.below(80)).map(|_| u8::try_from(rng.below(256)).unwrap_or(0)).collect()
            } else {
                base.clone()
            };
            for _ in 0..=rng.below(6) {
                let at = rng.below(s.len() + 1);
                match rng.below(4) {
                    0 if at < s.len() => {
                        s.remove(at);
                    }
                    1 if at < s.len() => s[at] = u8::try_from(rng.below(256)).unwrap_or(0),
                    _ => {
                        let piece = PIECES[rng.below(PIECES.len())];
                        let tail = s.split_off(at);
                        s.extend_from_slice(piece);
                        s.extend(tail);
                    }
                }
            }
            if let Ok(r) = Receipt::parse_bytes(&s) {
                parsed += 1;
                check_reparse(&r);
            }
            if let Ok(text) = std::str::from_utf8(&s)
                && let Ok(r) = Receipt::parse(text)
            {
                check_reparse(&r);
            }
        }
        assert!(parsed > 1_000, "only {parsed} inputs parsed");
    }
}
