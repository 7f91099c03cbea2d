//! The authorship keys gguf-py's `Metadata` writes after the sampling defaults (`general.name`
//! through `general.languages`), derived as llama.cpp derives them so that a release of a real
//! Hugging Face download carries the same keys as llama.cpp's: first the model card's front matter
//! (`README.md`), then `config.json`'s `_name_or_path`, then the folder name (split into basename,
//! finetune, version and size label by the same heuristic), and the size label counted from the
//! tensors last.
//!
//! Values are kept as YAML until written because gguf-py's writer skips falsy values (`""`, `0`,
//! `false`, empty lists) and fails on other non-strings; we skip the same ones and turn the rest
//! into a one-line error naming the card, never a differently typed key.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::yaml::Hash;
use yaml_rust2::{ScanError, Yaml, YamlLoader};

use super::super::gguf::{Array, Metadata, Value};
use crate::error::{cut, ConvertError, Result};

/// What gguf-py's `Metadata.get_model_id_components` reads from a model id such as
/// `google/gemma-4-31b-it` or a folder name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ModelIdParts {
    pub full_name: String,
    pub organization: Option<String>,
    pub basename: Option<String>,
    pub finetune: Option<String>,
    pub version: Option<String>,
    pub size_label: Option<String>,
}

// The annotations gguf-py puts on each '-'-separated part of a model id.
const VERSION: u8 = 1;
const TYPE: u8 = 2;
const SIZE: u8 = 4;
const FINETUNE: u8 = 8;
const BASENAME: u8 = 16;

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("constant pattern")
}
static VERSION_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^(?:v|iter)?\d+(?:[.]\d+)*$"));
static TYPE_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^(?:i?q\d(?:_\w)*|b?fp?(?:16|32))$"));
static SIZE_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)^(?:(?:[A]|\d+[x])?\d+(?:[._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl)$")
});
static FINETUNE_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^(?:chat|instruct|vision|lora)$"));
static HF_URL_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^https?://huggingface.co/([^/]+/[^/]+)$"));

/// Python's `str.isdecimal` for the characters a model id holds.
fn is_decimal(c: char) -> bool {
    c.is_numeric()
}

