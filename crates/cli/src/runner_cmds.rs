//! The commands that operate the runner: run, plan, resume, user, task, account, target, recon,
//! notifications, test.
use crate::args::{Command, Global};
use crate::exit;

pub fn exec(_global: &Global, command: Command) -> u8 {
    eprintln!("error: `{command:?}` is not available yet");
    exit::USAGE
}
