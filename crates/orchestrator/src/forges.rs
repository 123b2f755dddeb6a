//! The forges' credentials (forges.md): which tasks report commit statuses
//! and where, and the tokens that send them and clone private
//! repositories. The GitHub App's key stays here: installation tokens are
//! minted per repository, with only the access asked for.

use domain::forge::{Forge, repo_location, url_host, url_origin};
use store::tasks::ForgeTarget;

pub use crate::forge_auth::Access;
use crate::forge_auth::GitHubApp;
use crate::settings::Settings;

/// How Slipway authenticates to GitHub.
enum GitHubAuth {
    /// `SLIPWAY_GITHUB_TOKEN`.
    Token(String),
    /// `SLIPWAY_GITHUB_APP_ID` and its key: a token per installation and
    /// repository.
    App(GitHubApp),
}

/// Why a token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A GitHub App task without an installation (a manual run of a
    /// workflow no GitHub webhook reached yet).
    #[error("no GitHub App installation is known for {0}")]
    NoInstallation(String),
    #[error(transparent)]
    Mint(#[from] crate::forge_auth::Error),
}

impl TokenError {
    /// Whether asking again later may work.
    pub fn is_transient(&self) -> bool {
        match self {
            TokenError::NoInstallation(_) => false,
            TokenError::Mint(e) => e.is_transient(),
        }
    }
}

/// The forges Slipway has credentials for.
pub struct Forges {
    github: Option<GitHubAuth>,
    /// `SLIPWAY_GITHUB_API_URL`, without a trailing `/`.
    github_api: String,
    /// Hosts whose repositories are on GitHub: github.com and the host of a
    /// GitHub Enterprise API.
    github_hosts: Vec<String>,
    gitlab_token: Option<String>,
    /// `SLIPWAY_GITLAB_URL`, without a trailing `/`; `None`: from the event.
    gitlab_url: Option<String>,
    /// gitlab.com and the host of `SLIPWAY_GITLAB_URL`.
    gitlab_hosts: Vec<String>,
}

fn nonempty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

