//! Hostile and careless output paths, end to end: a link planted where a temporary file could
//! go, `--out` naming a link, FIFO or folder, outputs that are or are inside an input, a full
//! file size limit, interrupting signals and the leftovers of a killed run. Each must leave every
//! existing file as it was and no temporary entry behind; refusals exit 2 with one error line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Prefix of g4q's temporary names (`convert::output::TEMP_PREFIX`).
const TEMP_PREFIX: &str = convert::output::TEMP_PREFIX;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/e2b-tiny")
}

fn g4q(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_g4q"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs g4q under `sh` after `prelude` (e.g. `ulimit -f 1`), `exec`ed so the pid stays g4q's.
fn g4q_sh(prelude: &str, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("{prelude}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_g4q"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A copy of the example checkpoint, so tests may point outputs into it.
fn model_copy(root: &Path) -> PathBuf {
    let dst = root.join("model");
    std::fs::create_dir(&dst).unwrap();
    for e in std::fs::read_dir(example()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
    dst
}

/// Every entry of `dir` (recursively) whose name starts with the temporary prefix.
fn temps(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            out.push(p.clone());
        }
        if e.file_type().unwrap().is_dir() {
            out.extend(temps(&p));
        }
    }
    out
}

/// Exit code 2 and one `g4q: error:` line holding every needle.
fn assert_refused(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.starts_with("g4q: error: "), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks '{n}': {stderr}");
    }
}

/// A pid that is certainly not running: a child that has exited.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Defect 2: the temporary file is created exclusively under a name nobody can predict. A link
/// planted at the name earlier versions used (`.NAME.tmp-PID`, PID known once the process is
/// started) must not be followed, and its target must stay as it was.
#[cfg(unix)]
#[test]
fn a_link_planted_at_a_temporary_name_is_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let out = tmp.path().join("out.gguf");
    // The shell waits for a line on stdin, then becomes g4q under the same pid.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("read go; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_g4q"))
        .args(["convert", s(&example()), "--type", "Q8_0", "--out", s(&out)])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let planted = [
        tmp.path().join(format!(".out.gguf.tmp-{pid}")),
        tmp.path().join(format!("{TEMP_PREFIX}{pid}")),
    ];
    for link in &planted {
        std::os::unix::fs::symlink(&victim, link).unwrap();
    }
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let res = child.wait_with_output().unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    for link in &planted {
        assert!(std::fs::symlink_metadata(link)
            .unwrap()
            .file_type()
            .is_symlink());
    }
    assert!(std::fs::symlink_metadata(&out)
        .unwrap()
        .file_type()
        .is_file());
    println!("checked {} planted links", planted.len());
}

/// Defect 3: `--out` naming something other than a regular file (a folder for folder outputs)
/// is refused before any work, and left as it was.
#[cfg(unix)]
#[test]
fn outputs_that_exist_as_something_else_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let link = tmp.path().join("link.gguf");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let fifo = tmp.path().join("fifo.gguf");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let folder = tmp.path().join("folder.gguf");
    std::fs::create_dir(&folder).unwrap();
    let ex = example();
    let data = tmp.path().join("calib.txt");
    std::fs::write(&data, "some calibration text for the refusal test").unwrap();
    let mut checked = 0;
    for target in [&link, &fifo, &folder] {
        let convert = ["convert", s(&ex), "--type", "Q8_0", "--out", s(target)];
        assert_refused(&g4q(&convert), &[s(target), "refusing to replace"]);
        let forward = ["forward", s(&ex), "--tokens", "2,3", "--out", s(target)];
        assert_refused(&g4q(&forward), &["refusing to replace"]);
        checked += 2;
    }
    // Folder outputs: an existing file or a link is not a folder.
    for target in [&victim, &link] {
        let synth = [
            "synth",
            "--variant",
            "e2b",
            "--layers",
            "1",
            "--out",
            s(target),
        ];
        assert_refused(&g4q(&synth), &["refusing to replace"]);
        let awq = [
            "convert",
            s(&ex),
            "--format",
            "awq",
            "--data",
            s(&data),
            "--out",
            s(target),
        ];
        assert_refused(&g4q(&awq), &["refusing to replace"]);
        checked += 2;
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::read_dir(&folder).unwrap().next().is_none());
    assert!(temps(tmp.path()).is_empty());
    println!("checked {checked} refused outputs");
}

