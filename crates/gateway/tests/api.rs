//! The gateway's HTTP contract (api.md) against a real orchestrator and
//! database: webhook authentication and outcomes, workflow validation and
//! CRUD, authentication and error answers.

use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::hooks::{ZERO_SHA, github_push, github_signature};
use test_support::{GitRepo, Options, Stack};

const SHA: &str = "4f1c2a9b3d5e4f1c2a9b3d5e4f1c2a9b3d5e4f1c";

/// A stack without runners: tasks stay pending, which is all these tests need.
async fn stack() -> Stack {
    Stack::with(Options {
        runners: 0,
        webhook_max_bytes: 64 * 1024,
        ..Options::default()
    })
    .await
}

fn workflow(name: &str, repo: &str, on: &str) -> String {
    format!("name: {name}\nrepo: {repo}\n{on}steps:\n  - name: test\n    run: echo hi\n")
}

async fn task_count(stack: &Stack) -> usize {
    let (status, tasks) = stack.get("/api/tasks").await;
    assert_eq!(status, 200, "{tasks}");
    tasks.as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_is_refused_and_nothing_is_stored() {
    let stack = stack().await;
    let repo = GitRepo::new();
    stack.create_workflow(&workflow("w", &repo.url, "")).await;
    let raw =
        serde_json::to_vec(&github_push(&repo.url, "refs/heads/main", SHA, "m", &[])).unwrap();

    let wrong = github_signature(b"not the secret", &raw);
    let (status, body) = stack
        .github_raw("push", "d-1", raw.clone(), Some(&wrong))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("X-Hub-Signature-256"),
        "{body}"
    );
    let (status, _) = stack.github_raw("push", "d-1", raw.clone(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(task_count(&stack).await, 0);

    // The same delivery id, now signed: not a duplicate, since nothing was stored.
    let good = github_signature(stack.github_secret.as_bytes(), &raw);
    let (status, body) = stack.github_raw("push", "d-1", raw, Some(&good)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(body.get("duplicate").is_none(), "{body}");
    assert_eq!(body["task_ids"].as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_delivery_gets_the_first_answer() {
    let stack = stack().await;
    let repo = GitRepo::new();
    stack.create_workflow(&workflow("w", &repo.url, "")).await;
    let payload = github_push(&repo.url, "refs/heads/main", SHA, "m", &["a"]);
    let (status, first) = stack.github("push", "dup-1", &payload).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, again) = stack.github("push", "dup-1", &payload).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["task_ids"], first["task_ids"]);
    assert_eq!(again["delivery_id"], "dup-1");
    assert_eq!(task_count(&stack).await, 1);

    let task_id = first["task_ids"][0].as_i64().unwrap();
    let task = stack.task(task_id).await;
    assert_eq!(task["status"], "pending");
    assert_eq!(task["delivery_id"], "dup-1");
    assert_eq!(task["commit"], SHA);
    assert_eq!(task["author"], "octocat");
    let names: Vec<&str> = task["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["clone", "test"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_each_get_their_task_and_a_redelivery_the_first_answer() {
    let stack = stack().await;
    let repo = GitRepo::new();
    stack.create_workflow(&workflow("w", &repo.url, "")).await;
    // Stored together in groups: each delivery twice, all at once.
    let sends = (0..40).flat_map(|i| {
        let sha = format!("{:040x}", i + 1);
        let payload = github_push(&repo.url, "refs/heads/main", &sha, "m", &["a"]);
        let stack = &stack;
        [0, 1].map(move |_| {
            let payload = payload.clone();
            async move {
                (
                    i,
                    stack.github("push", &format!("group-{i}"), &payload).await,
                )
            }
        })
    });
    let answers = futures_util::future::join_all(sends).await;
    let mut tasks = std::collections::BTreeSet::new();
    for i in 0..40 {
        let both: Vec<&(StatusCode, Value)> = answers
            .iter()
            .filter(|(n, _)| *n == i)
            .map(|(_, answer)| answer)
            .collect();
        let mut codes: Vec<StatusCode> = both.iter().map(|(code, _)| *code).collect();
        codes.sort();
        assert_eq!(codes, [StatusCode::OK, StatusCode::ACCEPTED], "{both:?}");
        assert_eq!(both[0].1["task_ids"], both[1].1["task_ids"], "{both:?}");
        let ids = both[0].1["task_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(ids.len(), 1, "{both:?}");
        assert!(tasks.insert(ids[0].as_i64()), "{both:?}");
    }
    assert_eq!(task_count(&stack).await, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_deletions_filters_and_other_events() {
    let stack = stack().await;
    let repo = GitRepo::new();
    stack
        .create_workflow(&workflow(
            "filtered",
            &repo.url,
            "on:\n  push:\n    branches: [main, \"release/*\"]\n    tags: [\"v*\"]\n    paths: [\"src/**\"]\n",
        ))
        .await;

    let (status, body) = stack
        .github(
            "ping",
            "p-1",
            &json!({"zen": "Design for failure.", "hook_id": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"pong": true}));

    let (status, body) = stack
        .github("issues", "i-1", &json!({"action": "opened"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["ignored"], "event issues not handled");
    assert_eq!(body["task_ids"], json!([]));

    let cases: &[(&str, &str, &str, &[&str], &str)] = &[
        ("del", "refs/heads/main", ZERO_SHA, &[], "branch deleted"),
        (
            "feat",
            "refs/heads/feature/x",
            SHA,
            &["src/a.go"],
            "branch feature/x",
        ),
        (
            "paths",
            "refs/heads/main",
            SHA,
            &["docs/readme.md"],
            "on.push.paths",
        ),
        ("tag-no", "refs/tags/x1", SHA, &[], "tag x1"),
    ];
    for (delivery, git_ref, after, files, why) in cases {
        let (status, body) = stack
            .github(
                "push",
                delivery,
                &github_push(&repo.url, git_ref, after, "m", files),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{delivery}: {body}");
        assert_eq!(body["task_ids"], json!([]), "{delivery}: {body}");
        let ignored = body["ignored"].as_str().unwrap_or_default();
        assert!(
            ignored.contains(why),
            "{delivery}: {ignored:?} should mention {why:?}"
        );
    }

    let (status, body) = stack
        .github(
            "push",
            "other-repo",
            &github_push(
                "https://github.com/acme/other.git",
                "refs/heads/main",
                SHA,
                "m",
                &[],
            ),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(
        body["ignored"]
            .as_str()
            .unwrap_or_default()
            .starts_with("no workflow for repository"),
        "{body}"
    );

    // What matches: a release branch touching src/, and a v* tag.
    for (delivery, git_ref) in [("rel", "refs/heads/release/1.2"), ("tag", "refs/tags/v1.0")] {
        let (status, body) = stack
            .github(
                "push",
                delivery,
                &github_push(&repo.url, git_ref, SHA, "m", &["src/main.go"]),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(
            body["task_ids"].as_array().map(Vec::len),
            Some(1),
            "{delivery}: {body}"
        );
    }
    let (_, tasks) = stack.get("/api/tasks").await;
    let tagged = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tag"] == "v1.0")
        .expect("the tag task");
    assert_eq!(tagged["branch"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_webhooks() {
    let stack = stack().await;
    let raw = b"{not json".to_vec();
    let sig = github_signature(stack.github_secret.as_bytes(), &raw);
    let (status, body) = stack.github_raw("push", "bad-json", raw, Some(&sig)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("malformed json"),
        "{body}"
    );

    let raw = br#"{"ref": 5}"#.to_vec();
    let sig = github_signature(stack.github_secret.as_bytes(), &raw);
    let (status, body) = stack.github_raw("push", "bad-push", raw, Some(&sig)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let raw = vec![b' '; 64 * 1024 + 1];
    let sig = github_signature(stack.github_secret.as_bytes(), &raw);
    let (status, body) = stack.github_raw("push", "big", raw, Some(&sig)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    // A 40-hex-less `after` is refused by the orchestrator as a bad request.
    let payload = github_push("file:///x.git", "refs/heads/main", "xyz", "m", &[]);
    let (status, _) = stack.github("push", "bad-sha", &payload).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let resp = stack
        .client
        .post(format!("{}/api/webhooks/gitlab", stack.http))
        .header("X-Gitlab-Event", "Push Hook")
        .header("X-Gitlab-Token", "wrong")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(task_count(&stack).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_workflows_are_422_with_their_location() {
    let stack = stack().await;
    let post = |body: &'static str, content_type: &'static str| {
        stack
            .client
            .post(format!("{}/api/workflows", stack.http))
            .bearer_auth(&stack.token)
            .header("Content-Type", content_type)
            .body(body)
            .send()
    };
    let resp = post(
        "name: w\nrepo: file:///x.git\ntimeout: 5 minutes\nsteps:\n  - name: a\n    run: echo\n",
        "application/yaml",
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["path"], "timeout", "{body}");
    assert_eq!(body["line"], 3);
    assert_eq!(body["column"], 10);
    assert_eq!(
        body["error"],
        "timeout: invalid duration \"5 minutes\" at line 3, column 10"
    );

    let resp = post(
        "name: w\nrepo: file:///x.git\nsteps:\n  - name: a\n    runn: echo\n",
        "application/yaml",
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["path"]
            .as_str()
            .unwrap_or_default()
            .starts_with("steps[0]"),
        "{body}"
    );

    let resp = post("name: [unclosed\n", "application/yaml").await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = resp.json().await.unwrap();
    assert!(body["line"].as_u64().is_some(), "{body}");

    // JSON form, malformed JSON, and a JSON body without a definition.
    let resp = post(
        r#"{"definition": "name: j\nrepo: file:///x.git\nsteps:\n  - name: a\n    run: echo\n"}"#,
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = post("{\"definition\": ", "application/json").await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = post("{}", "application/json").await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    let (_, list) = stack.get("/api/workflows").await;
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(1),
        "only the valid one was stored: {list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_crud_and_versions() {
    let stack = stack().await;
    let id = stack
        .create_workflow(&workflow("crud", "file:///a.git", ""))
        .await;
    let resp = stack
        .client
        .post(format!("{}/api/workflows", stack.http))
        .bearer_auth(&stack.token)
        .header("Content-Type", "application/yaml")
        .body(workflow("crud", "file:///b.git", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);

    let (status, w) = stack.get(&format!("/api/workflows/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(w["name"], "crud");
    assert_eq!(w["version"], 1);
    assert!(
        w["definition"]
            .as_str()
            .unwrap_or_default()
            .contains("file:///a.git")
    );
    for key in ["id", "name", "repo", "version", "created_at", "updated_at"] {
        assert!(w.get(key).is_some(), "{key} missing: {w}");
    }

    let resp = stack
        .client
        .put(format!("{}/api/workflows/{id}", stack.http))
        .bearer_auth(&stack.token)
        .header("Content-Type", "application/yaml")
        .body(workflow("crud", "file:///c.git", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let w: Value = resp.json().await.unwrap();
    assert_eq!(w["version"], 2);
    assert_eq!(w["repo"], "file:///c.git");

    let (status, body) = stack
        .post(&format!("/api/workflows/{id}/run"), json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = stack
        .post(
            &format!("/api/workflows/{id}/run"),
            json!({"branch": "main", "commit": "nope"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = stack
        .post(
            &format!("/api/workflows/{id}/run"),
            json!({"branch": "main", "commit": SHA}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let task = stack.task(body["task_id"].as_i64().unwrap()).await;
    assert_eq!(task["trigger"], "manual");
    assert_eq!(task["workflow_version"], 2);
    assert_eq!(task["commit"], SHA);

    let (status, _) = stack
        .api(
            reqwest::Method::DELETE,
            &format!("/api/workflows/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = stack.get(&format!("/api/workflows/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], format!("workflow {id} not found"));
    // History stays, and the name is free again.
    assert_eq!(
        stack.task(task["id"].as_i64().unwrap()).await["workflow"],
        "crud"
    );
    stack
        .create_workflow(&workflow("crud", "file:///a.git", ""))
        .await;
}

/// A workflow whose one environment `env` has `route` (YAML flow mapping).
fn routed(name: &str, env: &str, route: &str) -> String {
    format!(
        "name: {name}\nrepo: file:///{name}.git\ndeploy:\n  - environment: {env}\n    route: {route}\n    target: {{container: {{name: {name}-{env}}}}}\n"
    )
}

/// Sends a definition; returns the status and the JSON answer.
async fn apply(
    stack: &Stack,
    method: reqwest::Method,
    path: impl std::fmt::Display,
    yaml: String,
) -> (StatusCode, Value) {
    let resp = stack
        .client
        .request(method, format!("{}{path}", stack.http))
        .bearer_auth(&stack.token)
        .header("Content-Type", "application/yaml")
        .body(yaml)
        .send()
        .await
        .expect("request sent");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_taken_elsewhere_or_malformed_is_422_naming_the_key() {
    use reqwest::Method;
    let stack = stack().await;
    let shop_route = "{domains: [hello.example], listen: 18090, port: 8080}";
    let shop = stack
        .create_workflow(&routed("shop", "prod", shop_route))
        .await;
    let unprocessable = |body: &Value, path: &str, line: u64, column: u64, error: &str| {
        assert_eq!(body["path"], path, "{body}");
        assert_eq!(
            (body["line"].as_u64(), body["column"].as_u64()),
            (Some(line), Some(column)),
            "{body}"
        );
        assert_eq!(body["error"], error, "{body}");
    };

    let cases = [
        (
            routed(
                "blog",
                "www",
                "{domains: [blog.example, hello.example], port: 80}",
            ),
            "deploy[0].route.domains[1]",
            5,
            37,
            r#"deploy[0].route.domains[1]: domain hello.example is already used by workflow "shop", environment "prod" at line 5, column 37"#,
        ),
        (
            routed("blog", "www", "{listen: 18090, port: 80}"),
            "deploy[0].route.listen",
            5,
            21,
            r#"deploy[0].route.listen: listen port 18090 is already used by workflow "shop", environment "prod" at line 5, column 21"#,
        ),
        (
            routed("blog", "www", "{listen: 18091, port: http}"),
            "deploy[0].route.port",
            5,
            34,
            r#"deploy[0].route.port: invalid port "http": use a number from 1 to 65535 at line 5, column 34"#,
        ),
        (
            routed("blog", "www", "{listen: 18091}"),
            "deploy[0].route",
            5,
            12,
            r#"deploy[0].route: missing required key "port" at line 5, column 12"#,
        ),
    ];
    for (yaml, path, line, column, error) in cases {
        let (status, body) = apply(&stack, Method::POST, "/api/workflows", yaml).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        unprocessable(&body, path, line, column, error);
    }

    // The owner keeps its route through an update; another workflow cannot
    // take it by an update either.
    let (status, body) = apply(
        &stack,
        Method::PUT,
        format!("/api/workflows/{shop}"),
        routed("shop", "prod", shop_route).replace("8080", "8081"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2);
    let blog = stack
        .create_workflow(&routed("blog", "www", "{listen: 18091, port: 80}"))
        .await;
    let take_hello = || {
        apply(
            &stack,
            Method::PUT,
            format!("/api/workflows/{blog}"),
            routed("blog", "www", "{domains: [hello.example], port: 80}"),
        )
    };
    let (status, body) = take_hello().await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    unprocessable(
        &body,
        "deploy[0].route.domains[0]",
        5,
        23,
        r#"deploy[0].route.domains[0]: domain hello.example is already used by workflow "shop", environment "prod" at line 5, column 23"#,
    );
    let (_, w) = stack.get(&format!("/api/workflows/{blog}")).await;
    assert_eq!(w["version"], 1, "{w}");

    // A deleted workflow serves nothing: its domain is free again.
    let (status, _) = stack
        .api(Method::DELETE, &format!("/api/workflows/{shop}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = take_hello().await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_applies_taking_one_domain_only_one_gets_it() {
    let stack = stack().await;
    let applies = (0..6).map(|n| {
        apply(
            &stack,
            reqwest::Method::POST,
            "/api/workflows",
            routed(
                &format!("racer-{n}"),
                "prod",
                "{domains: [race.example], port: 80}",
            ),
        )
    });
    let answers = futures_util::future::join_all(applies).await;
    let created = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{answers:?}");
    for (status, body) in &answers {
        if *status != StatusCode::CREATED {
            assert_eq!(*status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(body["path"], "deploy[0].route.domains[0]", "{body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_error_answers() {
    let stack = stack().await;
    let resp = stack
        .client
        .get(format!("{}/api/tasks", stack.http))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].is_string());
    let resp = stack
        .client
        .get(format!("{}/api/tasks", stack.http))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let resp = stack
        .client
        .get(format!("{}/healthz", stack.http))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let deadline = std::time::Instant::now() + test_support::DEADLINE;
    loop {
        let resp = stack
            .client
            .get(format!("{}/readyz", stack.http))
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::OK {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    for path in [
        "/api/tasks/123456",
        "/api/tasks/abc",
        "/api/workflows/0",
        "/api/nope",
    ] {
        let (status, body) = stack.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let (status, _) = stack.get("/api/tasks?status=done").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = stack.get("/api/tasks?limit=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = stack.post("/api/tasks/123456/cancel", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let resp = stack
        .client
        .put(format!("{}/api/workflows/1/secrets/X", stack.http))
        .bearer_auth(&stack.token)
        .header("Content-Type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_list_filters_and_pages() {
    let stack = stack().await;
    let id = stack
        .create_workflow(&workflow("pages", "file:///p.git", ""))
        .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, body) = stack
            .post(
                &format!("/api/workflows/{id}/run"),
                json!({"branch": "main"}),
            )
            .await;
        ids.push(body["task_id"].as_i64().unwrap());
    }
    let (_, page) = stack
        .get(&format!("/api/tasks?workflow_id={id}&limit=2"))
        .await;
    let got: Vec<i64> = page
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_i64())
        .collect();
    assert_eq!(got, [ids[2], ids[1]]);
    let (_, page) = stack
        .get(&format!("/api/tasks?workflow_id={id}&before={}", ids[1]))
        .await;
    let got: Vec<i64> = page
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_i64())
        .collect();
    assert_eq!(got, [ids[0]]);
    let (status, body) = stack
        .post(&format!("/api/tasks/{}/cancel", ids[0]), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (_, cancelled) = stack.get("/api/tasks?status=cancelled").await;
    assert_eq!(cancelled.as_array().map(Vec::len), Some(1));
    let task = stack.task(ids[0]).await;
    assert_eq!(task["status"], "cancelled");
    assert!(
        task["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "skipped")
    );
    // Retrying a pending task is a conflict.
    let (status, _) = stack
        .post(&format!("/api/tasks/{}/retry", ids[1]), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}
