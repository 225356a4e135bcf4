//! Real-time events (Personalize's PutEvents, field names in snake_case) and their validation.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest id or event type accepted (Personalize's limit).
pub const MAX_ID_CHARS: usize = 256;
/// First implausible `sent_at`: 2200-01-01T00:00:00Z in Unix seconds (the CSV reader's bound too).
pub const MAX_SENT_AT: f64 = 7_258_118_400.0;

/// What one `put_events` call may carry. The defaults are Personalize's documented PutEvents
/// limits; raise them for bulk loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventLimits {
    /// Events per call (Personalize: 10).
    pub max_events_per_call: usize,
    /// Bytes of one event as JSON, the form it takes in the event log (Personalize: 10 KB).
    pub max_event_bytes: usize,
    /// Event identities remembered for de-duplication (see [`super::dedup`]).
    pub dedup_window: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            max_events_per_call: 10,
            max_event_bytes: 10 * 1024,
            dedup_window: 1_000_000,
        }
    }
}

impl EventLimits {
    /// Checks that a call within these limits always fits one event-log record.
    pub fn check(&self) -> Result<()> {
        let record = super::event_log::MAX_RECORD;
        if self.max_events_per_call == 0 {
            return Err(Error::invalid_argument(
                "max_events_per_call",
                "expected at least 1, found 0",
            ));
        }
        if self.max_event_bytes < 256 {
            return Err(Error::invalid_argument(
                "max_event_bytes",
                format!("expected at least 256, found {}", self.max_event_bytes),
            ));
        }
        if self
            .max_events_per_call
            .saturating_mul(self.max_event_bytes)
            > record / 2
        {
            return Err(Error::invalid_argument(
                "max_events_per_call",
                format!(
                    "max_events_per_call × max_event_bytes must be at most {} (half an event-log \
                     record), found {} × {}",
                    record / 2,
                    self.max_events_per_call,
                    self.max_event_bytes
                ),
            ));
        }
        if self.dedup_window == 0 {
            return Err(Error::invalid_argument(
                "dedup_window",
                "expected at least 1, found 0",
            ));
        }
        Ok(())
    }
}

/// One real-time event, as recorded in the event log (one JSON object per record).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The user, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The session (identifies an anonymous user when `user_id` is absent).
    pub session_id: String,
    /// The event type (1–256 characters).
    pub event_type: String,
    /// Unix seconds.
    pub sent_at: f64,
    /// The item, when the event has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    /// EVENT_VALUE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_value: Option<f64>,
    /// A unique id; an event whose id was seen before is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Items shown to the user with this event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub impression: Vec<String>,
    /// Free-form properties (a JSON string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<String>,
}

impl Event {
    /// The key under which the user's state is kept: the user id, else the session id (Personalize
    /// serves an anonymous session when its session id is passed as the user id).
    pub fn user_key(&self) -> &str {
        self.user_id.as_deref().unwrap_or(&self.session_id)
    }
}

fn check_id(value: &str, index: usize, field: &str) -> Result<()> {
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_ID_CHARS {
        return Err(Error::Event {
            index,
            field: field.to_owned(),
            message: format!("expected 1–{MAX_ID_CHARS} characters, found {chars}"),
        });
    }
    Ok(())
}

