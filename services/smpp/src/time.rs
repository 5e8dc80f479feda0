//! SMPP time strings (SMPP 3.4 §7.1.1), used by `schedule_delivery_time` and
//! `validity_period`, and the shorter `YYMMDDhhmm[ss]` dates of delivery
//! receipts (Appendix B).
//!
//! Nothing here reads the clock: [`SmppTime::resolve`] takes `now` from the
//! caller, so results are deterministic and testable.

use std::fmt;
use std::hash::{Hash, Hasher};

use chrono::{
    DateTime, Datelike, FixedOffset, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta,
    Timelike, Utc,
};

/// Length of an SMPP time string, without the C-octet string's NUL.
pub const SMPP_TIME_LEN: usize = 16;

/// Largest UTC offset the `nn` digits can carry: 48 quarter hours.
const MAX_OFFSET_SECS: i32 = 48 * QUARTER_HOUR_SECS;
const QUARTER_HOUR_SECS: i32 = 15 * 60;
const NANOS_PER_TENTH: u32 = 100_000_000;

/// A field of an SMPP time, named by [`TimeError::Field`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeField {
    /// Only reachable through [`SmppTime::absolute`]: two digits hold 2000-2099.
    Year,
    Month,
    Day,
    Hour,
    Minute,
    /// Also a leap second given to [`SmppTime::absolute`].
    Second,
    Tenths,
    /// `nn` above 48, or an offset that is not whole quarter hours.
    Offset,
}

impl TimeField {
    const fn name(self) -> &'static str {
        match self {
            Self::Year => "year",
            Self::Month => "month",
            Self::Day => "day",
            Self::Hour => "hour",
            Self::Minute => "minute",
            Self::Second => "second",
            Self::Tenths => "tenths",
            Self::Offset => "UTC offset",
        }
    }
}

impl fmt::Display for TimeField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an SMPP time was rejected. `Copy` and allocation-free so the edge can map it
/// to ESME_RINVSCHED or ESME_RINVEXPIRY without cost.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeError {
    /// Not empty and not exactly 16 bytes.
    #[error("SMPP time must be 16 bytes, got {len}")]
    Length { len: usize },
    /// One of the first 15 bytes is not an ASCII digit.
    #[error("SMPP time byte {offset} is not a digit")]
    NotDigit { offset: usize },
    /// A field's value is out of range (or the date does not exist).
    #[error("SMPP time {field} out of range")]
    Field { field: TimeField },
    /// The last byte is not `+`, `-` or `R`.
    #[error("SMPP time type byte {byte:#04x} is not '+', '-' or 'R'")]
    Sign { byte: u8 },
    /// A relative time whose `tnn` digits are not `000`, as §7.1.1.2 requires.
    #[error("relative SMPP time byte {offset} must be '0'")]
    RelativeNotZero { offset: usize },
}

/// An absolute SMPP time: a local date-time with its UTC offset.
///
/// The field is private so that only encodable values exist: offset a whole number
/// of quarter hours within ±12h, local year 2000-2099, resolution a tenth of a second.
/// Equality and hashing compare the instant *and* the offset, i.e. the encoding,
/// unlike `DateTime`'s own `==` which compares instants only.
#[derive(Debug, Clone, Copy)]
pub struct AbsoluteTime(DateTime<FixedOffset>);

impl AbsoluteTime {
    /// Checks that `dt` can be encoded. Sub-tenth precision is truncated, since the
    /// format cannot carry it and callers usually pass a clock reading.
    pub fn new(dt: DateTime<FixedOffset>) -> Result<Self, TimeError> {
        let offset = dt.offset().local_minus_utc();
        if offset % QUARTER_HOUR_SECS != 0 || offset.unsigned_abs() > MAX_OFFSET_SECS.unsigned_abs()
        {
            return Err(TimeError::Field { field: TimeField::Offset });
        }
        let local = dt.naive_local();
        if !(2000..=2099).contains(&local.year()) {
            return Err(TimeError::Field { field: TimeField::Year });
        }
        let nanos = local.nanosecond();
        if nanos >= 1_000_000_000 {
            // chrono's leap second representation; `ss` stops at 59.
            return Err(TimeError::Field { field: TimeField::Second });
        }
        let truncated = nanos - nanos % NANOS_PER_TENTH;
        dt.with_nanosecond(truncated).map(Self).ok_or(TimeError::Field { field: TimeField::Tenths })
    }

