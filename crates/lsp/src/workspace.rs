//! The definition files the server knows: every YAML file of the workspace's definitions, as
//! on disk or as the editor holds it while it is open, with each file's names
//! ([`provflow_compiler::symbols`]) and the compiler's diagnostics for the whole bundle.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use provflow_compiler::check::{CheckCache, Memo, MemoKeys};
use provflow_compiler::diagnostic::Diagnostic;
use provflow_compiler::source::{FsReader, SourceReader};
use provflow_compiler::symbols::{self, FileSymbols, Occurrence, Scope, SymbolKind};
use provflow_compiler::{LoadedDoc, LoadedFile, SourceFile};

/// One definition file.
pub struct File {
    pub text: String,
    /// Open in the editor (its text is the editor's, not the disk's).
    pub open: bool,
    pub symbols: FileSymbols,
    /// The file through the compiler's phases 2–4, for the text above; `None` once the text
    /// changed (it is loaded again, alone, at the next compile).
    loaded: Option<LoadedFile>,
    /// The fingerprint of each of `loaded`'s documents (path, position and text), the keys of
    /// the compiler's memo.
    fingerprints: Vec<u64>,
}

/// A name's identity: what it names, the process / query set / scenario it belongs to, and the
/// name itself.
pub type Key = (SymbolKind, String, String);

pub struct Workspace {
    /// Where definitions are read from: `definitions/` under the workspace folder when there
    /// is one, else the folder.
    pub roots: Vec<PathBuf>,
    pub files: BTreeMap<PathBuf, File>,
    pub diagnostics: BTreeMap<PathBuf, Vec<Diagnostic>>,
    /// The semantic passes' results by document, between compiles.
    memo: CheckCache,
}

/// What a compile changed: the diagnostics by file before it, and the files it loaded again
/// because their text changed (every file, the first time).
pub struct Compiled {
    pub before: BTreeMap<PathBuf, Vec<Diagnostic>>,
    pub reloaded: BTreeSet<PathBuf>,
}

/// Reads open files from the editor's text and everything else from disk (install scripts,
/// files not open).
struct Overlay<'a> {
    files: &'a BTreeMap<PathBuf, File>,
}

impl SourceReader for Overlay<'_> {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        match self.files.get(path) {
            Some(f) => Ok(f.text.clone().into_bytes()),
            None => FsReader.read(path),
        }
    }
    fn is_dir(&self, path: &Path) -> bool {
        FsReader.is_dir(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        FsReader.read_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.files.contains_key(path) || FsReader.exists(path)
    }
}

fn is_yaml(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "yaml" || e == "yml")
}

impl Workspace {
    /// The workspace of `folders` (none: only the files the editor opens).
    pub fn new(folders: Vec<PathBuf>) -> Workspace {
        let roots = folders
            .into_iter()
            .map(|f| {
                let definitions = f.join("definitions");
                if definitions.is_dir() {
                    definitions
                } else {
                    f
                }
            })
            .collect();
        let mut ws =
            Workspace { roots, files: BTreeMap::new(), diagnostics: BTreeMap::new(), memo: CheckCache::default() };
        ws.reload_from_disk();
        ws
    }

    /// Reads every definition file under the roots again (open files keep the editor's text).
    pub fn reload_from_disk(&mut self) {
        // Install scripts may have changed: the memo does not know them.
        self.memo.clear();
        let paths = provflow_compiler::source::expand(&FsReader, &self.roots).unwrap_or_default();
        let on_disk: BTreeSet<PathBuf> = paths.iter().filter(|p| is_yaml(p)).cloned().collect();
        self.files.retain(|path, f| f.open || on_disk.contains(path));
        for path in on_disk {
            if self.files.get(&path).is_some_and(|f| f.open) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            self.set(path, text, false);
        }
    }

    /// Whether `path` is a definition file: a YAML file under the roots (any YAML file when
    /// the editor gave no workspace folder).
    pub fn is_definition(&self, path: &Path) -> bool {
        is_yaml(path) && (self.roots.is_empty() || self.roots.iter().any(|r| path.starts_with(r)))
    }

    pub fn set(&mut self, path: PathBuf, text: String, open: bool) {
        if let Some(f) = self.files.get_mut(&path) {
            f.open = open;
            if f.text == text {
                return;
            }
        }
        let symbols = symbols::index(&text);
        self.files.insert(path, File { text, open, symbols, loaded: None, fingerprints: Vec::new() });
    }

    /// The editor closed the file: the disk's text counts again (or the file is forgotten when
    /// it is not a definition file on disk).
    pub fn close(&mut self, path: &Path) {
        match std::fs::read_to_string(path) {
            Ok(text) if self.is_definition(path) => self.set(path.to_path_buf(), text, false),
            _ => {
                self.files.remove(path);
            }
        }
    }

