//! One module per subcommand, plus the mapping from errors to exit codes.

pub mod awq;
pub mod bench;
pub mod convert;
pub mod forward;
pub mod imatrix;
pub mod inspect;
mod mix_args;
mod mmproj;
mod progress;
pub mod quantize;
pub mod recommend;
pub mod release;
pub mod synth;
mod threads;
pub mod verify;

/// Exit code for a failed command: 1 for a failed verification gate, 2 for bad input (files,
/// flags, configs), 3 for anything else: a broken internal invariant (a buffer g4q sized itself
/// that does not fit) is g4q's bug, not the user's input, so it never reads as exit 2.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<::verify::gates::GateFailed>().is_some() {
        return 1;
    }
    if err.chain().any(is_internal) {
        return 3;
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

/// Whether `cause` is a failed internal invariant rather than bad input: an output buffer of
/// the wrong size or a size overflow inside a kernel (every size from a file is checked before
/// a kernel sees it), or an [`Internal`] error.
fn is_internal(cause: &(dyn std::error::Error + 'static)) -> bool {
    cause.downcast_ref::<Internal>().is_some()
        || matches!(
            cause.downcast_ref::<kernels::KernelError>(),
            Some(kernels::KernelError::OutputLength { .. } | kernels::KernelError::Overflow { .. })
        )
}

/// A broken internal invariant (exit code 3): a bug in g4q, whatever the input.
#[derive(Debug)]
pub struct Internal(pub String);

impl std::fmt::Display for Internal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "internal error (a bug in g4q): {}", self.0)
    }
}

impl std::error::Error for Internal {}

/// An internal-invariant error with `msg`.
pub fn internal(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Internal(msg.into()))
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

/// `arg` as one shell word: as is when it is plain, else single-quoted (the command lines that
/// reports and model cards record).
pub fn shell_quote(arg: &str) -> String {
    if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || "'\"$\\".contains(c)) {
        format!("'{}'", arg.replace('\'', r"'\''"))
    } else {
        arg.to_string()
    }
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
    fn internal_invariants_exit_3_and_bad_input_2() {
        let ty = kernels::GgmlType::Q8_0;
        let buffer = kernels::KernelError::OutputLength {
            ty,
            expected: 34,
            got: 33,
            unit: "bytes",
        };
        let cases = [
            (anyhow::Error::new(buffer).context("tensor 't'"), 3),
            (internal("logits are not contiguous").context("forward"), 3),
            (
                anyhow::Error::new(kernels::KernelError::NotFinite {
                    ty,
                    row: 0,
                    col: 1,
                    value: f32::NAN,
                }),
                2,
            ),
            (usage("--type is required"), 2),
            (anyhow::anyhow!("unclassified"), 3),
        ];
        for (err, code) in &cases {
            assert_eq!(exit_code(err), *code, "{err:#}");
        }
        println!("{} errors classified", cases.len());
    }

    #[test]
    fn one_line_names_each_cause_once() {
        let err = anyhow::Error::new(Wrapper(Usage("bad path".into()))).context("writing out.gguf");
        assert_eq!(one_line(&err), "writing out.gguf: tensor 't': bad path");
        let plain = anyhow::Error::new(Usage("inner".into())).context("outer");
        assert_eq!(one_line(&plain), "outer: inner");
    }
}
