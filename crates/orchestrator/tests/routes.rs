//! Routed environments as the orchestrator records them (edge.md): a test
//! plays the runner over the runner API (claims a task, starts deploys on a
//! host, reports where the traffic goes), and checks what the REST API, the
//! dashboard and `ListRoutes` then show, that a failed candidate stops
//! serving, and that a call without the lease or naming another
//! environment's deployment is refused.

use serde_json::Value;
use tonic::Code;

use test_support::{Options, RunnerApi, Stack, claim, try_claim};

const IMAGE_V1: &str = "127.0.0.1:5001/shop:v1@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const IMAGE_V2: &str = "127.0.0.1:5001/shop:v2@sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// `prod` served on a `listen` port, `dev` on a domain, `qa` not routed.
const SHOP: &str = "name: shop
repo: file:///srv/git/shop.git
deploy:
  - environment: prod
    route: {listen: 18090, port: 8080}
    target: {container: {name: shop-prod}}
  - environment: dev
    route: {domains: [dev.shop.example], tls: internal, port: 8080}
    target: {container: {name: shop-dev}}
  - environment: qa
    target: {container: {name: shop-qa}}
";

/// A stack with no runner of its own: the test is the runner.
async fn stack() -> Stack {
    Stack::with(Options {
        runners: 0,
        ..Options::default()
    })
    .await
}

/// Runs the workflow by hand and claims its task, as a runner of box-1
/// would.
async fn claimed(stack: &Stack, runner: &mut RunnerApi, workflow_id: i64) -> proto::LeaseRef {
    let task_id = stack.run_workflow(workflow_id).await;
    claim(runner, task_id, &["host.box-1"]).await
}

/// Creates a deployment of `image` to `environment` under the lease and
/// starts it on `host`; returns the start's answer.
async fn started(
    runner: &mut RunnerApi,
    lease: &proto::LeaseRef,
    environment: &str,
    image: &str,
    host: &str,
) -> proto::StartDeploymentResponse {
    let d = runner
        .create_deployment(proto::CreateDeploymentRequest {
            lease: Some(lease.clone()),
            environment: environment.to_owned(),
            image: image.to_owned(),
            auto: true,
        })
        .await
        .expect("create deployment")
        .into_inner();
    let answer = runner
        .start_deployment(proto::StartDeploymentRequest {
            lease: Some(lease.clone()),
            deployment_id: d.id,
            host: host.to_owned(),
        })
        .await
        .expect("start deployment")
        .into_inner();
    assert_eq!(answer.outcome, "started", "{answer:?}");
    answer
}

async fn advance(runner: &mut RunnerApi, lease: &proto::LeaseRef, id: i64, event: &str) {
    runner
        .advance_deployment(proto::AdvanceDeploymentRequest {
            lease: Some(lease.clone()),
            deployment_id: id,
            event: event.to_owned(),
            error: None,
            alert: None,
        })
        .await
        .unwrap_or_else(|e| panic!("{event} deployment {id}: {e}"));
}

async fn finish(runner: &mut RunnerApi, lease: &proto::LeaseRef, status: &str) {
    runner
        .finish_task(proto::FinishTaskRequest {
            lease: Some(lease.clone()),
            status: status.to_owned(),
            error: None,
            steps: Vec::new(),
        })
        .await
        .expect("finish task");
}

async fn traffic(
    runner: &mut RunnerApi,
    lease: &proto::LeaseRef,
    deployment_id: i64,
    serving: Option<i64>,
    retired: &[i64],
) -> Result<(), tonic::Status> {
    runner
        .record_traffic(proto::RecordTrafficRequest {
            lease: Some(lease.clone()),
            deployment_id,
            serving_deployment_id: serving,
            retired_deployment_ids: retired.to_vec(),
        })
        .await
        .map(|_| ())
}

