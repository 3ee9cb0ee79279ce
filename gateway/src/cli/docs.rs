//! `--help` and the README's configuration table, both made from the declared settings.

use clap::{Arg, CommandFactory};

use super::settings::{Args, SETTINGS, Shown};
use crate::config::Config;

/// The default of a setting that has none (the README shows it; `--help` leaves it out).
const NO_DEFAULT: &str = "—";

/// The command line parser, each setting's help ending with its default.
pub fn command() -> clap::Command {
    let defaults = Config::default();
    let cmd = Args::command().version(super::VERSION).arg(
        Arg::new(super::HEALTHCHECK)
            .long(super::HEALTHCHECK)
            .action(clap::ArgAction::SetTrue)
            .help(
                "Instead of serving: GET /readyz of the --listen address (0.0.0.0 or [::] \
                 asked on loopback) within 2 s; exit 0 on 200, else print why and exit 1 \
                 (for a container HEALTHCHECK)",
            ),
    );
    SETTINGS.iter().fold(cmd, |cmd, s| {
        let shown = match (s.default)(&defaults) {
            Shown::Value(v) => v,
            Shown::Text(NO_DEFAULT) => return cmd,
            Shown::Text(t) => t.to_owned(),
        };
        cmd.mut_arg(s.name, |a| {
            let help = a.get_help().map(ToString::to_string).unwrap_or_default();
            a.help(format!("{help} [default: {shown}]"))
        })
    })
}

/// The configuration table of the README: one row per setting, in declaration order
/// (flag, environment variable, default, meaning).
pub fn settings_table() -> String {
    let defaults = Config::default();
    let cmd = Args::command();
    let mut out = String::from("| flag | environment | default | meaning |\n|---|---|---|---|\n");
    for s in SETTINGS {
        let Some(arg) = cmd.get_arguments().find(|a| a.get_id() == s.name) else {
            continue;
        };
        let default = match (s.default)(&defaults) {
            Shown::Value(v) => format!("`{v}`"),
            Shown::Text(t) => t.to_owned(),
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            s.flag(),
            env_of(arg),
            default,
            meaning(arg).replace('|', "\\|"),
        ));
    }
    out
}

fn env_of(arg: &Arg) -> String {
    arg.get_env()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn meaning(arg: &Arg) -> String {
    arg.get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string().replace('\n', " "))
        .unwrap_or_default()
}
