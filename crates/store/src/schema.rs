//! The diesel view of `migrations/`. Kept by hand: each table mirrors its
//! `CREATE TABLE`.

diesel::table! {
    workflows (id) {
        id -> Int8,
        name -> Text,
        repo -> Text,
        version -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
        installation_id -> Nullable<Int8>,
        last_pruned_at -> Nullable<Timestamptz>,
        last_pruned_tasks -> Int8,
        last_pruned_log_bytes -> Int8,
        last_pruned_images -> Int8,
    }
}

diesel::table! {
    workflow_versions (workflow_id, version) {
        workflow_id -> Int8,
        version -> Int4,
        definition -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    secrets (workflow_id, name) {
        workflow_id -> Int8,
        name -> Text,
        nonce -> Bytea,
        ciphertext -> Bytea,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Int8,
        provider -> Text,
        delivery_id -> Text,
        event -> Text,
        body_sha256 -> Text,
        task_ids -> Array<Int8>,
        ignored -> Nullable<Text>,
        received_at -> Timestamptz,
    }
}

diesel::table! {
    tasks (id) {
        id -> Int8,
        workflow_id -> Int8,
        workflow_version -> Int4,
        status -> Text,
        trigger -> Text,
        attempt -> Int4,
        retry_of -> Nullable<Int8>,
        branch -> Nullable<Text>,
        tag -> Nullable<Text>,
        commit_sha -> Nullable<Text>,
        message -> Nullable<Text>,
        author -> Nullable<Text>,
        delivery_id -> Nullable<Text>,
        error -> Nullable<Text>,
        requeues -> Int4,
        runner_id -> Nullable<Text>,
        lease_token -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamptz>,
        cancel_requested -> Bool,
        created_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        queued_at -> Timestamptz,
        image_reference -> Nullable<Text>,
        image_digest -> Nullable<Text>,
        deployment_id -> Nullable<Int8>,
        stuck_alerted_at -> Nullable<Timestamptz>,
        trace_context -> Nullable<Text>,
        runs_on -> Text,
        republished_at -> Nullable<Timestamptz>,
        pull_request -> Nullable<Jsonb>,
        forge -> Nullable<Jsonb>,
    }
}

diesel::table! {
    task_commits (task_id) {
        task_id -> Int8,
        committed_at -> Timestamptz,
    }
}

diesel::table! {
    commit_statuses (id) {
        id -> Int8,
        event_id -> Text,
        task_id -> Int8,
        seq -> Int8,
        context -> Text,
        state -> Text,
        description -> Text,
        status -> Text,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        next_attempt_at -> Timestamptz,
        delivered_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    steps (task_id, position) {
        task_id -> Int8,
        position -> Int4,
        name -> Text,
        status -> Text,
        exit_code -> Nullable<Int4>,
        error -> Nullable<Text>,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    log_chunks (id) {
        id -> Int8,
        task_id -> Int8,
        position -> Int4,
        data -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    outbox (id) {
        id -> Int8,
        task_id -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    deployments (id) {
        id -> Int8,
        workflow_id -> Int8,
        task_id -> Nullable<Int8>,
        environment -> Text,
        image -> Text,
        status -> Text,
        trigger -> Text,
        previous_deployment_id -> Nullable<Int8>,
        error -> Nullable<Text>,
        created_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        host -> Nullable<Text>,
        switched_at -> Nullable<Timestamptz>,
        retired_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    rollbacks (id) {
        id -> Int8,
        workflow_id -> Int8,
        environment -> Text,
        deployment_id -> Nullable<Int8>,
        from_deployment_id -> Nullable<Int8>,
        to_deployment_id -> Nullable<Int8>,
        reason -> Text,
        status -> Text,
        error -> Nullable<Text>,
        created_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        via_deployment_id -> Nullable<Int8>,
    }
}

diesel::table! {
    environments (workflow_id, name) {
        workflow_id -> Int8,
        name -> Text,
        current_deployment_id -> Nullable<Int8>,
        previous_deployment_id -> Nullable<Int8>,
        updated_at -> Timestamptz,
        serving_deployment_id -> Nullable<Int8>,
        health -> Text,
        health_deployment_id -> Nullable<Int8>,
        health_failures -> Int4,
        health_checked_at -> Nullable<Timestamptz>,
        health_error -> Nullable<Text>,
        health_next_at -> Timestamptz,
    }
}

diesel::table! {
    events (id) {
        id -> Text,
        #[sql_name = "type"]
        kind -> Text,
        workflow_id -> Int8,
        task_id -> Nullable<Int8>,
        deployment_id -> Nullable<Int8>,
        environment -> Nullable<Text>,
        summary -> Text,
        error -> Nullable<Text>,
        created_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
        seq -> Int8,
        branch -> Nullable<Text>,
        reason -> Nullable<Text>,
        outcome -> Nullable<Text>,
        recovery -> Bool,
    }
}

diesel::table! {
    alerts (id) {
        id -> Int8,
        event_id -> Text,
        throttle_key -> Text,
        throttled -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    deliveries (id) {
        id -> Int8,
        alert_id -> Int8,
        rule -> Int4,
        channel -> Text,
        target -> Text,
        status -> Text,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        next_attempt_at -> Timestamptz,
        delivered_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    image_deletions (id) {
        id -> Int8,
        workflow_id -> Int8,
        repository -> Text,
        digest -> Text,
        status -> Text,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        claimed_by -> Nullable<Text>,
        next_attempt_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(workflow_versions -> workflows (workflow_id));
diesel::joinable!(secrets -> workflows (workflow_id));
diesel::joinable!(tasks -> workflows (workflow_id));
diesel::joinable!(steps -> tasks (task_id));
diesel::joinable!(task_commits -> tasks (task_id));
diesel::joinable!(commit_statuses -> tasks (task_id));
diesel::joinable!(log_chunks -> tasks (task_id));
diesel::joinable!(outbox -> tasks (task_id));
diesel::joinable!(events -> workflows (workflow_id));
diesel::joinable!(alerts -> events (event_id));
diesel::joinable!(deliveries -> alerts (alert_id));
diesel::joinable!(image_deletions -> workflows (workflow_id));

diesel::allow_tables_to_appear_in_same_query!(
    commit_statuses,
    workflows,
    workflow_versions,
    secrets,
    webhook_deliveries,
    tasks,
    steps,
    log_chunks,
    outbox,
    deployments,
    rollbacks,
    environments,
    events,
    alerts,
    deliveries,
    image_deletions,
);
