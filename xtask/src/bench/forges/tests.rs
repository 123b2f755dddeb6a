use super::*;

#[test]
fn signatures_are_githubs() {
    // The example of GitHub's documentation on validating deliveries.
    assert_eq!(
        signature(b"It's a Secret to Everybody", b"Hello, World!").ok(),
        Some("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".to_owned())
    );
}

#[test]
fn statuses_out_of_order_lost_and_repeated() {
    let t = SystemTime::UNIX_EPOCH;
    let of = |states: &[Option<usize>]| -> (usize, Vec<usize>, usize) {
        let arrived: Vec<_> = states.iter().map(|s| (*s, t)).collect();
        let tally = order(&arrived);
        (tally.out_of_order, tally.missing, tally.repeated)
    };
    assert_eq!(of(&[Some(0), Some(1), Some(2)]), (0, vec![], 0));
    assert_eq!(of(&[Some(0), Some(2), Some(1)]), (1, vec![], 0));
    assert_eq!(of(&[Some(1), Some(0), Some(2)]), (1, vec![], 0));
    assert_eq!(of(&[Some(0), Some(2)]), (0, vec![1], 0));
    assert_eq!(of(&[Some(0), Some(0), Some(1), Some(2)]), (0, vec![], 1));
    assert_eq!(of(&[]), (0, vec![0, 1, 2], 0));
    // A failure where success was expected: success is missing.
    assert_eq!(of(&[Some(0), Some(1), None]), (0, vec![2], 0));
    assert_eq!(of(&[Some(0), None, Some(1)]), (1, vec![2], 0));
}

#[test]
fn a_superseded_state_is_told_by_the_api() {
    let task = json!({"commit_statuses": [
        {"context": "slipway/bench-statuses", "state": "pending", "description": "queued", "status": "superseded"},
        {"context": "slipway/bench-statuses", "state": "pending", "description": "running", "status": "delivered"},
    ]});
    assert!(superseded(&task, 0));
    assert!(!superseded(&task, 1));
    assert!(!superseded(&task, 2));
}

#[test]
fn payloads_name_the_repository_and_commit() {
    let repo = Repo {
        full_name: "bench/app",
        clone_url: "file:///tmp/app.git",
    };
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let push = push_payload(&repo, "refs/heads/main", sha, "change");
    assert_eq!(push["repository"]["full_name"], "bench/app");
    assert_eq!(push["repository"]["clone_url"], "file:///tmp/app.git");
    assert_eq!(push["head_commit"]["id"], sha);
    let pr = pull_request_payload(&repo, 7, sha);
    assert_eq!(pr["number"], 7);
    assert_eq!(pr["pull_request"]["head"]["sha"], sha);
    assert_eq!(pr["pull_request"]["base"]["ref"], "main");
    assert_eq!(
        pr["pull_request"]["head"]["repo"]["full_name"],
        pr["repository"]["full_name"]
    );
}