async fn deployment(stack: &Stack, id: i64) -> Value {
    let (status, body) = stack.get(&format!("/api/deployments/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The environments of `workflow_id`, by name.
async fn environments(stack: &Stack, workflow_id: i64) -> serde_json::Map<String, Value> {
    let (status, body) = stack
        .get(&format!("/api/workflows/{workflow_id}/environments"))
        .await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .expect("a list")
        .iter()
        .map(|e| (e["name"].as_str().unwrap_or_default().to_owned(), e.clone()))
        .collect()
}

/// A first task of [`SHOP`], claimed, whose v1 was started on prod on
/// box-1 and got the traffic; returns its lease and v1's id.
async fn v1_serving(
    stack: &Stack,
    runner: &mut RunnerApi,
    workflow_id: i64,
) -> (proto::LeaseRef, i64) {
    let lease = claimed(stack, runner, workflow_id).await;
    let v1 = started(runner, &lease, "prod", IMAGE_V1, "box-1")
        .await
        .deployment
        .expect("v1")
        .id;
    traffic(runner, &lease, v1, Some(v1), &[])
        .await
        .expect("v1 serves");
    (lease, v1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_deploy_records_its_host_its_switch_and_the_retired_version() {
    let stack = stack().await;
    let mut runner = stack.runner_api();
    let workflow_id = stack.create_workflow(SHOP).await;

    // Before any deploy every environment of the definition is listed, in
    // its order, with nothing current and no deploy yet.
    let (status, envs) = stack
        .get(&format!("/api/workflows/{workflow_id}/environments"))
        .await;
    assert_eq!(status, 200, "{envs}");
    let names: Vec<&str> = envs
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["prod", "dev", "qa"], "{envs:#}");
    for e in envs.as_array().expect("a list") {
        assert!(e["current"].is_null() && e["latest"].is_null(), "{e:#}");
    }
    assert_eq!(envs[0]["route"]["url"], "http://127.0.0.1:18090/");

    // v1 on prod, made on box-1: it gets the traffic, then is healthy.
    let (first, v1) = v1_serving(&stack, &mut runner, workflow_id).await;
    advance(&mut runner, &first, v1, "verify").await;
    advance(&mut runner, &first, v1, "succeed").await;
    // dev is started without a host (an older runner), qa is not routed.
    let dev = started(&mut runner, &first, "dev", IMAGE_V1, "").await;
    let dev = dev.deployment.expect("dev").id;
    let qa = started(&mut runner, &first, "qa", IMAGE_V1, "box-2").await;
    let qa = qa.deployment.expect("qa").id;
    for d in [dev, qa] {
        advance(&mut runner, &first, d, "verify").await;
        advance(&mut runner, &first, d, "succeed").await;
    }
    finish(&mut runner, &first, "success").await;

    let v1_json = deployment(&stack, v1).await;
    assert_eq!(v1_json["host"], "box-1", "{v1_json}");
    assert!(v1_json["switched_at"].is_string(), "{v1_json}");
    assert!(v1_json["retired_at"].is_null(), "{v1_json}");
    assert!(deployment(&stack, dev).await["host"].is_null());

    // v2: the start tells where the running version is; the switch moves
    // the traffic before v2 is current.
    let second = claimed(&stack, &mut runner, workflow_id).await;
    let v2 = started(&mut runner, &second, "prod", IMAGE_V2, "box-1").await;
    let previous = v2.previous.expect("the running version");
    assert_eq!((previous.id, previous.host.as_deref()), (v1, Some("box-1")));
    let v2 = v2.deployment.expect("v2").id;
    traffic(&mut runner, &second, v2, Some(v2), &[])
        .await
        .expect("v2 serves");
    let envs = environments(&stack, workflow_id).await;
    let prod = &envs["prod"];
    assert_eq!(prod["serving_deployment_id"], v2, "{prod:#}");
    assert_eq!(prod["current"]["id"], v1, "{prod:#}");
    // The deploy under way is the latest, beside what is current.
    assert_eq!(prod["latest"]["id"], v2, "{prod:#}");
    assert_eq!(prod["latest"]["status"], "deploying", "{prod:#}");
    assert_eq!(
        prod["route"],
        serde_json::json!({"domains": [], "listen": 18090, "url": "http://box-1:18090/"})
    );
    assert_eq!(
        envs["dev"]["route"],
        serde_json::json!({"domains": ["dev.shop.example"], "listen": null, "url": "https://dev.shop.example/"})
    );
    assert!(envs["dev"]["serving_deployment_id"].is_null());
    assert!(envs["qa"]["route"].is_null(), "{:#}", envs["qa"]);
    assert!(envs["qa"]["serving_deployment_id"].is_null());

    // A repeated report changes nothing.
    let switched = deployment(&stack, v2).await["switched_at"].clone();
    assert!(switched.is_string());
    traffic(&mut runner, &second, v2, Some(v2), &[])
        .await
        .expect("again");
    assert_eq!(deployment(&stack, v2).await["switched_at"], switched);

    // After the watch: v2 is current, v1 retired (once).
    advance(&mut runner, &second, v2, "verify").await;
    advance(&mut runner, &second, v2, "succeed").await;
    traffic(&mut runner, &second, v2, None, &[v1])
        .await
        .expect("v1 retired");
    let retired = deployment(&stack, v1).await["retired_at"].clone();
    assert!(retired.is_string());
    traffic(&mut runner, &second, v2, None, &[v1])
        .await
        .expect("again");
    assert_eq!(deployment(&stack, v1).await["retired_at"], retired);
    let prod = &environments(&stack, workflow_id).await["prod"];
    assert_eq!(prod["serving_deployment_id"], v2);
    assert_eq!(prod["current"]["id"], v2);
    assert_eq!(prod["previous"]["retired_at"], retired);

    // What a runner of box-1 puts back into its proxy: prod alone (dev
    // has no host, qa is on box-2 and not routed).
    let routes = runner
        .list_routes(proto::ListRoutesRequest {
            host: "box-1".to_owned(),
        })
        .await
        .expect("routes")
        .into_inner()
        .routes;
    assert_eq!(routes.len(), 1, "{routes:?}");
    let route = &routes[0];
    assert_eq!(
        (
            route.workflow_id,
            route.workflow.as_str(),
            route.environment.as_str(),
            route.deployment_id,
            route.image.as_str(),
        ),
        (workflow_id, "shop", "prod", v2, IMAGE_V2)
    );
    assert_eq!(route.definition, SHOP);
    for host in ["box-2", "box-3"] {
        let routes = runner
            .list_routes(proto::ListRoutesRequest {
                host: host.to_owned(),
            })
            .await
            .expect("routes")
            .into_inner()
            .routes;
        assert!(routes.is_empty(), "{host}: {routes:?}");
    }
    let blank = runner
        .list_routes(proto::ListRoutesRequest {
            host: String::new(),
        })
        .await
        .expect_err("no host");
    assert_eq!(blank.code(), Code::InvalidArgument);

    // The dashboard's workflow page links where prod is served and names
    // the deployment that gets its traffic.
    let page = workflow_page(&stack, workflow_id).await;
    assert!(
        page.contains(r#"<a href="http://box-1:18090/">http://box-1:18090/</a>"#),
        "{page}"
    );
    assert!(page.contains(&format!("traffic to #{v2}")), "{page}");
    assert!(page.contains("https://dev.shop.example/"), "{page}");
    assert!(page.contains("not routed"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traffic_report_needs_the_lease_and_deployments_of_one_environment() {
    let stack = stack().await;
    let mut runner = stack.runner_api();
    let workflow_id = stack.create_workflow(SHOP).await;
    let (first, v1) = v1_serving(&stack, &mut runner, workflow_id).await;
    let dev = started(&mut runner, &first, "dev", IMAGE_V1, "box-1")
        .await
        .deployment
        .expect("dev")
        .id;
    for d in [v1, dev] {
        advance(&mut runner, &first, d, "verify").await;
        advance(&mut runner, &first, d, "succeed").await;
    }
    finish(&mut runner, &first, "success").await;

    let second = claimed(&stack, &mut runner, workflow_id).await;
    let v2 = started(&mut runner, &second, "prod", IMAGE_V2, "box-1")
        .await
        .deployment
        .expect("v2")
        .id;
    let refused = [
        // dev's deployment among prod's.
        (v2, Some(dev), vec![], Code::InvalidArgument),
        (v2, Some(v2), vec![dev], Code::InvalidArgument),
        // A deployment that does not exist, and one both serving and retired.
        (v2, Some(v2), vec![v2 + 1000], Code::InvalidArgument),
        (v2, Some(v2), vec![v2], Code::InvalidArgument),
        // A deployment the task does not deploy.
        (v1, Some(v1), vec![], Code::InvalidArgument),
        (v2 + 1000, Some(v2), vec![], Code::NotFound),
    ];
    for (deployment_id, serving, retired, code) in refused {
        let e = traffic(&mut runner, &second, deployment_id, serving, &retired)
            .await
            .expect_err("refused");
        assert_eq!(
            e.code(),
            code,
            "{deployment_id} {serving:?} {retired:?}: {e:?}"
        );
    }
    // Nothing of it was written.
    let envs = environments(&stack, workflow_id).await;
    assert_eq!(envs["prod"]["serving_deployment_id"], v1);
    assert!(envs["dev"]["serving_deployment_id"].is_null());
    assert!(deployment(&stack, dev).await["retired_at"].is_null());
    assert!(deployment(&stack, v2).await["switched_at"].is_null());

    // A candidate that failed no longer serves: the current version does.
    let dev2 = started(&mut runner, &second, "dev", IMAGE_V2, "box-1")
        .await
        .deployment
        .expect("dev2")
        .id;
    traffic(&mut runner, &second, dev2, Some(dev2), &[])
        .await
        .expect("dev2 serves");
    assert_eq!(
        environments(&stack, workflow_id).await["dev"]["serving_deployment_id"],
        dev2
    );
    advance(&mut runner, &second, dev2, "fail").await;
    let envs = environments(&stack, workflow_id).await;
    assert_eq!(envs["dev"]["serving_deployment_id"], dev, "{envs:#?}");
    assert_eq!(envs["dev"]["current"]["id"], dev);

    // Once the task has ended, its lease no longer counts.
    traffic(&mut runner, &second, v2, Some(v2), &[])
        .await
        .expect("v2 serves");
    finish(&mut runner, &second, "failed").await;
    let e = traffic(&mut runner, &second, v2, Some(v1), &[v2])
        .await
        .expect_err("lease lost");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("lease"), "{e:?}");
    // The task ended in the middle of the deploy: v2 failed, and the
    // traffic is recorded back on v1, which kept running.
    assert_eq!(deployment(&stack, v2).await["status"], "failed");
    let prod = &environments(&stack, workflow_id).await["prod"];
    assert_eq!(prod["serving_deployment_id"], v1, "{prod:#}");
    assert_eq!(prod["current"]["id"], v1);
}

/// The workflow's dashboard page, as a logged-in user gets it.
async fn workflow_page(stack: &Stack, workflow_id: i64) -> String {
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = plain
        .post(format!("{}/login", stack.http))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}&next=%2F", stack.token))
        .send()
        .await
        .expect("login");
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let page = plain
        .get(format!("{}/workflows/{workflow_id}", stack.http))
        .header("cookie", cookie)
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    page.text().await.expect("html")
}

/// Claims `task_id` offering `labels`; the gRPC code of a refusal.
async fn claim_with(runner: &mut RunnerApi, task_id: i64, labels: &[&str]) -> Result<(), Code> {
    try_claim(runner, task_id, labels)
        .await
        .map(|_| ())
        .map_err(|s| s.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_of_a_routed_environment_go_to_runners_of_its_host() {
    let stack = stack().await;
    let mut runner = stack.runner_api();
    let workflow_id = stack.create_workflow(SHOP).await;
    let (first, v1) = v1_serving(&stack, &mut runner, workflow_id).await;
    advance(&mut runner, &first, v1, "verify").await;
    advance(&mut runner, &first, v1, "succeed").await;
    let (reference, digest) = IMAGE_V1.split_once('@').expect("a digest");
    runner
        .report_image(proto::ReportImageRequest {
            lease: Some(first.clone()),
            reference: reference.to_owned(),
            digest: digest.to_owned(),
        })
        .await
        .expect("image");
    finish(&mut runner, &first, "success").await;

    // The next build deploys prod, served from box-1: only box-1 takes it.
    let build = stack.run_workflow(workflow_id).await;
    assert_eq!(
        claim_with(&mut runner, build, &[]).await,
        Err(Code::FailedPrecondition)
    );
    assert_eq!(
        claim_with(&mut runner, build, &["host.box-2"]).await,
        Err(Code::FailedPrecondition)
    );
    claim_with(&mut runner, build, &["host.box-1"])
        .await
        .expect("a runner of box-1 takes it");

    // A re-deploy of prod (a deploy-only task) too.
    let (status, body) = stack
        .post(
            &format!("/api/tasks/{}/deploy", first.task_id),
            serde_json::json!({"environment": "prod"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let redeploy = body["task_id"].as_i64().expect("task");
    assert_eq!(
        claim_with(&mut runner, redeploy, &["linux"]).await,
        Err(Code::FailedPrecondition)
    );
    claim_with(&mut runner, redeploy, &["host.box-1"])
        .await
        .expect("a runner of box-1 takes it");
}
