//! Parsers for Xen's configuration text: xlcpupool.cfg (pools) and xl.cfg
//! (domains), from a file or in the console's inline form
//! (`name=p1 sched=credit cpus=2-3`). Both forms produce the same structures.
//!
//! Syntax (xl's): one `key = value` per line; `#` starts a comment outside
//! strings; a value is a string in `"` or `'` quotes, a number, a list
//! `[ v, v, ... ]` (which may span lines), or — as xl's inline arguments allow
//! — a bare word (`credit`, `2-3`). A bare number is a number: `cpus = 2` asks
//! for two CPUs, `cpus = "2"` for CPU 2. A trailing `;` is accepted. In the
//! inline form, settings are separated by whitespace and "line" in errors is
//! the setting's position (1-based).
//!
//! Every error names its line (0 = the whole text, for a missing key) and key;
//! no input makes a parser panic (fuzzed in the tests).

use crate::pools::{
    CpuRequest, DomainParams, DomainSpec, PoolError, PoolId, PoolManager, PoolSpec, Sched,
    MAX_CPUS, POOL0,
};
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// What is wrong with a config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// Not `key = value` (the text says what was expected).
    Syntax(&'static str),
    /// A string without its closing quote on the same line.
    UnterminatedString,
    /// A list without its closing `]`.
    UnterminatedList,
    /// A key this kind of config does not know.
    UnknownKey,
    /// The key was already set.
    DuplicateKey,
    /// The value has the wrong type or range (the text says which).
    BadValue(&'static str),
    /// A required key is absent.
    MissingKey,
}

/// A config error: where and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line (file) or setting position (inline); 0 = whole text.
    pub line: u32,
    /// The key concerned, when known.
    pub key: Option<String>,
    /// What is wrong.
    pub kind: ConfigErrorKind,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: ", self.line)?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        match &self.kind {
            ConfigErrorKind::Syntax(what) => write!(f, "syntax error: {what}"),
            ConfigErrorKind::UnterminatedString => f.write_str("unterminated string"),
            ConfigErrorKind::UnterminatedList => f.write_str("unterminated list"),
            ConfigErrorKind::UnknownKey => f.write_str("unknown key"),
            ConfigErrorKind::DuplicateKey => f.write_str("duplicate key"),
            ConfigErrorKind::BadValue(what) => write!(f, "bad value: {what}"),
            ConfigErrorKind::MissingKey => f.write_str("missing"),
        }
    }
}

/// A key accepted but not used: xl reads a config whole and ignores what it
/// does not use; Tarn says once which keys it ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigWarning {
    /// 1-based line (file) or setting position (inline).
    pub line: u32,
    /// The key.
    pub key: String,
    /// Why it is not used.
    pub why: &'static str,
}

/// An xl.cfg or xlcpupool.cfg key that Tarn does not use.
pub const XL_KEY_UNUSED: &str = "an xl key not used by Tarn, ignored";
/// A key neither xl nor Tarn defines.
pub const NOT_XL_KEY: &str = "not an xl key, ignored";

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: ", self.line)?;
        }
        write!(f, "{}: {}", self.key, self.why)
    }
}

/// A parsed value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Quoted string or bare word.
    Str(String),
    /// Bare decimal number.
    Int(u64),
    /// `[ ... ]` of strings and numbers.
    List(Vec<Value>),
}

/// One `key = value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// Line (or inline position) it came from.
    pub line: u32,
    /// Its key.
    pub key: String,
    /// Its value.
    pub value: Value,
}