/// Checks the ids shared by a whole call (they are arguments, so errors are `ValueError`s).
pub fn validate_call(user_id: Option<&str>, session_id: &str) -> Result<()> {
    for (name, value) in [("session_id", Some(session_id)), ("user_id", user_id)] {
        if let Some(v) = value {
            let chars = v.chars().count();
            if chars == 0 || chars > MAX_ID_CHARS {
                return Err(Error::invalid_argument(
                    name,
                    format!("expected 1–{MAX_ID_CHARS} characters, found {chars}"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks that `t` is plausible Unix seconds: finite, from 1970 to 2200. A value that is Unix
/// seconds times 10³, 10⁶ or 10⁹ gets a message naming the unit it is probably in.
pub fn check_time(t: f64) -> std::result::Result<(), String> {
    if t.is_finite() && (0.0..MAX_SENT_AT).contains(&t) {
        return Ok(());
    }
    let unit = [
        (1e3, "milliseconds"),
        (1e6, "microseconds"),
        (1e9, "nanoseconds"),
    ]
    .into_iter()
    .find(|(scale, _)| t.is_finite() && (1e9..=MAX_SENT_AT).contains(&(t / scale)));
    Err(match unit {
        Some((scale, name)) => format!(
            "expected Unix seconds (1970–2199), found {t}, which looks like {name}: divide by {scale}"
        ),
        None => format!(
            "expected finite Unix seconds from 0 to {} (1970–2199), found {t}",
            MAX_SENT_AT - 1.0
        ),
    })
}

/// Checks event `index` of a call; the error names the index and field.
pub fn validate(event: &Event, index: usize) -> Result<()> {
    check_id(&event.event_type, index, "event_type")?;
    check_time(event.sent_at).map_err(|message| Error::Event {
        index,
        field: "sent_at".into(),
        message,
    })?;
    if let Some(item) = &event.item_id {
        check_id(item, index, "item_id")?;
    }
    if let Some(id) = &event.event_id {
        check_id(id, index, "event_id")?;
    }
    if let Some(v) = event.event_value {
        if !v.is_finite() {
            return Err(Error::Event {
                index,
                field: "event_value".into(),
                message: format!("expected a finite number, found {v}"),
            });
        }
    }
    for (i, item) in event.impression.iter().enumerate() {
        check_id(item, index, &format!("impression[{i}]"))?;
    }
    if let Some(properties) = &event.properties {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(properties) {
            return Err(Error::Event {
                index,
                field: "properties".into(),
                message: format!("expected a JSON document (strict: no NaN or infinity), {e}"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            user_id: None,
            session_id: "s".into(),
            event_type: "click".into(),
            sent_at: 10.0,
            item_id: Some("i".into()),
            event_value: None,
            event_id: None,
            impression: vec![],
            properties: None,
        }
    }

    #[test]
    fn validation_names_index_and_field() {
        assert!(validate(&event(), 0).is_ok());
        let mut e = event();
        e.event_type = String::new();
        assert_eq!(
            validate(&e, 3).unwrap_err().to_string(),
            "events[3].event_type: expected 1–256 characters, found 0"
        );
        let mut e = event();
        for (t, unit) in [
            (1.7e12, "milliseconds"),
            (1.7e15, "microseconds"),
            (1.7e18, "nanoseconds"),
        ] {
            e.sent_at = t;
            let message = validate(&e, 0).unwrap_err().to_string();
            assert!(message.contains(unit), "{message}");
        }
        for t in [1e300, 2f64.powi(64), -1.0, f64::INFINITY] {
            e.sent_at = t;
            assert!(validate(&e, 0).is_err(), "{t}");
        }
        e.sent_at = MAX_SENT_AT - 1.0;
        assert!(validate(&e, 0).is_ok());
        e.sent_at = MAX_SENT_AT;
        assert!(validate(&e, 0).is_err());
        let mut e = event();
        e.sent_at = f64::NAN;
        assert!(validate(&e, 1)
            .unwrap_err()
            .to_string()
            .starts_with("events[1].sent_at"));
        let mut e = event();
        e.impression = vec!["a".into(), "x".repeat(257)];
        assert!(validate(&e, 0)
            .unwrap_err()
            .to_string()
            .starts_with("events[0].impression[1]"));
        assert!(validate_call(Some(""), "s").is_err());
        let mut e = event();
        e.properties = Some("{\"x\": NaN}".into());
        assert!(validate(&e, 2)
            .unwrap_err()
            .to_string()
            .starts_with("events[2].properties: expected a JSON document"));
    }

    #[test]
    fn json_round_trip_is_exact() {
        let mut e = event();
        e.sent_at = 1_700_000_000.123_456_7;
        e.event_value = Some(0.1);
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), e);
    }
}
