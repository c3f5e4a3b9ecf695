//! `docs/SECURITY.md` maps each threat to the test that replays it. A renamed or
//! deleted test would leave the map pointing at nothing, so every
//! `integration_module::test_name` in a table's last column (the tests) must be a test
//! in that module.

use std::path::Path;

#[test]
fn every_test_the_threat_model_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/SECURITY.md")).expect("docs/SECURITY.md");
    let mut checked = 0;
    let test_cells = doc
        .lines()
        .filter(|line| line.starts_with('|') && !line.starts_with("|---"))
        .filter_map(|row| row.trim_end_matches('|').rsplit('|').next());
    for name in test_cells.flat_map(|cell| cell.split('`').skip(1).step_by(2)) {
        let Some((module, test)) = name.split_once("::") else {
            continue;
        };
        let file = root.join("tests/integration").join(format!("{module}.rs"));
        if test.contains("::") || !file.exists() {
            continue;
        }
        let source = std::fs::read_to_string(&file).expect("test module");
        assert!(
            source.contains(&format!("fn {test}(")),
            "docs/SECURITY.md names {name}, which is not a test in {}",
            file.display()
        );
        checked += 1;
    }
    assert!(
        checked >= 40,
        "only {checked} tests named: is the table intact?"
    );
}