/// Which textual form is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// A config file: one setting per line.
    File,
    /// Console arguments: settings separated by whitespace.
    Inline,
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: u32,
    form: Form,
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_bare_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/' | '+' | '^' | '@')
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn err(&self, key: Option<&str>, kind: ConfigErrorKind) -> ConfigError {
        ConfigError {
            line: self.line,
            key: key.map(String::from),
            kind,
        }
    }

    /// Skip spaces and tabs (and, inside lists of a file, newlines and
    /// comments).
    fn skip_blank(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            if c == '\n' && newlines {
                self.line += 1;
                self.pos += 1;
            } else if c == '#' && newlines {
                while matches!(self.peek(), Some(c) if c != '\n') {
                    self.pos += 1;
                }
            } else if c != '\n' && c.is_whitespace() {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn string(&mut self, key: &str, quote: char) -> Result<Value, ConfigError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None | Some('\n') => {
                    return Err(self.err(Some(key), ConfigErrorKind::UnterminatedString))
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(Value::Str(out));
                }
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some('n') => out.push('\n'),
                        Some(c @ ('\\' | '"' | '\'')) => out.push(c),
                        None | Some('\n') => {
                            return Err(self.err(Some(key), ConfigErrorKind::UnterminatedString))
                        }
                        Some(_) => {
                            return Err(
                                self.err(Some(key), ConfigErrorKind::BadValue("unknown escape"))
                            )
                        }
                    }
                    self.pos += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn bare(&mut self, key: &str) -> Result<Value, ConfigError> {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if is_bare_char(c)) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.err(Some(key), ConfigErrorKind::Syntax("expected a value")));
        }
        let word: String = self.chars[start..self.pos].iter().collect();
        if word.chars().all(|c| c.is_ascii_digit()) {
            word.parse::<u64>()
                .map(Value::Int)
                .map_err(|_| self.err(Some(key), ConfigErrorKind::BadValue("number too large")))
        } else {
            Ok(Value::Str(word))
        }
    }

    fn scalar(&mut self, key: &str) -> Result<Value, ConfigError> {
        match self.peek() {
            Some(q @ ('"' | '\'')) => self.string(key, q),
            _ => self.bare(key),
        }
    }

    fn value(&mut self, key: &str) -> Result<Value, ConfigError> {
        if self.peek() != Some('[') {
            return self.scalar(key);
        }
        let open_line = self.line;
        self.pos += 1;
        let multiline = self.form == Form::File;
        let mut items = Vec::new();
        loop {
            self.skip_blank(multiline);
            match self.peek() {
                None => {
                    return Err(ConfigError {
                        line: open_line,
                        key: Some(key.to_string()),
                        kind: ConfigErrorKind::UnterminatedList,
                    })
                }
                Some(']') => {
                    self.pos += 1;
                    return Ok(Value::List(items));
                }
                Some('[') => {
                    return Err(self.err(Some(key), ConfigErrorKind::Syntax("nested list")))
                }
                _ => {}
            }
            items.push(self.scalar(key)?);
            self.skip_blank(multiline);
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(']') => {}
                None => {
                    return Err(ConfigError {
                        line: open_line,
                        key: Some(key.to_string()),
                        kind: ConfigErrorKind::UnterminatedList,
                    })
                }
                Some(_) => {
                    return Err(self.err(Some(key), ConfigErrorKind::Syntax("expected , or ]")))
                }
            }
        }
    }

    /// The next setting, or `None` at the end.
    fn setting(&mut self) -> Result<Option<Setting>, ConfigError> {
        // Blank lines and comments (file), whitespace (inline).
        loop {
            self.skip_blank(false);
            match self.peek() {
                None => return Ok(None),
                Some('\n') if self.form == Form::File => {
                    self.line += 1;
                    self.pos += 1;
                }
                Some('\n') => self.pos += 1,
                Some('#') if self.form == Form::File => {
                    while matches!(self.peek(), Some(c) if c != '\n') {
                        self.pos += 1;
                    }
                }
                Some(_) => break,
            }
        }
        if self.form == Form::Inline {
            self.line += 1;
        }
        let start = self.pos;
        while matches!(self.peek(), Some(c) if is_key_char(c)) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.err(None, ConfigErrorKind::Syntax("expected a key")));
        }
        let key: String = self.chars[start..self.pos].iter().collect();
        self.skip_blank(false);
        if self.peek() != Some('=') {
            return Err(self.err(Some(&key), ConfigErrorKind::Syntax("expected =")));
        }
        self.pos += 1;
        self.skip_blank(false);
        let line = self.line;
        let value = self.value(&key)?;
        // End of the setting.
        match self.form {
            Form::File => {
                self.skip_blank(false);
                if self.peek() == Some(';') {
                    self.pos += 1;
                    self.skip_blank(false);
                }
                if self.peek() == Some('#') {
                    while matches!(self.peek(), Some(c) if c != '\n') {
                        self.pos += 1;
                    }
                }
                match self.peek() {
                    None => {}
                    Some('\n') => {
                        self.line += 1;
                        self.pos += 1;
                    }
                    Some(_) => {
                        return Err(ConfigError {
                            line: self.line,
                            key: Some(key),
                            kind: ConfigErrorKind::Syntax("text after the value"),
                        })
                    }
                }
            }
            Form::Inline => match self.peek() {
                None => {}
                Some(c) if c.is_whitespace() => {}
                Some(_) => {
                    return Err(ConfigError {
                        line,
                        key: Some(key),
                        kind: ConfigErrorKind::Syntax("text after the value"),
                    })
                }
            },
        }
        Ok(Some(Setting { line, key, value }))
    }
}

/// Split config text into settings; a key set twice is an error.
pub fn parse_settings(text: &str, form: Form) -> Result<Vec<Setting>, ConfigError> {
    let mut lexer = Lexer {
        chars: text.chars().collect(),
        pos: 0,
        line: if form == Form::File { 1 } else { 0 },
        form,
    };
    let mut settings: Vec<Setting> = Vec::new();
    while let Some(setting) = lexer.setting()? {
        if settings.iter().any(|s| s.key == setting.key) {
            return Err(ConfigError {
                line: setting.line,
                key: Some(setting.key),
                kind: ConfigErrorKind::DuplicateKey,
            });
        }
        settings.push(setting);
    }
    Ok(settings)
}

fn bad(s: &Setting, what: &'static str) -> ConfigError {
    ConfigError {
        line: s.line,
        key: Some(s.key.clone()),
        kind: ConfigErrorKind::BadValue(what),
    }
}

fn missing(key: &str) -> ConfigError {
    ConfigError {
        line: 0,
        key: Some(key.to_string()),
        kind: ConfigErrorKind::MissingKey,
    }
}

fn check_known(settings: &[Setting], known: &[&str]) -> Result<(), ConfigError> {
    match settings.iter().find(|s| !known.contains(&s.key.as_str())) {
        Some(s) => Err(ConfigError {
            line: s.line,
            key: Some(s.key.clone()),
            kind: ConfigErrorKind::UnknownKey,
        }),
        None => Ok(()),
    }
}

fn find<'a>(settings: &'a [Setting], key: &str) -> Option<&'a Setting> {
    settings.iter().find(|s| s.key == key)
}

fn string_of(s: &Setting) -> Result<String, ConfigError> {
    match &s.value {
        Value::Str(v) => Ok(v.clone()),
        _ => Err(bad(s, "expected a string")),
    }
}

fn int_of(s: &Setting, min: u64, max: u64, what: &'static str) -> Result<u32, ConfigError> {
    match s.value {
        Value::Int(v) if (min..=max).contains(&v) => Ok(v as u32),
        _ => Err(bad(s, what)),
    }
}

fn cpu_number(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    text.parse::<u32>().ok().filter(|&c| c < MAX_CPUS)
}

