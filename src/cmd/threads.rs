//! `--threads`: the size of the worker pool, bounded by the machine. A pool of 100 000 threads
//! does not fail, it hangs starting them, so a count no machine can use is a usage error.

use anyhow::Context;

/// The most worker threads any command starts: four per logical CPU (more only queue for the
/// same cores), and never more than this however large the machine.
const HARD_LIMIT: usize = 1024;

/// The largest `--threads` this machine accepts.
pub fn limit() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    cpus.saturating_mul(4).min(HARD_LIMIT)
}

/// clap value parser of `--threads`: an integer from 1 to [`limit`].
pub fn parse(text: &str) -> Result<usize, String> {
    let n: usize = text
        .parse()
        .map_err(|_| format!("'{text}' is not a whole number of threads"))?;
    let max = limit();
    if n == 0 {
        return Err("must be at least 1".into());
    }
    if n > max {
        return Err(format!(
            "{n} is more than this machine can use (at most {max}: 4 per logical CPU, 1024 in all)"
        ));
    }
    Ok(n)
}

/// The worker pool for `--threads` (all cores when not given).
pub fn pool(threads: Option<usize>) -> anyhow::Result<rayon::ThreadPool> {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = threads {
        builder = builder.num_threads(n);
    }
    builder.build().context("starting worker threads")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_outside_one_to_the_limit_are_refused() {
        let max = limit();
        assert!((4..=HARD_LIMIT).contains(&max), "{max}");
        assert_eq!(parse("1"), Ok(1));
        assert_eq!(parse(&max.to_string()), Ok(max));
        for bad in [
            "0",
            "-1",
            "x",
            "",
            &(max + 1).to_string(),
            "100000",
            "18446744073709551616",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