    /// The date-time, in the offset it was written with.
    pub fn datetime(&self) -> DateTime<FixedOffset> {
        self.0
    }

    /// The `t` digit.
    pub fn tenths(&self) -> u8 {
        u8::try_from(self.0.nanosecond() / NANOS_PER_TENTH).unwrap_or(9)
    }
}

impl PartialEq for AbsoluteTime {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 && self.0.offset() == other.0.offset()
    }
}

impl Eq for AbsoluteTime {}

impl Hash for AbsoluteTime {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.naive_utc().hash(state);
        self.0.offset().local_minus_utc().hash(state);
    }
}

/// A relative SMPP time: an amount of calendar time from "now".
///
/// Each field is two digits on the wire; [`SmppTime::format`] writes values above 99
/// as 99 (public fields cannot be range-checked). [`SmppTime::parse`] accepts 00-99
/// in every field, since §7.1.1.2 sets no narrower range for a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RelativeTime {
    pub years: u8,
    pub months: u8,
    pub days: u8,
    pub hours: u8,
    pub minutes: u8,
    pub seconds: u8,
}

impl RelativeTime {
    /// `base` plus this duration: years and months first on the calendar (a day past
    /// the new month's end becomes its last day), then days, hours, minutes, seconds
    /// as fixed lengths. `None` if the result is out of chrono's range.
    pub fn add_to(&self, base: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let months = u32::from(self.years).checked_mul(12)?.checked_add(u32::from(self.months))?;
        let secs = i64::from(self.days)
            .checked_mul(86_400)?
            .checked_add(i64::from(self.hours).checked_mul(3_600)?)?
            .checked_add(i64::from(self.minutes).checked_mul(60)?)?
            .checked_add(i64::from(self.seconds))?;
        base.checked_add_months(Months::new(months))?
            .checked_add_signed(TimeDelta::try_seconds(secs)?)
    }
}

/// A `schedule_delivery_time` or `validity_period` value that is present.
/// An absent (empty) field is `None` at the [`SmppTime::parse`] level, because its
/// meaning ("immediately" or "SMSC default") depends on which field it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmppTime {
    /// Format `YYMMDDhhmmsstnn[+-]`.
    Absolute(AbsoluteTime),
    /// Format `YYMMDDhhmmss000R`.
    Relative(RelativeTime),
}

impl SmppTime {
    /// An absolute time, if `dt` is encodable (see [`AbsoluteTime::new`]).
    pub fn absolute(dt: DateTime<FixedOffset>) -> Result<Self, TimeError> {
        AbsoluteTime::new(dt).map(Self::Absolute)
    }

