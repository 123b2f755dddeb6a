//! Paths a repository names (`image.context`, `image.dockerfile`, a compose
//! target's `file`) are input like any other: a repository can make one a
//! symlink to `/`. They are resolved here, links followed, and must stay in
//! the task's workspace.

use std::path::{Path, PathBuf};

/// `relative` under `workspace` with its symlinks followed, which must stay
/// in the workspace (a repository can make its context a link to `/`);
/// `None` when nothing is there. `key` names it in an error.
pub fn resolve(workspace: &Path, relative: &Path, key: &str) -> Result<Option<PathBuf>, String> {
    let root = workspace
        .canonicalize()
        .map_err(|e| format!("workspace {}: {e}", workspace.display()))?;
    match root.join(relative).canonicalize() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{key} \"{}\": {e}", relative.display())),
        Ok(resolved) if resolved.starts_with(&root) => Ok(Some(resolved)),
        Ok(_) => Err(format!(
            "{key} \"{}\" resolves outside the workspace",
            relative.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_and_dockerfile_stay_in_the_workspace() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(ws.join("app")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(ws.join("app/Dockerfile"), "FROM scratch\n")
            .unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("/", ws.join("root")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("outside"), "x").unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("../../outside", ws.join("app/Evil"))
            .unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("app", ws.join("alias")).unwrap_or_else(|e| panic!("{e}"));
        let found = resolve(&ws, Path::new("alias/Dockerfile"), "image.dockerfile");
        assert!(matches!(found, Ok(Some(p)) if p.ends_with("ws/app/Dockerfile")));
        assert_eq!(
            resolve(&ws, Path::new("app/Nothing"), "image.dockerfile"),
            Ok(None)
        );
        assert_eq!(
            resolve(&ws, Path::new("root"), "image.context"),
            Err("image.context \"root\" resolves outside the workspace".to_owned())
        );
        assert_eq!(
            resolve(&ws, Path::new("app/Evil"), "image.dockerfile"),
            Err("image.dockerfile \"app/Evil\" resolves outside the workspace".to_owned())
        );
    }
}
