//! `provflow state copy`: argument handling and output only; the copy and its checks are in
//! `provflow_runner::store::copy`.

use provflow_runner::clock::{Clock, CommandClock};
use provflow_runner::credentials;
use provflow_runner::store::copy::{self, CopyError, CopyReport};
use serde_json::json;

use crate::args::{Format, Global, StateCommand, StateCopyArgs};
use crate::exit;
use crate::out::{self, errln, outln};

/// How much of a checksum the human table shows.
const CHECKSUM_SHOWN: usize = 12;

pub fn state(global: &Global, command: StateCommand) -> u8 {
    match command {
        StateCommand::Copy(a) => state_copy(global, &a),
    }
}

fn state_copy(global: &Global, a: &StateCopyArgs) -> u8 {
    // Every message from here on is scrubbed of both URLs' passwords.
    credentials::remember(&a.from);
    credentials::remember(&a.to);
    if let Err(why) = CommandClock::check() {
        errln!("error: {why}");
        return exit::USAGE;
    }
    let report = match copy::copy(&a.from, &a.to, CommandClock.now()) {
        Ok(report) => report,
        Err(e) => {
            errln!("error: {e}");
            return match e {
                CopyError::Usage(_) | CopyError::Refused(_) => exit::USAGE,
                CopyError::Failed(_) => exit::FAILED,
            };
        }
    };
    if global.format == Format::Json {
        out::json(&report_json(&report));
    } else {
        print_report(&report);
    }
    if report.verified() {
        exit::OK
    } else {
        let tables = report.mismatched().iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ");
        errln!(
            "error: the copy in `{}` does not match the source in {tables}; it was rolled back, the destination holds no copied rows. Nothing changed in the source; report this with the table above",
            report.to
        );
        exit::FAILED
    }
}

fn short(checksum: &str) -> &str {
    checksum.get(..CHECKSUM_SHOWN).unwrap_or(checksum)
}

fn print_report(report: &CopyReport) {
    let rows: Vec<Vec<String>> = report
        .tables
        .iter()
        .map(|t| {
            if t.matches() {
                vec![
                    t.table.to_string(),
                    t.source_rows.to_string(),
                    short(&t.source_checksum).to_string(),
                    "verified".into(),
                ]
            } else {
                vec![
                    t.table.to_string(),
                    format!("{} → {}", t.source_rows, t.destination_rows),
                    format!("{} → {}", short(&t.source_checksum), short(&t.destination_checksum)),
                    "MISMATCH".into(),
                ]
            }
        })
        .collect();
    out::table(&["TABLE", "ROWS", "CHECKSUM", "CHECK"], &rows);
    if report.verified() {
        let total: u64 = report.tables.iter().map(|t| t.source_rows).sum();
        outln!(
            "copied `{}` to `{}`: {} tables, {total} rows, schema version {}, verified",
            report.from,
            report.to,
            report.tables.len(),
            report.schema_version
        );
    }
}

fn report_json(report: &CopyReport) -> serde_json::Value {
    let tables: Vec<serde_json::Value> = report
        .tables
        .iter()
        .map(|t| {
            json!({
                "table": t.table,
                "rows": t.source_rows,
                "checksum": t.source_checksum,
                "destination_rows": t.destination_rows,
                "destination_checksum": t.destination_checksum,
                "verified": t.matches(),
            })
        })
        .collect();
    json!({
        "from": report.from,
        "to": report.to,
        "schema_version": report.schema_version,
        "verified": report.verified(),
        "tables": tables,
    })
}