/// The machine as xl's CPU lists see it: the NUMA node of each CPU (the
/// root task builds it from `BootInfo::cpu_node`). `all`, `node:N` and
/// `nodes:N-M` need it; plain numbers do not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    /// The node of CPU i, for CPUs `0..len`.
    cpu_nodes: Vec<u32>,
    /// The free CPUs, when known (xlcpupool.cfg's `nodes=` takes the free
    /// CPUs of its nodes).
    free: Option<BTreeSet<u32>>,
}

impl Topology {
    /// A machine whose CPU i is on node `cpu_nodes[i]`.
    pub fn new(cpu_nodes: Vec<u32>) -> Topology {
        Topology {
            cpu_nodes,
            free: None,
        }
    }

    /// This topology, knowing which CPUs are free.
    pub fn with_free(mut self, free: BTreeSet<u32>) -> Topology {
        self.free = Some(free);
        self
    }

    /// CPUs of the machine.
    pub fn cpu_count(&self) -> u32 {
        self.cpu_nodes.len() as u32
    }

    /// NUMA nodes (0 when the topology is not known).
    pub fn node_count(&self) -> u32 {
        self.cpu_nodes.iter().max().map_or(0, |&n| n + 1)
    }

    /// The node of `cpu` (`None` for a CPU the machine does not have).
    pub fn node_of(&self, cpu: u32) -> Option<u32> {
        self.cpu_nodes.get(cpu as usize).copied()
    }

    /// The CPUs of `node`.
    pub fn node_cpus(&self, node: u32) -> BTreeSet<u32> {
        (0..self.cpu_count())
            .filter(|&cpu| self.cpu_nodes[cpu as usize] == node)
            .collect()
    }

    fn nodes(&self, low: u32, high: u32) -> Result<BTreeSet<u32>, String> {
        let count = self.node_count();
        if count == 0 {
            return Err(String::from("NUMA nodes are not known here"));
        }
        if high >= count {
            return Err(format!("no node {high} (nodes 0..{})", count - 1));
        }
        Ok((low..=high).flat_map(|n| self.node_cpus(n)).collect())
    }
}

fn number_range(text: &str) -> Option<(u32, u32)> {
    let (low, high) = match text.split_once('-') {
        Some((low, high)) => (cpu_number(low)?, cpu_number(high)?),
        None => {
            let n = cpu_number(text)?;
            (n, n)
        }
    };
    (low <= high).then_some((low, high))
}

/// Parse an xl CPU list into CPU numbers: comma-separated items, each a CPU
/// (`2`), a range (`2-3`), `all`, a node (`node:1`) or node range
/// (`nodes:0-1`), and any of them preceded by `^` to take those CPUs out
/// again (`0-3,^1`, `nodes:0-1,^node:1`); items apply from left to right,
/// as xl applies them. Nodes and `all` come from `topology`. The error says
/// what is wrong; an empty result is not an error here.
pub fn parse_cpu_list(text: &str, topology: &Topology) -> Result<BTreeSet<u32>, String> {
    let mut cpus = BTreeSet::new();
    for item in text.split(',') {
        let item = item.trim();
        let (exclude, what) = match item.strip_prefix('^') {
            Some(rest) => (true, rest),
            None => (false, item),
        };
        let selected: BTreeSet<u32> = if what == "all" {
            if topology.cpu_count() == 0 {
                return Err(String::from("all: the machine's CPUs are not known here"));
            }
            (0..topology.cpu_count()).collect()
        } else if let Some(nodes) = what
            .strip_prefix("nodes:")
            .or_else(|| what.strip_prefix("node:"))
        {
            let (low, high) = number_range(nodes)
                .ok_or_else(|| format!("'{item}' is not a node or node range"))?;
            topology
                .nodes(low, high)
                .map_err(|why| format!("'{item}': {why}"))?
        } else {
            let (low, high) = number_range(what)
                .ok_or_else(|| format!("'{item}' is not a CPU, range, all or node:N"))?;
            (low..=high).collect()
        };
        if exclude {
            cpus.retain(|c| !selected.contains(c));
        } else {
            cpus.extend(selected);
        }
    }
    Ok(cpus)
}

const CPUS_HELP: &str =
    "expected a count, or a CPU list like \"2-3\", \"all,^0\", \"node:1\" or [\"2\",\"3\"]";

fn cpus_of(s: &Setting, topology: &Topology) -> Result<CpuRequest, ConfigError> {
    let request = match &s.value {
        Value::Int(n) if *n >= 1 && *n <= MAX_CPUS as u64 => CpuRequest::Count(*n as u32),
        Value::Int(_) => return Err(bad(s, "CPU count must be 1..1024")),
        Value::Str(text) => {
            CpuRequest::List(parse_cpu_list(text, topology).map_err(|_| bad(s, CPUS_HELP))?)
        }
        Value::List(items) => {
            let mut cpus = BTreeSet::new();
            for item in items {
                match item {
                    Value::Str(text) => {
                        cpus.extend(parse_cpu_list(text, topology).map_err(|_| bad(s, CPUS_HELP))?)
                    }
                    Value::Int(n) if *n < MAX_CPUS as u64 => {
                        cpus.insert(*n as u32);
                    }
                    _ => return Err(bad(s, CPUS_HELP)),
                }
            }
            CpuRequest::List(cpus)
        }
    };
    if request.is_empty() {
        return Err(bad(s, "a pool needs at least one CPU"));
    }
    Ok(request)
}

