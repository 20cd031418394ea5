//! The command line and a configuration file together: which flags the file may set
//! (every flag but `--config` and `--check-config`, as a key with `_` for `-`), each of
//! its values checked by the flag's own parser, and the merge — a flag given on the
//! command line wins over the file (clap's `ArgMatches::value_source` says which were
//! given), everything else the file says counts as if it had been typed. The original
//! arguments are kept ([`Source`]) so `SIGHUP` can read the file again the same way.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::parser::ValueSource;
use clap::{CommandFactory as _, FromArgMatches as _, Parser as _, ValueHint};

use super::{Cli, Command, ExplainArgs};
use crate::access::AccessSettings;
use crate::config::file::{self, FileListener, FileSettings, FlagKey, FlagSetting};
use crate::config::{Listener, Settings, needs_restart};
use crate::files::{FileErrors, LineError, WHOLE_FILE};
use crate::inspect::NewCa;

/// Flags that are about reading the configuration, not part of it.
const NOT_IN_FILE: [&str; 4] = ["help", "version", "config", "check-config"];

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Serve (or, with `check_config`, only check) with these settings.
    Serve {
        settings: Box<Settings>,
        check_config: bool,
        source: Source,
    },
    Explain(ExplainArgs),
    /// `new-ca`: make an inspection CA.
    NewCa(NewCa),
}

/// Why the settings could not be made.
#[derive(Debug)]
pub enum LoadError {
    /// A bad flag (clap prints it and exits with 2, or 0 for `--help`).
    Flags(clap::Error),
    /// Problems in the configuration file, each `file:line: reason`.
    File(FileErrors),
}

impl From<clap::Error> for LoadError {
    fn from(error: clap::Error) -> LoadError {
        LoadError::Flags(error)
    }
}

impl From<FileErrors> for LoadError {
    fn from(errors: FileErrors) -> LoadError {
        LoadError::File(errors)
    }
}

/// Where the settings came from, to read them again on `SIGHUP`.
#[derive(Debug, Clone)]
pub struct Source {
    args: Vec<OsString>,
    /// `--config`, if given.
    file: Option<PathBuf>,
}

impl Source {
    /// The configuration file (`--config`), if the settings came from one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The settings as they now stand: the same command line, the file read again.
    pub fn reload(&self) -> Result<Settings, LoadError> {
        match invocation(self.args.clone())? {
            Invocation::Serve { settings, .. } => Ok(*settings),
            Invocation::Explain(_) | Invocation::NewCa(_) => {
                Err(LoadError::File(FileErrors(vec![LineError {
                    file: "command line".into(),
                    line: WHOLE_FILE,
                    reason: "not a serving command line".into(),
                }])))
            }
        }
    }

    /// The access settings for a reload (`SIGHUP`); settings that only a restart can
    /// change, compared with `running`, are logged as such.
    pub fn reread_access(&self, running: &Settings) -> Result<AccessSettings, FileErrors> {
        match self.reload() {
            Ok(settings) => {
                for setting in needs_restart(running, &settings) {
                    tracing::warn!(
                        setting,
                        "changed in the configuration; takes effect after a restart"
                    );
                }
                Ok(settings.config.access)
            }
            Err(LoadError::File(errors)) => Err(errors),
            Err(LoadError::Flags(error)) => Err(FileErrors(vec![LineError {
                file: "command line".into(),
                line: WHOLE_FILE,
                reason: error.to_string(),
            }])),
        }
    }
}

