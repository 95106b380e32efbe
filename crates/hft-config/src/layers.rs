//! Layering: embedded default <- overlay file <- `HFT_*` environment variables.
//!
//! Each file layer must deserialize on its own into the raw schema, so a typo or a wrong
//! type is reported with a span into that file rather than into a merged document nobody
//! wrote. Tables merge key by key (the upper layer wins); lists replace wholesale, because
//! merging the n-th strategy of two files by position would silently mix two intents.
//! Semantic errors found after merging are traced back to the layer, and line, that set the
//! offending value.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::{Spanned, Table, Value};

use crate::DEFAULT_TOML;
use crate::error::{ConfigError, Diagnostic, ErrorKind, Origin, Position};
use crate::model::Config;
use crate::path::{FieldPath, Seg};
use crate::raw::{self, RawConfig};
use crate::validate::validate;

/// How the embedded default is named in messages: where its source lives in the repo.
const DEFAULT_NAME: &str = "config/default.toml (embedded default)";
/// Environment variables with this prefix are configuration overrides.
const ENV_PREFIX: &str = "HFT_";
/// Separator of path segments in an environment variable name.
const ENV_SEPARATOR: &str = "__";
/// `HFT_*` variables that belong to the CLI talking to a node (where its admin API is,
/// its bearer token), not to a node's configuration.
const CLIENT_VARS: [&str; 3] = ["HFT_ENDPOINT", "HFT_TOKEN", "HFT_CLUSTER_SECRET"];

/// Loads default <- overlay (`(name, text)`) <- env and validates the result.
pub(crate) fn load(
    overlay: Option<(&str, &str)>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut files = vec![default_layer()?];
    if let Some((name, text)) = overlay {
        files.push(FileLayer::parse(name, text)?);
    }
    let mut merged = Value::Table(Table::new());
    for file in &files {
        merge(&mut merged, Value::Table(file.tree.clone()));
    }

    // Sorted by name so the result does not depend on the platform's environment order,
    // and a whole-table variable (`HFT_TELEMETRY`) comes before its keys' variables.
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !CLIENT_VARS.contains(&k.as_str()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut settings = Vec::with_capacity(vars.len());
    for (var, text) in vars {
        let setting = EnvSetting::parse(var, &text)?;
        setting.apply(&mut merged)?;
        settings.push(setting);
    }

    let raw: RawConfig = merged.try_into().map_err(|e| {
        // Unreachable in practice: every layer was checked against the schema on its own,
        // and merging type-correct layers keeps every value type-correct.
        let origin = files
            .last()
            .map_or_else(|| file_origin(DEFAULT_NAME, "", None), |f| f.origin(None));
        diagnostic(
            ErrorKind::WrongType,
            origin,
            &FieldPath::default(),
            e.message().to_owned(),
            "the merged layers do not fit the schema; check each layer with `hft config check`"
                .to_owned(),
        )
    })?;
    validate(&raw).map_err(|p| {
        let origin = locate(&files, &settings, &p.path);
        diagnostic(p.kind, origin, &p.path, p.message, p.hint)
    })
}

/// The embedded default, parsed and checked once per process (every load starts from it).
fn default_layer() -> Result<FileLayer<'static>, ConfigError> {
    static DEFAULT: std::sync::OnceLock<Option<FileLayer<'static>>> = std::sync::OnceLock::new();
    match DEFAULT.get_or_init(|| FileLayer::parse(DEFAULT_NAME, DEFAULT_TOML).ok()) {
        Some(layer) => Ok(layer.clone()),
        // Only a broken build embeds a bad default; parse again for the full error.
        None => FileLayer::parse(DEFAULT_NAME, DEFAULT_TOML),
    }
}

/// One TOML file: its text (for locating errors) and its parsed tree (for merging).
#[derive(Clone)]
struct FileLayer<'a> {
    name: &'a str,
    text: &'a str,
    tree: Table,
}

