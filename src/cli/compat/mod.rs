//! The Fail2Ban commands people and scripts already type, answered by logjail when its binary
//! is called through a link named `fail2ban-client` or `fail2ban-regex` (the image installs
//! both).

pub mod client;
pub mod regex;

use std::path::Path;
use std::process::ExitCode;

/// Runs the Fail2Ban command the program was called as, if it was called as one.
pub fn dispatch() -> Option<ExitCode> {
    let mut args = std::env::args_os();
    let program = args.next()?;
    let name = Path::new(&program).file_name()?.to_str()?.to_string();
    let rest: Vec<String> = args.map(|arg| arg.to_string_lossy().into_owned()).collect();
    match name.as_str() {
        "fail2ban-client" => Some(client::main(&rest)),
        "fail2ban-regex" => Some(regex::main(&rest)),
        _ => None,
    }
}
