//! What the commands print: a table (or `key: value` lines) for people, JSON for scripts.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::Value;

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Rows of objects: a JSON array, or a table of `columns` (object keys) with them as headers.
pub fn rows(json: bool, columns: &[&str], rows: &[Value]) {
    if json {
        println!("{}", Value::Array(rows.to_vec()));
        return;
    }
    if rows.is_empty() {
        println!("(none)");
        return;
    }
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(columns.to_vec());
    for row in rows {
        table.add_row(columns.iter().map(|c| cell(&row[*c])).collect::<Vec<_>>());
    }
    println!("{table}");
}

/// One object: JSON, or a `key: value` line per field.
pub fn one(json: bool, value: &Value) {
    if json {
        println!("{value}");
        return;
    }
    if let Value::Object(fields) = value {
        let width = fields.keys().map(String::len).max().unwrap_or(0);
        for (key, value) in fields {
            println!("{key:width$}  {}", cell(value));
        }
    }
}

/// What an action did: JSON, or the sentence.
pub fn done(json: bool, value: &Value, sentence: &str) {
    if json {
        println!("{value}");
    } else {
        println!("{sentence}");
    }
}