impl<'a> FileLayer<'a> {
    /// Parses a layer and checks it against the schema on its own.
    fn parse(name: &'a str, text: &'a str) -> Result<Self, ConfigError> {
        let syntax = |e: toml::de::Error| {
            diagnostic(
                ErrorKind::Syntax,
                file_origin(name, text, e.span()),
                &FieldPath::default(),
                format!("invalid TOML: {}", e.message()),
                "fix the syntax at this position: strings are quoted, tables are written [name] and \
                 lists of tables [[name]] (see https://toml.io)"
                    .to_owned(),
            )
        };
        DeTable::parse(text).map_err(syntax)?;
        if let Err(e) = check_schema(text) {
            return Err(shape_diagnostic(file_origin(name, text, e.span.clone()), e));
        }
        let tree = toml::from_str::<Table>(text).map_err(syntax)?;
        Ok(Self { name, text, tree })
    }

    fn origin(&self, span: Option<Range<usize>>) -> Origin {
        file_origin(self.name, self.text, span)
    }
}

fn file_origin(name: &str, text: &str, span: Option<Range<usize>>) -> Origin {
    Origin::File {
        name: name.to_owned(),
        position: span.map(|s| Position::of_offset(text, s.start)),
    }
}

fn diagnostic(
    kind: ErrorKind,
    origin: Origin,
    field: &FieldPath,
    message: String,
    hint: String,
) -> ConfigError {
    ConfigError::Invalid(Box::new(Diagnostic {
        kind,
        origin,
        field: field.to_string(),
        message,
        hint,
    }))
}

/// A layer that does not fit the schema: where (span and field) and serde's message.
struct ShapeError {
    span: Option<Range<usize>>,
    path: FieldPath,
    message: String,
}

/// Deserializes `text` as a (partial) configuration to find unknown keys and wrong types.
fn check_schema(text: &str) -> Result<(), ShapeError> {
    // Serde also fills a struct from a sequence by position (`simulator = [1, 25, 50]`),
    // so a table written as a list is caught first, as the type error it is.
    if let Ok(root) = DeTable::parse(text) {
        if let Some((span, path)) =
            list_for_table(root.get_ref(), &raw::schema(), &FieldPath::default())
        {
            return Err(ShapeError {
                span: Some(span),
                path,
                message: "invalid type: list, expected a table".to_owned(),
            });
        }
    }
    toml::from_str::<RawConfig>(text).map(drop).map_err(|e| {
        let span = e.span();
        let path = span
            .as_ref()
            .map(|s| path_at(text, s.start))
            .unwrap_or_default();
        ShapeError {
            span,
            path,
            message: e.message().to_owned(),
        }
    })
}

/// The first list in `t` where `schema` has a table.
fn list_for_table(
    t: &DeTable<'_>,
    schema: &Table,
    base: &FieldPath,
) -> Option<(Range<usize>, FieldPath)> {
    t.iter().find_map(|(k, v)| {
        let path = base.key(k.get_ref());
        match (schema.get(k.get_ref().as_ref())?, v.get_ref()) {
            (Value::Table(st), DeValue::Table(vt)) => list_for_table(vt, st, &path),
            (Value::Table(_), DeValue::Array(_)) => Some((v.span(), path)),
            (Value::Array(sa), DeValue::Array(va)) => {
                let Some(Value::Table(st)) = sa.first() else {
                    return None;
                };
                va.iter().enumerate().find_map(|(i, e)| match e.get_ref() {
                    DeValue::Table(et) => list_for_table(et, st, &path.index(i)),
                    DeValue::Array(_) => Some((e.span(), path.index(i))),
                    _ => None,
                })
            }
            _ => None,
        }
    })
}

