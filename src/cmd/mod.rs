//! One module per subcommand, plus the mapping from errors to exit codes.

pub mod forward;
pub mod inspect;
pub mod synth;

/// Exit code for a failed command: 2 for bad input (files, flags, configs), 3 for anything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.downcast_ref::<convert::ConvertError>().is_some()
            || cause.downcast_ref::<std::io::Error>().is_some()
            || cause.downcast_ref::<verify::VerifyError>().is_some()
        {
            return 2;
        }
    }
    3
}

/// The error and its causes on one line, outermost first.
pub fn one_line(err: &anyhow::Error) -> String {
    err.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ")
}