    /// Parses the field's bytes, without the terminating NUL. Empty means absent.
    ///
    /// Strict: exactly 16 ASCII bytes, every field in range, and for relative times
    /// `tnn` must be `000`. Errors report the first problem in byte order: length,
    /// digits, type byte, relative `tnn`, then fields from year to offset.
    pub fn parse(s: &[u8]) -> Result<Option<Self>, TimeError> {
        if s.is_empty() {
            return Ok(None);
        }
        let b: &[u8; SMPP_TIME_LEN] =
            s.try_into().map_err(|_| TimeError::Length { len: s.len() })?;
        let mut digits = [0u8; SMPP_TIME_LEN - 1];
        for (offset, (d, &c)) in digits.iter_mut().zip(b.iter()).enumerate() {
            if !c.is_ascii_digit() {
                return Err(TimeError::NotDigit { offset });
            }
            *d = c - b'0';
        }
        let two = |at: usize| -> u8 {
            let hi = digits.get(at).copied().unwrap_or(0);
            let lo = digits.get(at + 1).copied().unwrap_or(0);
            hi * 10 + lo
        };
        let [yy, mo, dd, hh, mi, ss] = [0, 2, 4, 6, 8, 10].map(two);
        let [.., t, n1, n2] = digits;
        match b[SMPP_TIME_LEN - 1] {
            b'R' => {
                if let Some(offset) = [t, n1, n2].iter().position(|&d| d != 0) {
                    return Err(TimeError::RelativeNotZero { offset: 12 + offset });
                }
                Ok(Some(Self::Relative(RelativeTime {
                    years: yy,
                    months: mo,
                    days: dd,
                    hours: hh,
                    minutes: mi,
                    seconds: ss,
                })))
            }
            sign @ (b'+' | b'-') => {
                let field = |field| TimeError::Field { field };
                if !(1..=12).contains(&mo) {
                    return Err(field(TimeField::Month));
                }
                let date = NaiveDate::from_ymd_opt(2000 + i32::from(yy), mo.into(), dd.into())
                    .ok_or(field(TimeField::Day))?;
                if hh >= 24 {
                    return Err(field(TimeField::Hour));
                }
                if mi >= 60 {
                    return Err(field(TimeField::Minute));
                }
                if ss >= 60 {
                    return Err(field(TimeField::Second));
                }
                let time = NaiveTime::from_hms_nano_opt(
                    hh.into(),
                    mi.into(),
                    ss.into(),
                    u32::from(t) * NANOS_PER_TENTH,
                )
                .ok_or(field(TimeField::Tenths))?;
                let nn = n1 * 10 + n2;
                if nn > 48 {
                    return Err(field(TimeField::Offset));
                }
                let secs = i32::from(nn) * QUARTER_HOUR_SECS;
                let secs = if sign == b'-' { -secs } else { secs };
                let offset = FixedOffset::east_opt(secs).ok_or(field(TimeField::Offset))?;
                let dt = NaiveDateTime::new(date, time)
                    .and_local_timezone(offset)
                    .single()
                    .ok_or(field(TimeField::Offset))?;
                Ok(Some(Self::Absolute(AbsoluteTime(dt))))
            }
            byte => Err(TimeError::Sign { byte }),
        }
    }

    /// The 16 bytes (no NUL). Inverse of [`SmppTime::parse`], except that an offset
    /// of zero is always written `00+` (`00-` parses to the same value).
    pub fn format(&self) -> [u8; SMPP_TIME_LEN] {
        let mut out = [b'0'; SMPP_TIME_LEN];
        let fields: [u32; 6];
        match self {
            Self::Absolute(a) => {
                let local = a.0.naive_local();
                fields = [
                    local.year().rem_euclid(100).unsigned_abs(),
                    local.month(),
                    local.day(),
                    local.hour(),
                    local.minute(),
                    local.second(),
                ];
                let offset = a.0.offset().local_minus_utc();
                let nn = offset.unsigned_abs() / QUARTER_HOUR_SECS.unsigned_abs();
                out[12] = digit(u32::from(a.tenths()));
                put_two(&mut out, 13, nn);
                out[15] = if offset < 0 { b'-' } else { b'+' };
            }
            Self::Relative(r) => {
                fields = [r.years, r.months, r.days, r.hours, r.minutes, r.seconds]
                    .map(|v| u32::from(v.min(99)));
                out[15] = b'R';
            }
        }
        for (i, v) in fields.into_iter().enumerate() {
            put_two(&mut out, i * 2, v);
        }
        out
    }

