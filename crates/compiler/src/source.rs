//! How the compiler reads its inputs: through [`SourceReader`], so that it can be driven from
//! memory (tests, fuzzing, editors) as easily as from disk.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Read access to definition files and the files they name (install scripts).
pub trait SourceReader: Sync {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn is_dir(&self, path: &Path) -> bool;
    /// The entries of a directory (files and directories), in any order.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    fn exists(&self, path: &Path) -> bool;
    /// Whether `path` is a symbolic link (to anything). The directory walk does not enter
    /// directories reached through a link; readers without links keep the default.
    fn is_symlink(&self, _path: &Path) -> bool {
        false
    }
    /// The file's identity, the same for every path that reaches it (through links, `..`):
    /// the walk reads each identity once. Readers without links keep the default.
    fn identity(&self, path: &Path) -> PathBuf {
        path.to_path_buf()
    }
}

/// The real file system.
pub struct FsReader;

impl SourceReader for FsReader {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        read_limited(path, crate::yaml::MAX_FILE_BYTES)
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(path)?.map(|e| e.map(|e| e.path())).collect()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn is_symlink(&self, path: &Path) -> bool {
        path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink())
    }

    fn identity(&self, path: &Path) -> PathBuf {
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
    }
}

/// Reads at most `limit + 1` bytes of `path`: enough for the caller to see that a file is over
/// its limit without reading all of it (a definition linked to `/dev/zero` or a huge log).
pub fn read_limited(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut bytes = Vec::new();
    file.take(cap).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Files held in memory, by path.
#[derive(Default)]
pub struct MemoryReader {
    files: BTreeMap<PathBuf, Vec<u8>>,
}

impl MemoryReader {
    pub fn new() -> Self {
        MemoryReader::default()
    }

    pub fn with(mut self, path: impl Into<PathBuf>, content: impl Into<Vec<u8>>) -> Self {
        self.files.insert(path.into(), content.into());
        self
    }
}

impl SourceReader for MemoryReader {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files.get(path).cloned().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }

    fn is_dir(&self, path: &Path) -> bool {
        !self.files.contains_key(path) && self.files.keys().any(|p| p.starts_with(path) && p != path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = self
            .files
            .keys()
            .filter_map(|p| {
                let rest = p.strip_prefix(path).ok()?;
                let first = rest.components().next()?;
                Some(path.join(first))
            })
            .collect();
        out.dedup();
        Ok(out)
    }

    fn exists(&self, path: &Path) -> bool {
        self.files.contains_key(path) || self.is_dir(path)
    }
}

/// A definition file or directory that could not be read.
#[derive(Debug)]
pub struct SourceError {
    pub path: PathBuf,
    pub error: io::Error,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot read `{}`: {}", self.path.display(), self.error)
    }
}

impl std::error::Error for SourceError {}

fn is_definition_file(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// Expands files and directories (recursively, `*.yaml` and `*.yml`, skipping hidden
/// directories) into a sorted list of files, each file once.
///
/// Symbolic links: a root named on the command line is followed wherever it points. Inside
/// the walk, a link to a directory is never entered (a link back to `.` would otherwise
/// repeat every file, and two such links never end); a link to a file is read, but a file
/// reached by several paths (a link and its target, two links) is read once, under the
/// first of its paths in sorted order.
pub fn expand(reader: &dyn SourceReader, roots: &[PathBuf]) -> Result<Vec<PathBuf>, SourceError> {
    let mut out = Vec::new();
    for root in roots {
        if reader.is_dir(root) {
            let before = out.len();
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let entries = reader.read_dir(&dir).map_err(|error| SourceError { path: dir.clone(), error })?;
                for entry in entries {
                    let hidden = entry
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.') || n == "node_modules" || n == "target");
                    if reader.is_dir(&entry) {
                        if !hidden && !reader.is_symlink(&entry) {
                            stack.push(entry);
                        }
                    } else if is_definition_file(&entry) {
                        out.push(entry);
                    }
                }
            }
            // A CI job pointed at the wrong folder must not go green having checked nothing.
            if out.len() == before {
                return Err(SourceError {
                    path: root.clone(),
                    error: io::Error::other("the directory holds no definition files (*.yaml, *.yml)"),
                });
            }
        } else if reader.exists(root) {
            out.push(root.clone());
        } else {
            return Err(SourceError {
                path: root.clone(),
                error: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
            });
        }
    }
    out.sort();
    out.dedup();
    let mut seen = std::collections::HashSet::new();
    out.retain(|path| seen.insert(reader.identity(path)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn links_are_walked_once_and_loops_end() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let root = dir.path().join("defs");
        let sub = root.join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(root.join("a.yaml"), "kind: x\n").unwrap();
        std::fs::write(sub.join("b.yml"), "kind: y\n").unwrap();
        // Two loops (either alone repeats every file; together they never end when followed),
        // a link to a file in the tree, and a link to a directory outside it.
        symlink(".", root.join("loop")).unwrap();
        symlink("..", sub.join("up")).unwrap();
        symlink("../a.yaml", sub.join("also-a.yaml")).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("c.yaml"), "kind: z\n").unwrap();
        symlink(&outside, root.join("linked-dir")).unwrap();

        let files = expand(&FsReader, std::slice::from_ref(&root)).unwrap();
        assert_eq!(files, vec![root.join("a.yaml"), sub.join("b.yml")]);

        // A root named explicitly is followed, and its files are still read once.
        let files = expand(&FsReader, &[root.join("linked-dir"), outside.join("c.yaml")]).unwrap();
        assert_eq!(files, vec![root.join("linked-dir/c.yaml")]);
    }
}