/// xlcpupool.cfg's `nodes`: a node, a list of them, or a node list
/// (`"0-1"`); the free CPUs of those nodes (all their CPUs when which are
/// free is not known).
fn nodes_of(s: &Setting, topology: &Topology) -> Result<CpuRequest, ConfigError> {
    const HELP: &str = "expected a node, a list of nodes or a range like \"0-1\"";
    let mut nodes: Vec<(u32, u32)> = Vec::new();
    let mut add = |v: &Value| match v {
        Value::Int(n) if *n < MAX_CPUS as u64 => {
            nodes.push((*n as u32, *n as u32));
            Ok(())
        }
        Value::Str(text) => {
            for item in text.split(',') {
                nodes.push(number_range(item.trim()).ok_or_else(|| bad(s, HELP))?);
            }
            Ok(())
        }
        _ => Err(bad(s, HELP)),
    };
    match &s.value {
        Value::List(items) => items.iter().try_for_each(&mut add)?,
        other => add(other)?,
    }
    let mut cpus = BTreeSet::new();
    for (low, high) in nodes {
        if topology.node_count() == 0 || high >= topology.node_count() {
            return Err(bad(s, "no such NUMA node"));
        }
        cpus.extend(topology.nodes(low, high).map_err(|_| bad(s, HELP))?);
    }
    if let Some(free) = &topology.free {
        cpus.retain(|c| free.contains(c));
    }
    if cpus.is_empty() {
        return Err(bad(s, "no free CPU in those nodes"));
    }
    Ok(CpuRequest::List(cpus))
}

/// Keys of an xlcpupool.cfg Tarn honours (`other_config` is Tarn's: the
/// pool policy's parameters).
pub const POOL_KEYS: &[&str] = &["name", "sched", "cpus", "nodes", "other_config"];

/// The keys xlcpupool.cfg(5) defines that Tarn does not use (none: all
/// four are honoured).
pub const XL_POOL_KEYS_UNUSED: &[&str] = &[];

/// The pool keys of `settings` that Tarn ignores, each with why.
fn pool_warnings(settings: &[Setting]) -> Vec<ConfigWarning> {
    settings
        .iter()
        .filter(|s| !POOL_KEYS.contains(&s.key.as_str()))
        .map(|s| ConfigWarning {
            line: s.line,
            key: s.key.clone(),
            why: if XL_POOL_KEYS_UNUSED.contains(&s.key.as_str()) {
                XL_KEY_UNUSED
            } else {
                NOT_XL_KEY
            },
        })
        .collect()
}

fn pool_from_settings(settings: &[Setting], topology: &Topology) -> Result<PoolSpec, ConfigError> {
    let name = string_of(find(settings, "name").ok_or_else(|| missing("name"))?)?;
    let sched = match find(settings, "sched") {
        None => Sched::credit(),
        Some(s) => Sched::from_name(&string_of(s)?).ok_or_else(|| {
            bad(
                s,
                "a policy name (a lower-case letter, then letters, digits, - or _)",
            )
        })?,
    };
    // xlcpupool.cfg(5): without cpus or nodes, one free CPU is taken.
    let cpus = match (find(settings, "cpus"), find(settings, "nodes")) {
        (Some(_), Some(n)) => return Err(bad(n, "give cpus or nodes, not both")),
        (Some(s), None) => cpus_of(s, topology)?,
        (None, Some(n)) => nodes_of(n, topology)?,
        (None, None) => CpuRequest::Count(1),
    };
    let other_config = match find(settings, "other_config") {
        None => Vec::new(),
        Some(s) => match &s.value {
            Value::Str(v) => alloc::vec![v.clone()],
            Value::List(items) => items
                .iter()
                .map(|item| match item {
                    Value::Str(v) => Ok(v.clone()),
                    _ => Err(bad(s, "expected a list of strings")),
                })
                .collect::<Result<_, _>>()?,
            Value::Int(_) => return Err(bad(s, "expected a list of strings")),
        },
    };
    Ok(PoolSpec {
        name,
        sched,
        cpus,
        other_config,
    })
}

/// Parse an xlcpupool.cfg file, as xl reads it: keys Tarn does not use
/// are returned as warnings, not refused.
pub fn parse_pool_config(
    text: &str,
    topology: &Topology,
) -> Result<(PoolSpec, Vec<ConfigWarning>), ConfigError> {
    parse_pool_config_with(text, &[], topology)
}

/// Parse an xlcpupool.cfg file with `overrides` (xl's `cpupool-create
/// FILE var=value...`: each replaces the file's setting of its key, or is
/// added).
pub fn parse_pool_config_with(
    text: &str,
    overrides: &[Setting],
    topology: &Topology,
) -> Result<(PoolSpec, Vec<ConfigWarning>), ConfigError> {
    let settings = with_overrides(parse_settings(text, Form::File)?, overrides);
    Ok((
        pool_from_settings(&settings, topology)?,
        pool_warnings(&settings),
    ))
}

/// Parse the inline pool form (`name=p1 sched=credit cpus=2-3`): Tarn's
/// own one-line form, strict (a key it does not use is refused, as a typo
/// on the command line should be).
pub fn parse_pool_inline(text: &str, topology: &Topology) -> Result<PoolSpec, ConfigError> {
    let settings = parse_settings(text, Form::Inline)?;
    check_known(&settings, POOL_KEYS)?;
    pool_from_settings(&settings, topology)
}

/// `settings` with each of `overrides` replacing the setting of its key
/// (or appended); an override keeps its own position for errors.
pub fn with_overrides(mut settings: Vec<Setting>, overrides: &[Setting]) -> Vec<Setting> {
    for o in overrides {
        match settings.iter_mut().find(|s| s.key == o.key) {
            Some(s) => *s = o.clone(),
            None => settings.push(o.clone()),
        }
    }
    settings
}

/// Parse `var=value` overrides of a config file (the inline syntax; their
/// errors name the key, not a line of the file).
pub fn parse_overrides(text: &str) -> Result<Vec<Setting>, ConfigError> {
    let mut settings = parse_settings(text, Form::Inline)?;
    for s in &mut settings {
        s.line = 0;
    }
    Ok(settings)
}

fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A pool spec as xlcpupool.cfg text (`cpupool-create -n`: the config that
/// would be created), one `key = value` per line; it parses back to `spec`.
pub fn format_pool_config(spec: &PoolSpec) -> String {
    let mut out = format!(
        "name = {}\nsched = {}\n",
        quoted(&spec.name),
        quoted(spec.sched.name())
    );
    match &spec.cpus {
        CpuRequest::Count(n) => out.push_str(&format!("cpus = {n}\n")),
        CpuRequest::List(cpus) => {
            let items: Vec<String> = cpus.iter().map(|c| format!("\"{c}\"")).collect();
            out.push_str(&format!("cpus = [{}]\n", items.join(", ")));
        }
    }
    if !spec.other_config.is_empty() {
        let items: Vec<String> = spec.other_config.iter().map(|v| quoted(v)).collect();
        out.push_str(&format!("other_config = [{}]\n", items.join(", ")));
    }
    out
}

/// A domain config as xl.cfg text (`create -n`: the config that would be
/// created), one `key = value` per line, in xl.cfg's keys; it parses back
/// to the same config (less the warnings, which the dry run prints
/// before it).
pub fn format_domain_config(config: &DomainConfig) -> String {
    let mut out = format!("name = {}\n", quoted(&config.name));
    if let Some(pool) = &config.pool {
        out.push_str(&format!("pool = {}\n", quoted(pool)));
    }
    let kind = match config.kind {
        DomainType::Native => "pv",
        DomainType::Hvm => "hvm",
    };
    out.push_str(&format!("type = {}\n", quoted(kind)));
    out.push_str(&format!("kernel = {}\n", quoted(&config.image)));
    out.push_str(&format!("vcpus = {}\n", config.vcpus));
    if let Some(max) = config.maxvcpus {
        out.push_str(&format!("maxvcpus = {max}\n"));
    }
    for (key, cpus) in [("cpus", &config.cpus), ("cpus_soft", &config.cpus_soft)] {
        let Some(cpus) = cpus else {
            continue;
        };
        let lists: Vec<String> = cpus.lists.iter().map(|l| quoted(l)).collect();
        if cpus.every {
            out.push_str(&format!("{key} = {}\n", lists.join("")));
        } else {
            out.push_str(&format!("{key} = [{}]\n", lists.join(", ")));
        }
    }
    if let Some(memory) = config.memory_mib {
        out.push_str(&format!("memory = {memory}\n"));
    }
    if let Some(cmdline) = &config.cmdline {
        out.push_str(&format!("cmdline = {}\n", quoted(cmdline)));
    }
    if let Some(ramdisk) = &config.ramdisk {
        out.push_str(&format!("ramdisk = {}\n", quoted(ramdisk)));
    }
    // xl.cfg's names of credit's and SEDF's keys.
    for (key, value) in config.params.iter() {
        let key = match key {
            "weight" => "cpu_weight",
            "extra" => "extratime",
            other => other,
        };
        out.push_str(&format!("{key} = {value}\n"));
    }
    for (key, value) in config.policy_params.iter() {
        if value.parse::<i64>().is_ok() {
            out.push_str(&format!("{key} = {value}\n"));
        } else {
            out.push_str(&format!("{key} = {}\n", quoted(value)));
        }
    }
    out
}

/// What kind of domain a config builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainType {
    /// A native Tarn task (`type = "pv"`, the default).
    Native,
    /// A hardware VM (`type = "hvm"`, or `"pvh"`: both run under the VMM;
    /// a `kernel` that is a file of the config archive is booted as Linux
    /// through its 64-bit boot protocol, with no firmware).
    Hvm,
}

/// A domain config (xl.cfg subset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainConfig {
    /// Unique name.
    pub name: String,
    /// Pool name; `None` = Pool-0.
    pub pool: Option<String>,
    /// Image to build it from (`image` or `kernel`).
    pub image: String,
    /// Native task or VM.
    pub kind: DomainType,
    /// Number of vCPUs online at `create` (default 1).
    pub vcpus: u32,
    /// xl's `maxvcpus`: the vCPUs the domain is built with (`vcpu-set`
    /// brings up to this many online); `None`: `vcpus`.
    pub maxvcpus: Option<u32>,
    /// Memory in MiB, if given.
    pub memory_mib: Option<u32>,
    /// xl's `cpu_weight`, `cpu_cap` (as credit's `weight`, `cap`) and the
    /// sedf `period`/`slice`/`extra`.
    pub params: DomainParams,
    /// Every other key: a parameter of the pool's policy, kept verbatim; the
    /// runtime checks that the policy declares it (and the policy checks
    /// its value).
    pub policy_params: DomainParams,
    /// `cmdline` (or xl's `extra` as a string): the arguments the domain's
    /// image gets; a Linux guest's kernel command line.
    pub cmdline: Option<String>,
    /// `ramdisk`: the initrd of a Linux guest (a file of the config archive).
    pub ramdisk: Option<String>,
    /// The line of each key of `policy_params` (for the warning when the
    /// pool's policy does not declare it).
    pub param_lines: Vec<(String, u32)>,
    /// The keys accepted but not used, one warning each.
    pub warnings: Vec<ConfigWarning>,
    /// xl.cfg's `cpus`: hard affinity, resolved against the machine at
    /// `create` ([`DomainConfig::affinity`]); boxed, as it is rare.
    pub cpus: Option<alloc::boxed::Box<DomainCpus>>,
    /// xl.cfg's `cpus_soft`: soft affinity, written as `cpus`
    /// ([`DomainConfig::soft_affinity`]).
    pub cpus_soft: Option<alloc::boxed::Box<DomainCpus>>,
}

