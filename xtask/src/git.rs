//! Local repositories for the bundled example and the bench's apps: a bare
//! repository the runner clones over `file://`, and a work tree beside it
//! that commits are made in and pushed from.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::sys;

/// An example's workflow with `url` as its repository: only the `repo:`
/// key's `{{repo}}` is replaced, not the mentions of the placeholder in
/// comments that explain it.
pub fn with_repo(template: &str, url: &str) -> String {
    template
        .split_inclusive('\n')
        .map(|line| {
            if line.trim_start().starts_with("repo:") {
                line.replace("{{repo}}", url)
            } else {
                line.to_owned()
            }
        })
        .collect()
}

pub struct LocalRepo {
    /// The bare repository, which workflows name as `file://<bare>`.
    pub bare: PathBuf,
    /// A clone of it on `main`, for writing and committing files.
    work: PathBuf,
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    sys::output(
        Command::new("git")
            .args([
                "-c",
                "user.name=Slipway",
                "-c",
                "user.email=slipway@localhost",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(dir),
    )
}

impl LocalRepo {
    /// `<dir>/<name>.git` (created when missing) and a fresh clone of it in
    /// `<dir>/<name>-work`.
    pub fn open(dir: &Path, name: &str) -> Result<Self> {
        let bare = dir.join(format!("{name}.git"));
        let work = dir.join(format!("{name}-work"));
        fs::create_dir_all(dir)?;
        if !bare.join("HEAD").is_file() {
            git(
                dir,
                &[
                    "init",
                    "-q",
                    "--bare",
                    "-b",
                    "main",
                    bare.to_str().context("path is not UTF-8")?,
                ],
            )?;
        }
        let _ = fs::remove_dir_all(&work);
        git(
            dir,
            &[
                "clone",
                "-q",
                bare.to_str().context("path is not UTF-8")?,
                work.to_str().context("path is not UTF-8")?,
            ],
        )?;
        let _ = git(&work, &["checkout", "-q", "-B", "main"]);
        Ok(Self { bare, work })
    }

    /// `file://` URL of the bare repository.
    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Writes `content` to `path` in the work tree.
    pub fn write(&self, path: &str, content: &[u8]) -> Result<()> {
        let to = self.work.join(path);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&to, content).with_context(|| format!("cannot write {}", to.display()))
    }

    /// Makes `path` in the work tree executable (git keeps the bit).
    pub fn make_executable(&self, path: &str) -> Result<()> {
        let path = self.work.join(path);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot chmod {}", path.display()))
    }

    /// Commits everything in the work tree (if anything changed) and pushes
    /// it; returns the commit `main` points at.
    pub fn commit(&self, message: &str) -> Result<String> {
        git(&self.work, &["add", "-A"])?;
        if !git(&self.work, &["status", "--porcelain"])?
            .trim()
            .is_empty()
        {
            git(&self.work, &["commit", "-q", "-m", message])?;
            git(&self.work, &["push", "-q", "origin", "main"])?;
        }
        Ok(git(&self.work, &["rev-parse", "HEAD"])?.trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::with_repo;

    #[test]
    fn only_the_repo_key_takes_the_path() {
        let template = "# `cargo xtask up` replaces {{repo}} with a local repository.\nname: hello\nrepo: {{repo}}\nsteps: []\n";
        assert_eq!(
            with_repo(template, "file:///tmp/r.git"),
            "# `cargo xtask up` replaces {{repo}} with a local repository.\nname: hello\nrepo: file:///tmp/r.git\nsteps: []\n"
        );
    }
}