/// Defect 10: an output that is, or is inside, an input is refused, whatever spelling the path
/// has; the input is left as it was.
#[test]
fn outputs_that_are_or_are_inside_an_input_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model_copy(tmp.path());
    let config = model.join("config.json");
    let config_bytes = std::fs::read(&config).unwrap();
    let data = tmp.path().join("calib.txt");
    std::fs::write(&data, "some calibration text for the overlap test").unwrap();
    let gguf = tmp.path().join("in.gguf");
    assert!(
        g4q(&["convert", s(&model), "--type", "Q8_0", "--out", s(&gguf)])
            .status
            .success()
    );
    let gguf_bytes = std::fs::read(&gguf).unwrap();
    let dotted = tmp.path().join(".").join("in.gguf");
    let inside = model.join("out.gguf");
    let m = s(&model);
    let cases: Vec<Vec<&str>> = vec![
        vec!["convert", m, "--type", "Q8_0", "--out", s(&inside)],
        vec!["convert", m, "--type", "Q8_0", "--out", s(&config)],
        vec![
            "convert",
            m,
            "--format",
            "awq",
            "--data",
            s(&data),
            "--out",
            m,
        ],
        vec![
            "convert",
            m,
            "--format",
            "awq",
            "--data",
            s(&data),
            "--out",
            s(&inside),
        ],
        vec!["forward", m, "--tokens", "2,3", "--out", s(&inside)],
        vec!["imatrix", m, "--data", s(&data), "--out", s(&inside)],
        vec!["imatrix", m, "--data", s(&data), "--out", s(&data)],
        vec![
            "quantize",
            s(&gguf),
            "--type",
            "Q4_K_M",
            "--out",
            s(&dotted),
        ],
        vec![
            "verify",
            "--reference",
            m,
            "--candidate",
            s(&gguf),
            "--json",
            s(&config),
        ],
        vec![
            "verify",
            "--reference",
            m,
            "--candidate",
            s(&gguf),
            "--json",
            s(&gguf),
        ],
    ];
    for args in &cases {
        assert_refused(&g4q(args), &["refusing to write an output"]);
    }
    assert_eq!(std::fs::read(&config).unwrap(), config_bytes);
    assert_eq!(std::fs::read(&gguf).unwrap(), gguf_bytes);
    assert!(!inside.exists());
    assert!(temps(tmp.path()).is_empty());
    println!("checked {} overlapping outputs", cases.len());
}

/// Defects 6 and 11: past `ulimit -f` the write fails with a clear error instead of SIGXFSZ
/// killing g4q; the target (file or folder) is not created and nothing temporary remains.
#[cfg(unix)]
#[test]
fn a_file_size_limit_is_a_clear_error_that_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let ex = example();
    let gguf = tmp.path().join("out.gguf");
    let json = tmp.path().join("report.json");
    let synth = tmp.path().join("synth");
    let reference_gguf = tmp.path().join("ref.gguf");
    assert!(g4q(&[
        "convert",
        s(&ex),
        "--type",
        "Q8_0",
        "--out",
        s(&reference_gguf)
    ])
    .status
    .success());
    let cases: Vec<(Vec<&str>, &Path)> = vec![
        (
            vec!["convert", s(&ex), "--type", "Q8_0", "--out", s(&gguf)],
            &gguf,
        ),
        (
            vec![
                "synth",
                "--variant",
                "e2b",
                "--layers",
                "1",
                "--out",
                s(&synth),
            ],
            &synth,
        ),
        (
            vec![
                "verify",
                "--reference",
                s(&ex),
                "--candidate",
                s(&reference_gguf),
                "--ctx",
                "8",
                "--chunks",
                "1",
                "--json",
                s(&json),
            ],
            &json,
        ),
    ];
    // `ulimit -f 0`: no regular file may grow at all; pipes (stdout, stderr) are not limited.
    for (args, target) in &cases {
        let out = g4q_sh("ulimit -f 0", args);
        assert_refused(&out, &["file size limit"]);
        assert!(!target.exists(), "{} exists", target.display());
        let left = temps(tmp.path());
        assert!(left.is_empty(), "left behind: {left:?}");
    }
    println!("checked {} commands under ulimit -f 0", cases.len());
}