/// gguf-py's `Metadata.get_model_id_components(model_id, total_params)`; `total_params` (the
/// parameters written) turns a size part far from the real size (`31b` on a 1M-parameter
/// checkpoint) into a finetune part.
pub(crate) fn model_id_components(model_id: &str, total_params: u64) -> ModelIdParts {
    if model_id.contains(' ') {
        return ModelIdParts {
            full_name: model_id.to_string(),
            ..ModelIdParts::default()
        };
    }
    let (org, full) = match model_id.split_once('/') {
        Some((org, full)) => (Some(org), full),
        None => (None, model_id),
    };
    let organization = org.filter(|o| !o.starts_with('.')).map(str::to_string);

    let mut parts: Vec<String> = full
        .split('-')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    let mut types = vec![0u8; parts.len()];
    for (i, part) in parts.iter_mut().enumerate() {
        if VERSION_RE.is_match(part) {
            types[i] |= VERSION;
        } else if TYPE_RE.is_match(part) {
            types[i] |= TYPE;
            *part = part.to_uppercase();
        } else if i > 0 && SIZE_RE.is_match(part) {
            let mut p: Vec<char> = part.replace('_', ".").chars().collect();
            let n = p.len();
            // bloom-7b1 notation: `7b1` means `7.1b`.
            if n >= 2 && is_decimal(p[n - 1]) {
                let (a, b) = (p[n - 2], p[n - 1]);
                p.truncate(n - 2);
                p.extend(['.', b, a]);
            }
            let n = p.len();
            if n > 1 && is_decimal(p[n - 2]) && "kmbt".contains(p[n - 1]) {
                p[n - 1] = p[n - 1].to_ascii_uppercase();
            }
            if total_params != 0 && n >= 1 {
                let head: String = p[..n - 1].iter().collect();
                if let Ok(x) = head.parse::<f64>() {
                    let exp = " KMBT".find(p[n - 1]).map_or(-1, |e| e as i32);
                    let label_params = x * 1000f64.powi(exp);
                    let total = total_params as f64;
                    if (label_params - total).abs() > (7 * total_params / 8) as f64 {
                        // Likely a context length.
                        types[i] |= FINETUNE;
                        p[n - 1] = p[n - 1].to_lowercase().next().unwrap_or(p[n - 1]);
                    }
                }
            }
            if types[i] == 0 {
                types[i] |= SIZE;
            }
            *part = p.into_iter().collect();
        } else if i > 0 && FINETUNE_RE.is_match(part) {
            types[i] |= FINETUNE;
        }
    }

    // Word sizes (`small`, `xl`) give way to a numeric one.
    let numeric_size = parts
        .iter()
        .zip(&types)
        .any(|(p, t)| t & SIZE != 0 && p.chars().any(is_decimal));
    if numeric_size {
        for (p, t) in parts.iter().zip(types.iter_mut()) {
            if *t & SIZE != 0 && p.chars().all(char::is_alphabetic) {
                *t &= !SIZE;
            }
        }
    }

    let mut at_start = true;
    for (p, t) in parts.iter().zip(types.iter_mut()) {
        let alpha_start = p.chars().next().is_some_and(char::is_alphabetic);
        if at_start && ((*t == 0 && alpha_start) || *t & VERSION != 0) {
            *t |= BASENAME;
        } else {
            at_start = false;
            if *t == 0 {
                *t |= FINETUNE;
            }
        }
    }
    // A trailing version is a version, not part of the basename.
    for t in types.iter_mut().rev() {
        if *t & BASENAME != 0 && t.count_ones() > 1 {
            *t &= !BASENAME;
        } else {
            break;
        }
    }

    let join = |keep: &dyn Fn(u8) -> bool| {
        let mut picked: Vec<&str> = Vec::new();
        for (p, t) in parts.iter().zip(&types) {
            if keep(*t) {
                picked.push(p);
            }
        }
        Some(picked.join("-")).filter(|s| !s.is_empty())
    };
    let mut basename = join(&|t| t & BASENAME != 0);
    let mut sizes: Vec<&str> = Vec::new();
    for (p, t) in parts.iter().zip(&types) {
        if t & SIZE != 0 && !sizes.contains(&p.as_str()) {
            sizes.push(p);
        }
    }
    let size_label = Some(sizes.join("-")).filter(|s| !s.is_empty());
    let finetune = join(&|t| t & FINETUNE != 0);
    let version = join(&|t| t & VERSION != 0 && t & BASENAME == 0);
    if size_label.is_none() && finetune.is_none() && version.is_none() {
        // Too ambiguous.
        basename = None;
    }
    ModelIdParts {
        full_name: full.to_string(),
        organization,
        basename,
        finetune,
        version,
        size_label,
    }
}