/// xl.cfg's `cpus` as written: one CPU list for every vCPU (`cpus =
/// "2-3"`), or one per vCPU (`cpus = ["2", "3"]`: vCPU 0 on CPU 2, vCPU 1
/// on CPU 3; vCPUs past the list keep every CPU).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainCpus {
    /// Its line (0: inline).
    pub line: u32,
    /// One list for every vCPU.
    pub every: bool,
    /// The CPU lists.
    pub lists: Vec<String>,
}

impl DomainConfig {
    /// The vCPUs the domain is built with: `maxvcpus`, else `vcpus`.
    pub fn max_vcpus(&self) -> u32 {
        self.maxvcpus.unwrap_or(self.vcpus)
    }

    /// Each vCPU's hard affinity from `cpus` (`None`: every CPU), CPU
    /// lists resolved against `topology`; a malformed list, or more lists
    /// than vCPUs, is an error naming the line and key.
    pub fn affinity(&self, topology: &Topology) -> Result<Vec<Option<BTreeSet<u32>>>, ConfigError> {
        self.affinity_of(self.cpus.as_deref(), "cpus", topology)
    }

    /// Each vCPU's soft affinity from `cpus_soft` (`None`: no
    /// preference), as [`DomainConfig::affinity`] reads `cpus`.
    pub fn soft_affinity(
        &self,
        topology: &Topology,
    ) -> Result<Vec<Option<BTreeSet<u32>>>, ConfigError> {
        self.affinity_of(self.cpus_soft.as_deref(), "cpus_soft", topology)
    }

    fn affinity_of(
        &self,
        cpus: Option<&DomainCpus>,
        key: &str,
        topology: &Topology,
    ) -> Result<Vec<Option<BTreeSet<u32>>>, ConfigError> {
        let mut out = alloc::vec![None; self.max_vcpus() as usize];
        let Some(cpus) = cpus else {
            return Ok(out);
        };
        let error = |what: &'static str| ConfigError {
            line: cpus.line,
            key: Some(String::from(key)),
            kind: ConfigErrorKind::BadValue(what),
        };
        if cpus.lists.len() > out.len() {
            return Err(error("more CPU lists than vcpus"));
        }
        for (vcpu, text) in cpus.lists.iter().enumerate() {
            let set = parse_cpu_list(text, topology)
                .map_err(|_| error("expected a CPU list like \"2-3\", \"all,^0\" or \"node:1\""))?;
            if set.is_empty() {
                return Err(error("an affinity needs at least one CPU"));
            }
            if cpus.every {
                out.iter_mut().for_each(|a| *a = Some(set.clone()));
            } else {
                out[vcpu] = Some(set);
            }
        }
        Ok(out)
    }

    /// The spec `PoolManager::create_domain` takes, with the pool name
    /// resolved (no `pool` = Pool-0, whatever it is named now).
    pub fn to_spec(&self, manager: &PoolManager) -> Result<DomainSpec, PoolError> {
        let pool: PoolId = match &self.pool {
            None => POOL0,
            Some(name) => manager.pool_id(name)?,
        };
        Ok(DomainSpec {
            name: self.name.clone(),
            pool,
            vcpus: self.max_vcpus(),
            params: self.params.merged(&self.policy_params),
        })
    }
}

/// Keys of a domain config Tarn honours: xl.cfg(5)'s `name pool kernel
/// type vcpus cpus memory cpu_weight cap cmdline extra root ramdisk` and SEDF's
/// `period slice extratime` (as libxl reads them: period and slice in ms,
/// extratime 0 or 1), and Tarn's `image` (= `kernel`), `cpu_cap` (= `cap`)
/// and a numeric `extra` (= `extratime`; a string `extra` is xl's kernel
/// command line).
pub const DOMAIN_KEYS: &[&str] = &[
    "name",
    "pool",
    "image",
    "kernel",
    "type",
    "vcpus",
    "maxvcpus",
    "cpus",
    "cpus_soft",
    "memory",
    "cpu_weight",
    "cap",
    "cpu_cap",
    "period",
    "slice",
    "extra",
    "extratime",
    "cmdline",
    "root",
    "ramdisk",
];

