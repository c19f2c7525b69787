//! The kernel matrix's report: one row per kernel (the guest's result
//! line, or why there is none) and the table and details printed at the end.

use std::{fmt::Write as _, path::PathBuf, time::Duration};

use serde_json::Value;

/// One row of the table.
pub(super) struct Row {
    pub(super) name: String,
    /// The result line of the guest, if one came.
    pub(super) result: Option<Value>,
    pub(super) time: Duration,
    /// Why there is no result.
    pub(super) error: Option<String>,
    pub(super) log: PathBuf,
}

impl Row {
    pub(super) fn field(&self, key: &str) -> Option<&Value> {
        self.result.as_ref().map(|r| &r[key])
    }

    pub(super) fn passed(&self) -> bool {
        self.error.is_none()
            && self.field("check_rc") == Some(&Value::from(0))
            && self.field("failed") == Some(&Value::from(0))
            && self
                .field("plans")
                .and_then(Value::as_array)
                .is_some_and(|p| p.iter().all(|p| p["failed"] == 0))
    }
}

pub(super) fn minutes(d: Duration) -> String {
    format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
}

/// The table: kernel | connect plan chosen | tests passed/failed | time,
/// with the other plans' runs and check's exit status.
pub(super) fn table(rows: &[Row]) -> String {
    let mut t = String::new();
    t.push_str("| kernel | connect plan chosen | tests passed/failed | connect tests under the other plans | check | time |\n");
    t.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for r in rows {
        let Some(res) = &r.result else {
            let _ = writeln!(
                t,
                "| {} | | | | | {} |\n| | {} | | | | |",
                r.name,
                minutes(r.time),
                r.error.as_deref().unwrap_or("no result")
            );
            continue;
        };
        let plans = res["plans"].as_array().cloned().unwrap_or_default();
        let chosen = plans
            .iter()
            .find(|p| p["default"] == true)
            .and_then(|p| p["plan"].as_str())
            .unwrap_or("none");
        let others: Vec<String> = plans
            .iter()
            .filter(|p| p["default"] != true)
            .map(|p| {
                format!(
                    "{} {}/{}",
                    p["plan"].as_str().unwrap_or("?"),
                    p["passed"],
                    p["failed"]
                )
            })
            .collect();
        let _ = writeln!(
            t,
            "| {} | {} | {}/{} | {} | exit {} | {} |",
            r.name,
            chosen,
            res["passed"],
            res["failed"],
            if others.is_empty() {
                "no other plan allowed".to_string()
            } else {
                others.join(", ")
            },
            res["check_rc"],
            minutes(r.time)
        );
    }
    t
}

/// Per kernel, what `check` said: lockdown, BTF, tracepoint layouts
/// (fields absent from the layout tcptrace matched), the plans allowed.
pub(super) fn details(rows: &[Row]) -> String {
    let mut t = String::new();
    for r in rows {
        let Some(res) = &r.result else { continue };
        let c = &res["check"];
        let _ = writeln!(
            t,
            "\n{}: lockdown {}, BTF {}",
            r.name, c["lockdown"], c["btf"]
        );
        for tp in c["tracepoints"].as_array().into_iter().flatten() {
            let absent: Vec<&str> = tp["absent"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let error = tp["error"].as_str();
            if !absent.is_empty() || error.is_some() {
                let _ = writeln!(
                    t,
                    "  {}: {}{}",
                    tp["name"].as_str().unwrap_or("?"),
                    if absent.is_empty() {
                        String::new()
                    } else {
                        format!("without {}", absent.join(", "))
                    },
                    error.map(|e| format!(" ({e})")).unwrap_or_default()
                );
            }
        }
        for p in c["connect_plans"].as_array().into_iter().flatten() {
            let _ = writeln!(
                t,
                "  plan {}: {}",
                p["plan"].as_str().unwrap_or("?"),
                if p["ok"] == true {
                    "allowed".to_string()
                } else {
                    p["error"].as_str().unwrap_or("refused").to_string()
                }
            );
        }
        for f in res["failures"].as_array().into_iter().flatten() {
            let _ = writeln!(t, "  FAILED {}", f.as_str().unwrap_or("?"));
        }
        let _ = writeln!(t, "  log: {}", r.log.display());
    }
    t
}