/// Turns a schema mismatch into an unknown-key or wrong-type diagnostic with a hint.
fn shape_diagnostic(origin: Origin, e: ShapeError) -> ConfigError {
    if let Some(rest) = e.message.strip_prefix("unknown field `") {
        let key = rest.split('`').next().unwrap_or_default();
        // The span of an unknown key is the key itself; inside an environment value it may
        // be the whole value, in which case the key is below the path.
        let (parent, field) = if e.path.last_key() == Some(key) {
            (e.path.parent(), e.path)
        } else {
            (e.path.clone(), e.path.key(key))
        };
        let hint = match schema_at(&parent) {
            Some(Value::Table(t)) => {
                let keys: Vec<&str> = t.keys().map(String::as_str).collect();
                let place = if parent.len() == 0 {
                    "at the top level".to_owned()
                } else {
                    format!("in {parent}")
                };
                format!("valid keys {place}: {}", keys.join(", "))
            }
            _ => "remove the key; config/default.toml lists every valid key".to_owned(),
        };
        return diagnostic(
            ErrorKind::UnknownKey,
            origin,
            &field,
            format!("unknown key `{key}`"),
            hint,
        );
    }
    let hint = match schema_at(&e.path) {
        Some(Value::Table(t)) => {
            let keys: Vec<&str> = t.keys().map(String::as_str).collect();
            format!("expected a table with keys: {}", keys.join(", "))
        }
        Some(Value::Array(_)) => {
            "expected a list of tables, written [[name]] per element in a file; \
             from the environment, address one element by index (HFT_STRATEGIES__0__ENABLED=false)"
                .to_owned()
        }
        Some(v) => format!(
            "expected a value like the default: {} = {v}",
            e.path.last_key().unwrap_or("value")
        ),
        None => "config/default.toml shows the expected type of every key".to_owned(),
    };
    // "invalid value: integer `-1`, expected u64": right type, outside what the field holds.
    let kind = if e.message.starts_with("invalid value") {
        ErrorKind::OutOfRange
    } else {
        ErrorKind::WrongType
    };
    diagnostic(kind, origin, &e.path, e.message, hint)
}

/// The schema's default at `path` (list elements: the example element).
fn schema_at(path: &FieldPath) -> Option<Value> {
    let mut node = Value::Table(raw::schema());
    for seg in path.segs() {
        node = match (node, seg) {
            (Value::Table(mut t), Seg::Key(k)) => t.remove(k)?,
            (Value::Array(a), Seg::Index(_)) => a.into_iter().next()?,
            _ => return None,
        };
    }
    Some(node)
}

/// The field path of the deepest key or value whose span contains byte `offset`.
fn path_at(text: &str, offset: usize) -> FieldPath {
    let mut best = FieldPath::default();
    if let Ok(root) = DeTable::parse(text) {
        search_table(root.get_ref(), &FieldPath::default(), offset, &mut best);
    }
    best
}

fn span_contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && (offset < span.end || span.start == span.end)
}

fn search_table(t: &DeTable<'_>, base: &FieldPath, offset: usize, best: &mut FieldPath) {
    for (k, v) in t.iter() {
        let path = base.key(k.get_ref());
        if span_contains(&k.span(), offset) && path.len() > best.len() {
            *best = path.clone();
        }
        search_value(v, &path, offset, best);
    }
}

fn search_value(v: &Spanned<DeValue<'_>>, path: &FieldPath, offset: usize, best: &mut FieldPath) {
    if span_contains(&v.span(), offset) && path.len() > best.len() {
        *best = path.clone();
    }
    match v.get_ref() {
        DeValue::Table(t) => search_table(t, path, offset, best),
        DeValue::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                search_value(e, &path.index(i), offset, best);
            }
        }
        _ => {}
    }
}

/// Merges `over` into `base`: tables recursively, anything else (lists included) replaces.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Table(b), Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// One `HFT_*` variable: the path it sets and the value it sets there.
struct EnvSetting {
    var: String,
    path: FieldPath,
    value: Value,
}