    /// The instant this time denotes, given the current time: absolute times
    /// converted to UTC, relative ones added to `now` (see [`RelativeTime::add_to`]).
    pub fn resolve(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Absolute(a) => Some(a.0.with_timezone(&Utc)),
            Self::Relative(r) => r.add_to(now),
        }
    }
}

impl fmt::Display for SmppTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.format().iter().try_for_each(|&b| fmt::Write::write_char(f, char::from(b)))
    }
}

/// The ASCII digit for `v % 10`.
fn digit(v: u32) -> u8 {
    // `v % 10` is below 10, so the conversion cannot fail.
    b'0' + u8::try_from(v % 10).unwrap_or(0)
}

/// Writes `v % 100` as two digits at `at`, ignoring positions past the end.
fn put_two(out: &mut [u8], at: usize, v: u32) {
    if let Some(slot) = out.get_mut(at..).and_then(|s| s.get_mut(..2)) {
        slot.copy_from_slice(&[digit(v / 10), digit(v)]);
    }
}

/// Digits of a receipt date, and how many of them are used (10 or 12).
fn receipt_date_digits(dt: NaiveDateTime, seconds: bool) -> ([u8; 12], usize) {
    let mut out = [b'0'; 12];
    let fields = [
        dt.year().rem_euclid(100).unsigned_abs(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
    ];
    for (i, v) in fields.into_iter().enumerate() {
        put_two(&mut out, i * 2, v);
    }
    (out, if seconds { 12 } else { 10 })
}

/// A delivery receipt date, `YYMMDDhhmm`, or `YYMMDDhhmmss` when `seconds` is set
/// (a common extension). The century is dropped, as the format has no room for it.
pub fn format_receipt_date(dt: NaiveDateTime, seconds: bool) -> String {
    let (digits, len) = receipt_date_digits(dt, seconds);
    digits.iter().take(len).map(|&b| char::from(b)).collect()
}

/// Appends [`format_receipt_date`]'s digits to `out`.
pub fn write_receipt_date(out: &mut Vec<u8>, dt: NaiveDateTime, seconds: bool) {
    let (digits, len) = receipt_date_digits(dt, seconds);
    out.extend(digits.iter().take(len));
}

/// Reads a receipt date of 10 (`YYMMDDhhmm`) or 12 (`YYMMDDhhmmss`) ASCII digits,
/// with years 2000-2099. `None` for any other length, a non-digit or a date or time
/// that does not exist.
pub fn parse_receipt_date(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    if !matches!(b.len(), 10 | 12) || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut fields =
        b.chunks_exact(2).map(|p| p.iter().fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0')));
    let mut next = || fields.next();
    let (yy, mo, dd, hh, mi) = (next()?, next()?, next()?, next()?, next()?);
    let ss = next().unwrap_or(0);
    let date = NaiveDate::from_ymd_opt(2000 + i32::try_from(yy).ok()?, mo, dd)?;
    let time = NaiveTime::from_hms_opt(hh, mi, ss)?;
    Some(NaiveDateTime::new(date, time))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(s: &str) -> SmppTime {
        match SmppTime::parse(s.as_bytes()) {
            Ok(Some(t)) => t,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn parse_err(s: &[u8]) -> TimeError {
        match SmppTime::parse(s) {
            Err(e) => e,
            Ok(t) => panic!("{s:?} parsed as {t:?}"),
        }
    }

    fn field(field: TimeField) -> TimeError {
        TimeError::Field { field }
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|d| d.and_hms_opt(h, mi, s))
            .expect("valid test date")
            .and_utc()
    }

    fn fixed(secs: i32, y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<FixedOffset> {
        let offset = FixedOffset::east_opt(secs).expect("valid offset");
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|d| d.and_hms_opt(h, mi, s))
            .and_then(|n| n.and_local_timezone(offset).single())
            .expect("valid test date")
    }

    fn round_trip(s: &str) -> SmppTime {
        let t = parse_ok(s);
        assert_eq!(&t.format(), s.as_bytes(), "format of {s}");
        assert_eq!(t.to_string(), s);
        t
    }

    #[test]
    fn empty_is_absent() {
        assert_eq!(SmppTime::parse(b""), Ok(None));
    }

    #[test]
    fn absolute_ahead_of_utc() {
        let t = round_trip("261127031500004+");
        let SmppTime::Absolute(a) = t else { panic!("not absolute: {t:?}") };
        assert_eq!(a.datetime(), fixed(3600, 2026, 11, 27, 3, 15, 0));
        assert_eq!(a.datetime().offset().local_minus_utc(), 3600);
        assert_eq!(t.resolve(utc(2000, 1, 1, 0, 0, 0)), Some(utc(2026, 11, 27, 2, 15, 0)));
    }

    #[test]
    fn absolute_behind_utc_with_tenths() {
        let t = round_trip("991231235959948-");
        let SmppTime::Absolute(a) = t else { panic!("not absolute: {t:?}") };
        assert_eq!(a.tenths(), 9);
        assert_eq!(a.datetime().offset().local_minus_utc(), -12 * 3600);
        assert_eq!(a.datetime().nanosecond(), 900_000_000);
        let expected = utc(2100, 1, 1, 11, 59, 59) + TimeDelta::milliseconds(900);
        assert_eq!(t.resolve(utc(2000, 1, 1, 0, 0, 0)), Some(expected));
    }

    #[test]
    fn quarter_hour_offsets() {
        let t = round_trip("000101000000123+");
        let SmppTime::Absolute(a) = t else { panic!("not absolute: {t:?}") };
        assert_eq!(a.datetime().offset().local_minus_utc(), 23 * 900);
        assert_eq!(a.tenths(), 1);
        round_trip("000101000000000+");
        round_trip("250615120000513-");
    }

    #[test]
    fn minus_zero_offset_is_written_plus() {
        let t = parse_ok("261127031500000-");
        assert_eq!(&t.format(), b"261127031500000+");
        assert_eq!(t, parse_ok("261127031500000+"));
    }

    #[test]
    fn equality_includes_offset() {
        // Same instant, different encodings.
        let a = parse_ok("261127031500004+");
        let b = parse_ok("261127021500000+");
        assert_eq!(a.resolve(utc(2000, 1, 1, 0, 0, 0)), b.resolve(utc(2000, 1, 1, 0, 0, 0)));
        assert_ne!(a, b);
    }

    #[test]
    fn constructor_checks_encodability() {
        let ok = SmppTime::absolute(fixed(-5400, 2030, 2, 3, 4, 5, 6)).expect("encodable");
        assert_eq!(&ok.format(), b"300203040506006-");
        assert_eq!(
            SmppTime::absolute(fixed(60, 2030, 1, 1, 0, 0, 0)),
            Err(field(TimeField::Offset))
        );
        assert_eq!(
            SmppTime::absolute(fixed(13 * 3600, 2030, 1, 1, 0, 0, 0)),
            Err(field(TimeField::Offset))
        );
        assert_eq!(SmppTime::absolute(fixed(0, 2100, 1, 1, 0, 0, 0)), Err(field(TimeField::Year)));
        assert_eq!(
            SmppTime::absolute(fixed(0, 1999, 12, 31, 23, 59, 59)),
            Err(field(TimeField::Year))
        );
        // The year is checked in local time: this is 2100 in UTC but 2099 locally.
        assert!(SmppTime::absolute(fixed(-3600, 2099, 12, 31, 23, 0, 0)).is_ok());
        let precise = fixed(0, 2030, 1, 1, 0, 0, 0) + TimeDelta::nanoseconds(123_456_789);
        let t = SmppTime::absolute(precise).expect("truncated");
        assert_eq!(&t.format(), b"300101000000100+");
        let leap = NaiveDate::from_ymd_opt(2030, 6, 30)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .expect("leap second")
            .and_utc()
            .fixed_offset();
        assert_eq!(SmppTime::absolute(leap), Err(field(TimeField::Second)));
    }

    #[test]
    fn relative_one_day() {
        let t = round_trip("000001000000000R");
        assert_eq!(t, SmppTime::Relative(RelativeTime { days: 1, ..RelativeTime::default() }));
        assert_eq!(t.resolve(utc(2026, 12, 31, 22, 0, 0)), Some(utc(2027, 1, 1, 22, 0, 0)));
    }

    #[test]
    fn relative_all_fields() {
        let t = round_trip("010203040506000R");
        assert_eq!(t.resolve(utc(2026, 1, 1, 0, 0, 0)), Some(utc(2027, 3, 4, 4, 5, 6)));
        let t = round_trip("999999999999000R");
        assert!(t.resolve(utc(2026, 1, 1, 0, 0, 0)).is_some());
        assert_eq!(
            round_trip("000000000000000R").resolve(utc(2026, 5, 5, 5, 5, 5)),
            Some(utc(2026, 5, 5, 5, 5, 5))
        );
    }

    #[test]
    fn relative_month_clamps_to_month_end() {
        let t = round_trip("000100000000000R");
        assert_eq!(t.resolve(utc(2027, 1, 31, 10, 0, 0)), Some(utc(2027, 2, 28, 10, 0, 0)));
        assert_eq!(t.resolve(utc(2028, 1, 31, 10, 0, 0)), Some(utc(2028, 2, 29, 10, 0, 0)));
        let year = parse_ok("010000000000000R");
        assert_eq!(year.resolve(utc(2028, 2, 29, 0, 0, 0)), Some(utc(2029, 2, 28, 0, 0, 0)));
    }

    #[test]
    fn relative_overflow_is_none() {
        let max = SmppTime::Relative(RelativeTime {
            years: 255,
            months: 255,
            days: 255,
            hours: 255,
            minutes: 255,
            seconds: 255,
        });
        assert_eq!(max.resolve(DateTime::<Utc>::MAX_UTC), None);
        assert!(max.resolve(utc(2026, 1, 1, 0, 0, 0)).is_some());
        // Unencodable fields saturate at 99 when written.
        assert_eq!(&max.format(), b"999999999999000R");
    }

    #[test]
    fn leap_day() {
        round_trip("280229120000000+");
        assert_eq!(parse_err(b"270229120000000+"), field(TimeField::Day));
        round_trip("000229000000000+");
    }

    #[test]
    fn each_error_class_is_distinct() {
        let cases: [(&[u8], TimeError); 14] = [
            (b"26112703150000+", TimeError::Length { len: 15 }),
            (b"2611270315000004+", TimeError::Length { len: 17 }),
            (b"261127031500004+\0", TimeError::Length { len: 17 }),
            (b"26112703x500004+", TimeError::NotDigit { offset: 8 }),
            (b" 61127031500004+", TimeError::NotDigit { offset: 0 }),
            (b"261327031500004+", field(TimeField::Month)),
            (b"260027031500004+", field(TimeField::Month)),
            (b"261132031500004+", field(TimeField::Day)),
            (b"261127241500004+", field(TimeField::Hour)),
            (b"261127036000004+", field(TimeField::Minute)),
            (b"261127031560004+", field(TimeField::Second)),
            (b"261127031500049+", field(TimeField::Offset)),
            (b"261127031500004X", TimeError::Sign { byte: b'X' }),
            (b"000001000000100R", TimeError::RelativeNotZero { offset: 12 }),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_err(input), expected, "{:?}", String::from_utf8_lossy(input));
        }
        assert_eq!(parse_err(b"000001000000001R"), TimeError::RelativeNotZero { offset: 14 });
        assert_eq!(parse_err(b"261100031500004+"), field(TimeField::Day));
        assert_eq!(parse_err(b"261131031500004+"), field(TimeField::Day));
        assert_eq!(parse_err("26112703150000é".as_bytes()), TimeError::NotDigit { offset: 14 });
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            TimeError::Field { field: TimeField::Offset }.to_string(),
            "SMPP time UTC offset out of range"
        );
        assert_eq!(
            TimeError::Sign { byte: b'X' }.to_string(),
            "SMPP time type byte 0x58 is not '+', '-' or 'R'"
        );
    }

    #[test]
    fn receipt_dates() {
        let dt = NaiveDate::from_ymd_opt(2026, 11, 27)
            .and_then(|d| d.and_hms_opt(3, 12, 45))
            .expect("valid");
        assert_eq!(format_receipt_date(dt, false), "2611270312");
        assert_eq!(format_receipt_date(dt, true), "261127031245");
        let mut buf = b"x".to_vec();
        write_receipt_date(&mut buf, dt, true);
        assert_eq!(buf, b"x261127031245");
        assert_eq!(parse_receipt_date("261127031245"), Some(dt));
        assert_eq!(parse_receipt_date("2611270312"), dt.with_second(0));
        for bad in [
            "",
            "261127031",
            "26112703124",
            "2611270312450",
            "26112703124x",
            "2613270312",
            "2611272412",
            "261127031260",
            "2702290000",
            "+611270312",
        ] {
            assert_eq!(parse_receipt_date(bad), None, "{bad}");
        }
        assert!(parse_receipt_date("2802290000").is_some());
        let old = NaiveDate::from_ymd_opt(1999, 1, 2)
            .and_then(|d| d.and_hms_opt(3, 4, 5))
            .expect("valid");
        assert_eq!(format_receipt_date(old, false), "9901020304");
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
            usize::try_from(self.next() % u64::try_from(n).unwrap_or(1)).unwrap_or(0)
        }
    }

    #[test]
    fn random_inputs_never_panic_and_round_trip() {
        const ALPHABET: &[u8] = b"0123456789012345678901234567890123456789+-R \x00\xff";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let now = utc(2026, 1, 31, 12, 0, 0);
        let mut parsed = 0;
        for _ in 0..50_000 {
            let len = if rng.below(8) == 0 { rng.below(20) } else { 16 };
            let mut s: Vec<u8> = (0..len).map(|_| ALPHABET[rng.below(ALPHABET.len())]).collect();
            if len == 16 && rng.below(2) == 0 {
                // Bias towards plausible values so the field checks are reached:
                // each digit drawn from a little past its valid range.
                const TOP: [usize; 16] = [10, 10, 2, 10, 4, 10, 3, 10, 7, 10, 7, 10, 10, 6, 10, 0];
                for (b, top) in s.iter_mut().zip(TOP).take(15) {
                    *b = b'0' + u8::try_from(rng.below(top)).unwrap_or(0);
                }
                s[15] = b"+-RR"[rng.below(4)];
                if s[15] == b'R' && rng.below(4) != 0 {
                    s[12..15].copy_from_slice(b"000");
                }
            }
            let Ok(Some(t)) = SmppTime::parse(&s) else {
                continue;
            };
            parsed += 1;
            let out = t.format();
            if out[..] != s[..] {
                assert_eq!(&s[13..], b"00-", "{s:?}");
                assert_eq!(&out[13..], b"00+");
                assert_eq!(out[..13], s[..13]);
            }
            assert_eq!(SmppTime::parse(&out), Ok(Some(t)));
            assert!(t.resolve(now).is_some());
            assert_eq!(
                t.resolve(DateTime::<Utc>::MAX_UTC).is_some(),
                matches!(t, SmppTime::Absolute(_))
                    || t == SmppTime::Relative(RelativeTime::default())
            );
        }
        assert!(parsed > 1_000, "only {parsed} inputs parsed");
    }
}
