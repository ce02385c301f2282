//! `conclib-schema check OLD.json NEW.json`: whether the build that exported `NEW.json` may
//! serve beside the one that exported `OLD.json` during a rolling upgrade (both written by
//! [`conclib::schema::Export`]). Prints one line a change (`breaking` or `additive`, where,
//! what) and exits 0 when no change is breaking, 1 when one is, 2 when a document cannot be
//! read. For a service's CI: export the schema of the deployed build and of the new one, then
//! check. Install with `cargo install conclib --features schema --bin conclib-schema`.

use std::process::ExitCode;

use conclib::schema::compare;

const USAGE: &str = "usage: conclib-schema check OLD.json NEW.json";

fn read(path: &str) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{path}: not JSON: {e}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [command, old, new] = args.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if command != "check" {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let report = match (read(old), read(new)) {
        (Ok(old), Ok(new)) => compare(&old, &new),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("conclib-schema: {e}");
            return ExitCode::from(2);
        }
    };
    match report {
        Ok(report) => {
            print!("{report}");
            let breaking = report.breaking().count();
            println!(
                "{} changes, {breaking} breaking: {}",
                report.changes.len(),
                if breaking == 0 {
                    "compatible"
                } else {
                    "NOT compatible"
                }
            );
            if breaking == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("conclib-schema: {e}");
            ExitCode::from(2)
        }
    }
}