impl EnvSetting {
    /// Parses the variable's name into a path and its text into a value that fits the
    /// schema there: as a TOML value (`5`, `true`, `"x"`, `1.5`) when that fits, else as a
    /// plain string, so `HFT_RISK__MAX_GROSS_NOTIONAL=1000` is the decimal string "1000"
    /// and `HFT_NODE__NAME=node-2` needs no quotes.
    fn parse(var: String, text: &str) -> Result<Self, ConfigError> {
        let origin = Origin::Env { var: var.clone() };
        let path = match env_path(&var) {
            Ok(p) => p,
            Err(message) => {
                return Err(diagnostic(
                    ErrorKind::UnknownKey,
                    origin,
                    &FieldPath::default(),
                    message,
                    "name variables HFT_<SECTION>__<KEY>, e.g. HFT_SIMULATOR__SEED=5 or \
                     HFT_STRATEGIES__0__ENABLED=false; every HFT_* variable is read as configuration"
                        .to_owned(),
                ));
            }
        };
        let mut candidates = Vec::with_capacity(2);
        if let Ok(v) = text.parse::<Value>() {
            candidates.push(v);
        }
        candidates.push(Value::String(text.to_owned()));
        let mut first_error = None;
        for value in candidates {
            match check_env_value(&path, value.clone()) {
                Ok(()) => return Ok(Self { var, path, value }),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let e = first_error.unwrap_or(ShapeError {
            span: None,
            path: path.clone(),
            message: "no value".to_owned(),
        });
        Err(shape_diagnostic(origin, e))
    }

    /// Sets the value in the merged tree; a list element must already exist.
    fn apply(&self, merged: &mut Value) -> Result<(), ConfigError> {
        let mut node = merged;
        let mut done = FieldPath::default();
        for seg in self.path.segs() {
            node = match (node, seg) {
                (Value::Table(t), Seg::Key(k)) => {
                    done = done.key(k);
                    t.entry(k.clone())
                        .or_insert_with(|| Value::Table(Table::new()))
                }
                (Value::Array(a), Seg::Index(i)) => {
                    let len = a.len();
                    let Some(elem) = a.get_mut(*i) else {
                        let hint = if len == 0 {
                            format!("{done} is empty; define its elements in an overlay file")
                        } else {
                            format!(
                                "valid indices: 0..={}; to add elements, replace the whole list in an overlay file",
                                len - 1
                            )
                        };
                        return Err(diagnostic(
                            ErrorKind::OutOfRange,
                            Origin::Env {
                                var: self.var.clone(),
                            },
                            &done.index(*i),
                            format!("index {i} is out of range: {done} has {len} elements"),
                            hint,
                        ));
                    };
                    done = done.index(*i);
                    elem
                }
                // Unreachable in practice: the value's shape was checked against the schema.
                (other, _) => {
                    let what = match other {
                        Value::Table(_) => "a table: address its keys by name",
                        Value::Array(_) => "a list: address its elements by index",
                        _ => "a single value without sub-keys",
                    };
                    return Err(diagnostic(
                        ErrorKind::WrongType,
                        Origin::Env {
                            var: self.var.clone(),
                        },
                        &done,
                        format!("{done} is {what}"),
                        "name variables after the key path, e.g. HFT_STRATEGIES__0__ENABLED=false"
                            .to_owned(),
                    ));
                }
            };
        }
        merge(node, self.value.clone());
        Ok(())
    }
}

/// `HFT_STRATEGIES__0__RISK__MAX_POSITION` -> `strategies[0].risk.max_position`.
fn env_path(var: &str) -> Result<FieldPath, String> {
    let rest = var.strip_prefix(ENV_PREFIX).unwrap_or(var);
    let mut segs = Vec::new();
    for part in rest.split(ENV_SEPARATOR) {
        if part.is_empty() {
            return Err(format!("{var} has an empty path segment"));
        }
        if part.bytes().all(|b| b.is_ascii_digit()) {
            if segs.is_empty() {
                return Err(format!(
                    "{var} must start with a section name, not an index"
                ));
            }
            let i = part
                .parse::<usize>()
                .map_err(|_| format!("index {part} in {var} is too large"))?;
            segs.push(Seg::Index(i));
        } else {
            segs.push(Seg::Key(part.to_lowercase()));
        }
    }
    Ok(FieldPath::from_segs(segs))
}

/// Checks one environment value against the schema by writing it as a one-key document.
/// List indices become a one-element list (the index is checked when the value is applied),
/// and the error path is mapped back to the variable's own indices.
fn check_env_value(path: &FieldPath, value: Value) -> Result<(), ShapeError> {
    let doc = path
        .segs()
        .iter()
        .rev()
        .fold(value, |inner, seg| match seg {
            Seg::Key(k) => Value::Table(Table::from_iter([(k.clone(), inner)])),
            Seg::Index(_) => Value::Array(vec![inner]),
        });
    let text = toml::to_string(&doc).map_err(|e| ShapeError {
        span: None,
        path: path.clone(),
        message: e.to_string(),
    })?;
    check_schema(&text).map_err(|mut e| {
        let segs = e
            .path
            .segs()
            .iter()
            .enumerate()
            .map(|(i, seg)| path.segs().get(i).unwrap_or(seg).clone())
            .collect();
        e.path = FieldPath::from_segs(segs);
        e.span = None;
        e
    })
}

/// The layer that set the value at `path`: the last variable or file that wrote it or a
/// list containing it (lists replace wholesale, so that layer owns all its elements).
fn locate(files: &[FileLayer<'_>], env: &[EnvSetting], path: &FieldPath) -> Origin {
    for s in env.iter().rev() {
        if path
            .segs()
            .strip_prefix(s.path.segs())
            .is_some_and(|rest| sets(&s.value, rest))
        {
            return Origin::Env { var: s.var.clone() };
        }
    }
    let owner = files
        .iter()
        .rev()
        .find(|f| sets_table(&f.tree, path.segs()))
        .or(files.last());
    match owner {
        Some(f) => f.origin(find_span(f.text, path)),
        None => file_origin(DEFAULT_NAME, "", None),
    }
}

fn sets_table(t: &Table, segs: &[Seg]) -> bool {
    match segs.split_first() {
        Some((Seg::Key(k), rest)) => t.get(k).is_some_and(|v| sets(v, rest)),
        Some((Seg::Index(_), _)) => false,
        None => true,
    }
}

fn sets(v: &Value, segs: &[Seg]) -> bool {
    match v {
        Value::Table(t) => sets_table(t, segs),
        // A list or a scalar replaces everything below it.
        _ => true,
    }
}

/// Span of the deepest key (or list element) of `path` present in `text`.
fn find_span(text: &str, path: &FieldPath) -> Option<Range<usize>> {
    let root = DeTable::parse(text).ok()?;
    table_span(root.get_ref(), path.segs())
}

fn table_span(t: &DeTable<'_>, segs: &[Seg]) -> Option<Range<usize>> {
    let (Seg::Key(k), rest) = segs.split_first()? else {
        return None;
    };
    let (key, value) = t.get_key_value(k.as_str())?;
    Some(value_span(value, rest).unwrap_or_else(|| key.span()))
}

fn value_span(v: &Spanned<DeValue<'_>>, segs: &[Seg]) -> Option<Range<usize>> {
    match (v.get_ref(), segs.split_first()?) {
        (DeValue::Table(t), _) => table_span(t, segs),
        (DeValue::Array(a), (Seg::Index(i), rest)) => {
            let elem = a.get(*i)?;
            Some(value_span(elem, rest).unwrap_or_else(|| elem.span()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_map_to_paths() {
        assert_eq!(
            env_path("HFT_SIMULATOR__SEED").unwrap().to_string(),
            "simulator.seed"
        );
        assert_eq!(
            env_path("HFT_STRATEGIES__1__RISK__MAX_POSITION")
                .unwrap()
                .to_string(),
            "strategies[1].risk.max_position"
        );
        assert!(env_path("HFT_SIMULATOR____SEED").is_err());
        assert!(env_path("HFT_").is_err());
        assert!(env_path("HFT_0__X").is_err());
        assert!(env_path("HFT_STRATEGIES__99999999999999999999999999").is_err());
    }

    #[test]
    fn the_cli_endpoint_variable_is_not_configuration() {
        let env = |k: &str| vec![(k.to_owned(), "http://127.0.0.1:7080".to_owned())];
        assert!(load(None, env("HFT_ENDPOINT")).is_ok());
        assert!(load(None, env("HFT_ENDPOINTS")).is_err());
    }

    #[test]
    fn spans_map_to_the_deepest_field() {
        let text = "[simulator]\nseed = 1\n\n[[strategies]]\nname = \"a\"\n[strategies.risk]\nmax_position = \"1\"\n";
        let at = |needle: &str| path_at(text, text.find(needle).unwrap()).to_string();
        assert_eq!(at("seed"), "simulator.seed");
        assert_eq!(at("1\n"), "simulator.seed");
        assert_eq!(at("\"a\""), "strategies[0].name");
        assert_eq!(at("max_position"), "strategies[0].risk.max_position");
    }

    #[test]
    fn merge_is_recursive_for_tables_and_replaces_lists() {
        let mut base: Value = Value::Table("a = { x = 1, y = 2 }\nl = [1, 2]".parse().unwrap());
        let over: Value = Value::Table("a = { y = 3 }\nl = [9]".parse().unwrap());
        merge(&mut base, over);
        let expected: Value = Value::Table("a = { x = 1, y = 3 }\nl = [9]".parse().unwrap());
        assert_eq!(base, expected);
    }
}
