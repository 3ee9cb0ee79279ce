//! The README's configuration table is the declared settings, exactly: a setting
//! added, renamed, re-documented or given a new default shows up here until the
//! README says so.

use danmaku_gateway::cli::settings_table;

const BEGIN: &str = "<!-- settings table: generated from gateway/src/cli/settings.rs -->\n";
const END: &str = "<!-- end of settings table -->";

#[test]
fn the_readme_lists_exactly_the_declared_settings() {
    let readme = include_str!("../../README.md");
    let expected = settings_table();
    let table = readme
        .split_once(BEGIN)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(table, _)| table);
    assert!(
        table == Some(expected.as_str()),
        "README.md's configuration table differs from the declared settings; put this \
         between the markers:\n\n{BEGIN}{expected}{END}\n"
    );
}