/// Starts `g4q synth` of a 1-layer E2B-wide checkpoint (about 1 GB: seconds of writing) into
/// `out` and returns once a temporary entry of it exists beside `out` (at most 60 s).
fn synth_writing(out: &Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_g4q"))
        .args(["synth", "--variant", "e2b", "--layers", "1", "--out"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dir = out.parent().unwrap();
    let start = Instant::now();
    while temps(dir).is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "g4q ended before writing"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no temporary entry appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Defect 6: SIGTERM, SIGINT and SIGHUP during a write remove the temporary entries, and g4q
/// exits with 128 + the signal number; the target is not created.
#[cfg(unix)]
#[test]
fn interrupting_signals_leave_nothing_behind() {
    let mut checked = 0;
    for (name, number) in [("TERM", 15), ("INT", 2), ("HUP", 1)] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("synth");
        let mut child = synth_writing(&out);
        // The shell's own `kill`, so no procps binary is needed.
        let sent = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{name} {}", child.id()))
            .status()
            .unwrap();
        assert!(sent.success());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(128 + number), "SIG{name}: {status:?}");
        let left = temps(tmp.path());
        assert!(left.is_empty(), "SIG{name} left {left:?}");
        assert!(!out.exists(), "SIG{name} left the target");
        checked += 1;
    }
    println!("checked {checked} signals");
}

/// Defect 6: what a SIGKILL leaves (temporary files and folders of a process that is gone) is
/// removed by the next run writing into the same folder; entries of running processes and
/// other files are kept.
#[test]
fn stale_temporary_entries_of_dead_runs_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let dead = dead_pid();
    let stale_file = tmp.path().join(format!("{TEMP_PREFIX}{dead}-Ab3dEf9hIj"));
    let stale_dir = tmp.path().join(format!("{TEMP_PREFIX}{dead}-0123456789"));
    let live = tmp
        .path()
        .join(format!("{TEMP_PREFIX}{}-Ab3dEf9hIj", std::process::id()));
    let other = tmp.path().join("notes.txt");
    std::fs::write(&stale_file, b"partial").unwrap();
    std::fs::create_dir(&stale_dir).unwrap();
    std::fs::write(stale_dir.join("model.safetensors"), b"partial").unwrap();
    std::fs::write(&live, b"in use").unwrap();
    std::fs::write(&other, b"mine").unwrap();
    let out = tmp.path().join("out.gguf");
    let res = g4q(&["convert", s(&example()), "--type", "Q8_0", "--out", s(&out)]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(!stale_file.exists());
    assert!(!stale_dir.exists());
    assert!(live.exists());
    assert!(other.exists());
    assert!(out.is_file());
    println!("checked 4 entries after a run");
}

/// A SIGKILLed run followed by a second one: nothing of the first remains.
#[cfg(unix)]
#[test]
fn a_killed_run_is_cleaned_up_by_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("synth");
    let mut child = synth_writing(&out);
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = temps(tmp.path());
    assert!(!killed.is_empty(), "SIGKILL left nothing to clean up");
    let gguf = tmp.path().join("out.gguf");
    assert!(g4q(&[
        "convert",
        s(&example()),
        "--type",
        "Q8_0",
        "--out",
        s(&gguf)
    ])
    .status
    .success());
    let left = temps(tmp.path());
    assert!(left.is_empty(), "left behind: {left:?}");
    println!("checked {} leftovers of a killed run", killed.len());
}
