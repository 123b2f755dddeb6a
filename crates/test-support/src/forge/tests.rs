use super::*;

const WAIT: Duration = Duration::from_secs(10);
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn github(client: &reqwest::Client, url: String, token: &str) -> reqwest::RequestBuilder {
    client
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
        .header("user-agent", "slipway-test")
}

fn status_body(description: &str) -> Value {
    json!({
        "state": "pending",
        "context": "slipway/hello",
        "description": description,
        "target_url": "http://slipway.test/tasks/1",
    })
}

/// An App JWT as GitHub wants it, signed with `key`.
fn jwt(iss: &str, lifetime: i64) -> String {
    let now = epoch_secs(SystemTime::now());
    let claims = json!({ "iat": now - 60, "exp": now - 60 + lifetime, "iss": iss });
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(FakeForge::app_key_pem()).expect("test key parses");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .expect("signs")
}

#[tokio::test]
async fn github_statuses_check_credentials_headers_and_body() {
    let forge = FakeForge::start().await;
    forge.github_token("ghp_good");
    let client = reqwest::Client::new();
    let url = format!("{}/repos/acme/hello/statuses/{SHA}", forge.base());

    let ok = github(&client, url.clone(), "ghp_good")
        .json(&status_body("queued"))
        .send()
        .await
        .expect("sent");
    assert_eq!(ok.status(), 201);

    let cases = [
        (
            github(&client, url.clone(), "ghp_bad").json(&status_body("x")),
            401,
        ),
        (
            github(&client, url.clone(), "ghp_good").json(&status_body(&"x".repeat(141))),
            422,
        ),
        (
            github(
                &client,
                format!("{}/repos/acme/hello/statuses/main", forge.base()),
                "ghp_good",
            )
            .json(&status_body("x")),
            422,
        ),
        (
            github(&client, url.clone(), "ghp_good")
                .json(&json!({"state": "running", "context": "c"})),
            422,
        ),
        (
            client
                .post(url.clone())
                .bearer_auth("ghp_good")
                .header("user-agent", "slipway-test")
                .json(&status_body("x")),
            400,
        ),
    ];
    for (request, want) in cases {
        let answer = request.send().await.expect("sent");
        assert_eq!(answer.status().as_u16(), want);
    }
    let statuses = forge.wait_for(1, WAIT).await;
    assert_eq!(statuses.len(), 1);
    assert_eq!(
        statuses[0],
        ForgeStatus {
            forge: Forge::GitHub,
            repo: "acme/hello".into(),
            sha: SHA.into(),
            context: "slipway/hello".into(),
            state: "pending".into(),
            description: Some("queued".into()),
            target_url: Some("http://slipway.test/tasks/1".into()),
            auth: Auth::Token("ghp_good".into()),
        }
    );
    assert_eq!(forge.requests().len(), 6);
}

#[tokio::test]
async fn gitlab_statuses_take_an_encoded_project_path() {
    let forge = FakeForge::start().await;
    forge.gitlab_token("glpat");
    let client = reqwest::Client::new();
    let url = format!(
        "{}/api/v4/projects/group%2Fsub%2Fp/statuses/{SHA}",
        forge.base()
    );
    let body = json!({"state": "running", "name": "slipway/hello", "target_url": "http://x/tasks/1", "description": "running"});
    let answer = client
        .post(&url)
        .header("private-token", "glpat")
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(answer.status(), 201);
    let refused = client
        .post(&url)
        .header("private-token", "nope")
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.status(), 401);
    let github_state = client
        .post(&url)
        .header("private-token", "glpat")
        .json(&json!({"state": "failure", "name": "slipway/hello"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(github_state.status(), 400);
    let statuses = forge.wait_for(1, WAIT).await;
    assert_eq!(statuses[0].forge, Forge::GitLab);
    assert_eq!(statuses[0].repo, "group/sub/p");
    assert_eq!(statuses[0].state, "running");
    assert_eq!(statuses[0].auth, Auth::Token("glpat".into()));
}

#[tokio::test]
async fn app_tokens_need_a_signed_jwt_and_are_limited_to_their_repository() {
    let forge = FakeForge::start().await;
    forge.install_app(7, "acme");
    let client = reqwest::Client::new();
    let url = format!("{}/app/installations/7/access_tokens", forge.base());
    let body = json!({"repositories": ["hello"], "permissions": {"statuses": "write"}});

    let cases = [
        (jwt("1", 540), 401),
        (jwt(&FakeForge::APP_ID.to_string(), 900), 401),
        ("not.a.jwt".to_owned(), 401),
    ];
    for (token, want) in cases {
        let answer = github(&client, url.clone(), &token)
            .json(&body)
            .send()
            .await
            .expect("sent");
        assert_eq!(answer.status().as_u16(), want, "{token}");
    }
    let good = jwt(&FakeForge::APP_ID.to_string(), 540);
    let unknown = github(
        &client,
        format!("{}/app/installations/8/access_tokens", forge.base()),
        &good,
    )
    .json(&body)
    .send()
    .await
    .expect("sent");
    assert_eq!(unknown.status(), 404);
    let minted: Value = github(&client, url, &good)
        .json(&body)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let token = minted["token"].as_str().expect("a token").to_owned();
    assert!(token.starts_with("ghs_"));
    assert!(
        minted["expires_at"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
    assert_eq!(forge.token_requests()[0].repositories, ["hello"]);

    let status = |repo: &str| {
        github(
            &client,
            format!("{}/repos/{repo}/statuses/{SHA}", forge.base()),
            &token,
        )
        .json(&status_body("queued"))
        .send()
    };
    assert_eq!(status("acme/hello").await.expect("sent").status(), 201);
    assert_eq!(status("acme/other").await.expect("sent").status(), 403);
    let statuses = forge.wait_for(1, WAIT).await;
    assert_eq!(statuses[0].auth, Auth::Installation { id: 7, token });
}

#[tokio::test]
async fn scripted_faults_then_down_and_up_on_the_same_port() {
    let forge = FakeForge::start().await;
    forge.github_token("t");
    let client = reqwest::Client::new();
    let url = format!("{}/repos/acme/hello/statuses/{SHA}", forge.base());
    let send = || {
        github(&client, url.clone(), "t")
            .json(&status_body("x"))
            .send()
    };

    forge.fail_next(Route::Statuses, 1, Fault::ServerError);
    forge.fail_next(
        Route::Statuses,
        1,
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
    );
    forge.fail_next(Route::Statuses, 1, Fault::RateLimited { reset_in_secs: 30 });
    assert_eq!(send().await.expect("sent").status(), 500);
    let too_many = send().await.expect("sent");
    assert_eq!(too_many.status(), 429);
    assert_eq!(too_many.headers()["retry-after"], "1");
    let limited = send().await.expect("sent");
    assert_eq!(limited.status(), 403);
    assert_eq!(limited.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(send().await.expect("sent").status(), 201);

    forge.down().await;
    let refused = send().await.expect_err("down");
    assert!(refused.is_connect(), "{refused}");
    forge.up().await;
    assert_eq!(send().await.expect("sent").status(), 201);
    assert_eq!(forge.wait_for(2, WAIT).await.len(), 2);
}

#[tokio::test]
#[should_panic(expected = "expected 1 status(es) within")]
async fn wait_for_panics_with_what_arrived() {
    let forge = FakeForge::start().await;
    forge.wait_for(1, Duration::from_millis(100)).await;
}
