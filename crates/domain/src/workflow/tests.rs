//! Tests of [`parse`] on whole documents: the contract's examples, each
//! kind of invalid input with its exact message and position, and garbage.

use std::time::Duration;

use super::*;

/// The full example of workflow.md, verbatim.
const FULL_EXAMPLE: &str = r#"name: hello-go                       # unique on the server: [a-z0-9][a-z0-9-]{0,62}
repo: https://github.com/acme/hello-go.git
on:
  push:
    branches: [main, "release/*"]    # glob patterns; absent = every branch
    tags: ["v*"]                     # absent = tag pushes do not trigger
    paths: ["src/**", "go.mod"]      # absent = any change triggers
  workflow_run:                      # optional: deploy what an external CI built
    workflows: ["CI"]                # GitHub Actions workflow names, conclusion must be success
env:
  CGO_ENABLED: "0"
secrets: [REGISTRY_PASSWORD]         # server-side secrets exposed to steps as env vars, masked in logs
timeout: 60m                         # build/test budget for the whole task (default 60m)
steps:
  - name: deps
    run: go mod download
  - name: build
    run: go build -o app .
  - name: test
    run: |
      go vet ./...
      go test ./...
    timeout: 10m                     # per-step timeout (default: the task's remaining budget)
    env: { GOFLAGS: -count=1 }
  - name: lint
    image: registry.local/golangci:1 # optional: run inside this container, workspace mounted at /workspace
    run: golangci-lint run
    continue_on_error: true          # a failure is reported but does not fail the task
    when: { branch: [main] }         # optional filter on branch or event
image:                               # optional packaging stage (docker build + push)
  name: hello-go                     # pushed as <registry>/hello-go:<tag>
  context: .
  dockerfile: Dockerfile
  tags: ["{{sha_short}}", "{{branch}}"]   # default ["{{sha_short}}"]; sha_short = 12 hex chars
  build_args: { VERSION: "{{sha_short}}" }
