//! A local bare repository to push to, as a test's git remote (`file://`).

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct GitRepo {
    _dir: tempfile::TempDir,
    pub bare: PathBuf,
    work: PathBuf,
    pub url: String,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl GitRepo {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let bare = dir.path().join("remote.git");
        let work = dir.path().join("work");
        git(
            dir.path(),
            &["init", "-q", "--bare", "-b", "main", "remote.git"],
        );
        git(dir.path(), &["init", "-q", "-b", "main", "work"]);
        git(
            &work,
            &[
                "remote",
                "add",
                "origin",
                bare.to_str().expect("utf-8 path"),
            ],
        );
        let url = format!("file://{}", bare.display());
        Self {
            _dir: dir,
            bare,
            work,
            url,
        }
    }

    /// Writes the files, commits them on `branch` and pushes; returns the sha.
    pub fn commit(&self, branch: &str, files: &[(&str, &str)], message: &str) -> String {
        let has_commits = Command::new("git")
            .args(["rev-parse", "--verify", "-q", "HEAD"])
            .current_dir(&self.work)
            .output()
            .is_ok_and(|o| o.status.success());
        if has_commits {
            git(&self.work, &["checkout", "-q", "-B", branch]);
        } else {
            git(&self.work, &["checkout", "-q", "--orphan", branch]);
        }
        for (path, content) in files {
            let full = self.work.join(path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(full, content).expect("write file");
        }
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(&self.work, &["push", "-q", "-f", "origin", branch]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Commits the files on top of `branch` and pushes the commit to
    /// `refname` only (e.g. `refs/pull/7/head`, as a forge keeps a pull
    /// request's head), leaving `branch` where it was; returns the sha.
    pub fn commit_to_ref(
        &self,
        branch: &str,
        refname: &str,
        files: &[(&str, &str)],
        message: &str,
    ) -> String {
        git(&self.work, &["checkout", "-q", "--detach", branch]);
        for (path, content) in files {
            std::fs::write(self.work.join(path), content).expect("write file");
        }
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "--allow-empty", "-m", message]);
        git(&self.work, &["push", "-q", "-f", "origin", &format!("HEAD:{refname}")]);
        let sha = git(&self.work, &["rev-parse", "HEAD"]);
        git(&self.work, &["checkout", "-q", branch]);
        sha
    }

    /// Tags HEAD and pushes the tag.
    pub fn tag(&self, tag: &str) -> String {
        git(&self.work, &["tag", "-f", tag]);
        git(&self.work, &["push", "-q", "-f", "origin", tag]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

impl Default for GitRepo {
    fn default() -> Self {
        Self::new()
    }
}
