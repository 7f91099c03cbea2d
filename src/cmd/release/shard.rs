//! A release over several machines: `--plan` prints the job matrix, `--shard I/N` makes and
//! verifies one deterministic share of the files into its own folder (a *part*, finished by
//! `part.json`), and `--merge` checks that the parts belong together and assembles the release
//! with the same code, and so the same bytes, as an unsharded run.
//!
//! Each shard that has a GGUF file computes the importance matrix itself (the same bytes on every
//! machine; the merge checks that the copies agree): no job waits for another. The price is
//! one imatrix run per such shard, and one reference forward pass per shard in verification;
//! to pay for the imatrix once, compute it with `g4q imatrix` and give it as `--imatrix FILE`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use convert::output::{check_target, write_dir, write_file, Kind, OutputFile};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::super::{shell_quote, usage};
use super::finish;
use super::outputs::{self, Output};
use super::recipe::{Header, Recipe};
use super::state;
use super::{Args, PlanFormat};

/// The record that finishes a part.
pub const PART_JSON: &str = "part.json";

/// What a `--shard` run records about its part.
#[derive(Debug, Serialize, Deserialize)]
struct Part {
    header: Header,
    shard: usize,
    shards: usize,
    /// The outputs it holds, by name.
    outputs: Vec<String>,
}

/// Parses `I/N` (0 <= I < N).
pub fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("'{s}' is not I/N"))?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| format!("'{s}' is not I/N"))?,
        n.trim().parse().map_err(|_| format!("'{s}' is not I/N"))?,
    );
    if n == 0 || i >= n {
        return Err(format!("'{s}': need 0 <= I < N"));
    }
    Ok((i, n))
}

/// The job matrix of `--plan`: GitHub Actions `strategy.matrix` JSON, or a Kubernetes Indexed
/// Job manifest.
pub fn plan(recipe: &Recipe, args: &Args, shards: usize) -> anyhow::Result<String> {
    let all = outputs::list(recipe);
    let parts: Vec<Vec<Output>> = (0..shards)
        .map(|i| outputs::shard(&all, i, shards))
        .collect::<anyhow::Result<_>>()?;
    let out = args.out.display().to_string();
    match args.format {
        PlanFormat::Github => {
            let include: Vec<Value> = parts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    json!({
                        "shard": format!("{i}/{shards}"),
                        "index": i,
                        "files": p.iter().map(|o| o.file_name(&recipe.name)).collect::<Vec<_>>().join(" "),
                    })
                })
                .collect();
            Ok(json!({ "include": include }).to_string() + "\n")
        }
        PlanFormat::K8s => Ok(k8s_job(recipe, &args.image, &out, shards)),
    }
}

/// The folder shard `index` writes in the Kubernetes plan (a shell expression).
fn k8s_part(out: &str, index: &str) -> String {
    format!("{out}-parts/{index}")
}

fn k8s_job(recipe: &Recipe, image: &str, out: &str, shards: usize) -> String {
    let part = k8s_part(out, "$JOB_COMPLETION_INDEX");
    let mut argv: Vec<String> = recipe
        .release_argv(&part)
        .iter()
        .map(|a| shell_quote(a))
        .collect();
    // Left unquoted so the shell expands the index.
    if let Some(i) = argv.iter().position(|a| a == "--out") {
        argv[i + 1] = format!("\"{part}\"");
    }
    argv[0] = "exec g4q".into();
    let cmd = format!(
        "{} --shard \"$JOB_COMPLETION_INDEX/{shards}\"",
        argv.join(" ")
    );
    let merge: Vec<String> = (0..shards)
        .map(|i| shell_quote(&k8s_part(out, &i.to_string())))
        .collect();
    let job: String = format!("g4q-release-{}", recipe.name)
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    format!(
        "# g4q release of {name} split over {shards} workers: a Kubernetes Indexed Job.\n\
         # Worker I makes shard I/{shards} into {parts}-parts/I on the volume mounted at /work (the\n\
         # paths below are as given to --plan: give paths under /work). When all succeeded:\n\
         #   g4q release --merge {merge} --out {out}\n\
         apiVersion: batch/v1\n\
         kind: Job\n\
         metadata:\n  name: {job}\n\
         spec:\n  completionMode: Indexed\n  completions: {shards}\n  parallelism: {shards}\n  backoffLimitPerIndex: 2\n\
         \x20 template:\n    spec:\n      restartPolicy: Never\n      containers:\n\
         \x20       - name: g4q\n          image: {image}\n          command: [\"sh\", \"-c\"]\n          args:\n            - |-\n              {cmd}\n\
         \x20         volumeMounts:\n            - name: work\n              mountPath: /work\n\
         \x20     volumes:\n        - name: work\n          persistentVolumeClaim:\n            claimName: g4q-release\n",
        name = recipe.name,
        parts = out,
        merge = merge.join(" "),
        out = shell_quote(out),
    )
}