/// gguf-py's `Metadata.id_to_title`: words split on '-' and spaces; lowercase words that are not
/// versions or numbers get title case.
pub fn id_to_title(id: &str) -> String {
    id.trim()
        .replace('-', " ")
        .split_whitespace()
        .map(|w| {
            let is_lower = w.chars().any(char::is_alphabetic) && !w.chars().any(char::is_uppercase);
            let starts_digit = w.chars().next().is_some_and(|c| c.is_ascii_digit());
            let is_version = w.len() > 1
                && w.starts_with('v')
                && w[1..]
                    .split('.')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            if is_lower && !starts_digit && !is_version {
                title_case(w)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Python's `str.title()`: upper-case a letter that follows a non-letter, lower-case the rest.
fn title_case(w: &str) -> String {
    let mut out = String::with_capacity(w.len());
    let mut prev_alpha = false;
    for ch in w.chars() {
        if ch.is_alphabetic() {
            if prev_alpha {
                out.extend(ch.to_lowercase());
            } else {
                out.extend(ch.to_uppercase());
            }
            prev_alpha = true;
        } else {
            out.push(ch);
            prev_alpha = false;
        }
    }
    out
}

/// The model card's front matter as gguf-py's `Metadata.load_model_card` reads it: `README.md`
/// whose first line is `---`, up to the next `---` line. A card without front matter, or whose
/// front matter is not a mapping, counts as none (llama.cpp logs and goes on); front matter that
/// is not valid YAML, or a card that is not UTF-8, is an error (llama.cpp stops there too).
fn read_model_card(dir: &Path) -> Result<(PathBuf, Hash)> {
    let path = dir.join("README.md");
    if !path.is_file() {
        return Ok((path, Hash::new()));
    }
    let bytes = std::fs::read(&path).map_err(|e| ConvertError::io(&path, e))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ConvertError::format(&path, "the model card is not UTF-8"))?;
    let mut lines = text.lines();
    if lines.next() != Some("---") {
        return Ok((path, Hash::new()));
    }
    let mut yaml = String::new();
    for line in lines.take_while(|l| *l != "---") {
        yaml.push_str(line);
        yaml.push('\n');
    }
    if yaml.is_empty() {
        yaml.push('\n');
    }
    // gguf-py's two fixes before parsing: the Norway problem, and tabs as indentation.
    let yaml = yaml.replace("- no\n", "- \"no\"\n").replace('\t', "  ");
    let invalid = |e: ScanError| {
        ConvertError::format(
            &path,
            format!("the model card's front matter is not valid YAML: {e}"),
        )
    };
    // The loader copies an alias's node at every use: a few lines of nested aliases would grow
    // into billions of nodes. Model cards do not use them, so they are refused before loading.
    let mut events = Parser::new_from_str(&yaml);
    loop {
        match events.next_token().map_err(invalid)?.0 {
            Event::StreamEnd => break,
            Event::Alias(_) => {
                return Err(ConvertError::format(
                    &path,
                    "the model card's front matter uses YAML aliases (*name), which g4q does not expand",
                ))
            }
            _ => {}
        }
    }
    let docs = YamlLoader::load_from_str(&yaml).map_err(invalid)?;
    let card = match docs.into_iter().next() {
        Some(Yaml::Hash(h)) => h,
        _ => Hash::new(),
    };
    Ok((path, card))
}

/// A checkpoint's model card front matter, read once by the same rules as the GGUF metadata,
/// for the other readers of the card (the model card `g4q release` writes).
pub struct ModelCard(Hash);

impl ModelCard {
    /// `dir/README.md`'s front matter (empty without a card); an error as for the metadata.
    pub fn read(dir: &Path) -> Result<Self> {
        Ok(ModelCard(read_model_card(dir)?.1))
    }

    /// `card_key`'s value as text: a scalar, or the first scalar item of a list.
    pub fn text(&self, card_key: &str) -> Option<String> {
        fn scalar(v: &Yaml) -> Option<String> {
            match v {
                Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
                Yaml::Integer(i) => Some(i.to_string()),
                Yaml::Boolean(b) => Some(b.to_string()),
                _ => None,
            }
        }
        match self.0.get(&key(card_key))? {
            Yaml::Array(items) => items.iter().find_map(scalar),
            v => scalar(v),
        }
    }
}

fn key(k: &str) -> Yaml {
    Yaml::String(k.to_string())
}

/// One base model or data set entry: `name`, `organization`, `repo_url`... as gguf-py builds it
/// from an id or URL, or the card's own mapping.
type Entry = Hash;

/// The authorship fields of gguf-py's `Metadata` that g4q can fill (it has no
/// `--metadata` override, so `url`, `doi`, `uuid`, `repo_url` and `quantized_by` stay unset).
#[derive(Default)]
struct Authorship {
    name: Option<Yaml>,
    author: Option<Yaml>,
    version: Option<Yaml>,
    organization: Option<Yaml>,
    finetune: Option<Yaml>,
    basename: Option<Yaml>,
    description: Option<Yaml>,
    size_label: Option<Yaml>,
    license: Option<Yaml>,
    license_name: Option<Yaml>,
    license_link: Option<Yaml>,
    source_url: Option<Yaml>,
    source_doi: Option<Yaml>,
    source_uuid: Option<Yaml>,
    source_repo_url: Option<Yaml>,
    base_models: Option<Vec<Entry>>,
    datasets: Option<Vec<Entry>>,
    tags: Option<Vec<Yaml>>,
    languages: Option<Vec<Yaml>>,
}

/// Fills `field` from the card's `card_key` unless already set (a `null` sets nothing).
fn from_card(field: &mut Option<Yaml>, card: &Hash, card_key: &str) {
    if field.is_none() {
        *field = card.get(&key(card_key)).filter(|v| !v.is_null()).cloned();
    }
}

/// Appends the card's `card_key` (a string or a list) to `field`.
fn append_from_card(field: &mut Option<Vec<Yaml>>, card: &Hash, card_key: &str) {
    let Some(v) = card.get(&key(card_key)).filter(|v| !v.is_null()) else {
        return;
    };
    let list = field.get_or_insert_with(Vec::new);
    match v {
        Yaml::String(_) => list.push(v.clone()),
        Yaml::Array(a) => list.extend(a.iter().cloned()),
        _ => {}
    }
}

/// The base models or data sets named by the first of `card_keys` present, each id or URL
/// expanded as gguf-py does (a Hugging Face id gives name, organization, version and repo URL).
fn entries_from_card(card: &Hash, card_keys: [&str; 3], total_params: u64) -> Option<Vec<Entry>> {
    let value = card_keys.iter().find_map(|k| card.get(&key(k)))?;
    let items: Vec<Yaml> = match value {
        Yaml::String(_) => vec![value.clone()],
        Yaml::Array(a) => a.clone(),
        _ => Vec::new(),
    };
    let entries = items
        .into_iter()
        .map(|item| match item {
            Yaml::String(id) => entry_from_id(&id, total_params),
            Yaml::Hash(h) => h,
            _ => Entry::new(),
        })
        .collect();
    Some(entries)
}

fn entry_from_id(id: &str, total_params: u64) -> Entry {
    let mut e = Entry::new();
    let mut put = |k: &str, v: String| {
        e.insert(key(k), Yaml::String(v));
    };
    let is_url = ["http://", "https://", "ssh://"]
        .iter()
        .any(|p| id.starts_with(p));
    if is_url {
        put("repo_url", id.to_string());
        if id.contains("huggingface.co") {
            if let Some(m) = HF_URL_RE.captures(id).and_then(|c| c.get(1)) {
                let parts = model_id_components(m.as_str(), total_params);
                put("name", id_to_title(&parts.full_name));
                if let Some(org) = &parts.organization {
                    put("organization", id_to_title(org));
                }
                if let Some(v) = parts.version {
                    put("version", v);
                }
            }
        }
    } else {
        let parts = model_id_components(id, total_params);
        put("name", id_to_title(&parts.full_name));
        if let Some(org) = &parts.organization {
            put("organization", id_to_title(org));
        }
        if let Some(v) = parts.version {
            put("version", v);
        }
        if let Some(org) = &parts.organization {
            put(
                "repo_url",
                format!("https://huggingface.co/{org}/{}", parts.full_name),
            );
        }
    }
    e
}

impl Authorship {
    fn from_card(card: &Hash, total_params: u64) -> Self {
        let mut a = Authorship::default();
        // llama.cpp's own keys, then the same with `model_`, then TheBloke's.
        for prefix in ["", "model_"] {
            let k = |s: &str| format!("{prefix}{s}");
            from_card(&mut a.name, card, &k("name"));
            from_card(&mut a.author, card, &k("author"));
            from_card(&mut a.version, card, &k("version"));
            from_card(&mut a.organization, card, &k("organization"));
            from_card(&mut a.description, card, &k("description"));
            from_card(&mut a.finetune, card, &k("finetune"));
            from_card(&mut a.basename, card, &k("basename"));
            from_card(&mut a.size_label, card, &k("size_label"));
            from_card(&mut a.source_url, card, &k("url"));
            from_card(&mut a.source_doi, card, &k("doi"));
            from_card(&mut a.source_uuid, card, &k("uuid"));
            from_card(&mut a.source_repo_url, card, &k("repo_url"));
        }
        from_card(&mut a.author, card, "model_creator");
        from_card(&mut a.basename, card, "model_type");
        a.base_models = entries_from_card(
            card,
            ["base_model", "base_models", "base_model_sources"],
            total_params,
        );
        a.datasets = entries_from_card(
            card,
            ["datasets", "dataset", "dataset_sources"],
            total_params,
        );
        from_card(&mut a.license, card, "license");
        from_card(&mut a.license_name, card, "license_name");
        from_card(&mut a.license_link, card, "license_link");
        append_from_card(&mut a.tags, card, "tags");
        append_from_card(&mut a.tags, card, "pipeline_tag");
        append_from_card(&mut a.languages, card, "languages");
        append_from_card(&mut a.languages, card, "language");
        a
    }

    /// Fills what is still unset from a model id (`_name_or_path`, the folder name).
    fn fill_from_id(&mut self, id: &str, total_params: u64) {
        let p = model_id_components(id, total_params);
        let s = |v: String| Some(Yaml::String(v));
        self.name = self.name.take().or_else(|| s(id_to_title(&p.full_name)));
        if self.organization.is_none() {
            self.organization = p.organization.as_deref().map(id_to_title).and_then(s);
        }
        self.basename = self.basename.take().or_else(|| p.basename.and_then(s));
        self.finetune = self.finetune.take().or_else(|| p.finetune.and_then(s));
        self.version = self.version.take().or_else(|| p.version.and_then(s));
        self.size_label = self.size_label.take().or_else(|| p.size_label.and_then(s));
    }
}

/// gguf-py's writer skips falsy values: `None`, `""`, `0`, `false`, empty lists and mappings.
fn is_falsy(v: &Yaml) -> bool {
    match v {
        Yaml::Null | Yaml::BadValue => true,
        Yaml::String(s) => s.is_empty(),
        Yaml::Boolean(b) => !b,
        Yaml::Integer(i) => *i == 0,
        Yaml::Real(r) => r.parse::<f64>().is_ok_and(|x| x == 0.0),
        Yaml::Array(a) => a.is_empty(),
        Yaml::Hash(h) => h.is_empty(),
        Yaml::Alias(_) => false,
    }
}

fn describe(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => format!("{s:?}"),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Real(r) => r.clone(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Array(_) => "a list".into(),
        Yaml::Hash(_) => "a mapping".into(),
        _ => "a value of another kind".into(),
    }
}

/// The GGUF writer for the authorship keys: skips what gguf-py skips, refuses what it cannot write.
struct Writer<'a> {
    md: &'a mut Metadata,
    card: &'a Path,
}

impl Writer<'_> {
    fn not_string(&self, gguf_key: &str, v: &Yaml) -> ConvertError {
        ConvertError::format(
            self.card,
            format!(
                "{gguf_key} must be a string in the model card's front matter, got {}",
                cut(&describe(v))
            ),
        )
    }

    fn string(&mut self, gguf_key: &str, v: Option<&Yaml>) -> Result<()> {
        match v {
            None => Ok(()),
            Some(v) if is_falsy(v) => Ok(()),
            Some(Yaml::String(s)) => {
                self.md.set(gguf_key, Value::String(s.clone()));
                Ok(())
            }
            Some(v) => Err(self.not_string(gguf_key, v)),
        }
    }

    fn strings(&mut self, gguf_key: &str, list: Option<&Vec<Yaml>>) -> Result<()> {
        let Some(list) = list.filter(|l| !l.is_empty()) else {
            return Ok(());
        };
        let strings = list
            .iter()
            .map(|v| match v {
                Yaml::String(s) => Ok(s.clone()),
                _ => Err(self.not_string(gguf_key, v)),
            })
            .collect::<Result<Vec<_>>>()?;
        self.md.set(gguf_key, Value::Array(Array::String(strings)));
        Ok(())
    }

    fn entries(&mut self, prefix: &str, entries: Option<&Vec<Entry>>) -> Result<()> {
        let Some(entries) = entries else {
            return Ok(());
        };
        let count = u32::try_from(entries.len())
            .map_err(|_| ConvertError::format(self.card, format!("too many {prefix} entries")))?;
        self.md.set(format!("{prefix}.count"), Value::U32(count));
        for (i, e) in entries.iter().enumerate() {
            for field in [
                "name",
                "author",
                "version",
                "organization",
                "description",
                "url",
                "doi",
                "uuid",
                "repo_url",
            ] {
                self.string(&format!("{prefix}.{i}.{field}"), e.get(&key(field)))?;
            }
        }
        Ok(())
    }
}

/// Adds the authorship keys for the checkpoint in `dir` in gguf-py's `set_gguf_meta_model` order.
/// `folder_name` is the checkpoint folder's name; `computed_size_label` and `total_params` come
/// from the tensors written.
pub(crate) fn add_authorship(
    md: &mut Metadata,
    dir: &Path,
    folder_name: Option<&str>,
    total_params: u64,
    computed_size_label: String,
) -> Result<()> {
    let (card_path, card) = read_model_card(dir)?;
    let mut a = Authorship::from_card(&card, total_params);
    if let Some(id) = name_or_path(dir) {
        a.fill_from_id(&id, total_params);
    }
    if let Some(folder) = folder_name {
        a.fill_from_id(folder, total_params);
    }
    if a.size_label.is_none() && total_params > 0 {
        a.size_label = Some(Yaml::String(computed_size_label));
    }

    let mut w = Writer {
        md,
        card: &card_path,
    };
    w.string("general.name", a.name.as_ref())?;
    w.string("general.author", a.author.as_ref())?;
    w.string("general.version", a.version.as_ref())?;
    w.string("general.organization", a.organization.as_ref())?;
    w.string("general.finetune", a.finetune.as_ref())?;
    w.string("general.basename", a.basename.as_ref())?;
    w.string("general.description", a.description.as_ref())?;
    w.string("general.size_label", a.size_label.as_ref())?;
    let license = match a.license {
        Some(Yaml::Array(list)) => {
            let parts = list
                .iter()
                .map(|v| match v {
                    Yaml::String(s) => Ok(s.as_str()),
                    _ => Err(w.not_string("general.license", v)),
                })
                .collect::<Result<Vec<_>>>()?;
            Some(Yaml::String(parts.join(",")))
        }
        other => other,
    };
    w.string("general.license", license.as_ref())?;
    w.string("general.license.name", a.license_name.as_ref())?;
    w.string("general.license.link", a.license_link.as_ref())?;
    w.string("general.source.url", a.source_url.as_ref())?;
    w.string("general.source.doi", a.source_doi.as_ref())?;
    w.string("general.source.uuid", a.source_uuid.as_ref())?;
    w.string("general.source.repo_url", a.source_repo_url.as_ref())?;
    w.entries("general.base_model", a.base_models.as_ref())?;
    w.entries("general.dataset", a.datasets.as_ref())?;
    w.strings("general.tags", a.tags.as_ref())?;
    w.strings("general.languages", a.languages.as_ref())?;
    Ok(())
}

/// `config.json`'s `_name_or_path` when it reads as a model id (at most one '/'), as gguf-py
/// uses it; an unreadable config is left to the config loader to report.
fn name_or_path(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    let id = config.get("_name_or_path")?.as_str()?;
    (id.matches('/').count() <= 1).then(|| id.to_string())
}

#[cfg(test)]
mod tests {

    #[test]
    fn model_card_text_reads_scalars_and_first_list_items() {
        let dir = tempfile::tempdir().unwrap();
        let card = "---\nlicense: gemma\nbase_model:\n  - google/gemma-4-e2b\npipeline_tag: \"image-text-to-text\"\ntags:\n- a\nversion: 2\n---\n# x\nlicense: no\n";
        std::fs::write(dir.path().join("README.md"), card).unwrap();
        let c = ModelCard::read(dir.path()).unwrap();
        let cases = [
            ("license", Some("gemma")),
            ("base_model", Some("google/gemma-4-e2b")),
            ("pipeline_tag", Some("image-text-to-text")),
            ("tags", Some("a")),
            ("version", Some("2")),
            ("datasets", None),
        ];
        for (k, want) in cases {
            assert_eq!(c.text(k).as_deref(), want, "{k}");
        }
        std::fs::write(
            dir.path().join("README.md"),
            "# no front matter\nlicense: x\n",
        )
        .unwrap();
        assert_eq!(ModelCard::read(dir.path()).unwrap().text("license"), None);
        println!("checked {} model card fields", cases.len() + 1);
    }

    use super::*;

    fn parts(
        full: &str,
        org: Option<&str>,
        basename: Option<&str>,
        finetune: Option<&str>,
        version: Option<&str>,
        size: Option<&str>,
    ) -> ModelIdParts {
        let s = |v: Option<&str>| v.map(str::to_string);
        ModelIdParts {
            full_name: full.to_string(),
            organization: s(org),
            basename: s(basename),
            finetune: s(finetune),
            version: s(version),
            size_label: s(size),
        }
    }

    /// Expected values printed by gguf-py's `Metadata.get_model_id_components(id, total_params)`
    /// (llama.cpp's gguf-py/gguf/metadata.py, the copy vendored in the speed tree) for each id.
    #[test]
    fn model_id_components_like_gguf_py() {
        #[rustfmt::skip]
        let cases: &[(&str, u64, ModelIdParts)] = &[
            ("released-bf16", 1130000, parts("released-bf16", None, None, None, None, None)),
            ("causal-f32", 1130000, parts("causal-f32", None, None, None, None, None)),
            ("gemma-4-31b-it", 1130000, parts("gemma-4-31b-it", None, Some("gemma-4"), Some("31b-it"), None, None)),
            ("gemma-4-31b-it", 31000000000, parts("gemma-4-31b-it", None, Some("gemma-4"), Some("it"), None, Some("31B"))),
            ("gemma-4-E2B-it", 1130000, parts("gemma-4-E2B-it", None, None, None, None, None)),
            ("e2b-4", 1130000, parts("e2b-4", None, Some("e2b"), None, Some("4"), None)),
            ("Gemma-4-26B-A4B", 1130000, parts("Gemma-4-26B-A4B", None, Some("Gemma-4"), Some("26b"), None, Some("A4B"))),
            ("Gemma-4-26B-A4B", 25800000000, parts("Gemma-4-26B-A4B", None, Some("Gemma-4"), None, None, Some("26B-A4B"))),
            ("gemma-4-E4B", 0, parts("gemma-4-E4B", None, None, None, None, None)),
            ("google/gemma-4-31b-it", 0, parts("gemma-4-31b-it", Some("google"), Some("gemma-4"), Some("it"), None, Some("31B"))),
            ("list-model-v2", 1130000, parts("list-model-v2", None, Some("list-model"), None, Some("v2"), None)),
            ("bloom-7b1", 7100000000, parts("bloom-7b1", None, Some("bloom"), None, None, Some("7.1B"))),
            ("Mixtral-8x7B-Instruct-v0.1", 46700000000, parts("Mixtral-8x7B-Instruct-v0.1", None, Some("Mixtral"), Some("Instruct"), Some("v0.1"), Some("8x7B"))),
            ("Qwen2.5-Coder-1.5B-Instruct-GGUF", 0, parts("Qwen2.5-Coder-1.5B-Instruct-GGUF", None, Some("Qwen2.5-Coder"), Some("Instruct-GGUF"), None, Some("1.5B"))),
            ("model-small-7B", 7000000000, parts("model-small-7B", None, Some("model-small"), None, None, Some("7B"))),
            ("./some-model-v1.2", 0, parts("some-model-v1.2", None, Some("some-model"), None, Some("v1.2"), None)),
            ("Meta-Llama-3.1-8B-Instruct-Q4_K_M", 8000000000, parts("Meta-Llama-3.1-8B-Instruct-Q4_K_M", None, Some("Meta-Llama-3.1"), Some("Instruct"), None, Some("8B"))),
            ("a model name", 0, parts("a model name", None, None, None, None, None)),
            ("gemma-4-E2B-it-plain", 1130000, parts("gemma-4-E2B-it-plain", None, None, None, None, None)),
            ("x--7b", 0, parts("x--7b", None, Some("x"), None, None, Some("7B"))),
            ("gemma-4-31B-it-bf16", 1130000, parts("gemma-4-31B-it-bf16", None, Some("gemma-4"), Some("31b-it"), None, None)),
            ("iter3-llama-iq2_xs", 0, parts("iter3-llama-iq2_xs", None, None, None, None, None)),
            ("phi-3-mini-4k-instruct", 3800000000, parts("phi-3-mini-4k-instruct", None, Some("phi-3"), Some("4k-instruct"), None, Some("mini"))),
        ];
        for (id, total, want) in cases {
            assert_eq!(
                &model_id_components(id, *total),
                want,
                "{id} ({total} params)"
            );
        }
        println!("{} model ids checked", cases.len());
    }

    #[test]
    fn titles_like_gguf_py() {
        assert_eq!(id_to_title("released-bf16"), "Released Bf16");
        assert_eq!(id_to_title("causal-f32"), "Causal F32");
        assert_eq!(id_to_title("gemma-4-E2B-it"), "Gemma 4 E2B It");
    }
}
