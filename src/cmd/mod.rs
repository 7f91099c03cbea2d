//! One module per subcommand, plus the mapping from errors to exit codes.

pub mod awq;
pub mod bench;
pub mod convert;
pub mod forward;
pub mod imatrix;
pub mod inspect;
mod mix_args;
mod progress;
pub mod quantize;
pub mod synth;
pub mod verify;

/// Exit code for a failed command: 1 for a failed verification gate, 2 for bad input (files,
/// flags, configs), 3 for anything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<::verify::gates::GateFailed>().is_some() {
        return 1;
    }
    for cause in err.chain() {
        if cause.downcast_ref::<::convert::ConvertError>().is_some()
            || cause.downcast_ref::<std::io::Error>().is_some()
            || cause.downcast_ref::<::verify::VerifyError>().is_some()
            || cause.downcast_ref::<::quantize::QuantizeError>().is_some()
            || cause.downcast_ref::<Usage>().is_some()
            || cause.downcast_ref::<kernels::KernelError>().is_some()
        {
            return 2;
        }
    }
    3
}

/// A bad flag or flag combination: exit code 2, like clap's own usage errors.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A usage error with `msg`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(msg.into()))
}

/// The error and its causes on one line, outermost first. A cause whose text the line already
/// ends with is left out: wrappers such as "tensor 'x': {source}" print their source
/// themselves, and it would otherwise appear twice.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(Usage);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "tensor 't': {}", self.0)
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn one_line_names_each_cause_once() {
        let err = anyhow::Error::new(Wrapper(Usage("bad path".into()))).context("writing out.gguf");
        assert_eq!(one_line(&err), "writing out.gguf: tensor 't': bad path");
        let plain = anyhow::Error::new(Usage("inner".into())).context("outer");
        assert_eq!(one_line(&plain), "outer: inner");
    }
}