    /// Compiles the whole workspace as it stands and keeps the diagnostics by file. Only the
    /// files whose text changed since the last compile are read and checked structurally
    /// again; the semantic passes run over the whole bundle.
    pub fn compile(&mut self) -> Compiled {
        // Take every file's loaded documents out (numbered by their position now), check them
        // together, and put them back.
        let mut files: Vec<SourceFile> = Vec::with_capacity(self.files.len());
        let mut docs: Vec<LoadedDoc> = Vec::new();
        let mut load_diagnostics: Vec<Diagnostic> = Vec::new();
        let mut counts: Vec<usize> = Vec::with_capacity(self.files.len());
        let mut kept: Vec<Vec<Diagnostic>> = Vec::with_capacity(self.files.len());
        let mut fingerprints: Vec<u64> = Vec::new();
        let mut reloaded = BTreeSet::new();
        for (index, (path, f)) in self.files.iter_mut().enumerate() {
            let loaded = match f.loaded.take() {
                Some(l) => l,
                None => {
                    reloaded.insert(path.clone());
                    let l = provflow_compiler::load(index, path, f.text.clone().into_bytes());
                    let name = l.file.path.clone();
                    f.fingerprints = l
                        .docs
                        .iter()
                        .map(|d| {
                            let (start, end) = (d.root.start, d.root.end.max(d.root.start));
                            MemoKeys::document(&name, d.root.line, f.text.get(start..end).unwrap_or(""))
                        })
                        .collect();
                    l
                }
            };
            fingerprints.extend(f.fingerprints.iter().copied());
            counts.push(loaded.docs.len());
            files.push(loaded.file);
            load_diagnostics.extend(loaded.diagnostics.iter().cloned());
            kept.push(loaded.diagnostics);
            docs.extend(loaded.docs.into_iter().map(|mut doc| {
                doc.file = index;
                doc
            }));
        }
        let diagnostics = provflow_compiler::diagnose_loaded(
            &Overlay { files: &self.files },
            &files,
            &docs,
            load_diagnostics,
            Memo { fingerprints: &fingerprints, cache: &self.memo },
        );
        let mut docs = docs.into_iter();
        for (((f, file), count), diagnostics) in self.files.values_mut().zip(files).zip(counts).zip(kept) {
            f.loaded = Some(LoadedFile { file, docs: docs.by_ref().take(count).collect(), diagnostics });
        }
        let mut by_file: BTreeMap<PathBuf, Vec<Diagnostic>> = BTreeMap::new();
        for d in diagnostics {
            by_file.entry(PathBuf::from(&d.file)).or_default().push(d);
        }
        Compiled { before: std::mem::replace(&mut self.diagnostics, by_file), reloaded }
    }

    /// The query set of each target.
    fn target_sets(&self) -> BTreeMap<&str, &str> {
        self.files.values().flat_map(|f| f.symbols.target_sets.iter().map(|(t, s)| (t.as_str(), s.as_str()))).collect()
    }

    /// The identity of the name an occurrence stands for.
    pub fn key(&self, o: &Occurrence) -> Key {
        (o.kind, self.scope_name(&o.scope), o.name.clone())
    }

    pub fn scope_name(&self, scope: &Scope) -> String {
        match scope {
            Scope::Global => String::new(),
            Scope::In(s) => s.clone(),
            Scope::SetOfTarget(t) => self.target_sets().get(t.as_str()).map(|s| (*s).to_string()).unwrap_or_default(),
        }
    }

    /// The occurrence at byte `offset` of `path` (its name's range includes the offset, or
    /// ends right at it).
    pub fn occurrence_at(&self, path: &Path, offset: usize) -> Option<&Occurrence> {
        let file = self.files.get(path)?;
        file.symbols.occurrences.iter().find(|o| o.start <= offset && offset <= o.end)
    }

    /// Every occurrence of `key`, with its file.
    pub fn occurrences_of(&self, key: &Key) -> Vec<(&Path, &Occurrence)> {
        let mut out = Vec::new();
        for (path, file) in &self.files {
            for o in &file.symbols.occurrences {
                if o.kind == key.0 && o.name == key.2 && self.scope_name(&o.scope) == key.1 {
                    out.push((path.as_path(), o));
                }
            }
        }
        out
    }

    /// The definitions of a kind in a scope (for completion), with their detail.
    pub fn definitions(&self, kind: SymbolKind, scope: &str) -> Vec<&Occurrence> {
        let mut seen = BTreeSet::new();
        self.files
            .values()
            .flat_map(|f| f.symbols.occurrences.iter())
            .filter(|o| o.definition && o.kind == kind && self.scope_name(&o.scope) == scope)
            .filter(|o| seen.insert(o.name.clone()))
            .collect()
    }
}
