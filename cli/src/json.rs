//! `--json`: what each command prints, as JSON for scripts. A command
//! writes its text and its JSON form side by side to a [`Printer`], which
//! keeps the one that was asked for: one JSON object per line, so a stream
//! (`listen`, `sync`, `history`, lists) is JSON lines.

use std::fmt;

use confide_client::Event;
use serde_json::{Map, Value, json};

/// Where a command writes what it prints.
#[derive(Default)]
pub struct Printer {
    json: bool,
    printed: String,
}

impl Printer {
    pub fn new(json: bool) -> Self {
        Self {
            json,
            printed: String::new(),
        }
    }

    /// One JSON object, printed only with `--json`.
    pub fn json(&mut self, value: Value) {
        if self.json {
            self.printed.push_str(&value.to_string());
            self.printed.push('\n');
        }
    }

    /// An event, as a line of text or a JSON object.
    pub fn event(&mut self, event: &Event) {
        match self.json {
            true => self.json(event_json(event)),
            false => {
                self.printed.push_str(&crate::commands::line(event));
                self.printed.push('\n');
            }
        }
    }

    pub fn into_string(self) -> String {
        self.printed
    }
}

/// Text (`write!`, `writeln!`) is printed only without `--json`.
impl fmt::Write for Printer {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if !self.json {
            self.printed.push_str(text);
        }
        Ok(())
    }
}

/// An event as one JSON object: `"type"` names it (`message`,
/// `members-added`, …), `"group"` is the group's id in hex, a message's
/// `"text"` its body (and `"body_hex"` for one that is not UTF-8), and
/// `"line"` the line the CLI prints for it; the other fields are the
/// event's own.
pub fn event_json(event: &Event) -> Value {
    let mut object = Map::new();
    if let Ok(Value::Object(tagged)) = serde_json::to_value(event)
        && let Some((variant, fields)) = tagged.into_iter().next()
    {
        object.insert("type".into(), Value::String(kebab(&variant)));
        if let Value::Object(fields) = fields {
            for (key, value) in fields {
                if key == "body" {
                    continue;
                }
                object.insert(key, value);
            }
        }
    } else if let Ok(Value::String(unit)) = serde_json::to_value(event) {
        object.insert("type".into(), Value::String(kebab(&unit)));
    }
    if let Some(group) = event.group() {
        object.insert("group".into(), Value::String(hex::encode(group)));
    }
    if let Event::Message { body, .. } = event {
        match std::str::from_utf8(body) {
            Ok(text) => object.insert("text".into(), json!(text)),
            Err(_) => object.insert("body_hex".into(), json!(hex::encode(body))),
        };
    }
    object.insert("line".into(), json!(event.to_string()));
    Value::Object(object)
}

/// `MembersAdded` → `members-added`.
fn kebab(variant: &str) -> String {
    let mut kebab = String::new();
    for (i, c) in variant.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                kebab.push('-');
            }
            kebab.push(c.to_ascii_lowercase());
        } else {
            kebab.push(c);
        }
    }
    kebab
}

#[cfg(test)]
mod tests {
    use super::*;
    use confide_client::ClientId;

    #[test]
    fn a_message_is_an_object_with_its_type_hex_group_sender_and_text() {
        let event = Event::Message {
            group: vec![0xab, 0x01],
            seq: 7,
            sender: ClientId::new("alice", "laptop").unwrap(),
            body: b"hi \x1b[2J".to_vec(),
            sent_at_ms: Some(5),
        };
        let value = event_json(&event);
        assert_eq!(value["type"], "message");
        assert_eq!(value["group"], "ab01");
        assert_eq!(value["seq"], 7);
        assert_eq!(value["sender"], "alice/laptop");
        assert_eq!(value["text"], "hi \u{1b}[2J");
        assert_eq!(value["sent_at_ms"], 5);
        assert!(value.get("body").is_none());
        assert!(!value["line"].as_str().unwrap().contains('\u{1b}'));
    }

    #[test]
    fn an_event_without_fields_still_has_its_type() {
        let value = event_json(&Event::KeyPackagesReplenished { uploaded: 3 });
        assert_eq!(value["type"], "key-packages-replenished");
        assert_eq!(value["uploaded"], 3);
    }
}
