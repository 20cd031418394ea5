//! Time windows for policy rules (`hours = ["Mon-Fri 08:00-18:00"]`) and the clock they
//! are read against. A window is a set of weekdays and a half-open span of minutes in
//! the host's local time; a rule with windows matches only inside one of them. The clock
//! is a trait so tests set the time instead of waiting for it.

use std::fmt;
use std::str::FromStr;

/// Days as the policy file spells them, Monday first (ISO 8601 order).
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MINUTES_PER_DAY: u16 = 24 * 60;

/// A moment of the week in local time: what a time window is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeekTime {
    /// 0 is Monday, 6 is Sunday.
    pub weekday: u8,
    /// Minutes since local midnight, 0 to 1439.
    pub minute: u16,
}

impl WeekTime {
    /// `day` as `Mon`…`Sun` and `hh:mm`; `None` when either is not one.
    pub fn parse(day: &str, time: &str) -> Option<WeekTime> {
        let weekday = day_index(day)?;
        let minute = clock_minute(time).filter(|m| *m < MINUTES_PER_DAY)?;
        Some(WeekTime { weekday, minute })
    }
}

impl fmt::Display for WeekTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let day = DAYS[usize::from(self.weekday % 7)];
        write!(f, "{day} {:02}:{:02}", self.minute / 60, self.minute % 60)
    }
}

/// Where rules with `hours` read the time from.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> WeekTime;
}

/// The host's local time (its time zone database entry, as `jiff` finds it).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> WeekTime {
        let now = jiff::Zoned::now();
        WeekTime {
            weekday: u8::try_from(now.weekday().to_monday_zero_offset()).unwrap_or(0),
            minute: u16::try_from(now.hour()).unwrap_or(0) * 60
                + u16::try_from(now.minute()).unwrap_or(0),
        }
    }
}

/// A clock that always says the same time (tests, and `explain --at`-style checks).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub WeekTime);

impl Clock for FixedClock {
    fn now(&self) -> WeekTime {
        self.0
    }
}

/// One window: `Mon-Fri 08:00-18:00`, `Sat,Sun 10:00-14:00`, or `09:00-17:00` (every
/// day). The end is exclusive and may be `24:00`; a window does not cross midnight
/// (write two windows instead), so "which day" is never ambiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Bit `d` set: weekday `d` (0 Monday) is in.
    days: u8,
    start: u16,
    end: u16,
}

impl Window {
    pub fn contains(&self, at: WeekTime) -> bool {
        self.days & (1 << at.weekday) != 0 && (self.start..self.end).contains(&at.minute)
    }
}

impl FromStr for Window {
    type Err = String;

    fn from_str(text: &str) -> Result<Window, String> {
        let mut fields = text.split_whitespace();
        let (days, span) = match (fields.next(), fields.next(), fields.next()) {
            (Some(span), None, None) => (0x7f, span),
            (Some(days), Some(span), None) => (parse_days(days)?, span),
            _ => return Err(format!("{text:?}: expected \"Mon-Fri 08:00-18:00\"")),
        };
        let (start, end) = span
            .split_once('-')
            .ok_or_else(|| format!("{span:?}: expected a span such as 08:00-18:00"))?;
        let bad = |t: &str| format!("{t:?} is not a time of day (hh:mm, 00:00 to 24:00)");
        let start = clock_minute(start).ok_or_else(|| bad(start))?;
        let end = clock_minute(end).ok_or_else(|| bad(end))?;
        if start >= end {
            return Err(format!(
                "{span:?} ends before it starts; a window cannot cross midnight, \
                 so write two (e.g. 22:00-24:00 and 00:00-06:00 on the next days)"
            ));
        }
        Ok(Window { days, start, end })
    }
}

/// `Mon`, `Mon-Fri`, `Sat,Sun`, `Mon,Wed-Fri` as a weekday bit set.
fn parse_days(text: &str) -> Result<u8, String> {
    let mut days = 0u8;
    for part in text.split(',') {
        let bad = || format!("{part:?} is not a day or day range (Mon … Sun, e.g. Mon-Fri)");
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (day_index(a).ok_or_else(bad)?, day_index(b).ok_or_else(bad)?),
            None => {
                let day = day_index(part).ok_or_else(bad)?;
                (day, day)
            }
        };
        if first > last {
            return Err(format!("{part:?} runs backwards (weeks start on Monday)"));
        }
        for day in first..=last {
            days |= 1 << day;
        }
    }
    Ok(days)
}

fn day_index(name: &str) -> Option<u8> {
    let position = DAYS.iter().position(|d| d.eq_ignore_ascii_case(name))?;
    u8::try_from(position).ok()
}

/// `hh:mm` as minutes since midnight, `24:00` included.
fn clock_minute(text: &str) -> Option<u16> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: u16 = hours.parse().ok()?;
    let minutes: u16 = minutes.parse().ok()?;
    let total = hours.checked_mul(60)?.checked_add(minutes)?;
    (minutes < 60 && total <= MINUTES_PER_DAY).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: &str, time: &str) -> WeekTime {
        WeekTime::parse(day, time).unwrap()
    }

    #[test]
    fn office_hours() {
        let window: Window = "Mon-Fri 08:00-18:00".parse().unwrap();
        assert!(window.contains(at("Mon", "08:00")));
        assert!(window.contains(at("Fri", "17:59")));
        assert!(!window.contains(at("Fri", "18:00")), "the end is exclusive");
        assert!(!window.contains(at("Wed", "07:59")));
        assert!(!window.contains(at("Sat", "12:00")));
    }

    #[test]
    fn day_lists_every_day_and_midnight() {
        let weekend: Window = "sat,Sun 00:00-24:00".parse().unwrap();
        assert!(weekend.contains(at("Sun", "23:59")));
        assert!(!weekend.contains(at("Mon", "00:00")));
        let daily: Window = "09:00-17:00".parse().unwrap();
        assert!(daily.contains(at("Sun", "09:00")));
        let mixed: Window = "Mon,Wed-Thu 10:00-11:00".parse().unwrap();
        assert!(mixed.contains(at("Wed", "10:30")) && !mixed.contains(at("Tue", "10:30")));
    }

    #[test]
    fn bad_windows_say_why() {
        let err = |s: &str| s.parse::<Window>().unwrap_err();
        assert!(err("Mon-Fri 18:00-08:00").contains("cannot cross midnight"));
        assert!(err("Fri-Mon 08:00-09:00").contains("backwards"));
        assert!(err("Mo 08:00-09:00").contains("not a day"));
        assert!(err("Mon 8:00-09:00").contains("not a time of day"));
        assert!(err("Mon 08:60-09:00").contains("not a time of day"));
        assert!(err("Mon 08:00-24:01").contains("not a time of day"));
        assert!(err("Mon 08:00").contains("span"));
        assert!(err("Mon Tue 08:00-09:00").contains("expected"));
    }

    #[test]
    fn week_times_print_and_parse() {
        assert_eq!(at("tue", "07:05").to_string(), "Tue 07:05");
        assert_eq!(WeekTime::parse("Tue", "24:00"), None);
        let now = SystemClock.now();
        assert!(now.weekday < 7 && now.minute < MINUTES_PER_DAY);
    }
}
