//! Progress bars on a terminal only: CI logs and pipes stay quiet. Every command's bar comes
//! from here, so they all follow the same rule.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Whether to draw: stderr is a terminal and `CI` is not set.
fn visible() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// A bar labelled `what` with `template`, or a hidden bar that costs nothing.
fn styled(len: u64, what: &str, template: &str) -> ProgressBar {
    if !visible() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// A bar of `len` steps labelled `what`.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    styled(
        len,
        what,
        "{msg:>10} [{bar:40}] {pos}/{len} {elapsed_precise} eta {eta}",
    )
}

/// A bar counting bytes written (its length set as the total becomes known).
pub fn bytes_bar(what: &str) -> ProgressBar {
    styled(
        0,
        what,
        "{msg:>10} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
}