/// Reads the command line (`args[0]` is the program) and the file it names.
pub fn invocation(args: Vec<OsString>) -> Result<Invocation, LoadError> {
    let matches = Cli::command().try_get_matches_from(&args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    match cli.command {
        Some(Command::Explain(explain)) => return Ok(Invocation::Explain(explain)),
        Some(Command::NewCa(new_ca)) => return Ok(Invocation::NewCa(new_ca.request())),
        None => {}
    }
    let check_config = cli.check_config;
    let settings = match &cli.config {
        None => cli.settings(),
        Some(path) => {
            let (file, problems) = file::read(path, &flag_keys())?;
            let name = path.display().to_string();
            with_file(&args, &matches, (&name, file), problems)?
        }
    };
    Ok(Invocation::Serve {
        settings: Box::new(settings),
        check_config,
        source: Source {
            args,
            file: cli.config,
        },
    })
}

/// The file's flag keys before the command line's own arguments (those the command
/// line gives are left out of the file's share), then the file's policy.
fn with_file(
    args: &[OsString],
    matches: &clap::ArgMatches,
    (name, file): (&str, FileSettings),
    mut errors: Vec<LineError>,
) -> Result<Settings, LoadError> {
    let mut merged: Vec<OsString> = args.iter().take(1).cloned().collect();
    for setting in &file.flags {
        if matches.value_source(&setting.key) == Some(ValueSource::CommandLine) {
            continue;
        }
        let flag = flag_args(setting);
        let alone = std::iter::once(OsString::from("proxy-server")).chain(flag.iter().cloned());
        match Cli::command().try_get_matches_from(alone) {
            Ok(_) => merged.extend(flag),
            Err(error) => errors.push(LineError {
                file: name.to_string(),
                line: setting.line,
                reason: format!("`{}`: {}", setting.key, clap_reason(&error)),
            }),
        }
    }
    merged.extend(args.iter().skip(1).cloned());
    // The file's bad values were left out of `merged`, so it parses even then.
    let parsed = Cli::try_parse_from(merged);
    let mut settings = match parsed {
        Ok(cli) => cli.settings(),
        Err(error) if errors.is_empty() => return Err(error.into()),
        Err(_) => Cli::parse_from(args.iter().take(1)).settings(),
    };
    join_listeners(
        &mut settings.config.listeners,
        file.listeners,
        name,
        &mut errors,
    );
    if !errors.is_empty() {
        // The file's own lines in order, then those of the files it names.
        errors.sort_by_key(|error| (error.file != name, error.line));
        return Err(FileErrors(errors).into());
    }
    let access = &mut settings.config.access;
    access.rules = Some(Arc::new(file.rules));
    access.limits = Arc::new(file.limits);
    access.inspection = file.inspection;
    join_egress(&mut settings, file.egress);
    Ok(settings)
}

/// The file's parents first (its routes name them by index), then the `--parent` list,
/// whose hops move along; the file's header lists join the flags' settings.
fn join_egress(settings: &mut Settings, file: file::FileEgress) {
    let egress = &mut settings.config.egress;
    let offset = file.parents.len();
    for hop in &mut egress.fallback {
        if let crate::upstream::Hop::Parent(index) = hop {
            *index += offset;
        }
    }
    let flags = std::mem::replace(&mut egress.parents, file.parents);
    egress.parents.extend(flags);
    egress.routes = file.routes;
    let headers = &mut settings.config.headers;
    headers.request_remove = file.request_remove;
    headers.request_add = file.request_add;
    headers.response_remove = file.response_remove;
    headers.response_add = file.response_add;
}

/// The file's `[[listen]]` listeners after the command line's (the main listener stays
/// first); one on an address a flag already takes is a problem at its line.
fn join_listeners(
    listeners: &mut Vec<Listener>,
    from_file: Vec<FileListener>,
    name: &str,
    errors: &mut Vec<LineError>,
) {
    for FileListener { listener, line } in from_file {
        let taken = listener.addr.port() != 0 && listeners.iter().any(|l| l.addr == listener.addr);
        if taken {
            errors.push(LineError {
                file: name.to_string(),
                line,
                reason: format!(
                    "{}: two listeners on one address (the main listener, host/port, or socks has it)",
                    listener.addr
                ),
            });
            continue;
        }
        listeners.push(listener);
    }
}

/// The flag keys a file may set, from the flags themselves.
fn flag_keys() -> Vec<FlagKey> {
    Cli::command()
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            (!NOT_IN_FILE.contains(&long)).then(|| FlagKey {
                key: long.replace('-', "_"),
                takes_value: arg.get_action().takes_values(),
                is_path: matches!(
                    arg.get_value_hint(),
                    ValueHint::FilePath | ValueHint::DirPath | ValueHint::AnyPath
                ),
            })
        })
        .collect()
}

/// A file setting as command-line arguments.
fn flag_args(setting: &FlagSetting) -> Vec<OsString> {
    let flag = OsString::from(format!("--{}", setting.key.replace('_', "-")));
    match (&setting.value, setting.switch) {
        (None, _) => Vec::new(),
        (Some(_), true) => vec![flag],
        (Some(value), false) => vec![flag, OsString::from(value)],
    }
}

/// clap's message without its `error:` prefix and usage lines.
fn clap_reason(error: &clap::Error) -> String {
    let text = error.kind().to_string();
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or(&text);
    first.trim_start_matches("error: ").to_string()
}