/// The keys xl.cfg(5) defines that Tarn does not use: accepted, each with
/// one warning (devices, firmware, device model, memory ballooning,
/// lifecycle actions: not Tarn's).
pub const XL_DOMAIN_KEYS_UNUSED: &[&str] = &[
    "acpi",
    "acpi_firmware",
    "acpi_laptop_slate",
    "acpi_s3",
    "acpi_s4",
    "altp2m",
    "altp2m_count",
    "altp2mhvm",
    "apic",
    "arm_sci",
    "baseboard_asset_tag",
    "baseboard_location_in_chassis",
    "baseboard_manufacturer",
    "baseboard_product_name",
    "baseboard_serial_number",
    "baseboard_version",
    "battery_device_name",
    "battery_manufacturer",
    "bios",
    "bios_path_override",
    "bios_vendor",
    "bios_version",
    "boot",
    "bootloader",
    "bootloader_args",
    "bootloader_restrict",
    "bootloader_user",
    "builder",
    "channel",
    "cpuid",
    "device_model_args",
    "device_model_args_hvm",
    "device_model_args_pv",
    "device_model_override",
    "device_model_stubdomain_override",
    "device_model_stubdomain_seclabel",
    "device_model_user",
    "device_model_version",
    "device_tree",
    "disk",
    "dm_restrict",
    "driver_domain",
    "dtdev",
    "e820_host",
    "enclosure_asset_tag",
    "enclosure_manufacturer",
    "enclosure_serial_number",
    "firmware",
    "gfx_passthru",
    "gic_version",
    "hap",
    "hdtype",
    "hpet",
    "hvm_pirq",
    "init_seclabel",
    "iomem",
    "ioports",
    "irqs",
    "keymap",
    "llc_colors",
    "latency",
    "localtime",
    "max_event_channels",
    "max_grant_frames",
    "max_grant_version",
    "max_maptrack_frames",
    "maxmem",
    "maxvcpus",
    "mca_caps",
    "mmio_hole",
    "ms_vm_genid",
    "msr_relaxed",
    "nestedhvm",
    "nographic",
    "nomigrate",
    "nr_spis",
    "nx",
    "oem",
    "on_crash",
    "on_poweroff",
    "on_reboot",
    "on_soft_reset",
    "on_watchdog",
    "oos",
    "p9",
    "pae",
    "passthrough",
    "pci",
    "pci_msitranslate",
    "pci_permissive",
    "pci_power_mgmt",
    "pci_seize",
    "pvcalls",
    "pvshim",
    "pvshim_cmdline",
    "pvshim_extra",
    "pvshim_path",
    "rdm",
    "rdm_mem_boundary",
    "rtc_timeoffset",
    "sdl",
    "seclabel",
    "serial",
    "shadow_memory",
    "smbios",
    "smbios_firmware",
    "soundhw",
    "spice",
    "spice_clipboard_sharing",
    "spice_image_compression",
    "spice_streaming_video",
    "spiceagent_mouse",
    "spicedisable_ticketing",
    "spicehost",
    "spicepasswd",
    "spiceport",
    "spicetls_port",
    "spiceusbredirection",
    "spicevdagent",
    "stdvga",
    "stubdomain_cmdline",
    "stubdomain_kernel",
    "stubdomain_memory",
    "stubdomain_ramdisk",
    "sve",
    "system_manufacturer",
    "system_product_name",
    "system_serial_number",
    "system_version",
    "tee",
    "timer_mode",
    "trap_unmapped_accesses",
    "tsc_mode",
    "usb",
    "usbctrl",
    "usbdev",
    "usbdevice",
    "usbversion",
    "uuid",
    "vdispl",
    "vendor_device",
    "vfb",
    "vga",
    "videoram",
    "vif",
    "viridian",
    "virtio",
    "vkb",
    "vkb_device",
    "vmtrace_buf_kb",
    "vnc",
    "vncdisplay",
    "vnclisten",
    "vncpasswd",
    "vncunused",
    "vnuma",
    "vpmu",
    "vpt_align",
    "vsnd",
    "vtpm",
    "vuart",
    "xen_platform_pci",
    "xen_platform_pci_bar_uc",
    "xend_suspend_evtchn_compat",
    "xenstore_feature_mask",
    "xenstore_quota",
];