/// Finishes a shard's folder with its part record.
pub fn write_part(
    out: &Path,
    header: &Header,
    shard: usize,
    shards: usize,
    mine: &[Output],
) -> anyhow::Result<()> {
    let part = Part {
        header: header.clone(),
        shard,
        shards,
        outputs: mine
            .iter()
            .map(|o| o.file_name(&header.recipe.name))
            .collect(),
    };
    let path = out.join(PART_JSON);
    write_file(
        &path,
        (serde_json::to_string_pretty(&part)? + "\n").as_bytes(),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "g4q: release: part {shard}/{shards} complete in {} ({} files); assemble with --merge",
        out.display(),
        part.outputs.len()
    );
    Ok(())
}

fn read_part(dir: &Path) -> anyhow::Result<Part> {
    let path = dir.join(PART_JSON);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: not a finished release part", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| usage(format!("{}: not a g4q release part: {e}", path.display())))
}

/// The first path at which two JSON values differ, with both values (cut short).
fn difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let here = format!("{at}.{k}");
                match y.get(k) {
                    Some(vb) => {
                        if let Some(d) = difference(va, vb, &here) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("{here} is missing in one")),
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| format!("{at}.{k} is missing in one"))
        }
        _ if a == b => None,
        _ => {
            let cut = |v: &Value| v.to_string().chars().take(80).collect::<String>();
            Some(format!("{at}: {} vs {}", cut(a), cut(b)))
        }
    }
}

/// `--merge`: checks that `parts` are the `N` shards of one release (same tool version,
/// checkpoint and options; every shard once) and assembles them into `out`.
pub fn merge(parts: &[PathBuf], out: &Path, print_json: bool) -> anyhow::Result<()> {
    let mut read = Vec::new();
    for p in parts {
        read.push((p.clone(), read_part(p)?));
    }
    let (first_dir, first) = &read[0];
    let first_value = serde_json::to_value(&first.header)?;
    for (dir, part) in &read[1..] {
        if let Some(d) = difference(&first_value, &serde_json::to_value(&part.header)?, "") {
            return Err(usage(format!(
                "{} and {} are parts of different releases ({})",
                first_dir.display(),
                dir.display(),
                d.trim_start_matches('.')
            )));
        }
        if part.shards != first.shards {
            return Err(usage(format!(
                "{} is a part of {} shards, {} of {}",
                dir.display(),
                part.shards,
                first_dir.display(),
                first.shards
            )));
        }
    }
    for i in 0..first.shards {
        let holders: Vec<&PathBuf> = read
            .iter()
            .filter(|(_, p)| p.shard == i)
            .map(|(d, _)| d)
            .collect();
        match holders.len() {
            1 => {}
            0 => {
                return Err(usage(format!(
                    "shard {i}/{} is missing from the parts given",
                    first.shards
                )))
            }
            _ => {
                return Err(usage(format!(
                    "shard {i}/{} is given twice ({} and {})",
                    first.shards,
                    holders[0].display(),
                    holders[1].display()
                )))
            }
        }
    }
    let inputs: Vec<&Path> = parts.iter().map(|p| p.as_path()).collect();
    check_target(out, Kind::Folder, &inputs)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    state::prepare(out)?;
    let header = &first.header;
    let all = outputs::list(&header.recipe);
    for o in &all {
        let name = o.file_name(&header.recipe.name);
        let holders: Vec<&PathBuf> = read
            .iter()
            .filter(|(_, p)| p.outputs.contains(&name))
            .map(|(d, _)| d)
            .collect();
        let Some(src) = holders.first() else {
            return Err(usage(format!("no part holds {name}")));
        };
        let built = state::read_built(src, &name)
            .ok_or_else(|| usage(format!("{}: no record of {name}", src.display())))?;
        for other in &holders[1..] {
            let b = state::read_built(other, &name);
            if b.as_ref().map(|b| &b.sha256) != Some(&built.sha256) {
                return Err(usage(format!(
                    "{name} differs between {} and {}",
                    src.display(),
                    other.display()
                )));
            }
        }
        copy_output(src, out, o, &name)?;
    }
    finish::assemble(out, header, &all, print_json)
}