deploy:                              # optional; environments in promotion order
  - environment: dev
    auto: true                       # deploy as soon as the build is green (default true)
    branches: [main]                 # optional: only commits of these branches go here
    target:
      container:                     # native driver: one container per environment
        name: hello-go-dev
        ports: ["18081:8080"]
        env: { APP_ENV: dev }
        volumes: ["hello-data-dev:/data"]
        network: hello-net
    health:
      url: http://127.0.0.1:18081/health
      expect_status: 200             # default 200
      interval: 2s                   # default 2s
      timeout: 60s                   # not healthy by then = health_check_failed (default 60s)
      watch: 30s                     # keep probing after the switch; a failure then also rolls back (default 0s)
    rollback: auto                   # auto (default) | manual
    timeout: 30m                     # deploy budget; past it = deploy_timeout (default 30m)
  - environment: test
    target:
      compose:                       # compose driver: a compose project per environment
        file: deploy/docker-compose.yml    # path inside the repository
        project: hello-go-test
        service: app                 # the service whose image is replaced
    health: { url: http://127.0.0.1:18082/health }
  - environment: prod
    auto: false                      # waits for approval: POST /api/tasks/{id}/deploy {"environment":"prod"}
    target:
      container: { name: hello-go-prod, ports: ["8080:8080"] }
    health: { url: http://127.0.0.1:8080/health, watch: 120s }
notify:                              # alert rules of this workflow (see alerts.md)
  - on: [build_failed, deploy_failed, health_check_failed, deploy_timeout, rolled_back]
    slack: { webhook_url: "${{ secrets.SLACK_WEBHOOK }}" }
  - on: [deploy_failed, deploy_timeout]
    email: { to: [ops@acme.example] }
    dingtalk: { webhook_url: "${{ secrets.DINGTALK_URL }}", secret: "${{ secrets.DINGTALK_SECRET }}" }
  - on: [deploy_succeeded]
    webhook: { url: https://hooks.acme.example/deploys, secret: "${{ secrets.HOOK_SECRET }}" }
"#;

const SMALLEST: &str = "\
name: hello
repo: https://github.com/acme/hello.git
steps:
  - name: test
    run: make test
";

fn patterns(list: &[&str]) -> Option<Patterns> {
    Some(Patterns::new(list.iter().copied()).unwrap())
}

fn env(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn full_example_parses() {
    let w = parse(FULL_EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.name.as_str(), "hello-go");
    assert_eq!(w.repo.as_str(), "https://github.com/acme/hello-go.git");
    assert_eq!(
        w.on,
        Triggers {
            pull_request: None,
            push: Some(PushTrigger {
                branches: patterns(&["main", "release/*"]),
                tags: patterns(&["v*"]),
                paths: patterns(&["src/**", "go.mod"]),
            }),
            workflow_run: Some(WorkflowRunTrigger {
                workflows: vec!["CI".to_owned()],
            }),
        }
    );
    assert_eq!(w.env, env(&[("CGO_ENABLED", "0")]));
    assert_eq!(w.secrets, [SecretName::parse("REGISTRY_PASSWORD").unwrap()]);
    assert_eq!(w.timeout, secs(3600));

    let names: Vec<&str> = w.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["deps", "build", "test", "lint"]);
    assert_eq!(w.steps[0].run, "go mod download");
    assert_eq!(w.steps[2].run, "go vet ./...\ngo test ./...\n");
    assert_eq!(w.steps[2].timeout, Some(secs(600)));
    assert_eq!(w.steps[2].env, env(&[("GOFLAGS", "-count=1")]));
    assert!(!w.steps[2].continue_on_error);
    assert_eq!(
        w.steps[3],
        Step {
            name: StepName::parse("lint").unwrap(),
            run: "golangci-lint run".to_owned(),
            image: Some("registry.local/golangci:1".to_owned()),
            timeout: None,
            env: env(&[]),
            continue_on_error: true,
            when: Some(When {
                branch: patterns(&["main"]),
                event: None,
            }),
        }
    );

    let image = w.image.as_ref().unwrap();
    assert_eq!(image.name, "hello-go");
    assert_eq!(image.context, ".");
    assert_eq!(image.dockerfile, "Dockerfile");
    let tags: Vec<&str> = image.tags.iter().map(Template::as_str).collect();
    assert_eq!(tags, ["{{sha_short}}", "{{branch}}"]);
    assert_eq!(image.build_args["VERSION"].as_str(), "{{sha_short}}");

    assert_eq!(w.deploy.len(), 3);
    assert_eq!(
        w.deploy[0],
        DeploySpec {
            environment: EnvName::parse("dev").unwrap(),
            auto: true,
            branches: patterns(&["main"]),
            target: Target::Container(ContainerTarget {
                name: "hello-go-dev".to_owned(),
                ports: vec!["18081:8080".to_owned()],
                env: env(&[("APP_ENV", "dev")]),
                volumes: vec!["hello-data-dev:/data".to_owned()],
                network: Some("hello-net".to_owned()),
                restart: None,
            }),
            route: None,
            health: Some(HealthCheck {
                url: Some("http://127.0.0.1:18081/health".to_owned()),
                path: "/health".to_owned(),
                expect_status: 200,
                interval: secs(2),
                timeout: secs(60),
                watch: secs(30),
            }),
            rollback: RollbackMode::Auto,
            timeout: secs(1800),
        }
    );
    assert_eq!(
        w.deploy[1],
        DeploySpec {
            environment: EnvName::parse("test").unwrap(),
            auto: true,
            branches: None,
            target: Target::Compose(ComposeTarget {
                file: "deploy/docker-compose.yml".to_owned(),
                project: "hello-go-test".to_owned(),
                service: "app".to_owned(),
            }),
            route: None,
            health: Some(HealthCheck {
                url: Some("http://127.0.0.1:18082/health".to_owned()),
                path: "/health".to_owned(),
                expect_status: 200,
                interval: secs(2),
                timeout: secs(60),
                watch: Duration::ZERO,
            }),
            rollback: RollbackMode::Auto,
            timeout: secs(1800),
        }
    );
    let prod = &w.deploy[2];
    assert!(!prod.auto);
    assert_eq!(prod.health.as_ref().map(|h| h.watch), Some(secs(120)));
    let Target::Container(c) = &prod.target else {
        panic!("prod deploys a container")
    };
    assert_eq!(
        (c.name.as_str(), c.ports.as_slice()),
        ("hello-go-prod", ["8080:8080".to_owned()].as_slice())
    );

    assert_eq!(
        w.notify,
        [
            NotifyRule {
                on: vec![
                    AlertEvent::BuildFailed,
                    AlertEvent::DeployFailed,
                    AlertEvent::HealthCheckFailed,
                    AlertEvent::DeployTimeout,
                    AlertEvent::RolledBack,
                ],
                slack: Some(SlackChannel {
                    webhook_url: Some("${{ secrets.SLACK_WEBHOOK }}".to_owned()),
                    token: None,
                    channel: None,
                }),
                email: None,
                dingtalk: None,
                webhook: None,
            },
            NotifyRule {
                on: vec![AlertEvent::DeployFailed, AlertEvent::DeployTimeout],
                slack: None,
                email: Some(EmailChannel {
                    to: vec!["ops@acme.example".to_owned()],
                }),
                dingtalk: Some(DingTalkChannel {
                    webhook_url: "${{ secrets.DINGTALK_URL }}".to_owned(),
                    secret: Some("${{ secrets.DINGTALK_SECRET }}".to_owned()),
                }),
                webhook: None,
            },
            NotifyRule {
                on: vec![AlertEvent::DeploySucceeded],
                slack: None,
                email: None,
                dingtalk: None,
                webhook: Some(WebhookChannel {
                    url: "https://hooks.acme.example/deploys".to_owned(),
                    secret: Some("${{ secrets.HOOK_SECRET }}".to_owned()),
                }),
            },
        ]
    );
}

#[test]
fn smallest_example_gets_defaults() {
    let w = parse(SMALLEST).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.name.to_string(), "hello");
    assert_eq!(
        w.on,
        Triggers {
            pull_request: None,
            push: Some(PushTrigger::default()),
            workflow_run: None,
        }
    );
    assert!(w.env.is_empty() && w.secrets.is_empty());
    assert_eq!(w.timeout, secs(3600));
    assert_eq!(
        w.steps,
        [Step {
            name: StepName::parse("test").unwrap(),
            run: "make test".to_owned(),
            image: None,
            timeout: None,
            env: env(&[]),
            continue_on_error: false,
            when: None,
        }]
    );
    assert_eq!((w.image, w.deploy, w.notify), (None, vec![], vec![]));
    assert_eq!((w.cache, w.retention), (vec![], Retention::default()));
    assert_eq!(w.retention.in_force(90), (90, 100));
}

#[test]
fn caches_and_retention() {
    let w = parse(&format!(
        "{HEAD}steps: [{{name: t, run: make}}]\ncache:\n  - paths: [.cache/go-build, .cache/go-mod]\n    key_files: [go.sum]\n  - paths: [node_modules]\nretention: {{days: 7, keep_last: 0}}\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        w.cache,
        [
            CacheSpec {
                paths: vec![".cache/go-build".to_owned(), ".cache/go-mod".to_owned()],
                key_files: vec!["go.sum".to_owned()],
            },
            CacheSpec {
                paths: vec!["node_modules".to_owned()],
                key_files: vec![],
            },
        ]
    );
    assert_eq!(w.retention.in_force(90), (7, 0));
}

#[test]
fn defaults_of_image_and_deploy() {
    let w = parse(
        "name: x\nrepo: git@github.com:acme/x.git\nimage: {name: acme/x}\n\
         deploy:\n  - environment: dev\n    target: {compose: {file: c.yml, project: x, service: app}}\n    health: {url: 'https://x/health'}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let image = w.image.unwrap();
    assert_eq!(
        (image.context.as_str(), image.dockerfile.as_str()),
        (".", "Dockerfile")
    );
    assert_eq!(image.tags, [Template::parse("{{sha_short}}").unwrap()]);
    assert!(image.build_args.is_empty());
    let d = &w.deploy[0];
    assert!(d.auto);
    assert_eq!(d.rollback, RollbackMode::Auto);
    assert_eq!(d.timeout, secs(1800));
    assert_eq!(
        d.health,
        Some(HealthCheck {
            url: Some("https://x/health".to_owned()),
            path: "/health".to_owned(),
            expect_status: 200,
            interval: secs(2),
            timeout: secs(60),
            watch: Duration::ZERO,
        })
    );
}

#[test]
fn scalars_are_kept_as_written() {
    let w = parse(
        "name: x\nrepo: https://h/x\nenv: {A: 1.10, B: true, C: 0x1F, D: '007', E: -count=1, F: \"\"}\nsteps: [{name: t, run: make}]\n",
    )
    .unwrap();
    assert_eq!(
        w.env,
        env(&[
            ("A", "1.10"),
            ("B", "true"),
            ("C", "0x1F"),
            ("D", "007"),
            ("E", "-count=1"),
            ("F", "")
        ])
    );
}

#[test]
fn on_variants() {
    let parse_on = |on: &str| {
        parse(&format!(
            "name: x\nrepo: https://h/x\n{on}\nsteps: [{{name: t, run: make}}]\n"
        ))
        .map(|w| w.on)
        .unwrap_or_else(|e| panic!("{e}"))
    };
    // `on` present without `push`: pushes do not trigger.
    assert_eq!(parse_on("on: {workflow_run: {workflows: [CI]}}").push, None);
    assert_eq!(parse_on("on: {}"), Triggers::default());
    // `push:` with no value is an unfiltered push trigger.
    assert_eq!(parse_on("on:\n  push:").push, Some(PushTrigger::default()));
    assert_eq!(
        parse_on("on:\n  push:\n    tags: [\"v*\"]").push,
        Some(PushTrigger {
            tags: patterns(&["v*"]),
            ..PushTrigger::default()
        })
    );
}

#[test]
fn when_filters() {
    let w = parse(
        "name: x\nrepo: https://h/x\nsteps:\n  - name: a\n    run: a\n    when: {branch: [main, \"release/*\"], event: [push, manual]}\n  - name: b\n    run: b\n    when: {event: [tag]}\n",
    )
    .unwrap();
    let a = w.steps[0].when.as_ref().unwrap();
    assert!(a.allows(Some("main"), EventKind::Push));
    assert!(a.allows(Some("release/1"), EventKind::Manual));
    assert!(!a.allows(Some("dev"), EventKind::Push));
    assert!(!a.allows(Some("main"), EventKind::WorkflowRun));
    assert!(!a.allows(None, EventKind::Push));
    let b = w.steps[1].when.as_ref().unwrap();
    assert!(b.allows(None, EventKind::Tag));
    assert!(!b.allows(Some("main"), EventKind::Push));
    assert!(When::default().allows(None, EventKind::Manual));
}

#[test]
fn deploy_branch_filter() {
    let w = parse(FULL_EXAMPLE).unwrap();
    assert!(w.deploy[0].allows_branch(Some("main")));
    assert!(!w.deploy[0].allows_branch(Some("release/1")));
    assert!(!w.deploy[0].allows_branch(None));
    assert!(w.deploy[1].allows_branch(Some("release/1")));
    assert!(w.deploy[1].allows_branch(None));
}

#[test]
fn yaml_features_work() {
    let w = parse(
        "name: x\nrepo: https://h/x\nsteps:\n  - &base {name: a, run: make, timeout: 5m}\n  - <<: *base\n    name: b\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.steps[1].name.as_str(), "b");
    assert_eq!(w.steps[1].timeout, Some(secs(300)));
}

/// The contract's own example message, with its exact position.
#[test]
fn contract_error_example() {
    let yaml = "\
name: hello-go
repo: https://github.com/acme/hello-go.git
on:
  push:
    branches: [main]
steps:
  - name: build
    run: go build ./...
  - name: test
    run: go test ./...
deploy:
  - environment: dev
    target:
      container:
        name: hello-go-dev
        ports: [\"18081:8080\"]
    health:
      url: http://127.0.0.1:18081/health
      timeout: 60s
  - environment: test
    target:
      compose:
        file: deploy/docker-compose.yml
        project: hello-go-test
        service: app
    rollback: auto
    timeout: 30m
    health:
      url: http://127.0.0.1:18082/health
      interval: 2s
      timeout: 5 minutes
";
    let err = parse(yaml).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"deploy[1].health.timeout: invalid duration "5 minutes" at line 31, column 16"#
    );
    assert_eq!(
        err,
        SpecError {
            path: "deploy[1].health.timeout".to_owned(),
            line: 31,
            column: 16,
            message: r#"invalid duration "5 minutes""#.to_owned(),
        }
    );
}

const HEAD: &str = "name: hello\nrepo: https://github.com/acme/hello.git\n";

#[test]
fn runs_on_takes_one_label_or_a_list() {
    let one = parse(&format!("{SMALLEST}runs_on: gpu\n")).unwrap();
    assert_eq!(one.runs_on.key(), "gpu");
    let list = parse(&format!("{SMALLEST}runs_on: [linux, gpu, linux]\n")).unwrap();
    assert_eq!(list.runs_on.key(), "gpu+linux");
    assert!(parse(SMALLEST).unwrap().runs_on.is_empty());
}

/// Each invalid input with the message a user sees. Inputs starting with
/// `+` are appended to `HEAD` (so their line numbers start at 3).
#[test]
fn routes() {
    let w = parse(&format!(
        "{HEAD}deploy:\n  - environment: prod\n    route:\n      domains: [hello.acme.example, \"*.apps.acme.example\"]\n      tls: internal\n      listen: 18090\n      port: 8080\n      drain: 2s\n    target: {{container: {{name: hello-prod}}}}\n    health: {{url: \"http://127.0.0.1:1/health?deep=1\", watch: 5s}}\n  - environment: dev\n    route: {{listen: 18091, port: 80}}\n    target: {{container: {{name: hello-dev}}}}\n    health: {{}}\n"
    ))
    .unwrap();
    let prod = w.deploy[0].route.as_ref().unwrap();
    assert_eq!(prod.domains, ["hello.acme.example", "*.apps.acme.example"]);
    assert_eq!(
        (prod.tls, prod.listen, prod.port, prod.drain),
        (RouteTls::Internal, Some(18090), 8080, secs(2))
    );
    let claims: Vec<(String, String, usize)> = prod
        .claims
        .iter()
        .map(|(c, s)| (c.to_string(), s.path.clone(), s.line))
        .collect();
    assert_eq!(
        claims,
        [
            (
                "domain hello.acme.example".to_owned(),
                "deploy[0].route.domains[0]".to_owned(),
                6
            ),
            (
                "domain *.apps.acme.example".to_owned(),
                "deploy[0].route.domains[1]".to_owned(),
                6
            ),
            (
                "listen port 18090".to_owned(),
                "deploy[0].route.listen".to_owned(),
                8
            ),
        ]
    );
    assert_eq!(w.deploy[0].health.as_ref().unwrap().path, "/health?deep=1");
    let dev = w.deploy[1].route.as_ref().unwrap();
    assert_eq!(
        (dev.tls, dev.drain, dev.domains.len()),
        (RouteTls::Auto, secs(10), 0)
    );
    let health = w.deploy[1].health.as_ref().unwrap();
    assert_eq!((health.url.as_deref(), health.path.as_str()), (None, "/"));
}

#[test]
fn invalid_workflows() {
    let cases: &[(&str, &str)] = &[
        // Required keys and the document's shape.
        (
            "",
            "empty document: expected a mapping with name, repo and steps at line 1, column 1",
        ),
        (
            "# nothing\n",
            "empty document: expected a mapping with name, repo and steps at line 1, column 1",
        ),
        (
            "[]",
            "expected a mapping, found a sequence at line 1, column 1",
        ),
        (
            "hello",
            "expected a mapping, found a string at line 1, column 1",
        ),
        ("~", "expected a mapping, found null at line 1, column 1"),
        (
            "repo: https://h/x\nsteps: [{name: t, run: make}]\n",
            r#"missing required key "name" at line 1, column 1"#,
        ),
        (
            "name: x\nsteps: [{name: t, run: make}]\n",
            r#"missing required key "repo" at line 1, column 1"#,
        ),
        (
            "+",
            r#"nothing to do: at least one of "steps", "image" or "deploy" is required at line 1, column 1"#,
        ),
        (
            "+steps: []\n",
            r#"nothing to do: at least one of "steps", "image" or "deploy" is required at line 1, column 1"#,
        ),
        (
            "+steps: \"x\"\n",
            "steps: expected a sequence, found a string at line 3, column 8",
        ),
        // runs_on
        (
            "+runs_on: GPU\nsteps: [{name: t, run: make}]\n",
            r#"runs_on: invalid label "GPU": use 1 to 32 characters a-z, 0-9, ., _ and - at line 3, column 10"#,
        ),
        (
            "+runs_on: [linux, \"a+b\"]\nsteps: [{name: t, run: make}]\n",
            r#"runs_on[1]: invalid label "a+b": use 1 to 32 characters a-z, 0-9, ., _ and - at line 3, column 18"#,
        ),
        (
            "+runs_on: [a, b, c, d, e, f, g]\nsteps: [{name: t, run: make}]\n",
            "runs_on: too many labels (7): at most 6 at line 3, column 10",
        ),
        (
            "+runs_on: {gpu: true}\nsteps: [{name: t, run: make}]\n",
            "runs_on: expected a string, found a mapping at line 3, column 10",
        ),
        (
            "+steps:\n  - run\n",
            "steps[0]: expected a mapping, found a string at line 4, column 5",
        ),
        (
            "+steps:\n  - name: test\n",
            r#"steps[0]: missing required key "run" at line 4, column 5"#,
        ),
        (
            "+steps:\n  - name: t\n    run:\n",
            "steps[0].run: expected a string, found null at line 5, column 8",
        ),
        (
            "+steps:\n  - name: t\n    run: \"  \"\n",
            "steps[0].run: must not be empty at line 5, column 10",
        ),
        (
            "name:\n",
            "name: expected a string, found null at line 1, column 5",
        ),
        // Keys.
        (
            "+steps:\n  - name: t\n    run: make\n    contiue_on_error: true\n",
            r#"steps[0].contiue_on_error: unknown key (did you mean "continue_on_error"?) at line 6, column 5"#,
        ),
        (
            "+stages: []\n",
            "stages: unknown key (expected one of: name, repo, on, concurrency, runs_on, env, secrets, timeout, steps, image, deploy, notify, cache, retention) at line 3, column 1",
        ),
        (
            "+steps: []\nsteps: []\n",
            "steps: duplicate key at line 4, column 1",
        ),
        (
            "+nme: x\n",
            r#"nme: unknown key (did you mean "name"?) at line 3, column 1"#,
        ),
        (
            "+steps:\n  - {name: t, run: make, imgae: x}\n",
            r#"steps[0].imgae: unknown key (did you mean "image"?) at line 4, column 26"#,
        ),
        (
            "+steps: [{name: t, run: make}]\nx: 1\n",
            "x: unknown key (expected one of: name, repo, on, concurrency, runs_on, env, secrets, timeout, steps, image, deploy, notify, cache, retention) at line 4, column 1",
        ),
        (
            "+steps:\n  - {name: t, run: make, continue_on_error: [true]}\n",
            "steps[0].continue_on_error: expected true or false, found a sequence at line 4, column 45",
        ),
        (
            "+steps: 5\n",
            "steps: expected a sequence, found a number at line 3, column 8",
        ),
        // Names.
        (
            "name: Hello\n",
            r#"name: invalid workflow name "Hello": use 1 to 63 characters a-z, 0-9 and -, starting with a letter or digit at line 1, column 7"#,
        ),
        (
            "+steps:\n  - {name: test, run: a}\n  - {name: test, run: b}\n",
            r#"steps[1].name: duplicate step name "test" at line 5, column 12"#,
        ),
        (
            "+steps:\n  - name: clone\n    run: git clone\n",
            r#"steps[0].name: step name "clone" is reserved for a system step at line 4, column 11"#,
        ),
        (
            "+steps:\n  - name: \"deploy:prod\"\n    run: x\n",
            r#"steps[0].name: step name "deploy:prod" is reserved for a system step at line 4, column 11"#,
        ),
        (
            "+steps:\n  - name: my step\n    run: x\n",
            r#"steps[0].name: invalid step name "my step": use 1 to 63 characters A-Z, a-z, 0-9, _, . and -, starting with a letter or digit at line 4, column 11"#,
        ),
        (
            "+env: {1X: a}\nsteps: [{name: t, run: make}]\n",
            r#"env.1X: invalid variable name "1X": use A-Z, a-z, 0-9 and _, not starting with a digit at line 3, column 7"#,
        ),
        (
            "+env: {A: [1]}\nsteps: [{name: t, run: make}]\n",
            "env.A: expected a string, found a sequence at line 3, column 10",
        ),
        (
            "+secrets: [A, B, A]\nsteps: [{name: t, run: make}]\n",
            r#"secrets[2]: secret "A" is listed twice at line 3, column 17"#,
        ),
        (
            "repo: \"ftp://h/x\"\nname: x\n",
            "repo: invalid repository URL: unsupported scheme: use https://, http://, ssh://, git://, file:// or user@host:path at line 1, column 7",
        ),
        // Values.
        (
            "+timeout: 0s\nsteps: [{name: t, run: make}]\n",
            "timeout: must be longer than 0s at line 3, column 10",
        ),
        (
            "+timeout: 10\nsteps: [{name: t, run: make}]\n",
            r#"timeout: invalid duration "10" at line 3, column 10"#,
        ),
        (
            "+steps:\n  - name: t\n    run: make\n    continue_on_error: yes\n",
            r#"steps[0].continue_on_error: invalid boolean "yes": use true or false at line 6, column 24"#,
        ),
        (
            "+steps:\n  - name: t\n    run: make\n    when: {event: [merge_request]}\n",
            r#"steps[0].when.event[0]: unknown event "merge_request": use push, tag, manual, workflow_run or pull_request at line 6, column 20"#,
        ),
        (
            "+on:\n  pull_request:\n    types: [opened, merged]\nsteps: [{name: t, run: make}]\n",
            r#"on.pull_request.types[1]: unknown pull request type "merged": use opened, synchronize, reopened, closed, edited, labeled, ready_for_review at line 5, column 21"#,
        ),
        (
            "+on:\n  pull_request:\n    forks: always\nsteps: [{name: t, run: make}]\n",
            r#"on.pull_request.forks: unknown forks policy "always": use ignore or run at line 5, column 12"#,
        ),
        (
            "+on:\n  pull_request:\n    forks: run\nsteps:\n  - {name: a, run: make, image: busybox}\n  - {name: t, run: make}\n",
            r#"steps[1]: on.pull_request.forks: run needs every step to have an image: a pull request from a fork runs code from anyone, so its steps run in containers only at line 8, column 5"#,
        ),
        (
            "+concurrency:\n  cancel_in_progress: maybe\nsteps: [{name: t, run: make}]\n",
            r#"concurrency.cancel_in_progress: invalid boolean "maybe": use true or false at line 4, column 23"#,
        ),
        // Globs.
        (
            "+on:\n  push:\n    branches: [main, \"release/[1\"]\nsteps: [{name: t, run: make}]\n",
            r#"on.push.branches[1]: invalid glob "release/[1": unclosed character class; missing ']' at line 5, column 22"#,
        ),
        (
            "+on:\n  push:\n    paths: [\"**.md\"]\nsteps: [{name: t, run: make}]\n",
            r#"on.push.paths[0]: invalid glob "**.md": ** must be a whole path segment, as in src/** or **/*.md at line 5, column 13"#,
        ),
        (
            "+on:\n  push:\n    branches: main\nsteps: [{name: t, run: make}]\n",
            "on.push.branches: expected a sequence, found a string at line 5, column 15",
        ),
        (
            "+on:\n  workflow_run: {}\nsteps: [{name: t, run: make}]\n",
            r#"on.workflow_run: missing required key "workflows" at line 4, column 17"#,
        ),
        // Secrets placeholders outside notify and target.
        (
            "+steps:\n  - name: t\n    run: curl -H \"${{ secrets.TOKEN }}\" x\n",
            r#"steps[0].run: "${{ secrets.TOKEN }}": secrets placeholders are only allowed in notify and deploy target values; steps get the secrets listed under "secrets" as environment variables at line 5, column 10"#,
        ),
        (
            "+steps:\n  - name: t\n    run: make\n    env: {T: \"${{secrets.T}}\"}\n",
            r#"steps[0].env.T: "${{secrets.T}}": secrets placeholders are only allowed in notify and deploy target values; steps get the secrets listed under "secrets" as environment variables at line 6, column 14"#,
        ),
        (
            "+image:\n  name: x\n  build_args: {TOKEN: \"${{ secrets.T }}\"}\n",
            r#"image.build_args.TOKEN: "${{ secrets.T }}": secrets placeholders are only allowed in notify and deploy target values; steps get the secrets listed under "secrets" as environment variables at line 5, column 23"#,
        ),
        // Image.
        (
            "+image:\n  name: hello\n  tags: [\"{{sha_short}}\", \"{{commit}}\"]\n",
            r#"image.tags[1]: unknown placeholder "{{commit}}": use {{sha}}, {{sha_short}}, {{branch}}, {{tag}} or {{task_id}} at line 5, column 27"#,
        ),
        (
            "+image:\n  name: hello\n  tags: [\"v {{tag}}\"]\n",
            r#"image.tags[0]: invalid image tag "v {{tag}}": use A-Z, a-z, 0-9, _, . and - besides placeholders at line 5, column 10"#,
        ),
        (
            "+image:\n  name: Hello\n",
            r#"image.name: invalid image name "Hello": use lowercase a-z, 0-9, ., _, - and / between parts at line 4, column 9"#,
        ),
        (
            "+image:\n  name: x\n  context: ../other\n",
            r#"image.context: "../other" must be a relative path inside the repository at line 5, column 12"#,
        ),
        (
            "+image: {context: .}\n",
            r#"image: missing required key "name" at line 3, column 8"#,
        ),
        // Deploy.
        (
            "+deploy:\n  - environment: dev\n    target:\n      container: {name: a}\n      compose: {file: c.yml, project: p, service: s}\n",
            "deploy[0].target.compose: use either container or compose, not both at line 7, column 7",
        ),
        (
            "+deploy:\n  - environment: dev\n    target: {}\n",
            r#"deploy[0].target: missing required key "container" or "compose" at line 5, column 13"#,
        ),
        (
            "+deploy:\n  - environment: dev\n",
            r#"deploy[0]: missing required key "target" at line 4, column 5"#,
        ),
        (
            "+deploy:\n  - {environment: dev, target: {container: {name: a}}}\n  - {environment: dev, target: {container: {name: b}}}\n",
            r#"deploy[1].environment: duplicate environment "dev" at line 5, column 19"#,
        ),
        (
            "+deploy:\n  - environment: dev\n    target: {compose: {file: /etc/c.yml, project: p, service: s}}\n",
            r#"deploy[0].target.compose.file: "/etc/c.yml" must be a relative path inside the repository at line 5, column 30"#,
        ),
        (
            "+deploy:\n  - environment: dev\n    target: {container: {name: a}}\n    health: {url: \"localhost:8080\"}\n",
            r#"deploy[0].health.url: invalid health check URL "localhost:8080": use http:// or https:// at line 6, column 19"#,
        ),
        (
            "+deploy:\n  - environment: dev\n    target: {container: {name: a}}\n    health: {url: \"http://x\", expect_status: 2000}\n",
            r#"deploy[0].health.expect_status: invalid status code "2000": use 100 to 599 at line 6, column 46"#,
        ),
        (
            "+deploy:\n  - environment: dev\n    target: {container: {name: a}}\n    rollback: never\n",
            r#"deploy[0].rollback: invalid rollback mode "never": use auto or manual at line 6, column 15"#,
        ),
        // Notify.
        (
            "+steps: [{name: t, run: make}]\nnotify:\n  - on: [build_failed]\n",
            "notify[0]: missing a channel: add slack, email, dingtalk or webhook at line 5, column 5",
        ),
        (
            "+steps: [{name: t, run: make}]\nnotify:\n  - on: [build_broke]\n    webhook: {url: \"https://x\"}\n",
            r#"notify[0].on[0]: unknown event "build_broke": use one of task_created, task_started, build_failed, task_succeeded, task_cancelled, deploy_started, deploy_succeeded, deploy_failed, health_check_failed, rolled_back, deploy_timeout, awaiting_approval, task_stuck, runner_lost, webhook_delayed, health_down, health_recovered at line 5, column 10"#,
        ),
        (
            "+steps: [{name: t, run: make}]\nnotify:\n  - on: [build_failed]\n    slack: {webhook_url: \"${{ secret.HOOK }}\"}\n",
            r#"notify[0].slack.webhook_url: invalid placeholder "${{ secret.HOOK }}": use ${{ secrets.NAME }} at line 6, column 26"#,
        ),
        (
            "+steps: [{name: t, run: make}]\nnotify:\n  - on: [build_failed]\n    slack: {token: \"${{ secrets.SLACK_TOKEN }}\"}\n",
            r#"notify[0].slack: missing required key "channel" at line 6, column 12"#,
        ),
        (
            "+steps: [{name: t, run: make}]\nnotify:\n  - on: [build_failed]\n    email: {to: [ops]}\n",
            r#"notify[0].email.to[0]: invalid email address "ops" at line 6, column 18"#,
        ),
        // YAML syntax.
        (
            "+steps: [{name: t, run: make}\n",
            "invalid YAML: unclosed bracket '[' at line 3, column 8",
        ),
        (
            "name: a: b\n",
            "invalid YAML: mapping values are not allowed in this context at line 1, column 8",
        ),
        (
            "+steps:\n\t- name: t\n",
            "invalid YAML: tabs disallowed within this context (block indentation) at line 4, column 2",
        ),
        (
            "+x: *nowhere\n",
            "invalid YAML: while parsing node, found unknown anchor at line 3, column 4",
        ),
        (
            "+---\nname: b\n",
            "expected a single YAML document, found several at line 3, column 1",
        ),
        (
            "+? [a, b]\n: c\n",
            "mapping keys must be strings at line 3, column 3",
        ),
        // Routes (edge.md).
        (
            "+deploy:\n  - environment: dev\n    route: {listen: 18090, port: 80}\n    target: {container: {name: a, ports: [\"127.0.0.1::9090\", \"8080:80\"]}}\n",
            r#"deploy[0].target.container.ports[1]: "8080:80" takes a fixed host port, which the candidate and the running version cannot share: the proxy reaches the app on route.port (use 127.0.0.1::PORT for an ephemeral one) at line 6, column 62"#,
        ),
        (
            "+deploy:\n  - environment: dev\n    route: {listen: 18090}\n    target: {container: {name: a}}\n",
            r#"deploy[0].route: missing required key "port" at line 5, column 12"#,
        ),
        (
            "+deploy:\n  - environment: dev\n    route: {listen: 18090, port: http}\n    target: {container: {name: a}}\n",
            r#"deploy[0].route.port: invalid port "http": use a number from 1 to 65535 at line 5, column 34"#,
        ),
        (
            "+deploy:\n  - environment: dev\n    route: {listen: 0, port: 80}\n    target: {container: {name: a}}\n",
            r#"deploy[0].route.listen: invalid port "0": use a number from 1 to 65535 at line 5, column 21"#,
        ),
        (
            "+deploy:\n  - environment: dev\n    route: {port: 80}\n    target: {container: {name: a}}\n",
            r#"deploy[0].route: a route needs "domains", "listen" or both at line 5, column 12"#,
        ),
        (
            "+deploy:\n  - environment: dev\n    route: {domains: [Hello.Example], port: 80}\n    target: {container: {name: a}}\n",
            r#"deploy[0].route.domains[0]: invalid domain "Hello.Example": use a lowercase host name like app.example.com (a leading *. allowed) at line 5, column 23"#,
        ),
        (
            "+deploy:\n  - environment: dev\n    route: {domains: [a.example], tls: acme, port: 80}\n    target: {container: {name: a}}\n",
            r#"deploy[0].route.tls: invalid tls "acme": use auto, internal or off at line 5, column 40"#,
        ),
        (
            "+deploy:\n  - environment: dev\n    route: {listen: 18090, port: 80}\n    target: {container: {name: a}}\n  - environment: test\n    route: {listen: 18090, port: 80}\n    target: {container: {name: b}}\n",
            r#"deploy[1].route.listen: listen port 18090 is already used by environment "dev" of this workflow at line 8, column 21"#,
        ),
        (
            "+deploy:\n  - environment: dev\n    target: {container: {name: a}}\n    health: {path: /health}\n",
            r#"deploy[0].health.path: an environment without "route" is probed at "url": give the whole URL at line 6, column 14"#,
        ),
        (
            "+deploy:\n  - environment: dev\n    route: {listen: 1, port: 80}\n    target: {container: {name: a}}\n    health: {path: health}\n",
            r#"deploy[0].health.path: invalid health check path "health": it starts with / and has no spaces at line 7, column 20"#,
        ),
        (
            "+steps: [{name: t, run: make}]\ncache: [{paths: [../up]}]\n",
            r#"cache[0].paths[0]: "../up" must be a relative path inside the repository at line 4, column 18"#,
        ),
        (
            "+steps: [{name: t, run: make}]\ncache: [{paths: []}]\n",
            r#"cache[0].paths: must list at least one path at line 4, column 17"#,
        ),
        (
            "+steps: [{name: t, run: make}]\ncache: [{key_files: [go.sum]}]\n",
            r#"cache[0]: missing required key "paths" at line 4, column 9"#,
        ),
        (
            "+steps: [{name: t, run: make}]\nretention: {days: 0}\n",
            r#"retention.days: invalid number "0": use a whole number, at least 1 at line 4, column 19"#,
        ),
        (
            "+steps: [{name: t, run: make}]\nretention: {keep_last: -1}\n",
            r#"retention.keep_last: invalid number "-1": use a whole number, at least 0 at line 4, column 24"#,
        ),
    ];
    let mut failures = Vec::new();
    for (input, want) in cases {
        let yaml = match input.strip_prefix('+') {
            Some(rest) => format!("{HEAD}{rest}"),
            None => (*input).to_owned(),
        };
        match parse(&yaml) {
            Ok(_) => failures.push(format!("{yaml:?}: parsed, want {want}")),
            Err(err) if err.to_string() != *want => {
                failures.push(format!("{yaml:?}:\n   got {err}\n  want {want}"));
            }
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Nothing a user sends may panic the parser or make it run away.
#[test]
fn garbage_never_panics() {
    let mut inputs: Vec<String> = [
        "", " ", "\n", "[]", "{}", "~", "null", "42", "\"str\"", "- a\n- b", "---", "...",
        "---\n...\n---\n", "&a", "*a", "!!binary x", "!custom {a: 1}", "{a: 1", "[[[", "]]]",
        ":", "? ", "- - - -", "name: x\nrepo: y\nsteps: {}", "\u{feff}name: x",
        "name: x\r\nrepo: https://h/x\r\nsteps:\r\n  - {name: t, run: make}\r\n",
        "name: é\nrepo: 🦀\n", "\0", "%YAML 1.2\n---\na: 1", "%TAG ! tag:x,2000:\n--- !a b",
        "a: |\n  x\n b", "a: >-\n", "'", "\"\\x\"", "a: [1, 2]: 3", "<<: *a",
        "name: x\nrepo: https://h/x\nsteps: [{name: t, run: make, <<: [1]}]",
        "name: x\nrepo: https://h/x\non: {push: {branches: [\"[\"]}}\nsteps: [{name: t, run: make}]",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    inputs.push("[".repeat(10_000));
    inputs.push("{a: ".repeat(10_000));
    inputs.push("- ".repeat(10_000) + "x");
    inputs.push(
        (0..10_000)
            .map(|i| format!("{}- x\n", " ".repeat(i % 50)))
            .collect(),
    );
    inputs.push(format!(
        "name: x\nrepo: https://h/x\nsteps:\n  - name: t\n    run: {}\n",
        "a".repeat(1_000_000)
    ));
    inputs.push(
        (1..12).fold("a0: &a0 [x, x, x, x, x, x, x, x]\n".to_owned(), |doc, i| {
            doc + &format!(
                "a{i}: &a{i} [{}]\n",
                vec![format!("*a{}", i - 1); 8].join(", ")
            )
        }),
    );
    // Every prefix of a valid document: truncated uploads.
    for end in (0..FULL_EXAMPLE.len()).filter(|&i| FULL_EXAMPLE.is_char_boundary(i)) {
        inputs.push(FULL_EXAMPLE[..end].to_owned());
    }
    for input in &inputs {
        if let Err(err) = parse(input) {
            assert!(err.line >= 1 && err.column >= 1, "{err:?} for {input:?}");
        }
    }
}