fn domain_from_settings(settings: &[Setting]) -> Result<DomainConfig, ConfigError> {
    let mut policy_params = DomainParams::new();
    let mut param_lines = Vec::new();
    let mut warnings = Vec::new();
    for s in settings
        .iter()
        .filter(|s| !DOMAIN_KEYS.contains(&s.key.as_str()))
    {
        if XL_DOMAIN_KEYS_UNUSED.contains(&s.key.as_str()) {
            warnings.push(ConfigWarning {
                line: s.line,
                key: s.key.clone(),
                why: XL_KEY_UNUSED,
            });
            continue;
        }
        let value = match &s.value {
            Value::Int(n) => format!("{n}"),
            Value::Str(text)
                if !text.is_empty() && text.chars().all(|c| c.is_ascii_graphic() && c != '=') =>
            {
                text.clone()
            }
            // Not a policy parameter (those are one word or number): a key
            // neither xl nor Tarn has.
            Value::List(_) => {
                warnings.push(ConfigWarning {
                    line: s.line,
                    key: s.key.clone(),
                    why: NOT_XL_KEY,
                });
                continue;
            }
            Value::Str(_) => return Err(bad(s, "a policy parameter is one word or number")),
        };
        policy_params.set(&s.key, &value);
        param_lines.push((s.key.clone(), s.line));
    }
    let name = string_of(find(settings, "name").ok_or_else(|| missing("name"))?)?;
    let pool = find(settings, "pool").map(string_of).transpose()?;
    let image = match (find(settings, "image"), find(settings, "kernel")) {
        (Some(_), Some(k)) => return Err(bad(k, "give image or kernel, not both")),
        (Some(s), None) | (None, Some(s)) => string_of(s)?,
        (None, None) => return Err(missing("image")),
    };
    let kind = match find(settings, "type") {
        None => DomainType::Native,
        Some(s) => match string_of(s)?.as_str() {
            "pv" | "native" => DomainType::Native,
            "hvm" | "pvh" => DomainType::Hvm,
            _ => return Err(bad(s, "type must be pv, pvh or hvm")),
        },
    };
    let vcpus = match find(settings, "vcpus") {
        None => 1,
        Some(s) => int_of(s, 1, MAX_CPUS as u64, "vcpus must be 1..1024")?,
    };
    let memory_mib = find(settings, "memory")
        .map(|s| int_of(s, 1, u32::MAX as u64, "memory in MiB, at least 1"))
        .transpose()?;
    let mut params = DomainParams::new();
    if let Some(s) = find(settings, "cpu_weight") {
        let weight: u32 = int_of(s, 1, 65535, "weight must be 1..65535")?;
        params.set("weight", &format!("{weight}"));
    }
    let cap = match (find(settings, "cap"), find(settings, "cpu_cap")) {
        (Some(_), Some(c)) => return Err(bad(c, "give cap or cpu_cap, not both")),
        (Some(s), None) | (None, Some(s)) => Some(s),
        (None, None) => None,
    };
    if let Some(s) = cap {
        let cap: u32 = int_of(s, 0, MAX_CPUS as u64 * 100, "cap in percent of one CPU")?;
        params.set("cap", &format!("{cap}"));
    }
    let period = find(settings, "period");
    let slice = find(settings, "slice");
    // xl's `extra` is the kernel command line (a string); SEDF's is 0 or 1.
    let (extra, extra_line) = match find(settings, "extra") {
        Some(s) if matches!(s.value, Value::Str(_)) => (None, Some(s)),
        other => (other, None),
    };
    let extra = match (extra, find(settings, "extratime")) {
        (Some(_), Some(e)) => return Err(bad(e, "give extratime or a numeric extra, not both")),
        (Some(s), None) | (None, Some(s)) => Some(s),
        (None, None) => None,
    };
    if period.is_some() || slice.is_some() || extra.is_some() {
        let period_s = period.ok_or_else(|| missing("period"))?;
        let slice_s = slice.ok_or_else(|| missing("slice"))?;
        let period_ms = int_of(period_s, 1, u32::MAX as u64, "period in ms, at least 1")?;
        let slice_ms = int_of(slice_s, 0, u32::MAX as u64, "slice in ms")?;
        if slice_ms > period_ms {
            return Err(bad(slice_s, "slice must not exceed period"));
        }
        let extra = match extra {
            None => false,
            Some(s) => int_of(s, 0, 1, "extratime must be 0 or 1")? == 1,
        };
        params.set("period", &format!("{period_ms}"));
        params.set("slice", &format!("{slice_ms}"));
        params.set("extra", if extra { "1" } else { "0" });
    }
    let cmdline = match (find(settings, "cmdline"), extra_line) {
        (Some(_), Some(e)) => return Err(bad(e, "give cmdline or extra, not both")),
        (Some(s), None) | (None, Some(s)) => Some(string_of(s)?),
        (None, None) => None,
    };
    // xl.cfg(5): `root` is prepended to the command line as `root=ROOT`.
    let cmdline = match find(settings, "root") {
        None => cmdline,
        Some(s) => {
            let root = format!("root={}", string_of(s)?);
            Some(match cmdline {
                Some(rest) if !rest.is_empty() => format!("{root} {rest}"),
                _ => root,
            })
        }
    };
    // xl.cfg(5): the first `vcpus` online, the rest up to `maxvcpus`
    // offline; xl refuses `maxvcpus < vcpus`.
    let maxvcpus = match find(settings, "maxvcpus") {
        None => None,
        Some(s) => {
            let max = int_of(s, 1, MAX_CPUS as u64, "maxvcpus must be 1..1024")?;
            if max < vcpus {
                return Err(bad(s, "maxvcpus must be at least vcpus"));
            }
            Some(max)
        }
    };
    let domain_cpus = |key: &str| -> Result<Option<alloc::boxed::Box<DomainCpus>>, ConfigError> {
        let Some(s) = find(settings, key) else {
            return Ok(None);
        };
        Ok(Some(alloc::boxed::Box::new(DomainCpus {
            line: s.line,
            every: !matches!(s.value, Value::List(_)),
            lists: match &s.value {
                Value::Str(text) => alloc::vec![text.clone()],
                Value::Int(n) => alloc::vec![format!("{n}")],
                Value::List(items) => items
                    .iter()
                    .map(|item| match item {
                        Value::Str(text) => Ok(text.clone()),
                        Value::Int(n) => Ok(format!("{n}")),
                        Value::List(_) => Err(bad(s, "expected a CPU list or a list of them")),
                    })
                    .collect::<Result<_, _>>()?,
            },
        })))
    };
    let cpus = domain_cpus("cpus")?;
    let cpus_soft = domain_cpus("cpus_soft")?;
    let ramdisk = find(settings, "ramdisk").map(string_of).transpose()?;
    if let Some(s) = find(settings, "ramdisk") {
        if kind != DomainType::Hvm {
            return Err(bad(s, "ramdisk needs type = \"pvh\" or \"hvm\""));
        }
    }
    Ok(DomainConfig {
        name,
        pool,
        image,
        kind,
        vcpus,
        maxvcpus,
        memory_mib,
        params,
        policy_params,
        cmdline,
        ramdisk,
        param_lines,
        warnings,
        cpus,
        cpus_soft,
    })
}

/// Parse an xl.cfg domain config file.
pub fn parse_domain_config(text: &str) -> Result<DomainConfig, ConfigError> {
    domain_from_settings(&parse_settings(text, Form::File)?)
}

/// Parse an xl.cfg domain config file with `overrides` (xl's `create FILE
/// var=value...`).
pub fn parse_domain_config_with(
    text: &str,
    overrides: &[Setting],
) -> Result<DomainConfig, ConfigError> {
    domain_from_settings(&with_overrides(
        parse_settings(text, Form::File)?,
        overrides,
    ))
}

/// Parse the inline domain form (`name=d1 pool=lic image=spin cpu_weight=512`).
/// Its warnings name the key, not a position on the line.
pub fn parse_domain_inline(text: &str) -> Result<DomainConfig, ConfigError> {
    let mut config = domain_from_settings(&parse_settings(text, Form::Inline)?)?;
    for w in &mut config.warnings {
        w.line = 0;
    }
    for (_, line) in &mut config.param_lines {
        *line = 0;
    }
    for cpus in [&mut config.cpus, &mut config.cpus_soft]
        .into_iter()
        .flatten()
    {
        cpus.line = 0;
    }
    Ok(config)
}

#[cfg(test)]
mod tests;
