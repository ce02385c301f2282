//! Writes the README's Rust blocks, wrapped as `src/lib.rs` describes, to
//! `$OUT_DIR/readme_blocks.rs`, and its first TOML block to `$OUT_DIR/readme_cargo.toml`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What a marker says a block is.
enum Kind {
    Items,
    Test(String),
    Main,
}

/// One module of the generated file.
#[derive(Default)]
struct Module {
    items: String,
    tests: BTreeMap<String, (usize, String)>,
    mains: Vec<String>,
}

fn parse_marker(line: &str, at: usize) -> Option<(String, Kind)> {
    let rest = line
        .trim()
        .strip_prefix("<!-- readme:")?
        .strip_suffix("-->")?;
    let (mut module, mut kind) = (None, None);
    for word in rest.split_whitespace() {
        match word.split_once('=') {
            Some(("mod", m)) => module = Some(m.to_owned()),
            Some(("test", t)) => kind = Some(Kind::Test(t.to_owned())),
            None if word == "items" => kind = Some(Kind::Items),
            None if word == "main" => kind = Some(Kind::Main),
            _ => panic!("README.md:{at}: unknown word {word:?} in a readme marker"),
        }
    }
    let module = module.unwrap_or_else(|| panic!("README.md:{at}: the marker names no mod="));
    let kind = kind.unwrap_or_else(|| panic!("README.md:{at}: items, main or test=NAME?"));
    Some((module, kind))
}

fn main() {
    let readme_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    println!("cargo::rerun-if-changed={readme_path}");
    let readme = std::fs::read_to_string(readme_path).expect("../README.md");

    let mut modules: BTreeMap<String, Module> = BTreeMap::new();
    let mut order: Vec<(String, String)> = Vec::new(); // (module, test or "main"), in order
    let mut cargo_toml = None;
    let mut marker: Option<(String, Kind)> = None;
    let mut lines = readme.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((at, line)) = lines.next() {
        if let Some(m) = parse_marker(line, at) {
            marker = Some(m);
            continue;
        }
        let Some(lang) = line.strip_prefix("```") else {
            if !line.trim().is_empty() {
                marker = None; // a marker belongs to the block right after it
            }
            continue;
        };
        let mut body = String::new();
        for (_, l) in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        match lang.trim() {
            "rust" => {}
            "toml" => {
                cargo_toml.get_or_insert(body);
                continue;
            }
            _ => continue,
        }
        let (name, kind) = marker
            .take()
            .unwrap_or_else(|| panic!("README.md:{at}: a rust block with no readme marker"));
        let module = modules.entry(name.clone()).or_default();
        let located = format!("// README.md line {at}\n{body}");
        match kind {
            Kind::Items => module.items.push_str(&located),
            Kind::Test(test) => {
                let entry = module.tests.entry(test.clone()).or_insert_with(|| {
                    order.push((name.clone(), test.clone()));
                    (at, String::new())
                });
                entry.1.push_str(&located);
            }
            Kind::Main => {
                let renamed = located.replacen("\nfn main(", "\npub fn main(", 1);
                assert!(
                    renamed != located,
                    "README.md:{at}: a main block with no `fn main(`"
                );
                assert!(
                    module.mains.is_empty(),
                    "README.md:{at}: one main per module"
                );
                module.mains.push(renamed);
                order.push((name.clone(), "main".to_owned()));
            }
        }
    }

    let mut out = String::new();
    for (name, module) in &modules {
        let _ = writeln!(
            out,
            "#[allow(dead_code, unused, missing_docs, clippy::all, clippy::pedantic)]\npub mod {name} {{\n{}",
            module.items
        );
        for main in &module.mains {
            out.push_str(main);
        }
        for (test, (at, body)) in &module.tests {
            let _ = writeln!(
                out,
                "pub async fn {test}() {{\n\
                 async fn block() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {{\n\
                 {body}\nOk(())\n}}\n\
                 if let Err(e) = block().await {{\n\
                 panic!(\"the README block at line {at} failed: {{e}}\");\n}}\n}}"
            );
        }
        out.push_str("}\n");
    }
    out.push_str("/// Each block's test, in the README's order.\npub const TESTS: &[(&str, conclib_testkit::Test)] = &[\n");
    for (module, test) in &order {
        if test == "main" {
            let _ = writeln!(
                out,
                "(\"{module}::main\", || Box::pin(run_main({module}::main))),"
            );
        } else {
            let _ = writeln!(
                out,
                "(\"{module}::{test}\", || Box::pin({module}::{test}())),"
            );
        }
    }
    out.push_str("];\n/// Runs the README's `main`s, whose first line plays the child when this process was started as a process actor.\npub fn child_role() {\n");
    for (module, test) in &order {
        if test == "main" {
            let _ = writeln!(out, "let _ = {module}::main();");
        }
    }
    out.push_str("}\n");

    let out_dir = std::env::var("OUT_DIR").expect("OUT_DIR");
    std::fs::write(format!("{out_dir}/readme_blocks.rs"), out).expect("write the blocks");
    let toml = cargo_toml.expect("README.md has a toml block (Add it to your project)");
    std::fs::write(format!("{out_dir}/readme_cargo.toml"), toml).expect("write the toml");
}