impl Forges {
    /// From the settings; a GitHub App key that cannot be read is an error.
    pub fn from_settings(s: &Settings) -> Result<Forges, String> {
        let github_api = s.github_api_url.trim_end_matches('/').to_owned();
        let github = match (nonempty(&s.github_app_id), nonempty(&s.github_app_key_file)) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(
                    "SLIPWAY_GITHUB_APP_ID and SLIPWAY_GITHUB_APP_KEY_FILE go together".to_owned(),
                );
            }
            (Some(id), Some(key_file)) => {
                let id: u64 = id.parse().map_err(|_| {
                    format!("SLIPWAY_GITHUB_APP_ID: {id:?} is not a GitHub App id (a number)")
                })?;
                let key = std::fs::read(&key_file).map_err(|e| {
                    format!("SLIPWAY_GITHUB_APP_KEY_FILE: cannot read {key_file}: {e}")
                })?;
                let app = GitHubApp::new(id, &key, &github_api).map_err(|e| e.to_string())?;
                Some(GitHubAuth::App(app))
            }
            (None, None) => nonempty(&s.github_token).map(GitHubAuth::Token),
        };
        let mut github_hosts = vec!["github.com".to_owned()];
        if let Some(host) = url_host(&github_api)
            && host != "api.github.com"
        {
            github_hosts.push(host);
        }
        let gitlab_url = nonempty(&s.gitlab_url).map(|u| u.trim_end_matches('/').to_owned());
        let mut gitlab_hosts = vec!["gitlab.com".to_owned()];
        if let Some(host) = gitlab_url.as_deref().and_then(url_host) {
            gitlab_hosts.push(host);
        }
        Ok(Forges {
            github,
            github_api,
            github_hosts,
            gitlab_token: nonempty(&s.gitlab_api_token),
            gitlab_url,
            gitlab_hosts,
        })
    }

    fn configured(&self, forge: Forge) -> bool {
        match forge {
            Forge::GitHub => self.github.is_some(),
            Forge::GitLab => self.gitlab_token.is_some(),
        }
    }

    /// Where a webhook's tasks report, when Slipway has credentials for
    /// its forge.
    pub fn for_event(&self, target: ForgeTarget) -> Option<ForgeTarget> {
        let forge = Forge::parse(&target.forge)?;
        self.configured(forge).then_some(target)
    }

    /// Where a manual run of `repo` reports: a repository on github.com,
    /// gitlab.com, or the configured GitHub Enterprise or GitLab host.
    pub fn for_repo(&self, repo: &str, installation_id: Option<i64>) -> Option<ForgeTarget> {
        let (host, path) = repo_location(repo)?;
        let forge = if self.github_hosts.contains(&host) {
            Forge::GitHub
        } else if self.gitlab_hosts.contains(&host) {
            Forge::GitLab
        } else {
            return None;
        };
        if !self.configured(forge) {
            return None;
        }
        let web_url = (forge == Forge::GitLab).then(|| {
            let origin = url_origin(repo).unwrap_or_else(|| format!("https://{host}"));
            format!("{origin}/{path}")
        });
        Some(ForgeTarget {
            forge: forge.as_str().to_owned(),
            repo: path,
            web_url,
            installation_id: (forge == Forge::GitHub)
                .then_some(installation_id)
                .flatten(),
        })
    }

    /// The API base statuses to `target` go to.
    pub fn api_url(&self, target: &ForgeTarget) -> Option<String> {
        match Forge::parse(&target.forge)? {
            Forge::GitHub => Some(self.github_api.clone()),
            Forge::GitLab => self
                .gitlab_url
                .clone()
                .or_else(|| target.web_url.as_deref().and_then(url_origin)),
        }
    }

    /// A token for `target` with `access`; `None` when Slipway has no
    /// credentials for its forge.
    pub async fn token(
        &self,
        target: &ForgeTarget,
        access: Access,
    ) -> Result<Option<String>, TokenError> {
        match Forge::parse(&target.forge) {
            Some(Forge::GitHub) => match &self.github {
                Some(GitHubAuth::Token(t)) => Ok(Some(t.clone())),
                Some(GitHubAuth::App(app)) => {
                    let installation = target
                        .installation_id
                        .ok_or_else(|| TokenError::NoInstallation(target.repo.clone()))?;
                    Ok(Some(
                        app.installation_token(installation, &target.repo, access)
                            .await?,
                    ))
                }
                None => Ok(None),
            },
            Some(Forge::GitLab) => Ok(self.gitlab_token.clone()),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forges(change: impl FnOnce(&mut Settings)) -> Forges {
        let mut s = Settings::default();
        change(&mut s);
        Forges::from_settings(&s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn manual_runs_report_to_known_hosts() {
        let both = forges(|s| {
            s.github_token = "gh".into();
            s.gitlab_api_token = "gl".into();
            s.gitlab_url = "http://127.0.0.1:9/".into();
        });
        let t = both
            .for_repo("https://github.com/acme/hello.git", Some(5))
            .unwrap();
        assert_eq!(
            (t.forge.as_str(), t.repo.as_str(), t.installation_id),
            ("github", "acme/hello", Some(5))
        );
        let t = both
            .for_repo("http://127.0.0.1:9/group/sub/p.git", None)
            .unwrap();
        assert_eq!(t.forge, "gitlab");
        assert_eq!(t.repo, "group/sub/p");
        assert_eq!(t.web_url.as_deref(), Some("http://127.0.0.1:9/group/sub/p"));
        assert_eq!(both.api_url(&t).as_deref(), Some("http://127.0.0.1:9"));
        assert!(both.for_repo("https://example.com/a/b.git", None).is_none());
        assert!(both.for_repo("file:///srv/a.git", None).is_none());

        let none = forges(|_| {});
        assert!(
            none.for_repo("https://github.com/acme/hello.git", None)
                .is_none()
        );
        let target = ForgeTarget {
            forge: "gitlab".into(),
            repo: "42".into(),
            web_url: Some("https://gitlab.example.com/g/p".into()),
            installation_id: None,
        };
        assert!(none.for_event(target.clone()).is_none());
        let gl = forges(|s| s.gitlab_api_token = "gl".into());
        assert_eq!(
            gl.api_url(&target).as_deref(),
            Some("https://gitlab.example.com")
        );
    }

    #[test]
    fn github_enterprise_hosts() {
        let ghe = forges(|s| {
            s.github_token = "gh".into();
            s.github_api_url = "https://ghe.example.com/api/v3/".into();
        });
        let t = ghe
            .for_repo("https://ghe.example.com/acme/x.git", None)
            .unwrap();
        assert_eq!(t.forge, "github");
        assert_eq!(
            ghe.api_url(&t).as_deref(),
            Some("https://ghe.example.com/api/v3")
        );
    }
}
