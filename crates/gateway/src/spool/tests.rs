use super::*;

fn request(delivery: &str) -> IngestWebhookRequest {
    IngestWebhookRequest {
        provider: "github".to_owned(),
        delivery_id: delivery.to_owned(),
        event: "push".to_owned(),
        body_sha256: "00".repeat(32),
        ..IngestWebhookRequest::default()
    }
}

async fn front_delivery(spool: &Spool) -> Option<String> {
    let (_, bytes) = spool.front().await?;
    let request = IngestWebhookRequest::decode(bytes.expect("read").as_slice()).expect("decode");
    Some(request.delivery_id)
}

#[tokio::test]
async fn kept_deliveries_survive_a_restart_in_arrival_order() {
    let root = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(root.path(), 1 << 20).expect("open");
    assert!(!spool.holds_any());
    for id in ["a", "b", "c"] {
        spool.keep(request(id)).await.expect("kept");
    }
    let depth = spool.depth();
    assert_eq!(depth.deliveries, 3);
    assert!(depth.bytes > 0 && depth.oldest.is_some(), "{depth:?}");
    // As after a kill: the lock goes with the process, the files stay.
    drop(spool);

    let spool = Spool::open(root.path(), 1 << 20).expect("reopen");
    assert_eq!(spool.depth().deliveries, 3);
    let (entry, bytes) = spool.front().await.expect("a delivery");
    let first = IngestWebhookRequest::decode(bytes.expect("read").as_slice()).expect("decode");
    assert_eq!(first.delivery_id, "a");
    assert!(first.received_at.is_some(), "the arrival time is kept");
    spool.pop(&entry.name, false).await.expect("pop");
    assert_eq!(front_delivery(&spool).await.as_deref(), Some("b"));
    // Numbering goes on after what is there.
    spool.keep(request("d")).await.expect("kept");
    drop(spool);
    let spool = Spool::open(root.path(), 1 << 20).expect("reopen");
    let mut order = Vec::new();
    while let Some((entry, bytes)) = spool.front().await {
        let r = IngestWebhookRequest::decode(bytes.expect("read").as_slice()).expect("decode");
        order.push(r.delivery_id);
        spool.pop(&entry.name, false).await.expect("pop");
    }
    assert_eq!(order, ["b", "c", "d"]);
    assert_eq!(spool.depth().oldest, None);
}

#[tokio::test]
async fn a_full_spool_refuses_and_keeps_what_it_holds() {
    let root = tempfile::tempdir().expect("tempdir");
    let one = request("x").encode_to_vec().len() as u64 + 16;
    let spool = Spool::open(root.path(), one).expect("open");
    spool.keep(request("a")).await.expect("kept");
    let refused = spool.keep(request("b")).await.expect_err("full");
    assert!(matches!(refused, Refused::Full { .. }), "{refused}");
    assert!(
        refused.to_string().starts_with("webhook spool full"),
        "{refused}"
    );
    assert_eq!(spool.depth().deliveries, 1);
}

#[tokio::test]
async fn a_second_gateway_on_the_same_spool_is_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let _first = Spool::open(root.path(), 1 << 20).expect("open");
    let second = Spool::open(root.path(), 1 << 20).err().expect("locked");
    assert!(matches!(second, OpenError::Locked(_)), "{second}");
}

#[test]
fn only_outages_and_our_token_wait() {
    assert!(waits(ErrorCode::Unavailable));
    assert!(waits(ErrorCode::Unauthenticated));
    assert!(!waits(ErrorCode::BadRequest));
    assert!(!waits(ErrorCode::Internal));
}