/// Copies output `name` with its record (and report) from part `src` into `out`, unless `out`
/// already has the same one.
fn copy_output(src: &Path, out: &Path, o: &Output, name: &str) -> anyhow::Result<()> {
    let built = state::read_built(src, name)
        .ok_or_else(|| usage(format!("{}: no record of {name}", src.display())))?;
    if state::current_built(src, name, &built.inputs).is_none() {
        return Err(usage(format!(
            "{}: {name} does not match its record",
            src.display()
        )));
    }
    let have = state::current_built(out, name, &built.inputs);
    if have.as_ref().map(|b| &b.sha256) != Some(&built.sha256) {
        state::forget(out, name)?;
        let (from, to) = (src.join(name), out.join(name));
        if o.is_folder() {
            if to.is_dir() {
                std::fs::remove_dir_all(&to)
                    .with_context(|| format!("removing the stale {}", to.display()))?;
            }
            write_dir(&to, |tmp| {
                for m in &built.members {
                    copy_file(&from.join(&m.name), &tmp.join(&m.name))?;
                }
                Ok(())
            })?;
        } else {
            copy_file(&from, &to)?;
        }
        state::write_built(out, &built)?;
    }
    if o.verified() {
        let report = state::report_path(src, name);
        let bytes =
            std::fs::read(&report).with_context(|| format!("reading {}", report.display()))?;
        let v = state::read_verified(src, name)
            .ok_or_else(|| usage(format!("{}: {name} was not verified", src.display())))?;
        state::forget_verified(out, name)?;
        let to = state::report_path(out, name);
        write_file(&to, &bytes).with_context(|| format!("writing {}", to.display()))?;
        state::write_verified(out, &v)?;
    }
    Ok(())
}

/// Copies one file through the atomic writer.
fn copy_file(from: &Path, to: &Path) -> convert::Result<()> {
    let io = |file: &Path, source| convert::ConvertError::Io {
        file: file.to_path_buf(),
        source,
    };
    let mut src = std::fs::File::open(from).map_err(|e| io(from, e))?;
    let mut dst = OutputFile::create(to)?;
    std::io::copy(&mut src, &mut dst).map_err(|e| io(to, e))?;
    dst.flush().map_err(|e| io(to, e))?;
    dst.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_specs_parse() {
        assert_eq!(parse_shard("0/3"), Ok((0, 3)));
        assert_eq!(parse_shard("2/3"), Ok((2, 3)));
        for bad in ["3/3", "0/0", "1", "a/2", "-1/2", "1/2/3"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
        println!("8 shard specs checked");
    }

    #[test]
    fn differences_name_the_first_key() {
        let a = json!({"version": "0.1.0", "recipe": {"types": ["Q8_0"], "ctx": 512}});
        let b = json!({"version": "0.1.0", "recipe": {"types": ["Q8_0"], "ctx": 256}});
        assert_eq!(
            difference(&a, &b, "").as_deref(),
            Some(".recipe.ctx: 512 vs 256")
        );
        assert_eq!(difference(&a, &a, ""), None);
        println!("2 differences checked");
    }
}
